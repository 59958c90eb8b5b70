//! The release engine's speed, printed as numbers (run with `cargo bench --bench release`):
//! W1 — a 3-stage pipeline of no-op tasks, durable (every transition fsynced to redb), engine
//! already running — median and p99 from create to finished; then 1,000 such releases created
//! back to back and driven concurrently, as releases per second.
//!
//! Targets (issue #3, this 2-core machine): W1 ≤ 5 ms median, ≥ 500 releases/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::core::{ApprovalKind, Release, ReleaseState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Approvals, CreateOptions, Engine, Observer};
use sluice::store::Store;

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");

const PIPELINE: &str = r#"
version = 1
name = "w1"
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "kit"
config = { action = "noop" }
[[stages]]
name = "test"
after = "dev"
[[stages.tasks]]
plugin = "kit"
config = { action = "noop" }
[[stages]]
name = "staging"
after = "test"
[[stages.tasks]]
plugin = "kit"
config = { action = "noop" }
"#;

struct Quiet;
impl Observer for Quiet {}
impl Approvals for Quiet {
    fn decide(&self, _: &Release, _: &str, _: ApprovalKind) -> Option<(bool, String)> {
        None
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(TESTKIT, dir.path().join("plugins/kit.wasm")).unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), PIPELINE).unwrap();
    let data_dir = dir.path().join(".sluice");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // As a served engine has it: the release keeps its plugins in the plugin store.
    let host = Arc::new(
        PluginHost::new(HostConfig {
            store_dir: Some(data_dir.join("plugins")),
            ..HostConfig::default()
        })
        .unwrap(),
    );
    let engine = Arc::new(Engine::new(
        Store::open(&data_dir).unwrap(),
        host,
        data_dir.clone(),
    ));
    let loaded = pipeline::load(&dir.path().join("pipeline.toml")).unwrap();
    let options = CreateOptions {
        creator: "bench".into(),
        ..CreateOptions::default()
    };
    let quiet = Arc::new(Quiet);

    let one = |engine: Arc<Engine>| {
        let (loaded, options, quiet) = (loaded.clone(), options.clone(), quiet.clone());
        async move {
            let release = engine.create_release(&loaded, options, None).await.unwrap();
            let done = engine
                .drive(&release.name, quiet.clone(), quiet)
                .await
                .unwrap();
            assert_eq!(done.state, ReleaseState::Succeeded);
        }
    };

    let w1 = runtime.block_on(async {
        for _ in 0..20 {
            one(engine.clone()).await;
        }
        let mut samples = Vec::new();
        for _ in 0..300 {
            let start = Instant::now();
            one(engine.clone()).await;
            samples.push(start.elapsed());
        }
        samples
    });
    report("W1: 3-stage no-op release, end to end", w1);

    let total = runtime.block_on(async {
        let start = Instant::now();
        let mut running = Vec::with_capacity(1000);
        for _ in 0..1000 {
            running.push(tokio::spawn(one(engine.clone())));
        }
        for r in running {
            r.await.unwrap();
        }
        start.elapsed()
    });
    println!(
        "1,000 releases created back to back and driven concurrently: {:.2?} = {:.0} releases/s",
        total,
        1000.0 / total.as_secs_f64()
    );
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    println!(
        "{name}: median {:.2?}  p99 {:.2?}  min {:.2?}  (n={n})",
        samples[n / 2],
        samples[n * 99 / 100],
        samples[0]
    );
}
