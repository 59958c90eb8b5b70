//! Agents as real processes on 127.0.0.1: `sluice serve` with pools, `sluice agent`s with
//! their capabilities and offered directories; dispatch by demand, why a job waits, grants an
//! agent refuses, the walls between agent and user tokens.

mod dispatch;
mod example;
mod gates;
mod loss;
mod restart;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::process::{lines, wait_line};
use crate::support::{Api, Spawned, TESTKIT, service_toml, token};

/// `ship` appends the release's name to OUT/runs (each real run), then stays busy.
pub fn pipeline(idempotent: bool, busy_ms: u64) -> String {
    format!(
        r#"
version = 1
name = "deploy"
[[stages]]
name = "prod"
pool = "eu-prod"
[[stages.tasks]]
name = "ship"
plugin = "./kit.wasm"
idempotent = {idempotent}
config = {{ action = "append", path = "/out/runs", line = "$(sluice.release)", sleep_ms = {busy_ms} }}
grants.dirs = [{{ host = "OUT", guest = "/out", access = "rw" }}]
"#
    )
}

/// The agent token of pool `eu-prod`.
pub fn agent_token() -> String {
    token("agent-eu")
}

/// A served Sluice with pool `eu-prod` and pipelines from `pipelines` (name, text).
pub struct Site {
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
    pub server: Spawned,
    pub api: Api,
    pub lines: mpsc::Receiver<String>,
}

impl Site {
    pub fn start(pipelines: &[(&str, String)], agents: &str) -> Self {
        let site = Self::start_with(pipelines, agents, "");
        site.api.until_ready(&site.lines);
        site
    }

    /// As [`Site::start`], with `top` (keys such as `tls = ...`) at the head of sluice.toml,
    /// not waiting for it to be ready.
    pub fn start_with(pipelines: &[(&str, String)], agents: &str, top: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let shelf = dir.path().join("pipelines");
        std::fs::create_dir_all(&shelf).unwrap();
        std::fs::copy(TESTKIT, shelf.join("kit.wasm")).unwrap();
        for (name, text) in pipelines {
            let text = text.replace("OUT", &out.display().to_string());
            std::fs::write(shelf.join(format!("{name}.toml")), text).unwrap();
        }
        let toml = format!(
            "{top}\n{}\n[[pools]]\nname = \"eu-prod\"\ntokens-env = [\"SLUICE_AGENT_EU\"]\n[agents]\n{agents}\n",
            service_toml(r#"token-env = "SLUICE_RITA""#)
        );
        std::fs::write(dir.path().join("sluice.toml"), toml).unwrap();
        // SAFETY of the environment: `serve` passes it to the child; this test sets only a
        // variable of its own naming, the same value every time.
        let (server, base, lines) = serve_env(dir.path());
        let api = Api {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            base,
        };
        Self {
            dir,
            out,
            server,
            api,
            lines,
        }
    }

    /// SIGKILLs the server and starts it again on the same port, once ready.
    pub fn restart(&mut self) {
        self.server.kill().unwrap();
        self.server.wait().unwrap();
        // Started again where the agents look for it.
        let config = self.dir.path().join("sluice.toml");
        let port = self.api.base.rsplit(':').next().unwrap().to_owned();
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(&config, text).unwrap();
        let (server, base, lines) = serve_env(self.dir.path());
        (self.server, self.api.base, self.lines) = (server, base, lines);
        self.api.until_ready(&self.lines);
    }

    /// Starts `sluice agent` NAME of pool `eu-prod` with `flags`, once it asks for jobs.
    pub fn agent(&self, name: &str, flags: &[&str]) -> Agent {
        self.agent_in(name, "eu-prod", &agent_token(), flags)
    }

    /// Starts `sluice agent` NAME of `pool`, joining with `token`.
    pub fn agent_in(&self, name: &str, pool: &str, token: &str, flags: &[&str]) -> Agent {
        let work = self.dir.path().join(format!("agent-{name}"));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args([
                "agent",
                "--server",
                &self.api.base,
                "--name",
                name,
                "--pool",
                pool,
            ])
            .arg("--work-dir")
            .arg(&work)
            .args(flags)
            .env("SLUICE_AGENT_TOKEN", token)
            .env("SLUICE_LOG", "info,wasmtime_wasi_http=error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = Spawned(command.spawn().unwrap());
        let said = lines(child.stderr.take().unwrap());
        wait_line(&said, "asking");
        Agent {
            child,
            lines: said,
            work,
        }
    }

    /// Creates a release of `pipeline` as rita; its name.
    pub fn release(&self, pipeline: &str) -> String {
        let reply = self.api.call(
            "rita",
            "POST",
            &format!("/api/v1/pipelines/{pipeline}/releases"),
            Some(serde_json::json!({})),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["name"].as_str().unwrap().to_owned()
    }
}

/// `sluice serve` on `dir`, with the agent token in its environment.
fn serve_env(dir: &Path) -> (Spawned, String, mpsc::Receiver<String>) {
    // The default filter, and the board's lines (agents online, jobs queued) the tests wait on.
    let log = "warn,wasmtime_wasi_http=error,sluice_startup=info,sluice::service::agents=info";
    crate::support::process::serve_with(
        dir,
        None,
        &[("SLUICE_AGENT_EU", &agent_token()), ("SLUICE_LOG", log)],
    )
}

/// A `sluice agent` process.
pub struct Agent {
    pub child: Spawned,
    pub lines: mpsc::Receiver<String>,
    pub work: PathBuf,
}

/// Waits (each line within 60 s) until the server has said every one of `needles`, in any
/// order: an agent coming online, a job queued with no agent to take it.
pub fn heard(lines: &mpsc::Receiver<String>, needles: &[&str]) {
    let mut left: Vec<&str> = needles.to_vec();
    while !left.is_empty() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("never heard {left:?}: {e}"));
        left.retain(|needle| !line.contains(needle));
    }
}

/// Follows the live log of task `ship` of `release` (attempt `attempt` of stage `prod`) until
/// a line holds `needle`: the task has done what it logs, on whichever agent runs it.
pub fn logged(api: &Api, release: &str, attempt: u32, needle: &str) {
    let path = format!(
        "/api/v1/releases/{release}/stages/prod/attempts/{attempt}/tasks/ship/log?follow=true"
    );
    let mut log = api.events("vic", &path);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = api
            .runtime
            .block_on(async { tokio::time::timeout(left, log.next()).await });
        match next {
            Ok(Ok(Some(event))) if event.data.contains(needle) => return,
            Ok(Ok(Some(_))) => {}
            other => panic!("never logged `{needle}` in {path}: {other:?}"),
        }
    }
}
