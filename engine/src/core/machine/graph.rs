//! The graph a hand deploy respects: a stage deployed by hand waits, like a triggered one, for
//! the stages it comes after to succeed (partially, where it allows that) — a post-deployment
//! approval still pending is not success. An admin may deploy out of order, with a
//! justification, recorded on the attempt.

use crate::pipeline::Trigger;

use super::InvalidTransition;
use crate::core::model::*;

/// What stage `stage` waits for: each stage it comes after whose latest deployment has not
/// succeeded, with where it is (`prod-ring-1 (awaiting its post-deployment approval)`). Empty
/// when nothing holds it back (or there is no such stage).
pub(in crate::core) fn waits_for(release: &Release, stage: &str) -> Vec<String> {
    let Some(spec) = release.plan.stages.iter().find(|s| s.name == stage) else {
        return Vec::new();
    };
    let Trigger::AfterStages {
        stages,
        allow_partial,
    } = &spec.trigger
    else {
        return Vec::new();
    };
    stages
        .iter()
        .filter_map(|upstream| {
            let Some(run) = release.stage(upstream) else {
                return Some(format!("{upstream} (not in this release)"));
            };
            match run.state() {
                StageState::Succeeded => None,
                StageState::PartiallySucceeded if *allow_partial => None,
                _ => Some(format!("{upstream} ({})", whereabouts(run))),
            }
        })
        .collect()
}

/// Where a stage's latest deployment is, in words.
fn whereabouts(run: &StageRun) -> String {
    let Some(attempt) = run.attempts.last() else {
        return "not started".into();
    };
    let state = match attempt.state {
        StageState::NotStarted => "not started",
        StageState::Queued => "queued",
        StageState::Scheduled => "scheduled",
        StageState::AwaitingApproval => {
            let kind = attempt.approvals.last().map_or("an", |a| a.kind.as_str());
            return format!("awaiting its {kind}-deployment approval");
        }
        StageState::EvaluatingGates => "evaluating its gates",
        StageState::InProgress => "in progress",
        StageState::Succeeded => "succeeded",
        StageState::PartiallySucceeded => "only partially succeeded",
        StageState::Failed => "failed",
        StageState::Rejected => "rejected",
        StageState::Canceled => "canceled",
        StageState::Skipped => "skipped",
    };
    state.into()
}

/// Refuses a hand deploy of stage `stage` while it waits for a stage it comes after: a 409 that
/// names what it waits for and the way out.
pub(super) fn check_order(release: &Release, stage: &str) -> Result<(), InvalidTransition> {
    let waiting = waits_for(release, stage);
    if waiting.is_empty() {
        return Ok(());
    }
    Err(InvalidTransition::Conflict(format!(
        "stage `{stage}` waits for {}: deploy it once they have succeeded, or an admin may \
         deploy it out of order with a justification",
        waiting.join(", ")
    )))
}
