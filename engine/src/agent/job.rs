//! One job on the agent: ask for the next step, take it, report it, until the job is over.
//! The agent is the authority on what it started: a step it already took (asked again after a
//! server restart) is reported again, never run twice. Reports are retried with backoff until
//! the server answers; a 409 means the job is not this agent's any more: it is dropped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Agent;
use crate::api::client::Reply;
use crate::plugin::Sandbox;
use crate::types::job::{
    Accepted, Fence, GateReported, GatesReported, Job, LogAck, LogBatch, PreparedReport,
    SourceCall, Step, TaskCall, TaskReported,
};
use crate::types::{Health, LogEvent, LogLine, TaskReport};

/// How often a running task's new log lines go to the server.
const SHIP_EVERY: Duration = Duration::from_millis(200);

/// Why a job ended on this agent.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The server says it is over (the stage moved on).
    Done,
    /// Canceled, or not this agent's any more (409): dropped.
    Dropped(String),
}

/// What the server said to a batch of log lines.
enum Shipped {
    /// It holds this many lines of the task's log.
    Held(u64),
    /// The job is not this agent's (any more).
    Refused(String),
    /// No answer (yet): try again.
    Unanswered,
}

/// A job being run, and what it did last.
pub(super) struct Running<'a> {
    pub(super) agent: &'a Agent,
    pub(super) job: Job,
    pub(super) workspace: PathBuf,
    /// Flips when the server says to drop the job (a renewal's answer).
    pub(super) dropped: watch::Receiver<bool>,
    /// The last task it ran, its report and its log (sent again if asked again).
    last: Option<(usize, TaskReported, Vec<LogLine>)>,
    prepared: Option<PreparedReport>,
    evaluated: Option<GatesReported>,
}

impl<'a> Running<'a> {
    pub(super) fn new(
        agent: &'a Agent,
        job: Job,
        workspace: PathBuf,
        dropped: watch::Receiver<bool>,
    ) -> Self {
        Self {
            agent,
            job,
            workspace,
            dropped,
            last: None,
            prepared: None,
            evaluated: None,
        }
    }

    fn fence(&self) -> Fence {
        Fence {
            agent: self.agent.config.name.clone(),
            epoch: self.job.epoch,
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/agent/jobs/{}{rest}", self.job.id)
    }

    /// Runs the job to its end.
    pub(super) async fn run(mut self) -> Ended {
        loop {
            if *self.dropped.borrow() {
                return Ended::Dropped("the server dropped it".into());
            }
            let fence = serde_json::to_value(self.fence()).expect("a fence is JSON");
            let reply = match self
                .agent
                .call("POST", &self.path("/step"), &fence, &self.dropped)
                .await
            {
                Ok(reply) => reply,
                Err(ended) => return ended,
            };
            let step: Step = match serde_json::from_slice(&reply.body) {
                Ok(step) => step,
                Err(e) => {
                    return Ended::Dropped(format!("the server sent a step I cannot read: {e}"));
                }
            };
            let ended = match step {
                Step::Wait => continue,
                Step::Cancel => return Ended::Dropped("canceled".into()),
                Step::Prepare { artifacts } => self.prepare(artifacts).await,
                Step::Task { index, call } => self.task(index, *call).await,
                Step::Gates { gates } => self.gates(&gates).await,
            };
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Makes a fresh workspace and fetches every artifact into it; reports.
    async fn prepare(&mut self, artifacts: Vec<SourceCall>) -> Option<Ended> {
        if self.prepared.is_none() {
            let error = self.fetch_all(&artifacts).await.err();
            if let Some(why) = &error {
                tracing::warn!(job = %self.job.id, "preparing failed: {why}");
            }
            self.prepared = Some(PreparedReport {
                fence: self.fence(),
                error,
            });
        }
        let report = serde_json::to_value(self.prepared.as_ref()).expect("JSON");
        self.report(&self.path("/prepared"), &report).await
    }

    async fn fetch_all(&self, artifacts: &[SourceCall]) -> Result<(), String> {
        if self.workspace.exists() {
            std::fs::remove_dir_all(&self.workspace)
                .map_err(|e| format!("cannot clear workspace {}: {e}", self.workspace.display()))?;
        }
        std::fs::create_dir_all(&self.workspace)
            .map_err(|e| format!("cannot create workspace {}: {e}", self.workspace.display()))?;
        for source in artifacts {
            let plugin = self.agent.plugin(&source.plugin).await?;
            let into = self.workspace.join(&source.alias);
            std::fs::create_dir_all(&into)
                .map_err(|e| format!("cannot create {}: {e}", into.display()))?;
            let mut grants = self.agent.allowed.grants(&source.grants, &self.workspace)?;
            grants = grants
                .dir(
                    &into,
                    "/artifact".to_owned(),
                    crate::types::Access::ReadWrite,
                )
                .map_err(|e| e.to_string())?;
            let sandbox = Sandbox {
                grants,
                limits: crate::types::Limits::default(),
                mask: source.mask.clone(),
                sink: None,
            };
            let fetched = (self.agent.host)
                .fetch(
                    &plugin,
                    sandbox,
                    &source.config,
                    &source.fetch_as,
                    "/artifact",
                )
                .await;
            fetched.result.map_err(|f| {
                format!(
                    "fetching artifact `{}` version {} failed: {f}",
                    source.alias, source.version.id
                )
            })?;
        }
        Ok(())
    }

    /// Evaluates every gate once, concurrently, in a fresh workspace (unless they were: then
    /// the answers are sent again); reports.
    async fn gates(&mut self, gates: &[TaskCall]) -> Option<Ended> {
        if self.evaluated.is_none() {
            let fresh = std::fs::create_dir_all(&self.workspace)
                .map_err(|e| format!("cannot create workspace {}: {e}", self.workspace.display()));
            let evaluations = gates.iter().map(|call| async {
                let outcome = match &fresh {
                    Ok(()) => self.evaluate(call).await,
                    Err(why) => Err(why.clone()),
                };
                GateReported {
                    gate: call.name.clone(),
                    outcome,
                }
            });
            let mut dropped = self.dropped.clone();
            let results = tokio::select! {
                results = futures_util::future::join_all(evaluations) => results,
                () = until_dropped(&mut dropped) => {
                    return Some(Ended::Dropped("canceled while evaluating gates".into()));
                }
            };
            self.evaluated = Some(GatesReported {
                fence: self.fence(),
                results,
            });
        }
        let report = serde_json::to_value(self.evaluated.as_ref()).expect("JSON");
        self.report(&self.path("/gates"), &report).await
    }

    /// One gate: healthy, or why not.
    async fn evaluate(&self, call: &TaskCall) -> Result<(), String> {
        let plugin = self.agent.plugin(&call.plugin).await?;
        let sandbox = Sandbox {
            grants: self.agent.allowed.grants(&call.grants, &self.workspace)?,
            limits: call.limits,
            mask: call.mask.clone(),
            sink: None,
        };
        let evaluated = self.agent.host.evaluate_gate(&plugin, sandbox, &call.input);
        match evaluated.await.result {
            Ok(Health::Healthy) => Ok(()),
            Ok(Health::Unhealthy(why)) => Err(why),
            Err(failure) => Err(format!("the gate could not be evaluated: {failure}")),
        }
    }

    /// Runs task `index` (unless it ran already: then its report is sent again); ships its
    /// log as it goes, then reports.
    async fn task(&mut self, index: usize, call: TaskCall) -> Option<Ended> {
        let already = self.last.as_ref().is_some_and(|(i, ..)| *i == index);
        if !already {
            let (report, logs) = self.execute(index, &call).await;
            self.last = Some((index, report, logs));
        }
        let (_, report, logs) = self.last.as_ref().expect("set above");
        let body = serde_json::to_value(report).expect("JSON");
        let path = self.path(&format!("/tasks/{index}"));
        loop {
            if let Some(ended) = self.flush(index, logs).await {
                return Some(ended);
            }
            let reply = match self.agent.call("POST", &path, &body, &self.dropped).await {
                Ok(reply) => reply,
                Err(ended) => return Some(ended),
            };
            // The server lost lines (it restarted): they go again, from where it is.
            if reply.status == 422 {
                tracing::info!(job = %self.job.id, "{}", why(&reply));
                continue;
            }
            return accepted(&reply);
        }
    }

    async fn execute(&mut self, index: usize, call: &TaskCall) -> (TaskReported, Vec<LogLine>) {
        let lines: Arc<Mutex<Vec<LogLine>>> = Arc::default();
        let outcome = async {
            let plugin = self.agent.plugin(&call.plugin).await?;
            let grants = self.agent.allowed.grants(&call.grants, &self.workspace)?;
            let sink_lines = lines.clone();
            let sandbox = Sandbox {
                grants,
                limits: call.limits,
                mask: call.mask.clone(),
                sink: Some(Arc::new(move |event| {
                    if let LogEvent::Line(line) = event {
                        sink_lines
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(line.clone());
                    }
                })),
            };
            let run = self.agent.host.run_task(&plugin, sandbox, &call.input);
            tokio::pin!(run);
            let mut sent = 0u64;
            let mut ship = tokio::time::interval(SHIP_EVERY);
            ship.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut dropped = self.dropped.clone();
            let invocation = loop {
                tokio::select! {
                    invocation = &mut run => break invocation,
                    // Canceled, or lost to another agent: the call stops here.
                    () = until_dropped(&mut dropped) => {
                        return Err("stopped: the server dropped the job".to_owned());
                    }
                    _ = ship.tick() => {
                        let batch: Vec<LogLine> = {
                            let held = lines.lock().unwrap_or_else(|e| e.into_inner());
                            held.get(sent as usize..).unwrap_or_default().to_vec()
                        };
                        if !batch.is_empty()
                            && let Shipped::Held(n) = self.ship(index, sent, batch).await
                        {
                            sent = n;
                        }
                    }
                }
            };
            Ok::<_, String>(invocation)
        }
        .await;
        let (outcome, logs): (Result<TaskReport, String>, Vec<LogLine>) = match outcome {
            Ok(invocation) => (
                invocation.result.map_err(|f| f.to_string()),
                invocation.logs,
            ),
            Err(why) => (Err(why), Vec::new()),
        };
        let report = TaskReported {
            fence: self.fence(),
            outcome,
            lines: logs.len() as u64,
        };
        (report, logs)
    }

    /// Sends lines `from..` of the log; the server's count of lines held, if it answered.
    async fn ship(&self, index: usize, from: u64, lines: Vec<LogLine>) -> Shipped {
        let batch = LogBatch {
            fence: self.fence(),
            offset: from,
            lines,
        };
        let body = serde_json::to_value(&batch).expect("JSON");
        let path = self.path(&format!("/tasks/{index}/log"));
        match self.agent.client.post(&path, &body).await {
            Ok(reply) if reply.status == 200 => serde_json::from_slice::<LogAck>(&reply.body)
                .map_or(Shipped::Unanswered, |ack| Shipped::Held(ack.lines)),
            Ok(reply) if matches!(reply.status, 400 | 403 | 404 | 409) => {
                Shipped::Refused(format!("{} {}", reply.status, why(&reply)))
            }
            _ => Shipped::Unanswered,
        }
    }

    /// Sends the whole log until the server holds every line (from where it says it is); a
    /// refusal (the job is not ours any more) or a drop ends the job.
    async fn flush(&self, index: usize, logs: &[LogLine]) -> Option<Ended> {
        if logs.is_empty() {
            return None; // the server holds no line of a task before its report either
        }
        let mut backoff = super::Backoff::default();
        let mut held = 0u64;
        for _ in 0..50 {
            if *self.dropped.borrow() {
                return Some(Ended::Dropped("the server dropped it".into()));
            }
            let rest = logs.get(held as usize..).unwrap_or_default();
            let chunk = rest.iter().take(512).cloned().collect();
            match self.ship(index, held, chunk).await {
                Shipped::Held(n) if n as usize >= logs.len() => return None,
                Shipped::Held(n) if n != held => held = n,
                Shipped::Refused(why) => return Some(Ended::Dropped(why)),
                _ => backoff.wait().await,
            }
        }
        None
    }

    /// Sends a report until the server answers it: done, go on, or drop the job.
    async fn report(&self, path: &str, body: &serde_json::Value) -> Option<Ended> {
        match self.agent.call("POST", path, body, &self.dropped).await {
            Ok(reply) => accepted(&reply),
            Err(ended) => Some(ended),
        }
    }
}

/// What a report's answer says: over, or go on.
fn accepted(reply: &Reply) -> Option<Ended> {
    match serde_json::from_slice::<Accepted>(&reply.body) {
        Ok(Accepted { done: true }) => Some(Ended::Done),
        Ok(Accepted { done: false }) => None,
        Err(_) => Some(Ended::Dropped(format!(
            "the server refused a report: {} {}",
            reply.status,
            why(reply)
        ))),
    }
}

/// Resolves once the job is dropped (never, if its switch is gone).
async fn until_dropped(dropped: &mut watch::Receiver<bool>) {
    if dropped.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A reply's error message, for a log line.
pub(super) fn why(reply: &Reply) -> String {
    reply
        .json()
        .get("error")
        .and_then(|e| e.as_str())
        .map_or_else(|| reply.text(), str::to_owned)
}
