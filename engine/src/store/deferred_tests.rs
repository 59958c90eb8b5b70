//! The index rows applied in batches (`deferred.rs`): a read right after a commit sees it, the
//! rows that waited at a crash are indexed by the next open (and the file's indexes were behind
//! at the crash: the control), the committer and the creations apply once enough waits, a
//! quarantine applies what waits first, and a version-2 store opens with its indexes whole.

use std::path::Path;

use redb::ReadableDatabase;

use super::deferred::{APPLIED, DUE_RELEASES};
use super::faulty::{FaultPlan, PowerLoss};
use super::index::BY_STATE;
use super::index_prop_tests::check_against_a_recount;
use super::index_tests::{attempt, create, names, plan, runtime, save};
use super::summary::release_label;
use super::*;
use crate::core::{ReleaseState, StageState};

/// The mark and the active releases by the state index, read from a copy of the file as a
/// crash left it (redb repairs the copy, never the original).
fn as_left(dir: &Path) -> (u64, usize) {
    let copy = tempfile::tempdir().unwrap();
    let file = copy.path().join("sluice.redb");
    std::fs::copy(dir.join("sluice.redb"), &file).unwrap();
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_read().unwrap();
    let mark = txn
        .open_table(META)
        .unwrap()
        .get(APPLIED)
        .unwrap()
        .map_or(0, |v| v.value());
    let active = release_label(ReleaseState::Active);
    let rows = txn.open_table(BY_STATE).unwrap();
    let active = rows
        .range((active, 0, 0, "")..)
        .unwrap()
        .filter(|row| row.as_ref().unwrap().0.value().0 == active)
        .count();
    (mark, active)
}

#[test]
fn a_list_read_right_after_a_commit_applies_what_waits_and_shows_it() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut release = create(&store, &web, 1);
    release.state = ReleaseState::Succeeded;
    save(&rt, &store, &mut release);
    assert!(store.deferred.waiting(), "the rows wait for their commit");
    let page = store
        .release_page(None, Some(ReleaseState::Succeeded), 0, 10)
        .unwrap();
    assert_eq!((names(&page), page.total), (vec!["web-1"], 1));
    assert!(!store.deferred.waiting(), "the read applied them");
    assert_eq!(store.active_releases(None).unwrap().len(), 0);
}

#[test]
fn rows_that_waited_at_a_crash_are_indexed_by_the_next_open() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let plan_ = FaultPlan::new();
    let store = Store::open_faulty(dir.path(), &plan_).unwrap();
    let (web, api) = (plan("web"), plan("api"));
    let mut one = create(&store, &web, 1);
    let mut two = create(&store, &api, 2);
    create(&store, &web, 3);
    one.stages[0]
        .attempts
        .push(attempt(1, StageState::Succeeded, 4));
    save(&rt, &store, &mut one);
    two.state = ReleaseState::Failed;
    save(&rt, &store, &mut two);
    assert_eq!(store.deferred.releases_waiting(), 3);
    // The machine stops: the close applies nothing; every commit was synced.
    plan_.crash_at_io(1);
    drop(store);
    plan_.power_loss(PowerLoss::DropUnsynced).unwrap();
    let (mark, active) = as_left(dir.path());
    assert_eq!(
        (mark, active),
        (0, 0),
        "the file's indexes were behind the records at the crash"
    );

    let store = Store::open(dir.path()).unwrap();
    check_against_a_recount(&store);
    assert_eq!(store.active_releases(None).unwrap().len(), 2);
    assert_eq!(
        store.last_good("web", "qa", "").unwrap().as_deref(),
        Some("web-1")
    );
    let trail = store.audit_forward(0, Some("api-1"), 10, 10).unwrap();
    assert_eq!(trail.entries.len(), 2, "created, then the save");
    drop(store);
    let (mark, active) = as_left(dir.path());
    assert_eq!(
        (mark, active),
        (5, 2),
        "the open moved the mark to the trail's end"
    );
}

#[test]
fn creations_and_the_committer_apply_once_enough_releases_wait() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let plan_ = FaultPlan::new();
    // A faulty store's committer makes no checkpoint of its own: nothing applies by time.
    let store = Store::open_faulty(dir.path(), &plan_).unwrap();
    let web = plan("web");
    let mut made: Vec<_> = (0..DUE_RELEASES as u64)
        .map(|at| create(&store, &web, at))
        .collect();
    assert_eq!(
        store.deferred.releases_waiting(),
        0,
        "the creation that made {DUE_RELEASES} wait applied them"
    );
    for release in &mut made {
        release.state = ReleaseState::Succeeded;
        save(&rt, &store, release);
    }
    // The batch that made them due was applied before the committer took the next write.
    let mut one = made.pop().unwrap();
    save(&rt, &store, &mut one);
    assert_eq!(store.deferred.releases_waiting(), 1);
    check_against_a_recount(&store);
}

#[test]
fn a_quarantine_applies_what_waits_before_it_takes_the_release_out() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut bad = create(&store, &web, 1);
    create(&store, &web, 2);
    bad.state = ReleaseState::Failed;
    save(&rt, &store, &mut bad);
    store
        .put_raw_release_for_tests("web-1", b"{not json")
        .unwrap();
    assert!(store.quarantine("web-1", "test").unwrap());
    assert!(!store.deferred.waiting());
    let page = store.release_page(None, None, 0, 10).unwrap();
    assert_eq!((names(&page), page.total), (vec!["web-2"], 1));
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.releases.get("failed"), None, "{counts:?}");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let page = store.release_page(None, None, 0, 10).unwrap();
    assert_eq!(
        names(&page),
        ["web-2"],
        "the next open indexes nothing back"
    );
}

#[test]
fn a_version_2_store_opens_with_its_indexes_whole_and_the_mark_at_its_end() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let mut release = create(&store, &plan("web"), 1);
    release.state = ReleaseState::Succeeded;
    save(&rt, &store, &mut release);
    store.release_page(None, None, 0, 1).unwrap();
    // As version 2 left it: no mark (every row was written in its record's commit).
    let txn = store.db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("schema-version", 2).unwrap();
        meta.remove(APPLIED).unwrap();
    }
    txn.commit().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check_against_a_recount(&store);
    let txn = store.db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let get = |key: &str| meta.get(key).unwrap().map(|v| v.value());
    assert_eq!(get("schema-version"), Some(SCHEMA_VERSION));
    assert_eq!(get(APPLIED), Some(2));
}

#[test]
fn a_checkpoint_moves_the_mark_past_entries_of_no_release() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for _ in 0..3 {
        store.record_refusal("mallory", "refused: 401").unwrap();
    }
    store.checkpoint().unwrap();
    let txn = store.db.begin_read().unwrap();
    let mark = txn.open_table(META).unwrap().get(APPLIED).unwrap();
    assert_eq!(
        mark.map(|v| v.value()),
        Some(3),
        "the open reads none of them again"
    );
}
