//! The core's tests, by sub-lifecycle; here, the fixtures they share: releases of small
//! pipelines, event and effect shorthands, and the pipelines more than one file uses.

use std::path::Path;

use super::*;
use crate::types::Variable;

mod admission;
mod agents;
mod approvals;
mod bounds;
mod deployment;
mod gates;
mod graph;
mod reassign;
mod recovery;
mod schedules;
mod table;

const NOW: u64 = 1_000;

fn release(pipeline: &str) -> Release {
    let plan = crate::pipeline::parse("test.toml", pipeline, Path::new("/p"), "test")
        .unwrap_or_else(|e| panic!("{e}"))
        .plan;
    Release::new(NewRelease {
        plan,
        number: 1,
        creator: "carol".into(),
        description: None,
        artifacts: vec![],
        variables: vec![],
        digests: vec![],
        created_at: NOW,
    })
}

fn ok() -> TaskOutcome {
    TaskOutcome::Succeeded {
        warnings: vec![],
        outputs: vec![],
    }
}

fn fail(why: &str) -> TaskOutcome {
    TaskOutcome::Failed(why.into())
}

fn state(r: &Release, stage: &str) -> StageState {
    r.stage(stage).unwrap().state()
}

fn event(r: &mut Release, e: Event) -> Vec<Effect> {
    apply(r, e, NOW).unwrap_or_else(|e| panic!("{e}"))
}

fn prepared(stage: &str) -> Event {
    Event::Prepared {
        stage: stage.into(),
        attempt: 1,
    }
}

fn finished(stage: &str, task: usize, outcome: TaskOutcome) -> Event {
    Event::TaskFinished {
        stage: stage.into(),
        attempt: 1,
        task,
        outcome,
    }
}

/// A decision on the latest pending approval of the stage's first attempt.
fn decide(stage: &str, by: &str, approve: bool) -> Event {
    decide_kind(stage, ApprovalKind::Pre, by, approve)
}

fn decide_kind(stage: &str, kind: ApprovalKind, by: &str, approve: bool) -> Event {
    Event::Decide {
        stage: stage.into(),
        attempt: 1,
        kind,
        by: by.into(),
        groups: vec![],
        approve,
        comment: String::new(),
        authority: Authority::Approver,
        defer_until: None,
    }
}

/// An admin's override, justified.
fn admin() -> Authority {
    Authority::Override {
        justification: "the approvers are away".into(),
    }
}

fn overriding(mut e: Event) -> Event {
    if let Event::Decide { authority, .. } = &mut e {
        *authority = admin();
    }
    e
}

fn deferred(mut e: Event, until: u64) -> Event {
    if let Event::Decide { defer_until, .. } = &mut e {
        *defer_until = Some(until);
    }
    e
}

fn run(stage: &str, task: usize) -> Effect {
    Effect::RunTask {
        stage: stage.into(),
        attempt: 1,
        task,
    }
}

/// Runs a stage whose workspace is ready through all its `n` tasks successfully.
fn deploy_ok(r: &mut Release, stage: &str, n: usize) -> Vec<Effect> {
    let number = r.stage(stage).unwrap().attempts.last().unwrap().number;
    let in_attempt = |mut e: Event| {
        if let Event::Prepared { attempt, .. } | Event::TaskFinished { attempt, .. } = &mut e {
            *attempt = number;
        }
        e
    };
    event(r, in_attempt(prepared(stage)));
    let mut last = Vec::new();
    for i in 0..n {
        last = event(r, in_attempt(finished(stage, i, ok())));
    }
    last
}

const TWO_TASKS: &str = r#"
version = 1
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "copy"
[[stages.tasks]]
plugin = "copy"
continue-on-error = true
"#;

const APPROVALS: &str = r#"
version = 1
[[stages]]
name = "staging"
pre-approval = { approvers = ["alice", "bob"], policy = "all" }
post-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "copy"
"#;

/// Unix milliseconds of an RFC 3339 time.
fn at(time: &str) -> u64 {
    time.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

/// A one-stage pipeline with one task and the given stage settings (gates, approvals).
fn gated(settings: &str) -> Release {
    release(&format!(
        r#"
version = 1
name = "web"
[[stages]]
name = "prod"
[[stages.tasks]]
plugin = "/p/t.wasm"
{settings}
"#
    ))
}

const SECOND: u64 = 1_000;

fn evaluated(kind: ApprovalKind, at: u64, healthy: bool) -> (Event, u64) {
    let result = GateResult {
        gate: "health".into(),
        healthy,
        reason: (!healthy).then(|| "status 503, expected 200".into()),
    };
    let event = Event::GatesEvaluated {
        stage: "prod".into(),
        attempt: 1,
        kind,
        results: vec![result],
    };
    (event, at)
}

/// Applies the evaluation and returns when the next one is due, if one is.
fn evaluate(r: &mut Release, kind: ApprovalKind, at: u64, healthy: bool) -> Option<u64> {
    let (event, at) = evaluated(kind, at, healthy);
    let effects = apply(r, event, at).unwrap_or_else(|e| panic!("{e}"));
    effects.iter().find_map(|e| match e {
        Effect::EvaluateGates { at, .. } => Some(*at),
        _ => None,
    })
}

/// Evaluates the pre-deployment gates from `at` on, each time as they ask, all `healthy` or
/// not, until they decide.
fn sample_until_decided(r: &mut Release, mut at: u64, healthy: bool) {
    while let Some(next) = evaluate(r, ApprovalKind::Pre, at, healthy) {
        at = next;
    }
}

const PRE_GATES: &str = r#"
[stages.pre-gates]
delay = "1m"
interval = "30s"
timeout = "10m"
min-healthy = "1m"
[[stages.pre-gates.gates]]
name = "health"
plugin = "http-check"
config = { url = "http://127.0.0.1:9/health" }
grants.hosts = ["127.0.0.1:9"]
"#;
