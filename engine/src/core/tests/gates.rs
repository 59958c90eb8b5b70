//! Gates: sampling at their delay and interval, passing once healthy long enough, failing at
//! their timeout, their order with approvals, and rollback when post-deployment gates fail.

use super::*;

#[test]
fn pre_gates_wait_their_delay_sample_at_their_interval_and_pass_once_healthy_long_enough() {
    let mut r = gated(PRE_GATES);
    let effects = event(&mut r, Event::Created);
    assert_eq!(state(&r, "prod"), StageState::EvaluatingGates);
    let first = NOW + 60 * SECOND;
    assert!(effects.contains(&Effect::EvaluateGates {
        stage: "prod".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
        at: first,
    }));
    // Healthy, unhealthy (the healthy streak starts over), then healthy for a minute.
    let t1 = evaluate(&mut r, ApprovalKind::Pre, first, true).unwrap();
    assert_eq!(t1, first + 30 * SECOND);
    let t2 = evaluate(&mut r, ApprovalKind::Pre, t1, false).unwrap();
    let t3 = evaluate(&mut r, ApprovalKind::Pre, t2, true).unwrap();
    let t4 = evaluate(&mut r, ApprovalKind::Pre, t3, true).unwrap();
    assert_eq!(state(&r, "prod"), StageState::EvaluatingGates);
    let (last, at) = evaluated(ApprovalKind::Pre, t4, true);
    let effects = apply(&mut r, last, at).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    assert!(effects.iter().any(|e| matches!(e, Effect::Prepare { .. })));
    let run = &r.stage("prod").unwrap().attempts[0].gates[0];
    assert_eq!((run.state, run.count), (GateState::Succeeded, 5));
    assert_eq!(run.healthy_since, Some(t2));
    assert!(!run.evaluations[1].results[0].healthy);
    // A late evaluation (say, from before a restart) changes nothing.
    let (late, at) = evaluated(ApprovalKind::Pre, at, true);
    assert!(matches!(
        apply(&mut r, late, at),
        Err(InvalidTransition::Conflict(_))
    ));
}

#[test]
fn gates_that_never_pass_fail_at_their_timeout_with_the_reasons() {
    let mut r = gated(&PRE_GATES.replace("10m", "20m"));
    event(&mut r, Event::Created);
    let deadline = NOW + 1200 * SECOND;
    let mut at = NOW + 60 * SECOND;
    let mut samples = 0;
    while let Some(next) = evaluate(&mut r, ApprovalKind::Pre, at, false) {
        assert!(next <= deadline, "sampled past the timeout");
        samples += 1;
        at = next;
    }
    // Every 30 s from 1 m to 20 m, the last exactly at the timeout.
    assert_eq!((samples, at), (38, deadline));
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Failed);
    let reason = attempt.reason.as_deref().unwrap();
    assert!(
        reason.contains("pre-deployment gates failed: not healthy within 20m")
            && reason.contains("gate `health`: status 503"),
        "{reason}"
    );
    assert_eq!(attempt.tasks[0].state, TaskState::Skipped);
    assert_eq!(r.state, ReleaseState::Failed);
    assert_eq!(attempt.gates[0].evaluations.len(), GateRun::KEPT);
    assert_eq!(attempt.gates[0].count, 39);
}

#[test]
fn canceling_a_deployment_while_its_gates_are_sampled_cancels_the_gate_run() {
    let mut r = gated(PRE_GATES);
    event(&mut r, Event::Created);
    evaluate(&mut r, ApprovalKind::Pre, NOW + 60 * SECOND, true).unwrap();
    event(
        &mut r,
        Event::Cancel {
            stage: "prod".into(),
        },
    );
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Canceled);
    assert_eq!(attempt.gates[0].state, GateState::Canceled);
    assert_eq!(
        attempt.gates[0].count, 1,
        "the evaluation before stays on record"
    );
}

#[test]
fn healthy_but_not_long_enough_by_the_timeout_fails_naming_min_healthy() {
    let mut r = gated(&PRE_GATES.replace("min-healthy = \"1m\"", "min-healthy = \"20m\""));
    event(&mut r, Event::Created);
    sample_until_decided(&mut r, NOW + 60 * SECOND, true);
    let reason = r.stage("prod").unwrap().attempts[0].reason.clone().unwrap();
    assert!(
        reason.contains("healthy for 9m of the 20m required (min-healthy)"),
        "{reason}"
    );
}

const APPROVER: &str = r#"
[stages.pre-approval]
approvers = ["alice"]
"#;

#[test]
fn approvals_come_before_gates_after_successful_gates_or_after_gates_regardless() {
    // Before gates (the default): asked first, gates once approved.
    let mut r = gated(&format!("{APPROVER}{PRE_GATES}"));
    event(&mut r, Event::Created);
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    let effects = event(&mut r, decide("prod", "alice", true));
    assert_eq!(state(&r, "prod"), StageState::EvaluatingGates);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::EvaluateGates { .. }))
    );

    // After successful gates: nobody is asked until the gates pass; failing gates fail the stage.
    let order = |o: &str| {
        PRE_GATES.replace(
            "[stages.pre-gates]",
            &format!("[stages.pre-gates]\napprovals = \"{o}\""),
        )
    };
    let settings = format!(
        "{APPROVER}{}",
        order("after-successful-gates").replace("min-healthy = \"1m\"", "")
    );
    let mut r = gated(&settings);
    let effects = event(&mut r, Event::Created);
    assert_eq!(state(&r, "prod"), StageState::EvaluatingGates);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::RequestApproval { .. }))
    );
    let effects = apply(
        &mut r,
        evaluated(ApprovalKind::Pre, NOW + 60 * SECOND, true).0,
        NOW + 60 * SECOND,
    )
    .unwrap();
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    assert!(effects.contains(&Effect::RequestApproval {
        stage: "prod".into(),
        kind: ApprovalKind::Pre
    }));
    event(&mut r, decide("prod", "alice", true));
    assert_eq!(state(&r, "prod"), StageState::InProgress);

    let mut r = gated(&settings);
    event(&mut r, Event::Created);
    sample_until_decided(&mut r, NOW + 60 * SECOND, false);
    assert_eq!(state(&r, "prod"), StageState::Failed);
    assert!(r.stage("prod").unwrap().attempts[0].approvals.is_empty());

    // After gates regardless: failing gates still go to the approvers, who decide.
    let mut r = gated(&format!("{APPROVER}{}", order("after-gates")));
    event(&mut r, Event::Created);
    sample_until_decided(&mut r, NOW + 60 * SECOND, false);
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    assert_eq!(
        r.stage("prod").unwrap().attempts[0].gates[0].state,
        GateState::Failed
    );
    event(&mut r, decide("prod", "alice", true));
    assert_eq!(state(&r, "prod"), StageState::InProgress);
}

pub(super) const POST_GATES: &str = r#"
[stages.post-gates]
interval = "10s"
timeout = "1m"
rollback = true
[[stages.post-gates.gates]]
name = "health"
plugin = "http-check"
config = { url = "http://127.0.0.1:9/health" }
grants.hosts = ["127.0.0.1:9"]
"#;

#[test]
fn a_failing_post_gate_fails_the_stage_and_rolls_back_to_the_last_good_release() {
    let mut r = gated(&format!("{APPROVER}{POST_GATES}"));
    event(&mut r, Event::Created);
    event(&mut r, decide("prod", "alice", true));
    let effects = deploy_ok(&mut r, "prod", 1);
    assert_eq!(state(&r, "prod"), StageState::EvaluatingGates);
    let first = effects
        .iter()
        .find_map(|e| match e {
            Effect::EvaluateGates { at, kind, .. } => Some((*at, *kind)),
            _ => None,
        })
        .unwrap();
    assert_eq!(first, (NOW, ApprovalKind::Post));
    let mut at = NOW;
    let last = loop {
        let (e, t) = evaluated(ApprovalKind::Post, at, false);
        let effects = apply(&mut r, e, t).unwrap();
        match effects.iter().find_map(|e| match e {
            Effect::EvaluateGates { at, .. } => Some(*at),
            _ => None,
        }) {
            Some(next) => at = next,
            None => break effects,
        }
    };
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Failed);
    assert!(
        attempt
            .reason
            .as_deref()
            .unwrap()
            .ends_with("(rolling back)")
    );
    assert!(last.contains(&Effect::Rollback {
        stage: "prod".into()
    }));

    // The last good release redeploys: no approval, no gates, recorded as a rollback.
    let mut good = gated(&format!("{APPROVER}{POST_GATES}"));
    event(&mut good, Event::Created);
    event(&mut good, decide("prod", "alice", true));
    deploy_ok(&mut good, "prod", 1);
    evaluate(&mut good, ApprovalKind::Post, NOW, true);
    assert_eq!(good.state, ReleaseState::Succeeded);
    let effects = event(
        &mut good,
        Event::Rollback {
            stage: "prod".into(),
            of: "web-2".into(),
        },
    );
    let attempt = good.stage("prod").unwrap().attempts.last().unwrap().clone();
    assert_eq!(
        (
            attempt.number,
            attempt.state,
            attempt.rollback_of.as_deref()
        ),
        (2, StageState::InProgress, Some("web-2"))
    );
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 2
        }]
    );
    event(
        &mut good,
        Event::Prepared {
            stage: "prod".into(),
            attempt: 2,
        },
    );
    let effects = event(
        &mut good,
        Event::TaskFinished {
            stage: "prod".into(),
            attempt: 2,
            task: 0,
            outcome: ok(),
        },
    );
    assert_eq!(effects, [Effect::Finished(ReleaseState::Succeeded)]);
}
