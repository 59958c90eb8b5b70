//! The committer's checkpoint (`commit.rs`): a crash after one reopens without redb's repair
//! (and one without it repairs), a crash inside one loses nothing acknowledged, and the
//! committer makes one on its own once the writes stop.

use std::path::Path;
use std::time::Duration;

use super::Store;
use super::faulty::{FaultPlan, PowerLoss};
use super::faulty_tests::{at_every_call, versions_of as versions, with_v1};

/// Stops the machine under `store` (its close writes nothing), cuts the power keeping
/// `loss` of the unsynced writes, and opens the file again.
fn crash(dir: &Path, plan: &FaultPlan, store: Store, loss: PowerLoss) -> Store {
    plan.crash_at_io(1);
    drop(store);
    plan.power_loss(loss).expect("cut");
    Store::open(dir).expect("reopens")
}

#[test]
fn a_crash_after_a_checkpoint_reopens_without_a_repair() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    store.checkpoint().expect("checkpoint commits");
    let reopened = crash(dir.path(), &plan, store, PowerLoss::DropUnsynced);
    assert!(
        !reopened.opening().repaired,
        "the checkpoint was the last commit"
    );
    assert_eq!(versions(&reopened), ["v1"]);
    drop(reopened);

    // Without one, the same crash makes redb rebuild its allocator state.
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    let reopened = crash(dir.path(), &plan, store, PowerLoss::DropUnsynced);
    assert!(reopened.opening().repaired, "v1 was the last commit");
    assert_eq!(versions(&reopened), ["v1"]);
}

#[test]
fn a_crash_inside_a_checkpoint_loses_nothing_acknowledged() {
    at_every_call("a checkpoint", |n, plan, dir, store| {
        let checkpointed = store.checkpoint().is_ok();
        let crashed = plan.crashed();
        drop(store);
        plan.power_loss(PowerLoss::KeepSome(n)).expect("cut");
        let reopened = Store::open(dir).expect("reopens");
        assert_eq!(versions(&reopened), ["v1"], "crash at call {n}");
        reopened
            .put_pipeline("p", "v2", "t")
            .expect("writes go on after the crash");
        assert_eq!(versions(&reopened), ["v1", "v2"]);
        assert!(
            checkpointed || crashed,
            "no crash, yet the checkpoint failed"
        );
        crashed
    });
}

#[tokio::test]
async fn the_committer_checkpoints_once_the_writes_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("opens");
    let mut made = store.quiet_checkpoints();
    store.put_pipeline("p", "v1", "t").expect("v1 commits");
    // Its checkpoint comes `QUIET` after the write.
    tokio::time::timeout(Duration::from_secs(10), made.wait_for(|n| *n > 0))
        .await
        .expect("a checkpoint within 10 s of the last write")
        .expect("the committer is running");
    assert_eq!(versions(&store), ["v1"]);
}
