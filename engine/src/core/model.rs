//! What a release is, as stored: the snapshot (plan, artifact versions, plugin digests) and the
//! state of every stage deployment, task and approval. Plain data; `machine/` changes it.

use serde::{Deserialize, Serialize};

pub use super::overrides::{BreakGlass, OutOfOrder};
use crate::pipeline::{ApprovalPolicy, ApprovalSpec, Plan};
use crate::types::{Variable, Version, millis};

/// A release's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseState {
    /// Deploying, or waiting on a decision.
    Active,
    /// Every stage that ran succeeded.
    Succeeded,
    /// Stages ran; some only partially succeeded, none failed.
    PartiallySucceeded,
    /// A stage failed, was rejected or canceled.
    Failed,
    /// Given up by someone; nothing more runs.
    Abandoned,
}

impl ReleaseState {
    /// Whether nothing more happens unless someone redeploys.
    pub fn is_terminal(self) -> bool {
        self != Self::Active
    }
}

/// A stage deployment's lifecycle (the states users see).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StageState {
    /// Not triggered (yet).
    NotStarted,
    /// Waiting for its turn under the stage's queue policy.
    Queued,
    /// Deferred to a time.
    Scheduled,
    /// Waiting on a pre- or post-deployment approval.
    AwaitingApproval,
    /// Gates are being evaluated.
    EvaluatingGates,
    /// Artifacts are being fetched or tasks are running.
    InProgress,
    /// Every task succeeded (and the post-approval, if any, was given).
    Succeeded,
    /// A `continue-on-error` task failed.
    PartiallySucceeded,
    /// A task failed.
    Failed,
    /// An approver rejected it.
    Rejected,
    /// Someone canceled it.
    Canceled,
    /// Superseded by a newer release.
    Skipped,
}

impl StageState {
    /// Whether the deployment is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::PartiallySucceeded
                | Self::Failed
                | Self::Rejected
                | Self::Canceled
                | Self::Skipped
        )
    }

    /// Whether it is under way (holds the release active).
    pub fn is_in_flight(self) -> bool {
        !self.is_terminal() && self != Self::NotStarted
    }
}

/// An approval's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalState {
    /// Waiting for decisions.
    Pending,
    /// Given.
    Approved,
    /// Refused.
    Rejected,
    /// Handed to someone else.
    Reassigned,
    /// The deployment was canceled.
    Canceled,
    /// Superseded by a newer release.
    Skipped,
    /// Its timeout passed.
    Expired,
}

/// A task's lifecycle within one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Not reached yet.
    Pending,
    /// Committed as started; the plugin is (or was) running.
    Running,
    /// Done.
    Succeeded,
    /// Done, with warnings.
    SucceededWithIssues,
    /// Failed.
    Failed,
    /// Not run: an earlier task failed or the deployment was canceled.
    Skipped,
}

/// Pre- or post-deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalKind {
    /// Before the deployment runs.
    Pre,
    /// After it ran, before downstream stages start.
    Post,
}

impl ApprovalKind {
    /// `pre` or `post`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
        }
    }
}

/// The id of an approval: `release.stage.attempt.pre|post` (names never hold a `.`). A redeploy is a new attempt, so its
/// approvals have new ids and no decision on an earlier attempt carries over.
pub fn approval_id(release: &str, stage: &str, attempt: u32, kind: ApprovalKind) -> String {
    format!("{release}.{stage}.{attempt}.{}", kind.as_str())
}

/// One decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Who decided.
    pub by: String,
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub comment: String,
    /// When (Unix milliseconds).
    pub at: u64,
    /// The approver entry it counts for (`alice`, `group:qa`); `None` for an override.
    #[serde(default)]
    pub as_approver: Option<String>,
    /// How it was made, when not by a listed approver in person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An approval on one deployment attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    /// Pre or post.
    pub kind: ApprovalKind,
    /// State.
    pub state: ApprovalState,
    /// Approvers (users and `group:` names), as the release's plan says.
    pub approvers: Vec<String>,
    /// How decisions combine.
    pub policy: ApprovalPolicy,
    /// Decisions so far.
    pub decisions: Vec<Decision>,
    /// When it was requested (Unix milliseconds).
    pub requested_at: u64,
    /// When it expires unless decided (Unix milliseconds).
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl Approval {
    pub(crate) fn new(kind: ApprovalKind, spec: &ApprovalSpec, at: u64) -> Self {
        Self {
            kind,
            state: ApprovalState::Pending,
            approvers: spec.approvers.clone(),
            policy: spec.policy,
            decisions: Vec::new(),
            requested_at: at,
            // Saturates: a timeout past the end of a u64 of milliseconds means "never expires"
            // (the parsers bound timeouts, so only a plan stored before the bound gets here).
            expires_at: spec.timeout.map(|t| at.saturating_add(millis(t))),
        }
    }
}

/// Where a set of gates is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateState {
    /// Being sampled.
    Evaluating,
    /// All gates were healthy long enough.
    Succeeded,
    /// They were not, by the timeout.
    Failed,
    /// Stopped before a verdict: the deployment ended first (canceled, abandoned, skipped).
    Canceled,
}

/// One gate's answer in one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateResult {
    /// The gate's name.
    pub gate: String,
    /// Healthy or not.
    pub healthy: bool,
    /// Why not (or what went wrong running it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One evaluation of every gate of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateEvaluation {
    /// When (Unix milliseconds).
    pub at: u64,
    /// Each gate's answer.
    pub results: Vec<GateResult>,
}

/// The pre- or post-deployment gates of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateRun {
    /// Pre or post.
    pub kind: ApprovalKind,
    /// State.
    pub state: GateState,
    /// When they started (Unix milliseconds).
    pub started_at: u64,
    /// They fail if they have not passed by then.
    pub deadline: u64,
    /// When the next evaluation is due.
    pub next_at: u64,
    /// Since when every evaluation was healthy.
    pub healthy_since: Option<u64>,
    /// How many evaluations ran.
    pub count: u32,
    /// The latest evaluations (at most [`GateRun::KEPT`]; the audit log has every one).
    pub evaluations: Vec<GateEvaluation>,
}

impl GateRun {
    /// How many evaluations a release keeps per gate run.
    pub const KEPT: usize = 20;
}

/// One task in one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskRun {
    /// The task's name in the plan.
    pub name: String,
    /// State.
    pub state: TaskState,
    /// Output variables it produced.
    pub outputs: Vec<Variable>,
    /// Warnings, or why it failed.
    pub messages: Vec<String>,
    /// How many times it was started (an idempotent task may be re-run after a restart).
    pub starts: u32,
    /// The agent it was last started on (a stage with a pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The lease of a stage deployment's job on an agent (a stage with a pool): who holds it, and
/// its epoch, which grows with every assignment so that a report from an earlier holder is
/// told apart and refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// The agent.
    pub agent: String,
    /// 1 for the job's first assignment, then one more for each.
    pub epoch: u64,
    /// The agent stopped renewing it: the job went back to the queue (or failed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

/// One attempt to deploy a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// 1, 2, ... (a redeploy is a new attempt).
    pub number: u32,
    /// State of this attempt.
    pub state: StageState,
    /// Artifacts fetched into the workspace.
    pub prepared: bool,
    /// Tasks in plan order.
    pub tasks: Vec<TaskRun>,
    /// Approvals requested for this attempt.
    pub approvals: Vec<Approval>,
    /// The state the deployment reached before its post-approval.
    pub outcome: Option<StageState>,
    /// Why it ended as it did, for people.
    pub reason: Option<String>,
    /// When it started and finished (Unix milliseconds).
    pub started_at: u64,
    /// When it finished.
    pub finished_at: Option<u64>,
    /// While `scheduled`: when the deployment starts (Unix milliseconds).
    #[serde(default)]
    pub deferred_until: Option<u64>,
    /// Gates evaluated for this attempt (pre, post).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateRun>,
    /// This attempt redeploys the release to roll back the one named here, whose
    /// post-deployment gates failed. It runs without approvals and gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// While `scheduled` by a freeze window: its reason (it waits until `deferred_until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<String>,
    /// An admin let this deployment through a freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// An admin deployed this attempt by hand before the stages it comes after succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<OutOfOrder>,
    /// A stage with a pool: the lease of its job on an agent, once one took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

impl Attempt {
    /// The lease, while an agent holds it.
    pub fn held_lease(&self) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| !l.lost)
    }
}

/// One stage of a release: its attempts, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRun {
    /// Stage name.
    pub name: String,
    /// Attempts; empty while not started.
    pub attempts: Vec<Attempt>,
}

impl StageRun {
    /// The state users see: that of the latest attempt, or not-started.
    pub fn state(&self) -> StageState {
        self.attempts
            .last()
            .map_or(StageState::NotStarted, |a| a.state)
    }
}

/// An artifact version chosen for a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChosenArtifact {
    /// Alias.
    pub alias: String,
    /// The version, with its metadata.
    pub version: Version,
}

/// A release: an immutable snapshot plus the state of its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// `pipeline-number`, e.g. `space-game-7`.
    pub name: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Number within the pipeline.
    pub number: u64,
    /// Who created it.
    pub creator: String,
    /// Free text.
    pub description: Option<String>,
    /// When (Unix milliseconds).
    pub created_at: u64,
    /// The pipeline as it was.
    pub plan: Plan,
    /// Artifact versions chosen.
    pub artifacts: Vec<ChosenArtifact>,
    /// Variables set at release time (never secrets: those stay references in the plan).
    pub variables: Vec<(String, String)>,
    /// Digest of every plugin the release uses (plugin reference -> `sha256:...`).
    pub digests: Vec<(String, String)>,
    /// State.
    pub state: ReleaseState,
    /// Stages, in plan order.
    pub stages: Vec<StageRun>,
    /// Grows with every transition: approvals are bound to it.
    pub revision: u64,
}

impl Release {
    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageRun> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// What a new release is made of: the snapshot, before anything is started.
#[derive(Debug, Clone)]
pub struct NewRelease {
    /// The pipeline as it is now.
    pub plan: Plan,
    /// Number within the pipeline.
    pub number: u64,
    /// Who creates it.
    pub creator: String,
    /// Free text.
    pub description: Option<String>,
    /// Artifact versions chosen.
    pub artifacts: Vec<ChosenArtifact>,
    /// Variables set at release time.
    pub variables: Vec<(String, String)>,
    /// Digest of every plugin the release uses (plugin reference -> `sha256:...`).
    pub digests: Vec<(String, String)>,
    /// When (Unix milliseconds).
    pub created_at: u64,
}

impl Release {
    /// A new release, with nothing started. Apply [`Event::Created`](super::Event::Created) to
    /// start the stages that start with the release.
    pub fn new(new: NewRelease) -> Self {
        let NewRelease {
            plan,
            number,
            creator,
            description,
            artifacts,
            variables,
            digests,
            created_at,
        } = new;
        Self {
            name: format!("{}-{number}", plan.name),
            pipeline: plan.name.clone(),
            number,
            creator,
            description,
            created_at,
            artifacts,
            variables,
            digests,
            state: ReleaseState::Active,
            stages: plan
                .stages
                .iter()
                .map(|s| StageRun {
                    name: s.name.clone(),
                    attempts: Vec::new(),
                })
                .collect(),
            revision: 0,
            plan,
        }
    }
}
