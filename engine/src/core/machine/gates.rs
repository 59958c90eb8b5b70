//! Gates: sampling a phase's gates, and the verdict (passed, not yet, failed at the timeout).

use crate::pipeline::ApprovalOrder;

use super::{
    InvalidTransition, Step, attempt_no, finish_attempt, phase, proceed, stage_index, wrong,
};
use crate::core::event::{Effect, Event};
use crate::core::model::*;
use crate::types::millis;

/// Applies `GatesEvaluated`: one answer from every gate of the pending set.
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    match event {
        Event::GatesEvaluated {
            stage,
            attempt: number,
            kind,
            results,
        } => {
            let i = stage_index(release, &stage)?;
            let spec = &release.plan.stages[i];
            let Some(gates) = phase(spec, kind).1.cloned() else {
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
            let min_healthy = millis(gates.min_healthy);
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
                        for_people(millis(gates.timeout))
                    )))
                } else {
                    None
                }
            } else {
                run.healthy_since = None;
                (now >= run.deadline).then(|| {
                    Err(format!(
                        "not healthy within {}: {}",
                        for_people(millis(gates.timeout)),
                        unhealthy.join("; ")
                    ))
                })
            };
            match verdict {
                None => {
                    // Saturating: a next evaluation past the end of time is "never", held
                    // back to the deadline anyway.
                    let interval = millis(gates.interval).max(1);
                    let next = now.saturating_add(interval);
                    run.next_at = next.min(run.deadline.max(now.saturating_add(1)));
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
        other => unreachable!("not a gate event: {other:?}"),
    }
}

/// Starts sampling the phase's gates: the first evaluation after the delay.
pub(super) fn start_gates(
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
        // Saturating: a deadline past the end of a u64 of milliseconds is "never" (the parsers
        // bound delay and timeout, so only a plan stored before the bound gets here).
        deadline: now.saturating_add(timeout),
        next_at: now.saturating_add(delay),
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

/// A duration in milliseconds, for people: `15m`, `30s`, `250ms`.
fn for_people(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
