//! Kill tests: the `sluice` process is SIGKILLed right after each of its durable commits, and
//! in the middle of a running task, then restarted with `sluice resume`. Every time the release
//! must finish correctly, every commit announced before the kill must be there (counted, with
//! the release revision each announced), and a task that is not idempotent must never run
//! twice.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice::core::{INTERRUPTED, ReleaseState, StageState};
use sluice::store::Store;

use crate::engine::Project;
use crate::support::Spawned;
use crate::support::process::lines;

const PIPELINE: &str = r#"
version = 1
name = "durable"

[artifacts.site]
source = "dir-source"
config = { path = "/builds" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/builds", guest = "/builds" }]

[[stages]]
name = "a"
[[stages.tasks]]
name = "once-a"
plugin = "kit"
config = { action = "append", path = "/project/markers.txt", line = "once-a", sleep_ms = SLEEP }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]

[[stages]]
name = "b"
after = "a"
[[stages.tasks]]
name = "again-b"
plugin = "kit"
idempotent = true
config = { action = "append", path = "/project/markers.txt", line = "again-b" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]

[[stages]]
name = "c"
after = "b"
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
name = "once-c"
plugin = "kit"
config = { action = "append", path = "/project/markers.txt", line = "once-c" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]
"#;

fn sluice(project: &Project, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(project.data_dir())
        .current_dir(project.path())
        .env_remove("SLUICE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    lines(child.stderr.take().unwrap())
}

/// Waits (bounded) for a line containing `needle`; false when the process ended first.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> bool {
    wait_line(lines, needle).is_some()
}

/// Waits (bounded) for a line containing `needle` and returns it; `None` when the process
/// ended first.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str) -> Option<String> {
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no `{needle}` within 120 s"),
        }
    }
}

fn resume(project: &Project) {
    let status = sluice(project, &["resume", "--approve", "all"])
        .status()
        .unwrap();
    assert!(status.code().is_some(), "resume ran to completion");
}

/// Checks the release after recovery. Returns whether it was interrupted (failed by design).
fn check_finished(project: &Project, killed_after: Option<u64>) -> bool {
    let store = Store::open(&project.data_dir()).unwrap();
    let release = store
        .release("durable-1")
        .unwrap()
        .expect("the release was not lost");
    let markers = project.lines("markers.txt");
    let count = |m: &str| markers.iter().filter(|l| *l == m).count();
    assert!(
        count("once-a") <= 1,
        "once-a ran twice (killed after {killed_after:?}): {markers:?}"
    );
    assert!(
        count("once-c") <= 1,
        "once-c ran twice (killed after {killed_after:?}): {markers:?}"
    );
    match release.state {
        ReleaseState::Succeeded => {
            assert_eq!(count("once-a"), 1);
            assert_eq!(count("once-c"), 1);
            assert!(count("again-b") >= 1);
            false
        }
        ReleaseState::Failed => {
            // Only a non-idempotent task caught running may fail the release, and only as
            // interrupted; it then never ran to its marker after the restart.
            let failed: Vec<_> = release
                .stages
                .iter()
                .filter(|s| s.state() == StageState::Failed)
                .collect();
            assert_eq!(failed.len(), 1, "{release:#?}");
            assert_eq!(failed[0].attempts[0].reason.as_deref(), Some(INTERRUPTED));
            true
        }
        other => panic!("release ended {other:?} after a kill after commit {killed_after:?}"),
    }
}

#[test]
fn a_kill_after_any_commit_loses_and_repeats_nothing() {
    let mut point = 1;
    let mut interrupted = 0;
    loop {
        let project = Project::new(&PIPELINE.replace("SLEEP", "0"));
        let mut child = Spawned(
            sluice(&project, &["run", "pipeline.toml", "--approve", "all"])
                .env("SLUICE_FAULT_PAUSE_AFTER_COMMIT", point.to_string())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let lines = stderr_lines(&mut child);
        let Some(paused) = wait_line(&lines, "sluice-fault: paused after commit") else {
            // The run finished before reaching this commit: every point has been covered.
            assert!(child.wait().unwrap().success());
            check_finished(&project, None);
            break;
        };
        // The announcement counts the commits that were durable when it was made.
        let announced: u64 = paused
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {paused:?}"));
        assert_eq!(announced, point, "{paused}");
        let (store_before, revision_before) = {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let store = Store::open(&project.data_dir()).unwrap();
            let release = store.release("durable-1").unwrap();
            (store.audit().unwrap(), release.map(|r| r.revision))
        };
        // Each commit of this run is one audit entry: all N are there, no more, and the
        // release record is the one the last of them announced.
        assert_eq!(
            store_before.len() as u64,
            announced,
            "killed after commit {announced}: {store_before:#?}"
        );
        let revisions: Vec<u64> = store_before.iter().map(|e| e.revision).collect();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "revisions announced in order: {revisions:?}"
        );
        assert_eq!(
            revision_before,
            revisions.last().copied(),
            "{store_before:#?}"
        );
        resume(&project);
        if check_finished(&project, Some(point)) {
            interrupted += 1;
        }
        let store = Store::open(&project.data_dir()).unwrap();
        let after = store.audit().unwrap();
        assert!(
            after.len() as u64 >= announced,
            "killed after commit {announced}: {} entries after resume",
            after.len()
        );
        assert_eq!(
            &after[..store_before.len()],
            &store_before[..],
            "committed history was lost or changed"
        );
        // Every revision announced is in the trail after resume, and the release went on
        // from the last of them.
        for revision in &revisions {
            assert!(
                after
                    .iter()
                    .any(|e| e.release == "durable-1" && e.revision == *revision),
                "revision {revision} lost (killed after commit {announced})"
            );
        }
        let revision_after = store.release("durable-1").unwrap().unwrap().revision;
        assert!(revision_after >= *revisions.last().unwrap());
        point += 1;
    }
    // Creation (with the first stage started), two per stage (artifacts fetched, task done
    // with its log) and the approval: eight commits, each one killed after.
    assert_eq!(point - 1, 8, "kill points covered");
    assert!(
        interrupted >= 1,
        "some kill caught a non-idempotent task marked running"
    );
}

#[test]
fn a_kill_during_a_running_task_fails_it_as_interrupted_without_rerunning() {
    let project = Project::new(&PIPELINE.replace("SLEEP", "60000"));
    let mut child = Spawned(
        sluice(&project, &["run", "pipeline.toml", "--approve", "all"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The task logs once it has appended its marker, then sleeps: kill it mid-task.
    let output = lines(child.stdout.take().unwrap());
    assert!(
        wait_for(&output, "appended once-a"),
        "the task never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    resume(&project);
    assert!(
        check_finished(&project, None),
        "the interrupted task fails its deployment"
    );
    assert_eq!(
        project.lines("markers.txt"),
        ["once-a"],
        "once-a ran exactly once"
    );
}
