//! The fault backend itself: each fault does what it says, and what a power loss keeps is what
//! was synced (the store's crash tests build on this).

use std::path::Path;
use std::sync::Arc;

use super::Store;
use super::faulty::{Fault, FaultPlan, Op, PowerLoss};

fn versions(dir: &Path) -> Vec<String> {
    versions_of(&Store::open(dir).expect("reopens"))
}

/// The sources of pipeline `p`'s versions in `store`.
pub(super) fn versions_of(store: &Store) -> Vec<String> {
    store
        .pipeline_versions("p")
        .expect("reads")
        .into_iter()
        .map(|v| v.source)
        .collect()
}

/// Opens a faulty store holding one acknowledged version, `v1`.
pub(super) fn with_v1(plan: &Arc<FaultPlan>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_faulty(dir.path(), plan).expect("opens");
    store.put_pipeline("p", "v1", "t").expect("v1 commits");
    (dir, store)
}

#[test]
fn an_eio_from_fsync_fails_the_commit() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.fail_next(Op::Sync, 1, Fault::Eio);
    let err = store
        .put_pipeline("p", "v2", "t")
        .expect_err("the sync failed");
    assert!(err.to_string().contains("Input/output error"), "{err}");
    drop(store);
    plan.power_loss(PowerLoss::DropUnsynced).expect("cut");
    assert_eq!(
        versions(dir.path()),
        ["v1"],
        "an unacknowledged commit is gone"
    );
}

#[test]
fn a_full_disk_refuses_writes_until_space_returns() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.set_full(true);
    let err = store.put_pipeline("p", "v2", "t").expect_err("no space");
    assert!(err.to_string().contains("No space left"), "{err}");
    drop(store);
    plan.set_full(false);
    let store = Store::open_faulty(dir.path(), &plan).expect("reopens once space is back");
    store.put_pipeline("p", "v3", "t").expect("commits again");
    drop(store);
    assert_eq!(versions(dir.path()), ["v1", "v3"]);
}

/// Runs `run(n)` with the machine set to stop at I/O call `n` of a store holding `v1`, for
/// n = 1, 2, ... until a run ends with no crash (`run` gets the plan, the store's directory
/// and the store, and says whether the machine stopped); `what` made at least two I/O calls.
pub(super) fn at_every_call(
    what: &str,
    mut run: impl FnMut(u64, &FaultPlan, &Path, Store) -> bool,
) {
    until_no_crash(what, |n| {
        let plan = FaultPlan::new();
        let (dir, store) = with_v1(&plan);
        plan.crash_at_io(n);
        run(n, &plan, dir.path(), store)
    });
}

/// Runs `one(n)` (a run whose machine stops at I/O call `n`; it says whether it did) for
/// n = 1, 2, ... until a run ends with no crash; `what` made at least two I/O calls.
pub(super) fn until_no_crash(what: &str, mut one: impl FnMut(u64) -> bool) {
    let mut crashed_inside = 0;
    for n in 1.. {
        if !one(n) {
            break;
        }
        crashed_inside += 1;
        assert!(n < 1000, "{what} never ends");
    }
    assert!(
        crashed_inside >= 2,
        "{what} made {crashed_inside} I/O calls"
    );
}

#[test]
fn a_power_loss_keeps_every_acknowledged_commit_and_no_half_of_one() {
    // Crash at every I/O call of a commit in turn, keep a random part of the unsynced
    // writes, reopen: the state is v1, or v1 and v2, never anything else.
    at_every_call("a commit", |n, plan, dir, store| {
        let acked = store.put_pipeline("p", "v2", "t").is_ok();
        let crashed = plan.crashed();
        drop(store);
        plan.power_loss(PowerLoss::KeepSome(n)).expect("cut");
        let found = versions(dir);
        if acked {
            assert_eq!(
                found,
                ["v1", "v2"],
                "crash at call {n}: v2 was acknowledged"
            );
        } else {
            assert!(
                found == ["v1"] || found == ["v1", "v2"],
                "crash at call {n}: {found:?}"
            );
        }
        crashed
    });
}

#[test]
fn a_torn_write_leaves_the_last_commit() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.fail_next(Op::Write, 1, Fault::Torn(100));
    assert!(store.put_pipeline("p", "v2", "t").is_err());
    assert!(plan.crashed());
    drop(store);
    // The page cache survives (a process crash): the torn prefix is in the file.
    assert_eq!(versions(dir.path()), ["v1"]);
}

#[test]
fn a_traced_run_rebuilds_the_file_at_its_end_and_at_its_last_sync() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.start_trace();
    store.put_pipeline("p", "v2", "t").expect("v2 commits");
    store.put_pipeline("p", "v3", "t").expect("v3 commits");
    drop(store);
    let traced = plan.traced();
    let syncs: Vec<u64> = traced
        .iter()
        .filter(|(_, t)| *t == super::faulty::Traced::Sync)
        .map(|(io, _)| *io)
        .collect();
    assert!(
        syncs.len() >= 2,
        "two commits, two syncs at least: {traced:?}"
    );
    let file = std::fs::read(dir.path().join("sluice.redb")).expect("reads");
    let end = plan.io_calls() + 1;
    assert_eq!(
        plan.image_at(end, PowerLoss::KeepSome(1)),
        file,
        "the whole run kept"
    );
    // Cut just after the sync of v2's commit, losing what followed: v1 and v2.
    let cut = syncs[syncs.len() - 2] + 1;
    let at = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        at.path().join("sluice.redb"),
        plan.image_at(cut, PowerLoss::DropUnsynced),
    )
    .expect("writes");
    let found = versions(at.path());
    assert!(
        found == ["v1", "v2"] || found == ["v1", "v2", "v3"],
        "{found:?}"
    );
}

#[test]
fn a_crash_after_growth_stops_the_machine_at_the_growing_set_len() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.crash_after_growth(0);
    let before = plan.count(Op::SetLen);
    let big = "x".repeat(8 << 20);
    assert!(
        store.put_pipeline("p", &big, "t").is_err(),
        "the commit grows the file"
    );
    assert!(plan.crashed());
    assert_eq!(plan.count(Op::SetLen), before + 1, "stopped at the set_len");
    drop(store);
    assert_eq!(versions(dir.path()), ["v1"]);
}
