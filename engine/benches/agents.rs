//! Agents' speed, printed as numbers (run with `cargo bench --bench agents`). One service in
//! this process, served on loopback; agents are `sluice::agent::Agent`s in this process too,
//! speaking the same HTTP as `sluice agent` does.
//!
//! 1. Dispatch: an idle agent's long poll is held open; a release of one pooled no-op stage is
//!    created; the time from the create call to the poll's answer (the job, its assignment
//!    committed), and the board's own queued -> leased histogram.
//! 2. W1 (3 stages of no-op tasks) in process and with every stage on one agent.
//! 3. Scaling: 200 releases whose one task GETs a local endpoint that answers after 200 ms, on
//!    1, 2 and 4 agents with `--max-jobs 8`.
//! 4. 1,000 idle long-polling agents, simulated by a child process (this binary again) holding
//!    1,000 connections: the server's RSS growth and its CPU while they wait.
//!
//! Targets (issue #16, this 2-core machine): dispatch median <= 2 ms; W1 on one agent <= 2x in
//! process; 4 agents >= 3.5x the throughput of 1; 1,000 polls: RSS +<= 64 MiB, CPU < 2 %.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::agent::{Agent, AgentConfig};
use sluice::api::client::Client;
use sluice::core::ReleaseState;
use sluice::service::config::{ApiLimits, Pools};
use sluice::service::{Role, Service, hash_token};
use sluice::types::TaskReport;
use sluice::types::job::{Fence, Hello, Job, Step, TaskReported};
use sluice_testing::{Local, user};

const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");
const AGENT_TOKEN: &str = "bench-agent-token-0123456789";
const IDLE: usize = 1_000;

fn token(user: &str) -> String {
    format!("bench-token-of-{user}-0123456789")
}

/// `stages` no-op stages in a row, each on pool `p` when `pooled`.
fn noop_pipeline(name: &str, stages: usize, pooled: bool) -> String {
    let mut text = format!("version = 1\nname = \"{name}\"\n");
    for i in 0..stages {
        text.push_str(&format!("[[stages]]\nname = \"s{i}\"\n"));
        if i > 0 {
            text.push_str(&format!("after = [\"s{}\"]\n", i - 1));
        }
        if pooled {
            text.push_str("pool = \"p\"\n");
        }
        text.push_str(
            "[[stages.tasks]]\nplugin = \"./kit.wasm\"\nconfig = { action = \"noop\" }\n",
        );
    }
    text
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--idle") {
        return idle_polls(&args[at + 1], args[at + 2].parse().unwrap());
    }
    let slow = SlowEndpoint::start(Duration::from_millis(200));
    let wait = format!(
        "version = 1\nname = \"wait\"\n[[stages]]\nname = \"s0\"\npool = \"p\"\n[[stages.tasks]]\nplugin = \"./kit.wasm\"\nconfig = {{ action = \"http\", url = \"http://{0}/\" }}\ngrants.hosts = [\"{0}\"]\n",
        slow.address
    );
    let pipelines = [
        ("local", noop_pipeline("local", 3, false)),
        ("pooled", noop_pipeline("pooled", 3, true)),
        ("one", noop_pipeline("one", 1, true)),
        ("wait", wait),
    ];
    let pipelines: Vec<(&str, &str)> = pipelines.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let users = [(token("rita"), user("rita", &[Role::Releaser], &[]))];
    let limits = ApiLimits {
        requests_per_second: u32::MAX,
        burst: u32::MAX,
        connections: 4 * IDLE,
        ..ApiLimits::default()
    };
    let pools = Pools {
        names: vec!["p".into()],
        tokens: BTreeMap::from([(hash_token(AGENT_TOKEN), vec!["p".to_owned()])]),
        ..Pools::default()
    };
    let local = Local::start_with(TESTKIT, &pipelines, &users, limits, pools);
    let (runtime, service) = (&local.runtime, local.service.clone());
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
    let bench = Bench {
        service,
        rita: Client::new(&base, Some(token("rita"))).unwrap(),
        base: base.clone(),
        work: local.dir.path().join("agents"),
    };

    // `AGENTS_BENCH=w1,scaling` runs only those parts.
    let only = std::env::var("AGENTS_BENCH").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p == name);
    if part("dispatch") {
        runtime.block_on(bench.dispatch());
    }
    if part("w1") {
        runtime.block_on(bench.w1());
    }
    if part("scaling") {
        runtime.block_on(bench.scaling());
    }
    if part("idle") {
        bench.idle(runtime);
    }
}

struct Bench {
    service: Arc<Service>,
    rita: Client,
    base: String,
    work: std::path::PathBuf,
}

impl Bench {
    async fn create(&self, pipeline: &str) -> String {
        let reply = (self.rita)
            .post(
                &format!("/api/v1/pipelines/{pipeline}/releases"),
                &json!({}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["name"].as_str().unwrap().to_owned()
    }

    /// Waits (woken by each commit) until every release of `names` succeeded.
    async fn finished(&self, names: &[String]) {
        let mut commits = self.service.changes();
        for name in names {
            loop {
                let release = self.service.release(name).unwrap();
                if release.state.is_terminal() {
                    assert_eq!(release.state, ReleaseState::Succeeded, "{release:?}");
                    break;
                }
                tokio::time::timeout(Duration::from_secs(120), commits.changed())
                    .await
                    .expect("a release that never finished")
                    .unwrap();
            }
        }
    }

    /// `n` agents of pool `p`, named `{prefix}-i`, each running `max_jobs` at once; their
    /// caches (compiled and fetched plugins) copied from `warm`'s work directory, if given.
    fn agents(&self, prefix: &str, n: usize, max_jobs: u32, warm: Option<&str>) -> Agents {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = (0..n)
            .map(|i| {
                let name = format!("{prefix}-{i}");
                if let Some(warm) = warm {
                    copy_tree(&self.work.join(warm), &self.work.join(&name));
                }
                let agent = Agent::new(AgentConfig {
                    server: self.base.clone(),
                    ca_file: None,
                    token: AGENT_TOKEN.into(),
                    name: name.clone(),
                    pool: "p".into(),
                    capabilities: sluice::agent::system_capabilities(),
                    allow_dirs: Vec::new(),
                    work_dir: self.work.join(&name),
                    max_jobs,
                })
                .unwrap();
                let stopped = stopped.clone();
                tokio::spawn(async move { agent.run(stopped).await })
            })
            .collect();
        Agents { stop, running }
    }

    /// 1. A simulated idle agent's long poll; a release created; the poll's answer.
    async fn dispatch(&self) {
        let agent = Client::new(&self.base, Some(AGENT_TOKEN.into()))
            .unwrap()
            .with_timeout(Duration::from_secs(60));
        let hello = Hello {
            agent: "probe".into(),
            pool: "p".into(),
            capabilities: BTreeMap::new(),
            max_jobs: 1,
            running: Vec::new(),
        };
        let hello = serde_json::to_value(&hello).unwrap();
        let (mut created, mut answered, mut dispatched) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..220 {
            let poll = {
                let (agent, hello) = (agent.clone(), hello.clone());
                tokio::spawn(async move { agent.post("/api/v1/agent/jobs/next", &hello).await })
            };
            // Not synchronization: a head start for the poll to be held (idle) before the
            // job is queued, so that what is timed is an idle agent's dispatch. A poll still
            // on its way would only make the figure worse.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let start = Instant::now();
            let name = self.create("one").await;
            let created_in = start.elapsed();
            let reply = poll.await.unwrap().unwrap();
            let answered_in = start.elapsed();
            assert_eq!(reply.status, 200, "{}", reply.text());
            let job: Job = serde_json::from_slice(&reply.body).unwrap();
            run_noop_job(&agent, &job).await;
            self.finished(&[name]).await;
            if i >= 20 {
                created.push(created_in);
                answered.push(answered_in);
                dispatched.push(answered_in.saturating_sub(created_in));
            }
        }
        report("create call (release committed, its job queued)", created);
        report(
            "create call -> the idle agent's poll answered with the job",
            answered,
        );
        report(
            "dispatch: the create call answered -> the poll answered (target <= 2 ms median)",
            dispatched,
        );
        let histogram = self.service.agents().dispatch_latencies();
        let bounds = sluice::service::metrics::DISPATCH_BUCKETS;
        let shares: Vec<String> = (bounds.iter().zip(histogram.buckets).take(4))
            .map(|(b, n)| format!("<= {} ms: {n}", b * 1000.0))
            .collect();
        println!(
            "    the board's queued -> leased (assignment committed), of {}: {}; mean {:.2} ms",
            histogram.count,
            shares.join(", "),
            histogram.sum / histogram.count.max(1) as f64 * 1000.0
        );
    }

    /// 2. W1 in process, then with every stage on one agent.
    async fn w1(&self) {
        let mut medians = Vec::new();
        for pipeline in ["local", "pooled"] {
            let agents = (pipeline == "pooled").then(|| self.agents("w1", 1, 1, None));
            let mut samples = Vec::new();
            for i in 0..120 {
                let start = Instant::now();
                let name = self.create(pipeline).await;
                self.finished(&[name]).await;
                if i >= 20 {
                    samples.push(start.elapsed());
                }
            }
            medians.push(report(
                &format!("W1 ({pipeline}): create -> 3-stage no-op release complete"),
                samples,
            ));
            if let Some(agents) = agents {
                agents.stop().await;
            }
        }
        println!(
            "    W1 on one agent / in process: {:.2}x (target <= 2x)",
            medians[1].as_secs_f64() / medians[0].as_secs_f64()
        );
    }

    /// 200 releases of `wait` on 1, 2 and 4 agents of 8 jobs each, in the steady state:
    /// each agent's caches hold the plugin compiled (a cold agent compiles it once, first).
    async fn scaling(&self) {
        let warm = self.agents("warm", 1, 1, None);
        let name = self.create("wait").await;
        self.finished(&[name]).await;
        warm.stop().await;
        let mut rates = Vec::new();
        for n in [1, 2, 4] {
            let agents = self.agents(&format!("scale{n}"), n, 8, Some("warm-0"));
            // Every agent asking before the clock starts.
            let mut online = self.service.changes();
            while (self.service.agents().list().iter())
                .filter(|a| a.name.starts_with(&format!("scale{n}-")) && a.online)
                .count()
                < n
            {
                let _ = tokio::time::timeout(Duration::from_millis(50), online.changed()).await;
            }
            let start = Instant::now();
            let mut names = Vec::with_capacity(200);
            for _ in 0..200 {
                names.push(self.create("wait").await);
            }
            self.finished(&names).await;
            let took = start.elapsed();
            let rate = 200.0 / took.as_secs_f64();
            println!(
                "scaling: 200 releases of one 200 ms task on {n} agent(s) x 8 jobs: {took:.2?} = {rate:.1} releases/s (ideal {:.1})",
                (n * 8) as f64 / 0.2
            );
            rates.push(rate);
            agents.stop().await;
        }
        println!(
            "    4 agents / 1 agent: {:.2}x (target >= 3.5x); 2 / 1: {:.2}x",
            rates[2] / rates[0],
            rates[1] / rates[0]
        );
    }

    /// 4. 1,000 idle long polls from a child process: RSS growth and idle CPU of this one.
    fn idle(&self, runtime: &tokio::runtime::Runtime) {
        let before = rss_kib();
        let address = self.base.trim_start_matches("http://").to_owned();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--idle", &address, &IDLE.to_string()])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let service = self.service.clone();
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while (service.agents().list().iter())
                .filter(|a| a.name.starts_with("idle-") && a.online)
                .count()
                < IDLE
            {
                assert!(Instant::now() < deadline, "the idle agents never all asked");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let held = rss_kib();
        let (cpu_before, at) = (cpu_ticks(), Instant::now());
        std::thread::sleep(Duration::from_secs(10));
        let cpu =
            (cpu_ticks() - cpu_before) as f64 / ticks_per_second() / at.elapsed().as_secs_f64();
        println!(
            "{IDLE} idle long-polling agents: server RSS {:.1} -> {:.1} MiB (+{:.1} MiB, target <= 64); CPU while they wait {:.2} % of a core (target < 2 %)",
            before as f64 / 1024.0,
            held as f64 / 1024.0,
            (held.saturating_sub(before)) as f64 / 1024.0,
            cpu * 100.0
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Running agents and the switch that stops them.
struct Agents {
    stop: tokio::sync::watch::Sender<bool>,
    running: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Agents {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for agent in self.running {
            agent.await.unwrap().unwrap();
        }
    }
}

/// The job protocol by hand, as an agent would: each step a no-op task reported done.
async fn run_noop_job(agent: &Client, job: &Job) {
    let fence = Fence {
        agent: "probe".into(),
        epoch: job.epoch,
    };
    let path = |rest: &str| format!("/api/v1/agent/jobs/{}{rest}", job.id);
    loop {
        let reply = agent
            .post(&path("/step"), &serde_json::to_value(&fence).unwrap())
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        match serde_json::from_slice::<Step>(&reply.body).unwrap() {
            Step::Wait => continue,
            Step::Task { index, .. } => {
                let report = TaskReported {
                    fence: fence.clone(),
                    outcome: Ok(TaskReport::default()),
                    lines: 0,
                };
                let reply = agent
                    .post(
                        &path(&format!("/tasks/{index}")),
                        &serde_json::to_value(&report).unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(reply.status, 200, "{}", reply.text());
                if reply.json()["done"] == true {
                    return;
                }
            }
            other => panic!("a step the no-op job does not have: {other:?}"),
        }
    }
}

/// The child: `n` agents `idle-i`, each holding a long poll open, polling again on each end.
fn idle_polls(address: &str, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(&format!("http://{address}"), Some(AGENT_TOKEN.into()))
            .unwrap()
            .with_timeout(Duration::from_secs(90));
        let mut polls = tokio::task::JoinSet::new();
        for i in 0..n {
            let client = client.clone();
            let hello = json!({
                "agent": format!("idle-{i}"), "pool": "p", "capabilities": {}, "max-jobs": 1
            });
            polls.spawn(async move {
                loop {
                    let _ = client.post("/api/v1/agent/jobs/next", &hello).await;
                }
            });
        }
        while polls.join_next().await.is_some() {}
    });
}

/// A local endpoint answering every GET after `delay`.
struct SlowEndpoint {
    address: String,
}

impl SlowEndpoint {
    fn start(delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |_request| async move {
                            tokio::time::sleep(delay).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self { address }
    }
}

/// Copies the files under `from` into `to` (made as needed), but not `jobs/`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "jobs" {
                copy_tree(&source, &target);
            }
        } else {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let n = samples.len();
    println!(
        "{name}: median {:.2?}  p90 {:.2?}  p99 {:.2?}  min {:.2?}  (n={n})",
        samples[n / 2],
        samples[n * 90 / 100],
        samples[n * 99 / 100],
        samples[0]
    );
    samples[n / 2]
}
