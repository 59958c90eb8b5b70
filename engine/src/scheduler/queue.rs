//! Stage queues. A stage whose queue policy limits it (sequential, latest-only, parallel with a
//! maximum) keeps each new deployment `queued` until it is admitted here, across every release
//! of the pipeline. The index is built from the store the first time a stage is touched and
//! then kept from commits, so a restart finds the same queues.
//!
//! Safety under crashes: a deployment counts as holding its stage from the moment it is chosen
//! (before its admission commits), and stops holding only once the commit that ends it is
//! durable. So a crash can delay a turn, never give one twice.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Releases whose deployment holds the stage (admitted and not ended).
    holding: HashSet<String>,
}

impl Queue {
    /// Records where `release`'s deployment of stage `i` is now.
    fn note(&mut self, release: &Release, i: usize) {
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
                self.holding.insert(release.name.clone());
            }
            _ => {}
        }
    }

    /// Who goes now under `policy`; those chosen hold the stage from here on.
    fn decide(&mut self, stage: &str, policy: QueuePolicy) -> Vec<Decision> {
        let free = match policy {
            QueuePolicy::Parallel(None) => usize::MAX,
            QueuePolicy::Parallel(Some(max)) => (max as usize).saturating_sub(self.holding.len()),
            QueuePolicy::Sequential | QueuePolicy::LatestOnly => {
                usize::from(self.holding.is_empty())
            }
        };
        if free == 0 || self.waiting.is_empty() {
            return Vec::new();
        }
        let admit = |release: String, attempt: u32| Decision {
            release,
            event: Event::Admit {
                stage: stage.to_owned(),
                attempt,
            },
        };
        let mut decisions = Vec::new();
        if policy == QueuePolicy::LatestOnly {
            // The newest release goes; every other one waiting is skipped.
            let newest = self
                .waiting
                .iter()
                .max_by_key(|((at, number), _)| (*number, *at))
                .map(|(key, _)| *key);
            let waiting = std::mem::take(&mut self.waiting);
            self.place.clear();
            let newest = newest.and_then(|key| waiting.get(&key).cloned());
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
            self.holding.insert(by.clone());
            decisions.push(admit(by, by_attempt));
            return decisions;
        }
        while decisions.len() < free {
            let Some((_, (release, attempt))) = self.waiting.pop_first() else {
                break;
            };
            self.place.remove(&release);
            self.holding.insert(release.clone());
            decisions.push(admit(release, attempt));
        }
        decisions
    }
}

impl Queues {
    /// After a commit of `release`: updates the queues of its limited stages and decides who
    /// goes next; the decisions wait in the outbox. `load` returns the stored releases of a
    /// pipeline, to build a queue the first time it is touched.
    pub(super) fn committed(&self, release: &Release, load: &dyn Fn(&str) -> Vec<Release>) {
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
                            queue.note(&other, j);
                        }
                    }
                    queue
                });
                queue.note(release, i);
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
