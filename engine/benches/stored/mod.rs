//! The large stores the restart and store benches share: `finished` finished releases and
//! `unfinished` ones (half waiting on a pre-deployment approval, half with a task running when
//! the engine died), built once through the library — `Store::save`, many at once, so the
//! committer groups them — by a child process that then exits without closing the store (a
//! crash): either once the writes have stopped and the committer has recorded its checkpoint
//! ([`Killed::Quiet`]), or right after the last write ([`Killed::MidBurst`]). Cached under
//! `target/bench-data/restart-v<SCHEMA>.<WRITES>/...`;
//! every run works on a copy, so each starts from the same state.

#![allow(dead_code)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use sluice::core::{ApprovalKind, Authority, Event, Release, ReleaseState, TaskOutcome, apply};
use sluice::store::{SCHEMA_VERSION, Store};

/// Bumped when what a commit writes changes, so a cached store is built again (2: the committer's
/// checkpoints).
const WRITES: u32 = 2;

pub const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");
/// The viewer's token (`vic`), in the environment of the server.
pub const TOKEN: &str = "bench-token-of-vic-0123456789";

const STAGE: &str = r#"
[[stages]]
name = "build"
APPROVAL
[[stages.tasks]]
name = "step"
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

/// `done` (no approval), `gated` (alice approves before the build), `slow` (a task that is
/// not idempotent, caught running).
fn pipeline(name: &str) -> String {
    let approval = match name {
        "gated" => r#"pre-approval = { approvers = ["alice"] }"#,
        _ => "",
    };
    format!(
        "version = 1\nname = \"{name}\"\n{}",
        STAGE.replace("APPROVAL", approval)
    )
}

/// An env var as a number, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// `target/`, from this bench's own path (`target/<profile>/deps/<bench>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// When the process that wrote the store died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Killed {
    /// After its writes stopped: the committer's checkpoint is the last commit.
    Quiet,
    /// Right after its last write.
    MidBurst,
}

impl Killed {
    fn name(self) -> &'static str {
        match self {
            Killed::Quiet => "quiet",
            Killed::MidBurst => "mid-burst",
        }
    }
}

/// The cached service directory (sluice.toml, pipelines/, data/) with `finished` and
/// `unfinished` releases, built by a child process (`--build DIR F U KILLED`) if missing.
pub fn cached(finished: usize, unfinished: usize, killed: Killed) -> PathBuf {
    let dir = target_dir().join(format!(
        "bench-data/restart-v{SCHEMA_VERSION}.{WRITES}/{finished}-{unfinished}-{}",
        killed.name()
    ));
    if dir.join("built").is_file() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    eprintln!(
        "building {} ({finished} finished, {unfinished} unfinished releases) ...",
        dir.display()
    );
    let status = Command::new(std::env::current_exe().unwrap())
        .arg("--build")
        .arg(&dir)
        .args([
            finished.to_string(),
            unfinished.to_string(),
            killed.name().to_owned(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "building the store failed");
    std::fs::write(dir.join("built"), "").unwrap();
    eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
    dir
}

/// If this process was started as the builder (`--build DIR F U KILLED`), builds and exits.
pub fn build_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == "--build") else {
        return;
    };
    let dir = PathBuf::from(&args[at + 1]);
    let finished: usize = args[at + 2].parse().unwrap();
    let unfinished: usize = args[at + 3].parse().unwrap();
    let killed = match args[at + 4].as_str() {
        "quiet" => Killed::Quiet,
        _ => Killed::MidBurst,
    };
    build(&dir, finished, unfinished, killed);
    // Without closing the store: a crash, as a SIGKILL leaves it.
    std::process::exit(0);
}

fn build(dir: &Path, finished: usize, unfinished: usize, killed: Killed) {
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
    let digest = sluice::plugin::Digest::of(&std::fs::read(TESTKIT).unwrap()).to_string();
    let mut plans = Vec::new();
    for name in ["done", "gated", "slow"] {
        let file = pipelines.join(format!("{name}.toml"));
        std::fs::write(&file, pipeline(name)).unwrap();
        plans.push(
            sluice::pipeline::load(&file)
                .unwrap_or_else(|e| panic!("{e}"))
                .plan,
        );
    }
    std::fs::write(
        dir.join("sluice.toml"),
        "listen = \"127.0.0.1:0\"\ndata-dir = \"data\"\npipelines = \"pipelines\"\n\
         [limits]\nrequests-per-second = 1000000\nburst = 1000000\n\
         [[users]]\nname = \"vic\"\ntoken-env = \"SLUICE_BENCH_VIC\"\nroles = [\"viewer\"]\n",
    )
    .unwrap();
    let store = Arc::new(Store::open(&dir.join("data")).unwrap());
    // Which release each index is: finished ones alternate done / gated (approved), the
    // unfinished ones gated (waiting) / slow (running).
    let make = move |i: usize| -> Release {
        let (kind, number) = if i < finished {
            (i % 2, i / 2 + 1)
        } else {
            let u = i - finished;
            (
                if u.is_multiple_of(2) { 1 } else { 2 },
                u / 2 + 1 + finished.div_ceil(2),
            )
        };
        let plan = plans[kind].clone();
        let at = 1_700_000_000_000 + i as u64;
        let mut r = Release::new(sluice::core::NewRelease {
            plan,
            number: number as u64,
            creator: "rita".into(),
            description: None,
            artifacts: vec![],
            variables: vec![],
            digests: vec![("./kit.wasm".into(), digest.clone())],
            created_at: at,
        });
        let step = |r: &mut Release, e: Event| apply(r, e, at).unwrap_or_else(|e| panic!("{e}"));
        step(&mut r, Event::Created);
        if kind == 1 {
            if i >= finished {
                assert_eq!(
                    r.stages[0].state(),
                    sluice::core::StageState::AwaitingApproval
                );
                return r;
            }
            step(
                &mut r,
                Event::Decide {
                    stage: "build".into(),
                    attempt: 1,
                    kind: ApprovalKind::Pre,
                    by: "alice".into(),
                    groups: vec![],
                    approve: true,
                    comment: "ok".into(),
                    authority: Authority::Approver,
                    defer_until: None,
                },
            );
        }
        step(
            &mut r,
            Event::Prepared {
                stage: "build".into(),
                attempt: 1,
            },
        );
        if kind == 2 {
            return r;
        }
        step(
            &mut r,
            Event::TaskFinished {
                stage: "build".into(),
                attempt: 1,
                task: 0,
                outcome: TaskOutcome::Succeeded {
                    warnings: vec![],
                    outputs: vec![],
                },
            },
        );
        assert_eq!(r.state, ReleaseState::Succeeded, "{r:#?}");
        r
    };
    let make = Arc::new(make);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let total = finished + unfinished;
    // Enough at once to fill the committer's batches.
    const AT_ONCE: usize = 512;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for lane in 0..AT_ONCE {
            let (store, make) = (store.clone(), make.clone());
            tasks.push(tokio::spawn(async move {
                for i in (lane..total).step_by(AT_ONCE) {
                    let release = make(i);
                    store
                        .save(&release, "engine", "created", None, None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    if killed == Killed::Quiet {
        // The committer's own checkpoint, once the writes have stopped (bounded).
        let mut made = store.quiet_checkpoints();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), made.wait_for(|n| *n > 0))
                .await
                .expect("a checkpoint within 30 s")
                .expect("the committer is running");
        });
    }
    std::mem::forget(store);
}

/// Copies the cached directory `from` into a fresh temporary directory.
pub fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to.path())
        .status()
        .unwrap();
    assert!(status.success());
    // On disk before the clock starts, as a server's own file is (every commit synced it):
    // else the first fsync of the timed start writes the whole copy out.
    std::fs::File::open(to.path().join("data/sluice.redb"))
        .and_then(|f| f.sync_all())
        .unwrap();
    to
}

/// A `sluice serve` on `dir`, SIGKILLed when dropped.
pub struct Server {
    pub child: Child,
    pub address: String,
    /// Its stderr, line by line.
    pub lines: mpsc::Receiver<String>,
    /// When it was started.
    pub started: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(dir.join("sluice.toml"))
            .env("SLUICE_LOG", "warn,sluice_startup=info")
            .env("SLUICE_BENCH_VIC", TOKEN)
            .env_remove("SLUICE_FAULT_PAUSE_AFTER_COMMIT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let address = wait_line(&lines, "serving on http://")
            .split("serving on http://")
            .nth(1)
            .unwrap()
            .to_owned();
        Self {
            child,
            address,
            lines,
            started,
        }
    }

    /// Waits (bounded: 10 min) until `/readyz` answers 200; how long since the start.
    pub fn until_ready(&self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if get(&self.address, "/readyz", None).0 == 200 {
                return self.started.elapsed();
            }
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The server's resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Waits (bounded: 10 min) for a line containing `needle`.
pub fn wait_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("no `{needle}` from the server: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The `key=value` pairs of the server's `sluice-startup:` line.
pub fn startup_fields(line: &str) -> Vec<(String, String)> {
    let (_, fields) = line.split_once("sluice-startup: ").unwrap();
    fields
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One HTTP/1.1 GET on a fresh connection: the status and the body's length.
pub fn get(address: &str, path: &str, token: Option<&str>) -> (u16, usize) {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return (0, 0);
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, 0);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    (status, body)
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `samples`' value at `p` percent.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
