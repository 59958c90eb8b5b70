//! Recovery after a restart: what `recover` redoes for a release found unfinished.

use super::*;

#[test]
fn recovery_reruns_idempotent_tasks_and_fails_the_others() {
    let pipeline = r#"
version = 1
[[stages]]
name = "a"
[[stages.tasks]]
plugin = "copy"
idempotent = true
[[stages]]
name = "b"
[[stages.tasks]]
plugin = "copy"
[[stages]]
name = "c"
pre-approval = { approvers = ["alice"] }
[[stages]]
name = "d"
"#;
    let mut r = release(pipeline);
    event(&mut r, Event::Created);
    event(&mut r, prepared("a"));
    event(&mut r, prepared("b"));
    let (events, effects) = recover(&r);
    assert_eq!(
        events,
        [
            Event::TaskRestarted {
                stage: "a".into(),
                task: 0
            },
            Event::TaskInterrupted {
                stage: "b".into(),
                task: 0
            },
        ]
    );
    assert_eq!(
        effects,
        [
            Effect::RequestApproval {
                stage: "c".into(),
                kind: ApprovalKind::Pre
            },
            Effect::Prepare {
                stage: "d".into(),
                attempt: 1
            },
        ]
    );
    assert_eq!(event(&mut r, events[0].clone()), [run("a", 0)]);
    assert_eq!(r.stage("a").unwrap().attempts[0].tasks[0].starts, 2);
    event(&mut r, events[1].clone());
    let b = &r.stage("b").unwrap().attempts[0];
    assert_eq!(b.state, StageState::Failed);
    assert_eq!(b.reason.as_deref(), Some(INTERRUPTED));
}

#[test]
fn recovery_resumes_gate_sampling_at_the_next_due_time() {
    let mut r = gated(PRE_GATES);
    event(&mut r, Event::Created);
    let next = evaluate(&mut r, ApprovalKind::Pre, NOW + 60 * SECOND, false).unwrap();
    let (events, effects) = recover(&r);
    assert!(events.is_empty());
    assert_eq!(
        effects,
        [Effect::EvaluateGates {
            stage: "prod".into(),
            attempt: 1,
            kind: ApprovalKind::Pre,
            at: next,
        }]
    );
}
