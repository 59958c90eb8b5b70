//! What a plugin costs in each language (run with `cargo bench --bench languages`): for the
//! Rust, Python and JavaScript templates as `sluice plugin new` writes them, built by `sluice
//! plugin build` with the pinned tools (`.ci/plugin-tools` installs them into target/), the
//! component's size; the first run (compile + call, no cache) and a cached run, each in a fresh
//! process, with its wall time and peak RSS; the same two as `sluice plugin run` shows them; the
//! sandboxed round trip of a no-op task in each language; and `sluice validate` of a pipeline
//! with Python and JavaScript plugins once they are compiled.
//!
//! Targets (issue #14, this 2-core machine): cached round trip ≤ 1 ms for Rust and ≤ 30 ms for
//! Python and JS; first run of the Python template ≤ 5 s; validate ≤ 1 s once compiled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice::plugin::{Compiler, HostConfig, PluginHost, PluginRef, Sandbox, Tiering};
use sluice::types::{Access, Context, Grants, TaskInput};

mod timing;
use timing::{Stats, stats, status_kib};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// The argument that makes this binary run one plugin once: COMPONENT CACHE_DIR OUT_DIR
/// default|cranelift.
const ONE_RUN: &str = "--one-run";

const RUST_NOOP: &str = "use sluice_plugin_sdk::{Error, Report, Task, TaskInput};
struct Noop;
impl Task for Noop {
    fn run(_: TaskInput) -> Result<Report, Error> {
        Ok(Report::new())
    }
}
sluice_plugin_sdk::export_task!(Noop);
";
const PYTHON_NOOP: &str = "import sluice_plugin as sluice


def run(input):
    return sluice.Report()


Task = sluice.task(run)
";
const JS_NOOP: &str = "import { Report } from '../sluice/index.js';

export function run() {
  return new Report();
}
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == ONE_RUN) {
        return one_run(&args[at + 1], &args[at + 2], &args[at + 3], &args[at + 4]);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = install_tools(&root);
    let work = root.join("target/bench-languages");
    let _ = std::fs::remove_dir_all(work.join("projects"));
    std::fs::create_dir_all(work.join("projects")).unwrap();

    let mut noops = Vec::new();
    for (lang, noop_file, noop) in [
        ("rust", "src/lib.rs", RUST_NOOP),
        ("python", "app.py", PYTHON_NOOP),
        ("js", "src/plugin.js", JS_NOOP),
    ] {
        let template = build(&work, &tools, &format!("greet-{lang}"), lang, None);
        let noop = build(
            &work,
            &tools,
            &format!("noop-{lang}"),
            lang,
            Some((noop_file, noop)),
        );
        let size = std::fs::metadata(&template).unwrap().len();
        println!(
            "\n{lang} template: {:.2} MiB ({size} bytes)",
            size as f64 / (1 << 20) as f64
        );
        let out = work.join(format!("out-{lang}"));
        for tiering in ["default", "cranelift"] {
            let cache = work.join(format!("cache-{lang}-{tiering}"));
            let _ = std::fs::remove_dir_all(&cache);
            for run in ["first run (compile + call)", "cached run"] {
                let child = Command::new(std::env::current_exe().unwrap())
                    .args([ONE_RUN, template.to_str().unwrap()])
                    .arg(&cache)
                    .arg(&out)
                    .arg(tiering)
                    .output()
                    .unwrap();
                assert!(
                    child.status.success(),
                    "{}",
                    String::from_utf8_lossy(&child.stderr)
                );
                let label = format!("{run}, {tiering}");
                println!(
                    "  {label:<38} {}",
                    String::from_utf8_lossy(&child.stdout).trim()
                );
            }
        }
        if lang != "rust" {
            println!(
                "  {:<38} {:.2?}",
                "serve: Cranelift's code in use after",
                tier_up(&template)
            );
        }
        let data = work.join(format!("data-{lang}"));
        let _ = std::fs::remove_dir_all(&data);
        for label in ["sluice plugin run, first", "sluice plugin run, cached"] {
            let elapsed = cli_run(&template, &data, &out);
            println!("  {label:<28} wall {elapsed:.2?}");
        }
        noops.push((lang, noop));
    }

    println!();
    for (lang, noop) in &noops {
        for (compiler, tiering) in [
            ("default", HostConfig::default().tiering),
            ("cranelift", Tiering::OPTIMIZED),
        ] {
            let cache = work.join(format!("cache-noop-{lang}-{compiler}"));
            let (stats, used) = round_trip(lang, noop, &cache, tiering);
            let label = format!("{lang} no-op round trip, {}", used.name());
            println!(
                "{label:<36} median {:>9.2?}  p99 {:>9.2?}  min {:>9.2?}  (n={})",
                stats.median, stats.p99, stats.min, stats.n
            );
        }
    }
    validate(&work, &noops);
}

/// Runs `.ci/plugin-tools`; returns the folders to put first on `PATH`.
fn install_tools(root: &Path) -> Vec<PathBuf> {
    let status = Command::new("bash")
        .arg(root.join(".ci/plugin-tools"))
        .status()
        .unwrap();
    assert!(status.success(), ".ci/plugin-tools failed");
    let tools = root.join("target/plugin-tools");
    vec![tools.join("py/bin"), tools.join("js/node_modules/.bin")]
}

/// `sluice plugin new` + (an edit) + `sluice plugin build`; returns the component.
fn build(
    work: &Path,
    tools: &[PathBuf],
    name: &str,
    lang: &str,
    edit: Option<(&str, &str)>,
) -> PathBuf {
    let projects = work.join("projects");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(tools.iter().cloned().chain(std::env::split_paths(&path))).unwrap();
    let sluice = |dir: &Path, args: &[&str]| {
        let out = Command::new(SLUICE)
            .current_dir(dir)
            .args(args)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", work.join("cargo-target"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sluice(&projects, &["plugin", "new", name, "--lang", lang]);
    let dir = projects.join(name);
    if let Some((file, text)) = edit {
        std::fs::write(dir.join(file), text).unwrap();
    }
    if lang == "rust" {
        std::fs::copy(work.join("../../Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }
    sluice(&dir, &["plugin", "build"]);
    dir.join(format!("build/{name}.wasm"))
}

/// The template's call, as the engine makes it: the greeting written into `out`.
fn template_input() -> TaskInput {
    TaskInput {
        config: r#"{"name":"world","file":"/out/greeting.txt"}"#.into(),
        context: Context {
            pipeline: "bench".into(),
            release: "bench-1".into(),
            release_number: 1,
            stage: "dev".into(),
            attempt: 1,
            artifacts: Vec::new(),
            workspace: None,
        },
        variables: Vec::new(),
    }
}

/// In a fresh process: loads `component` through the cache at `cache` (compiling it when the
/// cache has none; with the default tiering or Cranelift only), runs it once, and prints the
/// wall time and this process's peak RSS.
fn one_run(component: &str, cache: &str, out: &str, tiering: &str) {
    let start = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.into()),
        tiering: match tiering {
            "cranelift" => Tiering::OPTIMIZED,
            _ => Tiering::default(),
        },
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host.load(&PluginRef::File(component.into())).unwrap();
    let loaded = start.elapsed();
    std::fs::create_dir_all(out).unwrap();
    let sandbox = Sandbox {
        grants: Grants::none()
            .dir(Path::new(out), "/out", Access::ReadWrite)
            .unwrap(),
        ..Sandbox::default()
    };
    let run = runtime.block_on(host.run_task(&plugin, sandbox, &template_input()));
    run.result.unwrap();
    println!(
        "wall {:>9.2?} (load {:.2?}, call {:.2?}, {})  peak RSS {:.1} MiB",
        start.elapsed(),
        loaded,
        run.elapsed,
        plugin.compiler().name(),
        status_kib("VmHWM:") as f64 / 1024.0
    );
}

/// How long after its load a service's host (no cache) runs Cranelift's code for `component`.
fn tier_up(component: &Path) -> Duration {
    let host = PluginHost::new(HostConfig {
        tiering: Tiering {
            tier_up: true,
            ..Tiering::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let start = Instant::now();
    let plugin = host.load(&PluginRef::File(component.to_owned())).unwrap();
    assert_eq!(plugin.compiler(), Compiler::Winch);
    assert!(plugin.wait_for_cranelift(Duration::from_secs(300)));
    start.elapsed()
}

/// `sluice plugin run` of the template with the data directory `data`; its wall time.
fn cli_run(component: &Path, data: &Path, out: &Path) -> Duration {
    let config = data.with_extension("toml");
    std::fs::write(&config, "name = \"world\"\nfile = \"/out/greeting.txt\"\n").unwrap();
    let grant = format!("{}:/out:rw", out.display());
    let start = Instant::now();
    let run = Command::new(SLUICE)
        .args(["plugin", "run", component.to_str().unwrap(), "--config"])
        .arg(&config)
        .args(["--grant-dir", &grant, "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    elapsed
}

/// The sandboxed round trip of the no-op `component` (fresh store, instantiate, call, drop),
/// compiled as `tiering` says; and the compiler whose code ran.
fn round_trip(lang: &str, component: &Path, cache: &Path, tiering: Tiering) -> (Stats, Compiler) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.to_owned()),
        tiering,
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host.load(&PluginRef::File(component.to_owned())).unwrap();
    let input = template_input();
    let (warm, n) = if lang == "rust" {
        (200, 5000)
    } else {
        (20, 300)
    };
    let samples: Vec<Duration> = runtime.block_on(async {
        let mut samples = Vec::with_capacity(n);
        for i in 0..warm + n {
            let start = Instant::now();
            let run = host.run_task(&plugin, Sandbox::default(), &input).await;
            run.result.unwrap();
            if i >= warm {
                samples.push(start.elapsed());
            }
        }
        samples
    });
    (stats(samples), plugin.compiler())
}

/// `sluice validate` of a pipeline with the Python and JS no-op tasks, twice (the first
/// compiles them into the data directory's cache).
fn validate(work: &Path, noops: &[(&str, PathBuf)]) {
    let dir = work.join("validate");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut pipeline =
        String::from("version = 1\nname = \"polyglot\"\n[[stages]]\nname = \"dev\"\n");
    for (lang, noop) in noops.iter().filter(|(lang, _)| *lang != "rust") {
        pipeline += &format!(
            "[[stages.tasks]]\nname = \"noop-{lang}\"\nplugin = \"{}\"\n",
            noop.display()
        );
    }
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    println!();
    for label in ["first", "once compiled", "once compiled, again"] {
        let start = Instant::now();
        let out = Command::new(SLUICE)
            .current_dir(&dir)
            .args(["validate", "pipeline.toml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "sluice validate (Python + JS tasks), {label:<22} wall {:.2?}",
            start.elapsed()
        );
    }
}
