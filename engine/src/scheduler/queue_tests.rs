//! The stage queues' tests: latest-only skips, turns kept across stale copies and crashes,
//! rollbacks that wait for their turn or go stale.

use std::path::Path;

use super::*;
use crate::core::apply;

const LATEST_ONLY: &str = r#"
version = 1
name = "web"
[[stages]]
name = "qa"
queue = { policy = "latest-only" }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

/// Release `number` of the latest-only pipeline, created (so queued on qa) at `at`.
fn queued(number: u64, at: u64) -> Release {
    let plan = crate::pipeline::parse("web.toml", LATEST_ONLY, Path::new("/p"), "web")
        .unwrap_or_else(|e| panic!("{e}"))
        .plan;
    let mut r = Release::new(crate::core::NewRelease {
        plan,
        number,
        creator: "rita".into(),
        description: None,
        artifacts: vec![],
        variables: vec![],
        digests: vec![],
        created_at: at,
    });
    apply(&mut r, Event::Created, at).unwrap();
    r
}

fn admitted(mut r: Release, at: u64) -> Release {
    let event = Event::Admit {
        stage: "qa".into(),
        attempt: 1,
    };
    apply(&mut r, event, at).unwrap();
    r
}

fn skipped_by(decisions: &[Decision], by: &str) -> Vec<String> {
    let mut skipped: Vec<String> = decisions
        .iter()
        .filter(|d| matches!(&d.event, Event::Supersede { by: b, .. } if b == by))
        .map(|d| d.release.clone())
        .collect();
    skipped.sort();
    skipped
}

#[test]
fn latest_only_skips_the_older_waiting_releases_when_the_newest_is_admitted() {
    let queues = Queues::default();
    let releases: Vec<Release> = (1..=4).map(|n| queued(n, 10 * n)).collect();
    let load = |_: &str| Ok(releases.clone());
    queues.committed(&releases[3], &load);
    let decisions = queues.take();
    assert_eq!(skipped_by(&decisions, "web-4"), ["web-1", "web-2", "web-3"]);
    assert!(matches!(
        decisions.last(),
        Some(Decision { release, event: Event::Admit { .. } }) if release == "web-4"
    ));
}

fn admits(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| matches!(d.event, Event::Admit { .. }))
        .map(|d| d.release.as_str())
        .collect()
}

#[test]
fn a_release_chosen_but_not_yet_admitted_keeps_its_turn_when_an_older_copy_arrives() {
    let queues = Queues::default();
    let r1 = queued(1, 10);
    let stored = vec![r1.clone()];
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&r1, &load);
    assert_eq!(admits(&queues.take()), ["web-1"]);
    queues.committed(&queued(2, 20), &load);
    // R1's driver starts on the copy it loaded before its admission committed.
    queues.committed(&r1, &load);
    assert_eq!(queues.take(), [], "R1 still holds the stage");
    let mut r1 = admitted(r1, 30);
    queues.committed(&r1, &load);
    assert_eq!(queues.take(), []);
    // R1's deployment ends: R2's turn.
    apply(&mut r1, Event::Cancel { stage: "qa".into() }, 40).unwrap();
    queues.committed(&r1, &load);
    assert_eq!(admits(&queues.take()), ["web-2"]);
}

#[test]
fn a_rollback_waits_for_the_holder_to_end_then_takes_its_turn() {
    let queues = Queues::default();
    // R1 ran and ended; R2 holds the stage.
    let mut r1 = admitted(queued(1, 10), 20);
    apply(&mut r1, Event::Cancel { stage: "qa".into() }, 30).unwrap();
    let mut r2 = admitted(queued(2, 40), 50);
    let stored = vec![r1.clone(), r2.clone()];
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&r2, &load);
    assert_eq!(queues.take(), []);
    // A rollback to R1 queues: it is not admitted while R2 holds the stage.
    let rollback = Event::Rollback {
        stage: "qa".into(),
        of: "web-2".into(),
    };
    apply(&mut r1, rollback, 60).unwrap();
    assert_eq!(r1.stages[0].state(), StageState::Queued);
    queues.committed(&r1, &load);
    assert_eq!(queues.take(), [], "R2 still holds the stage");
    apply(&mut r2, Event::Cancel { stage: "qa".into() }, 70).unwrap();
    queues.committed(&r2, &load);
    assert_eq!(admits(&queues.take()), ["web-1"]);
}

#[test]
fn a_rollback_is_skipped_once_another_release_ran_on_the_stage_after_it_queued() {
    let queues = Queues::default();
    // R2 failed on the stage and R1 is rolled back to; R3 took the freed turn first.
    let mut r1 = admitted(queued(1, 10), 20);
    apply(&mut r1, Event::Cancel { stage: "qa".into() }, 30).unwrap();
    let mut r3 = admitted(queued(3, 40), 50);
    let rollback = Event::Rollback {
        stage: "qa".into(),
        of: "web-2".into(),
    };
    apply(&mut r1, rollback, 60).unwrap();
    let stored = vec![r1.clone(), r3.clone()];
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&r1, &load);
    assert_eq!(queues.take(), [], "R3 holds the stage");
    // R3 ends: rolling back to R1 would undo R3, not R2.
    apply(&mut r3, Event::Cancel { stage: "qa".into() }, 70).unwrap();
    let ended = r3.stages[0].attempts[0].clone();
    assert_eq!(ended.state, StageState::Canceled);
    // (Canceled ran nothing to undo: the rollback still goes.)
    queues.committed(&r3, &load);
    assert_eq!(admits(&queues.take()), ["web-1"]);
    // Had R3's deployment run to its end, the rollback would be skipped.
    let queues = Queues::default();
    let mut r3 = admitted(queued(3, 40), 50);
    let stored = vec![r1.clone(), r3.clone()];
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&r1, &load);
    assert_eq!(queues.take(), []);
    apply(
        &mut r3,
        Event::Prepared {
            stage: "qa".into(),
            attempt: 1,
        },
        70,
    )
    .unwrap();
    let done = Event::TaskFinished {
        stage: "qa".into(),
        attempt: 1,
        task: 0,
        outcome: crate::core::TaskOutcome::Succeeded {
            warnings: vec![],
            outputs: vec![],
        },
    };
    apply(&mut r3, done, 80).unwrap();
    assert_eq!(r3.stages[0].state(), StageState::Succeeded);
    queues.committed(&r3, &load);
    let decisions = queues.take();
    assert_eq!(skipped_by(&decisions, "web-3"), ["web-1"]);
    assert_eq!(admits(&decisions), Vec::<&str>::new());
}

#[test]
fn after_a_crash_between_the_admission_and_the_skips_the_skips_are_made_on_restart() {
    // Stored: R5 admitted (its turn committed), R2..R4 still queued (their skips were not).
    let mut stored: Vec<Release> = (2..=4).map(|n| queued(n, 10 * n)).collect();
    stored.push(admitted(queued(5, 50), 60));
    // A redeploy of R1 queued after R5 was admitted keeps its place.
    stored.push(queued(1, 70));
    let queues = Queues::default();
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&stored[3], &load);
    let decisions = queues.take();
    assert_eq!(skipped_by(&decisions, "web-5"), ["web-2", "web-3", "web-4"]);
    assert_eq!(decisions.len(), 3, "R5 holds the stage: {decisions:?}");
}

#[test]
fn a_failed_read_of_the_stored_releases_builds_no_queue_and_gives_no_turn() {
    let queues = Queues::default();
    // R1 holds the stage in the store; this engine has not built the queue yet.
    let mut r1 = admitted(queued(1, 10), 20);
    let r2 = queued(2, 30);
    let failing = |_: &str| Err(StoreError::Storage("injected".into()));
    queues.committed(&r2, &failing);
    assert_eq!(queues.take(), [], "no turn without the queue's holders");
    // The next commit reads the store: R1 is found holding the stage, so R2 still waits.
    let stored = vec![r1.clone(), r2.clone()];
    let load = |_: &str| Ok(stored.clone());
    queues.committed(&r2, &load);
    assert_eq!(queues.take(), [], "R1 holds the stage");
    apply(&mut r1, Event::Cancel { stage: "qa".into() }, 40).unwrap();
    queues.committed(&r1, &load);
    assert_eq!(admits(&queues.take()), ["web-2"]);
}
