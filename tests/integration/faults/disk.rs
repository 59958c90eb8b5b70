//! A full disk under `sluice serve` and `sluice run`: the write is refused with 507 (`sluice
//! run`: exit 3), `/readyz` says the disk is full, reads go on, a task's end waits for space
//! instead of being lost, and once space returns the next write succeeds with no restart; a
//! decision refused for the full disk, retried with its `Idempotency-Key`, applies once.

use std::process::Stdio;

use super::{approve_with_key, audit, create, end_fault, start_fault, the_pending};
use crate::engine::Project;
use crate::support::process::{lines, serve_with, service_dir, wait_line};
use crate::support::{Api, Latch, Spawned, logs_pipeline};

/// A `sluice serve` on `dir` whose disk is full while `dir/full` exists.
fn serve_full(dir: &std::path::Path) -> (Spawned, Api, std::sync::mpsc::Receiver<String>) {
    let rule = format!("nospace:while={}", dir.join("full").display());
    let (child, base, lines) = serve_with(dir, None, &[("SLUICE_FAULT_STORAGE", &rule)]);
    let api = Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    };
    (child, api, lines)
}

#[test]
fn a_full_disk_refuses_a_decision_with_507_and_its_retry_applies_once_space_returns() {
    let dir = service_dir();
    let full = dir.path().join("full");
    let (_child, api, lines) = serve_full(dir.path());
    let release = create(&api, "shop");
    let id = the_pending(&api);
    let before = audit(&api);

    start_fault(&full);
    let refused = approve_with_key(&api, &id, "decide-1");
    assert_eq!(refused.status, 507, "{}", refused.text());
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("insufficient storage")
            && error.contains("disk")
            && error.contains("free space")
            && error.contains("nothing was changed"),
        "{error}"
    );
    let ready = api.anonymous("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains("disk of the data directory is full"),
        "{}",
        ready.text()
    );
    // Reads go on, and show nothing of the refused decision.
    let shown = api.get("vic", &format!("/api/v1/releases/{release}"));
    assert_eq!(shown["stages"][0]["state"], "awaiting-approval", "{shown}");
    assert_eq!(audit(&api), before, "nothing was stored");
    let listed = api.call("vic", "GET", "/api/v1/approvals", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    // Every other write is refused the same way meanwhile.
    let other = api.call(
        "rita",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(serde_json::json!({})),
    );
    assert_eq!(other.status, 507, "{}", other.text());

    end_fault(&full);
    wait_line(&lines, "space returned");
    assert_eq!(api.anonymous("/readyz").status, 200);
    // The retry applies the decision, once: a 200 with the change, then the same answer.
    let applied = approve_with_key(&api, &id, "decide-1");
    assert_eq!(applied.status, 200, "{}", applied.text());
    let replayed = approve_with_key(&api, &id, "decide-1");
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert_eq!(replayed.json(), applied.json(), "the stored answer");
    api.wait_stage(&release, "qa", "succeeded");
    let decisions = audit(&api)
        .iter()
        .filter(|e| e["release"] == release.as_str() && e["actor"] == "bob")
        .count();
    assert_eq!(decisions, 1, "the decision was stored once");
}

#[test]
fn a_task_that_ends_while_the_disk_is_full_is_stored_once_space_returns() {
    let dir = service_dir();
    let full = dir.path().join("full");
    let latch = Latch::start();
    std::fs::write(
        dir.path().join("pipelines/logs.toml"),
        logs_pipeline(&latch),
    )
    .unwrap();
    let (_child, api, lines) = serve_full(dir.path());
    let release = create(&api, "logs");
    api.wait_stage(&release, "build", "in-progress");
    // The task ends while the disk is full: its end cannot be stored, and is not acknowledged.
    start_fault(&full);
    latch.open();
    wait_line(&lines, "waiting for space");
    let shown = api.get("vic", &format!("/api/v1/releases/{release}"));
    let task = &shown["stages"][0]["attempts"][0]["tasks"][0];
    assert_eq!(task["state"], "running", "{shown}");
    // Space returns: the driver stores the task's end and the release goes on, no restart.
    end_fault(&full);
    api.wait_stage(&release, "build", "succeeded");
}

#[test]
fn sluice_run_on_a_full_disk_stops_with_code_3_and_resume_finishes_the_release() {
    // The first task fills the disk (it writes the file the hook watches), so the commit of
    // its end is refused.
    let project = Project::new(
        r#"
version = 1
name = "fill"
[[stages]]
name = "a"
[[stages.tasks]]
name = "fill"
plugin = "kit"
idempotent = true
config = { action = "write", path = "/project/full", content = "" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]
"#,
    );
    let full = project.path().join("full");
    let rule = format!("nospace:while={}", full.display());
    let sluice = |args: &[&str], fault: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(project.data_dir())
            .current_dir(project.path())
            .env_remove("SLUICE_DATA_DIR")
            .env(
                "SLUICE_FAULT_STORAGE",
                if fault { rule.as_str() } else { "" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !fault {
            cmd.env_remove("SLUICE_FAULT_STORAGE");
        }
        Spawned(cmd.spawn().unwrap())
    };
    let mut run = sluice(&["run", "pipeline.toml"], true);
    let said: Vec<String> = lines(run.stderr.take().unwrap()).iter().collect();
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.contains("disk of the data directory is full") && l.contains("free space")),
        "{said:?}"
    );
    // Space returns (and the task, run again, fills nothing this time).
    end_fault(&full);
    let mut resume = sluice(&["resume"], false);
    let said: Vec<String> = lines(resume.stderr.take().unwrap()).iter().collect();
    assert!(resume.wait().unwrap().success(), "{said:?}");
    let store = sluice::store::Store::open(&project.data_dir()).unwrap();
    let stored = store.release("fill-1").unwrap().unwrap();
    assert_eq!(stored.state, sluice::core::ReleaseState::Succeeded);
}
