//! A long sequential queue, printed as numbers (run with `cargo bench --bench queue`): releases
//! pile up on one sequential stage (the first holds it, waiting on its pre-approval) and at
//! 100, 1,000 and 10,000 queued the bench reports the engine's memory and the time a turn
//! takes to pass: from approving the holder to the next release's approval being asked for,
//! which includes the queue's decision, the holder's deployment and three durable commits.
//!
//! Target (issue #5): memory and time per queue decision stay flat as the queue grows.

use std::time::{Duration, Instant};

use sluice::scheduler::CreateOptions;
use sluice::service::{DecisionRequest, Role, config::ApiLimits};
use sluice_testing::{Local, until, user};

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");

const PIPELINE: &str = r#"
version = 1
name = "q"
[[stages]]
name = "qa"
queue = { policy = "sequential" }
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

const LEVELS: [usize; 3] = [100, 1_000, 10_000];
const HANDOVERS: usize = 20;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let alice = user("alice", &[Role::Approver], &[]);
    let local = Local::start(
        TESTKIT,
        &[("q", PIPELINE)],
        &[("alice-token-0123456789".into(), alice.clone())],
        ApiLimits::default(),
    );
    let (runtime, service) = (&local.runtime, &local.service);
    let baseline = rss_kib();
    println!(
        "engine RSS before any release: {:.1} MiB",
        baseline as f64 / 1024.0
    );

    let mut created = 0usize;
    let mut admitted = 1u64; // release number holding the stage (its approval pending)
    for level in LEVELS {
        // Pile releases up until `level` wait behind the holder.
        runtime.block_on(async {
            while created < level + admitted as usize {
                let options = CreateOptions {
                    creator: "rita".into(),
                    ..CreateOptions::default()
                };
                service.create_release("q", options, None).await.unwrap();
                created += 1;
            }
        });
        let rss = rss_kib();
        // Pass the turn HANDOVERS times, timing each.
        let mut turns = Vec::new();
        runtime.block_on(async {
            for _ in 0..HANDOVERS {
                let holder = format!("q-{admitted}.qa.1.pre");
                let next = format!("q-{}.qa.1.pre", admitted + 1);
                let mut changes = service.changes();
                let start = Instant::now();
                let decision = DecisionRequest {
                    approve: true,
                    ..DecisionRequest::default()
                };
                service
                    .decide(&holder, &alice, decision, None)
                    .await
                    .unwrap();
                let asked = until(&mut changes, Duration::from_secs(60), || {
                    service.approval(&next).is_ok()
                })
                .await;
                assert!(asked, "the next turn within 60 s");
                turns.push(start.elapsed());
                admitted += 1;
            }
        });
        turns.sort();
        println!(
            "{level:>6} queued: engine RSS {:.1} MiB (+{:.1} MiB over the empty engine, {:.2} KiB per queued release); turn handover median {:.2?}, p90 {:.2?}",
            rss as f64 / 1024.0,
            rss.saturating_sub(baseline) as f64 / 1024.0,
            rss.saturating_sub(baseline) as f64 / level as f64,
            turns[turns.len() / 2],
            turns[turns.len() * 9 / 10],
        );
    }
}
