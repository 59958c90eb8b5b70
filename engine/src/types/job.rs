//! The job protocol between the server and its agents, as plain values (JSON on the wire). One
//! job is one stage-deployment attempt on one agent: the server commits the assignment (the
//! lease and its epoch) before the agent hears of it, then hands the agent one [`Step`] at a
//! time — prepare the workspace, run task *i* (committed as started on the agent first), cancel
//! — and takes its reports, each fenced by the lease's epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Access, Capabilities, Limits, LogLine, TaskInput, TaskReport, Version};

/// A job's id: `RELEASE.STAGE.ATTEMPT` (names never hold a `.`).
pub fn job_id(release: &str, stage: &str, attempt: u32) -> String {
    format!("{release}.{stage}.{attempt}")
}

/// An agent asking for work (`POST /api/v1/agent/jobs/next`), and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hello {
    /// The agent's name (unique among the server's agents).
    pub agent: String,
    /// The pool it joins (its token must be allowed in it).
    pub pool: String,
    /// What it offers: the system's (os, arch, hostname, sluice) and its operator's.
    pub capabilities: Capabilities,
    /// How many jobs it runs at once.
    pub max_jobs: u32,
    /// The jobs it holds now (ids), so a restarted server knows it is busy.
    #[serde(default)]
    pub running: Vec<String>,
}

/// A job as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Job {
    /// `RELEASE.STAGE.ATTEMPT`.
    pub id: String,
    /// The lease's epoch: every report carries it, and one from an older epoch gets 409.
    pub epoch: u64,
    /// The pipeline.
    pub pipeline: String,
    /// The release.
    pub release: String,
    /// The stage.
    pub stage: String,
    /// The attempt.
    pub attempt: u32,
    /// Renew the lease this often (milliseconds); it is lost after three renewals missed.
    pub renew_ms: u64,
}

/// A plugin a step runs: its reference (for messages) and the digest the agent fetches it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginCall {
    /// As the pipeline names it.
    pub reference: String,
    /// `sha256:...`: the bytes the release recorded.
    pub digest: String,
}

/// A directory a step is granted, as the pipeline wrote it with its variables resolved, except
/// `$(sluice.workspace)`: the agent's own workspace of the job. The agent grants it only under
/// one of its `--allow-dir` directories (or inside the job's workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirCall {
    /// The host path on the agent.
    pub host: String,
    /// Where the plugin sees it.
    pub guest: String,
    /// Read-only or read-write.
    pub access: Access,
}

/// What a step may reach, for the agent to check and grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrantCall {
    /// Directories.
    pub dirs: Vec<DirCall>,
    /// Environment variables, read from the agent's environment.
    pub env: Vec<String>,
    /// Outbound hosts.
    pub hosts: Vec<String>,
    /// The job's workspace, at `/workspace`, and how.
    pub workspace: Option<Access>,
}

/// One artifact to fetch into the job's workspace (`WORKSPACE/ALIAS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceCall {
    /// The artifact's alias.
    pub alias: String,
    /// Its source.
    pub plugin: PluginCall,
    /// The source's configuration (JSON text, variables resolved).
    pub config: String,
    /// The version chosen.
    pub version: Version,
    /// What `fetch` is given: the version's pin, or its id.
    pub fetch_as: String,
    /// The source's grants (besides its destination, `/artifact`).
    pub grants: GrantCall,
    /// Secret values to mask in what it writes.
    pub mask: Vec<String>,
}

/// One task to run, resolved by the server: its input, grants and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskCall {
    /// The task's name.
    pub name: String,
    /// Its plugin.
    pub plugin: PluginCall,
    /// What it is given (configuration, context, variables).
    pub input: TaskInput,
    /// What it may reach.
    pub grants: GrantCall,
    /// Its limits.
    pub limits: Limits,
    /// Secret values to mask in its log.
    pub mask: Vec<String>,
}

/// What the agent does next for a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Nothing yet: ask again.
    Wait,
    /// Make the workspace and fetch these artifacts into it; report `prepared`.
    Prepare {
        /// The artifacts.
        artifacts: Vec<SourceCall>,
    },
    /// Run task `index` (committed as started on this agent); report it.
    Task {
        /// The task's index in the stage.
        index: usize,
        /// The task.
        call: Box<TaskCall>,
    },
    /// Evaluate these gates once, concurrently, in a fresh workspace; report `gates`. A gate
    /// job is only this: it changes nothing, so its lease is the board's alone.
    Gates {
        /// The gates, resolved as tasks are (the name is the gate's).
        gates: Vec<TaskCall>,
    },
    /// Stop what runs for the job and drop it (canceled, abandoned, or not yours any more).
    Cancel,
}

/// A report's fence: the job's lease epoch, and the agent sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Fence {
    /// The agent.
    pub agent: String,
    /// The lease's epoch.
    pub epoch: u64,
}

/// `POST /api/v1/agent/jobs/{id}/prepared`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PreparedReport {
    /// The agent and the epoch.
    #[serde(flatten)]
    pub fence: Fence,
    /// Why preparing failed, if it did.
    pub error: Option<String>,
}

/// `POST /api/v1/agent/jobs/{id}/tasks/{index}/log`: lines `offset..` of the task's log. An
/// append is idempotent by offset: lines the server has are skipped, a gap is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogBatch {
    /// The agent and the epoch.
    #[serde(flatten)]
    pub fence: Fence,
    /// The number of the first line.
    pub offset: u64,
    /// The lines.
    pub lines: Vec<LogLine>,
}

/// The answer to a log batch: how many lines the server has (send from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogAck {
    /// Lines held.
    pub lines: u64,
}

/// `POST /api/v1/agent/jobs/{id}/tasks/{index}`: how the task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskReported {
    /// The agent and the epoch.
    #[serde(flatten)]
    pub fence: Fence,
    /// The report, or the failure as the host words it.
    pub outcome: Result<TaskReport, String>,
    /// How many log lines the task wrote (all sent before this).
    pub lines: u64,
}

/// `POST /api/v1/agent/jobs/{id}/gates`: one answer from every gate of the step, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatesReported {
    /// The agent and the epoch.
    #[serde(flatten)]
    pub fence: Fence,
    /// Per gate: healthy, or why not (or why it could not be evaluated).
    pub results: Vec<GateReported>,
}

/// One gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GateReported {
    /// The gate's name.
    pub gate: String,
    /// Healthy, or why not.
    pub outcome: Result<(), String>,
}

/// The id of the job evaluating `kind` (`pre` or `post`) gates of a stage's attempt:
/// `RELEASE.STAGE.ATTEMPT.KIND-gates`.
pub fn gates_job_id(release: &str, stage: &str, attempt: u32, kind: &str) -> String {
    format!("{release}.{stage}.{attempt}.{kind}-gates")
}

/// The answer to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Accepted {
    /// The job is over for the agent: nothing more will come (remove the workspace).
    pub done: bool,
}

/// `POST /api/v1/agent/renew`: the agent is alive, holding these jobs (id -> epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Renew {
    /// The agent, as it asks for jobs: a server started again re-joins it from this.
    pub hello: Hello,
    /// Its jobs and their epochs.
    pub jobs: BTreeMap<String, u64>,
}

/// The answer to a renewal: per job, whether the agent still holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Renewed {
    /// The jobs it no longer holds (canceled, lost, over): stop them.
    pub drop: Vec<String>,
}
