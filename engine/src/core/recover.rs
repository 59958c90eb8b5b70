//! Recovery after a restart: what to redo for a release found unfinished.

use super::event::{Effect, Event};
use super::machine::approval::request;
use super::model::*;

/// What to do with a release found unfinished when the engine starts: events to apply (a
/// non-idempotent task that was running fails) and effects to redo (approvals to ask again,
/// workspaces to prepare again, idempotent tasks to run again, through `TaskRestarted`; an
/// agent's job dispatched again, to the agent that holds its lease).
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
            // On an agent: its job is dispatched again as it stands. A lease still held is the
            // same agent's to come back to (within the lease, or the job is lost); a task it
            // was told to run was committed as started on it, and is not started again here.
            StageState::InProgress if release.plan.stages[i].pool.is_some() => {
                let running = attempt
                    .tasks
                    .iter()
                    .position(|t| t.state == TaskState::Running);
                effects.push(match (attempt.held_lease(), running) {
                    (Some(_), Some(task)) => Effect::RunTask {
                        stage: name,
                        attempt: attempt.number,
                        task,
                    },
                    _ => Effect::Prepare {
                        stage: name,
                        attempt: attempt.number,
                    },
                });
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
