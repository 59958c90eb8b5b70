//! The audit trail's wording of every event (`Event::describe`): what happened to which stage,
//! by whom, on what authority.

use super::event::{Authority, Event, INTERRUPTED, TaskOutcome, timestamp};
use super::model::*;

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
            Event::DeployOutOfOrder {
                stage,
                at,
                by,
                justification,
            } => {
                let when = at.map_or(String::new(), |t| format!(" for {}", timestamp(t)));
                let ahead = super::machine::waits_for(release, stage);
                let ahead = if ahead.is_empty() {
                    "nothing (it waited for none)".into()
                } else {
                    ahead.join(", ")
                };
                format!(
                    "{stage}: deploy{when} requested out of order by {by}, ahead of {ahead}: {justification}"
                )
            }
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
                    Authority::Approver => String::new(),
                    Authority::Override { justification } => {
                        format!(" (override by {by}, for every approver: {justification})")
                    }
                    Authority::Operator => " (local operator, for every approver)".into(),
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
                authority,
                ..
            } => {
                let how = match authority {
                    Authority::Override { justification } => {
                        format!(" (override by {by}: {justification})")
                    }
                    Authority::Approver | Authority::Operator => String::new(),
                };
                format!(
                    "{stage}: {}-deployment approval reassigned by {by} to {to}{how}: {comment}",
                    kind.as_str()
                )
            }
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
            Event::Assigned {
                stage,
                attempt,
                agent,
            } => {
                let epoch = release
                    .stage(stage)
                    .and_then(|s| s.attempts.iter().find(|a| a.number == *attempt))
                    .and_then(|a| a.lease.as_ref())
                    .map_or(1, |l| l.epoch + 1);
                format!(
                    "{stage}: attempt {attempt} assigned to agent {agent} (lease epoch {epoch})"
                )
            }
            Event::AgentLost {
                stage,
                attempt,
                epoch,
            } => {
                let agent = release
                    .stage(stage)
                    .and_then(|s| s.attempts.iter().find(|a| a.number == *attempt))
                    .and_then(|a| a.lease.as_ref())
                    .map_or("?", |l| l.agent.as_str());
                format!(
                    "{stage}: agent {agent} lost (lease epoch {epoch} not renewed): {}",
                    lost_outcome(release, stage)
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
                let rollback = release
                    .stage(stage)
                    .and_then(|s| s.attempts.last())
                    .and_then(|a| a.rollback_of.as_ref());
                match rollback {
                    Some(of) => format!(
                        "{stage}: rollback of {of} skipped, {by} deployed on the stage since"
                    ),
                    None => format!("{stage}: skipped, {by} is newer (latest-only)"),
                }
            }
        }
    }
}

/// What losing the agent does to the stage's deployment, as the audit trail says it.
fn lost_outcome(release: &Release, stage: &str) -> String {
    let spec = release.plan.stages.iter().find(|s| s.name == stage);
    let running = release
        .stage(stage)
        .and_then(|s| s.attempts.last())
        .and_then(|a| a.tasks.iter().position(|t| t.state == TaskState::Running));
    match (running, spec) {
        (Some(task), Some(spec)) if spec.tasks.get(task).is_some_and(|t| t.idempotent) => {
            format!(
                "task {} (idempotent) queued again for any agent",
                spec.tasks[task].name
            )
        }
        (Some(task), Some(spec)) => format!(
            "task {} is not idempotent: the deployment fails",
            spec.tasks.get(task).map_or("?", |t| t.name.as_str())
        ),
        _ => "the job is queued again for any agent".into(),
    }
}
