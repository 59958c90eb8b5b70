//! The plugin host's costs, printed as numbers (run with `cargo bench --bench host`):
//! cold compile, cached load, the full sandboxed round trip of a no-op task next to spawning
//! `/bin/true`, and the memory of 1,000 live task instances.
//!
//! Targets (issue #2, this 2-core machine): round trip ≤ 150 µs median and ≥ 5x cheaper than
//! the process spawn; cached load ≤ 2 ms; 1,000 live instances ≤ 128 MiB RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::plugin::{
    Access, Grants, HostConfig, LogEvent, PluginHost, PluginRef, Sandbox, TaskInput,
};

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let reference = PluginRef::File(TESTKIT.into());
    let bytes = std::fs::read(TESTKIT).unwrap();
    println!("component: testkit, {} bytes", bytes.len());

    let host = Arc::new(PluginHost::new(HostConfig::default()).unwrap());
    let plugin = host.load(&reference).unwrap();

    // 1,000 live instances: each task logs once, then sleeps inside the sandbox; once all
    // 1,000 have logged, every instance is alive at once and RSS is read.
    let before = rss_kib();
    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(tokio::sync::Notify::new());
    let live = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (host, plugin, started) = (host.clone(), plugin.clone(), started.clone());
            let all_started = all_started.clone();
            tasks.push(tokio::spawn(async move {
                let sandbox = Sandbox {
                    grants: Grants::none(),
                    sink: Some(Arc::new(move |_: &LogEvent| {
                        if started.fetch_add(1, Ordering::SeqCst) + 1 == 1000 {
                            all_started.notify_one();
                        }
                    })),
                    ..Sandbox::default()
                };
                let input = TaskInput {
                    config: r#"{"action":"sleep","ms":3000}"#.into(),
                    ..TaskInput::default()
                };
                host.run_task(&plugin, sandbox, &input)
                    .await
                    .result
                    .unwrap();
            }));
        }
        // `notify_one` stores a permit, so a notification before this await is not lost.
        tokio::time::timeout(Duration::from_secs(60), all_started.notified())
            .await
            .expect("1,000 instances did not start within 60 s");
        let during = rss_kib();
        for task in tasks {
            task.await.unwrap();
        }
        during
    });
    println!(
        "1,000 live task instances: RSS {:.1} MiB (+{:.1} MiB over {:.1} MiB before)",
        live as f64 / 1024.0,
        (live - before) as f64 / 1024.0,
        before as f64 / 1024.0
    );

    // Cold compile: a fresh engine without a cache compiles the component.
    let cold = sample(5, || {
        let host = PluginHost::new(HostConfig::default()).unwrap();
        let start = Instant::now();
        host.load(&reference).unwrap();
        start.elapsed()
    });
    report("cold compile", &cold);

    // Cached load: a fresh engine reads the compiled artifact from the disk cache.
    let cached_config = HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..HostConfig::default()
    };
    PluginHost::new(cached_config.clone())
        .unwrap()
        .load(&reference)
        .unwrap();
    let cached = sample(20, || {
        let host = PluginHost::new(cached_config.clone()).unwrap();
        let start = Instant::now();
        host.load(&reference).unwrap();
        start.elapsed()
    });
    report("cached load", &cached);

    // Round trip: fresh grants + store + instantiate + call + drop, for a no-op task.
    let input = TaskInput {
        config: r#"{"action":"noop"}"#.into(),
        ..TaskInput::default()
    };
    let grants = || {
        Grants::none()
            .dir(workspace.path(), "/workspace", Access::ReadWrite)
            .unwrap()
            .env("STAGE", "dev")
    };
    let round_trip = runtime.block_on(async {
        for _ in 0..200 {
            let sandbox = Sandbox {
                grants: grants(),
                ..Sandbox::default()
            };
            host.run_task(&plugin, sandbox, &input)
                .await
                .result
                .unwrap();
        }
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let start = Instant::now();
            let sandbox = Sandbox {
                grants: grants(),
                ..Sandbox::default()
            };
            host.run_task(&plugin, sandbox, &input)
                .await
                .result
                .unwrap();
            samples.push(start.elapsed());
        }
        samples
    });
    let round_trip = stats(round_trip);
    report("sandboxed round trip (no-op task)", &round_trip);

    let spawn = stats(
        (0..500)
            .map(|_| {
                let start = Instant::now();
                let status = std::process::Command::new("/bin/true").status().unwrap();
                assert!(status.success());
                start.elapsed()
            })
            .collect(),
    );
    report("spawn /bin/true", &spawn);
    println!(
        "round trip is {:.1}x cheaper than spawning /bin/true (median)",
        spawn.median.as_secs_f64() / round_trip.median.as_secs_f64()
    );
}

struct Stats {
    median: Duration,
    p99: Duration,
    min: Duration,
    n: usize,
}

fn sample(n: usize, mut f: impl FnMut() -> Duration) -> Stats {
    stats((0..n).map(|_| f()).collect())
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        min: samples[0],
        n,
    }
}

fn report(name: &str, s: &Stats) {
    println!(
        "{name:<36} median {:>10.1?}  p99 {:>10.1?}  min {:>10.1?}  (n={})",
        s.median, s.p99, s.min, s.n
    );
}

/// Resident set size of this process, from `/proc/self/status`.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
