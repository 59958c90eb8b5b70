//! Hand deploys respect the graph (an admin may deploy out of order, justified); an admin's
//! approval override needs a justification; a rollback takes its queue turn and waits out a
//! freeze (break-glass lets it through), and a restart finds it where it was.

use super::admission::QUEUED;
use super::schedules::FROZEN;
use super::*;

/// Ring 1, whose post-deployment approval (alice) is the gate before ring 2.
const RINGS: &str = r#"
version = 1
name = "web"
[[stages]]
name = "prod-ring-1"
post-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "/p/t.wasm"
[[stages]]
name = "prod-ring-2"
after = ["prod-ring-1"]
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

const RING_2: &str = "prod-ring-2";

/// A rings release with ring 1 deployed, waiting for its post-deployment approval.
fn ring_1_awaiting_post() -> Release {
    let mut r = release(RINGS);
    event(&mut r, Event::Created);
    deploy_ok(&mut r, "prod-ring-1", 1);
    assert_eq!(state(&r, "prod-ring-1"), StageState::AwaitingApproval);
    r
}

fn out_of_order(by: &str, justification: &str) -> Event {
    Event::DeployOutOfOrder {
        stage: RING_2.into(),
        at: None,
        by: by.into(),
        justification: justification.into(),
    }
}

#[test]
fn a_hand_deploy_of_ring_2_while_ring_1_awaits_its_post_approval_is_refused_and_changes_nothing() {
    let mut r = ring_1_awaiting_post();
    let before = r.clone();
    let deploy = Event::Deploy {
        stage: RING_2.into(),
    };
    let schedule = Event::Schedule {
        stage: RING_2.into(),
        at: NOW + 1,
    };
    for attack in [deploy.clone(), schedule] {
        let err = apply(&mut r, attack, NOW).unwrap_err();
        assert!(matches!(err, InvalidTransition::Conflict(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("prod-ring-1 (awaiting its post-deployment approval)"),
            "{message}"
        );
        assert!(message.contains("out of order"), "the way out: {message}");
        assert_eq!(r, before);
    }
    // Approved: ring 2 starts by itself; once over, a hand redeploy is in order.
    event(
        &mut r,
        decide_kind("prod-ring-1", ApprovalKind::Post, "alice", true),
    );
    assert_eq!(state(&r, RING_2), StageState::InProgress);
    deploy_ok(&mut r, RING_2, 1);
    event(&mut r, deploy);
    assert_eq!(r.stage(RING_2).unwrap().attempts.len(), 2);
}

#[test]
fn a_stage_after_a_failed_or_redeploying_stage_waits_for_it_too() {
    let mut r = release(RINGS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("prod-ring-1"));
    event(&mut r, finished("prod-ring-1", 0, fail("boom")));
    let deploy = Event::Deploy {
        stage: RING_2.into(),
    };
    let err = apply(&mut r, deploy, NOW).unwrap_err();
    assert!(err.to_string().contains("prod-ring-1 (failed)"), "{err}");
}

#[test]
fn an_admin_deploys_out_of_order_only_with_a_justification_and_it_is_recorded() {
    let mut r = ring_1_awaiting_post();
    let before = r.clone();
    for blank in ["", "  \n", &"x".repeat(MAX_JUSTIFICATION + 1)] {
        let err = apply(&mut r, out_of_order("ada", blank), NOW).unwrap_err();
        assert!(matches!(err, InvalidTransition::NotAllowed(_)), "{err:?}");
        assert!(err.to_string().contains("justification"), "{err}");
        assert_eq!(r, before);
    }
    let justified = out_of_order("ada", "ring 1's approver is out; the fix is urgent");
    let audit = justified.describe(&r);
    assert_eq!(
        audit,
        "prod-ring-2: deploy requested out of order by ada, ahead of prod-ring-1 (awaiting its \
         post-deployment approval): ring 1's approver is out; the fix is urgent"
    );
    let effects = event(&mut r, justified);
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: RING_2.into(),
            attempt: 1
        }]
    );
    let record = r.stage(RING_2).unwrap().attempts[0].out_of_order.clone();
    let record = record.expect("the override is kept on the attempt");
    assert_eq!((record.by.as_str(), record.at), ("ada", NOW));
    assert_eq!(
        record.waited_for,
        ["prod-ring-1 (awaiting its post-deployment approval)"]
    );
}

#[test]
fn an_admin_override_of_an_approval_needs_a_justification_and_is_audited_as_one() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let before = r.clone();
    let mut unjustified = decide("staging", "ada", true);
    if let Event::Decide { authority, .. } = &mut unjustified {
        *authority = Authority::Override {
            justification: " ".into(),
        };
    }
    let err = apply(&mut r, unjustified, NOW).unwrap_err();
    assert!(matches!(err, InvalidTransition::NotAllowed(_)), "{err:?}");
    assert_eq!(r, before, "no decision recorded");
    let justified = overriding(decide("staging", "ada", true));
    assert!(
        justified.describe(&r).contains(
            "approved by ada (override by ada, for every approver: the approvers are away)"
        ),
        "{}",
        justified.describe(&r)
    );
    event(&mut r, justified);
    let decision = &r.stage("staging").unwrap().attempts[0].approvals[0].decisions[0];
    assert_eq!(
        decision.note.as_deref(),
        Some("override by ada, for every approver: the approvers are away")
    );
    assert_eq!(state(&r, "staging"), StageState::InProgress);
}

#[test]
fn an_admin_reassigning_on_an_override_needs_a_justification() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let before = r.clone();
    let reassign = |justification: &str| Event::Reassign {
        stage: "staging".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
        by: "ada".into(),
        groups: vec![],
        to: "mallory".into(),
        candidates: vec![Candidate {
            name: "mallory".into(),
            groups: vec![],
        }],
        comment: "on leave".into(),
        authority: Authority::Override {
            justification: justification.into(),
        },
    };
    let err = apply(&mut r, reassign(""), NOW).unwrap_err();
    assert!(err.to_string().contains("justification"), "{err}");
    assert_eq!(r, before);
    let justified = reassign("alice and bob are both on leave");
    assert!(justified.describe(&r).contains(
        "reassigned by ada to mallory (override by ada: alice and bob are both on leave)"
    ));
    event(&mut r, justified);
    let approvals = &r.stage("staging").unwrap().attempts[0].approvals;
    assert_eq!(approvals[1].approvers, ["mallory"]);
}

fn rollback(stage: &str) -> Event {
    Event::Rollback {
        stage: stage.into(),
        of: "q-9".into(),
    }
}

#[test]
fn a_rollback_on_a_stage_with_a_queue_waits_for_its_turn_without_approvals() {
    let mut r = release(QUEUED);
    event(&mut r, Event::Created);
    event(&mut r, Event::Cancel { stage: "qa".into() });
    let effects = event(&mut r, rollback("qa"));
    assert!(
        effects.is_empty(),
        "nothing runs before its turn: {effects:?}"
    );
    let attempt = r.stage("qa").unwrap().attempts.last().unwrap().clone();
    assert_eq!(
        (attempt.state, attempt.rollback_of.as_deref()),
        (StageState::Queued, Some("q-9"))
    );
    // Stored as queued: after a restart the queue (not recovery) gives its turn.
    assert_eq!(recover(&r), (vec![], vec![]));
    let effects = event(
        &mut r,
        Event::Admit {
            stage: "qa".into(),
            attempt: 2,
        },
    );
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "qa".into(),
            attempt: 2
        }],
        "its turn: deployed without the pre-deployment approval"
    );
}

#[test]
fn a_rollback_in_a_freeze_waits_it_out_survives_a_restart_and_break_glass_lets_it_go() {
    let saturday = at("2026-11-21T11:00:00Z");
    let end = at("2026-11-23T08:00:00Z");
    let mut r = release(FROZEN);
    // Deployed on Friday before the freeze; rolled back to on Saturday, inside it.
    let friday = at("2026-11-20T16:00:00Z");
    apply(&mut r, Event::Created, friday).unwrap();
    let effects = apply(&mut r, rollback("prod"), saturday).unwrap_err();
    assert!(matches!(effects, InvalidTransition::Stage { .. }), "busy");
    deploy_ok(&mut r, "prod", 1);
    let effects = apply(&mut r, rollback("prod"), saturday).unwrap();
    let due = Event::Due {
        stage: "prod".into(),
        attempt: 2,
    };
    assert_eq!(
        effects,
        [Effect::Timer {
            at: end,
            event: due.clone()
        }]
    );
    let attempt = r.stage("prod").unwrap().attempts[1].clone();
    assert_eq!(attempt.state, StageState::Scheduled);
    assert_eq!(attempt.frozen.as_deref(), Some("weekend"));
    assert_eq!(attempt.rollback_of.as_deref(), Some("q-9"));
    // A restart sets the freeze's timer again.
    let (events, effects) = recover(&r);
    assert!(events.is_empty());
    assert_eq!(
        effects,
        [Effect::Timer {
            at: end,
            event: due.clone()
        }]
    );
    // Waited out: it deploys, still a rollback.
    let mut waited = r.clone();
    let effects = apply(&mut waited, due, end).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 2
        }]
    );
    assert_eq!(
        waited.stage("prod").unwrap().attempts[1]
            .rollback_of
            .as_deref(),
        Some("q-9")
    );
    // Or an admin breaks glass for it now.
    let glass = Event::BreakGlass {
        stage: "prod".into(),
        by: "ada".into(),
        justification: "the bad release is still serving".into(),
    };
    let effects = apply(&mut r, glass, saturday).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 2
        }]
    );
}
