//! Stage queues. A stage whose queue policy limits it (sequential, latest-only, parallel with a
//! maximum) keeps each new deployment `queued` until it is admitted here, across every release
//! of the pipeline. The index is built from the store the first time a stage is touched and
//! then kept from commits, so a restart finds the same queues. A rollback queues like any
//! deployment, and is skipped if another release ran on the stage after it queued.
//!
//! Safety under crashes: a deployment counts as holding its stage from the moment it is chosen
//! (before its admission commits), and stops holding only once the commit that ends it is
//! durable. So a crash can delay a turn, never give one twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::core::{Event, Release, ReleaseState, StageState};
use crate::pipeline::QueuePolicy;
use crate::store::StoreError;

/// Reads the stored active releases of a pipeline, to build its stage queues.
pub(super) type Load<'a> = dyn Fn(&str) -> Result<Vec<Release>, StoreError> + 'a;

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
    /// Waiting rollbacks: release -> the release it rolls back.
    rollbacks: HashMap<String, String>,
    /// The release whose deployment ended last on the stage, and when: a waiting rollback of
    /// any other release is stale once one ended after it queued.
    ran: Option<(u64, String)>,
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
        self.rollbacks.remove(&release.name);
        let Some(attempt) = release.stages[i].attempts.last() else {
            return;
        };
        let ended = matches!(
            attempt.state,
            StageState::Succeeded | StageState::PartiallySucceeded | StageState::Failed
        );
        if let (true, Some(at)) = (ended, attempt.finished_at)
            && self.ran.as_ref().is_none_or(|(last, _)| at > *last)
        {
            self.ran = Some((at, release.name.clone()));
        }
        match attempt.state {
            StageState::Queued if release.state == ReleaseState::Active => {
                let key = (attempt.started_at, release.number);
                self.waiting
                    .insert(key, (release.name.clone(), attempt.number));
                self.place.insert(release.name.clone(), key);
                if let Some(of) = &attempt.rollback_of {
                    self.rollbacks.insert(release.name.clone(), of.clone());
                }
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
        let mut decisions = self.skip_stale_rollbacks(stage);
        if policy == QueuePolicy::LatestOnly {
            decisions.extend(self.supersede_older_than_holders(stage));
        }
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

    /// A waiting rollback is stale once a release other than the one it rolls back ended on
    /// the stage after it queued (the stage freed at the failure went to a release already
    /// waiting): rolling back would undo that one instead. It is skipped.
    fn skip_stale_rollbacks(&mut self, stage: &str) -> Vec<Decision> {
        let Some((ran_at, ran)) = self.ran.clone() else {
            return Vec::new();
        };
        let stale: Vec<String> = self
            .rollbacks
            .iter()
            .filter(|(name, of)| {
                **of != ran
                    && **name != ran
                    && self.place.get(*name).is_some_and(|(at, _)| ran_at > *at)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut decisions = Vec::new();
        for name in stale {
            self.rollbacks.remove(&name);
            let Some(key) = self.place.remove(&name) else {
                continue;
            };
            if let Some((release, attempt)) = self.waiting.remove(&key) {
                decisions.push(Decision {
                    release,
                    event: Event::Supersede {
                        stage: stage.to_owned(),
                        attempt,
                        by: ran.clone(),
                    },
                });
            }
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
    /// pipeline, to build a queue the first time it is touched. A load that fails builds
    /// nothing and gives no turn: a queue without its holders could give a turn twice. The
    /// queue is built at the next commit that touches the stage (or a retry).
    pub(super) fn committed(&self, release: &Release, load: &Load<'_>) {
        self.update(release, load, false);
    }

    /// As [`Queues::committed`], for the stored copy of a release a decision did not apply
    /// to: the queue looks at its current revision again.
    pub(super) fn reconsider(&self, release: &Release, load: &Load<'_>) {
        self.update(release, load, true);
    }

    fn update(&self, release: &Release, load: &Load<'_>, again: bool) {
        let mut decisions = Vec::new();
        {
            let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
            // Read once per update, only if a queue is to be built.
            let mut stored: Option<Vec<Release>> = None;
            for (i, spec) in release.plan.stages.iter().enumerate() {
                if spec.queue == QueuePolicy::Parallel(None) {
                    continue;
                }
                let key = (release.pipeline.clone(), spec.name.clone());
                let queue = match stages.entry(key) {
                    std::collections::hash_map::Entry::Occupied(queue) => queue.into_mut(),
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        if stored.is_none() {
                            match load(&release.pipeline) {
                                Ok(releases) => stored = Some(releases),
                                Err(e) => {
                                    tracing::error!(
                                        pipeline = %release.pipeline,
                                        stage = %spec.name,
                                        "stage queue not built, no turn given until it is: {e}"
                                    );
                                    continue;
                                }
                            }
                        }
                        let mut queue = Queue::default();
                        for other in stored.iter().flatten() {
                            if let Some(j) = other.stages.iter().position(|s| s.name == spec.name) {
                                queue.note(other, j, false);
                            }
                        }
                        vacant.insert(queue)
                    }
                };
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
#[path = "queue_tests.rs"]
mod tests;
