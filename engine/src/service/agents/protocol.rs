//! What an agent may ask of the board, each answer in the service's errors (the API maps them
//! to statuses): join and wait for a job, wait for the next step, report, append log lines,
//! renew, fetch a plugin of a job it holds. Every call names the agent; the agent must have
//! joined with the token that makes the call, and a report must carry the lease's epoch.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Agents;
use super::board::{Entry, Held, Idle, Jobs, Waiter};
use super::registry::{AgentRecord, AgentView};
use crate::core::{Release, StageState};
use crate::scheduler::{Remote, TaskDone};
use crate::service::ServiceError;
use crate::types::demand::{check_key, check_value};
use crate::types::job::{
    Accepted, Fence, Hello, Job, LogAck, LogBatch, PreparedReport, Renew, Renewed, Step,
    TaskReported,
};
use crate::types::{LogEvent, Name, limits::item_cost};

/// An agent token, as the API authenticated it: its hash and the pools it may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    /// The sha256 of the token.
    pub hash: String,
    /// The pools it may join.
    pub pools: Vec<String>,
}

/// The most capabilities an agent may report.
const MAX_CAPABILITIES: usize = 64;
/// How long a report waits for its commit.
const COMMIT_WAIT: Duration = Duration::from_secs(60);

fn conflict(id: &str, fence: &Fence) -> ServiceError {
    ServiceError::Conflict(format!(
        "job {id} is not leased to agent {} at epoch {}: it was given to another agent, \
         canceled or is over; drop it",
        fence.agent, fence.epoch
    ))
}

/// Job `id`, if `fence` holds its lease; else the 409 that drops it.
pub(super) fn leased<'a>(
    jobs: &'a mut Jobs,
    id: &str,
    fence: &Fence,
) -> Result<&'a mut Entry, ServiceError> {
    (jobs.entries.get_mut(id))
        .filter(|e| e.leased_to(&fence.agent, fence.epoch))
        .ok_or_else(|| conflict(id, fence))
}

impl Agents {
    /// The agent `agent`, which must have joined with `token`.
    pub(super) fn claim(&self, token: &AgentToken, agent: &str) -> Result<(), ServiceError> {
        let mut guard = self.lock();
        match guard.0.agents.get(agent) {
            Some(record) if record.token == token.hash => {
                guard.0.seen(agent);
                Ok(())
            }
            Some(_) => Err(ServiceError::Forbidden(format!(
                "agent {} joined with another token",
                crate::types::escape(agent)
            ))),
            // Holding a lease stored before this server started: its next renewal re-joins it.
            None if (guard.1.entries.values())
                .any(|e| matches!(&e.held, Held::Leased { agent: a, .. } if a == agent)) =>
            {
                Err(ServiceError::Unavailable(format!(
                    "agent {agent} has not joined since this server started: renew first"
                )))
            }
            None => Err(ServiceError::Forbidden(format!(
                "agent {} has not joined with this token: ask for a job first",
                crate::types::escape(agent)
            ))),
        }
    }

    /// Checks `hello` and records its agent as seen.
    fn join(&self, token: &AgentToken, hello: &Hello) -> Result<(), ServiceError> {
        Name::new(&hello.agent).map_err(|e| ServiceError::BadRequest(format!("agent: {e}")))?;
        if !token.pools.contains(&hello.pool) {
            return Err(ServiceError::Forbidden(format!(
                "this agent token may not join pool `{}`; it may join: {}",
                crate::types::escape(&hello.pool),
                token.pools.join(", ")
            )));
        }
        if hello.capabilities.len() > MAX_CAPABILITIES {
            return Err(ServiceError::BadRequest(format!(
                "capabilities: at most {MAX_CAPABILITIES}"
            )));
        }
        for (key, value) in &hello.capabilities {
            check_key(key)
                .and_then(|()| check_value(key, value))
                .map_err(|e| ServiceError::BadRequest(format!("capabilities: {e}")))?;
        }
        let lease = self.lease();
        let mut guard = self.lock();
        let registry = &mut guard.0;
        if let Some(record) = registry.agents.get(&hello.agent)
            && record.token != token.hash
            && registry.online(&hello.agent, lease)
        {
            return Err(ServiceError::Conflict(format!(
                "agent {} is online with another token: give each agent a name of its own",
                hello.agent
            )));
        }
        let back = (registry.agents.get(&hello.agent))
            .is_none_or(|_| !registry.online(&hello.agent, lease));
        if back {
            tracing::info!(pool = %hello.pool, "agent {} online in pool {}", hello.agent, hello.pool);
        }
        registry.agents.insert(
            hello.agent.clone(),
            AgentRecord {
                pool: hello.pool.clone(),
                capabilities: hello.capabilities.clone(),
                token: token.hash.clone(),
                last_seen: Instant::now(),
                last_seen_at: crate::store::now_ms(),
            },
        );
        Ok(())
    }

    /// An idle agent's long poll: the first queued job of its pool whose demands it meets,
    /// assigned (committed) before the answer; `None` after `agents.poll` with none.
    pub async fn next(
        &self,
        token: &AgentToken,
        hello: Hello,
    ) -> Result<Option<Job>, ServiceError> {
        self.join(token, &hello)?;
        let deadline = tokio::time::Instant::now() + self.pools.poll;
        loop {
            let (offer, rx) = {
                let mut guard = self.lock();
                let (registry, jobs) = &mut *guard;
                registry.seen(&hello.agent);
                let disabled = registry.disabled.contains(&hello.agent);
                let taken = (!disabled)
                    .then(|| jobs.take_for(&hello.agent, &hello.pool, &hello.capabilities))
                    .flatten();
                match taken {
                    Some(offer) => (Some(offer), None),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        let id = jobs.next_seq();
                        if !disabled {
                            jobs.idle.push(Idle {
                                id,
                                agent: hello.agent.clone(),
                                pool: hello.pool.clone(),
                                capabilities: hello.capabilities.clone(),
                                offer: tx,
                            });
                        }
                        (None, Some((id, rx)))
                    }
                }
            };
            let (id, generation) = match (offer, rx) {
                (Some(offer), _) => offer,
                (None, Some((idle, rx))) => {
                    let answer = tokio::time::timeout_at(deadline, rx).await;
                    let mut guard = self.lock();
                    guard.1.idle.retain(|i| i.id != idle);
                    match answer {
                        Ok(Ok(offer)) => offer,
                        // Disabled, or no job came: the agent asks again.
                        _ => return Ok(None),
                    }
                }
                (None, None) => return Ok(None),
            };
            if let Some((epoch, dispatch)) = self.assign(&id, generation, &hello.agent).await {
                return Ok(Some(Job {
                    id,
                    epoch,
                    pipeline: dispatch.pipeline,
                    release: dispatch.release,
                    stage: dispatch.stage,
                    attempt: dispatch.attempt,
                    renew_ms: self.pools.renew.as_millis() as u64,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// The next step of job `id` for its lease holder; `Wait` after `agents.poll` with none.
    pub async fn step(
        &self,
        token: &AgentToken,
        id: &str,
        fence: Fence,
    ) -> Result<Step, ServiceError> {
        self.claim(token, &fence.agent)?;
        let deadline = tokio::time::Instant::now() + self.pools.poll;
        loop {
            let changed = {
                let mut guard = self.lock();
                let jobs = &mut guard.1;
                if !jobs.renew(id, &fence.agent, fence.epoch, self.lease()) {
                    return Err(conflict(id, &fence));
                }
                let entry = jobs.entries.get_mut(id).expect("renewed above");
                if let Some(step) = entry.step.clone() {
                    if matches!(step, Step::Cancel) {
                        jobs.entries.remove(id);
                    }
                    return Ok(step);
                }
                entry.changed.clone()
            };
            let notified = changed.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Step::Wait);
            }
        }
    }

    /// The lease holder prepared the workspace (or failed to).
    pub async fn prepared(
        &self,
        token: &AgentToken,
        id: &str,
        report: PreparedReport,
    ) -> Result<Accepted, ServiceError> {
        let fence = report.fence.clone();
        self.claim(token, &fence.agent)?;
        let (tx, ack) = oneshot::channel();
        {
            let mut guard = self.lock();
            let entry = leased(&mut guard.1, id, &fence)?;
            match (&entry.step, entry.waiter.take()) {
                (Some(Step::Prepare { .. }), Some(Waiter::Prepare(waiter))) => {
                    entry.set_step(None);
                    let value = report.error.map_or(Ok(()), Err);
                    let _ = waiter.send(Remote::Reported {
                        value,
                        agent: fence.agent.clone(),
                        ack: tx,
                    });
                }
                (_, waiter) => {
                    entry.waiter = waiter;
                    // Already taken (a retry of an answered report): nothing more to do.
                    return Ok(Accepted { done: false });
                }
            }
        }
        self.settle(id, &fence, ack).await
    }

    /// Lines `offset..` of the running task's log; idempotent by offset.
    pub fn log(
        &self,
        token: &AgentToken,
        id: &str,
        index: usize,
        batch: LogBatch,
    ) -> Result<LogAck, ServiceError> {
        let fence = batch.fence.clone();
        self.claim(token, &fence.agent)?;
        let mut guard = self.lock();
        let entry = leased(&mut guard.1, id, &fence)?;
        let Some(Step::Task {
            index: running,
            call,
        }) = &entry.step
        else {
            return Err(ServiceError::Conflict(format!("job {id} runs no task now")));
        };
        if *running != index {
            return Err(ServiceError::Conflict(format!(
                "job {id} runs task {running}, not {index}"
            )));
        }
        let task = call.name.clone();
        let held = entry.lines.len() as u64;
        // A gap (the server restarted, say) is not filled: the answer says where to resume.
        if batch.offset <= held {
            let skip = usize::try_from(held - batch.offset).unwrap_or(usize::MAX);
            for line in batch.lines.into_iter().skip(skip) {
                let cost = item_cost(line.message.len());
                if entry.log_bytes.saturating_add(cost) > entry.log_limit.saturating_mul(2) {
                    return Err(ServiceError::Invalid(format!(
                        "job {id}: the log of task {task} is over its limit ({} bytes)",
                        entry.log_limit
                    )));
                }
                entry.log_bytes += cost;
                let key = crate::store::LogKey {
                    release: &entry.dispatch.release,
                    stage: &entry.dispatch.stage,
                    attempt: entry.dispatch.attempt,
                    task: &task,
                };
                self.observer
                    .task_event(&key, &LogEvent::Line(line.clone()));
                entry.lines.push(line);
            }
        }
        Ok(LogAck {
            lines: entry.lines.len() as u64,
        })
    }

    /// How task `index` ended on the lease holder: committed with its log.
    pub async fn task(
        &self,
        token: &AgentToken,
        id: &str,
        index: usize,
        report: TaskReported,
    ) -> Result<Accepted, ServiceError> {
        let fence = report.fence.clone();
        self.claim(token, &fence.agent)?;
        let (tx, ack) = oneshot::channel();
        {
            let mut guard = self.lock();
            let entry = leased(&mut guard.1, id, &fence)?;
            let running = matches!(entry.step, Some(Step::Task { index: i, .. }) if i == index);
            match entry.waiter.take() {
                Some(Waiter::Task {
                    index: i,
                    tx: waiter,
                }) if running && i == index => {
                    if entry.lines.len() as u64 != report.lines {
                        entry.waiter = Some(Waiter::Task {
                            index: i,
                            tx: waiter,
                        });
                        return Err(ServiceError::Invalid(format!(
                            "log incomplete: the server has {} of the task's {} lines; send \
                             them from line {} first",
                            entry.lines.len(),
                            report.lines,
                            entry.lines.len()
                        )));
                    }
                    entry.set_step(None);
                    let lines = std::mem::take(&mut entry.lines);
                    let _ = waiter.send(Remote::Reported {
                        value: TaskDone {
                            outcome: report.outcome,
                            lines,
                        },
                        agent: fence.agent.clone(),
                        ack: tx,
                    });
                }
                waiter => {
                    entry.waiter = waiter;
                    return Ok(Accepted { done: false });
                }
            }
        }
        self.settle(id, &fence, ack).await
    }

    /// Waits for a report's commit: the job is over for the agent once its attempt is no
    /// longer in progress under this lease (the entry goes); a refused one is a 409.
    async fn settle(
        &self,
        id: &str,
        fence: &Fence,
        ack: oneshot::Receiver<Result<Release, crate::scheduler::EngineError>>,
    ) -> Result<Accepted, ServiceError> {
        let Ok(Ok(committed)) = tokio::time::timeout(COMMIT_WAIT, ack).await else {
            return Err(ServiceError::Conflict(format!(
                "job {id}: the report was not committed (the release's driver stopped): drop \
                 the job"
            )));
        };
        let release = committed.map_err(ServiceError::from)?;
        let (_, stage, attempt) = split(id);
        let going_on = (release.stage(stage))
            .and_then(|s| s.attempts.iter().find(|a| Some(a.number) == attempt))
            .is_some_and(|a| {
                a.state == StageState::InProgress
                    && a.held_lease()
                        .is_some_and(|l| l.agent == fence.agent && l.epoch == fence.epoch)
            });
        if !going_on {
            let mut guard = self.lock();
            if guard
                .1
                .entries
                .get(id)
                .is_some_and(|e| e.leased_to(&fence.agent, fence.epoch))
            {
                guard.1.entries.remove(id);
            }
        }
        Ok(Accepted { done: !going_on })
    }

    /// The agent is alive with these jobs: each lease it still holds is extended; the rest
    /// (canceled, lost, over, unknown) it should drop.
    pub fn renew(&self, token: &AgentToken, renew: Renew) -> Result<Renewed, ServiceError> {
        self.join(token, &renew.hello)?;
        let agent = &renew.hello.agent;
        let lease = self.lease();
        let mut guard = self.lock();
        let jobs = &mut guard.1;
        let mut drop = Vec::new();
        for (id, epoch) in &renew.jobs {
            let cancel = jobs.entries.get(id).is_some_and(|e| {
                e.leased_to(agent, *epoch) && matches!(e.step, Some(Step::Cancel))
            });
            if cancel {
                jobs.entries.remove(id);
                drop.push(id.clone());
            } else if !jobs.renew(id, agent, *epoch, lease) {
                drop.push(id.clone());
            }
        }
        Ok(Renewed { drop })
    }

    /// Whether `agent` (joined with `token`) holds a job whose release recorded `digest`.
    pub fn may_fetch(
        &self,
        token: &AgentToken,
        agent: &str,
        digest: &str,
    ) -> Result<(), ServiceError> {
        self.claim(token, agent)?;
        let guard = self.lock();
        let held = guard.1.entries.values().any(|e| {
            matches!(&e.held, Held::Leased { agent: a, .. } if a == agent)
                && e.dispatch.digests.iter().any(|d| d == digest)
        });
        if held {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "agent {agent} holds no job that runs plugin {}",
                crate::types::escape(digest)
            )))
        }
    }

    /// Every agent heard from, by name.
    pub fn list(&self) -> Vec<AgentView> {
        let lease = self.lease();
        let guard = self.lock();
        let (registry, jobs) = &*guard;
        (registry.agents.iter())
            .map(|(name, record)| {
                let mut held: Vec<String> = (jobs.entries.iter())
                    .filter(|(_, e)| matches!(&e.held, Held::Leased { agent, .. } if agent == name))
                    .map(|(id, _)| id.clone())
                    .collect();
                held.sort();
                AgentView {
                    name: name.clone(),
                    pool: record.pool.clone(),
                    capabilities: record.capabilities.clone(),
                    online: registry.online(name, lease),
                    disabled: registry.disabled.contains(name),
                    last_seen: record.last_seen_at,
                    jobs: held,
                }
            })
            .collect()
    }

    /// Disables (no new job) or enables agent `name`.
    pub fn set_disabled(
        &self,
        store: &crate::store::Store,
        name: &str,
        disabled: bool,
    ) -> Result<AgentView, ServiceError> {
        {
            let known = |guard: &(super::Registry, Jobs)| {
                guard.0.agents.contains_key(name) || guard.0.disabled.contains(name)
            };
            if !known(&self.lock()) {
                return Err(ServiceError::NotFound(format!(
                    "there is no agent `{}` (see GET /api/v1/agents)",
                    crate::types::escape(name)
                )));
            }
            // Stored first: what the admin is told holds across a restart.
            store
                .set_agent_disabled(name, disabled)
                .map_err(|e| ServiceError::Internal(e.into()))?;
            let mut guard = self.lock();
            let (registry, jobs) = &mut *guard;
            if disabled {
                registry.disabled.insert(name.to_owned());
                // Its waiting poll takes nothing more.
                jobs.idle.retain(|i| i.agent != name);
            } else {
                registry.disabled.remove(name);
            }
        }
        Ok(self
            .list()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap_or(AgentView {
                name: name.to_owned(),
                pool: String::new(),
                capabilities: Default::default(),
                online: false,
                disabled,
                last_seen: 0,
                jobs: Vec::new(),
            }))
    }

    /// Agents online and jobs queued, per pool, for `/metrics`.
    pub fn gauges(&self) -> Vec<PoolGauges> {
        let lease = self.lease();
        let guard = self.lock();
        let (registry, jobs) = &*guard;
        (self.pools.names.iter())
            .map(|pool| PoolGauges {
                pool: pool.clone(),
                online: (registry.agents.iter())
                    .filter(|(n, a)| &a.pool == pool && registry.online(n, lease))
                    .count() as u64,
                queued: (jobs.entries.values())
                    .filter(|e| &e.dispatch.pool == pool && matches!(e.held, Held::Queued { .. }))
                    .count() as u64,
            })
            .collect()
    }

    /// The dispatch latencies so far (queued to leased).
    pub fn dispatch_latencies(&self) -> crate::service::metrics::Histogram {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One pool's gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGauges {
    /// The pool.
    pub pool: String,
    /// Its agents online.
    pub online: u64,
    /// Its jobs waiting for an agent.
    pub queued: u64,
}

/// `RELEASE.STAGE.ATTEMPT` split (names never hold a `.`).
fn split(id: &str) -> (&str, &str, Option<u32>) {
    let mut parts = id.rsplitn(3, '.');
    let attempt = parts.next().and_then(|a| a.parse().ok());
    let stage = parts.next().unwrap_or("");
    let release = parts.next().unwrap_or("");
    (release, stage, attempt)
}
