//! Workspaces are removed when no deployment needs them: at once after a success, after a
//! failure once `limits.workspace-keep` passed (the service) or at the pipeline's next run
//! (`sluice run`); at start, whatever no unfinished deployment owns. A link inside a
//! workspace is removed, never followed.

use std::process::Command;

use super::{api, create, kill, until};
use crate::engine::Project;
use crate::support::Approvals;
use crate::support::process::{serve, service_dir, service_toml};

/// Stage `good` writes into its workspace and succeeds; stage `bad` writes and then fails.
fn pipeline(plugin: &str) -> String {
    format!(
        r#"
version = 1
name = "ws"
[[stages]]
name = "good"
[[stages.tasks]]
name = "write"
plugin = "{plugin}"
config = {{ action = "write", path = "/workspace/out.txt", content = "built" }}
grants.workspace = "rw"
[[stages]]
name = "bad"
[[stages.tasks]]
name = "half"
plugin = "{plugin}"
config = {{ action = "write", path = "/workspace/out.txt", content = "half built" }}
grants.workspace = "rw"
[[stages.tasks]]
name = "break"
plugin = "{plugin}"
config = {{ action = "fail", message = "broken on purpose" }}
"#
    )
}

fn run(project: &Project) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--data-dir"])
        .arg(project.data_dir())
        .arg(project.pipeline())
        .current_dir(project.path())
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn sluice_run_removes_a_succeeded_workspace_and_keeps_a_failed_one_until_the_next_run() {
    let project = Project::new(&pipeline("./plugins/kit.wasm"));
    let out = run(&project);
    assert!(!out.status.success(), "the bad stage fails the run");
    let workspaces = project.data_dir().join("workspaces");
    assert!(!workspaces.join("ws-1/good").exists(), "succeeded: removed");
    let failed = workspaces.join("ws-1/bad/1");
    assert_eq!(
        std::fs::read_to_string(failed.join("out.txt")).unwrap(),
        "half built",
        "failed: kept to be inspected"
    );
    // A link a task left in it, to files outside, and a workspace no release owns.
    let outside = project.path().join("builds");
    std::os::unix::fs::symlink(&outside, failed.join("escape")).unwrap();
    std::fs::create_dir_all(workspaces.join("ghost-9/qa/1")).unwrap();

    let out = run(&project);
    assert!(!out.status.success());
    assert!(!workspaces.join("ws-1").exists(), "the next run removed it");
    assert!(!workspaces.join("ghost-9").exists(), "no release owns it");
    assert!(
        outside.join("1.0.0/index.html").exists(),
        "the link was not followed"
    );
    assert!(workspaces.join("ws-2/bad/1/out.txt").exists());
    assert!(!workspaces.join("ws-2/good").exists());
}

fn release_state(api: &crate::support::Api, name: &str) -> String {
    let view = api.get("vic", &format!("/api/v1/releases/{name}"));
    view["state"].as_str().unwrap().to_owned()
}

#[test]
fn the_service_keeps_a_failed_workspace_for_workspace_keep_and_sweeps_orphans_at_start() {
    let dir = service_dir();
    std::fs::write(dir.path().join("pipelines/ws.toml"), pipeline("./kit.wasm")).unwrap();
    let (child, base, _lines) = serve(dir.path(), None);
    let server = api(base);
    let name = create(&server, "ws");
    server.wait("the release failed", |api| {
        release_state(api, &name) == "failed"
    });
    let workspaces = dir.path().join("data/workspaces");
    let good = workspaces.join(format!("{name}/good"));
    until("the succeeded workspace is removed", || !good.exists());
    let failed = workspaces.join(format!("{name}/bad/1/out.txt"));
    assert!(failed.exists(), "kept to be inspected");
    kill(child);

    // At start: the orphan goes (after the release, in name order), the failed one stays.
    let ghost = workspaces.join("zz-ghost-1/qa/1");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join("left.txt"), "x").unwrap();
    let (child, _base, _lines) = serve(dir.path(), None);
    until("the orphan is removed", || {
        !workspaces.join("zz-ghost-1").exists()
    });
    assert!(failed.exists(), "younger than workspace-keep (24h)");
    kill(child);

    // Past workspace-keep: it goes too.
    let toml = service_toml(r#"token-env = "SLUICE_RITA""#);
    let toml = format!("{toml}\n[limits]\nworkspace-keep = \"0s\"\n");
    std::fs::write(dir.path().join("sluice.toml"), toml).unwrap();
    let (child, _base, _lines) = serve(dir.path(), None);
    until("the failed workspace is removed", || {
        !workspaces.join(&name).exists()
    });
    kill(child);
}
