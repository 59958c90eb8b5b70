//! The open's replay of redb's recovery (`open.rs`): a file a crash left is repaired once, not
//! verified twice, and a crash at any point of the replay loses nothing acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Store;
use super::faulty::{FaultPlan, PowerLoss};
use super::faulty_tests::{until_no_crash, versions_of as versions, with_v1};

/// The image of a store file holding `v1` that a crash left: its last commit recorded no
/// allocator state, so opening it makes redb repair it.
fn crashed_image() -> Vec<u8> {
    let plan = FaultPlan::new();
    let (dir, store) = with_v1(&plan);
    plan.crash_at_io(1);
    drop(store);
    plan.power_loss(PowerLoss::DropUnsynced).expect("cut");
    std::fs::read(dir.path().join("sluice.redb")).expect("reads")
}

fn planted(image: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sluice.redb");
    std::fs::write(&file, image).expect("writes");
    (dir, file)
}

/// The replay target `Store::open` uses: redb's file backend on the file at `path`.
pub(super) fn plain(
    path: &Path,
) -> impl Fn() -> std::io::Result<Box<dyn redb::StorageBackend>> + '_ {
    move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let backend = redb::backends::FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Box::new(backend) as Box<dyn redb::StorageBackend>)
    }
}

/// Whether redb repairs the file at `path` when it opens it.
fn repairs(path: &Path) -> bool {
    let repaired = Arc::new(AtomicBool::new(false));
    let seen = repaired.clone();
    let mut builder = redb::Builder::new();
    builder.set_repair_callback(move |_| seen.store(true, Ordering::Relaxed));
    drop(builder.create(path).expect("opens"));
    repaired.load(Ordering::Relaxed)
}

#[test]
fn a_file_a_crash_left_is_repaired_by_the_check_and_opens_without_a_second_repair() {
    let image = crashed_image();
    let (_dir, file) = planted(&image);
    assert!(
        repairs(&file),
        "the control: redb repairs the file a crash left"
    );

    let (dir, file) = planted(&image);
    assert!(super::open::refuse_damaged(&file, &plain(&file)).expect("passes the check"));
    assert!(!repairs(&file), "the check's repair reached the file");
    let store = Store::open(dir.path()).expect("opens");
    assert_eq!(versions(&store), ["v1"]);
}

#[test]
fn a_clean_file_is_not_written_by_the_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Store::open(dir.path()).expect("opens"));
    let file = dir.path().join("sluice.redb");
    let before = std::fs::read(&file).expect("reads");
    let never = || -> std::io::Result<Box<dyn redb::StorageBackend>> {
        Err(std::io::Error::other("a clean file is never replayed"))
    };
    assert!(!super::open::refuse_damaged(&file, &never).expect("passes the check"));
    assert_eq!(std::fs::read(&file).expect("reads"), before);
}

#[test]
fn a_crash_at_any_point_of_the_replay_loses_nothing_acknowledged() {
    let image = crashed_image();
    until_no_crash("the open", |n| {
        let (dir, _) = planted(&image);
        let plan = FaultPlan::new();
        plan.crash_at_io(n);
        let opened = Store::open_faulty(dir.path(), &plan);
        let crashed = plan.crashed();
        assert!(
            opened.is_ok() || crashed,
            "no crash, yet: {:?}",
            opened.err()
        );
        drop(opened);
        plan.power_loss(PowerLoss::KeepSome(n)).expect("cut");
        let reopened = Store::open(dir.path()).expect("reopens");
        assert_eq!(versions(&reopened), ["v1"], "crash at call {n}");
        reopened
            .put_pipeline("p", "v2", "t")
            .expect("writes go on after the crash");
        assert_eq!(versions(&reopened), ["v1", "v2"], "crash at call {n}");
        crashed
    });
}

#[test]
fn a_data_directory_another_store_has_open_is_refused_and_opens_once_it_is_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Store::open(dir.path()).expect("opens");
    first.put_pipeline("p", "v1", "t").expect("v1 commits");
    let Err(err) = Store::open(dir.path()) else {
        panic!("a second store opened the same data directory");
    };
    let text = err.to_string();
    assert!(text.contains("is in use by another Sluice"), "{text}");
    assert!(text.contains("--data-dir"), "says what to do: {text}");
    assert_eq!(versions(&first), ["v1"], "the first store is untouched");
    drop(first);
    assert_eq!(versions(&Store::open(dir.path()).expect("opens")), ["v1"]);
}
