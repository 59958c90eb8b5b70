//! The plugin host's costs, printed as numbers (run with `cargo bench --bench host`):
//! cold compile, cached load, the full sandboxed round trip of a no-op task next to spawning
//! `/bin/true`, and the memory of 1,000 live task instances (in a fresh process that loads the
//! component from the compiled-artifact cache).
//!
//! Targets (issue #2, this 2-core machine): round trip ≤ 150 µs median and ≥ 5x cheaper than
//! the process spawn; cached load ≤ 2 ms; 1,000 live instances ≤ 128 MiB RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::plugin::{HostConfig, PluginHost, PluginRef, Sandbox};
use sluice::types::{Access, Grants, LogEvent, TaskInput};

mod timing;
use timing::{report, rss_kib, sample, stats, status_kib};

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");

/// The argument that makes this binary measure 1,000 live instances, given the cache directory.
const LIVE_INSTANCES: &str = "--live-instances";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == LIVE_INSTANCES) {
        return live_instances(args[at + 1].as_ref());
    }
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

    // 1,000 live instances, measured in a fresh process (below) that loads the component from
    // the compiled-artifact cache, as `sluice` does once a plugin has been compiled: this
    // process has already run the compiler, whose code and freed heap stay resident.
    let cached_config = HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..HostConfig::default()
    };
    PluginHost::new(cached_config.clone())
        .unwrap()
        .load(&reference)
        .unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(LIVE_INSTANCES)
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    print!("{}", String::from_utf8_lossy(&child.stdout));

    // Cold compile: a fresh engine without a cache compiles the component.
    let cold = sample(5, || {
        let host = PluginHost::new(HostConfig::default()).unwrap();
        let start = Instant::now();
        host.load(&reference).unwrap();
        start.elapsed()
    });
    report("cold compile", &cold);

    // Cached load: a fresh engine reads the compiled artifact from the disk cache.
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

/// Runs 1,000 task instances at once and prints the process's RSS while all are alive. Each task
/// logs once, then sleeps inside the sandbox; once all 1,000 have logged, every instance is
/// alive and RSS is read.
fn live_instances(cache_dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = HostConfig {
        cache_dir: Some(cache_dir.to_owned()),
        ..HostConfig::default()
    };
    let host = Arc::new(PluginHost::new(config).unwrap());
    let plugin = host.load(&PluginRef::File(TESTKIT.into())).unwrap();
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
        let during = (rss_kib(), status_kib("RssShmem:"));
        if std::env::var_os("SLUICE_BENCH_SMAPS").is_some() {
            smaps_breakdown();
        }
        for task in tasks {
            task.await.unwrap();
        }
        during
    });
    let (live, image) = live;
    println!(
        "1,000 live task instances: RSS {:.1} MiB (+{:.1} MiB over {:.1} MiB before; \
         {:.1} MiB of it the guest's data image, shared pages counted once per instance)",
        live as f64 / 1024.0,
        (live - before) as f64 / 1024.0,
        before as f64 / 1024.0,
        image as f64 / 1024.0,
    );
}

/// Resident memory by kind of mapping, from `/proc/self/smaps` (set `SLUICE_BENCH_SMAPS=1`).
fn smaps_breakdown() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut groups: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut key = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let (lo, hi) = fields[0].split_once('-').unwrap();
            let size = u64::from_str_radix(hi, 16).unwrap() - u64::from_str_radix(lo, 16).unwrap();
            let name = fields.get(5).copied().unwrap_or("[anon]");
            key = format!("{name} {}K {}", size >> 10, fields[1]);
        } else if fields.first() == Some(&"Rss:") {
            let rss: u64 = fields[1].parse().unwrap();
            let entry = groups.entry(key.clone()).or_default();
            entry.0 += rss;
            entry.1 += 1;
        }
    }
    let mut groups: Vec<_> = groups
        .into_iter()
        .filter(|(_, (rss, _))| *rss > 512)
        .collect();
    groups.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    for (key, (rss, count)) in groups.iter().take(25) {
        println!("  {rss:>8} KiB in {count:>5} mappings: {key}");
    }
}
