//! Stage queues. A stage whose queue policy limits it (sequential, latest-only, parallel with a
//! maximum) keeps each new deployment `queued` until it is admitted here, across every release
//! of the pipeline. The index is built from the store the first time a stage is touched and
//! then kept from commits, so a restart finds the same queues.
//!
//! Safety under crashes: a deployment counts as holding its stage from the moment it is chosen
//! (before its admission commits), and stops holding only once the commit that ends it is
//! durable. So a crash can delay a turn, never give one twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::core::{Event, Release, ReleaseState, StageState};
use crate::pipeline::QueuePolicy;

/// Apply `event` to `release`: its turn, or skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub(super) release: String,
    pub(super) event: Event,
}

/// The queues of every limited stage, by (pipeline, stage), and decisions not yet sent.
#[derive(Default)]
pub(super) struct Queues {
    stages: Mutex<HashMap<(String, String), Queue>>,
    outbox: Mutex<Vec<Decision>>,
}

/// One stage's queue.
#[derive(Debug, Default)]
struct Queue {
    /// Waiting deployments in turn order: (queued at, release number) -> (release, attempt).
    waiting: BTreeMap<(u64, u64), (String, u32)>,
    /// Each waiting release's key in `waiting`.
    place: HashMap<String, (u64, u64)>,
    /// Releases whose deployment holds the stage (admitted and not ended), with the key it
    /// waited under (a rollback too: it queues like any deployment).
    holding: HashMap<String, Option<(u64, u64)>>,
    /// The revision of each release last noted. Copies of a release reach the queue from
    /// several places (its commits, a driver starting, a decision that did not apply), not
    /// necessarily in order: an older copy, or the same one again, changes nothing. Otherwise
    /// a release chosen but not yet admitted would be seen as waiting again, and its turn
    /// given to another as well.
    noted: HashMap<String, u64>,
}

impl Queue {
    /// Records where `release`'s deployment of stage `i` is now, unless the queue has seen
    /// this revision or a later one; `again` takes the same revision once more (after a
    /// decision about it did not apply).
    fn note(&mut self, release: &Release, i: usize, again: bool) {
        let seen = self
            .noted
            .get(&release.name)
            .is_some_and(|&noted| match again {
                false => noted >= release.revision,
                true => noted > release.revision,
            });
        if seen {
            return;
        }
        self.noted.insert(release.name.clone(), release.revision);
        if let Some(key) = self.place.remove(&release.name) {
            self.waiting.remove(&key);
        }
        self.holding.remove(&release.name);
        let Some(attempt) = release.stages[i].attempts.last() else {
            return;
        };
        match attempt.state {
            StageState::Queued if release.state == ReleaseState::Active => {
                let key = (attempt.started_at, release.number);
                self.waiting
                    .insert(key, (release.name.clone(), attempt.number));
                self.place.insert(release.name.clone(), key);
            }
            // Scheduled by an operator: not admitted yet, so neither waiting nor holding.
            StageState::Scheduled if attempt.approvals.is_empty() && attempt.frozen.is_none() => {}
            state if state.is_in_flight() => {
                // Before rollbacks queued, a stored one may hold the stage without having
                // waited: it holds all the same, under the key it would have waited under.
                let key = (attempt.started_at, release.number);
                self.holding.insert(release.name.clone(), Some(key));
            }
            _ => {}
        }
    }

    /// Who goes now under `policy`; those chosen hold the stage from here on.
    fn decide(&mut self, stage: &str, policy: QueuePolicy) -> Vec<Decision> {
        let mut decisions = match policy {
            QueuePolicy::LatestOnly => self.supersede_older_than_holders(stage),
            _ => Vec::new(),
        };
        let free = match policy {
            QueuePolicy::Parallel(None) => usize::MAX,
            QueuePolicy::Parallel(Some(max)) => (max as usize).saturating_sub(self.holding.len()),
            QueuePolicy::Sequential | QueuePolicy::LatestOnly => {
                usize::from(self.holding.is_empty())
            }
        };
        if free == 0 || self.waiting.is_empty() {
            return decisions;
        }
        let admit = |release: String, attempt: u32| Decision {
            release,
            event: Event::Admit {
                stage: stage.to_owned(),
                attempt,
            },
        };
        if policy == QueuePolicy::LatestOnly {
            // The newest release goes; every other one waiting is skipped.
            let newest_key = self
                .waiting
                .iter()
                .max_by_key(|((at, number), _)| (*number, *at))
                .map(|(key, _)| *key);
            let waiting = std::mem::take(&mut self.waiting);
            self.place.clear();
            let newest = newest_key.and_then(|key| waiting.get(&key).cloned());
            let Some((by, by_attempt)) = newest else {
                return decisions;
            };
            for (release, attempt) in waiting.into_values().filter(|(r, _)| *r != by) {
                decisions.push(Decision {
                    release,
                    event: Event::Supersede {
                        stage: stage.to_owned(),
                        attempt,
                        by: by.clone(),
                    },
                });
            }
            self.holding.insert(by.clone(), newest_key);
            decisions.push(admit(by, by_attempt));
            return decisions;
        }
        while decisions.len() < free {
            let Some((key, (release, attempt))) = self.waiting.pop_first() else {
                break;
            };
            self.place.remove(&release);
            self.holding.insert(release.clone(), Some(key));
            decisions.push(admit(release, attempt));
        }
        decisions
    }

    /// Latest-only: a release still waiting that queued before the one holding the stage was
    /// waiting when that one was chosen, so it lost that turn. Normally it was skipped in the
    /// same decision; this finishes the job when a crash came between the admission's commit
    /// and the skips'. (A release queued after the holder, like a redeploy of an old one,
    /// keeps its place.)
    fn supersede_older_than_holders(&mut self, stage: &str) -> Vec<Decision> {
        let Some((holder_key, holder)) = self
            .holding
            .iter()
            .filter_map(|(name, key)| Some(((*key)?, name)))
            .max()
        else {
            return Vec::new();
        };
        let holder = holder.clone();
        let later = self.waiting.split_off(&holder_key);
        let lost = std::mem::replace(&mut self.waiting, later);
        lost.into_values()
            .map(|(release, attempt)| {
                self.place.remove(&release);
                Decision {
                    release,
                    event: Event::Supersede {
                        stage: stage.to_owned(),
                        attempt,
                        by: holder.clone(),
                    },
                }
            })
            .collect()
    }
}

impl Queues {
    /// After a commit of `release`: updates the queues of its limited stages and decides who
    /// goes next; the decisions wait in the outbox. `load` returns the stored releases of a
    /// pipeline, to build a queue the first time it is touched.
    pub(super) fn committed(&self, release: &Release, load: &dyn Fn(&str) -> Vec<Release>) {
        self.update(release, load, false);
    }

    /// As [`Queues::committed`], for the stored copy of a release a decision did not apply
    /// to: the queue looks at its current revision again.
    pub(super) fn reconsider(&self, release: &Release, load: &dyn Fn(&str) -> Vec<Release>) {
        self.update(release, load, true);
    }

    fn update(&self, release: &Release, load: &dyn Fn(&str) -> Vec<Release>, again: bool) {
        let mut decisions = Vec::new();
        {
            let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
            for (i, spec) in release.plan.stages.iter().enumerate() {
                if spec.queue == QueuePolicy::Parallel(None) {
                    continue;
                }
                let key = (release.pipeline.clone(), spec.name.clone());
                let queue = stages.entry(key).or_insert_with(|| {
                    let mut queue = Queue::default();
                    for other in load(&release.pipeline) {
                        if let Some(j) = other.stages.iter().position(|s| s.name == spec.name) {
                            queue.note(&other, j, false);
                        }
                    }
                    queue
                });
                queue.note(release, i, again);
                decisions.extend(queue.decide(&spec.name, spec.queue));
            }
        }
        if !decisions.is_empty() {
            let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            outbox.extend(decisions);
        }
    }

    /// Takes the decisions waiting to be sent.
    pub(super) fn take(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::core::apply;

    const LATEST_ONLY: &str = r#"
version = 1
name = "web"
[[stages]]
name = "qa"
queue = { policy = "latest-only" }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

    /// Release `number` of the latest-only pipeline, created (so queued on qa) at `at`.
    fn queued(number: u64, at: u64) -> Release {
        let plan = crate::pipeline::parse("web.toml", LATEST_ONLY, Path::new("/p"), "web")
            .unwrap_or_else(|e| panic!("{e}"))
            .plan;
        let mut r = Release::new(crate::core::NewRelease {
            plan,
            number,
            creator: "rita".into(),
            description: None,
            artifacts: vec![],
            variables: vec![],
            digests: vec![],
            created_at: at,
        });
        apply(&mut r, Event::Created, at).unwrap();
        r
    }

    fn admitted(mut r: Release, at: u64) -> Release {
        let event = Event::Admit {
            stage: "qa".into(),
            attempt: 1,
        };
        apply(&mut r, event, at).unwrap();
        r
    }

    fn skipped_by(decisions: &[Decision], by: &str) -> Vec<String> {
        let mut skipped: Vec<String> = decisions
            .iter()
            .filter(|d| matches!(&d.event, Event::Supersede { by: b, .. } if b == by))
            .map(|d| d.release.clone())
            .collect();
        skipped.sort();
        skipped
    }

    #[test]
    fn latest_only_skips_the_older_waiting_releases_when_the_newest_is_admitted() {
        let queues = Queues::default();
        let releases: Vec<Release> = (1..=4).map(|n| queued(n, 10 * n)).collect();
        let load = |_: &str| releases.clone();
        queues.committed(&releases[3], &load);
        let decisions = queues.take();
        assert_eq!(skipped_by(&decisions, "web-4"), ["web-1", "web-2", "web-3"]);
        assert!(matches!(
            decisions.last(),
            Some(Decision { release, event: Event::Admit { .. } }) if release == "web-4"
        ));
    }

    fn admits(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| matches!(d.event, Event::Admit { .. }))
            .map(|d| d.release.as_str())
            .collect()
    }

    #[test]
    fn a_release_chosen_but_not_yet_admitted_keeps_its_turn_when_an_older_copy_arrives() {
        let queues = Queues::default();
        let r1 = queued(1, 10);
        let stored = vec![r1.clone()];
        let load = |_: &str| stored.clone();
        queues.committed(&r1, &load);
        assert_eq!(admits(&queues.take()), ["web-1"]);
        queues.committed(&queued(2, 20), &load);
        // R1's driver starts on the copy it loaded before its admission committed.
        queues.committed(&r1, &load);
        assert_eq!(queues.take(), [], "R1 still holds the stage");
        let mut r1 = admitted(r1, 30);
        queues.committed(&r1, &load);
        assert_eq!(queues.take(), []);
        // R1's deployment ends: R2's turn.
        apply(&mut r1, Event::Cancel { stage: "qa".into() }, 40).unwrap();
        queues.committed(&r1, &load);
        assert_eq!(admits(&queues.take()), ["web-2"]);
    }

    #[test]
    fn a_rollback_waits_for_the_holder_to_end_then_takes_its_turn() {
        let queues = Queues::default();
        // R1 ran and ended; R2 holds the stage.
        let mut r1 = admitted(queued(1, 10), 20);
        apply(&mut r1, Event::Cancel { stage: "qa".into() }, 30).unwrap();
        let mut r2 = admitted(queued(2, 40), 50);
        let stored = vec![r1.clone(), r2.clone()];
        let load = |_: &str| stored.clone();
        queues.committed(&r2, &load);
        assert_eq!(queues.take(), []);
        // A rollback to R1 queues: it is not admitted while R2 holds the stage.
        let rollback = Event::Rollback {
            stage: "qa".into(),
            of: "web-2".into(),
        };
        apply(&mut r1, rollback, 60).unwrap();
        assert_eq!(r1.stages[0].state(), StageState::Queued);
        queues.committed(&r1, &load);
        assert_eq!(queues.take(), [], "R2 still holds the stage");
        apply(&mut r2, Event::Cancel { stage: "qa".into() }, 70).unwrap();
        queues.committed(&r2, &load);
        assert_eq!(admits(&queues.take()), ["web-1"]);
    }

    #[test]
    fn after_a_crash_between_the_admission_and_the_skips_the_skips_are_made_on_restart() {
        // Stored: R5 admitted (its turn committed), R2..R4 still queued (their skips were not).
        let mut stored: Vec<Release> = (2..=4).map(|n| queued(n, 10 * n)).collect();
        stored.push(admitted(queued(5, 50), 60));
        // A redeploy of R1 queued after R5 was admitted keeps its place.
        stored.push(queued(1, 70));
        let queues = Queues::default();
        let load = |_: &str| stored.clone();
        queues.committed(&stored[3], &load);
        let decisions = queues.take();
        assert_eq!(skipped_by(&decisions, "web-5"), ["web-2", "web-3", "web-4"]);
        assert_eq!(decisions.len(), 3, "R5 holds the stage: {decisions:?}");
    }
}
