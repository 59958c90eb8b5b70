//! Migrating a version-1 store (records, counters and the trail as the current main writes
//! them, no index) on open; refusing a store of a newer version.

use redb::{Database, TableDefinition};

use super::index_tests::{approval, attempt, create, made, names, plan};
use super::*;
use crate::core::{ApprovalState, ReleaseState, StageState};

/// The tables of a version-1 store, as the current main writes them.
const V1_META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

#[test]
fn a_version_1_store_is_migrated_on_open_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let web = plan("web");
    let mut stored = Vec::new();
    {
        // Written as version 1 wrote it: records, counters and the trail, no index.
        let db = Database::create(dir.path().join("sluice.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(V1_META).unwrap();
            meta.insert("schema-version", 1).unwrap();
            let mut releases = txn.open_table(RELEASES).unwrap();
            let mut counters = txn.open_table(COUNTERS).unwrap();
            let mut audit = txn.open_table(AUDIT).unwrap();
            for n in 1..=3u64 {
                let mut r = made(&web, n, n * 10);
                if n == 1 {
                    let mut a = attempt(1, StageState::Succeeded, 15);
                    a.approvals.push(approval(ApprovalState::Approved, 12));
                    r.stages[0].attempts.push(a);
                    r.state = ReleaseState::Succeeded;
                }
                releases
                    .insert(r.name.as_str(), serde_json::to_vec(&r).unwrap().as_slice())
                    .unwrap();
                let entry = AuditEntry {
                    seq: n - 1,
                    release: r.name.clone(),
                    revision: 0,
                    at: n,
                    actor: "rita".into(),
                    what: "created".into(),
                };
                audit
                    .insert(n - 1, serde_json::to_vec(&entry).unwrap().as_slice())
                    .unwrap();
                stored.push(r);
            }
            releases
                .insert("web-broken", b"{not json".as_slice())
                .unwrap();
            counters.insert("web", 3).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    for r in &stored {
        assert_eq!(
            store.release(&r.name).unwrap().as_ref(),
            Some(r),
            "kept as it was"
        );
    }
    let all = store.release_page(None, None, 0, 10).unwrap();
    assert_eq!(
        (names(&all), all.total),
        (vec!["web-3", "web-2", "web-1"], 3)
    );
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.releases.get("active"), Some(&2));
    assert_eq!(counts.releases.get("succeeded"), Some(&1));
    assert_eq!(counts.approvals.get("approved"), Some(&1));
    let approved = store
        .approval_page(Some(ApprovalState::Approved), 0, 10, None)
        .unwrap();
    assert_eq!(approved.approvals[0].id, "web-1.qa.1.pre");
    assert_eq!(
        store.last_good("web", "qa", "web-3").unwrap().as_deref(),
        Some("web-1")
    );
    assert_eq!(store.active_releases(Some("web")).unwrap().len(), 2);
    let trail = store.audit_latest(Some("web-2"), 10).unwrap();
    assert_eq!(trail.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    // The next release's number carries on from the stored counter, and is indexed.
    let next = create(&store, &web, 40);
    assert_eq!(next.name, "web-4");
    assert_eq!(store.release_page(None, None, 0, 10).unwrap().total, 4);
    // Migrated once: a reopen builds nothing again (the counts would double).
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.state_counts().unwrap().releases.get("active"),
        Some(&3)
    );
    let txn = store.db.begin_read().unwrap();
    let version = txn.open_table(META).unwrap().get("schema-version").unwrap();
    assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION));
}

#[test]
fn a_store_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join("sluice.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(V1_META)
            .unwrap()
            .insert("schema-version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::Schema { found, .. } if found == SCHEMA_VERSION + 1));
}
