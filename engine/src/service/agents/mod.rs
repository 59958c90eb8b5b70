//! Agents: the service's side of the job protocol (`types::job`), no HTTP. The engine hands a
//! stage's job to the board ([`crate::scheduler::Jobs`]); an idle agent's long poll takes the
//! first queued job of its pool whose demands it meets; **the assignment (lease and epoch) is
//! committed before the agent is answered**; then the agent is given one step at a time (the
//! engine committed each task as started on it first) and its reports are applied only under
//! the lease's epoch (an older one: 409, the agent drops the job). Leases are renewed by the
//! agent; after three renewals missed the lease is lost and the engine decides (an idempotent
//! task queued again, any other failed). Leases are stored with the release; their clocks are
//! not: after a restart every held lease gets a full lease from the start to come back in.

mod board;
mod gates;
mod protocol;
mod registry;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::core::Event;
use crate::scheduler::{
    Dispatch, Engine, JobFuture, Jobs as EngineJobs, Observer, Remote, TaskDone,
};
use crate::types::job::{GateReported, Step, TaskCall, gates_job_id, job_id};

use super::config::Pools;
use board::{Entry, Held, Jobs, Waiter};
pub use protocol::{AgentToken, PoolGauges};
pub use registry::AgentView;
use registry::Registry;

/// The board: agents and jobs behind one lock.
pub struct Agents {
    state: Mutex<(Registry, Jobs)>,
    pools: Pools,
    engine: OnceLock<Weak<Engine>>,
    /// Live logs: an agent's lines reach followers as they arrive.
    observer: Arc<dyn Observer>,
    me: Weak<Agents>,
    generations: std::sync::atomic::AtomicU64,
    /// Dispatch latencies (queued to leased), for `/metrics`.
    latencies: Mutex<crate::service::metrics::Histogram>,
}

impl Agents {
    /// A board for `pools`, its agents' log lines seen by `observer`.
    pub(super) fn new(pools: Pools, observer: Arc<dyn Observer>) -> Arc<Self> {
        let agents = Arc::new_cyclic(|me| Self {
            state: Mutex::new((Registry::default(), Jobs::default())),
            pools,
            engine: OnceLock::new(),
            observer,
            me: me.clone(),
            generations: Default::default(),
            latencies: Mutex::new(crate::service::metrics::Histogram::default()),
        });
        agents.spawn_lease_clock();
        agents
    }

    /// The agents disabled before this start (from the store).
    pub(super) fn restore_disabled(&self, names: Vec<String>) {
        self.lock().0.disabled.extend(names);
    }

    /// Connects the board to the engine whose jobs it runs.
    pub(super) fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }

    fn lock(&self) -> MutexGuard<'_, (Registry, Jobs)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lease(&self) -> Duration {
        self.pools.lease()
    }

    fn next_generation(&self) -> u64 {
        self.generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Registers a job for an effect, replacing what an earlier effect left; with a lease held
    /// (after a restart) it is the lease holder's again, with a full lease to come back in.
    fn register(&self, dispatch: Dispatch, waiter: Waiter) -> (String, u64) {
        let id = job_id(&dispatch.release, &dispatch.stage, dispatch.attempt);
        self.register_as(id, dispatch, waiter, None)
    }

    /// As [`Self::register`], under `id`; `gates` makes it a gate job, its one step set.
    fn register_as(
        &self,
        id: String,
        dispatch: Dispatch,
        waiter: Waiter,
        gates: Option<(Vec<TaskCall>, u64)>,
    ) -> (String, u64) {
        let generation = self.next_generation();
        let lease = self.lease();
        let mut guard = self.lock();
        let (registry, jobs) = &mut *guard;
        let held = match &dispatch.lease {
            Some(l) => Held::Leased {
                agent: l.agent.clone(),
                epoch: l.epoch,
                expires: Instant::now() + lease,
            },
            None => Held::Queued {
                seq: 0,
                since: Instant::now(),
            },
        };
        let queued = dispatch.lease.is_none();
        // Given back by a recovery or a later effect of the same lease: its clock goes on.
        let kept = (jobs.entries.get(&id)).and_then(|e| match (&e.held, &dispatch.lease) {
            (Held::Leased { epoch, .. }, Some(l)) if *epoch == l.epoch => Some(e.held.clone()),
            _ => None,
        });
        jobs.unqueue(&id);
        let mut entry = Entry::new(dispatch, generation, kept.unwrap_or(held));
        entry.waiter = Some(waiter);
        if let Some((gates, until)) = gates {
            entry.gates = Some((gates.iter().map(|g| g.name.clone()).collect(), until));
            entry.step = Some(Step::Gates { gates });
        }
        jobs.entries.insert(id.clone(), entry);
        if queued {
            let disabled = |name: &str| registry.disabled.contains(name);
            jobs.enqueue(&id, &disabled);
            let entry = &jobs.entries[&id];
            if matches!(entry.held, Held::Queued { .. }) {
                let why = registry.why_waiting(&entry.dispatch.pool, &entry.demands, self.lease());
                tracing::info!(job = %id, "queued: {why}");
            }
        }
        (id, generation)
    }

    /// The effect of job `id` (generation `generation`) was dropped without an answer: its
    /// deployment was canceled. A queued job is forgotten; a leased one is told to stop.
    fn canceled(&self, id: &str, generation: u64) {
        let mut guard = self.lock();
        let jobs = &mut guard.1;
        let Some(entry) = jobs.entries.get_mut(id) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        match entry.held {
            Held::Leased { .. } => {
                entry.waiter = None;
                entry.set_step(Some(Step::Cancel));
            }
            _ => {
                jobs.unqueue(id);
                jobs.entries.remove(id);
            }
        }
    }

    /// Expires the leases not renewed in time: the effect waiting hears `Lost` (and the
    /// engine decides); a canceled job is forgotten. A gate sample no agent took by the
    /// gates' timeout is given up (`Unclaimed`).
    fn expire(&self) {
        let mut guard = self.lock();
        let jobs = &mut guard.1;
        for entry in jobs.unclaimed(crate::store::now_ms()) {
            tracing::info!(
                release = %entry.dispatch.release,
                "{}: no agent took the gates' sample before their timeout",
                entry.dispatch.stage
            );
            if let Some(Waiter::Gates(tx)) = entry.waiter {
                let _ = tx.send(Remote::Unclaimed);
            }
        }
        for id in jobs.expired(Instant::now()) {
            let Some(entry) = jobs.entries.get_mut(&id) else {
                continue;
            };
            let Held::Leased {
                epoch, ref agent, ..
            } = entry.held
            else {
                continue;
            };
            tracing::warn!(job = %id, agent = %agent, "lease of epoch {epoch} not renewed: agent lost");
            if matches!(entry.step, Some(Step::Cancel)) {
                jobs.entries.remove(&id);
                continue;
            }
            match entry.waiter.take() {
                Some(waiter) => {
                    waiter.lost(epoch);
                    jobs.entries.remove(&id);
                }
                None if entry.gates.is_some() => {
                    jobs.entries.remove(&id);
                }
                None => {
                    entry.held = Held::Lost { epoch };
                    entry.set_step(Some(Step::Cancel));
                }
            }
        }
    }

    fn spawn_lease_clock(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let every = (self.pools.renew / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else {
                    return;
                };
                me.expire();
            }
        });
    }

    /// Commits the assignment of job `id` to `agent` and leases it: the answer to the agent's
    /// poll. `None` if the job went away meanwhile (canceled, or the commit refused).
    async fn assign(&self, id: &str, generation: u64, agent: &str) -> Option<(u64, Dispatch)> {
        // When it was queued: read now, as the commit's own effects re-register the job.
        let (dispatch, queued, gates) = {
            let guard = self.lock();
            let entry = guard.1.entries.get(id)?;
            let queued = match entry.held {
                Held::Offered { since, .. } | Held::Queued { since, .. } => Some(since),
                Held::Leased { .. } | Held::Lost { .. } => None,
            };
            let gates = entry.gates.is_some();
            (entry.generation == generation).then(|| (entry.dispatch.clone(), queued, gates))?
        };
        if gates {
            return self.lease_gates(id, generation, agent, queued);
        }
        let engine = self.engine.get()?.upgrade()?;
        let event = Event::Assigned {
            stage: dispatch.stage.clone(),
            attempt: dispatch.attempt,
            agent: agent.to_owned(),
        };
        let committed = engine
            .submit(&dispatch.release, event, "engine", None)
            .await;
        let mut guard = self.lock();
        let (registry, jobs) = &mut *guard;
        let epoch = match committed {
            Ok(release) => release
                .stage(&dispatch.stage)
                .and_then(|s| s.attempts.last())
                .and_then(|a| a.held_lease())
                .filter(|l| l.agent == agent)
                .map(|l| l.epoch),
            Err(e) => {
                tracing::debug!(job = %id, "assignment to {agent} refused: {e}");
                None
            }
        };
        let entry = jobs
            .entries
            .get_mut(id)
            .filter(|e| e.generation == generation);
        let Some(epoch) = epoch else {
            // Not assigned: back in the queue, if it is still wanted.
            if let Some(entry) = entry
                && matches!(entry.held, Held::Offered { .. })
            {
                let disabled = |name: &str| registry.disabled.contains(name);
                jobs.enqueue(id, &disabled);
            }
            return None;
        };
        self.observe_latency(queued);
        let Some(entry) = entry else {
            return Some((epoch, dispatch));
        };
        if !matches!(entry.held, Held::Leased { .. }) {
            entry.held = Held::Leased {
                agent: agent.to_owned(),
                epoch,
                expires: Instant::now() + self.lease(),
            };
        }
        entry.dispatch.lease = Some(crate::core::Lease {
            agent: agent.to_owned(),
            epoch,
            lost: false,
        });
        if entry.dispatch.artifacts.is_empty() {
            // The assignment prepared the stage: the prepare waiting hears nothing to apply.
            if let Some(Waiter::Prepare(tx)) = entry.waiter.take() {
                let _ = tx.send(Remote::Nothing);
            }
        } else if entry.step.is_none() {
            let artifacts = entry.dispatch.artifacts.clone();
            entry.set_step(Some(Step::Prepare { artifacts }));
        }
        Some((epoch, dispatch))
    }

    /// How long a job waited for its agent, for `/metrics`.
    fn observe_latency(&self, queued: Option<Instant>) {
        if let Some(since) = queued {
            self.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe_in(
                    &crate::service::metrics::DISPATCH_BUCKETS,
                    since.elapsed().as_secs_f64(),
                );
        }
    }

    /// The jobs of `release` that wait for an agent, and why: stage -> reason.
    pub fn waiting(&self, release: &str) -> Vec<(String, String)> {
        let guard = self.lock();
        let (registry, jobs) = &*guard;
        (jobs.entries.values())
            .filter(|e| e.dispatch.release == release && matches!(e.held, Held::Queued { .. }))
            .map(|e| {
                let why = registry.why_waiting(&e.dispatch.pool, &e.demands, self.lease());
                (e.dispatch.stage.clone(), why)
            })
            .collect()
    }
}

impl Agents {
    /// The effect's future: the board's answer to job `id` of `generation`; dropped before
    /// it, the board hears (the job is unregistered).
    fn answer<T: Send + 'static>(
        &self,
        id: String,
        generation: u64,
        rx: oneshot::Receiver<Remote<T>>,
    ) -> JobFuture<T> {
        let registered = Registered {
            board: self.me.clone(),
            id,
            generation,
            answered: false,
        };
        Box::pin(async move {
            // The whole guard moves in (not just the field written below).
            let mut registered = registered;
            let answer = rx.await;
            registered.answered = true;
            answer.unwrap_or(Remote::Nothing)
        })
    }
}

/// Tells the board when the effect that registered a job is dropped before its answer.
struct Registered {
    board: Weak<Agents>,
    id: String,
    generation: u64,
    answered: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.answered
            && let Some(board) = self.board.upgrade()
        {
            board.canceled(&self.id, self.generation);
        }
    }
}

impl EngineJobs for Agents {
    fn prepare(&self, dispatch: Dispatch) -> JobFuture<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        let recovered = dispatch.lease.is_some();
        let (id, generation) = self.register(dispatch, Waiter::Prepare(tx));
        if recovered {
            // Given back to its lease holder: prepare again from the start.
            let mut guard = self.lock();
            if let Some(entry) = guard.1.entries.get_mut(&id) {
                let artifacts = entry.dispatch.artifacts.clone();
                entry.set_step(Some(Step::Prepare { artifacts }));
            }
        }
        self.answer(id, generation, rx)
    }

    fn evaluate_gates(
        &self,
        dispatch: Dispatch,
        kind: &'static str,
        gates: Vec<TaskCall>,
        until: u64,
    ) -> JobFuture<Vec<GateReported>> {
        let (tx, rx) = oneshot::channel();
        let id = gates_job_id(&dispatch.release, &dispatch.stage, dispatch.attempt, kind);
        // Any agent of the pool takes a sample: not the lease holder's (it may be over).
        let dispatch = Dispatch {
            lease: None,
            ..dispatch
        };
        let (id, generation) =
            self.register_as(id, dispatch, Waiter::Gates(tx), Some((gates, until)));
        self.answer(id, generation, rx)
    }

    fn run_task(&self, dispatch: Dispatch, index: usize, call: TaskCall) -> JobFuture<TaskDone> {
        let id = job_id(&dispatch.release, &dispatch.stage, dispatch.attempt);
        let (tx, rx) = oneshot::channel();
        let Some(lease) = dispatch.lease.clone() else {
            return Box::pin(async { Remote::Nothing });
        };
        let generation = {
            let mut guard = self.lock();
            let jobs = &mut guard.1;
            // Lost while nothing waited: this effect hears it.
            if let Some(Entry {
                held: Held::Lost { epoch },
                ..
            }) = jobs.entries.get(&id)
                && *epoch == lease.epoch
            {
                let epoch = *epoch;
                jobs.entries.remove(&id);
                return Box::pin(async move { Remote::Lost { epoch } });
            }
            let generation = self.next_generation();
            let entry = jobs.entries.entry(id.clone()).or_insert_with(|| {
                let held = Held::Leased {
                    agent: lease.agent.clone(),
                    epoch: lease.epoch,
                    expires: Instant::now() + self.lease(),
                };
                Entry::new(dispatch.clone(), generation, held)
            });
            entry.generation = generation;
            if !entry.leased_to(&lease.agent, lease.epoch) {
                entry.held = Held::Leased {
                    agent: lease.agent.clone(),
                    epoch: lease.epoch,
                    expires: Instant::now() + self.lease(),
                };
            }
            entry.dispatch.lease = Some(lease);
            if let Some(Waiter::Prepare(tx)) = entry.waiter.take() {
                let _ = tx.send(Remote::Nothing);
            }
            entry.waiter = Some(Waiter::Task { index, tx });
            entry.lines.clear();
            entry.log_bytes = 0;
            entry.log_limit = call.limits.log;
            entry.set_step(Some(Step::Task {
                index,
                call: Box::new(call),
            }));
            generation
        };
        self.answer(id, generation, rx)
    }
}
