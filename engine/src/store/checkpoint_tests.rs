//! The committer's checkpoint (`commit.rs`): a crash after one reopens without redb's repair
//! (and one without it repairs), a crash inside one loses nothing acknowledged, and the
//! committer makes one on its own once the writes stop.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Store;
use super::faulty::{FaultPlan, PowerLoss};

fn versions(store: &Store) -> Vec<String> {
    store
        .pipeline_versions("p")
        .expect("reads")
        .into_iter()
        .map(|v| v.source)
        .collect()
}

/// Opens a faulty store holding one acknowledged version, `v1`.
fn with_v1(plan: &Arc<FaultPlan>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_faulty(dir.path(), plan).expect("opens");
    store.put_pipeline("p", "v1", "t").expect("v1 commits");
    (dir, store)
}

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
    let mut crashed_inside = 0;
    for n in 1.. {
        let plan = FaultPlan::new();
        let (dir, store) = with_v1(&plan);
        plan.crash_at_io(n);
        let checkpointed = store.checkpoint().is_ok();
        let crashed = plan.crashed();
        drop(store);
        plan.power_loss(PowerLoss::KeepSome(n)).expect("cut");
        let reopened = Store::open(dir.path()).expect("reopens");
        assert_eq!(versions(&reopened), ["v1"], "crash at call {n}");
        reopened
            .put_pipeline("p", "v2", "t")
            .expect("writes go on after the crash");
        assert_eq!(versions(&reopened), ["v1", "v2"]);
        if !crashed {
            assert!(checkpointed, "no crash, yet the checkpoint failed");
            break;
        }
        crashed_inside += 1;
        assert!(n < 1000, "a checkpoint that never ends");
    }
    assert!(
        crashed_inside >= 2,
        "the checkpoint made {crashed_inside} I/O calls"
    );
}

#[test]
fn the_committer_checkpoints_once_the_writes_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("opens");
    store.put_pipeline("p", "v1", "t").expect("v1 commits");
    // Waits on the committer's count, bounded: its checkpoint comes `QUIET` after the write.
    let waited = Instant::now();
    while store.quiet_checkpoints() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "no checkpoint within 10 s of the last write"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(versions(&store), ["v1"]);
}
