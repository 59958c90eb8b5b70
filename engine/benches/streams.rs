//! Idle event streams, printed as numbers (run with `cargo bench --bench streams`): a
//! `sluice serve` child with a long audit trail stored, this process its clients.
//!
//! 1. RSS per idle audit stream: the child's VmRSS before and after opening the streams
//!    (`/api/v1/audit?follow=true&limit=0`, one connection each, nothing to send yet).
//! 2. A steady write load (releases created at a fixed rate, each a durable commit whose
//!    entry every stream is sent) without the streams, then with them open and read:
//!    the create call's latency, p50 and p99.
//!
//! Sizes by environment, to run small: SLUICE_BENCH_ENTRIES (100000 audit entries stored),
//! SLUICE_BENCH_STREAMS (1000), SLUICE_BENCH_RATE (creates a second, 20),
//! SLUICE_BENCH_SECONDS (5).
//!
//! Targets (issue #12): <= 16 KiB RSS per idle stream with 100,000 entries stored; the write
//! p99 with the streams within 2x of the p99 without.

use std::io::BufRead as _;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::api::client::{Client, Events};
use sluice::store::Store;

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");
const RITA: &str = "bench-token-of-rita-0123456789";
const VIC: &str = "bench-token-of-vic-0123456789";

const PIPELINE: &str = r#"
version = 1
name = "w"
[[stages]]
name = "qa"
pre-approval = { approvers = ["rita"] }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

fn size(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Kills and reaps the server when the bench ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let entries = size("SLUICE_BENCH_ENTRIES", 100_000);
    let streams = size("SLUICE_BENCH_STREAMS", 1_000) as usize;
    let rate = size("SLUICE_BENCH_RATE", 20).max(1);
    let seconds = size("SLUICE_BENCH_SECONDS", 5).max(1);

    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
    std::fs::write(pipelines.join("w.toml"), PIPELINE).unwrap();
    let cap = streams + 16;
    std::fs::write(
        dir.path().join("sluice.toml"),
        format!(
            r#"
listen = "127.0.0.1:0"
data-dir = "data"
pipelines = "pipelines"
[limits]
requests-per-second = 1000000
burst = 1000000
streams = {cap}
streams-per-user = {cap}
[[users]]
name = "rita"
token-env = "SLUICE_RITA"
roles = ["releaser", "approver"]
[[users]]
name = "vic"
token-env = "SLUICE_VIC"
roles = ["viewer"]
"#
        ),
    )
    .unwrap();

    // The trail, written before the server opens the store.
    let start = Instant::now();
    Store::open(&dir.path().join("data"))
        .unwrap()
        .append_bulk(
            "bench",
            "refused 401 GET /api/v1/audit from 127.0.0.1: a stored entry of the bench",
            entries,
        )
        .unwrap();
    println!("{entries} audit entries stored in {:.1?}", start.elapsed());

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--config"])
        .arg(dir.path().join("sluice.toml"))
        .env("SLUICE_RITA", RITA)
        .env("SLUICE_VIC", VIC)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = Child(command.spawn().unwrap());
    let pid = child.0.id();
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server ended before it listened"
        );
        if let Some((_, address)) = line.trim().split_once("serving on ") {
            break address.to_owned();
        }
    };
    // The server's later lines are not read: drain them so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The write load has a thread of its own (this one, running `timed`), apart from the
    // readers' runtime: a create's latency is the server's, not the wait of the create's
    // answer behind a thousand readers in one client queue.
    let timed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rita = Client::new(&base, Some(RITA.into())).unwrap();
    let vic = Client::new(&base, Some(VIC.into())).unwrap();

    // 2a. The write load alone (it also warms the server up).
    let alone = timed.block_on(load(&rita, rate, seconds));

    // 1. The idle streams.
    let before = rss_kib(pid);
    let opened: Vec<Events> = runtime.block_on(async {
        let mut opened = Vec::with_capacity(streams);
        for _ in 0..streams {
            match vic.events("/api/v1/audit?follow=true&limit=0").await {
                Ok(events) => opened.push(events),
                Err(e) => panic!("stream {} refused: {e:?}", opened.len()),
            }
        }
        opened
    });
    let after = rss_kib(pid);
    println!(
        "{streams} idle audit streams, {entries} entries stored: server RSS {:.1} MiB -> {:.1} MiB, {:.2} KiB per stream (target <= 16 KiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / streams.max(1) as f64,
    );

    // 2b. The same load, every stream read as it is sent.
    let readers: Vec<_> = opened
        .into_iter()
        .map(|mut events| {
            runtime.spawn(async move {
                let mut n = 0usize;
                while let Ok(Some(_)) = events.next().await {
                    n += 1;
                }
                n
            })
        })
        .collect();
    let with = timed.block_on(load(&rita, rate, seconds));
    for (name, samples) in [("without the streams", &alone), ("with the streams", &with)] {
        println!(
            "{rate} creates/s for {seconds} s {name:<19}: create p50 {:.2?}, p99 {:.2?}",
            percentile(samples, 50),
            percentile(samples, 99),
        );
    }
    println!(
        "p99 with / without: {:.2}x (target <= 2x)",
        percentile(&with, 99).as_secs_f64() / percentile(&alone, 99).as_secs_f64().max(1e-9)
    );
    drop(child);
    let events: usize = runtime.block_on(async {
        let mut total = 0;
        for reader in readers {
            total += reader.await.unwrap_or(0);
        }
        total
    });
    println!("events the streams delivered during the load: {events}");
}

/// Creates `rate` releases a second for `seconds`, each when it is due; their latencies.
async fn load(rita: &Client, rate: u64, seconds: u64) -> Vec<Duration> {
    let start = tokio::time::Instant::now();
    let mut samples = Vec::new();
    for i in 0..rate * seconds {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate as f64)).await;
        let sent = Instant::now();
        let reply = rita
            .post("/api/v1/pipelines/w/releases", &json!({}))
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        samples.push(sent.elapsed());
    }
    samples.sort();
    samples
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
