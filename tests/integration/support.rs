//! Shared test helpers: one plugin host for the whole binary, the test plugins, a tiny HTTP
//! server on 127.0.0.1, and condition waits.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice::plugin::{HostConfig, Plugin, PluginHost, PluginRef, Sandbox};
use sluice::service::{
    DecisionRequest, Role, Service, ServiceConfig, User, config::ApiLimits, hash_token,
};
use sluice::types::{Context, Invocation, Limits, TaskInput, TaskReport};

pub const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");
pub const TEMPLATE: &str = env!("SLUICE_PLUGIN_TEMPLATE");

/// One host for every test: compiling a component once is the point of `InstancePre`.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(HostConfig::default()).expect("the host starts"))
}

pub fn load(reference: &str) -> Arc<Plugin> {
    host()
        .load(&PluginRef::parse(reference, std::path::Path::new("/")))
        .unwrap_or_else(|e| panic!("loading {reference}: {e}"))
}

pub fn testkit() -> Arc<Plugin> {
    load(TESTKIT)
}

/// A context like the one a release gives.
pub fn context() -> Context {
    Context {
        pipeline: "space-game".into(),
        release: "space-game-7".into(),
        release_number: 7,
        stage: "dev".into(),
        attempt: 1,
        artifacts: Vec::new(),
        workspace: None,
    }
}

pub fn input(config: serde_json::Value) -> TaskInput {
    TaskInput {
        config: config.to_string(),
        context: context(),
        variables: Vec::new(),
    }
}

/// Runs the testkit as a task with `config` in `sandbox`.
pub async fn run_testkit(config: serde_json::Value, sandbox: Sandbox) -> Invocation<TaskReport> {
    host().run_task(&testkit(), sandbox, &input(config)).await
}

/// A sandbox with no grants and tight limits, so hostile tests finish quickly.
pub fn tight() -> Sandbox {
    Sandbox {
        limits: Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(20),
            log: 256 << 10,
            output: 256 << 10,
        },
        ..Sandbox::default()
    }
}

/// The output variable `name` of a report.
pub fn output<'a>(report: &'a TaskReport, name: &str) -> Option<&'a str> {
    report
        .outputs
        .iter()
        .find(|o| o.name == name)
        .map(|o| o.value.as_str())
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering every request with a settable status and
/// body; stops when dropped. Runs on its own thread so any test runtime can use it.
pub struct TestServer {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, h, st) = (status.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                let _ = answer(&mut conn, s.load(Ordering::SeqCst), body);
            }
        });
        Self {
            addr,
            status,
            hits,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// An HTTP server on 127.0.0.1 that holds every request until the test opens it (then, and
/// from then on, answers 200): lets a test decide when a task blocked on it goes on, without
/// anyone polling. A request held over a minute gets 504.
pub struct Latch {
    pub addr: SocketAddr,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Latch {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let gate = open.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let (lock, opened) = &*gate;
                    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (guard, waited) = opened
                        .wait_timeout_while(guard, Duration::from_secs(60), |open| !*open)
                        .unwrap_or_else(|e| e.into_inner());
                    let status = if waited.timed_out() { 504 } else { 200 };
                    drop(guard);
                    let _ = answer(&mut conn, status, "released");
                });
            }
        });
        Self { addr, open }
    }

    pub fn url(&self) -> String {
        format!("http://{}/go", self.addr)
    }

    /// Answers every held request, and every later one.
    pub fn open(&self) {
        let (lock, opened) = &*self.open;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        opened.notify_all();
    }
}

/// A service in this process (no HTTP) serving one pipeline, `web`, whose `./kit.wasm` is the
/// testkit plugin; alice approves.
pub struct Harness {
    _dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub service: Arc<Service>,
    pub alice: User,
}

impl Harness {
    pub fn serve(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines).unwrap();
        std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
        std::fs::write(pipelines.join("web.toml"), pipeline).unwrap();
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
        let service = runtime.block_on(async { Service::start(config).unwrap() });
        Self {
            _dir: dir,
            runtime,
            service,
            alice,
        }
    }

    /// Creates a release of `web` (by rita); returns its name.
    pub fn create(&self) -> String {
        let options = sluice::scheduler::CreateOptions {
            creator: "rita".into(),
            ..Default::default()
        };
        self.runtime
            .block_on(self.service.create_release("web", options, None))
            .unwrap()
            .name
    }

    /// The pending approvals' ids, sorted.
    pub fn pending(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .service
            .pending_approvals()
            .into_iter()
            .map(|a| a.id)
            .collect();
        ids.sort();
        ids
    }

    /// Waits (bounded, woken by commits) until `ready` holds.
    pub fn wait(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let mut commits = self.service.changes();
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !ready(self) {
                let changed = tokio::time::timeout_at(deadline, commits.changed()).await;
                assert!(
                    matches!(changed, Ok(Ok(()))),
                    "never: {what} (pending: {:?})",
                    self.pending()
                );
            }
        });
    }

    /// Waits until exactly `ids` are pending.
    pub fn wait_pending(&self, ids: &[String]) {
        let mut want = ids.to_vec();
        want.sort();
        self.wait(&format!("pending = {want:?}"), |h| h.pending() == want);
    }

    pub fn approve(&self, id: &str) {
        let decision = DecisionRequest {
            approve: true,
            comment: "ok".into(),
            ..DecisionRequest::default()
        };
        self.runtime
            .block_on(self.service.decide(id, &self.alice, decision, None))
            .unwrap();
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test leaves
/// nothing running behind it.
pub struct Spawned(pub std::process::Child);

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
