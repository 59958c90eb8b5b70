//! `sluice agent`: a process that runs stage deployments for a server, from inside a network
//! the server may not reach. It holds up to `--max-jobs` jobs; each free slot long-polls the
//! server for a job of its pool whose demands it meets, then takes the job's steps one at a
//! time (`job.rs`) in a sandbox granted only what its operator offers (`grants.rs`), with
//! plugins fetched by digest (`plugins.rs`). A renewal every lease period keeps its leases;
//! the answer names jobs to drop (canceled, or lost and given to another agent). It keeps no
//! state beyond caches: the server's store has everything. Errors from the server are retried
//! with backoff, so a restarted server gets its agents back.

mod grants;
mod job;
mod plugins;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use grants::{Allowed, NEVER_GRANTED};

use crate::api::client::{Client, Reply};
use crate::plugin::{HostConfig, Plugin, PluginHost};
use crate::types::job::{Hello, Job, PluginCall, Renew, Renewed};
use crate::types::{Capabilities, Name};
use job::{Ended, Running};

/// What `sluice agent` was started with, checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server, `http://` or `https://`.
    pub server: String,
    /// `--ca-file`: the CA its certificate is checked against (else the web's roots).
    pub ca_file: Option<PathBuf>,
    /// The agent token.
    pub token: String,
    /// The agent's name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its capabilities: the system's and `--capability`.
    pub capabilities: Capabilities,
    /// `--allow-dir`.
    pub allow_dirs: Vec<PathBuf>,
    /// Caches and workspaces.
    pub work_dir: PathBuf,
    /// Jobs at once.
    pub max_jobs: u32,
}

/// The capabilities every agent reports about itself.
pub fn system_capabilities() -> Capabilities {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let hostname: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    [
        ("os", std::env::consts::OS.to_owned()),
        ("arch", std::env::consts::ARCH.to_owned()),
        ("hostname", hostname),
        ("sluice", env!("CARGO_PKG_VERSION").to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The running agent.
pub struct Agent {
    config: AgentConfig,
    client: Client,
    /// Its requests for a job wait this long for an answer.
    poll_client: Client,
    host: Arc<PluginHost>,
    plugins: plugins::Plugins,
    allowed: Allowed,
    /// The jobs it holds (id -> epoch) and the switch that drops each.
    held: Mutex<BTreeMap<String, (u64, watch::Sender<bool>)>>,
    /// The shortest renewal period of a job held (the server's `agents.renew`).
    renew: watch::Sender<Duration>,
}

/// Exponential backoff with jitter, 100 ms to 5 s.
#[derive(Default)]
struct Backoff {
    tries: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        let base = 100u64 << self.tries.min(6);
        self.tries += 1;
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        let jitter = u64::from_le_bytes(bytes) % (base / 2 + 1);
        tokio::time::sleep(Duration::from_millis((base + jitter).min(5_000))).await;
    }
}

impl Agent {
    /// An agent for `config`: its plugin host (compile cache in the work directory) and client.
    pub fn new(config: AgentConfig) -> Result<Arc<Self>, String> {
        Name::new(&config.name).map_err(|e| format!("--name: {e}"))?;
        Name::new(&config.pool).map_err(|e| format!("--pool: {e}"))?;
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| format!("--work-dir {}: {e}", config.work_dir.display()))?;
        for dir in &config.allow_dirs {
            if !dir.is_dir() {
                return Err(format!("--allow-dir {}: not a directory", dir.display()));
            }
        }
        let client = Client::trusting(
            &config.server,
            Some(config.token.clone()),
            config.ca_file.as_deref(),
        )?;
        if client.plain_off_loopback() {
            tracing::warn!(
                "{} is plain HTTP to another machine: the agent token and the secrets jobs \
                 carry cross the network in the clear; serve over TLS and give https://",
                config.server
            );
        }
        let poll_client = client.clone().with_timeout(Duration::from_secs(90));
        let host = PluginHost::new(HostConfig::in_data_dir(&config.work_dir))
            .map_err(|e| format!("the plugin host: {e}"))?;
        let host = Arc::new(host);
        Ok(Arc::new(Self {
            plugins: plugins::Plugins::new(&config.work_dir, host.clone()),
            allowed: Allowed::new(&config.allow_dirs, &config.work_dir),
            client,
            poll_client,
            host,
            held: Mutex::default(),
            renew: watch::Sender::new(Duration::from_secs(10)),
            config,
        }))
    }

    /// Runs until `stop` turns true: then takes no new job, lets each running one finish, and
    /// returns (the caller bounds how long: `--grace`). An error is one the agent cannot get past (a token the server
    /// refuses, a name another agent holds).
    pub async fn run(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Result<(), String> {
        let (fatal_tx, mut fatal) = tokio::sync::mpsc::unbounded_channel::<String>();
        let renewals = tokio::spawn(self.clone().renewals());
        let mut slots = tokio::task::JoinSet::new();
        for _ in 0..self.config.max_jobs.max(1) {
            let (me, stop, fatal) = (self.clone(), stop.clone(), fatal_tx.clone());
            slots.spawn(async move {
                if let Err(e) = me.slot(stop).await {
                    let _ = fatal.send(e);
                }
            });
        }
        drop(fatal_tx);
        let result = tokio::select! {
            Some(e) = fatal.recv() => Err(e),
            _ = async { while slots.join_next().await.is_some() {} } => Ok(()),
        };
        renewals.abort();
        result
    }

    /// Who this agent is and what it holds, as it asks for jobs and renews leases.
    fn hello(&self) -> Hello {
        Hello {
            agent: self.config.name.clone(),
            pool: self.config.pool.clone(),
            capabilities: self.config.capabilities.clone(),
            max_jobs: self.config.max_jobs,
            running: (self.held.lock().unwrap_or_else(|e| e.into_inner()).keys())
                .cloned()
                .collect(),
        }
    }

    /// One job at a time: ask, run, again, until stopped.
    async fn slot(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let mut backoff = Backoff::default();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let body = serde_json::to_value(self.hello()).expect("JSON");
            let asked = tokio::select! {
                reply = self.poll_client.post("/api/v1/agent/jobs/next", &body) => reply,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let reply = match asked {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::warn!("asking {} for a job: {e}; retrying", self.config.server);
                    backoff.wait().await;
                    continue;
                }
            };
            match reply.status {
                200 => {}
                204 => continue,
                401 | 403 | 400 | 409 => {
                    return Err(format!(
                        "the server refused this agent: {} {}",
                        reply.status,
                        job::why(&reply)
                    ));
                }
                _ => {
                    tracing::warn!(
                        "asking for a job: {} {}; retrying",
                        reply.status,
                        job::why(&reply)
                    );
                    backoff.wait().await;
                    continue;
                }
            }
            backoff = Backoff::default();
            let job: Job = match serde_json::from_slice(&reply.body) {
                Ok(job) => job,
                Err(e) => return Err(format!("the server sent a job I cannot read: {e}")),
            };
            self.run_job(job).await;
        }
    }

    async fn run_job(self: &Arc<Self>, job: Job) {
        let id = job.id.clone();
        tracing::info!(job = %id, epoch = job.epoch, "took job");
        let (drop_tx, dropped) = watch::channel(false);
        let period = Duration::from_millis(job.renew_ms.max(100));
        self.renew.send_if_modified(|renew| {
            let shorter = period < *renew;
            *renew = (*renew).min(period);
            shorter
        });
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), (job.epoch, drop_tx));
        let workspace = self.workspace(&id);
        let ended = match &workspace {
            Ok(workspace) => {
                Running::new(self, job, workspace.clone(), dropped)
                    .run()
                    .await
            }
            Err(why) => Ended::Dropped(why.clone()),
        };
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Ok(workspace) = workspace {
            let _ = std::fs::remove_dir_all(workspace);
        }
        match ended {
            Ended::Done => tracing::info!(job = %id, "job done"),
            Ended::Dropped(why) => tracing::warn!(job = %id, "job dropped: {why}"),
        }
    }

    /// `WORK/jobs/ID`, the id's parts checked as names (a gate job's ends in `KIND-gates`).
    fn workspace(&self, id: &str) -> Result<PathBuf, String> {
        let parts: Vec<&str> = id.split('.').collect();
        let names = parts
            .iter()
            .map(|p| Name::new(p))
            .collect::<Result<Vec<Name>, _>>()
            .map_err(|e| format!("job id `{}`: {e}", crate::types::escape(id)))?;
        let gates = |kind: &Name| matches!(kind.as_str(), "pre-gates" | "post-gates");
        let shaped = match &names[..] {
            [_, _, _] => true,
            [_, _, _, kind] => gates(kind),
            _ => false,
        };
        if !shaped {
            return Err(format!(
                "job id `{}` is not RELEASE.STAGE.ATTEMPT or RELEASE.STAGE.ATTEMPT.KIND-gates",
                crate::types::escape(id)
            ));
        }
        Ok(self.config.work_dir.join("jobs").join(id))
    }

    /// Renews the leases of every job held, every renewal period; drops what the server says.
    async fn renewals(self: Arc<Self>) {
        let mut period = self.renew.subscribe();
        loop {
            let every = *period.borrow_and_update();
            // A job with a shorter period than the one slept on wakes the loop at once.
            if tokio::time::timeout(every, period.changed()).await.is_ok() {
                continue;
            }
            let jobs: BTreeMap<String, u64> =
                (self.held.lock().unwrap_or_else(|e| e.into_inner()).iter())
                    .map(|(id, (epoch, _))| (id.clone(), *epoch))
                    .collect();
            if jobs.is_empty() {
                continue;
            }
            let renew = Renew {
                hello: self.hello(),
                jobs,
            };
            let body = serde_json::to_value(&renew).expect("JSON");
            match self.client.post("/api/v1/agent/renew", &body).await {
                Ok(reply) if reply.status == 200 => {
                    if let Ok(renewed) = serde_json::from_slice::<Renewed>(&reply.body) {
                        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                        for id in renewed.drop {
                            if let Some((_, drop)) = held.get(&id) {
                                let _ = drop.send(true);
                            }
                        }
                    }
                }
                Ok(reply) => {
                    tracing::warn!("renewing leases: {} {}", reply.status, job::why(&reply))
                }
                Err(e) => tracing::warn!("renewing leases: {e}"),
            }
        }
    }

    /// A plugin by digest, from the cache or the server.
    async fn plugin(&self, call: &PluginCall) -> Result<Arc<Plugin>, String> {
        self.plugins
            .load(call, &self.client, &self.config.name)
            .await
    }

    /// One request about a job, retried with backoff while the server is away or busy, until
    /// answered; a refusal (the job is not ours: 409, 403, 404, 400) drops the job. 200 and
    /// 422 come back.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
        dropped: &watch::Receiver<bool>,
    ) -> Result<Reply, Ended> {
        let mut backoff = Backoff::default();
        let bytes = serde_json::to_vec(body).expect("JSON");
        loop {
            if *dropped.borrow() {
                return Err(Ended::Dropped("the server dropped it".into()));
            }
            let client = if path.ends_with("/step") {
                &self.poll_client
            } else {
                &self.client
            };
            match client.send(method, path, Some(bytes.clone()), &[]).await {
                Ok(reply) if matches!(reply.status, 200 | 422) => return Ok(reply),
                Ok(reply) if matches!(reply.status, 400 | 403 | 404 | 409) => {
                    return Err(Ended::Dropped(format!(
                        "{} {}",
                        reply.status,
                        job::why(&reply)
                    )));
                }
                Ok(reply) => {
                    tracing::debug!("{path}: {} {}; retrying", reply.status, job::why(&reply));
                }
                Err(e) => tracing::debug!("{path}: {e}; retrying"),
            }
            backoff.wait().await;
        }
    }
}
