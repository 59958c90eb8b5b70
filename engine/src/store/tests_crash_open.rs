//! A damaged database file is refused before anything writes to it (`open.rs`): truncated,
//! garbage in the middle of its pages, a garbage header — each refused with a message that says
//! what to do, and the file's bytes (sha256) the same after; an intact file opens with what it
//! held.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// A store in `dir` holding 40 pipeline versions and 20,000 audit entries, closed cleanly.
fn stored(dir: &Path) -> PathBuf {
    let store = Store::open(dir).expect("opens");
    for i in 0..40 {
        let source = format!("version {i} {}", "x".repeat(2_000));
        store.put_pipeline("p", &source, "t").expect("commits");
    }
    store.append_bulk("t", "bulk", 20_000).expect("commits");
    drop(store);
    dir.join("sluice.redb")
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("reads")).to_vec()
}

/// Bytes that are no database (a seeded xorshift).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("opens");
    file.write_all_at(bytes, at).expect("writes");
}

/// Opening `dir` is refused as damaged, the message says what to do, the file is unchanged.
fn assert_refused(dir: &Path, file: &Path) {
    let before = sha256(file);
    for _ in 0..2 {
        let Err(err) = Store::open(dir) else {
            panic!("a damaged file opened");
        };
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&file.display().to_string())
                && text.contains("restore it from a backup, or move it aside to start empty")
                && text.contains("it was not modified"),
            "{text}"
        );
        assert_eq!(sha256(file), before, "the damaged file was written to");
    }
}

#[test]
fn a_truncated_file_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = stored(dir.path());
    let len = std::fs::metadata(&file).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncates");
    assert_refused(dir.path(), &file);
}

#[test]
fn garbage_in_the_middle_pages_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = stored(dir.path());
    let len = std::fs::metadata(&file).expect("stat").len();
    overwrite(&file, len / 4, &garbage((len / 2) as usize, 7));
    assert_refused(dir.path(), &file);
}

#[test]
fn a_garbage_header_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = stored(dir.path());
    overwrite(&file, 0, &garbage(4096, 11));
    assert_refused(dir.path(), &file);
}

#[test]
fn an_intact_file_opens_with_what_it_held() {
    let dir = tempfile::tempdir().expect("temp dir");
    stored(dir.path());
    let store = Store::open(dir.path()).expect("an intact file opens");
    assert_eq!(store.pipeline_versions("p").expect("reads").len(), 40);
    assert_eq!(store.audit().expect("reads").len(), 20_000);
}

/// What the check costs at start, printed: `cargo test -p sluice --lib what_the_check_costs
/// -- --ignored --nocapture` (a 100 MB store is built first, in a temporary directory): on a
/// cleanly closed file, and on one a crash left (whose recovery the check makes).
#[test]
#[ignore = "a measurement, not a check: builds a 100 MB store"]
fn what_the_check_costs_on_a_100_mb_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sluice.redb");
    let len = || std::fs::metadata(&file).map_or(0, |m| m.len());
    while len() < 100 << 20 {
        let store = Store::open(dir.path()).expect("opens");
        store
            .append_bulk("t", &"y".repeat(200), 100_000)
            .expect("commits");
    }
    let time = |what: &str| {
        let start = std::time::Instant::now();
        super::open::refuse_damaged(&file, &super::replay_tests::plain(&file)).expect("intact");
        let check = start.elapsed();
        let start = std::time::Instant::now();
        drop(Store::open(dir.path()).expect("opens"));
        let open = start.elapsed();
        println!(
            "{what}, {} MB: the check {check:.2?}; then Store::open (a check again included) \
             {open:.2?}",
            len() >> 20
        );
    };
    for round in 0..3 {
        time(&format!("closed cleanly, round {round}"));
    }
    for round in 0..2 {
        let plan = super::faulty::FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        plan.crash_at_io(1);
        assert!(store.put_pipeline("p", "v", "t").is_err(), "crashed");
        drop(store);
        time(&format!("left by a crash, round {round}"));
    }
}
