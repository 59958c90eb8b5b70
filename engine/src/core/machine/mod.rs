//! The release state machine: `apply`, its dispatch, the phase walker and advancing the graph.
//! Pure transitions, no I/O, no clock (time arrives with every event).
//!
//! The table is mirrored by `ROWS` in `core/tests/table/`: every transition below has a row (a
//! fixture in that state, the event, the state and effects it leads to), and a sweep applies
//! every other event to every fixture and expects [`InvalidTransition`] with the release
//! unchanged. Which branch of a phase runs (approval, gates, deploy) is followed in the other
//! tests under `core/tests/`.
//!
//! ```text
//! stage deployment (latest attempt)    event                              -> state               effects
//! ---------------------------------------------------------------------------------------------------------------------
//! (any, release not abandoned)         Created                            -> starts the stages whose trigger is met
//!                                                                            (below); changes nothing else
//! not-started | terminal               Deploy (a new attempt)             -> queued                                [queue limits: sequential,
//!                                                                                                                    latest-only, parallel(N)]
//!                                                                         -> as Admit                              [unlimited]
//!                                      (a stage it comes after has not succeeded: Conflict, naming what it waits for)
//! not-started | terminal               DeployOutOfOrder (admin, justified) -> as Deploy | Schedule, ignoring the graph; recorded
//! not-started | terminal               Schedule, `at` to come             -> scheduled           Timer(Due)        [in the graph's order]
//!                                      Schedule, `at` passed              -> as Deploy
//! not-started | terminal               Rollback (of a later release)      -> as Deploy, without approvals and gates: queued,
//!                                                                            or in its turn frozen | in-progress
//! queued                               Admit (the stage's turn)           -> the pre phase (approval | gates | (deploy))
//! queued                               Supersede (a newer release)        -> skipped             (pending approvals: skipped)
//! scheduled (by an operator)           Due                                -> queued | as Admit [unlimited]
//! scheduled (deferred, frozen)         Due                                -> the pre phase's next step ((deploy): frozen again
//!                                                                            if the freeze still holds)
//! scheduled by a freeze                BreakGlass (admin, justified)      -> in-progress         Prepare
//! awaiting-approval (pre|post)         Decide approve, policy unmet       -> awaiting-approval
//! awaiting-approval (pre|post)         Decide approve, policy met         -> the phase's next step (gates | (deploy) | end)
//! awaiting-approval (pre)              Decide approve, met, defer_until   -> scheduled           Timer(Due)
//! awaiting-approval (pre|post)         Decide reject                      -> rejected
//! awaiting-approval (pre|post)         Reassign                           -> awaiting-approval   RequestApproval (old: reassigned)
//! awaiting-approval (pre|post)         Expire (timeout passed)            -> rejected            (approval: expired)
//! awaiting-approval (pre|post)         Void (a plugin changed)            -> failed              (approval: canceled)
//! evaluating-gates                     GatesEvaluated: no verdict yet     -> evaluating-gates    EvaluateGates(next time)
//! evaluating-gates                     GatesEvaluated: passed             -> the phase's next step (approval | (deploy) | end)
//! evaluating-gates                     GatesEvaluated: failed by timeout  -> failed              Rollback [post, rollback]
//!                                                                         -> the approval        [approvals after-gates]
//! in-progress, not prepared            Prepared                           -> in-progress         RunTask(0) (task 0 marked running)
//! in-progress, not prepared            PrepareFailed                      -> failed
//! in-progress, task i running          TaskFinished ok, i < last          -> in-progress         RunTask(i+1)
//! in-progress, task i running          TaskFinished ok, i = last          -> the post phase (approval | gates | end)
//! in-progress, task i running          TaskFinished failed                -> failed (continue-on-error: go on, partially)
//! in-progress, task i running          TaskInterrupted                    -> failed "interrupted by engine restart"
//! in-progress, task i running          TaskRestarted (idempotent)         -> in-progress         RunTask(i) (started again)
//! in-progress, a pool, no lease held   Assigned (agent A: lease, epoch+1) -> in-progress         [artifacts: the Prepare in
//!                                                                            flight goes on, on A]
//!                                                                         -> in-progress         RunTask(first pending)
//!                                                                            [nothing to fetch: prepared, on A]
//! in-progress, lease held (epoch e)    AgentLost e, no task or idempotent -> in-progress         Prepare (queued again;
//!                                                                            the task pending again)
//! in-progress, lease held (epoch e)    AgentLost e, task not idempotent   -> failed "agent A lost"
//! queued | scheduled | awaiting-approval | evaluating-gates | in-progress
//!                                      Cancel                             -> canceled            CancelTasks
//!
//! the pre phase:   its approval and gates, in the order the stage sets, then (deploy)
//! (deploy):        a freeze holds the stage -> scheduled Timer(Due at its end); else -> in-progress Prepare
//! the post phase:  its approval and gates, then the end: succeeded | partially-succeeded
//! a trigger met:   a not-started stage with a `schedule` -> scheduled Timer(Due at the next cron time);
//!                  else as Deploy
//!
//! release                              event                              -> state
//! active                               (nothing in flight, something ran) -> succeeded | partially-succeeded | failed
//!                                                                            | abandoned (a stage was skipped)   Finished
//! not abandoned                        Abandon                            -> abandoned (in-flight stages canceled)  Finished
//! terminal (not abandoned)             Deploy (out of order) | Schedule | Rollback -> active
//! abandoned                            anything                           -> InvalidTransition
//! ```
//!
//! A pending approval with a timeout also yields `Timer(Expire)`; a decision at or after its
//! `expires_at` is refused, and the timer expires it. A reassignment is an admin's override, or
//! a listed approver's who is not the release's creator (unless the stage allows the creator),
//! to someone the stage lists by name or through a group; either way to a known user who may
//! approve (or a group with one), never to a name nobody could decide for. Events about an attempt that is no
//! longer the stage's current one are [`InvalidTransition::Stale`] (a redeploy voids them).
//!
//! After every transition the machine starts the stages whose trigger is now satisfied and, when
//! nothing is left in flight, finishes the release. Anything else is an [`InvalidTransition`].

mod admission;
mod agents;
pub(super) mod approval;
mod deployment;
mod gates;
mod graph;
mod reassign;

use crate::pipeline::{ApprovalOrder, ApprovalSpec, GatesSpec, StageSpec, Trigger};

use super::event::{Effect, Event};
use super::model::*;
use crate::types::millis;
use admission::{schedule, start};
use approval::ask;
use gates::start_gates;
pub(in crate::core) use graph::waits_for;

/// An event that does not apply to the release as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTransition {
    /// No such stage.
    #[error("release {release} has no stage `{stage}`")]
    UnknownStage {
        /// Release.
        release: String,
        /// Stage.
        stage: String,
    },
    /// The event does not fit the stage's state.
    #[error("stage `{stage}` is {state:?}: cannot {action}")]
    Stage {
        /// Stage.
        stage: String,
        /// Its state.
        state: StageState,
        /// What was attempted.
        action: &'static str,
    },
    /// The event does not fit the release's state.
    #[error("release {release} is {state:?}: cannot {action}")]
    Release {
        /// Release.
        release: String,
        /// Its state.
        state: ReleaseState,
        /// What was attempted.
        action: &'static str,
    },
    /// The decider may not decide this approval.
    #[error("{0}")]
    NotAllowed(String),
    /// The request names someone the event cannot go to: a reassignment's `to` that is not a
    /// known user who may approve the stage (the message names who may be chosen).
    #[error("{0}")]
    Ineligible(String),
    /// The approval is not in a state where this applies (decided, out of turn).
    #[error("{0}")]
    Conflict(String),
    /// The event is about an attempt that is no longer the stage's current one.
    #[error("stage `{stage}`: attempt {attempt} is over (the current attempt is {current})")]
    Stale {
        /// Stage.
        stage: String,
        /// The attempt the event is about.
        attempt: u32,
        /// The stage's current attempt.
        current: u32,
    },
}

/// Applies `event` at time `now` (Unix milliseconds): changes `release` and returns the effects.
/// On error `release` is unchanged.
pub fn apply(
    release: &mut Release,
    event: Event,
    now: u64,
) -> Result<Vec<Effect>, InvalidTransition> {
    let mut next = release.clone();
    let mut effects = Vec::new();
    step(&mut next, event, now, &mut effects)?;
    advance(&mut next, now, &mut effects);
    next.revision += 1;
    *release = next;
    Ok(effects)
}

fn stage_index(release: &Release, stage: &str) -> Result<usize, InvalidTransition> {
    release
        .stages
        .iter()
        .position(|s| s.name == stage)
        .ok_or_else(|| InvalidTransition::UnknownStage {
            release: release.name.clone(),
            stage: stage.to_owned(),
        })
}

fn current<'a>(
    release: &'a mut Release,
    index: usize,
    action: &'static str,
) -> Result<&'a mut Attempt, InvalidTransition> {
    let stage = &mut release.stages[index];
    let name = stage.name.clone();
    stage.attempts.last_mut().ok_or(InvalidTransition::Stage {
        stage: name,
        state: StageState::NotStarted,
        action,
    })
}

/// The stage's current attempt, which must be `number`.
fn attempt_no<'a>(
    release: &'a mut Release,
    index: usize,
    number: u32,
    action: &'static str,
) -> Result<&'a mut Attempt, InvalidTransition> {
    let stage = release.stages[index].name.clone();
    let attempt = current(release, index, action)?;
    if attempt.number != number {
        return Err(InvalidTransition::Stale {
            stage,
            attempt: number,
            current: attempt.number,
        });
    }
    Ok(attempt)
}

fn wrong(release: &Release, index: usize, action: &'static str) -> InvalidTransition {
    InvalidTransition::Stage {
        stage: release.stages[index].name.clone(),
        state: release.stages[index].state(),
        action,
    }
}

/// What a handler returns: the changes are made to the release (a copy, on error dropped).
type Step = Result<(), InvalidTransition>;

/// Applies one event to the copy `release`; `apply` then advances the graph.
fn step(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    if release.state == ReleaseState::Abandoned && event != Event::Abandon {
        return Err(InvalidTransition::Release {
            release: release.name.clone(),
            state: release.state,
            action: "change an abandoned release",
        });
    }
    match event {
        Event::Created => Ok(()),
        Event::Reassign { .. } => reassign::on(release, event, now, effects),
        Event::Decide { .. } | Event::Expire { .. } | Event::Void { .. } => {
            approval::on(release, event, now, effects)
        }
        Event::GatesEvaluated { .. } => gates::on(release, event, now, effects),
        Event::Deploy { .. }
        | Event::DeployOutOfOrder { .. }
        | Event::Schedule { .. }
        | Event::Due { .. }
        | Event::BreakGlass { .. }
        | Event::Rollback { .. }
        | Event::Admit { .. }
        | Event::Supersede { .. } => admission::on(release, event, now, effects),
        Event::Assigned { .. } | Event::AgentLost { .. } => {
            agents::on(release, event, now, effects)
        }
        Event::Prepared { .. }
        | Event::PrepareFailed { .. }
        | Event::TaskFinished { .. }
        | Event::TaskInterrupted { .. }
        | Event::TaskRestarted { .. }
        | Event::Cancel { .. }
        | Event::Abandon => deployment::on(release, event, now, effects),
    }
}

fn finish_attempt(attempt: &mut Attempt, state: StageState, reason: Option<String>, now: u64) {
    attempt.state = state;
    attempt.reason = reason;
    attempt.finished_at = Some(now);
    for approval in &mut attempt.approvals {
        if approval.state == ApprovalState::Pending {
            approval.state = ApprovalState::Canceled;
        }
    }
    for run in &mut attempt.gates {
        if run.state == GateState::Evaluating {
            run.state = GateState::Canceled;
        }
    }
}

/// The stage's approval and gates in phase `kind` (pre- or post-deployment).
fn phase(spec: &StageSpec, kind: ApprovalKind) -> (Option<&ApprovalSpec>, Option<&GatesSpec>) {
    match kind {
        ApprovalKind::Pre => (spec.pre_approval.as_ref(), spec.pre_gates.as_ref()),
        ApprovalKind::Post => (spec.post_approval.as_ref(), spec.post_gates.as_ref()),
    }
}

/// The next step of stage `i`'s current attempt in phase `kind`: the phase's approval and gates,
/// in the order the stage sets, then the deployment (pre) or its end (post). A rollback skips
/// both, not its queue turn (before this) nor a freeze (in `go`).
fn proceed(
    release: &mut Release,
    i: usize,
    kind: ApprovalKind,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let spec = &release.plan.stages[i];
    let (approval, gates) = phase(spec, kind);
    let approval = approval.is_some();
    let order = gates.map(|g| g.approvals);
    let timing = gates.map(|g| (millis(g.delay), millis(g.timeout)));
    let Some(attempt) = release.stages[i].attempts.last() else {
        return;
    };
    let rollback = attempt.rollback_of.is_some();
    let approved = rollback
        || !approval
        || attempt
            .approvals
            .iter()
            .any(|a| a.kind == kind && a.state == ApprovalState::Approved);
    let gated = rollback
        || gates.is_none()
        || attempt.gates.iter().any(|g| {
            g.kind == kind
                && (g.state == GateState::Succeeded
                    || (g.state == GateState::Failed && order == Some(ApprovalOrder::AfterGates)))
        });
    let gates_first = order.is_some_and(|o| o != ApprovalOrder::BeforeGates);
    match (approved, gated, timing) {
        (true, true, _) => go(release, i, kind, now, effects),
        (false, false, Some(timing)) if gates_first => {
            start_gates(release, i, kind, timing, now, effects)
        }
        (true, false, Some(timing)) => start_gates(release, i, kind, timing, now, effects),
        _ => ask(release, i, kind, now, effects),
    }
}

/// Approved and gated: deploy (pre), or end the deployment with its outcome (post).
fn go(release: &mut Release, i: usize, kind: ApprovalKind, now: u64, effects: &mut Vec<Effect>) {
    let stage = release.stages[i].name.clone();
    let freeze = release.plan.frozen_until(&stage, now);
    let Some(attempt) = release.stages[i].attempts.last_mut() else {
        return;
    };
    match kind {
        ApprovalKind::Pre => {
            if let (Some((until, reason)), None) = (freeze, &attempt.break_glass) {
                // A freeze holds the stage: wait until it ends, then look again.
                attempt.state = StageState::Scheduled;
                attempt.deferred_until = Some(until);
                attempt.frozen = Some(reason);
                effects.push(Effect::Timer {
                    at: until,
                    event: Event::Due {
                        stage,
                        attempt: attempt.number,
                    },
                });
                return;
            }
            attempt.frozen = None;
            attempt.state = StageState::InProgress;
            effects.push(Effect::Prepare {
                stage,
                attempt: attempt.number,
            });
        }
        ApprovalKind::Post => {
            let outcome = attempt.outcome.unwrap_or(StageState::Succeeded);
            finish_attempt(attempt, outcome, None, now);
        }
    }
}

/// Starts every stage whose trigger is satisfied; finishes the release when nothing is left.
fn advance(release: &mut Release, now: u64, effects: &mut Vec<Effect>) {
    if release.state != ReleaseState::Active {
        return;
    }
    loop {
        let ready = (0..release.stages.len()).find(|&i| {
            release.stages[i].attempts.is_empty()
                && match &release.plan.stages[i].trigger {
                    Trigger::AfterRelease => true,
                    Trigger::Manual => false,
                    Trigger::AfterStages {
                        stages,
                        allow_partial,
                    } => stages
                        .iter()
                        .all(|u| match release.stage(u).map(StageRun::state) {
                            Some(StageState::Succeeded) => true,
                            Some(StageState::PartiallySucceeded) => *allow_partial,
                            _ => false,
                        }),
                }
        });
        let Some(i) = ready else { break };
        // A stage with a schedule waits for its next time (a schedule that never fires again
        // starts it now rather than never).
        let at = release.plan.stages[i]
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(now));
        match at {
            Some(at) => schedule(release, i, at, now, effects),
            None => start(release, i, now, effects),
        }
    }
    // In flight, or nothing ever started (only manual stages): the release stays active.
    if release.stages.iter().any(|s| s.state().is_in_flight())
        || release.stages.iter().all(|s| s.attempts.is_empty())
    {
        return;
    }
    let states: Vec<StageState> = release.stages.iter().map(StageRun::state).collect();
    release.state = if states.iter().any(|s| {
        matches!(
            s,
            StageState::Failed | StageState::Rejected | StageState::Canceled
        )
    }) {
        ReleaseState::Failed
    } else if states.contains(&StageState::Skipped) {
        // A newer release went instead: this one is dropped, not failed.
        ReleaseState::Abandoned
    } else if states.contains(&StageState::PartiallySucceeded) {
        ReleaseState::PartiallySucceeded
    } else {
        ReleaseState::Succeeded
    };
    effects.push(Effect::Finished(release.state));
}
