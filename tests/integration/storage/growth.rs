//! A crash while the file grows: a release whose tasks each store a ~210 KiB log makes commits that
//! need a larger file. A traced run shows a growing `set_len` inside a commit, the sync redb makes
//! of the longer file, then the commit's writes and its sync; the machine is then stopped at that
//! `set_len` and at each call after it up to the commit's sync, with the page cache kept and with
//! what was not synced dropped. Each time the reopened store holds the acknowledged state, and
//! commits again: the release finishes.

use sluice::store::Store;
use sluice::store::faulty::{FaultPlan, PowerLoss, Traced};

use super::workload::{LOG, Rig, check, releases, reopen, run};

#[test]
fn a_crash_while_the_file_grows_keeps_the_acknowledged_state_and_the_store_commits_again() {
    let rig = Rig::new(LOG);
    // Where the file grows, in a run without faults: how many calls from the first growing
    // set_len after the store opened to the sync that ends its commit.
    let span = {
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        plan.start_trace();
        run(&rig, dir.path(), store, Some(&plan), 1).assert_succeeded("a run without faults");
        let traced = plan.traced();
        let grows = traced
            .iter()
            .position(|(_, t)| matches!(t, Traced::SetLen { grew: true, .. }))
            .expect("a commit grew the file");
        // redb syncs the longer file before its layout may reach a header, then the commit
        // writes its pages and header and syncs: the commit ends at the second sync.
        let syncs: Vec<usize> = traced[grows..]
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| *t == Traced::Sync)
            .map(|(i, _)| i)
            .take(2)
            .collect();
        assert_eq!(syncs.len(), 2, "the growing commit syncs: {traced:?}");
        let writes = traced[grows + syncs[0]..grows + syncs[1]]
            .iter()
            .filter(|(_, t)| matches!(t, Traced::Write { .. }))
            .count();
        assert!(writes >= 1, "the commit writes after the file grew");
        syncs[1] as u64
    };
    let mut crashes = 0;
    for loss in [None, Some(PowerLoss::DropUnsynced)] {
        for k in 0..=span {
            let at = format!("crash {k} calls after the file grew ({loss:?})");
            let dir = tempfile::tempdir().expect("temp dir");
            let plan = FaultPlan::new();
            let store = Store::open_faulty(dir.path(), &plan).expect("opens");
            plan.crash_after_growth(k);
            let cut = run(&rig, dir.path(), store, Some(&plan), 1);
            assert!(plan.crashed(), "{at}: the crash fired");
            crashes += 1;
            if let Some(loss) = loss {
                plan.power_loss(loss).expect("power loss");
            }
            let store = reopen(dir.path(), &at);
            check(&store, &cut.acks, 1, &at);
            let fresh = usize::from(releases(&store, &at).is_empty());
            let again = run(&rig, dir.path(), store, None, fresh);
            again.assert_succeeded(&at);
            assert!(!again.acks.is_empty(), "{at}: the store commits again");
            let store = reopen(dir.path(), &at);
            let acked: Vec<_> = cut.acks.iter().chain(&again.acks).cloned().collect();
            check(&store, &acked, 2, &at);
        }
    }
    eprintln!("{crashes} crashes while the file grew ({span} calls to the sync)");
    assert!(crashes >= 8, "{crashes} crashes while the file grew");
}
