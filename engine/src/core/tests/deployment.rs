//! Deployments: preparing, running tasks in order, partial success, fork and join, failure
//! stopping downstream stages, redeploy, cancel, abandon and manual stages.

use super::*;

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
        sealed: None,
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
