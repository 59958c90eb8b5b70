//! The audit trail of one release read through its index; a release written twice in one
//! batch of the committer: the indexes follow the later write, as the record does; a release
//! taken out of the indexes (as a quarantine does) leaves no row or count behind.

use super::index_tests::{approval, attempt, create, names, plan, runtime, save};
use super::*;
use crate::core::{ApprovalState, ReleaseState, StageState};

#[test]
fn the_audit_trail_of_one_release_is_read_through_its_index() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut a = create(&store, &web, 1);
    let mut b = create(&store, &web, 2);
    for _ in 0..300 {
        save(&rt, &store, &mut b);
    }
    for _ in 0..3 {
        save(&rt, &store, &mut a);
    }
    store.record_refusal("mallory", "refused").unwrap();
    let latest = store.audit_latest(Some("web-1"), 2).unwrap();
    let seqs: Vec<u64> = latest.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [303, 304]);
    assert_eq!(latest.next, 306);
    let forward = store
        .audit_forward(1, Some("web-1"), 10, usize::MAX)
        .unwrap();
    let seqs: Vec<u64> = forward.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [302, 303, 304]);
    assert_eq!(
        forward.next, 306,
        "no more of its entries: the end of the trail"
    );
    let page = store
        .audit_forward(0, Some("web-2"), 5, usize::MAX)
        .unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.next, page.entries[4].seq + 1);
    assert!(page.entries.iter().all(|e| e.release == "web-2"));
    assert_eq!(store.audit_latest_start(Some("web-1"), 3).unwrap(), 302);
    assert_eq!(store.audit_latest_start(Some("web-1"), 9).unwrap(), 0);
}

#[test]
fn a_release_rewritten_twice_in_one_batch_is_indexed_as_the_later_write() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let r = create(&store, &web, 1);
    let mut failed = r.clone();
    failed.state = ReleaseState::Failed;
    failed.revision = 1;
    let mut succeeded = r;
    succeeded.state = ReleaseState::Succeeded;
    succeeded.revision = 2;
    // Both jobs are sent before either commits: the committer takes them in order, most
    // likely in one transaction.
    let (a, b) = rt.block_on(async {
        tokio::join!(
            store.save(&failed, "engine", "failed", None, None),
            store.save(&succeeded, "engine", "succeeded", None, None)
        )
    });
    a.unwrap();
    b.unwrap();
    assert_eq!(
        store.release("web-1").unwrap().unwrap().state,
        ReleaseState::Succeeded
    );
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.releases.get("succeeded"), Some(&1));
    assert_eq!(counts.releases.values().sum::<u64>(), 1, "{counts:?}");
    for (state, want) in [
        (ReleaseState::Active, 0),
        (ReleaseState::Failed, 0),
        (ReleaseState::Succeeded, 1),
    ] {
        let page = store.release_page(Some("web"), Some(state), 0, 10).unwrap();
        assert_eq!(
            (page.releases.len(), page.total),
            (want, want as u64),
            "{state:?}"
        );
    }
    let page = store.release_page(None, None, 0, 10).unwrap();
    assert_eq!(names(&page), ["web-1"]);
    assert_eq!(page.releases[0].revision, 2);
}

#[test]
fn a_release_taken_out_of_the_indexes_leaves_no_row_or_count() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut gone = create(&store, &web, 1);
    let kept = create(&store, &web, 2);
    let mut a = attempt(1, StageState::Succeeded, 3);
    let approved = ApprovalState::Approved;
    a.approvals.push(approval(approved, 3));
    gone.stages[0].attempts.push(a);
    save(&rt, &store, &mut gone);
    store.deferred.fresh(&store.db).unwrap();
    let txn = store.db.begin_write().unwrap();
    {
        let mut index = index::Writer::open(&txn);
        assert!(index.remove("web-1").unwrap());
        assert!(!index.remove("web-1").unwrap(), "once");
    }
    txn.commit().unwrap();
    let page = store.release_page(None, None, 0, 10).unwrap();
    assert_eq!((names(&page), page.total), (vec![kept.name.as_str()], 1));
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.releases.values().sum::<u64>(), 1);
    assert_eq!(
        counts.deployments.values().sum::<u64>(),
        2,
        "web-2's two stages"
    );
    assert!(counts.approvals.is_empty());
    assert_eq!(store.last_good("web", "qa", "").unwrap(), None);
    let approvals = store.approval_page(Some(approved), 0, 10, None).unwrap();
    assert_eq!((approvals.approvals.len(), approvals.total), (0, 0));
    assert_eq!(store.active_releases(None).unwrap().len(), 1);
}
