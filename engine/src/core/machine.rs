//! The release state machine: pure transitions, no I/O, no clock (time arrives in events).
//!
//! ```text
//! stage deployment (latest attempt)      event                        -> state            effects
//! ------------------------------------------------------------------------------------------------------------
//! not-started                            Start (trigger satisfied)    -> awaiting-approval RequestApproval(pre)   [pre-approval]
//!                                                                     -> in-progress       Prepare  [approved in the previous stage]
//! not-started                            Start                        -> in-progress       Prepare               [no pre-approval]
//! not-started                            Start, queue policy limits   -> queued                                  [sequential, latest-only, parallel(N)]
//! queued                                 Admit (the stage's turn)     -> as Start, unqueued
//! queued                                 Supersede (a newer release)  -> skipped           (pending approvals: skipped)
//! any terminal, release not abandoned    Deploy (redeploy: attempt+1) -> as Start
//! awaiting-approval (pre)                Decide approve, policy met   -> in-progress       Prepare
//! awaiting-approval (pre|post)           Decide approve, policy unmet -> awaiting-approval
//! awaiting-approval (pre|post)           Decide reject                -> rejected
//! awaiting-approval (pre)                Decide approve, defer_until  -> scheduled         Timer(Due)
//! scheduled                              Due                          -> in-progress       Prepare
//! not-started | terminal                 Schedule (at a time)         -> scheduled         Timer(Due)  [an operator's]
//! scheduled (by an operator)             Due                          -> as Start (queue, pre-approval)
//! not-started, trigger met, `schedule`   (advance)                    -> scheduled         Timer(Due at the next cron time)
//! (about to deploy), a freeze holds it      (go)                         -> scheduled         Timer(Due at the freeze's end)
//! scheduled by a freeze                  BreakGlass (admin, justified) -> in-progress       Prepare
//! evaluating-gates                       GatesEvaluated: passed        -> next step (approval or deployment | end)
//!                                        GatesEvaluated: timed out     -> failed (post, rollback: Rollback)
//! not in flight                          Rollback (of a later release) -> in-progress       Prepare  [no approvals, gates]
//! awaiting-approval (pre|post)           Reassign                     -> awaiting-approval RequestApproval (old: reassigned)
//! awaiting-approval (pre|post)           Expire (timeout passed)      -> rejected          (approval: expired)
//! awaiting-approval (pre|post)           Void (a plugin changed)      -> failed            (approval: canceled)
//! in-progress, not prepared              Prepared                     -> in-progress       RunTask(0) (task 0 marked running)
//! in-progress, not prepared              PrepareFailed                -> failed
//! in-progress, task i running            TaskFinished ok, i < last    -> in-progress       RunTask(i+1)
//! in-progress, task i running            TaskFinished ok, i = last    -> awaiting-approval RequestApproval(post)  [post-approval]
//!                                                                     -> succeeded | partially-succeeded          [none]
//! in-progress, task i running            TaskFinished failed          -> failed (continue-on-error: go on, partially)
//! in-progress, task i running            TaskInterrupted              -> failed "interrupted by engine restart"
//! awaiting-approval (post)               Decide approve, policy met   -> succeeded | partially-succeeded
//! awaiting-approval | in-progress        Cancel                       -> canceled          CancelTasks
//!
//! release                                event                        -> state
//! active                                 (nothing in flight or startable) -> succeeded | partially-succeeded | failed
//! active                                 Abandon                      -> abandoned (in-flight stages canceled)
//! terminal (not abandoned)               Deploy                       -> active
//! ```
//!
//! A pending approval with a timeout also yields `Timer(Expire)`. Events about an attempt that is
//! no longer the stage's current one are [`InvalidTransition::Stale`] (a redeploy voids them).
//!
//! After every transition the machine starts the stages whose trigger is now satisfied and, when
//! nothing is left in flight, finishes the release. Anything else is an [`InvalidTransition`].

use crate::pipeline::{ApprovalOrder, ApprovalPolicy, QueuePolicy, Trigger};

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
        /// Why.
        comment: String,
        /// A listed approver hands over their part; an override replaces every approver.
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

/// The attempt's pending approval of `kind`.
fn pending<'a>(
    attempt: &'a mut Attempt,
    stage: &str,
    kind: ApprovalKind,
) -> Result<&'a mut Approval, InvalidTransition> {
    let state = attempt.state;
    attempt
        .approvals
        .last_mut()
        .filter(|a| {
            a.state == ApprovalState::Pending
                && a.kind == kind
                && state == StageState::AwaitingApproval
        })
        .ok_or_else(|| {
            InvalidTransition::Conflict(format!(
                "stage `{stage}` has no pending {}-deployment approval (it is {state:?})",
                kind.as_str()
            ))
        })
}

fn wrong(release: &Release, index: usize, action: &'static str) -> InvalidTransition {
    InvalidTransition::Stage {
        stage: release.stages[index].name.clone(),
        state: release.stages[index].state(),
        action,
    }
}

fn step(
    release: &mut Release,
    event: Event,
    now: u64,
    effects: &mut Vec<Effect>,
) -> Result<(), InvalidTransition> {
    if release.state == ReleaseState::Abandoned && event != Event::Abandon {
        return Err(InvalidTransition::Release {
            release: release.name.clone(),
            state: release.state,
            action: "change an abandoned release",
        });
    }
    match event {
        Event::Created => Ok(()),
        Event::Deploy { stage } => {
            let i = stage_index(release, &stage)?;
            let state = release.stages[i].state();
            if state != StageState::NotStarted && !state.is_terminal() {
                return Err(wrong(
                    release,
                    i,
                    "deploy it while a deployment is under way",
                ));
            }
            release.state = ReleaseState::Active;
            start(release, i, now, effects);
            Ok(())
        }
        Event::Schedule { stage, at } => {
            let i = stage_index(release, &stage)?;
            let state = release.stages[i].state();
            if state != StageState::NotStarted && !state.is_terminal() {
                return Err(wrong(
                    release,
                    i,
                    "schedule it while a deployment is under way",
                ));
            }
            release.state = ReleaseState::Active;
            if at <= now {
                start(release, i, now, effects);
                return Ok(());
            }
            schedule(release, i, at, now, effects);
            Ok(())
        }
        Event::Decide {
            stage,
            attempt: number,
            kind,
            by,
            groups,
            approve,
            comment,
            authority,
            defer_until,
        } => {
            let i = stage_index(release, &stage)?;
            let creator = release.creator.clone();
            let spec = &release.plan.stages[i];
            let allow_creator = match kind {
                ApprovalKind::Pre => spec.pre_approval.as_ref(),
                ApprovalKind::Post => spec.post_approval.as_ref(),
            }
            .is_some_and(|a| a.allow_release_creator);
            let attempt = attempt_no(release, i, number, "decide an approval")?;
            let approval = pending(attempt, &stage, kind)?;
            let (as_approver, note) = match authority {
                Authority::Approver => {
                    if by == creator && !allow_creator {
                        return Err(InvalidTransition::NotAllowed(format!(
                            "{by} created this release and the stage does not allow the release creator to approve"
                        )));
                    }
                    (Some(check_approver(approval, &by, &groups)?), None)
                }
                Authority::Override => (None, Some("override: decided for every approver".into())),
            };
            approval.decisions.push(Decision {
                by,
                approve,
                comment,
                at: now,
                as_approver,
                note,
            });
            let done = if !approve {
                approval.state = ApprovalState::Rejected;
                Some(false)
            } else if authority == Authority::Override || policy_met(approval) {
                approval.state = ApprovalState::Approved;
                Some(true)
            } else {
                None
            };
            let deferred = defer_until.filter(|&at| at > now && kind == ApprovalKind::Pre);
            match (done, deferred) {
                (None, _) => {}
                (Some(false), _) => {
                    finish_attempt(attempt, StageState::Rejected, Some("rejected".into()), now)
                }
                (Some(true), Some(at)) => {
                    attempt.state = StageState::Scheduled;
                    attempt.deferred_until = Some(at);
                    effects.push(Effect::Timer {
                        at,
                        event: Event::Due {
                            stage: stage.clone(),
                            attempt: number,
                        },
                    });
                }
                (Some(true), None) => proceed(release, i, kind, now, effects),
            }
            Ok(())
        }
        Event::Reassign {
            stage,
            attempt: number,
            kind,
            by,
            groups,
            to,
            comment,
            authority,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "reassign an approval")?;
            let approval = pending(attempt, &stage, kind)?;
            if approval.approvers.contains(&to) {
                return Err(InvalidTransition::Conflict(format!(
                    "{to} is already an approver of this stage"
                )));
            }
            let mut next = approval.clone();
            next.approvers = match authority {
                Authority::Override => vec![to.clone()],
                Authority::Approver => {
                    let entry = listed_as(approval, &by, &groups).ok_or_else(|| {
                        InvalidTransition::NotAllowed(format!(
                            "{by} is not an approver of this stage"
                        ))
                    })?;
                    let at = approval.approvers.iter().position(|a| *a == entry);
                    let mut approvers = approval.approvers.clone();
                    if let Some(at) = at {
                        approvers[at] = to.clone();
                    }
                    approvers
                }
            };
            approval.state = ApprovalState::Reassigned;
            approval.decisions.push(Decision {
                by,
                approve: false,
                comment,
                at: now,
                as_approver: None,
                note: Some(format!("reassigned to {to}")),
            });
            next.requested_at = now;
            attempt.approvals.push(next);
            effects.push(Effect::RequestApproval { stage, kind });
            Ok(())
        }
        Event::Expire {
            stage,
            attempt: number,
            kind,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "expire an approval")?;
            let approval = pending(attempt, &stage, kind)?;
            approval.state = ApprovalState::Expired;
            finish_attempt(
                attempt,
                StageState::Rejected,
                Some(format!(
                    "the {}-deployment approval expired: nobody decided in time",
                    kind.as_str()
                )),
                now,
            );
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
        Event::Void {
            stage,
            attempt: number,
            reason,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "void an approval")?;
            let Some(approval) = attempt
                .approvals
                .last_mut()
                .filter(|a| a.state == ApprovalState::Pending)
            else {
                return Err(wrong(release, i, "void an approval: none is pending"));
            };
            approval.state = ApprovalState::Canceled;
            finish_attempt(
                attempt,
                StageState::Failed,
                Some(format!("approval void: {reason}")),
                now,
            );
            Ok(())
        }
        Event::Prepared { stage, attempt } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, attempt, "prepare")?;
            if attempt.state != StageState::InProgress || attempt.prepared {
                return Err(wrong(release, i, "finish preparing"));
            }
            attempt.prepared = true;
            run_next(release, i, 0, now, effects);
            Ok(())
        }
        Event::PrepareFailed {
            stage,
            attempt,
            reason,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, attempt, "prepare")?;
            if attempt.state != StageState::InProgress || attempt.prepared {
                return Err(wrong(release, i, "fail preparing"));
            }
            for task in &mut attempt.tasks {
                task.state = TaskState::Skipped;
            }
            finish_attempt(attempt, StageState::Failed, Some(reason), now);
            Ok(())
        }
        Event::TaskFinished {
            stage,
            attempt,
            task,
            outcome,
        } => {
            let i = stage_index(release, &stage)?;
            let continue_on_error = release.plan.stages[i]
                .tasks
                .get(task)
                .is_some_and(|t| t.continue_on_error);
            let attempt = attempt_no(release, i, attempt, "finish a task")?;
            if attempt.state != StageState::InProgress
                || attempt.tasks.get(task).map(|t| t.state) != Some(TaskState::Running)
            {
                return Err(wrong(release, i, "finish a task that is not running"));
            }
            let run = &mut attempt.tasks[task];
            match outcome {
                TaskOutcome::Succeeded { warnings, outputs } => {
                    run.state = if warnings.is_empty() {
                        TaskState::Succeeded
                    } else {
                        TaskState::SucceededWithIssues
                    };
                    run.messages = warnings;
                    run.outputs = outputs;
                    run_next(release, i, task + 1, now, effects);
                }
                TaskOutcome::Failed(message) => {
                    run.state = TaskState::Failed;
                    run.messages = vec![message.clone()];
                    if continue_on_error {
                        attempt.outcome = Some(StageState::PartiallySucceeded);
                        run_next(release, i, task + 1, now, effects);
                    } else {
                        for later in &mut attempt.tasks[task + 1..] {
                            later.state = TaskState::Skipped;
                        }
                        let name = attempt.tasks[task].name.clone();
                        finish_attempt(
                            attempt,
                            StageState::Failed,
                            Some(format!("task `{name}` failed: {message}")),
                            now,
                        );
                    }
                }
            }
            Ok(())
        }
        Event::TaskInterrupted { stage, task } => {
            let i = stage_index(release, &stage)?;
            let attempt = current(release, i, "interrupt a task")?;
            if attempt.tasks.get(task).map(|t| t.state) != Some(TaskState::Running) {
                return Err(wrong(release, i, "interrupt a task that is not running"));
            }
            attempt.tasks[task].state = TaskState::Failed;
            attempt.tasks[task].messages = vec![INTERRUPTED.into()];
            for later in &mut attempt.tasks[task + 1..] {
                later.state = TaskState::Skipped;
            }
            finish_attempt(attempt, StageState::Failed, Some(INTERRUPTED.into()), now);
            Ok(())
        }
        Event::TaskRestarted { stage, task } => {
            let i = stage_index(release, &stage)?;
            let attempt = current(release, i, "restart a task")?;
            if attempt.tasks.get(task).map(|t| t.state) != Some(TaskState::Running) {
                return Err(wrong(release, i, "restart a task that is not running"));
            }
            attempt.tasks[task].starts += 1;
            effects.push(Effect::RunTask {
                stage,
                attempt: attempt.number,
                task,
            });
            Ok(())
        }
        Event::Cancel { stage } => {
            let i = stage_index(release, &stage)?;
            if !release.stages[i].state().is_in_flight() {
                return Err(wrong(release, i, "cancel it: no deployment is under way"));
            }
            cancel(release, i, now, effects);
            Ok(())
        }
        Event::GatesEvaluated {
            stage,
            attempt: number,
            kind,
            results,
        } => {
            let i = stage_index(release, &stage)?;
            let spec = &release.plan.stages[i];
            let Some(gates) = (match kind {
                ApprovalKind::Pre => spec.pre_gates.clone(),
                ApprovalKind::Post => spec.post_gates.clone(),
            }) else {
                return Err(wrong(release, i, "evaluate gates it does not have"));
            };
            let attempt = attempt_no(release, i, number, "evaluate gates")?;
            let state = attempt.state;
            let run = attempt
                .gates
                .last_mut()
                .filter(|g| {
                    g.kind == kind
                        && g.state == GateState::Evaluating
                        && state == StageState::EvaluatingGates
                })
                .ok_or_else(|| {
                    InvalidTransition::Conflict(format!(
                        "stage `{stage}` is not evaluating its {}-deployment gates (it is {state:?})",
                        kind.as_str()
                    ))
                })?;
            run.count += 1;
            let unhealthy: Vec<String> = results
                .iter()
                .filter(|r| !r.healthy)
                .map(|r| {
                    let why = r.reason.as_deref().unwrap_or("unhealthy");
                    format!("gate `{}`: {why}", r.gate)
                })
                .collect();
            run.evaluations.push(GateEvaluation { at: now, results });
            if run.evaluations.len() > GateRun::KEPT {
                run.evaluations.remove(0);
            }
            let min_healthy = gates.min_healthy.as_millis() as u64;
            let verdict = if unhealthy.is_empty() {
                let since = *run.healthy_since.get_or_insert(now);
                let healthy_for = now.saturating_sub(since);
                if healthy_for >= min_healthy {
                    Some(Ok(()))
                } else if now >= run.deadline {
                    Some(Err(format!(
                        "healthy for {} of the {} required (min-healthy) when the timeout ({}) passed",
                        for_people(healthy_for),
                        for_people(min_healthy),
                        for_people(gates.timeout.as_millis() as u64)
                    )))
                } else {
                    None
                }
            } else {
                run.healthy_since = None;
                (now >= run.deadline).then(|| {
                    Err(format!(
                        "not healthy within {}: {}",
                        for_people(gates.timeout.as_millis() as u64),
                        unhealthy.join("; ")
                    ))
                })
            };
            match verdict {
                None => {
                    let interval = (gates.interval.as_millis() as u64).max(1);
                    run.next_at = (now + interval).min(run.deadline.max(now + 1));
                    effects.push(Effect::EvaluateGates {
                        stage,
                        attempt: number,
                        kind,
                        at: run.next_at,
                    });
                }
                Some(Ok(())) => {
                    run.state = GateState::Succeeded;
                    proceed(release, i, kind, now, effects);
                }
                Some(Err(why)) => {
                    run.state = GateState::Failed;
                    if gates.approvals == ApprovalOrder::AfterGates {
                        // The approvers decide, seeing the gates' results.
                        proceed(release, i, kind, now, effects);
                        return Ok(());
                    }
                    for task in &mut attempt.tasks {
                        if task.state == TaskState::Pending {
                            task.state = TaskState::Skipped;
                        }
                    }
                    let rollback = kind == ApprovalKind::Post && gates.rollback;
                    let reason = format!(
                        "{}-deployment gates failed: {why}{}",
                        kind.as_str(),
                        if rollback { " (rolling back)" } else { "" }
                    );
                    finish_attempt(attempt, StageState::Failed, Some(reason), now);
                    if rollback {
                        effects.push(Effect::Rollback { stage });
                    }
                }
            }
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
            if justification.trim().is_empty() {
                return Err(InvalidTransition::NotAllowed(
                    "breaking a freeze needs a justification".into(),
                ));
            }
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
            let i = stage_index(release, &stage)?;
            let state = release.stages[i].state();
            if state != StageState::NotStarted && !state.is_terminal() {
                return Err(wrong(
                    release,
                    i,
                    "roll back to it while a deployment is under way",
                ));
            }
            release.state = ReleaseState::Active;
            new_attempt(release, i, StageState::InProgress, now);
            let attempt = current(release, i, "roll back")?;
            attempt.rollback_of = Some(of);
            effects.push(Effect::Prepare {
                stage,
                attempt: attempt.number,
            });
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
            let reason = format!("skipped: {by} is newer (queue: latest-only)");
            finish_attempt(attempt, StageState::Skipped, Some(reason), now);
            Ok(())
        }
        Event::Abandon => {
            if release.state == ReleaseState::Abandoned {
                return Err(InvalidTransition::Release {
                    release: release.name.clone(),
                    state: release.state,
                    action: "abandon it again",
                });
            }
            for i in 0..release.stages.len() {
                if release.stages[i].state().is_in_flight() {
                    cancel(release, i, now, effects);
                }
            }
            release.state = ReleaseState::Abandoned;
            effects.push(Effect::Finished(ReleaseState::Abandoned));
            Ok(())
        }
    }
}

/// What to do with a release found unfinished when the engine starts: events to apply (a
/// non-idempotent task that was running fails) and effects to redo (approvals to ask again,
/// workspaces to prepare again, idempotent tasks to run again, through `TaskRestarted`).
pub fn recover(release: &Release) -> (Vec<Event>, Vec<Effect>) {
    let mut events = Vec::new();
    let mut effects = Vec::new();
    if release.state != ReleaseState::Active {
        return (events, effects);
    }
    for (i, stage) in release.stages.iter().enumerate() {
        let Some(attempt) = stage.attempts.last() else {
            continue;
        };
        let name = stage.name.clone();
        match attempt.state {
            StageState::AwaitingApproval => {
                if let Some(approval) = attempt.approvals.last() {
                    effects.extend(request(&name, attempt.number, approval));
                }
            }
            StageState::Scheduled => {
                if let Some(at) = attempt.deferred_until {
                    effects.push(Effect::Timer {
                        at,
                        event: Event::Due {
                            stage: name,
                            attempt: attempt.number,
                        },
                    });
                }
            }
            StageState::EvaluatingGates => {
                if let Some(run) = attempt.gates.last() {
                    effects.push(Effect::EvaluateGates {
                        stage: name,
                        attempt: attempt.number,
                        kind: run.kind,
                        at: run.next_at,
                    });
                }
            }
            StageState::InProgress if !attempt.prepared => {
                effects.push(Effect::Prepare {
                    stage: name,
                    attempt: attempt.number,
                });
            }
            StageState::InProgress => {
                if let Some(task) = attempt
                    .tasks
                    .iter()
                    .position(|t| t.state == TaskState::Running)
                {
                    if release.plan.stages[i].tasks[task].idempotent {
                        events.push(Event::TaskRestarted { stage: name, task });
                    } else {
                        events.push(Event::TaskInterrupted { stage: name, task });
                    }
                }
            }
            _ => {}
        }
    }
    (events, effects)
}

/// The message of a deployment whose non-idempotent task was running when the engine died.
pub const INTERRUPTED: &str = "interrupted by engine restart — redeploy to retry";

/// Whether the approver entry `entry` (a user or `group:name`) names `by`.
fn names(entry: &str, by: &str, groups: &[String]) -> bool {
    match entry.strip_prefix("group:") {
        Some(group) => groups.iter().any(|g| g == group),
        None => entry == by,
    }
}

/// The approver entry `by` decides for: listed by name first, else through a group; an entry
/// nobody has approved for yet before one already satisfied.
fn listed_as(approval: &Approval, by: &str, groups: &[String]) -> Option<String> {
    let satisfied = |a: &String| {
        approval
            .decisions
            .iter()
            .any(|d| d.approve && d.as_approver.as_ref() == Some(a))
    };
    let mut entries: Vec<&String> = approval
        .approvers
        .iter()
        .filter(|a| names(a, by, groups))
        .collect();
    entries.sort_by_key(|a| (satisfied(a), *a != by));
    entries.first().map(|a| (*a).clone())
}

/// Checks that `by` may decide now; returns the approver entry the decision counts for.
fn check_approver(
    approval: &Approval,
    by: &str,
    groups: &[String],
) -> Result<String, InvalidTransition> {
    let listed = |a: &String| names(a, by, groups);
    let Some(entry) = listed_as(approval, by, groups) else {
        return Err(InvalidTransition::NotAllowed(format!(
            "{by} is not an approver of this stage"
        )));
    };
    if approval.decisions.iter().any(|d| d.by == by) {
        return Err(InvalidTransition::Conflict(format!(
            "{by} already decided this approval"
        )));
    }
    if approval.policy == ApprovalPolicy::Sequence {
        let next = approval.approvers.get(approval.decisions.len());
        if !next.is_some_and(listed) {
            return Err(InvalidTransition::Conflict(format!(
                "approvals go in sequence; next is {}",
                next.map_or("nobody", String::as_str)
            )));
        }
        return Ok(next.cloned().unwrap_or(entry));
    }
    Ok(entry)
}

/// The effects of a pending approval: ask its approvers, and expire it at its timeout.
fn request(stage: &str, attempt: u32, approval: &Approval) -> Vec<Effect> {
    let mut effects = vec![Effect::RequestApproval {
        stage: stage.to_owned(),
        kind: approval.kind,
    }];
    if let Some(at) = approval.expires_at {
        effects.push(Effect::Timer {
            at,
            event: Event::Expire {
                stage: stage.to_owned(),
                attempt,
                kind: approval.kind,
            },
        });
    }
    effects
}

/// Whether the approving decisions meet the policy: `all` and `sequence` need every approver
/// entry (a group counts once), `at-least N` needs N people, `any` one.
fn policy_met(approval: &Approval) -> bool {
    let approving = || {
        approval.decisions.iter().filter(|d| d.approve).filter(|d| {
            d.as_approver
                .as_ref()
                .is_some_and(|a| approval.approvers.contains(a))
        })
    };
    let distinct = |mut v: Vec<&String>| {
        v.sort();
        v.dedup();
        v.len()
    };
    match approval.policy {
        ApprovalPolicy::Any => approving().next().is_some(),
        ApprovalPolicy::All | ApprovalPolicy::Sequence => {
            distinct(approving().filter_map(|d| d.as_approver.as_ref()).collect())
                >= approval.approvers.len()
        }
        ApprovalPolicy::AtLeast(n) => distinct(approving().map(|d| &d.by).collect()) >= n as usize,
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

fn cancel(release: &mut Release, i: usize, now: u64, effects: &mut Vec<Effect>) {
    let stage = release.stages[i].name.clone();
    if let Some(attempt) = release.stages[i].attempts.last_mut() {
        for task in &mut attempt.tasks {
            if matches!(task.state, TaskState::Pending | TaskState::Running) {
                task.state = TaskState::Skipped;
            }
        }
        finish_attempt(attempt, StageState::Canceled, Some("canceled".into()), now);
        effects.push(Effect::CancelTasks { stage });
    }
}

/// Starts a new attempt of stage `i`: queued when the stage's queue policy limits how many
/// deployments run at once (the scheduler admits it in its turn), else admitted at once.
fn start(release: &mut Release, i: usize, now: u64, effects: &mut Vec<Effect>) {
    let queued = release.plan.stages[i].queue != QueuePolicy::Parallel(None);
    if queued {
        new_attempt(release, i, StageState::Queued, now);
    } else {
        new_attempt(release, i, StageState::InProgress, now);
        admit(release, i, now, effects);
    }
}

/// A new attempt of stage `i` that starts at `at`: nothing is asked (no approval, no queue turn)
/// before then.
fn schedule(release: &mut Release, i: usize, at: u64, now: u64, effects: &mut Vec<Effect>) {
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
    };
    release.stages[i].attempts.push(attempt);
}

/// Lets stage `i`'s current attempt go ahead: its pre-deployment approval and gates, then the
/// deployment.
fn admit(release: &mut Release, i: usize, now: u64, effects: &mut Vec<Effect>) {
    proceed(release, i, ApprovalKind::Pre, now, effects);
}

/// The next step of stage `i`'s current attempt in phase `kind`: the phase's approval and gates,
/// in the order the stage sets, then the deployment (pre) or its end (post). A rollback skips
/// both.
fn proceed(
    release: &mut Release,
    i: usize,
    kind: ApprovalKind,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let spec = &release.plan.stages[i];
    let (approval, gates) = match kind {
        ApprovalKind::Pre => (spec.pre_approval.is_some(), spec.pre_gates.as_ref()),
        ApprovalKind::Post => (spec.post_approval.is_some(), spec.post_gates.as_ref()),
    };
    let order = gates.map(|g| g.approvals);
    let timing = gates.map(|g| (g.delay.as_millis() as u64, g.timeout.as_millis() as u64));
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

/// Asks for the phase's approval (carried over from the previous stage if the stage says so).
fn ask(release: &mut Release, i: usize, kind: ApprovalKind, now: u64, effects: &mut Vec<Effect>) {
    let spec = &release.plan.stages[i];
    let Some(approval_spec) = (match kind {
        ApprovalKind::Pre => spec.pre_approval.as_ref(),
        ApprovalKind::Post => spec.post_approval.as_ref(),
    }) else {
        return;
    };
    let stage = spec.name.clone();
    let mut approval = Approval::new(kind, approval_spec, now);
    if kind == ApprovalKind::Pre && approval_spec.skip_if_approved_in_previous_stage {
        carry_previous_approvals(release, i, &mut approval);
    }
    let Some(attempt) = release.stages[i].attempts.last_mut() else {
        return;
    };
    if approval.state == ApprovalState::Approved {
        attempt.approvals.push(approval);
        proceed(release, i, kind, now, effects);
        return;
    }
    attempt.state = StageState::AwaitingApproval;
    effects.extend(request(&stage, attempt.number, &approval));
    attempt.approvals.push(approval);
}

/// Starts sampling the phase's gates: the first evaluation after the delay.
fn start_gates(
    release: &mut Release,
    i: usize,
    kind: ApprovalKind,
    (delay, timeout): (u64, u64),
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let stage = release.stages[i].name.clone();
    let Some(attempt) = release.stages[i].attempts.last_mut() else {
        return;
    };
    attempt.state = StageState::EvaluatingGates;
    let run = GateRun {
        kind,
        state: GateState::Evaluating,
        started_at: now,
        deadline: now + timeout,
        next_at: now + delay,
        healthy_since: None,
        count: 0,
        evaluations: Vec::new(),
    };
    effects.push(Effect::EvaluateGates {
        stage,
        attempt: attempt.number,
        kind,
        at: run.next_at,
    });
    attempt.gates.push(run);
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

/// A duration in milliseconds, for people: `15m`, `30s`, `250ms`.
fn for_people(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// "Skip if approved in the previous stage": counts the approvals that this stage's approvers
/// gave the stages it follows (their latest attempts), and approves when that meets the policy.
fn carry_previous_approvals(release: &Release, i: usize, approval: &mut Approval) {
    let previous: Vec<&str> = match &release.plan.stages[i].trigger {
        Trigger::AfterStages { stages, .. } => stages.iter().map(String::as_str).collect(),
        _ => i
            .checked_sub(1)
            .map(|p| vec![release.plan.stages[p].name.as_str()])
            .unwrap_or_default(),
    };
    for name in previous {
        let Some(attempt) = release.stage(name).and_then(|s| s.attempts.last()) else {
            continue;
        };
        let given = attempt
            .approvals
            .iter()
            .filter(|a| a.state == ApprovalState::Approved)
            .flat_map(|a| &a.decisions)
            .filter(|d| d.approve);
        for decision in given {
            // Only a person listed here by name, or through a group listed here, carries over.
            let entry = approval
                .approvers
                .iter()
                .find(|a| **a == decision.by || decision.as_approver.as_ref() == Some(*a));
            let counted = approval.decisions.iter().any(|d| d.by == decision.by);
            if let (Some(entry), false) = (entry.cloned(), counted) {
                approval.decisions.push(Decision {
                    as_approver: Some(entry),
                    note: Some(format!("approved in previous stage `{name}`")),
                    ..decision.clone()
                });
            }
        }
    }
    if policy_met(approval) {
        approval.state = ApprovalState::Approved;
    }
}

/// Runs task `from` of stage `i`, or ends the deployment when there is none.
fn run_next(release: &mut Release, i: usize, from: usize, now: u64, effects: &mut Vec<Effect>) {
    let stage = release.stages[i].name.clone();
    let attempt = release.stages[i]
        .attempts
        .last_mut()
        .expect("a started stage has an attempt");
    if from < attempt.tasks.len() {
        attempt.tasks[from].state = TaskState::Running;
        attempt.tasks[from].starts += 1;
        effects.push(Effect::RunTask {
            stage,
            attempt: attempt.number,
            task: from,
        });
        return;
    }
    attempt.outcome = Some(attempt.outcome.unwrap_or(StageState::Succeeded));
    proceed(release, i, ApprovalKind::Post, now, effects);
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
