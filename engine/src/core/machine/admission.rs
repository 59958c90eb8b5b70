//! Admission: how a deployment gets under way: by hand (in the graph's order, or an admin's
//! out of it), at a time, in its queue turn, past a freeze, as a rollback (which queues and
//! waits out freezes like any deployment); and how a queued one is superseded.

use crate::pipeline::QueuePolicy;

use super::graph::{check_order, waits_for};
use super::{
    InvalidTransition, Step, attempt_no, current, finish_attempt, go, proceed, stage_index, wrong,
};
use crate::core::check_justification;
use crate::core::event::{Effect, Event};
use crate::core::model::*;

/// Applies an admission event: `Deploy`, `DeployOutOfOrder`, `Schedule`, `Due`, `BreakGlass`,
/// `Rollback`, `Admit` or `Supersede`.
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    match event {
        Event::Deploy { stage } => {
            let i = idle_stage(release, &stage, "deploy it while a deployment is under way")?;
            check_order(release, &stage)?;
            release.state = ReleaseState::Active;
            start(release, i, now, effects);
            Ok(())
        }
        Event::DeployOutOfOrder {
            stage,
            at,
            by,
            justification,
        } => {
            let i = idle_stage(release, &stage, "deploy it while a deployment is under way")?;
            check_justification("deploying out of order", &justification)
                .map_err(InvalidTransition::NotAllowed)?;
            let record = OutOfOrder {
                by,
                justification,
                at: now,
                waited_for: waits_for(release, &stage),
            };
            release.state = ReleaseState::Active;
            match at.filter(|&at| at > now) {
                Some(at) => schedule(release, i, at, now, effects),
                None => {
                    start(release, i, now, effects);
                }
            }
            // `start` may have gone as far as the deployment itself: the record is the
            // attempt's from its first commit either way.
            if let Some(attempt) = release.stages[i].attempts.last_mut() {
                attempt.out_of_order = Some(record);
            }
            Ok(())
        }
        Event::Schedule { stage, at } => {
            let i = idle_stage(
                release,
                &stage,
                "schedule it while a deployment is under way",
            )?;
            check_order(release, &stage)?;
            release.state = ReleaseState::Active;
            if at <= now {
                start(release, i, now, effects);
                return Ok(());
            }
            schedule(release, i, at, now, effects);
            Ok(())
        }
        Event::Due {
            stage,
            attempt: number,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "start a deferred deployment")?;
            if attempt.state != StageState::Scheduled {
                return Err(wrong(release, i, "start a deferred deployment"));
            }
            if attempt.approvals.is_empty() && attempt.frozen.is_none() {
                // Scheduled by an operator, before any approval or queue turn: start now.
                attempt.deferred_until = None;
                attempt.started_at = now;
                attempt.state = StageState::Queued;
                if release.plan.stages[i].queue == QueuePolicy::Parallel(None) {
                    admit(release, i, now, effects);
                }
                return Ok(());
            }
            attempt.deferred_until = None;
            proceed(release, i, ApprovalKind::Pre, now, effects);
            Ok(())
        }
        Event::BreakGlass {
            stage,
            by,
            justification,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = current(release, i, "break a freeze")?;
            if attempt.state != StageState::Scheduled || attempt.frozen.is_none() {
                return Err(InvalidTransition::Conflict(format!(
                    "stage `{stage}` is not waiting out a freeze (it is {:?})",
                    attempt.state
                )));
            }
            check_justification("breaking a freeze", &justification)
                .map_err(InvalidTransition::NotAllowed)?;
            attempt.break_glass = Some(BreakGlass {
                by,
                justification,
                at: now,
            });
            attempt.deferred_until = None;
            go(release, i, ApprovalKind::Pre, now, effects);
            Ok(())
        }
        Event::Rollback { stage, of } => {
            let i = idle_stage(
                release,
                &stage,
                "roll back to it while a deployment is under way",
            )?;
            release.state = ReleaseState::Active;
            start_attempt(release, i, Some(of), now, effects);
            Ok(())
        }
        Event::Admit {
            stage,
            attempt: number,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "admit it")?;
            if attempt.state != StageState::Queued {
                return Err(wrong(release, i, "admit it: it is not queued"));
            }
            admit(release, i, now, effects);
            Ok(())
        }
        Event::Supersede {
            stage,
            attempt: number,
            by,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "skip it")?;
            if attempt.state != StageState::Queued {
                return Err(wrong(release, i, "skip it: it is not queued"));
            }
            for task in &mut attempt.tasks {
                task.state = TaskState::Skipped;
            }
            for approval in &mut attempt.approvals {
                if approval.state == ApprovalState::Pending {
                    approval.state = ApprovalState::Skipped;
                }
            }
            let reason = match &attempt.rollback_of {
                Some(of) => format!("skipped: {by} deployed since, so rolling back {of} is moot"),
                None => format!("skipped: {by} is newer (queue: latest-only)"),
            };
            finish_attempt(attempt, StageState::Skipped, Some(reason), now);
            Ok(())
        }
        other => unreachable!("not an admission event: {other:?}"),
    }
}

/// The index of `stage`, which must be idle for `action`: not started, or its latest
/// deployment over. A new attempt (deploy, schedule, rollback) starts only on an idle stage.
fn idle_stage(
    release: &Release,
    stage: &str,
    action: &'static str,
) -> Result<usize, InvalidTransition> {
    let i = stage_index(release, stage)?;
    let state = release.stages[i].state();
    if state != StageState::NotStarted && !state.is_terminal() {
        return Err(wrong(release, i, action));
    }
    Ok(i)
}

/// Starts a new attempt of stage `i`: queued when the stage's queue policy limits how many
/// deployments run at once (the scheduler admits it in its turn), else admitted at once.
pub(super) fn start(release: &mut Release, i: usize, now: u64, effects: &mut Vec<Effect>) {
    start_attempt(release, i, None, now, effects);
}

/// As [`start`]; a rollback (`rollback_of`, the release it rolls back) takes the same path —
/// a queue turn, a freeze waited out — only without approvals and gates.
fn start_attempt(
    release: &mut Release,
    i: usize,
    rollback_of: Option<String>,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let queued = release.plan.stages[i].queue != QueuePolicy::Parallel(None);
    let state = match queued {
        true => StageState::Queued,
        false => StageState::InProgress,
    };
    new_attempt(release, i, state, now);
    if let Some(attempt) = release.stages[i].attempts.last_mut() {
        attempt.rollback_of = rollback_of;
    }
    if !queued {
        admit(release, i, now, effects);
    }
}

/// A new attempt of stage `i` that starts at `at`: nothing is asked (no approval, no queue turn)
/// before then.
pub(super) fn schedule(
    release: &mut Release,
    i: usize,
    at: u64,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    new_attempt(release, i, StageState::Scheduled, now);
    let stage = &mut release.stages[i];
    if let Some(attempt) = stage.attempts.last_mut() {
        attempt.deferred_until = Some(at);
        effects.push(Effect::Timer {
            at,
            event: Event::Due {
                stage: stage.name.clone(),
                attempt: attempt.number,
            },
        });
    }
}

/// Adds a new attempt of stage `i` in `state`, its tasks pending.
fn new_attempt(release: &mut Release, i: usize, state: StageState, now: u64) {
    let spec = &release.plan.stages[i];
    let number = release.stages[i].attempts.len() as u32 + 1;
    let attempt = Attempt {
        number,
        state,
        prepared: false,
        tasks: spec
            .tasks
            .iter()
            .map(|t| TaskRun {
                name: t.name.clone(),
                state: TaskState::Pending,
                outputs: Vec::new(),
                messages: Vec::new(),
                starts: 0,
                agent: None,
            })
            .collect(),
        approvals: Vec::new(),
        outcome: None,
        reason: None,
        started_at: now,
        finished_at: None,
        deferred_until: None,
        gates: Vec::new(),
        rollback_of: None,
        frozen: None,
        break_glass: None,
        out_of_order: None,
        lease: None,
    };
    release.stages[i].attempts.push(attempt);
}

/// Lets stage `i`'s current attempt go ahead: its pre-deployment approval and gates, then the
/// deployment.
fn admit(release: &mut Release, i: usize, now: u64, effects: &mut Vec<Effect>) {
    proceed(release, i, ApprovalKind::Pre, now, effects);
}
