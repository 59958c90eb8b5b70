//! Admission through a stage's queue: queued until admitted, superseded by a newer release.

use super::*;

pub(super) const QUEUED: &str = r#"
version = 1
name = "q"
[[stages]]
name = "qa"
queue = { policy = "sequential" }
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "/p/t.wasm"
[[stages]]
name = "prod"
after = ["qa"]
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

#[test]
fn a_limited_stage_starts_queued_and_asks_nothing_until_admitted() {
    let mut r = release(QUEUED);
    let effects = event(&mut r, Event::Created);
    assert_eq!(state(&r, "qa"), StageState::Queued);
    assert!(effects.is_empty(), "no approval asked yet: {effects:?}");
    assert!(r.stage("qa").unwrap().attempts[0].approvals.is_empty());
    // Only a queued attempt can be admitted, once.
    let effects = event(
        &mut r,
        Event::Admit {
            stage: "qa".into(),
            attempt: 1,
        },
    );
    assert_eq!(state(&r, "qa"), StageState::AwaitingApproval);
    assert!(matches!(effects[..], [Effect::RequestApproval { .. }]));
    let again = apply(
        &mut r,
        Event::Admit {
            stage: "qa".into(),
            attempt: 1,
        },
        NOW,
    );
    assert!(matches!(again, Err(InvalidTransition::Stage { .. })));
}

#[test]
fn a_superseded_deployment_is_skipped_and_its_release_abandoned() {
    let mut r = release(QUEUED);
    event(&mut r, Event::Created);
    let effects = event(
        &mut r,
        Event::Supersede {
            stage: "qa".into(),
            attempt: 1,
            by: "q-5".into(),
        },
    );
    assert_eq!(state(&r, "qa"), StageState::Skipped);
    let attempt = &r.stage("qa").unwrap().attempts[0];
    assert!(attempt.reason.as_ref().unwrap().contains("q-5"));
    assert!(attempt.tasks.iter().all(|t| t.state == TaskState::Skipped));
    // Downstream stages never start; the release is dropped, not failed.
    assert_eq!(state(&r, "prod"), StageState::NotStarted);
    assert_eq!(r.state, ReleaseState::Abandoned);
    assert_eq!(effects, [Effect::Finished(ReleaseState::Abandoned)]);
}

#[test]
fn a_queued_deployment_can_be_canceled_and_recovery_leaves_it_to_the_queue() {
    let mut r = release(QUEUED);
    event(&mut r, Event::Created);
    let (events, effects) = recover(&r);
    assert!(events.is_empty() && effects.is_empty());
    event(&mut r, Event::Cancel { stage: "qa".into() });
    assert_eq!(state(&r, "qa"), StageState::Canceled);
}
