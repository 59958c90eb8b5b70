//! Service mode: the engine as a long-lived process, and its start-up and shutdown. The
//! service holds the pipelines (`pipelines`), the users from `sluice.toml` (`config`), and an
//! index of pending approvals kept current by the engine's commits (`approvals`); it speaks no
//! HTTP: `api` translates requests into the calls here.

pub mod agents;
mod approvals;
pub mod config;
mod drain;
mod error;
mod live;
pub mod metrics;
mod pipelines;
pub mod queries;
mod releases;
mod startup;
mod sweep;
mod triggers;
mod workspaces;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::plugin::{HostConfig, PluginHost, Tiering};
use crate::scheduler::{Engine, Pending};
use crate::store::Store;

pub use approvals::{ApprovalView, DecisionRequest, approvals_of};
pub use config::{Role, ServiceConfig, User, hash_token};
pub use error::{InternalError, NotReady, ServiceError, StartError};
pub use live::LogFollow;
pub use pipelines::{LoadPipelinesError, Pipeline, PipelineProblem};

use approvals::PendingIndex;

/// How often the service probes a store latched by a full disk, to learn that space returned
/// (`/readyz` reads the store's cached health; nothing is written while it is healthy).
pub const HEALTH_EVERY: Duration = Duration::from_secs(2);

/// The service.
pub struct Service {
    engine: Arc<Engine>,
    config: ServiceConfig,
    /// The users, by the sha256 of their token: the configuration's at start, then each
    /// reload's (SIGHUP, a change of `sluice.toml`).
    users: RwLock<Arc<BTreeMap<String, User>>>,
    /// Health checks that wrote (only while the disk is latched full).
    health_checks: AtomicU64,
    pipelines: RwLock<BTreeMap<String, Pipeline>>,
    pending: Arc<PendingIndex>,
    /// The agents and the jobs they run.
    agents: Arc<agents::Agents>,
    live: Arc<live::LiveLogs>,
    times: Arc<metrics::TaskTimes>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// False once the service stops taking work (SIGTERM).
    ready: AtomicBool,
    /// True once every release resumed at start has recovered (see [`Service::recovered`]).
    recovered: tokio::sync::watch::Sender<bool>,
    /// Set on SIGTERM: long-lived answers (event streams) end, so the server can drain.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Service {
    /// Opens the store, loads and checks every pipeline in the pipelines directory, and
    /// resumes every unfinished release. Returns once their drivers are started, before they
    /// recovered: [`Service::ready`] says `recovering` until they have
    /// ([`Service::recovered`]). Must run inside a tokio runtime.
    pub fn start(mut config: ServiceConfig) -> Result<Arc<Self>, StartError> {
        let started = std::time::Instant::now();
        // A key that is there but unusable stops the start before anything is opened.
        crate::secrets::Keyring::from_env(&config.data_dir).check()?;
        let store = Store::open(&config.data_dir).map_err(StartError::Store)?;
        let opened = started.elapsed();
        // Grants and workspaces need absolute paths.
        for dir in [&mut config.data_dir, &mut config.pipelines] {
            *dir = std::fs::canonicalize(&*dir).map_err(|source| StartError::Dir {
                dir: dir.clone(),
                source,
            })?;
        }
        let at = std::time::Instant::now();
        // A service lives long enough to use Cranelift's code: large plugins run Winch's first
        // and switch when the background compilation ends.
        let host = PluginHost::new(HostConfig {
            files: config.plugin_files.policy(&config.pipelines),
            cache_max_bytes: config.plugin_files.cache_max_bytes,
            tiering: Tiering {
                tier_up: true,
                ..Tiering::default()
            },
            ..HostConfig::in_data_dir(&config.data_dir)
        })?;
        let engine = Arc::new(Engine::new(store, Arc::new(host), config.data_dir.clone()));
        let host = at.elapsed();
        let pending = Arc::new(PendingIndex::default());
        let live: Arc<live::LiveLogs> = Arc::default();
        let times: Arc<metrics::TaskTimes> = Arc::default();
        let changed = Arc::new(tokio::sync::watch::Sender::new(0));
        let watch = Arc::new(live::Watch {
            pending: pending.clone(),
            live: live.clone(),
            times: times.clone(),
            changed: changed.clone(),
        });
        let agents = agents::Agents::new(config.pools.clone(), watch.clone());
        agents.restore_disabled(
            engine
                .store()
                .disabled_agents()
                .map_err(StartError::Store)?,
        );
        agents.attach(&engine);
        engine.dispatch_to(agents.clone());
        let service = Arc::new(Self {
            engine,
            users: RwLock::new(Arc::new(config.tokens.clone())),
            health_checks: AtomicU64::new(0),
            pipelines: RwLock::new(BTreeMap::new()),
            pending,
            agents,
            live,
            times,
            changed,
            ready: AtomicBool::new(true),
            recovered: tokio::sync::watch::Sender::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
            config,
        });
        let at = std::time::Instant::now();
        service.load_pipelines()?;
        service.warm_plugins();
        let pipelines = at.elapsed();
        let at = std::time::Instant::now();
        // Entries from here on are looked at again by the first sync; the ones before are in
        // the releases loaded next. Only an active release has a pending approval.
        let trail = *service.store().audit_len().borrow();
        service.pending.synced_to(trail);
        for release in service
            .engine
            .store()
            .active_releases(None)
            .map_err(StartError::Releases)?
        {
            service.pending.update(&release);
        }
        let index = at.elapsed();
        let at = std::time::Instant::now();
        let recovery = service
            .engine
            .serve(Arc::new(Pending), watch)
            .map_err(StartError::Resume)?;
        let resume = at.elapsed();
        triggers::spawn(&service);
        sweep::spawn(&service);
        workspaces::spawn(&service);
        watch_health(&service);
        let startup = startup::Startup {
            started,
            opened,
            host,
            pipelines,
            index,
            resume,
        };
        startup::await_recovery(&service, recovery, startup);
        Ok(service)
    }

    /// Resolves once every release resumed at start has recovered: its recovery events
    /// committed, its timers and work set going again (a release whose driver failed is
    /// logged and not waited for).
    pub async fn recovered(&self) {
        let mut recovered = self.recovered.subscribe();
        let _ = recovered.wait_for(|r| *r).await;
    }

    /// The plugin host.
    pub fn host(&self) -> &Arc<PluginHost> {
        self.engine.host()
    }

    /// The agents and their jobs.
    pub fn agents(&self) -> &agents::Agents {
        &self.agents
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// An admin disables agent `name` (it takes no new job) or enables it again; stored
    /// before the answer, so it holds across a restart.
    pub fn set_agent_disabled(
        &self,
        name: &str,
        disabled: bool,
    ) -> Result<agents::AgentView, ServiceError> {
        self.agents.set_disabled(self.store(), name, disabled)
    }

    /// Whether the service takes work: recovered, and the store's last I/O left it writable (a
    /// full disk or a failed write latches it): a probe costs the store nothing.
    pub fn ready(&self) -> Result<(), NotReady> {
        if !self.ready.load(Ordering::SeqCst) || !*self.recovered.borrow() {
            return Err(NotReady::Recovering);
        }
        match self.store().health() {
            crate::store::Health::Healthy => Ok(()),
            crate::store::Health::Full(_) => Err(NotReady::DiskFull),
            crate::store::Health::Failed(_) => Err(NotReady::StoreFailed),
        }
    }

    /// While the store is latched by a full disk, probes it with one write (the latch clears
    /// when it commits); nothing while it is healthy.
    pub fn check_health(&self) {
        if self.store().probe() {
            self.health_checks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How many health checks wrote (only while the disk was full).
    pub fn health_checks(&self) -> u64 {
        self.health_checks.load(Ordering::SeqCst)
    }

    /// Stops taking work (SIGTERM): not ready any more, and event streams end.
    pub fn stop_taking_work(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.stopping.send_replace(true);
    }

    /// Whether the service has stopped taking work (SIGTERM).
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once the service stops taking work.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|s| *s).await;
    }

    /// Whether any task or artifact fetch is under way (SIGTERM waits for them), from the
    /// stored counts. A read that fails counts as "still running": the drain waits.
    pub fn tasks_running(&self) -> bool {
        drain::still_running(self.store().deployments_in_progress())
    }

    /// Waits until no task or artifact fetch is under way (their results committed), or
    /// `grace` passes; true when drained. Woken by commits, not by polling.
    pub async fn drain(&self, grace: Duration) -> bool {
        drain::drain(self.store().audit_len(), grace, || self.tasks_running()).await
    }

    /// How many releases are being driven now.
    pub fn driving(&self) -> usize {
        self.engine.driving()
    }

    /// The user whose token has this sha256 (see [`hash_token`]), as the users are now.
    pub fn user(&self, token_hash: &str) -> Option<User> {
        self.users().get(token_hash).cloned()
    }

    /// The agent token whose sha256 this is, with the pools it may join.
    pub fn agent_token(&self, token_hash: &str) -> Option<agents::AgentToken> {
        self.config
            .pools
            .tokens
            .get(token_hash)
            .map(|pools| agents::AgentToken {
                hash: token_hash.to_owned(),
                pools: pools.clone(),
            })
    }

    /// The user of this name, if one is configured now.
    pub fn user_named(&self, name: &str) -> Option<User> {
        self.users().values().find(|u| u.name == name).cloned()
    }

    fn users(&self) -> Arc<BTreeMap<String, User>> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `config`'s users (and tokens) in force, in place of the current ones; requests
    /// under way and running work are not touched. Only the users are taken: the rest of the
    /// file takes effect at the next start. Returns how many users there are now.
    pub fn reload_users(&self, config: &ServiceConfig) -> usize {
        let users = Arc::new(config.tokens.clone());
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        config.tokens.len()
    }

    /// Records a refused request in the audit trail (the API bounds how many).
    pub fn record_refusal(&self, who: &str, what: &str) -> Result<(), crate::store::StoreError> {
        self.store().record_refusal(who, what)
    }

    /// Changes after every commit once the service's views (pending approvals, live logs,
    /// metrics) include it: wait on it, then look.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// How long tasks took, since the service started.
    pub fn task_durations(&self) -> metrics::Histogram {
        self.times.histogram()
    }
}

/// Checks the store's health every [`HEALTH_EVERY`] while the service lives.
fn watch_health(service: &Arc<Service>) {
    let service = Arc::downgrade(service);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEALTH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(service) = service.upgrade() else {
                return;
            };
            if tokio::task::spawn_blocking(move || service.check_health())
                .await
                .is_err()
            {
                return;
            }
        }
    });
}
