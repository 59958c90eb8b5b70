//! The job board: each job the engine handed over, queued or leased, with the step its agent
//! is to take next and the in-flight effect waiting for the agent's report; the idle agents'
//! long polls; the lease clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::scheduler::{Dispatch, Remote, TaskDone};
use crate::types::demand::{Demand, demands_of, unmet};
use crate::types::job::{GateReported, Step};
use crate::types::{Capabilities, LogLine};

/// The effect waiting on a job: a prepare or a task's end.
pub(super) enum Waiter {
    Prepare(oneshot::Sender<Remote<Result<(), String>>>),
    Task {
        index: usize,
        tx: oneshot::Sender<Remote<TaskDone>>,
    },
    Gates(oneshot::Sender<Remote<Vec<GateReported>>>),
}

impl Waiter {
    /// Tells the effect waiting that the agent holding `epoch` was lost.
    pub(super) fn lost(self, epoch: u64) {
        let _ = match self {
            Self::Prepare(tx) => tx.send(Remote::Lost { epoch }).is_ok(),
            Self::Task { tx, .. } => tx.send(Remote::Lost { epoch }).is_ok(),
            Self::Gates(tx) => tx.send(Remote::Lost { epoch }).is_ok(),
        };
    }
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Held {
    /// Waiting for an agent since `seq` (the board's order of arrival).
    Queued { seq: u64, since: Instant },
    /// Offered to an idle agent, whose assignment is being committed.
    Offered { agent: String, since: Instant },
    /// Leased: `agent` holds epoch `epoch` until `expires` unless it renews.
    Leased {
        agent: String,
        epoch: u64,
        expires: Instant,
    },
    /// Its agent stopped renewing with nothing waiting to hear it: the next effect does.
    Lost { epoch: u64 },
}

/// One job.
pub(super) struct Entry {
    /// Tells a drop guard of an earlier effect apart from this one.
    pub(super) generation: u64,
    pub(super) dispatch: Dispatch,
    pub(super) demands: Vec<Demand>,
    pub(super) held: Held,
    /// What the agent does next (`None`: wait).
    pub(super) step: Option<Step>,
    pub(super) changed: Arc<Notify>,
    pub(super) waiter: Option<Waiter>,
    /// The running task's log as received, and its cost against the task's log limit.
    pub(super) lines: Vec<LogLine>,
    pub(super) log_bytes: u64,
    pub(super) log_limit: u64,
    /// A gate job: the gates it evaluates (its lease is the board's; nothing is committed)
    /// and when it is given up if no agent took it (milliseconds since the epoch).
    pub(super) gates: Option<(Vec<String>, u64)>,
}

impl Entry {
    pub(super) fn new(dispatch: Dispatch, generation: u64, held: Held) -> Self {
        Self {
            generation,
            demands: demands_of(&dispatch.demands),
            dispatch,
            held,
            step: None,
            changed: Arc::new(Notify::new()),
            waiter: None,
            lines: Vec::new(),
            log_bytes: 0,
            log_limit: 0,
            gates: None,
        }
    }

    /// Whether `agent` holds the lease of `epoch`.
    pub(super) fn leased_to(&self, agent: &str, epoch: u64) -> bool {
        matches!(&self.held, Held::Leased { agent: a, epoch: e, .. } if a == agent && *e == epoch)
    }

    /// Sets the next step and wakes the agent waiting for it.
    pub(super) fn set_step(&mut self, step: Option<Step>) {
        self.step = step;
        self.changed.notify_waiters();
    }
}

/// An idle agent's long poll for a job.
pub(super) struct Idle {
    pub(super) id: u64,
    pub(super) agent: String,
    pub(super) pool: String,
    pub(super) capabilities: Capabilities,
    pub(super) offer: oneshot::Sender<(String, u64)>,
}

/// Every job and idle poll; behind the board's one lock.
#[derive(Default)]
pub(super) struct Jobs {
    pub(super) entries: HashMap<String, Entry>,
    /// Queued job ids by arrival.
    pub(super) queue: BTreeMap<u64, String>,
    pub(super) idle: Vec<Idle>,
    pub(super) seq: u64,
}

impl Jobs {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Queues job `id` (already in `entries`) and offers it to the first idle agent that may
    /// take it, if one is waiting.
    pub(super) fn enqueue(&mut self, id: &str, disabled: &dyn Fn(&str) -> bool) {
        let seq = self.next_seq();
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.held = Held::Queued {
            seq,
            since: Instant::now(),
        };
        self.queue.insert(seq, id.to_owned());
        self.offer_to_idle(id, disabled);
        if self.queue.contains_key(&seq) {
            tracing::info!("job {id} queued: no free online agent of its pool takes it yet");
        }
    }

    /// Offers queued job `id` to the first idle agent of its pool that meets its demands.
    fn offer_to_idle(&mut self, id: &str, disabled: &dyn Fn(&str) -> bool) {
        loop {
            let Some(entry) = self.entries.get(id) else {
                return;
            };
            let Held::Queued { seq, .. } = entry.held else {
                return;
            };
            let found = self.idle.iter().position(|idle| {
                idle.pool == entry.dispatch.pool
                    && !disabled(&idle.agent)
                    && unmet(&entry.demands, &idle.capabilities).is_empty()
            });
            let Some(at) = found else {
                return;
            };
            let idle = self.idle.remove(at);
            let generation = entry.generation;
            // A poll that went away meanwhile takes nothing: try the next.
            if idle.offer.send((id.to_owned(), generation)).is_ok() {
                self.queue.remove(&seq);
                if let Some(entry) = self.entries.get_mut(id) {
                    entry.held = Held::Offered {
                        agent: idle.agent,
                        since: Instant::now(),
                    };
                }
                return;
            }
        }
    }

    /// The first queued job `agent` may take (its pool, its demands met), offered to it.
    pub(super) fn take_for(
        &mut self,
        agent: &str,
        pool: &str,
        capabilities: &Capabilities,
    ) -> Option<(String, u64)> {
        let (seq, id) = self.queue.iter().find_map(|(seq, id)| {
            let entry = self.entries.get(id)?;
            (entry.dispatch.pool == pool && unmet(&entry.demands, capabilities).is_empty())
                .then(|| (*seq, id.clone()))
        })?;
        self.queue.remove(&seq);
        let entry = self.entries.get_mut(&id)?;
        entry.held = Held::Offered {
            agent: agent.to_owned(),
            since: Instant::now(),
        };
        Some((id, entry.generation))
    }

    /// Removes job `id` from the queue, if it is queued.
    pub(super) fn unqueue(&mut self, id: &str) {
        if let Some(Entry {
            held: Held::Queued { seq, .. },
            ..
        }) = self.entries.get(id)
        {
            self.queue.remove(seq);
        }
    }

    /// Every leased job whose lease expired by `now`.
    pub(super) fn expired(&self, now: Instant) -> Vec<String> {
        (self.entries.iter())
            .filter(|(_, e)| matches!(e.held, Held::Leased { expires, .. } if expires <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every gate job still queued at its deadline `now_ms`, taken off the board.
    pub(super) fn unclaimed(&mut self, now_ms: u64) -> Vec<Entry> {
        let late: Vec<String> = (self.entries.iter())
            .filter(|(_, e)| matches!(e.held, Held::Queued { .. }))
            .filter(|(_, e)| e.gates.as_ref().is_some_and(|(_, until)| *until <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        (late.iter())
            .filter_map(|id| {
                self.unqueue(id);
                self.entries.remove(id)
            })
            .collect()
    }

    /// Extends the lease of `id` held by `agent` at `epoch` by `lease`; false if it is not theirs.
    pub(super) fn renew(&mut self, id: &str, agent: &str, epoch: u64, lease: Duration) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) if entry.leased_to(agent, epoch) => {
                if let Held::Leased { expires, .. } = &mut entry.held {
                    *expires = Instant::now() + lease;
                }
                true
            }
            _ => false,
        }
    }
}
