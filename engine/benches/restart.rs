//! Restart time, printed (run with `cargo bench --bench restart`): a store with 100,000
//! finished releases and 1,000 unfinished ones (half waiting on a pre-deployment approval,
//! half with a task running when the engine died), left as a crash leaves it, twice: killed
//! once its writes had stopped (the committer's checkpoint is the last commit, as when a
//! server is killed while its tasks run or it waits on people) and killed right after a write
//! (redb rebuilds its allocator state from every tree). Each run copies the store, starts
//! `sluice serve` on the copy and times process start -> `/readyz` 200, which the server
//! answers only once every unfinished release has recovered (its recovery committed, its
//! timers and work set going). The breakdown comes from the server's `sluice-startup:` line:
//! in-server (from `Service::start` to recovered), open (all of it), check (of that, the
//! damaged-file check), repaired (whether redb rebuilt its allocator state), host (the plugin
//! host's engine and linker), pipelines, index (the releases read for the service's views),
//! resume (finding the unfinished ones, starting their drivers), recovery (until every driver
//! recovered); what `ready` has beyond in-server is the process's own start (exec, the
//! configuration) and the probe.
//!
//! Sizes: `SLUICE_BENCH_RELEASES` (finished, default 100,000), `SLUICE_BENCH_UNFINISHED`
//! (default 1,000), `SLUICE_BENCH_RUNS` (default 5). A quick debug check:
//! `SLUICE_BENCH_RELEASES=2000 SLUICE_BENCH_UNFINISHED=20 SLUICE_BENCH_RUNS=2 cargo bench --profile dev --bench restart`.
//!
//! Target (issue #13, this 2-core machine): <= 1 s, killed while quiet.

mod stored;

use std::time::Duration;

use stored::{Killed, Server, cached, copy, env_or, median, startup_fields, wait_line};

fn main() {
    stored::build_if_asked();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let finished = env_or("SLUICE_BENCH_RELEASES", 100_000);
    let unfinished = env_or("SLUICE_BENCH_UNFINISHED", 1_000);
    let runs = env_or("SLUICE_BENCH_RUNS", 5).max(1);
    for killed in [Killed::Quiet, Killed::MidBurst] {
        restarts(finished, unfinished, runs, killed);
    }
}

/// Times `runs` starts of a copy of the store killed as `killed` says.
fn restarts(finished: usize, unfinished: usize, runs: usize, killed: Killed) {
    let cache = cached(finished, unfinished, killed);
    let size = std::fs::metadata(cache.join("data/sluice.redb")).map_or(0, |m| m.len());
    let how = match killed {
        Killed::Quiet => "killed once its writes stopped: the committer's checkpoint recorded",
        Killed::MidBurst => {
            "killed right after a write: no checkpoint, redb rebuilds its allocator state"
        }
    };
    println!(
        "restart: {finished} finished + {unfinished} unfinished releases ({:.1} MiB store, {how}), {runs} runs",
        size as f64 / (1 << 20) as f64
    );
    println!(
        "{:>4} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>8}",
        "run",
        "ready",
        "in-server",
        "open",
        "check",
        "repaired",
        "host",
        "pipelines",
        "index",
        "resume",
        "recovery",
        "resumed"
    );
    let mut totals = Vec::new();
    for run in 1..=runs {
        let dir = copy(&cache);
        let server = Server::start(dir.path());
        let ready = server.until_ready();
        let line = wait_line(&server.lines, "sluice-startup: ");
        let fields = startup_fields(&line);
        let field = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map_or("?", |(_, v)| v.as_str())
                .to_owned()
        };
        assert_eq!(field("resumed"), unfinished.to_string(), "{line}");
        assert_eq!(
            field("failed"),
            "0",
            "every unfinished release recovered: {line}"
        );
        println!(
            "{run:>4} {:>8.1}ms {:>10} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>8}",
            ready.as_secs_f64() * 1e3,
            field("total"),
            field("open"),
            field("check"),
            field("repaired"),
            field("host"),
            field("pipelines"),
            field("index"),
            field("resume"),
            field("recovery"),
            field("resumed"),
        );
        totals.push(ready);
        drop(server);
    }
    let median = median(totals);
    println!(
        "median process start -> /readyz 200: {:.1} ms (target <= 1000 ms: {})\n",
        median.as_secs_f64() * 1e3,
        if median <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
