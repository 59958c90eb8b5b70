//! Service mode's speed, printed as numbers (run with `cargo bench --bench api`):
//!
//! 1. `GET /api/v1/approvals` (pending ones) under load from a separate process on loopback:
//!    this binary re-executes itself as the load generator, with keep-alive connections sending
//!    requests back to back; it prints throughput and latency percentiles.
//! 2. W2: from the approve call to release complete, for a 3-stage no-op pipeline whose first
//!    stage waits on a pre-approval; every transition durable (fsynced to redb).
//!
//! Targets (issue #4, this 2-core machine): >= 20,000 req/s with p99 <= 5 ms; W2 <= 3 ms median.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sluice::api::client::Client;
use sluice::service::{Role, User, config::ApiLimits};
use sluice_testing::{Local, user};

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");

const PIPELINE: &str = r#"
version = 1
name = "w2"
[[stages]]
name = "dev"
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
[[stages]]
name = "test"
after = ["dev"]
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
[[stages]]
name = "staging"
after = ["test"]
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

/// Releases left waiting on their approval while the load runs.
const PENDING: usize = 20;
const LOAD_SECONDS: u64 = 5;
const PATH: &str = "/api/v1/approvals?status=pending";

fn token(user: &str) -> String {
    format!("bench-token-of-{user}-0123456789")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--load") {
        return load(&args[at + 1..]);
    }
    let users: Vec<(String, User)> = [
        ("rita", Role::Releaser),
        ("alice", Role::Approver),
        ("vic", Role::Viewer),
    ]
    .into_iter()
    .map(|(name, role)| (token(name), user(name, &[role], &[])))
    .collect();
    // The rate limit is not what is measured here.
    let limits = ApiLimits {
        requests_per_second: u32::MAX,
        burst: u32::MAX,
        ..ApiLimits::default()
    };
    let Local {
        dir: _dir,
        runtime,
        service,
    } = Local::start(TESTKIT, &[("w2", PIPELINE)], &users, limits);
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(sluice::api::serve(
            listener,
            service.clone(),
            std::future::pending(),
        ));
        base
    });
    let rita = Client::new(&base, Some(token("rita"))).unwrap();
    let alice = Client::new(&base, Some(token("alice"))).unwrap();
    let create = || async {
        let reply = rita
            .post("/api/v1/pipelines/w2/releases", &json!({}))
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["name"].as_str().unwrap().to_owned()
    };

    // 1. The load, from another process.
    runtime.block_on(async {
        for _ in 0..PENDING {
            create().await;
        }
    });
    assert_eq!(service.pending_approvals().len(), PENDING);
    let body = runtime
        .block_on(Client::new(&base, Some(token("vic"))).unwrap().get(PATH))
        .unwrap();
    println!(
        "GET {PATH}: {PENDING} pending approvals, {} bytes per response, {LOAD_SECONDS} s per run",
        body.body.len()
    );
    let address = base.trim_start_matches("http://");
    for connections in [2, 4, 8] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--load",
                address,
                &token("vic"),
                &LOAD_SECONDS.to_string(),
                &connections.to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "the load generator failed");
    }

    // 2. W2.
    let (answered, samples) = runtime.block_on(async {
        let (mut answered, mut samples) = (Vec::new(), Vec::new());
        for i in 0..210 {
            let name = create().await;
            let mut commits = service.store().audit_len();
            let start = Instant::now();
            let reply = alice
                .post(
                    &format!("/api/v1/approvals/{name}.dev.1.pre/approve"),
                    &json!({}),
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
            let approved = start.elapsed();
            // Woken by each commit, not polling.
            loop {
                let release = service.release(&name).unwrap();
                if release.state.is_terminal() {
                    assert_eq!(
                        release.state,
                        sluice::core::ReleaseState::Succeeded,
                        "{release:?}"
                    );
                    break;
                }
                commits.changed().await.unwrap();
            }
            if i >= 10 {
                samples.push(start.elapsed());
                answered.push(approved);
            }
        }
        (answered, samples)
    });
    report(
        "    of which the approve call, answered once its commit is durable",
        answered,
    );
    report(
        "W2: approve call -> 3-stage no-op release complete (target <= 3 ms median)",
        samples,
    );
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    println!(
        "{name}: median {:.2?}  p90 {:.2?}  p99 {:.2?}  min {:.2?}  (n={n})",
        samples[n / 2],
        samples[n * 90 / 100],
        samples[n * 99 / 100],
        samples[0]
    );
}

/// The load generator: `--load ADDRESS TOKEN SECONDS CONNECTIONS`.
fn load(args: &[String]) {
    let [address, token, seconds, connections] = args else {
        panic!("usage: --load ADDRESS TOKEN SECONDS CONNECTIONS");
    };
    let seconds: u64 = seconds.parse().unwrap();
    let connections: usize = connections.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (latencies, failures) = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut workers = Vec::new();
        for _ in 0..connections {
            let (address, token) = (address.clone(), format!("Bearer {token}"));
            workers.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let request = hyper::Request::get(PATH)
                        .header("host", &address)
                        .header("authorization", &token)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let start = Instant::now();
                    let response = sender.send_request(request).await.unwrap();
                    let ok = response.status() == 200;
                    response.into_body().collect().await.unwrap();
                    latencies.push(start.elapsed());
                    failures += u64::from(!ok);
                }
                (latencies, failures)
            }));
        }
        let mut all = Vec::new();
        let mut failures = 0;
        for worker in workers {
            let (latencies, failed) = worker.await.unwrap();
            all.extend(latencies);
            failures += failed;
        }
        (all, failures)
    });
    assert_eq!(failures, 0, "responses other than 200");
    let n = latencies.len();
    let mut sorted = latencies;
    sorted.sort();
    println!(
        "  {connections} connections: {n} requests = {:.0} req/s  p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}  (target >= 20,000 req/s, p99 <= 5 ms)",
        n as f64 / seconds as f64,
        sorted[n / 2],
        sorted[n * 90 / 100],
        sorted[n * 99 / 100],
        sorted[n - 1]
    );
}
