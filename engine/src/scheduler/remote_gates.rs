//! The gates of a stage with a pool run where the stage runs: on an agent of its pool that
//! meets its demands. Each sample is one gate job, resolved here as tasks are, answered with
//! one result per gate. A sample no agent takes before the gates' timeout is unhealthy,
//! saying so (one taken runs for at most its time limits); one whose agent is lost is
//! unhealthy too, and the next sample goes on.

use std::sync::Arc;

use super::Engine;
use super::driver::Msg;
use super::remote::{Remote, Resolve, Work, stage_index};
use crate::core::{ApprovalKind, Event, GateResult, Release};
use crate::pipeline::{GateSpec, StageSpec};
use crate::types::job::{GateReported, TaskCall};

/// The `kind` gates of a stage.
pub(super) fn gates_of(spec: &StageSpec, kind: ApprovalKind) -> &[GateSpec] {
    let gates = match kind {
        ApprovalKind::Pre => spec.pre_gates.as_ref(),
        ApprovalKind::Post => spec.post_gates.as_ref(),
    };
    gates.map_or(&[][..], |g| &g.gates[..])
}

/// Every gate in `names` unhealthy for `why`.
fn unhealthy(names: &[String], why: &str) -> Vec<GateResult> {
    (names.iter())
        .map(|gate| GateResult {
            gate: gate.clone(),
            healthy: false,
            reason: Some(why.to_owned()),
        })
        .collect()
}

impl Engine {
    /// `EvaluateGates` of a stage on an agent: one sample of its `kind` gates.
    pub(super) fn remote_gates(
        self: &Arc<Self>,
        release: &Release,
        stage: String,
        attempt: u32,
        kind: ApprovalKind,
    ) -> Work {
        let resolved = (self.jobs.get().cloned())
            .ok_or_else(|| "only `sluice serve` dispatches gates to agents".to_owned())
            .and_then(|jobs| {
                let calls = self.gate_calls(release, &stage, attempt, kind)?;
                let dispatch = self.dispatch_of(release, &stage, attempt, false)?;
                Ok((jobs, calls, dispatch))
            });
        let gates = |s: &StageSpec| gates_of(s, kind).iter().map(|g| g.name.clone()).collect();
        let names: Vec<String> = (release.plan.stages.iter())
            .find(|s| s.name == stage)
            .map(gates)
            .unwrap_or_default();
        let evaluated = |results| Event::GatesEvaluated {
            stage: stage.clone(),
            attempt,
            kind,
            results,
        };
        let (jobs, calls, dispatch) = match resolved {
            Ok(parts) => parts,
            Err(why) => {
                let msg = Msg::Event(evaluated(unhealthy(&names, &why)), "engine".into());
                return Box::pin(async move { msg });
            }
        };
        let until = (release.stage(&stage))
            .and_then(|s| s.attempts.iter().find(|a| a.number == attempt))
            .and_then(|a| a.gates.last())
            .map_or(0, |g| g.deadline);
        let pool = dispatch.pool.clone();
        let late = Msg::Event(
            evaluated(unhealthy(
                &names,
                &format!(
                    "no agent of pool `{pool}` meeting the stage's demands evaluated it before \
                     the gates' timeout"
                ),
            )),
            "engine".into(),
        );
        let lost = Msg::Event(
            evaluated(unhealthy(
                &names,
                "the agent evaluating it stopped renewing its lease",
            )),
            "engine".into(),
        );
        let (stage, kind_name) = (stage.clone(), kind.as_str());
        Box::pin(async move {
            match jobs.evaluate_gates(dispatch, kind_name, calls, until).await {
                Remote::Unclaimed => late,
                Remote::Nothing => Msg::Nothing,
                Remote::Lost { .. } => lost,
                Remote::Reported { value, agent, ack } => Msg::Reported {
                    event: Event::GatesEvaluated {
                        stage,
                        attempt,
                        kind,
                        results: results(value),
                    },
                    actor: format!("agent:{agent}"),
                    log: None,
                    ack,
                },
            }
        })
    }

    /// The `kind` gates of `stage`, resolved for an agent.
    fn gate_calls(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        kind: ApprovalKind,
    ) -> Result<Vec<TaskCall>, String> {
        let i = stage_index(release, stage)?;
        (gates_of(&release.plan.stages[i], kind).iter())
            .map(|gate| {
                let step = Resolve {
                    name: &gate.name,
                    plugin: &gate.plugin,
                    config: &gate.config,
                    grants: &gate.grants,
                    limits: gate.limits,
                };
                self.resolve_call(release, i, attempt, step)
            })
            .collect()
    }
}

/// An agent's answers as the core takes them.
fn results(reported: Vec<GateReported>) -> Vec<GateResult> {
    reported
        .into_iter()
        .map(|r| GateResult {
            gate: r.gate,
            healthy: r.outcome.is_ok(),
            reason: r.outcome.err(),
        })
        .collect()
}
