//! A long sequential queue, printed as numbers (run with `cargo bench --bench queue`): releases
//! pile up on one sequential stage (the first holds it, waiting on its pre-approval) and at
//! 100, 1,000 and 10,000 queued the bench reports the engine's memory and the time a turn
//! takes to pass: from approving the holder to the next release's approval being asked for,
//! which includes the queue's decision, the holder's deployment and three durable commits.
//!
//! Target (issue #5): memory and time per queue decision stay flat as the queue grows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::scheduler::CreateOptions;
use sluice::service::{
    DecisionRequest, Role, Service, ServiceConfig, User, config::ApiLimits, hash_token,
};

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
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
    std::fs::write(pipelines.join("q.toml"), PIPELINE).unwrap();
    let alice = User {
        name: "alice".into(),
        roles: vec![Role::Approver],
        groups: Vec::new(),
    };
    let config = ServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        pipelines,
        tokens: BTreeMap::from([(hash_token("alice-token-0123456789"), alice.clone())]),
        limits: ApiLimits::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service: Arc<Service> = runtime.block_on(async { Service::start(config).unwrap() });
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
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while service.approval(&next).is_err() {
                    tokio::time::timeout_at(deadline, changes.changed())
                        .await
                        .expect("the next turn within 60 s")
                        .unwrap();
                }
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
