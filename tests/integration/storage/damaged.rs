//! A damaged data store stops `sluice serve` and `sluice run` at start, with a message that
//! says what to do, and its file is never written to: a truncated file, garbage in the middle
//! pages, a garbage header — each checked by sha256 before and after both commands. Moving the
//! file aside, as the message says, starts an empty store (checked once).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice::store::Store;

use super::workload::{NOOP, w1};
use crate::engine::Project;
use crate::support::process::{lines, service_dir};
use crate::support::{Spawned, token};

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncated,
    MiddlePages,
    Header,
}

/// The file of a store with some history (pipeline versions, 20,000 audit entries), closed
/// cleanly.
fn intact_store() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = Store::open(dir.path()).expect("opens");
        for i in 0..40 {
            let source = format!("version {i} {}", "x".repeat(2_000));
            store.put_pipeline("p", &source, "t").expect("commits");
        }
        store.append_bulk("t", "bulk", 20_000).expect("commits");
    }
    std::fs::read(dir.path().join("sluice.redb")).expect("reads")
}

/// `intact` as the store in `data`, damaged as `damage` says; returns its file.
fn damaged_store(intact: &[u8], data: &Path, damage: Damage) -> PathBuf {
    std::fs::create_dir_all(data).expect("creates");
    let file = data.join("sluice.redb");
    std::fs::write(&file, intact).expect("writes");
    let len = intact.len() as u64;
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("opens");
    let write = |at: u64, len: u64| {
        use std::os::unix::fs::FileExt as _;
        let mut seed = at | 1;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        handle.write_all_at(&bytes, at).expect("writes");
    };
    match damage {
        Damage::Truncated => handle.set_len(len / 2).expect("truncates"),
        Damage::MiddlePages => write(len / 4, len / 2),
        Damage::Header => write(0, 4096),
    }
    file
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("reads")).to_vec()
}

/// Runs `command` to its end — bounded: its stderr closes when it exits — and returns its
/// exit code and what it wrote to stderr.
fn finish(mut command: Command) -> (Option<i32>, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Spawned(command.spawn().expect("spawns"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    let mut text = String::new();
    loop {
        match stderr.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("still running after 60 s:\n{text}"),
        }
    }
    let status = child.wait().expect("waits");
    (status.code(), text)
}

fn assert_refused(command: &str, (code, stderr): (Option<i32>, String), file: &Path) {
    assert!(
        code.is_some_and(|c| c != 0),
        "{command} exited {code:?}:\n{stderr}"
    );
    let file = file.display().to_string();
    assert!(
        stderr.contains(&format!("the data store {file} is damaged"))
            && stderr.contains("restore it from a backup, or move it aside to start empty")
            && stderr.contains("it was not modified"),
        "{command}:\n{stderr}"
    );
}

#[test]
fn a_damaged_store_stops_serve_and_run_at_start_and_is_never_written() {
    let intact = intact_store();
    for damage in [Damage::Truncated, Damage::MiddlePages, Damage::Header] {
        let service = service_dir();
        let file = damaged_store(&intact, &service.path().join("data"), damage);
        let before = sha256(&file);
        let mut serve = Command::new(env!("CARGO_BIN_EXE_sluice"));
        serve
            .args(["serve", "--config"])
            .arg(service.path().join("sluice.toml"))
            .env("SLUICE_RITA", token("rita"))
            .env("SLUICE_BOB", token("bob"))
            .env("SLUICE_VIC", token("vic"))
            .env_remove("SLUICE_FAULT_PAUSE_AFTER_COMMIT");
        assert_refused("sluice serve", finish(serve), &file);
        assert_eq!(sha256(&file), before, "{damage:?}: serve wrote to the file");

        let project = Project::new(&w1(NOOP));
        let data = project.data_dir();
        let file = damaged_store(&intact, &data, damage);
        let before = sha256(&file);
        let run = || {
            let mut run = Command::new(env!("CARGO_BIN_EXE_sluice"));
            run.args(["run", "pipeline.toml", "--approve", "all", "--data-dir"])
                .arg(&data)
                .current_dir(project.path())
                .env_remove("SLUICE_DATA_DIR")
                .env_remove("SLUICE_FAULT_PAUSE_AFTER_COMMIT");
            run
        };
        assert_refused("sluice run", finish(run()), &file);
        assert_eq!(sha256(&file), before, "{damage:?}: run wrote to the file");

        if !matches!(damage, Damage::Header) {
            continue;
        }
        // Moved aside, as the message says: the next run starts an empty store.
        std::fs::rename(&file, data.join("sluice.redb.damaged")).expect("moves");
        let (code, stderr) = finish(run());
        assert_eq!(
            code,
            Some(0),
            "{damage:?}: a run on an empty store:\n{stderr}"
        );
        assert_eq!(
            sha256(&data.join("sluice.redb.damaged")),
            before,
            "{damage:?}: the damaged file, moved aside, is as it was"
        );
    }
}
