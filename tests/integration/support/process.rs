//! `sluice serve` as a child process a test can SIGKILL and start again: the service
//! directory it serves, its stderr as lines, and the child killed when the test ends.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::{Api, TESTKIT, shop, token};

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test leaves
/// nothing running behind it.
pub struct Spawned(pub std::process::Child);

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards the lines of one of a child's outputs to a channel.
pub fn lines(output: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts `sluice serve` as a child process on `dir` (config and data there), paused after
/// commit `fault_after_commit` if given; returns it and its address, once it listens, and its
/// stderr lines.
pub fn serve(
    dir: &Path,
    fault_after_commit: Option<u32>,
) -> (Spawned, String, mpsc::Receiver<String>) {
    serve_with(dir, fault_after_commit, &[])
}

/// [`serve`] with `env` set too (the `SLUICE_FAULT_STORAGE` hook, say).
pub fn serve_with(
    dir: &Path,
    fault_after_commit: Option<u32>,
    env: &[(&str, &str)],
) -> (Spawned, String, mpsc::Receiver<String>) {
    let (child, address, lines, _before) = serve_logged_with(dir, fault_after_commit, env);
    (child, address, lines)
}

/// [`serve`], also returning the lines the server wrote before it listened (start-up's).
pub fn serve_logged(
    dir: &Path,
    fault_after_commit: Option<u32>,
) -> (Spawned, String, mpsc::Receiver<String>, Vec<String>) {
    serve_logged_with(dir, fault_after_commit, &[])
}

fn serve_logged_with(
    dir: &Path,
    fault_after_commit: Option<u32>,
    env: &[(&str, &str)],
) -> (Spawned, String, mpsc::Receiver<String>, Vec<String>) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--config"])
        .arg(dir.join("sluice.toml"))
        .env("SLUICE_RITA", token("rita"))
        .env("SLUICE_BOB", token("bob"))
        .env("SLUICE_VIC", token("vic"))
        .env_remove("SLUICE_FAULT_PAUSE_AFTER_COMMIT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(n) = fault_after_commit {
        command.env("SLUICE_FAULT_PAUSE_AFTER_COMMIT", n.to_string());
    }
    // The default filter, and the line that says recovery is done (`wait_ready`).
    command.env(
        "SLUICE_LOG",
        "warn,wasmtime_wasi_http=error,sluice_startup=info",
    );
    command
        .env_remove("SLUICE_FAULT_STORAGE")
        .envs(env.iter().copied());
    let mut child = Spawned(command.spawn().unwrap());
    let lines = lines(child.stderr.take().unwrap());
    let mut before = Vec::new();
    let address = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the server never listened: {e}; it said {before:#?}"));
        if let Some((_, address)) = line.split_once("serving on ") {
            break address.to_owned();
        }
        before.push(line);
    };
    (child, address, lines, before)
}

/// Waits (bounded) for a line containing `needle`.
pub fn wait_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no `{needle}` from the server: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// A directory for `sluice serve` as a process: sluice.toml (rita releaser, bob approver in
/// group approvers, vic viewer; tokens from the environment), the `shop` pipeline.
pub fn service_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
    std::fs::write(pipelines.join("shop.toml"), shop("1h")).unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        service_toml(r#"token-env = "SLUICE_RITA""#),
    )
    .unwrap();
    dir
}

/// A `sluice serve` process on `dir` that a test can SIGKILL and start again.
pub struct Process {
    dir: tempfile::TempDir,
    child: Spawned,
    api: Api,
}

impl std::ops::Deref for Process {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Process {
    pub fn start(dir: tempfile::TempDir) -> Self {
        let (child, base, _lines) = serve(dir.path(), None);
        Self {
            dir,
            child,
            api: Api {
                runtime: tokio::runtime::Runtime::new().unwrap(),
                base,
            },
        }
    }

    pub fn kill_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        let (child, base, _lines) = serve(self.dir.path(), None);
        (self.child, self.api.base) = (child, base);
    }
}

/// The sluice.toml of [`service_dir`], with `rita_token` as rita's token line (`token-env = ...`
/// or `token-sha256 = ...`).
pub fn service_toml(rita_token: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
data-dir = "data"
pipelines = "pipelines"
[[users]]
name = "rita"
{rita_token}
roles = ["releaser"]
[[users]]
name = "bob"
token-env = "SLUICE_BOB"
roles = ["approver"]
groups = ["approvers"]
[[users]]
name = "vic"
token-env = "SLUICE_VIC"
roles = ["viewer"]
"#
    )
}
