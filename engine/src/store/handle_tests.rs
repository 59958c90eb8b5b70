//! The store under I/O errors: a full disk latches it (writes refused at once, reads go on
//! from a reopened database, a probe learns that space returned, no restart), and an EIO is
//! fail-stop (the hook runs once, the fsync is never retried).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::faulty::{Fault, FaultPlan, Op};
use super::{Health, PROBE_BYTES, Store, StoreError};
use crate::core::{Event, NewRelease, Release, apply};

const PIPELINE: &str = r#"
version = 1
name = "web"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

fn versions(store: &Store) -> Vec<String> {
    let versions = store.pipeline_versions("p").expect("reads");
    versions.into_iter().map(|v| v.source).collect()
}

fn make(number: u64) -> Release {
    let plan = crate::pipeline::parse("web.toml", PIPELINE, Path::new("/p"), "web")
        .unwrap_or_else(|e| panic!("{e}"))
        .plan;
    Release::new(NewRelease {
        plan,
        number,
        creator: "rita".into(),
        description: None,
        artifacts: vec![],
        variables: vec![],
        digests: vec![],
        created_at: 1,
    })
}

/// A faulty store holding pipeline version `v1`.
fn with_v1(plan: &Arc<FaultPlan>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_faulty(dir.path(), plan).expect("opens");
    store.put_pipeline("p", "v1", "t").expect("v1 commits");
    (dir, store)
}

/// A source bigger than the whole database file: storing it must grow the file.
fn bigger_than(dir: &Path) -> String {
    let len = std::fs::metadata(dir.join("sluice.redb"))
        .expect("file")
        .len();
    "x".repeat(len as usize + 2 * PROBE_BYTES)
}

#[test]
fn a_full_disk_refuses_writes_at_once_reads_go_on_and_space_returning_lifts_it() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.set_full_growth(true);
    let big = bigger_than(dir.path());
    let err = store.put_pipeline("p", &big, "t").expect_err("no space");
    assert!(err.is_no_space(), "{err}");
    assert!(err.to_string().contains("free space"), "{err}");
    assert!(
        matches!(store.health(), Health::Full(_)),
        "{:?}",
        store.health()
    );
    // Latched: a small write is refused without touching the file.
    let calls = plan.io_calls();
    let err = store.put_pipeline("p", "v2", "t").expect_err("latched");
    assert!(err.is_no_space(), "{err}");
    assert_eq!(plan.io_calls(), calls, "a latched write does no I/O");
    // Reads go on, from the database reopened after the error; the refused writes left no trace.
    assert_eq!(versions(&store), ["v1"]);
    // Space returns: the probe learns it, and the next write commits, with no restart.
    plan.set_full_growth(false);
    assert!(store.probe(), "a probe writes while latched");
    assert_eq!(store.health(), Health::Healthy);
    store.put_pipeline("p", "v2", "t").expect("commits again");
    assert!(!store.probe(), "no probe write while healthy");
    drop(store);
    let store = Store::open(dir.path()).expect("reopens");
    assert_eq!(versions(&store), ["v1", "v2"]);
}

#[test]
fn a_probe_while_the_disk_is_still_full_keeps_the_latch() {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.set_full(true);
    let err = store.put_pipeline("p", "v2", "t").expect_err("no space");
    assert!(err.is_no_space(), "{err}");
    // A disk that refuses every write cannot even reopen the file: reads say so (503).
    let err = store.pipeline_versions("p").expect_err("closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(store.probe());
    assert!(matches!(store.health(), Health::Full(_)), "still full");
    plan.set_full(false);
    assert!(store.probe());
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(versions(&store), ["v1"], "the refused write left nothing");
    store.put_pipeline("p", "v3", "t").expect("commits");
    drop(store);
    assert_eq!(versions(&Store::open(dir.path()).unwrap()), ["v1", "v3"]);
}

#[test]
fn an_fsync_eio_is_fail_stop_once_and_the_fsync_is_never_retried() {
    let plan = FaultPlan::new();
    let (_dir, store) = with_v1(&plan);
    let stops = Arc::new(Mutex::new(Vec::new()));
    let seen = stops.clone();
    store.on_fail_stop(move |why| seen.lock().unwrap().push(why.to_owned()));
    plan.fail_next(Op::Sync, 1, Fault::Eio);
    let err = store
        .put_pipeline("p", "v2", "t")
        .expect_err("the sync failed");
    assert!(matches!(err, StoreError::Failed(_)), "{err}");
    let stops = stops.lock().unwrap().clone();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(
        stops[0].contains("sync") && stops[0].contains("Input/output"),
        "{stops:?}"
    );
    assert!(matches!(store.health(), Health::Failed(_)));
    // Nothing is written again through this process: no second fsync on the failed file.
    let syncs = plan.count(Op::Sync);
    let err = store
        .put_pipeline("p", "v3", "t")
        .expect_err("failed store");
    assert!(matches!(err, StoreError::Failed(_)), "{err}");
    assert!(!store.probe(), "a failed store is not probed");
    assert_eq!(plan.count(Op::Sync), syncs);
}

#[tokio::test]
async fn every_write_of_a_batch_hears_the_full_disk_and_none_is_stored() {
    let plan = FaultPlan::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open_faulty(dir.path(), &plan).expect("opens"));
    let mut releases = Vec::new();
    for _ in 0..3 {
        let created = store.create_release("web", "rita", make, None).unwrap();
        releases.push(created);
    }
    plan.set_full(true);
    let failed = Arc::new(AtomicUsize::new(0));
    let mut saves = Vec::new();
    for release in &releases {
        let (store, failed) = (store.clone(), failed.clone());
        let mut next = release.clone();
        apply(&mut next, Event::Created, 2).unwrap();
        saves.push(tokio::spawn(async move {
            let err = store.save(&next, "engine", "started", None, None).await;
            if err.is_err_and(|e| e.is_no_space()) {
                failed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for save in saves {
        save.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 3, "every caller heard 507");
    let err = store
        .create_release("web", "rita", make, None)
        .expect_err("latched");
    assert!(err.is_no_space(), "{err}");
    plan.set_full(false);
    assert!(store.probe());
    for release in &releases {
        let stored = store.release(&release.name).unwrap().unwrap();
        assert_eq!(
            stored.revision, release.revision,
            "{} unchanged",
            release.name
        );
    }
    let created = store.create_release("web", "rita", make, None).unwrap();
    assert_eq!(created.number, 4, "the refused creation took no number");
}
