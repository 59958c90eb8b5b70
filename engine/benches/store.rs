//! Reads that must not grow with the store, printed (run with `cargo bench --bench store`):
//! with 1,000 and with 100,000 finished releases stored (and 1% as many unfinished ones; the
//! restart bench's cached stores), p50/p99 of `GET /api/v1/releases?limit=50`,
//! `GET /api/v1/approvals?status=approved` and `/metrics`, on one keep-alive connection, and
//! the server's RSS (VmRSS) once ready and after the calls. Measured once the server is ready
//! and has compiled its plugins in the background (its `sluice-warm:` line).
//!
//! Sizes: `SLUICE_BENCH_RELEASES` (the large store, default 100,000; the small one is 1,000,
//! or the large one's if that is smaller), `SLUICE_BENCH_REQUESTS` (per path, default 200).
//! A quick debug check: `SLUICE_BENCH_RELEASES=2000 SLUICE_BENCH_REQUESTS=20 cargo bench --profile dev --bench store`.
//!
//! Targets (issue #13, this 2-core machine): the two lists p99 <= 5 ms with 100,000 stored and
//! no slower than with 1,000 by more than 2x; `/metrics` <= 2 ms; RSS after the calls at most
//! 100 MiB over the server's once ready.

mod stored;

use std::time::{Duration, Instant};

use sluice::api::client::Client;
use stored::{Killed, Server, TOKEN, cached, copy, env_or, percentile, wait_line};

const PATHS: [&str; 3] = [
    "/api/v1/releases?limit=50",
    "/api/v1/approvals?status=approved",
    "/metrics",
];

fn main() {
    stored::build_if_asked();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let large = env_or("SLUICE_BENCH_RELEASES", 100_000);
    let requests = env_or("SLUICE_BENCH_REQUESTS", 200).max(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{:>8} {:<36} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "stored", "path", "p50", "p99", "bytes", "rss ready", "rss after"
    );
    let mut p99s = Vec::new();
    for finished in [large.min(1_000), large] {
        let unfinished = (finished / 100).max(1);
        let dir = copy(&cached(finished, unfinished, Killed::Quiet));
        let server = Server::start(dir.path());
        server.until_ready();
        // Once the plugins compiled in the background after start (about a second of both
        // cores; the lists' p99 is 5-8 ms while it runs): the reads measured, not the compiler.
        wait_line(&server.lines, "sluice-warm: ");
        let empty = server.rss_kib();
        let client =
            Client::new(&format!("http://{}", server.address), Some(TOKEN.into())).unwrap();
        let mut rows = Vec::new();
        for path in PATHS {
            let mut took = Vec::with_capacity(requests);
            let mut bytes = 0;
            for _ in 0..requests {
                let at = Instant::now();
                let reply = runtime.block_on(client.get(path)).unwrap();
                took.push(at.elapsed());
                assert_eq!(reply.status, 200, "{path}: {}", reply.text());
                bytes = reply.body.len();
            }
            took.sort();
            rows.push((path, percentile(&took, 50), percentile(&took, 99), bytes));
        }
        let after = server.rss_kib();
        for (path, p50, p99, bytes) in rows {
            println!(
                "{finished:>8} {path:<36} {:>7.2}ms {:>7.2}ms {bytes:>9} {:>8.1}MiB {:>8.1}MiB",
                ms(p50),
                ms(p99),
                empty as f64 / 1024.0,
                after as f64 / 1024.0
            );
            p99s.push((finished, path, p99));
        }
        drop(server);
    }
    for path in PATHS {
        let of = |n: usize| {
            p99s.iter()
                .find(|(f, p, _)| *f == n && *p == path)
                .map(|r| r.2)
        };
        if let (Some(small), Some(big)) = (of(large.min(1_000)), of(large)) {
            println!(
                "{path}: p99 {:.2} ms with {large} stored, {:.1}x the p99 with {} stored",
                ms(big),
                big.as_secs_f64() / small.as_secs_f64().max(1e-9),
                large.min(1_000)
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
