//! What the plugin benches share: sample statistics, their printing, and this process's memory
//! figures from `/proc/self/status`.

#![allow(dead_code)] // each bench uses its own part

use std::time::Duration;

pub struct Stats {
    pub median: Duration,
    pub p99: Duration,
    pub min: Duration,
    pub n: usize,
}

pub fn sample(n: usize, mut f: impl FnMut() -> Duration) -> Stats {
    stats((0..n).map(|_| f()).collect())
}

pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        min: samples[0],
        n,
    }
}

pub fn report(name: &str, s: &Stats) {
    println!(
        "{name:<36} median {:>10.1?}  p99 {:>10.1?}  min {:>10.1?}  (n={})",
        s.median, s.p99, s.min, s.n
    );
}

/// Resident set size of this process, from `/proc/self/status`.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// One figure, in KiB, from `/proc/self/status`.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
