//! A second crash while the recovery drive commits, then a clean recovery: a release is cut at a
//! point of its run, reopened on a new fault plan, and its recovery crashed before each of its I/O
//! calls (every other one, alternating); each time, a clean reopen still holds every commit
//! acknowledged before either crash, and its drive finishes the release.

use sluice::store::Store;
use sluice::store::faulty::{FaultPlan, PowerLoss};

use super::workload::{NOOP, Rig, check, releases, reopen, run};

/// After a crash: the power goes too, if `loss` says so.
fn cut(plan: &FaultPlan, loss: Option<PowerLoss>) {
    if let Some(loss) = loss {
        plan.power_loss(loss).expect("power loss");
    }
}

#[test]
fn a_second_crash_during_recovery_then_a_clean_recovery_loses_nothing_acknowledged() {
    let rig = Rig::new(NOOP);
    let calls = {
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        let first = plan.io_calls();
        run(&rig, dir.path(), store, Some(&plan), 1).assert_succeeded("a run without faults");
        plan.io_calls() - first
    };
    // Two first crashes; the recoveries after the first are crashed at odd calls, after the
    // second at even ones (every call of a recovery costs three runs).
    let firsts = [
        (calls / 3, 1, Some(PowerLoss::DropUnsynced)),
        (calls * 2 / 3, 2, Some(PowerLoss::KeepSome(13))),
    ];
    let mut second_crashes = 0;
    for (a, from, loss) in firsts {
        // The first crash, once: its file is the start of every recovery below.
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        plan.crash_at_io(a);
        let first = run(&rig, dir.path(), store, Some(&plan), 1);
        assert!(plan.crashed(), "the first crash, at I/O call {a}, fired");
        cut(&plan, loss);
        let crashed = std::fs::read(dir.path().join("sluice.redb")).expect("reads");
        for b in (from..).step_by(2) {
            let at = format!("crash at I/O call {a}, then at call {b} of the recovery ({loss:?})");
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("sluice.redb"), &crashed).expect("writes");
            let plan = FaultPlan::new();
            let store =
                Store::open_faulty(dir.path(), &plan).unwrap_or_else(|e| panic!("{at}: {e}"));
            plan.crash_at_io(b);
            let fresh = usize::from(releases(&store, &at).is_empty());
            let second = run(&rig, dir.path(), store, Some(&plan), fresh);
            if !plan.crashed() {
                second.assert_succeeded(&at);
                break;
            }
            second_crashes += 1;
            assert!(b < 2_000, "{at}: a recovery that never ends");
            cut(&plan, loss);
            let acked: Vec<_> = first.acks.iter().chain(&second.acks).cloned().collect();
            let store = reopen(dir.path(), &at);
            check(&store, &acked, 2, &at);
            let fresh = usize::from(releases(&store, &at).is_empty());
            let clean = run(&rig, dir.path(), store, None, fresh);
            clean.assert_succeeded(&at);
            let acked: Vec<_> = acked.iter().chain(&clean.acks).cloned().collect();
            let store = reopen(dir.path(), &at);
            check(&store, &acked, 3, &at);
        }
    }
    eprintln!("{second_crashes} crashes during recovery");
    assert!(
        second_crashes >= 10,
        "{second_crashes} crashes during recovery"
    );
}
