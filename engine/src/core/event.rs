//! What the core hears and says: events (with `Authority` and task outcomes), the effects the
//! scheduler carries out, and the audit log's wording of every event (`Event::describe`).

use super::model::*;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The release was created: start the stages that start with it.
    Created,
    /// Deploy (or redeploy, as a new attempt) a stage by hand.
    Deploy {
        /// The stage.
        stage: String,
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
        /// The groups `to` belongs to (resolved by the caller from its users; none for a group
        /// or a user it does not know), so the core can tell whether `to` may approve.
        to_groups: Vec<String>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// A listed approver, in person: every approval rule applies.
    Approver,
    /// For every approver at once, bypassing the rules: an admin override, or the operator of a
    /// local `sluice run`. Recorded as such.
    Override,
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

impl Event {
    /// The event in the words of the audit log: what happened to which stage.
    pub fn describe(&self, release: &Release) -> String {
        let task_name = |stage: &str, task: &usize| {
            release
                .plan
                .stages
                .iter()
                .find(|s| s.name == stage)
                .and_then(|s| s.tasks.get(*task))
                .map_or_else(|| task.to_string(), |t| t.name.clone())
        };
        match self {
            Event::Created => "release created".into(),
            Event::Deploy { stage } => format!("{stage}: deploy requested"),
            Event::Decide {
                stage,
                attempt,
                kind,
                by,
                approve,
                comment,
                authority,
                defer_until,
                ..
            } => {
                let verb = if *approve { "approved" } else { "rejected" };
                let how = match authority {
                    Authority::Approver => "",
                    Authority::Override => " (override, for every approver)",
                };
                let when =
                    defer_until.map_or(String::new(), |t| format!(", deploy at {t} (Unix ms)"));
                let why = if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                };
                let kind = kind.as_str();
                format!(
                    "{stage}: {kind}-deployment approval of attempt {attempt} {verb} by {by}{how}{when}{why}"
                )
            }
            Event::Reassign {
                stage,
                kind,
                by,
                to,
                comment,
                ..
            } => format!(
                "{stage}: {}-deployment approval reassigned by {by} to {to}: {comment}",
                kind.as_str()
            ),
            Event::Expire { stage, kind, .. } => {
                format!("{stage}: {}-deployment approval expired", kind.as_str())
            }
            Event::Due { stage, .. } => format!("{stage}: deferred deployment starts"),
            Event::Void { stage, reason, .. } => format!("{stage}: approval void: {reason}"),
            Event::Prepared { stage, .. } => format!("{stage}: artifacts fetched"),
            Event::PrepareFailed { stage, reason, .. } => {
                format!("{stage}: preparing failed: {reason}")
            }
            Event::TaskFinished {
                stage,
                task,
                outcome,
                ..
            } => {
                let task = task_name(stage, task);
                match outcome {
                    TaskOutcome::Succeeded { warnings, .. } if warnings.is_empty() => {
                        format!("{stage}: task {task} succeeded")
                    }
                    TaskOutcome::Succeeded { warnings, .. } => {
                        format!(
                            "{stage}: task {task} succeeded with issues: {}",
                            warnings.join("; ")
                        )
                    }
                    TaskOutcome::Failed(why) => format!("{stage}: task {task} failed: {why}"),
                }
            }
            Event::TaskInterrupted { stage, task } => {
                format!("{stage}: task {} {}", task_name(stage, task), INTERRUPTED)
            }
            Event::TaskRestarted { stage, task } => {
                format!(
                    "{stage}: task {} restarted after an engine restart (idempotent)",
                    task_name(stage, task)
                )
            }
            Event::Cancel { stage } => format!("{stage}: canceled"),
            Event::Abandon => "release abandoned".into(),
            Event::Admit { stage, .. } => format!("{stage}: its turn in the queue"),
            Event::Schedule { stage, at } => {
                format!("{stage}: deployment scheduled for {}", timestamp(*at))
            }
            Event::GatesEvaluated {
                stage,
                kind,
                results,
                ..
            } => {
                let answers: Vec<String> = results
                    .iter()
                    .map(|r| match (&r.reason, r.healthy) {
                        (_, true) => format!("{} healthy", r.gate),
                        (Some(why), false) => format!("{} unhealthy: {why}", r.gate),
                        (None, false) => format!("{} unhealthy", r.gate),
                    })
                    .collect();
                format!(
                    "{stage}: {}-deployment gates evaluated: {}",
                    kind.as_str(),
                    answers.join("; ")
                )
            }
            Event::BreakGlass {
                stage,
                by,
                justification,
            } => format!("{stage}: freeze broken by {by} (break-glass): {justification}"),
            Event::Rollback { stage, of } => format!(
                "{stage}: rollback: redeployed because the post-deployment gates of {of} failed"
            ),
            Event::Supersede { stage, by, .. } => {
                format!("{stage}: skipped, {by} is newer (latest-only)")
            }
        }
    }
}
