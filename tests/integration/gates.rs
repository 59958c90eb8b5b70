//! Gates on a real service: `http-check` sampling a local HTTP server that turns unhealthy,
//! the approval order around gates, and the automatic rollback after a failing
//! post-deployment gate. Time is real here (short intervals); the sampling arithmetic is
//! tested with a fake clock in the core's tests.

use sluice::core::{ApprovalKind, GateState, ReleaseState, StageState};

use crate::support::{Approvals, Harness, TestServer};

/// `web`: one stage, `prod`, with a no-op task and the gates in `gates`, checking `server`.
fn pipeline(server: &TestServer, gates: &str) -> String {
    let host = server.addr.to_string();
    let url = server.url("/health");
    format!(
        r#"
version = 1
name = "web"

[[stages]]
name = "prod"
{gates}
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#
    )
    .replace("URL", &url)
    .replace("HOST", &host)
}

const GATE: &str = r#"
name = "health"
plugin = "http-check"
config = { url = "URL", expect_status = 200 }
grants.hosts = ["HOST"]
"#;

fn attempt(h: &Harness, release: &str, number: usize) -> sluice::core::Attempt {
    h.service.release(release).unwrap().stages[0].attempts[number - 1].clone()
}

/// The audit entries of `release` that record a gate evaluation.
fn evaluations_logged(h: &Harness, release: &str) -> Vec<String> {
    h.service
        .store()
        .audit()
        .unwrap()
        .into_iter()
        .filter(|e| e.release == release && e.what.contains("gates evaluated"))
        .map(|e| e.what)
        .collect()
}

#[test]
fn a_failing_post_deployment_gate_rolls_the_stage_back_to_the_last_good_release() {
    let server = TestServer::start("ok");
    let gates = format!(
        r#"
[stages.post-gates]
interval = "100ms"
timeout = "1500ms"
min-healthy = "300ms"
rollback = true
[[stages.post-gates.gates]]
{GATE}"#
    );
    let h = Harness::serve(&pipeline(&server, &gates));

    // Healthy: the gates pass once healthy for 300 ms, sampled every 100 ms.
    let good = h.create();
    h.wait("the first release succeeds", |h| {
        h.service.release(&good).unwrap().state == ReleaseState::Succeeded
    });
    let gates = &attempt(&h, &good, 1).gates[0];
    assert_eq!(
        (gates.kind, gates.state),
        (ApprovalKind::Post, GateState::Succeeded)
    );
    assert!(gates.count >= 4, "{} evaluations", gates.count);
    for pair in gates.evaluations.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= 100,
            "sampled faster than the interval"
        );
    }
    let logged = evaluations_logged(&h, &good);
    assert_eq!(
        logged.len(),
        gates.count as usize,
        "every evaluation is in the audit log"
    );
    assert!(logged[0].contains("post-deployment gates evaluated: health healthy"));

    // The service turns unhealthy: the next release's post-deployment gates fail at the
    // timeout and the stage rolls back to the first release.
    server.set_status(503);
    let bad = h.create();
    h.wait("the first release is redeployed", |h| {
        h.service.release(&good).unwrap().stages[0].attempts.len() == 2
            && h.service.release(&good).unwrap().state == ReleaseState::Succeeded
    });
    let failed = attempt(&h, &bad, 1);
    assert_eq!(failed.state, StageState::Failed);
    let reason = failed.reason.unwrap();
    assert!(
        reason.starts_with("post-deployment gates failed: not healthy within 1500ms")
            && reason.contains("gate `health`")
            && reason.contains("503")
            && reason.ends_with("(rolling back)"),
        "{reason}"
    );
    assert_eq!(h.service.release(&bad).unwrap().state, ReleaseState::Failed);
    let rollback = attempt(&h, &good, 2);
    assert_eq!(rollback.rollback_of.as_deref(), Some(bad.as_str()));
    assert_eq!(rollback.state, StageState::Succeeded);
    assert!(rollback.gates.is_empty(), "a rollback is not gated");
    let audit = h.service.store().audit().unwrap();
    let recorded =
        format!("prod: rollback: redeployed because the post-deployment gates of {bad} failed");
    assert!(
        audit
            .iter()
            .any(|e| e.release == good && e.what.starts_with(&recorded)),
        "the rollback is in the audit trail as such"
    );
    assert!(
        evaluations_logged(&h, &bad)
            .iter()
            .all(|e| e.contains("health unhealthy") && e.contains("503"))
    );
}

#[test]
fn approvers_are_asked_only_after_the_pre_deployment_gates_pass_their_delay() {
    let server = TestServer::start("ok");
    server.set_status(503);
    let gates = format!(
        r#"
[stages.pre-approval]
approvers = ["alice"]
[stages.pre-gates]
delay = "200ms"
interval = "100ms"
timeout = "30s"
approvals = "after-successful-gates"
[[stages.pre-gates.gates]]
{GATE}"#
    );
    let h = Harness::serve(&pipeline(&server, &gates));
    let release = h.create();
    h.wait("two unhealthy evaluations", |h| {
        attempt(h, &release, 1)
            .gates
            .first()
            .is_some_and(|g| g.count >= 2)
    });
    let gates = attempt(&h, &release, 1).gates[0].clone();
    assert!(
        gates.evaluations[0].at >= gates.started_at + 200,
        "the delay was kept"
    );
    assert!(gates.evaluations.iter().all(|e| !e.results[0].healthy));
    assert!(
        h.pending().is_empty(),
        "nobody is asked while the gates fail"
    );
    assert_eq!(attempt(&h, &release, 1).state, StageState::EvaluatingGates);

    server.set_status(200);
    let id = format!("{release}.prod.1.pre");
    h.wait_pending(std::slice::from_ref(&id));
    assert_eq!(
        attempt(&h, &release, 1).gates[0].state,
        GateState::Succeeded
    );
    h.approve(&id);
    h.wait("the release succeeds", |h| {
        h.service.release(&release).unwrap().state == ReleaseState::Succeeded
    });
}
