//! Stages with a pool run on agents: `Prepare` and `RunTask` of such a stage go to [`Jobs`] (the
//! service's dispatcher) instead of the local plugin host. The engine resolves what the agent
//! is given — the artifact sources' and tasks' configurations, variables, grants, limits and
//! plugin digests — from the release, exactly as for a local run, and finishes what comes back
//! (secret outputs sealed, the log stored with the task's end). The dispatcher speaks to agents;
//! the engine never does.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::driver::{Msg, TaskLog};
use super::run::{context, fetch_as, recorded_digest};
use super::vars::Scope;
use super::{Engine, EngineError};
use crate::core::{Event, Lease, Release, TaskOutcome};
use crate::pipeline::GrantSpec;
use crate::types::job::{DirCall, GateReported, GrantCall, PluginCall, SourceCall, TaskCall};
use crate::types::{LogLine, TaskInput, TaskReport};

/// A boxed future, as [`Jobs`] returns them.
pub type JobFuture<T> = Pin<Box<dyn Future<Output = Remote<T>> + Send>>;

/// Told once the report it came with was committed: the release after it, or why it was not.
pub type Ack = oneshot::Sender<Result<Release, EngineError>>;

/// Runs the jobs of stages with a pool on agents.
pub trait Jobs: Send + Sync {
    /// Queues the job of `dispatch` for an agent of its pool that meets its demands (or, with
    /// a lease held, gives it back to that agent), and resolves once the agent prepared its
    /// workspace, or the assignment did (nothing to fetch: [`Remote::Nothing`]), or the agent
    /// was lost. Dropped: the deployment was canceled.
    fn prepare(&self, dispatch: Dispatch) -> JobFuture<Result<(), String>>;

    /// Gives task `call` (committed as started on the lease's agent) to that agent, and
    /// resolves with its report, or once the agent was lost. Dropped: canceled.
    fn run_task(&self, dispatch: Dispatch, index: usize, call: TaskCall) -> JobFuture<TaskDone>;

    /// Gives the `kind` (`pre` or `post`) gates of the dispatch's stage to any agent of its
    /// pool that meets its demands, and resolves with one answer per gate, or once that agent
    /// was lost, or [`Remote::Unclaimed`] if no agent took them by `until` (milliseconds since
    /// the epoch). Nothing is committed for it: an evaluation changes nothing until its
    /// results are. Dropped: canceled.
    fn evaluate_gates(
        &self,
        dispatch: Dispatch,
        kind: &'static str,
        gates: Vec<TaskCall>,
        until: u64,
    ) -> JobFuture<Vec<GateReported>>;
}

/// A job as the engine hands it over.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The pipeline.
    pub pipeline: String,
    /// The release.
    pub release: String,
    /// The stage.
    pub stage: String,
    /// The attempt.
    pub attempt: u32,
    /// The stage's pool.
    pub pool: String,
    /// Its demands, as written.
    pub demands: Vec<String>,
    /// The lease, while an agent holds it.
    pub lease: Option<Lease>,
    /// The artifacts to fetch (empty: nothing to fetch; the assignment prepares).
    pub artifacts: Vec<SourceCall>,
    /// The digests of every plugin the release recorded: what its agent may fetch.
    pub digests: Vec<String>,
}

/// What came back for a job.
pub enum Remote<T> {
    /// The lease's agent reported `value`; `ack` hears whether it was committed.
    Reported {
        /// The report.
        value: T,
        /// The agent.
        agent: String,
        /// Told after the commit.
        ack: Ack,
    },
    /// Nothing to apply: the assignment did the work (prepared, with nothing to fetch).
    Nothing,
    /// No agent took it before its deadline (a gate sample's: the gates' timeout).
    Unclaimed,
    /// The agent holding the lease of `epoch` stopped renewing it.
    Lost {
        /// The lease's epoch.
        epoch: u64,
    },
}

/// A task's end as an agent reports it.
#[derive(Debug, Clone)]
pub struct TaskDone {
    /// The task's report, or its failure in the host's words.
    pub outcome: Result<TaskReport, String>,
    /// Its whole log.
    pub lines: Vec<LogLine>,
}

/// Where grants and the scope put the agent's workspace: the agent puts in its own.
const AGENT_WORKSPACE: &str = "$(sluice.workspace)";

impl Engine {
    /// The job of `stage`'s `attempt` as the dispatcher takes it; `with_artifacts` resolves the
    /// artifact sources too (for `Prepare`).
    pub(super) fn dispatch_of(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        with_artifacts: bool,
    ) -> Result<Dispatch, String> {
        let spec = release
            .plan
            .stages
            .iter()
            .find(|s| s.name == stage)
            .ok_or_else(|| format!("stage `{stage}` is not in the plan"))?;
        let lease = release
            .stage(stage)
            .and_then(|s| s.attempts.iter().find(|a| a.number == attempt))
            .and_then(|a| a.held_lease().cloned());
        let artifacts = if with_artifacts {
            self.source_calls(release)?
        } else {
            Vec::new()
        };
        Ok(Dispatch {
            pipeline: release.pipeline.clone(),
            release: release.name.clone(),
            stage: stage.to_owned(),
            attempt,
            pool: spec.pool.clone().unwrap_or_default(),
            demands: spec.demands.clone(),
            lease,
            artifacts,
            digests: release.digests.iter().map(|(_, d)| d.clone()).collect(),
        })
    }

    /// Every artifact of the release, as an agent fetches it.
    fn source_calls(&self, release: &Release) -> Result<Vec<SourceCall>, String> {
        release
            .artifacts
            .iter()
            .map(|chosen| {
                let spec = release
                    .plan
                    .artifacts
                    .iter()
                    .find(|a| a.alias == chosen.alias)
                    .ok_or_else(|| {
                        format!("artifact `{}` is not in the release's plan", chosen.alias)
                    })?;
                let scope = Scope::for_source(&release.plan, &spec.config, &self.keys)?;
                let data_dir = self.data_dir.display().to_string();
                let resolve = |text: &str| {
                    Ok(text
                        .replace("$(sluice.pipeline-dir)", &release.plan.dir)
                        .replace("$(sluice.data-dir)", &data_dir))
                };
                Ok(SourceCall {
                    alias: chosen.alias.clone(),
                    plugin: plugin_call(release, &spec.source)?,
                    config: scope.substitute_json(&spec.config)?.to_string(),
                    version: chosen.version.clone(),
                    fetch_as: fetch_as(&chosen.version).to_owned(),
                    grants: grant_call(&spec.grants, &resolve)?,
                    mask: scope.secrets(),
                })
            })
            .collect()
    }

    /// Task `index` of `stage`, resolved for an agent: its input as a local run gives it, its
    /// grants with `$(sluice.workspace)` left for the agent's own workspace.
    pub(super) fn task_call(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        index: usize,
    ) -> Result<TaskCall, String> {
        let stage_index = stage_index(release, stage)?;
        let spec = release.plan.stages[stage_index]
            .tasks
            .get(index)
            .ok_or_else(|| format!("stage `{stage}` has no task {index}"))?;
        let step = Resolve {
            name: &spec.name,
            plugin: &spec.plugin,
            config: &spec.config,
            grants: &spec.grants,
            limits: spec.limits,
        };
        self.resolve_call(release, stage_index, attempt, step)
    }

    /// One step (a task or a gate) of stage `stage_index` resolved for an agent.
    pub(super) fn resolve_call(
        &self,
        release: &Release,
        stage_index: usize,
        attempt: u32,
        step: Resolve<'_>,
    ) -> Result<TaskCall, String> {
        let scope = Scope::for_task(
            release,
            stage_index,
            attempt,
            &self.data_dir,
            Path::new(AGENT_WORKSPACE),
            &self.keys,
        )?;
        let config = scope.substitute_json(step.config)?;
        let stage = &release.plan.stages[stage_index].name;
        Ok(TaskCall {
            name: step.name.to_owned(),
            plugin: plugin_call(release, step.plugin)?,
            input: TaskInput {
                config: config.to_string(),
                context: context(release, stage, attempt, step.grants.workspace.is_some()),
                variables: scope.variables(),
            },
            grants: grant_call(step.grants, &|text| scope.substitute_grant(text))?,
            limits: step.limits,
            mask: scope.secrets(),
        })
    }

    /// An agent's report of a task, finished as a local task's is: its secret outputs masked in
    /// its log and sealed.
    pub(super) fn finish_remote(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        task: &str,
        done: TaskDone,
    ) -> (TaskOutcome, Vec<LogLine>) {
        let TaskDone { outcome, mut lines } = done;
        let outcome = match outcome {
            Ok(report) => self.finish_report(release, stage, attempt, task, &mut lines, report),
            Err(failure) => TaskOutcome::Failed(failure),
        };
        (outcome, lines)
    }
}

/// What a step of a stage is, as the pipeline wrote it: resolved by [`Engine::resolve_call`].
pub(super) struct Resolve<'a> {
    pub(super) name: &'a str,
    pub(super) plugin: &'a str,
    pub(super) config: &'a serde_json::Value,
    pub(super) grants: &'a GrantSpec,
    pub(super) limits: crate::types::Limits,
}

/// The index of `stage` in the release's plan.
pub(super) fn stage_index(release: &Release, stage: &str) -> Result<usize, String> {
    (release.plan.stages.iter())
        .position(|s| s.name == stage)
        .ok_or_else(|| format!("stage `{stage}` is not in the plan"))
}

/// The work of one effect, answering its driver with one message.
pub(super) type Work = Pin<Box<dyn Future<Output = Msg> + Send>>;

impl Engine {
    /// `Prepare` of a stage on an agent: its job queued (or given back to its lease holder),
    /// answered once prepared there, or lost. Without a dispatcher (a local run), the stage
    /// fails: only `sluice serve` has agents.
    pub(super) fn remote_prepare(
        self: &Arc<Self>,
        release: &Release,
        stage: String,
        attempt: u32,
    ) -> Work {
        let failed = |reason: String, stage: String| -> Work {
            Box::pin(async move {
                let event = Event::PrepareFailed {
                    stage,
                    attempt,
                    reason,
                };
                Msg::Event(event, "engine".into())
            })
        };
        let Some(jobs) = self.jobs.get().cloned() else {
            let pool = release
                .plan
                .stages
                .iter()
                .find(|s| s.name == stage)
                .and_then(|s| s.pool.clone())
                .unwrap_or_default();
            let why = format!(
                "stage `{stage}` runs on an agent of pool `{pool}`: only `sluice serve` \
                 dispatches jobs to agents"
            );
            return failed(why, stage);
        };
        let dispatch = match self.dispatch_of(release, &stage, attempt, true) {
            Ok(dispatch) => dispatch,
            Err(why) => return failed(why, stage),
        };
        Box::pin(async move {
            match jobs.prepare(dispatch).await {
                Remote::Nothing | Remote::Unclaimed => Msg::Nothing,
                Remote::Lost { epoch } => lost(stage, attempt, epoch),
                Remote::Reported { value, agent, ack } => Msg::Reported {
                    event: match value {
                        Ok(()) => Event::Prepared { stage, attempt },
                        Err(reason) => Event::PrepareFailed {
                            stage,
                            attempt,
                            reason,
                        },
                    },
                    actor: format!("agent:{agent}"),
                    log: None,
                    ack,
                },
            }
        })
    }

    /// `RunTask` of a stage on an agent: the task resolved here, run by the lease's agent,
    /// its report finished here; or the agent lost.
    pub(super) fn remote_task(
        self: &Arc<Self>,
        release: &Release,
        stage: String,
        attempt: u32,
        task: usize,
    ) -> Work {
        let name = release
            .plan
            .stages
            .iter()
            .find(|s| s.name == stage)
            .and_then(|s| s.tasks.get(task))
            .map_or_else(|| task.to_string(), |t| t.name.clone());
        let prepared = self
            .jobs
            .get()
            .cloned()
            .ok_or_else(|| "only `sluice serve` dispatches jobs to agents".to_owned());
        let prepared = prepared.and_then(|jobs| {
            let call = self.task_call(release, &stage, attempt, task)?;
            let dispatch = self.dispatch_of(release, &stage, attempt, false)?;
            Ok((jobs, call, dispatch))
        });
        let (jobs, call, dispatch) = match prepared {
            Ok(parts) => parts,
            Err(why) => {
                let (event, log) = task_end(
                    stage,
                    attempt,
                    task,
                    name,
                    TaskOutcome::Failed(why),
                    Vec::new(),
                );
                return Box::pin(async move { Msg::TaskDone(event, log) });
            }
        };
        let (engine, release) = (self.clone(), release.clone());
        Box::pin(async move {
            match jobs.run_task(dispatch, task, call).await {
                Remote::Nothing | Remote::Unclaimed => Msg::Nothing,
                Remote::Lost { epoch } => lost(stage, attempt, epoch),
                Remote::Reported { value, agent, ack } => {
                    let (outcome, lines) =
                        engine.finish_remote(&release, &stage, attempt, &name, value);
                    let (event, log) = task_end(stage, attempt, task, name, outcome, lines);
                    Msg::Reported {
                        event,
                        actor: format!("agent:{agent}"),
                        log: Some(log),
                        ack,
                    }
                }
            }
        })
    }
}

/// A task's end and its log, to commit together.
fn task_end(
    stage: String,
    attempt: u32,
    task: usize,
    name: String,
    outcome: TaskOutcome,
    lines: Vec<LogLine>,
) -> (Event, TaskLog) {
    let log = TaskLog {
        stage: stage.clone(),
        attempt,
        task: name,
        lines,
    };
    let event = Event::TaskFinished {
        stage,
        attempt,
        task,
        outcome,
    };
    (event, log)
}

pub(super) fn lost(stage: String, attempt: u32, epoch: u64) -> Msg {
    let event = Event::AgentLost {
        stage,
        attempt,
        epoch,
    };
    Msg::Event(event, "engine".into())
}

/// The plugin `reference` of the release: the digest it recorded.
fn plugin_call(release: &Release, reference: &str) -> Result<PluginCall, String> {
    let digest = recorded_digest(release, reference).ok_or_else(|| {
        format!(
            "release {} recorded no digest for plugin `{reference}`: an agent fetches plugins \
             by digest; create a new release",
            release.name
        )
    })?;
    Ok(PluginCall {
        reference: reference.to_owned(),
        digest: digest.to_string(),
    })
}

/// The pipeline's grants, resolved with `resolve`, for the agent to check and grant.
fn grant_call(
    spec: &GrantSpec,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<GrantCall, String> {
    let dirs = spec
        .dirs
        .iter()
        .map(|d| {
            Ok(DirCall {
                host: resolve(&d.host)?,
                guest: resolve(&d.guest)?,
                access: d.access,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(GrantCall {
        dirs,
        env: spec.env.clone(),
        hosts: spec.hosts.clone(),
        workspace: spec.workspace,
    })
}

/// Whether `stage` of `release` runs on agents.
pub(super) fn pooled(release: &Release, stage: &str) -> bool {
    release
        .plan
        .stages
        .iter()
        .any(|s| s.name == stage && s.pool.is_some())
}

/// The dispatcher, as the engine holds it.
pub(super) type SharedJobs = Arc<dyn Jobs>;
