//! A stage with a pool runs on an agent: its job is assigned (the lease and its epoch, committed
//! before the agent hears of it) and, when the agent stops renewing the lease, lost.

use super::deployment::{first_pending, run_next};
use super::{Step, attempt_no, finish_attempt, stage_index, wrong};
use crate::core::event::{Effect, Event, agent_lost};
use crate::core::model::*;

/// Applies `Assigned` or `AgentLost`.
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    match event {
        Event::Assigned {
            stage,
            attempt,
            agent,
        } => {
            let i = stage_index(release, &stage)?;
            if release.plan.stages[i].pool.is_none() {
                return Err(wrong(release, i, "assign it to an agent: it has no pool"));
            }
            let nothing_to_fetch = release.artifacts.is_empty();
            let run = attempt_no(release, i, attempt, "assign it to an agent")?;
            if run.state != StageState::InProgress || run.prepared || run.held_lease().is_some() {
                return Err(wrong(release, i, "assign a job that is not queued"));
            }
            let epoch = run.lease.as_ref().map_or(0, |l| l.epoch) + 1;
            run.lease = Some(Lease {
                agent,
                epoch,
                lost: false,
            });
            if nothing_to_fetch {
                run.prepared = true;
                let from = first_pending(run);
                run_next(release, i, from, now, effects);
            }
            Ok(())
        }
        Event::AgentLost {
            stage,
            attempt,
            epoch,
        } => {
            let i = stage_index(release, &stage)?;
            let idempotent: Vec<bool> = release.plan.stages[i]
                .tasks
                .iter()
                .map(|t| t.idempotent)
                .collect();
            let run = attempt_no(release, i, attempt, "lose its agent")?;
            let held = run.held_lease().map(|l| (l.epoch, l.agent.clone()));
            let Some((_, agent)) = held.filter(|(e, _)| *e == epoch) else {
                return Err(wrong(
                    release,
                    i,
                    "lose an agent that holds no lease of this epoch",
                ));
            };
            if run.state != StageState::InProgress {
                return Err(wrong(release, i, "lose the agent of a job that is over"));
            }
            if let Some(lease) = &mut run.lease {
                lease.lost = true;
            }
            let running = run.tasks.iter().position(|t| t.state == TaskState::Running);
            match running {
                Some(task) if !idempotent.get(task).copied().unwrap_or(false) => {
                    let why = agent_lost(&agent);
                    run.tasks[task].state = TaskState::Failed;
                    run.tasks[task].messages = vec![why.clone()];
                    for later in &mut run.tasks[task + 1..] {
                        later.state = TaskState::Skipped;
                    }
                    finish_attempt(run, StageState::Failed, Some(why), now);
                }
                running => {
                    // Prepared again by the next agent, from the first task not done.
                    if let Some(task) = running {
                        run.tasks[task].state = TaskState::Pending;
                    }
                    run.prepared = false;
                    effects.push(Effect::Prepare {
                        stage,
                        attempt: run.number,
                    });
                }
            }
            Ok(())
        }
        other => unreachable!("not an agent event: {other:?}"),
    }
}
