//! Deployment: preparing the workspace, running the tasks in order, a restart's interrupted or
//! restarted task, cancel and abandon.

use super::{
    InvalidTransition, Step, attempt_no, current, finish_attempt, proceed, stage_index, wrong,
};
use crate::core::event::{Effect, Event, INTERRUPTED, TaskOutcome};
use crate::core::model::*;

/// Applies a deployment event: `Prepared`, `PrepareFailed`, `TaskFinished`, `TaskInterrupted`,
/// `TaskRestarted`, `Cancel` or `Abandon`.
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    match event {
        Event::Prepared { stage, attempt } => {
            let i = stage_index(release, &stage)?;
            let pooled = release.plan.stages[i].pool.is_some();
            let attempt = attempt_no(release, i, attempt, "prepare")?;
            // On an agent, only the agent holding the lease prepares.
            let unleased = pooled && attempt.held_lease().is_none();
            if attempt.state != StageState::InProgress || attempt.prepared || unleased {
                return Err(wrong(release, i, "finish preparing"));
            }
            attempt.prepared = true;
            let from = first_pending(attempt);
            run_next(release, i, from, now, effects);
            Ok(())
        }
        Event::PrepareFailed {
            stage,
            attempt,
            reason,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, attempt, "prepare")?;
            // On an agent too, with or without a lease: the engine fails a job it cannot
            // resolve before any agent takes it.
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
        other => unreachable!("not a deployment event: {other:?}"),
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

/// The first task not run yet: 0, unless a lost agent's job went back to the queue after some.
pub(super) fn first_pending(attempt: &Attempt) -> usize {
    attempt
        .tasks
        .iter()
        .position(|t| t.state == TaskState::Pending)
        .unwrap_or(attempt.tasks.len())
}

/// Runs task `from` of stage `i` (on the agent holding the job's lease, if one does), or ends
/// the deployment when there is none.
pub(super) fn run_next(
    release: &mut Release,
    i: usize,
    from: usize,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let stage = release.stages[i].name.clone();
    let attempt = release.stages[i]
        .attempts
        .last_mut()
        .expect("a started stage has an attempt");
    if from < attempt.tasks.len() {
        let agent = attempt.held_lease().map(|l| l.agent.clone());
        attempt.tasks[from].state = TaskState::Running;
        attempt.tasks[from].starts += 1;
        attempt.tasks[from].agent = agent;
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
