//! What the core hears and says: events (with `Authority` and task outcomes) and the effects the
//! scheduler carries out. Their wording in the audit log is `describe.rs`.

use super::model::*;

/// A known user who may decide approvals (the approver role; admins have it), with the groups
/// approvers list them through: who a reassignment may hand an approval to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The user's name, as approvers list it.
    pub name: String,
    /// Their groups (`group:NAME` in an approver list).
    pub groups: Vec<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The release was created: start the stages that start with it.
    Created,
    /// Deploy (or redeploy, as a new attempt) a stage by hand. Refused while a stage it comes
    /// after has not succeeded (or waits for its post-deployment approval).
    Deploy {
        /// The stage.
        stage: String,
    },
    /// An admin deploys a stage by hand before the stages it comes after have succeeded (now,
    /// or at a time), and says why.
    DeployOutOfOrder {
        /// The stage.
        stage: String,
        /// Deploy at this time (Unix milliseconds) instead of now.
        at: Option<u64>,
        /// The admin.
        by: String,
        /// Why (required: see [`check_justification`](super::check_justification)).
        justification: String,
    },
    /// A decision on a pending approval.
    Decide {
        /// The stage.
        stage: String,
        /// The attempt the approval belongs to.
        attempt: u32,
        /// Which approval.
        kind: ApprovalKind,
        /// Who decides.
        by: String,
        /// The groups `by` belongs to (resolved by the caller).
        groups: Vec<String>,
        /// Approve or reject.
        approve: bool,
        /// Why.
        comment: String,
        /// In person, or overriding the approvers.
        authority: Authority,
        /// Approve now, deploy at this time (Unix milliseconds; pre-deployment approvals).
        defer_until: Option<u64>,
    },
    /// Hand a pending approval to someone else.
    Reassign {
        /// The stage.
        stage: String,
        /// The attempt the approval belongs to.
        attempt: u32,
        /// Which approval.
        kind: ApprovalKind,
        /// Who hands it over.
        by: String,
        /// The groups `by` belongs to.
        groups: Vec<String>,
        /// The new approver: a user or `group:name`.
        to: String,
        /// Everyone who may be handed an approval at all: the caller's known users with the
        /// approver role, with their groups. A `to` that is none of them (or a group none of
        /// them is in) would strand the approval, so the core refuses it; and names the
        /// eligible ones from this list.
        candidates: Vec<Candidate>,
        /// Why.
        comment: String,
        /// A listed approver (not the release's creator, unless the stage allows them) hands
        /// their part to someone the stage lists, by name or group; an override replaces every
        /// approver with anyone.
        authority: Authority,
    },
    /// A pending approval's timeout passed.
    Expire {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// Which approval.
        kind: ApprovalKind,
    },
    /// A deferred deployment's time came.
    Due {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
    },
    /// What a pending approval was given for changed (a plugin's digest): it is void.
    Void {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// What changed.
        reason: String,
    },
    /// The workspace is ready: artifacts fetched.
    Prepared {
        /// The stage.
        stage: String,
        /// The attempt it was prepared for.
        attempt: u32,
    },
    /// Fetching artifacts failed.
    PrepareFailed {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// The running task finished.
    TaskFinished {
        /// The stage.
        stage: String,
        /// The attempt it ran in.
        attempt: u32,
        /// Task index in the stage.
        task: usize,
        /// How it went.
        outcome: TaskOutcome,
    },
    /// The engine restarted while a task that is not idempotent was running.
    TaskInterrupted {
        /// The stage.
        stage: String,
        /// Task index.
        task: usize,
    },
    /// The engine restarted while an idempotent task was running: run it again.
    TaskRestarted {
        /// The stage.
        stage: String,
        /// Task index.
        task: usize,
    },
    /// An agent of the stage's pool took the deployment's job: the lease, with the next epoch,
    /// is the agent's (committed before the agent hears of the job). With nothing to fetch, the
    /// workspace counts as prepared and the first task pending starts on the agent.
    Assigned {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The agent.
        agent: String,
    },
    /// The agent holding the job's lease of `epoch` stopped renewing it: an idempotent task it
    /// was running (or the workspace it was preparing) goes back to the queue for any agent;
    /// a task that is not idempotent fails the deployment.
    AgentLost {
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The lease's epoch.
        epoch: u64,
    },
    /// Cancel the stage's current deployment.
    Cancel {
        /// The stage.
        stage: String,
    },
    /// Abandon the release.
    Abandon,
    /// Deploy (or redeploy) a stage at a time (Unix milliseconds); now, if that has passed.
    Schedule {
        /// The stage.
        stage: String,
        /// When.
        at: u64,
    },
    /// Every gate of the stage's pending gate set answered once.
    GatesEvaluated {
        /// The stage.
        stage: String,
        /// The attempt they were evaluated for.
        attempt: u32,
        /// Pre or post.
        kind: ApprovalKind,
        /// Each gate's answer.
        results: Vec<GateResult>,
    },
    /// Redeploy the stage (a new attempt, without approvals or gates) to roll back `of`, a
    /// later release whose post-deployment gates failed on it.
    Rollback {
        /// The stage.
        stage: String,
        /// The release being rolled back.
        of: String,
    },
    /// An admin lets a deployment that waits out a freeze window go now.
    BreakGlass {
        /// The stage.
        stage: String,
        /// The admin.
        by: String,
        /// Why (required).
        justification: String,
    },
    /// A queued deployment's turn came: it goes ahead (approval, then deployment).
    Admit {
        /// The stage.
        stage: String,
        /// The queued attempt.
        attempt: u32,
    },
    /// A queued deployment is skipped: a newer release goes instead (latest-only).
    Supersede {
        /// The stage.
        stage: String,
        /// The queued attempt.
        attempt: u32,
        /// The release that goes instead.
        by: String,
    },
}

/// On what authority a decision is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A listed approver, in person: every approval rule applies.
    Approver,
    /// An admin's override, for every approver at once, bypassing the rules (the creator's
    /// too): only with a justification, recorded on the decision and in the audit trail.
    Override {
        /// Why (required: see [`check_justification`](super::check_justification)).
        justification: String,
    },
    /// The operator of a local `sluice run`, who owns its data directory and is its only
    /// user: decides for every approver. Recorded as such.
    Operator,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Succeeded, with warnings (possibly none) and outputs.
    Succeeded {
        /// Warnings; non-empty means succeeded with issues.
        warnings: Vec<String>,
        /// Output variables.
        outputs: Vec<crate::types::Variable>,
    },
    /// Failed, and why.
    Failed(String),
}

/// What the scheduler must do after a transition is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the approvers of the stage's pending approval.
    RequestApproval {
        /// The stage.
        stage: String,
        /// Pre or post.
        kind: ApprovalKind,
    },
    /// Create the workspace and fetch the artifacts.
    Prepare {
        /// The stage.
        stage: String,
        /// Attempt number.
        attempt: u32,
    },
    /// Run task `task` of the stage (already marked running).
    RunTask {
        /// The stage.
        stage: String,
        /// Attempt number.
        attempt: u32,
        /// Task index.
        task: usize,
    },
    /// Evaluate every gate of the stage's `kind` gates at time `at` (Unix milliseconds), then
    /// report [`Event::GatesEvaluated`].
    EvaluateGates {
        /// The stage.
        stage: String,
        /// Attempt number.
        attempt: u32,
        /// Pre or post.
        kind: ApprovalKind,
        /// When.
        at: u64,
    },
    /// The stage's post-deployment gates failed and it rolls back: redeploy the last other
    /// release that succeeded on it ([`Event::Rollback`]).
    Rollback {
        /// The stage.
        stage: String,
    },
    /// Stop whatever runs for the stage.
    CancelTasks {
        /// The stage.
        stage: String,
    },
    /// Apply `event` at time `at` (Unix milliseconds), unless it no longer applies by then.
    Timer {
        /// When.
        at: u64,
        /// What.
        event: Event,
    },
    /// The release reached a terminal state.
    Finished(ReleaseState),
}

/// A time (Unix milliseconds) in RFC 3339, UTC; the number itself if it is out of range.
pub(crate) fn timestamp(at: u64) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{at} (Unix ms)"), |t| t.to_string())
}

/// The message of a deployment whose non-idempotent task was running when the engine died.
pub const INTERRUPTED: &str = "interrupted by engine restart — redeploy to retry";

/// The message of a deployment whose non-idempotent task was running on an agent that was lost.
pub fn agent_lost(agent: &str) -> String {
    format!("agent {agent} lost — redeploy to retry")
}
