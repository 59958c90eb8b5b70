//! A crash before each I/O call of a W1-like release (create, three stages, an approval), in
//! turn: the reopened store holds exactly the acknowledged commits, or those and the one in
//! flight, and a drive from there finishes the release.

use sluice::core::ReleaseState;
use sluice::store::Store;
use sluice::store::faulty::{FaultPlan, PowerLoss};

use super::workload::{NOOP, Rig, check, releases, reopen, run};

/// Crashes before I/O call 1, 2, ... of the release's run until a run ends before its crash
/// point; after each crash `loss` (if any) drops what was not synced. Returns how many points.
fn every_io_call(loss: Option<PowerLoss>) -> u64 {
    let rig = Rig::new(NOOP);
    let mut crashed = 0;
    for n in 1.. {
        let at = format!("crash before I/O call {n} ({loss:?})");
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        plan.crash_at_io(n);
        let cut = run(&rig, dir.path(), store, Some(&plan), 1);
        if !plan.crashed() {
            cut.assert_succeeded("a run that met no crash");
            break;
        }
        crashed += 1;
        assert!(n < 2_000, "a release that never ends");
        if let Some(loss) = loss {
            plan.power_loss(loss).expect("power loss");
        }
        let store = reopen(dir.path(), &at);
        check(&store, &cut.acks, 1, &at);
        // A release whose creation was not acknowledged may be gone: its caller creates it
        // again; one that is there is driven from what was stored.
        let fresh = usize::from(releases(&store, &at).is_empty());
        let resumed = run(&rig, dir.path(), store, None, fresh);
        resumed.assert_succeeded(&at);
        let store = reopen(dir.path(), &at);
        let acked: Vec<_> = cut.acks.iter().chain(&resumed.acks).cloned().collect();
        check(&store, &acked, 2, &at);
        let stored = releases(&store, &at);
        assert_eq!(stored.len(), 1, "{at}: one release");
        assert!(
            stored.values().all(|r| r.state == ReleaseState::Succeeded),
            "{at}: the release finished"
        );
    }
    eprintln!("{crashed} crash points ({loss:?})");
    crashed
}

#[test]
fn a_crash_at_any_io_call_of_a_release_keeps_the_acknowledged_state_and_the_release_finishes() {
    let points = every_io_call(None);
    // Creation, three stages (admitted and prepared, task started, task done), an approval:
    // about ten commits of several calls each.
    assert!(points >= 20, "only {points} I/O calls");
}

#[test]
fn a_power_loss_at_any_io_call_of_a_release_keeps_the_acknowledged_state_and_the_release_finishes()
{
    let points = every_io_call(Some(PowerLoss::DropUnsynced));
    assert!(points >= 20, "only {points} I/O calls");
}
