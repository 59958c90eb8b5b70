//! Approvals: policies, who may decide, overrides, deferral, expiry (and decisions too late),
//! reassignment (who may hand an approval to whom), void approvals, stale decisions and carrying
//! approvals over from the previous stage.

use super::*;

#[test]
fn pre_approval_waits_for_the_policy_then_prepares() {
    let mut r = release(APPROVALS);
    let effects = event(&mut r, Event::Created);
    assert_eq!(
        effects,
        [Effect::RequestApproval {
            stage: "staging".into(),
            kind: ApprovalKind::Pre
        }]
    );
    assert_eq!(state(&r, "staging"), StageState::AwaitingApproval);
    assert!(
        event(&mut r, decide("staging", "alice", true)).is_empty(),
        "all: bob still has to approve"
    );
    let effects = event(&mut r, decide("staging", "bob", true));
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

#[test]
fn post_approval_gates_success() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    event(&mut r, decide("staging", "alice", true));
    event(&mut r, decide("staging", "bob", true));
    let effects = deploy_ok(&mut r, "staging", 1);
    assert_eq!(
        effects,
        [Effect::RequestApproval {
            stage: "staging".into(),
            kind: ApprovalKind::Post
        }]
    );
    let effects = event(
        &mut r,
        decide_kind("staging", ApprovalKind::Post, "alice", true),
    );
    assert_eq!(effects, [Effect::Finished(ReleaseState::Succeeded)]);
}

#[test]
fn a_rejection_is_its_own_state_and_fails_the_release() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let effects = event(&mut r, decide("staging", "bob", false));
    assert_eq!(state(&r, "staging"), StageState::Rejected);
    assert_eq!(effects, [Effect::Finished(ReleaseState::Failed)]);
    let approval = &r.stage("staging").unwrap().attempts[0].approvals[0];
    assert_eq!(approval.state, ApprovalState::Rejected);
}

#[test]
fn approval_rules_reject_outsiders_creators_repeats_and_out_of_order() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    for (by, expect) in [
        ("mallory", "not an approver"),
        ("carol", "created this release"),
    ] {
        let err = apply(&mut r, decide("staging", by, true), NOW).unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
    event(&mut r, decide("staging", "alice", true));
    let err = apply(&mut r, decide("staging", "alice", true), NOW).unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");

    let mut r = release(&APPROVALS.replace("policy = \"all\"", "policy = \"sequence\""));
    event(&mut r, Event::Created);
    let err = apply(&mut r, decide("staging", "bob", true), NOW).unwrap_err();
    assert!(err.to_string().contains("next is alice"), "{err}");
}

#[test]
fn groups_and_n_of_m() {
    let pipeline = r#"
version = 1
[[stages]]
name = "prod"
pre-approval = { approvers = ["group:sre", "dave", "erin"], policy = "n-of-m", required = 2 }
"#;
    let mut r = release(pipeline);
    event(&mut r, Event::Created);
    let mut by_group = decide("prod", "frank", true);
    if let Event::Decide { groups, .. } = &mut by_group {
        groups.push("sre".into());
    }
    assert!(event(&mut r, by_group).is_empty());
    assert_eq!(
        event(&mut r, decide("prod", "erin", true)),
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 1
        }]
    );
}

#[test]
fn the_local_operator_decides_for_everyone() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let effects = event(&mut r, overriding(decide("staging", "carol", true)));
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

#[test]
fn a_decision_names_its_approval_and_a_redeploy_voids_old_ones() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    // The pending approval is pre-deployment: a decision for the post one does not apply.
    let err = apply(
        &mut r,
        decide_kind("staging", ApprovalKind::Post, "alice", true),
        NOW,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no pending post-deployment approval"),
        "{err}"
    );
    event(
        &mut r,
        Event::Cancel {
            stage: "staging".into(),
        },
    );
    event(
        &mut r,
        Event::Deploy {
            stage: "staging".into(),
        },
    );
    let revision = r.revision;
    let err = apply(&mut r, decide("staging", "alice", true), NOW).unwrap_err();
    assert_eq!(
        err,
        InvalidTransition::Stale {
            stage: "staging".into(),
            attempt: 1,
            current: 2
        }
    );
    assert_eq!(r.revision, revision, "a stale decision changes nothing");
    let id = approval_id(&r.name, "staging", 2, ApprovalKind::Pre);
    assert_eq!(id, "test-1.staging.2.pre");
    let attempts = &r.stage("staging").unwrap().attempts;
    assert_eq!(attempts[0].approvals[0].state, ApprovalState::Canceled);
    assert_eq!(attempts[1].approvals[0].state, ApprovalState::Pending);
}

#[test]
fn approve_with_a_deferral_schedules_the_deployment() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    event(&mut r, decide("staging", "alice", true));
    let effects = event(
        &mut r,
        deferred(decide("staging", "bob", true), NOW + 60_000),
    );
    let due = Event::Due {
        stage: "staging".into(),
        attempt: 1,
    };
    assert_eq!(
        effects,
        [Effect::Timer {
            at: NOW + 60_000,
            event: due.clone()
        }]
    );
    assert_eq!(state(&r, "staging"), StageState::Scheduled);
    // After a restart the timer is set again.
    assert_eq!(
        recover(&r).1,
        [Effect::Timer {
            at: NOW + 60_000,
            event: due.clone()
        }]
    );
    assert_eq!(
        event(&mut r, due),
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

#[test]
fn a_timeout_expires_the_approval_and_rejects_the_deployment() {
    let mut r =
        release(&APPROVALS.replace(r#"policy = "all" }"#, r#"policy = "all", timeout = "1h" }"#));
    let effects = event(&mut r, Event::Created);
    let expire = Event::Expire {
        stage: "staging".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
    };
    assert!(effects.contains(&Effect::Timer {
        at: NOW + 3_600_000,
        event: expire.clone()
    }));
    assert!(recover(&r).1.contains(&Effect::Timer {
        at: NOW + 3_600_000,
        event: expire.clone()
    }));
    event(&mut r, expire.clone());
    assert_eq!(state(&r, "staging"), StageState::Rejected);
    let approval = &r.stage("staging").unwrap().attempts[0].approvals[0];
    assert_eq!(approval.state, ApprovalState::Expired);
    // A timer that fires after a decision changes nothing.
    assert!(apply(&mut r, expire, NOW).is_err());
}

#[test]
fn a_void_approval_fails_the_deployment() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    event(
        &mut r,
        Event::Void {
            stage: "staging".into(),
            attempt: 1,
            reason: "plugin `copy` changed".into(),
        },
    );
    let attempt = &r.stage("staging").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Failed);
    assert_eq!(attempt.approvals[0].state, ApprovalState::Canceled);
    assert!(attempt.reason.as_ref().unwrap().contains("approval void"));
}

#[test]
fn skip_if_approved_in_previous_stage_carries_the_same_approvers() {
    let pipeline = r#"
version = 1
[[stages]]
name = "qa"
pre-approval = { approvers = ["alice"] }
[[stages]]
name = "prod"
after = ["qa"]
pre-approval = { approvers = ["alice", "bob"], policy = "any", skip-if-approved-in-previous-stage = true }
[[stages]]
name = "prod-2"
after = ["prod"]
pre-approval = { approvers = ["bob"], skip-if-approved-in-previous-stage = true }
"#;
    let mut r = release(pipeline);
    event(&mut r, Event::Created);
    let effects = event(&mut r, decide("qa", "alice", true));
    event(&mut r, prepared("qa"));
    // qa has no tasks: it succeeded; prod needs alice or bob, and alice approved qa.
    let _ = effects;
    assert_eq!(state(&r, "qa"), StageState::Succeeded);
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    let approval = &r.stage("prod").unwrap().attempts[0].approvals[0];
    assert_eq!(approval.state, ApprovalState::Approved);
    assert_eq!(
        approval.decisions[0].note.as_deref(),
        Some("approved in previous stage `qa`")
    );
    // prod-2's approver (bob) approved nothing before: asked as usual.
    event(&mut r, prepared("prod"));
    assert_eq!(state(&r, "prod-2"), StageState::AwaitingApproval);
}
