//! Plugin authoring in Rust, Python and JavaScript (issue #14), as an author does it: `sluice
//! plugin new`, the language's own test runner, `sluice plugin build` with the real tools
//! (componentize-py and componentize-js, installed pinned into target/plugin-tools by
//! `.ci/plugin-tools`), then `sluice plugin run` and pipelines.
//!
//! Every component is built once per test run, by the first test that needs it (a build takes
//! 10–40 s), in a directory of its own under the target's temporary directory.

mod failures;
mod languages;
mod pipelines;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::said;

/// The folder of every project of this run (emptied once, at first use).
fn work() -> &'static Path {
    static WORK: OnceLock<PathBuf> = OnceLock::new();
    WORK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// The folders holding componentize-py, pytest's Python and componentize-js, installed by
/// `.ci/plugin-tools` (run once per test run; it does nothing when they are there).
fn tools() -> &'static [PathBuf] {
    static TOOLS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let install = Command::new("bash")
            .arg(root.join(".ci/plugin-tools"))
            .output()
            .expect("bash runs .ci/plugin-tools");
        assert!(
            install.status.success(),
            ".ci/plugin-tools failed: {}",
            said(&install)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let tools = target.join("plugin-tools");
        vec![tools.join("py/bin"), tools.join("js/node_modules/.bin")]
    })
}

/// `PATH` with the plugin tools first.
fn path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(tools().iter().cloned().chain(std::env::split_paths(&path))).unwrap()
}

/// A command run in `dir` with the plugin tools on `PATH`, and Rust projects building into one
/// target directory of this test run's own.
fn command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env("PATH", path())
        .env("CARGO_TARGET_DIR", work().join("cargo-target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

/// Runs `sluice ARGS` in `dir`; its data directory is `dir/.sluice`.
fn sluice(dir: &Path, args: &[&str]) -> Output {
    sluice_in(dir).args(args).output().expect("sluice runs")
}

/// `sluice` in `dir`, with its data directory there.
fn sluice_in(dir: &Path) -> Command {
    let mut sluice = command(env!("CARGO_BIN_EXE_sluice"), dir);
    sluice.env("SLUICE_DATA_DIR", dir.join(".sluice"));
    sluice
}

/// Runs `cmd` and asserts it succeeded; returns what it printed.
fn ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    assert!(out.status.success(), "{what} failed: {}", said(&out));
    said(&out)
}

/// `sluice plugin new NAME --lang LANG --kind KIND` in the work folder, then `edit` applied
/// to its files (path, new text). Returns the project's directory.
fn new_project(name: &str, lang: &str, kind: &str, edit: &[(&str, &str)]) -> PathBuf {
    let made = sluice(
        work(),
        &["plugin", "new", name, "--lang", lang, "--kind", kind],
    );
    assert!(made.status.success(), "plugin new: {}", said(&made));
    let dir = work().join(name);
    for (path, text) in edit {
        std::fs::write(dir.join(path), text).unwrap();
    }
    if lang == "rust" {
        // The workspace's lock: the same crate versions as the built-in plugins, no new resolution.
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
        std::fs::copy(lock, dir.join("Cargo.lock")).unwrap();
    }
    dir
}

/// A project built by `sluice plugin build`.
pub struct Built {
    pub dir: PathBuf,
    pub component: PathBuf,
}

/// `new_project`, then `sluice plugin build` in it. One build at a time: componentize-py and
/// componentize-js, and compiling what they make, each take both cores for seconds, and the
/// other tests of this binary (servers waiting for a line, with a bound) share the machine.
fn build(name: &str, lang: &str, kind: &str, edit: &[(&str, &str)]) -> Built {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = new_project(name, lang, kind, edit);
    let build = sluice(&dir, &["plugin", "build"]);
    assert!(
        build.status.success(),
        "plugin build of {name}: {}",
        said(&build)
    );
    let component = dir.join(format!("build/{name}.wasm"));
    assert!(component.is_file(), "{name}: no {}", component.display());
    // Compiled once into the project's cache (as any run compiles it: Winch's code for Python
    // and JavaScript), so the tests running it at once do not each compile it.
    let inspect = sluice(&dir, &["plugin", "inspect", component.to_str().unwrap()]);
    assert!(
        inspect.status.success(),
        "plugin inspect of {name}: {}",
        said(&inspect)
    );
    Built { dir, component }
}

/// The projects the tests share, each built once per run by the first test that asks.
macro_rules! shared {
    ($($(#[$doc:meta])* $fn:ident = ($name:literal, $lang:literal, $kind:literal, $edit:expr);)*) => {$(
        $(#[$doc])*
        fn $fn() -> &'static Built {
            static BUILT: OnceLock<Built> = OnceLock::new();
            BUILT.get_or_init(|| build($name, $lang, $kind, $edit))
        }
    )*};
}

shared! {
    /// The Python task template, as `plugin new` writes it.
    python_task = ("greet-py", "python", "task", &[]);
    /// The JavaScript task template.
    js_task = ("greet-js", "js", "task", &[]);
    /// The Rust task template.
    rust_task = ("greet-rs", "rust", "task", &[]);
    /// The Python gate template.
    python_gate = ("gate-py", "python", "gate", &[]);
    /// The JavaScript artifact-source template.
    js_source = ("source-js", "js", "artifact-source", &[]);
    /// A Python task whose config says what to try (`PY_PROBE`).
    python_probe = ("probe-py", "python", "task", &[("app.py", PY_PROBE)]);
    /// The same in JavaScript (`JS_PROBE`), in a file called `index.js` like the helpers' own.
    js_probe = (
        "probe-js",
        "js",
        "task",
        &[
            ("src/plugin.js", "export { run } from './index.js';\n"),
            ("src/index.js", JS_PROBE)
        ]
    );
}

/// A task that does what `mode` says, written with the Python helpers.
const PY_PROBE: &str = r#"import sys

import sluice_plugin as sluice


def run(input):
    config = input.config
    mode = config.string("mode")
    if mode == "emit":
        return sluice.Report().output("message", config.string("text"))
    if mode == "write":
        sluice.files.write_text(config.string("path"), config.string("text"))
        return sluice.Report()
    if mode == "read":
        return sluice.Report().output("text", sluice.files.read_text(config.string("path")))
    if mode == "env":
        return sluice.Report().output("value", sluice.env.require(config.string("name")))
    if mode == "http":
        response = sluice.http.get(config.string("url"))
        return sluice.Report().output("status", response.status).output("body", response.text())
    if mode == "raise":
        return {}["missing"]
    if mode == "exit":
        sys.exit(3)
    raise sluice.InvalidConfig(f"unknown mode {mode!r}")


Task = sluice.task(run)
"#;

/// The same task, written with the JavaScript helpers.
const JS_PROBE: &str = r#"import { InvalidConfig, Report, env, files, http } from '../sluice/index.js';

export function run({ config }) {
  const mode = config.string('mode');
  if (mode === 'emit') return new Report().output('message', config.string('text'));
  if (mode === 'write') {
    files.writeText(config.string('path'), config.string('text'));
    return new Report();
  }
  if (mode === 'read') return new Report().output('text', files.readText(config.string('path')));
  if (mode === 'env') return new Report().output('value', env.require(config.string('name')));
  if (mode === 'http') {
    const response = http.get(config.string('url'));
    return new Report().output('status', response.status).output('body', response.text());
  }
  if (mode === 'throw') throw new TypeError('the probe was told to throw');
  throw new InvalidConfig(`unknown mode ${mode}`);
}
"#;

/// `sluice plugin run COMPONENT --config (a file holding `config`) ARGS` in `dir`.
fn run_plugin(dir: &Path, component: &Path, config: &str, args: &[&str]) -> Output {
    let file = dir.join(format!("config-{}.toml", unique()));
    std::fs::write(&file, config).unwrap();
    let mut all = vec![
        "plugin",
        "run",
        component.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    sluice(dir, &all)
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}
