//! Start-up: ready only once recovery is done, undecodable records quarantined instead of a
//! crash loop, workspaces removed when no deployment needs them.

mod quarantine;
mod readiness;
mod workspaces;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Api, Spawned};

/// A pipeline `slow`: one stage whose one task (not idempotent) appends its release's name to
/// `ran.txt` in the pipelines directory, logs, then stays busy for ten minutes: a deployment
/// under way when the server is killed.
const SLOW: &str = r#"
version = 1
name = "slow"
[[stages]]
name = "build"
[[stages.tasks]]
name = "step"
plugin = "./kit.wasm"
config = { action = "append", path = "/project/ran.txt", line = "$(sluice.release)", sleep_ms = 600000 }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]
"#;

/// Writes the `slow` pipeline into the service directory `dir`.
fn add_slow(dir: &Path) {
    std::fs::write(dir.join("pipelines/slow.toml"), SLOW).unwrap();
}

/// Creates a release of `pipeline` as rita; its name.
fn create(api: &Api, pipeline: &str) -> String {
    let reply = api.call(
        "rita",
        "POST",
        &format!("/api/v1/pipelines/{pipeline}/releases"),
        Some(json!({})),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["name"].as_str().unwrap().to_owned()
}

/// An API client of the server at `base`.
fn api(base: String) -> Api {
    Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    }
}

/// SIGKILLs the server and reaps it.
fn kill(mut child: Spawned) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until `done` holds, looking again every 20 ms (bounded: 60 s); panics naming `what`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        // Nothing signals a directory's removal (it follows the commit, and logs nothing):
        // the condition is checked again, within the bound.
        std::thread::sleep(Duration::from_millis(20));
    }
}
