//! Every row of the transition table in `machine.rs`, plus fork/join, partial success, failure
//! stopping downstream stages, redeploy, cancel, abandon and recovery.

use std::path::Path;

use super::*;
use crate::types::Variable;

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

fn overriding(mut e: Event) -> Event {
    if let Event::Decide { authority, .. } = &mut e {
        *authority = Authority::Override;
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

#[test]
fn created_starts_after_release_stages_with_prepare() {
    let mut r = release(TWO_TASKS);
    let effects = event(&mut r, Event::Created);
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "dev".into(),
            attempt: 1
        }]
    );
    assert_eq!(state(&r, "dev"), StageState::InProgress);
    assert_eq!(r.revision, 1);
}

#[test]
fn prepared_runs_the_first_task_marked_running() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    assert_eq!(event(&mut r, prepared("dev")), [run("dev", 0)]);
    let attempt = r.stage("dev").unwrap().attempts.last().unwrap();
    assert_eq!(attempt.tasks[0].state, TaskState::Running);
    assert_eq!(attempt.tasks[0].starts, 1);
}

#[test]
fn prepare_failed_fails_the_stage_and_the_release() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    let effects = event(
        &mut r,
        Event::PrepareFailed {
            stage: "dev".into(),
            attempt: 1,
            reason: "no such version".into(),
        },
    );
    assert_eq!(state(&r, "dev"), StageState::Failed);
    assert_eq!(effects, [Effect::Finished(ReleaseState::Failed)]);
}

#[test]
fn finishing_a_task_runs_the_next_and_the_last_ends_the_stage() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    assert_eq!(event(&mut r, finished("dev", 0, ok())), [run("dev", 1)]);
    let effects = event(&mut r, finished("dev", 1, ok()));
    assert_eq!(effects, [Effect::Finished(ReleaseState::Succeeded)]);
    assert_eq!(state(&r, "dev"), StageState::Succeeded);
    assert_eq!(r.state, ReleaseState::Succeeded);
}

#[test]
fn warnings_mean_succeeded_with_issues_and_outputs_are_kept() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    let outputs = vec![Variable {
        name: "url".into(),
        value: "http://x".into(),
        secret: false,
    }];
    event(
        &mut r,
        finished(
            "dev",
            0,
            TaskOutcome::Succeeded {
                warnings: vec!["slow".into()],
                outputs: outputs.clone(),
            },
        ),
    );
    let task = &r.stage("dev").unwrap().attempts[0].tasks[0];
    assert_eq!(task.state, TaskState::SucceededWithIssues);
    assert_eq!(task.outputs, outputs);
}

#[test]
fn a_failed_task_fails_the_stage_and_skips_the_rest() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    let effects = event(&mut r, finished("dev", 0, fail("disk full")));
    assert_eq!(effects, [Effect::Finished(ReleaseState::Failed)]);
    let attempt = &r.stage("dev").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Failed);
    assert_eq!(attempt.tasks[1].state, TaskState::Skipped);
    assert_eq!(
        attempt.reason.as_deref(),
        Some("task `dev-copy` failed: disk full")
    );
}

#[test]
fn a_failed_continue_on_error_task_means_partial_success() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    event(&mut r, finished("dev", 0, ok()));
    let effects = event(&mut r, finished("dev", 1, fail("flaky")));
    assert_eq!(state(&r, "dev"), StageState::PartiallySucceeded);
    assert_eq!(
        effects,
        [Effect::Finished(ReleaseState::PartiallySucceeded)]
    );
}

const RINGS: &str = r#"
version = 1
[[stages]]
name = "dev"
[[stages]]
name = "qa-east"
after = ["dev"]
[[stages]]
name = "qa-west"
after = ["dev"]
[[stages.tasks]]
plugin = "copy"
continue-on-error = true
[[stages]]
name = "ring-1"
after = ["qa-east", "qa-west"]
"#;

#[test]
fn fork_and_join() {
    let mut r = release(RINGS);
    event(&mut r, Event::Created);
    let fork = event(&mut r, prepared("dev"));
    assert_eq!(
        fork,
        [
            Effect::Prepare {
                stage: "qa-east".into(),
                attempt: 1
            },
            Effect::Prepare {
                stage: "qa-west".into(),
                attempt: 1
            },
        ],
        "both QA stages start once dev is done"
    );
    assert!(
        event(&mut r, prepared("qa-east")).is_empty(),
        "ring-1 waits for qa-west too"
    );
    assert_eq!(state(&r, "ring-1"), StageState::NotStarted);
    deploy_ok(&mut r, "qa-west", 1);
    assert_eq!(
        state(&r, "ring-1"),
        StageState::InProgress,
        "the join starts ring-1"
    );
}

#[test]
fn a_partially_succeeded_upstream_blocks_unless_allowed() {
    let mut r = release(RINGS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    event(&mut r, prepared("qa-east"));
    event(&mut r, prepared("qa-west"));
    let effects = event(&mut r, finished("qa-west", 0, fail("flaky")));
    assert_eq!(state(&r, "ring-1"), StageState::NotStarted);
    assert_eq!(
        effects,
        [Effect::Finished(ReleaseState::PartiallySucceeded)]
    );

    let mut r = release(&RINGS.replace(
        "after = [\"qa-east\", \"qa-west\"]",
        "after = [\"qa-east\", \"qa-west\"]\nafter-partial-success = true",
    ));
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    event(&mut r, prepared("qa-east"));
    event(&mut r, prepared("qa-west"));
    event(&mut r, finished("qa-west", 0, fail("flaky")));
    assert_eq!(state(&r, "ring-1"), StageState::InProgress);
}

#[test]
fn a_failed_stage_stops_downstream_stages() {
    let mut r = release(&RINGS.replace("continue-on-error = true", ""));
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    event(&mut r, prepared("qa-east"));
    event(&mut r, prepared("qa-west"));
    let effects = event(&mut r, finished("qa-west", 0, fail("boom")));
    assert_eq!(state(&r, "ring-1"), StageState::NotStarted);
    assert_eq!(effects, [Effect::Finished(ReleaseState::Failed)]);
}

#[test]
fn redeploy_starts_a_new_attempt_and_reopens_the_release() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    event(&mut r, prepared("dev"));
    event(&mut r, finished("dev", 0, fail("boom")));
    assert_eq!(r.state, ReleaseState::Failed);
    let effects = event(
        &mut r,
        Event::Deploy {
            stage: "dev".into(),
        },
    );
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "dev".into(),
            attempt: 2
        }]
    );
    assert_eq!(r.state, ReleaseState::Active);
    deploy_ok(&mut r, "dev", 2);
    assert_eq!(r.state, ReleaseState::Succeeded);
    assert_eq!(r.stage("dev").unwrap().attempts.len(), 2);
}

#[test]
fn deploy_while_in_progress_is_invalid_and_changes_nothing() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    let before = r.clone();
    let err = apply(
        &mut r,
        Event::Deploy {
            stage: "dev".into(),
        },
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, InvalidTransition::Stage { .. }), "{err}");
    assert_eq!(r, before);
    let err = apply(
        &mut r,
        Event::Deploy {
            stage: "nope".into(),
        },
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, InvalidTransition::UnknownStage { .. }));
}

#[test]
fn finishing_a_task_that_is_not_running_is_invalid() {
    let mut r = release(TWO_TASKS);
    event(&mut r, Event::Created);
    assert!(
        apply(&mut r, finished("dev", 0, ok()), NOW).is_err(),
        "not prepared yet"
    );
    event(&mut r, prepared("dev"));
    assert!(
        apply(&mut r, prepared("dev"), NOW).is_err(),
        "prepared twice"
    );
    assert!(
        apply(&mut r, finished("dev", 1, ok()), NOW).is_err(),
        "task 1 is not running"
    );
}

const APPROVALS: &str = r#"
version = 1
[[stages]]
name = "staging"
pre-approval = { approvers = ["alice", "bob"], policy = "all" }
post-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "copy"
"#;

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
fn cancel_stops_a_deployment_and_cancels_its_approval() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let effects = event(
        &mut r,
        Event::Cancel {
            stage: "staging".into(),
        },
    );
    assert_eq!(
        effects,
        [
            Effect::CancelTasks {
                stage: "staging".into()
            },
            Effect::Finished(ReleaseState::Failed)
        ]
    );
    let attempt = &r.stage("staging").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Canceled);
    assert_eq!(attempt.approvals[0].state, ApprovalState::Canceled);
    assert!(
        apply(
            &mut r,
            Event::Cancel {
                stage: "staging".into()
            },
            NOW
        )
        .is_err()
    );
}

#[test]
fn abandon_cancels_what_runs_and_freezes_the_release() {
    let mut r = release(RINGS);
    event(&mut r, Event::Created);
    let effects = event(&mut r, Event::Abandon);
    assert_eq!(
        effects,
        [
            Effect::CancelTasks {
                stage: "dev".into()
            },
            Effect::Finished(ReleaseState::Abandoned)
        ]
    );
    assert_eq!(r.state, ReleaseState::Abandoned);
    assert!(
        apply(
            &mut r,
            Event::Deploy {
                stage: "dev".into()
            },
            NOW
        )
        .is_err()
    );
    assert!(apply(&mut r, Event::Abandon, NOW).is_err());
}

#[test]
fn manual_stages_wait_and_keep_the_release_active() {
    let mut r = release("version = 1\n[[stages]]\nname = \"hotfix\"\nafter = \"manual\"\n");
    assert!(event(&mut r, Event::Created).is_empty());
    assert_eq!(r.state, ReleaseState::Active);
    let effects = event(
        &mut r,
        Event::Deploy {
            stage: "hotfix".into(),
        },
    );
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "hotfix".into(),
            attempt: 1
        }]
    );
}

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
fn reassign_hands_an_approvers_part_to_someone_else() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    let reassign = Event::Reassign {
        stage: "staging".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
        by: "bob".into(),
        groups: vec![],
        to: "dave".into(),
        comment: "on leave".into(),
        authority: Authority::Approver,
    };
    let err = apply(
        &mut r,
        {
            let mut by_mallory = reassign.clone();
            if let Event::Reassign { by, .. } = &mut by_mallory {
                *by = "mallory".into();
            }
            by_mallory
        },
        NOW,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not an approver"), "{err}");
    event(&mut r, reassign);
    let attempt = &r.stage("staging").unwrap().attempts[0];
    assert_eq!(attempt.approvals[0].state, ApprovalState::Reassigned);
    assert_eq!(attempt.approvals[1].approvers, ["alice", "dave"]);
    assert!(apply(&mut r, decide("staging", "bob", true), NOW).is_err());
    event(&mut r, decide("staging", "alice", true));
    assert_eq!(
        event(&mut r, decide("staging", "dave", true)),
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
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

const QUEUED: &str = r#"
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

#[test]
fn an_operator_schedules_a_deployment_and_nothing_is_asked_before_its_time() {
    let mut r = release(
        r#"
version = 1
name = "s"
[[stages]]
name = "prod"
after = "manual"
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#,
    );
    event(&mut r, Event::Created);
    let at = NOW + 60_000;
    let effects = event(
        &mut r,
        Event::Schedule {
            stage: "prod".into(),
            at,
        },
    );
    assert_eq!(state(&r, "prod"), StageState::Scheduled);
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.deferred_until, Some(at));
    assert!(
        attempt.approvals.is_empty(),
        "nothing asked before its time"
    );
    assert!(matches!(
        effects[..],
        [Effect::Timer { at: t, event: Event::Due { .. } }] if t == at
    ));
    // At its time, the deployment starts as any other: here, its pre-approval.
    let effects = apply(
        &mut r,
        Event::Due {
            stage: "prod".into(),
            attempt: 1,
        },
        at,
    )
    .unwrap();
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    assert!(matches!(effects[..], [Effect::RequestApproval { .. }]));
    // A time already past deploys now.
    let mut r2 = release(
        r#"
version = 1
name = "s"
[[stages]]
name = "prod"
after = "manual"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#,
    );
    event(&mut r2, Event::Created);
    event(
        &mut r2,
        Event::Schedule {
            stage: "prod".into(),
            at: NOW - 1,
        },
    );
    assert_eq!(state(&r2, "prod"), StageState::InProgress);
}

/// Unix milliseconds of an RFC 3339 time.
fn at(time: &str) -> u64 {
    time.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

#[test]
fn a_scheduled_stage_waits_for_its_cron_time_in_its_zone_across_daylight_saving() {
    let pipeline = r#"
version = 1
name = "nightly"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "/p/t.wasm"
[[stages]]
name = "prod"
after = ["qa"]
schedule = { cron = "0 9 * * *", time-zone = "Europe/Berlin" }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;
    // Europe/Berlin moves to summer time at 02:00 on 2026-03-29: 09:00 is 08:00 UTC before,
    // 07:00 UTC after. The fake clock is the time each event arrives with.
    let cases = [
        ("2026-03-28T06:00:00Z", "2026-03-28T08:00:00Z"), // the same morning, winter time
        ("2026-03-28T10:00:00Z", "2026-03-29T07:00:00Z"), // next morning, summer time
        ("2026-10-24T10:00:00Z", "2026-10-25T08:00:00Z"), // back to winter time
    ];
    for (now, expected) in cases {
        let now = at(now);
        let mut r = release(pipeline);
        apply(&mut r, Event::Created, now).unwrap();
        apply(&mut r, prepared("qa"), now).unwrap();
        let effects = apply(&mut r, finished("qa", 0, ok()), now).unwrap();
        assert_eq!(state(&r, "prod"), StageState::Scheduled);
        let attempt = &r.stage("prod").unwrap().attempts[0];
        assert_eq!(attempt.deferred_until, Some(at(expected)), "from {now}");
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Timer { at: t, .. } if *t == at(expected)))
        );
        // At that time it starts.
        apply(
            &mut r,
            Event::Due {
                stage: "prod".into(),
                attempt: 1,
            },
            at(expected),
        )
        .unwrap();
        assert_eq!(state(&r, "prod"), StageState::InProgress);
    }
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

const POST_GATES: &str = r#"
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

const FROZEN: &str = r#"
version = 1
name = "web"
[[freezes]]
reason = "weekend"
cron = "0 18 * * 5"
duration = "63h"
time-zone = "Europe/Berlin"
[[freezes]]
reason = "holidays"
stages = ["prod"]
from = "2026-12-24T00:00:00+01:00"
until = "2026-12-27T00:00:00+01:00"
[[stages]]
name = "prod"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

fn due(r: &mut Release, now: u64) -> Result<Vec<Effect>, InvalidTransition> {
    let attempt = r.stage("prod").unwrap().attempts.last().unwrap().number;
    apply(
        r,
        Event::Due {
            stage: "prod".into(),
            attempt,
        },
        now,
    )
}

#[test]
fn a_deployment_due_in_a_freeze_waits_until_it_ends_on_the_zones_wall_clock() {
    // Saturday noon in Berlin, inside the weekend freeze (Friday 18:00 + 63 h = Monday 09:00).
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-21T11:00:00Z")).unwrap();
    let attempt = r.stage("prod").unwrap().attempts[0].clone();
    assert_eq!(attempt.state, StageState::Scheduled);
    assert_eq!(attempt.frozen.as_deref(), Some("weekend"));
    assert_eq!(attempt.deferred_until, Some(at("2026-11-23T08:00:00Z")));
    // Its end comes: it deploys.
    due(&mut r, at("2026-11-23T08:00:00Z")).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    // Before the freeze starts, nothing waits.
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-20T16:59:00Z")).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    // Windows back to back (the holidays run into a weekend) are waited out together.
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-12-25T12:00:00Z")).unwrap();
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.frozen.as_deref(), Some("holidays"));
    assert_eq!(attempt.deferred_until, Some(at("2026-12-28T08:00:00Z")));
}

#[test]
fn an_admin_breaks_glass_with_a_justification_and_the_deployment_goes_now() {
    let mut r = release(FROZEN);
    let saturday = at("2026-11-21T11:00:00Z");
    apply(&mut r, Event::Created, saturday).unwrap();
    let glass = |justification: &str| Event::BreakGlass {
        stage: "prod".into(),
        by: "ada".into(),
        justification: justification.into(),
    };
    assert!(matches!(
        apply(&mut r, glass("  "), saturday),
        Err(InvalidTransition::NotAllowed(_))
    ));
    let effects = apply(&mut r, glass("security fix for CVE-2026-1"), saturday).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 1
        }]
    );
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::InProgress);
    let glass_record = attempt.break_glass.clone().unwrap();
    assert_eq!(
        (glass_record.by.as_str(), glass_record.at),
        ("ada", saturday)
    );
    // Nothing is frozen now: breaking glass again is a conflict, and the freeze's timer, when
    // it comes, finds nothing to start.
    assert!(matches!(
        apply(&mut r, glass("again"), saturday),
        Err(InvalidTransition::Conflict(_))
    ));
    assert!(due(&mut r, at("2026-11-23T08:00:00Z")).is_err());
}

#[test]
fn a_freeze_timer_fires_once_when_the_wall_clock_steps_back_or_forward() {
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-21T11:00:00Z")).unwrap();
    let end = at("2026-11-23T08:00:00Z");
    // The timer (a monotonic sleep) ends while the wall clock, stepped back an hour, still
    // reads inside the freeze: the deployment waits on, to the same end.
    let effects = due(&mut r, end - 3_600_000).unwrap();
    assert_eq!(state(&r, "prod"), StageState::Scheduled);
    assert!(effects.contains(&Effect::Timer {
        at: end,
        event: Event::Due {
            stage: "prod".into(),
            attempt: 1
        }
    }));
    // Then it fires past the end (the clock stepped forward meanwhile): it starts, once.
    due(&mut r, end + 7_200_000).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    assert!(
        due(&mut r, end + 7_200_000).is_err(),
        "a second firing starts nothing"
    );
    assert_eq!(r.stage("prod").unwrap().attempts.len(), 1);
}
