//! Service mode: the engine as a long-lived process. Holds the pipelines (loaded from a
//! directory at start, replaced through the API, every version kept in the store), the users
//! from `sluice.toml`, and an index of pending approvals kept current by the engine's commits.
//! Speaks no HTTP: `api` translates requests into the calls here.

pub mod config;
mod live;
pub mod metrics;
pub mod queries;
mod triggers;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::core::{
    Approval, ApprovalKind, ApprovalState, Authority, Event, InvalidTransition, Release,
    approval_id,
};
use crate::pipeline::{self, Loaded, PipelineError};
use crate::plugin::{HostConfig, PluginHost};
use crate::scheduler::{CreateOptions, Engine, EngineError, Observer, Pending};
use crate::store::{LogKey, Receipt, Store};

pub use config::{Role, ServiceConfig, User, hash_token};
pub use live::LogFollow;

/// Why a service call failed, in terms the API maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// It does not apply to the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The input is wrong (400 / 422).
    #[error("{0}")]
    Invalid(String),
    /// A pipeline is invalid (422), with every diagnostic.
    #[error("{0}")]
    Pipeline(PipelineError),
    /// Something broke inside (500; details go to the log only).
    #[error("{0}")]
    Internal(String),
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoRelease(name) => Self::NotFound(format!("there is no release `{name}`")),
            EngineError::Transition(t) => match t {
                InvalidTransition::NotAllowed(m) => Self::Forbidden(m),
                InvalidTransition::UnknownStage { .. } => Self::NotFound(t.to_string()),
                other => Self::Conflict(other.to_string()),
            },
            EngineError::Void(_) => Self::Conflict(e.to_string()),
            EngineError::Pipeline(p) => Self::Pipeline(p),
            EngineError::Artifact { .. } => Self::Invalid(e.to_string()),
            EngineError::Store(_) | EngineError::Stopped(_) => Self::Internal(e.to_string()),
        }
    }
}

/// A pipeline the service serves.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Name.
    pub name: String,
    /// The stored version it is.
    pub version: u64,
    /// Its file in the pipelines directory.
    pub file: PathBuf,
    /// Its TOML text.
    pub source: String,
    /// Parsed and validated.
    pub loaded: Loaded,
}

/// A pending approval, as approvers look for it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    /// `release.stage.attempt.pre|post`.
    pub id: String,
    /// Release.
    pub release: String,
    /// Pipeline.
    pub pipeline: String,
    /// Stage.
    pub stage: String,
    /// Attempt.
    pub attempt: u32,
    /// Who created the release.
    pub release_creator: String,
    /// The approval itself: kind, state, approvers, policy, decisions, times.
    #[serde(flatten)]
    pub approval: Approval,
}

impl ApprovalView {
    /// Whether `user` is listed on it, by name or through a group.
    pub fn lists(&self, user: &User) -> bool {
        self.approval
            .approvers
            .iter()
            .any(|a| match a.strip_prefix("group:") {
                Some(group) => user.groups.iter().any(|g| g == group),
                None => *a == user.name,
            })
    }
}

/// Every approval of a release, as views.
pub fn approvals_of(release: &Release) -> impl Iterator<Item = ApprovalView> + '_ {
    release.stages.iter().flat_map(move |stage| {
        stage.attempts.iter().flat_map(move |attempt| {
            // A reassigned approval is followed by its successor of the same kind: only the
            // latest of each kind carries the id.
            let latest =
                |kind: ApprovalKind| attempt.approvals.iter().rposition(|a| a.kind == kind);
            attempt
                .approvals
                .iter()
                .enumerate()
                .map(move |(i, approval)| {
                    let mut id =
                        approval_id(&release.name, &stage.name, attempt.number, approval.kind);
                    if latest(approval.kind) != Some(i) {
                        id.push_str(&format!("~{i}"));
                    }
                    ApprovalView {
                        id,
                        release: release.name.clone(),
                        pipeline: release.pipeline.clone(),
                        stage: stage.name.clone(),
                        attempt: attempt.number,
                        release_creator: release.creator.clone(),
                        approval: approval.clone(),
                    }
                })
        })
    })
}

/// Pending approvals, by id, kept current from the engine's commits.
#[derive(Default)]
struct PendingIndex(RwLock<PendingApprovals>);

#[derive(Default)]
struct PendingApprovals {
    by_id: BTreeMap<String, ApprovalView>,
    /// The revision of each release the index reflects. Updates only move forward, so a
    /// stale copy of a release (a late observer after a sync) changes nothing.
    revisions: HashMap<String, u64>,
    /// The audit trail's length when the index last caught up with it.
    synced: u64,
}

impl PendingIndex {
    fn update(&self, release: &Release) {
        let mut index = self.0.write().unwrap_or_else(|e| e.into_inner());
        let PendingApprovals {
            by_id, revisions, ..
        } = &mut *index;
        let revision = revisions.entry(release.name.clone()).or_default();
        if *revision > release.revision {
            return;
        }
        *revision = release.revision;
        let prefix = format!("{}.", release.name);
        by_id.retain(|id, _| !id.starts_with(&prefix));
        for view in approvals_of(release) {
            if view.approval.state == ApprovalState::Pending {
                by_id.insert(view.id.clone(), view);
            }
        }
    }

    /// Whether the index reflects `release` at `revision` or later.
    fn reflects(&self, release: &str, revision: u64) -> bool {
        let index = self.0.read().unwrap_or_else(|e| e.into_inner());
        index.revisions.get(release).is_some_and(|r| *r >= revision)
    }

    fn synced(&self) -> u64 {
        self.0.read().unwrap_or_else(|e| e.into_inner()).synced
    }

    fn synced_to(&self, len: u64) {
        let mut index = self.0.write().unwrap_or_else(|e| e.into_inner());
        index.synced = index.synced.max(len);
    }
}

impl Observer for PendingIndex {
    fn committed(&self, release: &Release, _what: &str) {
        self.update(release);
    }
}

/// A decision, as an approver makes it.
#[derive(Debug, Clone, Default)]
pub struct DecisionRequest {
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub comment: String,
    /// Decide for every approver (admins only).
    pub override_approvers: bool,
    /// Deploy at this time (Unix milliseconds).
    pub defer_until: Option<u64>,
}

/// The service.
pub struct Service {
    engine: Arc<Engine>,
    config: ServiceConfig,
    pipelines: RwLock<BTreeMap<String, Pipeline>>,
    pending: Arc<PendingIndex>,
    live: Arc<live::LiveLogs>,
    times: Arc<metrics::TaskTimes>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    ready: AtomicBool,
    /// Set on SIGTERM: long-lived answers (event streams) end, so the server can drain.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Service {
    /// Opens the store, loads and checks every pipeline in the pipelines directory, and
    /// resumes every unfinished release. Must run inside a tokio runtime.
    pub fn start(mut config: ServiceConfig) -> Result<Arc<Self>, String> {
        let store = Store::open(&config.data_dir).map_err(|e| e.to_string())?;
        // Grants and workspaces need absolute paths.
        for dir in [&mut config.data_dir, &mut config.pipelines] {
            *dir = std::fs::canonicalize(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let host = PluginHost::new(HostConfig {
            cache_dir: Some(config.data_dir.join("compiled")),
            ..HostConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let engine = Arc::new(Engine::new(store, Arc::new(host), config.data_dir.clone()));
        let service = Arc::new(Self {
            engine,
            pipelines: RwLock::new(BTreeMap::new()),
            pending: Arc::new(PendingIndex::default()),
            live: Arc::default(),
            times: Arc::default(),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
            ready: AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
            config,
        });
        service.load_pipelines()?;
        // Entries from here on are looked at again by the first sync; the ones before are in
        // the releases loaded next.
        service
            .pending
            .synced_to(*service.store().audit_len().borrow());
        for release in service
            .engine
            .store()
            .releases()
            .map_err(|e| e.to_string())?
        {
            service.pending.update(&release);
        }
        service
            .engine
            .serve(
                Arc::new(Pending),
                Arc::new(live::Watch {
                    pending: service.pending.clone(),
                    live: service.live.clone(),
                    times: service.times.clone(),
                    changed: service.changed.clone(),
                }),
            )
            .map_err(|e| e.to_string())?;
        triggers::spawn(&service);
        service.ready.store(true, Ordering::SeqCst);
        Ok(service)
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// Whether the service takes work: recovered, and the store commits.
    pub fn ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err("recovering unfinished releases".into());
        }
        if !self.store().can_commit() {
            return Err("the store cannot commit".into());
        }
        Ok(())
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

    /// Whether any task or artifact fetch is under way (SIGTERM waits for them).
    pub fn tasks_running(&self) -> bool {
        self.store().releases().is_ok_and(|releases| {
            releases.iter().any(|r| {
                r.stages
                    .iter()
                    .any(|s| s.state() == crate::core::StageState::InProgress)
            })
        })
    }

    /// Waits until no task or artifact fetch is under way (their results committed), or
    /// `grace` passes; true when drained. Woken by commits, not by polling.
    pub async fn drain(&self, grace: std::time::Duration) -> bool {
        let mut commits = self.store().audit_len();
        let deadline = tokio::time::Instant::now() + grace;
        while self.tasks_running() {
            match tokio::time::timeout_at(deadline, commits.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
        true
    }

    /// How many releases are being driven now.
    pub fn driving(&self) -> usize {
        self.engine.driving()
    }

    /// The user whose token has this sha256 (see [`hash_token`]).
    pub fn user(&self, token_hash: &str) -> Option<&User> {
        self.config.tokens.get(token_hash)
    }

    fn load_pipelines(&self) -> Result<(), String> {
        let dir = &self.config.pipelines;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("pipelines directory {}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|p| {
                if p.is_dir() {
                    Some(p.join("pipeline.toml")).filter(|f| f.is_file())
                } else {
                    (p.extension().is_some_and(|e| e == "toml")).then_some(p)
                }
            })
            .collect();
        files.sort();
        let mut problems = Vec::new();
        let mut pipelines = BTreeMap::new();
        for file in files {
            let loaded = match pipeline::load(&file) {
                Ok(loaded) => loaded,
                // Not a pipeline (no `version`, no stages): another kind of TOML file.
                Err(_) if !looks_like_pipeline(&file) => continue,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Err(e) = pipeline::check_plugins(&loaded, self.engine.host()) {
                problems.push(e.to_string());
                continue;
            }
            let name = loaded.plan.name.clone();
            let source = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let version = self
                .store()
                .put_pipeline(&name, &source, "file")
                .map_err(|e| e.to_string())?
                .version;
            let pipeline = Pipeline {
                name: name.clone(),
                version,
                file: file.clone(),
                source,
                loaded,
            };
            if let Some(other) = pipelines.insert(name.clone(), pipeline) {
                problems.push(format!(
                    "{} and {} both define pipeline `{name}`: give one another `name`",
                    other.file.display(),
                    file.display()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        *self.pipelines.write().unwrap_or_else(|e| e.into_inner()) = pipelines;
        Ok(())
    }

    /// Every pipeline.
    pub fn pipelines(&self) -> Vec<Pipeline> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        pipelines.values().cloned().collect()
    }

    /// The pipeline called `name`.
    pub fn pipeline(&self, name: &str) -> Result<Pipeline, ServiceError> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        pipelines
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("there is no pipeline `{name}`")))
    }

    /// Parses and checks `source` as pipeline `name` without saving it.
    pub fn validate_pipeline(&self, name: &str, source: &str) -> Result<Loaded, ServiceError> {
        let file = self.pipeline_file(name);
        let dir = file.parent().unwrap_or(Path::new("."));
        let shown = format!("{name}.toml");
        let loaded = pipeline::parse(&shown, source, dir, name).map_err(ServiceError::Pipeline)?;
        if loaded.plan.name != name {
            return Err(ServiceError::Invalid(format!(
                "the pipeline says name = \"{}\" but was sent to /pipelines/{name}: make them the same",
                loaded.plan.name
            )));
        }
        pipeline::check_plugins(&loaded, self.engine.host()).map_err(ServiceError::Pipeline)?;
        Ok(loaded)
    }

    /// Validates `source` and makes it pipeline `name`'s next version: stored, and written to
    /// its file (atomically). Releases already created keep their snapshot.
    pub fn put_pipeline(
        &self,
        name: &str,
        source: &str,
        by: &str,
    ) -> Result<Pipeline, ServiceError> {
        let loaded = self.validate_pipeline(name, source)?;
        let file = self.pipeline_file(name);
        let aside = file.with_extension("toml.new");
        std::fs::write(&aside, source)
            .and_then(|()| std::fs::rename(&aside, &file))
            .map_err(|e| ServiceError::Internal(format!("writing {}: {e}", file.display())))?;
        let version = self
            .store()
            .put_pipeline(name, source, by)
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .version;
        let pipeline = Pipeline {
            name: name.to_owned(),
            version,
            file,
            source: source.to_owned(),
            loaded,
        };
        let mut pipelines = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        pipelines.insert(name.to_owned(), pipeline.clone());
        Ok(pipeline)
    }

    fn pipeline_file(&self, name: &str) -> PathBuf {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        pipelines
            .get(name)
            .map(|p| p.file.clone())
            .unwrap_or_else(|| self.config.pipelines.join(format!("{name}.toml")))
    }

    /// Creates a release of pipeline `name` and starts driving it.
    pub async fn create_release(
        &self,
        name: &str,
        options: CreateOptions,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        let pipeline = self.pipeline(name)?;
        let release = self
            .engine
            .create_release_with(&pipeline.loaded, options, receipt)
            .await?;
        self.pending.update(&release);
        self.changed.send_modify(|n| *n += 1);
        self.engine.start(&release.name);
        Ok(release)
    }

    /// The release called `name`.
    pub fn release(&self, name: &str) -> Result<Release, ServiceError> {
        self.store()
            .release(name)
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .ok_or_else(|| ServiceError::NotFound(format!("there is no release `{name}`")))
    }

    /// Applies a deploy, cancel or abandon to a release.
    pub async fn submit(
        &self,
        release: &str,
        event: Event,
        user: &User,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        Ok(self
            .engine
            .submit_with(release, event, &user.name, receipt)
            .await?)
    }

    /// Follows one task's log: the lines so far, then each as it is written, until the task
    /// ends.
    pub fn follow_log(&self, key: &LogKey<'_>) -> Result<LogFollow, ServiceError> {
        let release = self.release(key.release)?;
        LogFollow::start(&self.live, &self.engine, &release, key)
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

    /// Pending approvals, from the index.
    pub fn pending_approvals(&self) -> Vec<ApprovalView> {
        let index = self.pending.0.read().unwrap_or_else(|e| e.into_inner());
        index.by_id.values().cloned().collect()
    }

    /// Brings the pending-approvals index up to every commit in the audit trail so far, so a
    /// client that lists pending approvals after reading an entry sees what the entry says.
    /// An entry is readable from the store the moment its commit is, a moment before the
    /// engine reports the commit to the index; the audit routes call this after they read
    /// entries and before they answer.
    pub fn sync_views(&self) {
        const BATCH: usize = 1024;
        loop {
            let from = self.pending.synced();
            let entries = match self.store().audit_from(from, BATCH) {
                Ok(entries) => entries,
                Err(e) => return tracing::error!("bringing the views up to date: {e}"),
            };
            let Some(last) = entries.last() else {
                return;
            };
            let mut latest: HashMap<&str, u64> = HashMap::new();
            for entry in &entries {
                let revision = latest.entry(&entry.release).or_default();
                *revision = entry.revision.max(*revision);
            }
            for (name, revision) in latest {
                if self.pending.reflects(name, revision) {
                    continue;
                }
                match self.store().release(name) {
                    Ok(Some(release)) => self.pending.update(&release),
                    Ok(None) => {}
                    Err(e) => {
                        return tracing::error!(
                            release = name,
                            "bringing the views up to date: {e}"
                        );
                    }
                }
            }
            self.pending.synced_to(last.seq + 1);
            if entries.len() < BATCH {
                return;
            }
        }
    }

    /// The approval with this id.
    pub fn approval(&self, id: &str) -> Result<ApprovalView, ServiceError> {
        let missing = || ServiceError::NotFound(format!("there is no approval `{id}`"));
        let release = id.split('.').next().ok_or_else(missing)?;
        let release = self.release(release).map_err(|_| missing())?;
        approvals_of(&release)
            .find(|a| a.id == id)
            .ok_or_else(missing)
    }

    /// Decides an approval as `user`. Approval rules are checked by the core at the moment the
    /// decision applies, in order with everything else that happens to the release.
    pub async fn decide(
        &self,
        id: &str,
        user: &User,
        decision: DecisionRequest,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        let view = self.approval(id)?;
        let authority = self.authority(user, decision.override_approvers)?;
        let event = Event::Decide {
            stage: view.stage.clone(),
            attempt: view.attempt,
            kind: view.approval.kind,
            by: user.name.clone(),
            groups: user.groups.clone(),
            approve: decision.approve,
            comment: decision.comment,
            authority,
            defer_until: decision.defer_until,
        };
        self.decided(&view, event, user, receipt).await
    }

    /// Hands an approval to `to` (a user or `group:NAME`).
    pub async fn reassign(
        &self,
        id: &str,
        user: &User,
        to: String,
        comment: String,
        override_approvers: bool,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        let view = self.approval(id)?;
        let authority = self.authority(user, override_approvers)?;
        if to.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "`to` names nobody: give a user or group:NAME".into(),
            ));
        }
        let event = Event::Reassign {
            stage: view.stage.clone(),
            attempt: view.attempt,
            kind: view.approval.kind,
            by: user.name.clone(),
            groups: user.groups.clone(),
            to,
            comment,
            authority,
        };
        self.decided(&view, event, user, receipt).await
    }

    fn authority(&self, user: &User, override_approvers: bool) -> Result<Authority, ServiceError> {
        match (override_approvers, user.has(Role::Admin)) {
            (true, true) => Ok(Authority::Override),
            (true, false) => Err(ServiceError::Forbidden(format!(
                "{} is not an admin: only admins may override approvers",
                user.name
            ))),
            (false, _) if user.has(Role::Approver) => Ok(Authority::Approver),
            (false, _) => Err(ServiceError::Forbidden(format!(
                "{} does not have the approver role",
                user.name
            ))),
        }
    }

    async fn decided(
        &self,
        view: &ApprovalView,
        event: Event,
        user: &User,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        if view.approval.state != ApprovalState::Pending {
            return Err(ServiceError::Conflict(format!(
                "approval {} is {}",
                view.id,
                serde_json::to_value(view.approval.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        self.submit(&view.release, event, user, receipt).await
    }
}

fn looks_like_pipeline(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| t.contains("[[stages]]") || t.contains("version"))
}
