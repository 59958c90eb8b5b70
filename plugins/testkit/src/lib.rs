//! Test-only plugin for Sluice's own test suite: one component whose behaviour is chosen by the
//! `action` field of its configuration. Well-behaved actions (noop, sleep, fail, warn, echo) and
//! hostile ones (escape the sandbox, exhaust a limit) live side by side so that one build serves
//! every test. A hostile action that *succeeds* returns what it obtained, so a test sees any leak.

mod bombs;
mod floods;
mod secrets;

use std::hint::black_box;
use std::time::Duration;

use serde::Deserialize;
use sluice_plugin_sdk::{Error, Gate, Health, Report, Task, TaskInput, log};

mod terminal;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
enum Action {
    /// Do nothing and succeed.
    Noop,
    /// Sleep (inside a host call) for `ms` milliseconds, then succeed.
    Sleep { ms: u64 },
    /// Report a plugin error.
    Fail { message: String },
    /// Succeed with issues.
    Warn { warning: String },
    /// Panic with `message`.
    Panic { message: String },
    /// Echo the context and variables back as outputs.
    Echo,
    /// Log `count` lines of `size` bytes (a log flood when large).
    Log { count: u64, size: usize },
    /// Print `count` lines of `size` bytes to stdout (a flood through stdio when large).
    Print { count: u64, size: usize },
    /// Execute `unreachable`: a trap that is not a panic.
    Trap,
    /// Append `line` to the file at `path` (counting real runs), then stay busy `sleep_ms`: a
    /// slow deployment step, for tests that kill the engine mid-task. Tests synchronize on the
    /// task's "appended" log line, never on this duration.
    Append {
        path: String,
        line: String,
        #[serde(default)]
        sleep_ms: u64,
    },
    /// Log a line, GET `url` (the test's server answers when the test lets the task go; the
    /// guest waits inside the request, the task's timeout bounds it), log another: a step
    /// whose end the test decides, for following a log while the task runs.
    Hold { url: String },
    /// Read the file at `path` and return its content as output `content`.
    Read { path: String },
    /// Write `content` to `path`.
    Write { path: String, content: String },
    /// List the directory at `path`.
    List { path: String },
    /// Read environment variable `name` and return it as output `value`.
    Env { name: String },
    /// GET `url` through wasi:http; succeed with the status as output `status`.
    Http { url: String },
    /// Open a TCP connection to `addr` through wasi:sockets.
    Connect { addr: String },
    /// Loop forever.
    Spin,
    /// Allocate (and touch) `mib` MiB, 1 MiB at a time.
    Alloc { mib: u64 },
    /// Recurse without bound.
    Recurse,
    /// Return an output of `mib` MiB.
    HugeOutput { mib: usize },
    /// Write terminal controls and a forged engine line everywhere (see `terminal.rs`).
    Terminal {
        #[serde(default)]
        fail: bool,
    },
    /// Hold `count` wasi:http `fields` objects on the host, each padded with `bytes`.
    Fields { count: u64, bytes: usize },
    /// Create the symbolic link `link` -> `target` in the granted directory `dir`.
    Symlink {
        dir: String,
        target: String,
        link: String,
    },
    /// Log the content of the file at `path`, then return it as the secret output `name`.
    SecretOutput { name: String, path: String },
    /// Fail unless variable `name` is secret and holds the content of the file at `path`
    /// (never printing what it holds).
    ExpectSecret { name: String, path: String },
    /// Log `count` empty lines.
    EmptyLines { count: u64 },
    /// Log `lines` lines of `fields` empty fields each.
    EmptyFields { lines: u64, fields: usize },
    /// Report progress `count` times with an empty message.
    Progress { count: u64 },
    /// Print `count` lines of `size` bytes, ignoring write errors, and succeed.
    StdoutIgnoringErrors { count: u64, size: usize },
    /// Return `outputs` empty outputs and `warnings` empty warnings.
    EmptyItems { outputs: u64, warnings: u64 },
    /// Log `message` with `fields`, print `text` in `chunk`-byte writes, return `output`.
    Say {
        message: String,
        #[serde(default)]
        fields: Vec<(String, String)>,
        #[serde(default)]
        output: Option<(String, String)>,
        #[serde(default)]
        text: String,
        #[serde(default)]
        chunk: usize,
    },
    /// Exit through WASI with `status`.
    Exit { status: i32 },
    /// Pass the log import a message that is not UTF-8.
    BadUtf8,
}

struct Testkit;

impl Task for Testkit {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let action: Action = input.config.parse()?;
        match action {
            Action::Noop => Ok(Report::new()),
            Action::Sleep { ms } => {
                log::debug("sleeping");
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Report::new())
            }
            Action::Fail { message } => Err(Error::failed(message)),
            Action::Warn { warning } => Ok(Report::new().warn(warning)),
            Action::Panic { message } => panic!("{message}"),
            Action::Echo => {
                let ctx = &input.context;
                let mut report = Report::new()
                    .output("pipeline", &ctx.pipeline)
                    .output("release", &ctx.release)
                    .output("stage", &ctx.stage)
                    .output("attempt", ctx.attempt.to_string());
                for var in input.variables.iter() {
                    log::info(format!("{} is {}", var.name, var.value));
                    report = report.output(format!("var.{}", var.name), &var.value);
                }
                Ok(report)
            }
            Action::Log { count, size } => {
                let line = "x".repeat(size);
                for i in 0..count {
                    log::write(log::Level::Info, &line, &[("line", &i.to_string())]);
                }
                Ok(Report::new())
            }
            Action::Print { count, size } => {
                let line = "p".repeat(size);
                for _ in 0..count {
                    println!("{line}");
                }
                Ok(Report::new())
            }
            Action::Trap => trap(),
            Action::Append {
                path,
                line,
                sleep_ms,
            } => {
                use std::io::Write as _;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| writeln!(f, "{line}"))
                    .map_err(|e| Error::failed(format!("cannot append to {path}: {e}")))?;
                log::info(format!("appended {line}"));
                std::thread::sleep(Duration::from_millis(sleep_ms));
                Ok(Report::new().output("appended", line))
            }
            Action::Hold { url } => {
                log::info(format!("waiting for {url}"));
                let response = sluice_plugin_sdk::http::get(&url)
                    .map_err(|e| Error::failed(format!("request to {url} failed: {e}")))?;
                log::info(format!("released by {url} ({})", response.status));
                Ok(Report::new())
            }
            Action::Read { path } => std::fs::read_to_string(&path)
                .map(|content| Report::new().output("content", content))
                .map_err(|e| Error::failed(format!("cannot read {path}: {e}"))),
            Action::Write { path, content } => std::fs::write(&path, content)
                .map(|()| Report::new())
                .map_err(|e| Error::failed(format!("cannot write {path}: {e}"))),
            Action::List { path } => std::fs::read_dir(&path)
                .and_then(|entries| {
                    entries
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .map(|names| Report::new().output("entries", names.join(",")))
                .map_err(|e| Error::failed(format!("cannot list {path}: {e}"))),
            Action::Env { name } => std::env::var(&name)
                .map(|value| Report::new().output("value", value))
                .map_err(|e| {
                    Error::failed(format!("cannot read environment variable {name}: {e}"))
                }),
            Action::Http { url } => sluice_plugin_sdk::http::get(&url)
                .map(|response| Report::new().output("status", response.status.to_string()))
                .map_err(|e| Error::failed(format!("request to {url} failed: {e}"))),
            Action::Connect { addr } => std::net::TcpStream::connect(&addr)
                .map(|_| Report::new().output("connected", addr.clone()))
                .map_err(|e| Error::failed(format!("cannot connect to {addr}: {e}"))),
            Action::Spin => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Action::Alloc { mib } => {
                let mut blocks = Vec::new();
                for _ in 0..mib {
                    blocks.push(black_box(vec![1u8; 1 << 20]));
                }
                Ok(Report::new().output("allocated", blocks.len().to_string()))
            }
            Action::Recurse => Ok(Report::new().output("depth", recurse(u64::MAX).to_string())),
            Action::HugeOutput { mib } => Ok(Report::new().output("huge", "y".repeat(mib << 20))),
            Action::Terminal { fail } => terminal::run(fail),
            Action::Fields { count, bytes } => bombs::fields(count, bytes),
            Action::Symlink { dir, target, link } => bombs::symlink(&dir, &target, &link),
            Action::SecretOutput { name, path } => secrets::mint(&name, &path),
            Action::ExpectSecret { name, path } => secrets::expect(&input, &name, &path),
            Action::EmptyLines { count } => floods::empty_lines(count),
            Action::EmptyFields { lines, fields } => floods::empty_fields(lines, fields),
            Action::Progress { count } => floods::progress(count),
            Action::StdoutIgnoringErrors { count, size } => {
                floods::stdout_ignoring_errors(count, size)
            }
            Action::EmptyItems { outputs, warnings } => floods::empty_items(outputs, warnings),
            Action::Say {
                message,
                fields,
                output,
                text,
                chunk,
            } => floods::say(&message, &fields, output, &text, chunk),
            Action::Exit { status } => floods::exit(status),
            Action::BadUtf8 => floods::bad_utf8(),
        }
    }
}

impl Gate for Testkit {
    fn evaluate(input: TaskInput) -> Result<Health, Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct GateConfig {
            healthy: bool,
            /// Healthy only while this file exists (where the gate runs).
            #[serde(default)]
            file: Option<String>,
        }
        let config: GateConfig = input.config.parse()?;
        Ok(match config.file {
            _ if !config.healthy => Health::Unhealthy("the test said so".into()),
            Some(file) if !std::path::Path::new(&file).exists() => {
                Health::Unhealthy(format!("{file} does not exist"))
            }
            _ => Health::Healthy,
        })
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    unreachable!("the testkit traps only as WebAssembly")
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if black_box(n) == 0 {
        0
    } else {
        1 + recurse(black_box(n - 1))
    }
}

sluice_plugin_sdk::export_task!(Testkit);
sluice_plugin_sdk::export_gate!(Testkit);
