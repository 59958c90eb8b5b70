//! The scheduler: the imperative shell around the pure core. One *driver* task owns each release
//! it drives (an actor, as in mini-redis): it feeds events to [`core::apply`] one at a time,
//! **commits every transition to the store before acting on its effects**, and applies the
//! effects on tokio: workspaces and artifact fetches, tasks in the sandbox (logs stored per
//! task), approval requests, timers. Decisions and deploys from outside (the HTTP API) are
//! commands sent to the release's driver, so they are ordered with its own events: two racing
//! decisions on one approval make exactly one transition. On start, unfinished releases are
//! resumed through [`core::recover`].

mod queue;
mod run;
mod vars;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::core::{
    self, ApprovalKind, Authority, ChosenArtifact, Effect, Event, Release, ReleaseState,
};
use crate::pipeline::{self, Loaded, PipelineError, Selector};
use crate::plugin::{Digest, PluginHost, PluginRef};
use crate::store::{LogKey, Receipt, Store, StoreError, now_ms};
use crate::types::{LogEvent, Version};

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline is invalid.
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An artifact version could not be chosen.
    #[error("artifact `{alias}`: {reason}")]
    Artifact {
        /// Alias.
        alias: String,
        /// Why.
        reason: String,
    },
    /// No such release.
    #[error("there is no release `{0}` in this data directory (see `sluice releases list`)")]
    NoRelease(String),
    /// The event does not apply.
    #[error(transparent)]
    Transition(#[from] core::InvalidTransition),
    /// The approval was void: what it was given for changed.
    #[error("the approval is void: {0}")]
    Void(String),
    /// The release's driver stopped (the engine is shutting down, or its store failed).
    #[error("the engine stopped driving release {0}; retry")]
    Stopped(String),
}

/// Sees what the engine does, for a live view.
pub trait Observer: Send + Sync {
    /// A transition was committed.
    fn committed(&self, _release: &Release, _what: &str) {}
    /// A task wrote a log line or reported progress.
    fn task_event(&self, _task: &LogKey<'_>, _event: &LogEvent) {}
}

/// Decides pending approvals for the local operator (a prompt, or `--approve all`).
pub trait Approvals: Send + Sync {
    /// Returns `Some((approve, comment))` to decide now, `None` to leave the approval pending.
    /// Called on a blocking thread: it may wait for a person.
    fn decide(&self, release: &Release, stage: &str, kind: ApprovalKind) -> Option<(bool, String)>;

    /// Whether this ever decides; `false` leaves every approval to commands (the service).
    fn decides(&self) -> bool {
        true
    }
}

/// Leaves every approval pending, for approvers to decide through the API.
pub struct Pending;

impl Approvals for Pending {
    fn decide(&self, _: &Release, _: &str, _: ApprovalKind) -> Option<(bool, String)> {
        None
    }

    fn decides(&self) -> bool {
        false
    }
}

/// Sees nothing.
pub struct Unobserved;

impl Observer for Unobserved {}

/// How a release is created.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Versions chosen by hand: alias -> version id.
    pub artifacts: BTreeMap<String, String>,
    /// Variables set at release time.
    pub variables: Vec<(String, String)>,
    /// Who creates it.
    pub creator: String,
    /// Free text.
    pub description: Option<String>,
}

/// The engine: store, plugin host, data directory, and the drivers of the releases it serves.
pub struct Engine {
    store: Store,
    host: Arc<PluginHost>,
    data_dir: PathBuf,
    /// The driver of each release being served, by release name. Commands are sent while this
    /// lock is held, and a driver leaves only while holding it with nothing queued, so no
    /// command is ever sent to a driver that has gone.
    drivers: Mutex<HashMap<String, mpsc::UnboundedSender<Msg>>>,
    /// Set by [`Engine::serve`]: how served releases ask for approvals and report.
    service: OnceLock<(Arc<dyn Approvals>, Arc<dyn Observer>)>,
    /// The queues of stages whose queue policy limits them.
    queues: queue::Queues,
    /// Releases recovered since this engine started: a served driver leaves when idle and a
    /// new one comes for the next command; only the first recovers (re-asks approvals, sets
    /// timers).
    recovered: Mutex<std::collections::HashSet<String>>,
}

/// A message to a release's driver.
enum Msg {
    /// An effect's result, to apply.
    Event(Event, String),
    /// A task finished: its event, and its log to store in the same commit.
    TaskDone(Event, TaskLog),
    /// An effect ended with nothing to apply.
    Nothing,
    /// A deadline (an approval's timeout) passed: apply unless it no longer applies. Not an
    /// effect in flight: nobody waits for it.
    Deadline(Event),
    /// A command from outside, answered with the release after it or why it does not apply.
    Command {
        event: Event,
        actor: String,
        receipt: Option<Receipt>,
        reply: oneshot::Sender<Result<Release, EngineError>>,
    },
}

/// A finished task's log, stored with the transition that records the task's end.
struct TaskLog {
    stage: String,
    attempt: u32,
    task: String,
    lines: Vec<crate::types::LogLine>,
}

impl Engine {
    /// An engine over the store and workspaces in `data_dir`.
    pub fn new(store: Store, host: Arc<PluginHost>, data_dir: PathBuf) -> Self {
        Self {
            store,
            host,
            data_dir,
            drivers: Mutex::new(HashMap::new()),
            service: OnceLock::new(),
            queues: queue::Queues::default(),
            recovered: Mutex::default(),
        }
    }

    /// The plugin host.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// Serves releases from now on: every unfinished release gets a driver that lives until
    /// the release ends, and [`Engine::submit`] reaches them. Returns how many were resumed.
    pub fn serve(
        self: &Arc<Self>,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<usize, EngineError> {
        let _ = self.service.set((approvals, observer));
        let unfinished = self.unfinished()?;
        for release in &unfinished {
            self.ensure_driver(&release.name);
        }
        Ok(unfinished.len())
    }

    /// Starts driving a release (just created, say) if no driver has it yet.
    pub fn start(self: &Arc<Self>, name: &str) {
        self.ensure_driver(name);
    }

    /// Applies `event` to a served release, in order with everything else that happens to it;
    /// returns the release after the transition, or why it does not apply.
    pub async fn submit(
        self: &Arc<Self>,
        name: &str,
        event: Event,
        actor: &str,
    ) -> Result<Release, EngineError> {
        self.submit_with(name, event, actor, None).await
    }

    /// [`Engine::submit`], storing `receipt` in the commit of the transition.
    pub async fn submit_with(
        self: &Arc<Self>,
        name: &str,
        event: Event,
        actor: &str,
        receipt: Option<Receipt>,
    ) -> Result<Release, EngineError> {
        // A release with a driver exists; only one without needs looking up.
        let driven = {
            let drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
            drivers.get(name).is_some_and(|tx| !tx.is_closed())
        };
        if !driven && self.store.release(name)?.is_none() {
            return Err(EngineError::NoRelease(name.into()));
        }
        let (reply, answer) = oneshot::channel();
        let mut msg = Msg::Command {
            event,
            actor: actor.to_owned(),
            receipt,
            reply,
        };
        {
            let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
            // A driver that failed leaves its sender behind: start a fresh one once.
            for _ in 0..2 {
                let tx = drivers
                    .entry(name.to_owned())
                    .or_insert_with(|| self.spawn_driver(name));
                match tx.send(msg) {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(back)) => {
                        msg = back;
                        drivers.remove(name);
                    }
                }
            }
        }
        answer
            .await
            .map_err(|_| EngineError::Stopped(name.into()))?
    }

    /// How many releases have a driver now.
    pub fn driving(&self) -> usize {
        self.drivers.lock().map_or(0, |d| d.len())
    }

    fn ensure_driver(self: &Arc<Self>, name: &str) {
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if drivers.get(name).is_none_or(|tx| tx.is_closed()) {
            let tx = self.spawn_driver(name);
            drivers.insert(name.to_owned(), tx);
        }
    }

    /// Spawns a long-lived driver for `name`; the caller registers the sender.
    fn spawn_driver(self: &Arc<Self>, name: &str) -> mpsc::UnboundedSender<Msg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (approvals, observer) = self
            .service
            .get()
            .cloned()
            .unwrap_or_else(|| (Arc::new(Pending), Arc::new(Unobserved)));
        let (engine, name, driver_tx) = (self.clone(), name.to_owned(), tx.clone());
        tokio::spawn(async move {
            let result = engine
                .run_driver(&name, driver_tx, rx, true, approvals, observer)
                .await;
            if let Err(e) = result {
                tracing::error!(release = %name, "driver stopped: {e}");
                let mut drivers = engine.drivers.lock().unwrap_or_else(|e| e.into_inner());
                if drivers.get(&name).is_some_and(|tx| tx.is_closed()) {
                    drivers.remove(&name);
                }
            }
        });
        tx
    }

    /// Removes this driver from the registry if nothing is queued for it; true when it left.
    fn retire(&self, name: &str, rx: &mpsc::UnboundedReceiver<Msg>) -> bool {
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if !rx.is_empty() {
            return false;
        }
        drivers.remove(name);
        true
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a release of a loaded pipeline: picks artifact versions through their sources,
    /// records every plugin's digest, stores the snapshot and starts its first stages.
    pub async fn create_release(
        &self,
        loaded: &Loaded,
        options: CreateOptions,
    ) -> Result<Release, EngineError> {
        self.create_release_with(loaded, options, None).await
    }

    /// [`Engine::create_release`], storing `receipt` in the commit that creates the release.
    pub async fn create_release_with(
        &self,
        loaded: &Loaded,
        options: CreateOptions,
        receipt: Option<Receipt>,
    ) -> Result<Release, EngineError> {
        pipeline::check_plugins(loaded, &self.host)?;
        let plan = &loaded.plan;
        for alias in options.artifacts.keys() {
            if !plan.artifacts.iter().any(|a| &a.alias == alias) {
                let known: Vec<&str> = plan.artifacts.iter().map(|a| a.alias.as_str()).collect();
                return Err(EngineError::Artifact {
                    alias: alias.clone(),
                    reason: format!(
                        "the pipeline has no such artifact (it has: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        let mut artifacts = Vec::new();
        for spec in &plan.artifacts {
            let version = self
                .choose_version(plan, spec, options.artifacts.get(&spec.alias))
                .await?;
            artifacts.push(ChosenArtifact {
                alias: spec.alias.clone(),
                version,
            });
        }
        let mut digests = BTreeMap::new();
        for reference in plan.plugins() {
            let plugin = self
                .host
                .load(&PluginRef::parse(reference, Path::new(&plan.dir)))
                .map_err(|e| PipelineError {
                    diagnostics: vec![pipeline::Diagnostic {
                        message: e.to_string(),
                        at: None,
                        help: None,
                    }],
                })?;
            digests.insert(reference.clone(), plugin.digest().to_string());
        }
        let now = now_ms();
        let mut invalid = None;
        let release = self.store.create_release(
            &plan.name,
            &options.creator,
            |number| {
                let mut release = Release::new(core::NewRelease {
                    plan: plan.clone(),
                    number,
                    creator: options.creator.clone(),
                    description: options.description.clone(),
                    artifacts,
                    variables: options.variables.clone(),
                    digests: digests.into_iter().collect(),
                    created_at: now,
                });
                // Start the first stages in the same commit; `drive` finds their effects
                // through `core::recover`, exactly as after a restart.
                if let Err(e) = core::apply(&mut release, Event::Created, now) {
                    invalid = Some(e);
                }
                release
            },
            receipt,
        )?;
        match invalid {
            Some(e) => Err(e.into()),
            None => {
                self.queue_committed(&release);
                Ok(release)
            }
        }
    }

    /// The versions an artifact's source offers, newest first (by version order, then time).
    pub async fn versions(
        &self,
        plan: &pipeline::Plan,
        spec: &pipeline::ArtifactSpec,
    ) -> Result<Vec<Version>, EngineError> {
        let err = |reason: String| EngineError::Artifact {
            alias: spec.alias.clone(),
            reason,
        };
        let plugin = self
            .host
            .load(&PluginRef::parse(&spec.source, Path::new(&plan.dir)))
            .map_err(|e| err(e.to_string()))?;
        let sandbox = run::source_sandbox(plan, spec, &self.data_dir, None).map_err(err)?;
        let config = spec.config.to_string();
        let mut versions = self
            .host
            .list_versions(&plugin, sandbox, &config)
            .await
            .result
            .map_err(|f| err(format!("listing versions failed: {f}")))?;
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        versions.sort_by(|a, b| run::version_order(&b.id, &a.id));
        Ok(versions)
    }

    async fn choose_version(
        &self,
        plan: &pipeline::Plan,
        spec: &pipeline::ArtifactSpec,
        chosen: Option<&String>,
    ) -> Result<Version, EngineError> {
        let err = |reason: String| EngineError::Artifact {
            alias: spec.alias.clone(),
            reason,
        };
        let versions = self.versions(plan, spec).await?;
        let found = match (chosen, &spec.selector) {
            (Some(id), _) => versions.iter().find(|v| &v.id == id),
            (None, Selector::Latest) => versions.first(),
            (None, Selector::Exact(id)) => versions.iter().find(|v| &v.id == id),
            (None, Selector::Branch(b)) => versions.iter().find(|v| v.branch.as_ref() == Some(b)),
            (None, Selector::Tag(t)) => versions.iter().find(|v| v.tags.contains(t)),
        };
        found.cloned().ok_or_else(|| {
            let wanted = match (chosen, &spec.selector) {
                (Some(id), _) => format!("version `{id}`"),
                (None, Selector::Latest) => "any version".into(),
                (None, Selector::Exact(id)) => format!("version `{id}`"),
                (None, Selector::Branch(b)) => format!("a version from branch `{b}`"),
                (None, Selector::Tag(t)) => format!("a version tagged `{t}`"),
            };
            let known: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
            err(format!(
                "the source has no {wanted} (it has: {})",
                known.join(", ")
            ))
        })
    }

    /// Applies one event, commits it, and returns the effects to act on.
    async fn transition(
        &self,
        release: &mut Release,
        event: Event,
        actor: &str,
        log: Option<TaskLog>,
        observer: &dyn Observer,
    ) -> Result<Vec<Effect>, EngineError> {
        self.transition_with(release, event, actor, log, None, observer)
            .await
    }

    async fn transition_with(
        &self,
        release: &mut Release,
        event: Event,
        actor: &str,
        log: Option<TaskLog>,
        receipt: Option<Receipt>,
        observer: &dyn Observer,
    ) -> Result<Vec<Effect>, EngineError> {
        let mut what = event.describe(release);
        // `apply` changes nothing on an invalid event. If the commit below fails, the caller
        // gets the error and drops this copy: the stored release stays the source of truth.
        let mut effects = core::apply(release, event, now_ms())?;
        self.prepare_inline(release, &mut effects, &mut what).await;
        let name = release.name.clone();
        let key = log.as_ref().map(|l| LogKey {
            release: &name,
            stage: &l.stage,
            attempt: l.attempt,
            task: &l.task,
        });
        let log = key
            .as_ref()
            .zip(log.as_ref())
            .map(|(k, l)| (k, l.lines.as_slice()));
        self.store.save(release, actor, &what, log, receipt).await?;
        observer.committed(release, &what);
        self.queue_committed(release);
        Ok(effects)
    }

    /// Updates the stage queues after `release` was committed.
    fn queue_committed(&self, release: &Release) {
        self.queues
            .committed(release, &|pipeline| self.active_releases(pipeline));
    }

    /// The stored releases of `pipeline` still under way (to build its stage queues).
    fn active_releases(&self, pipeline: &str) -> Vec<Release> {
        match self.store.releases() {
            Ok(all) => all
                .into_iter()
                .filter(|r| r.pipeline == pipeline && r.state == ReleaseState::Active)
                .collect(),
            Err(e) => {
                tracing::error!("loading the queue of {pipeline}: {e}");
                Vec::new()
            }
        }
    }

    /// Sends the queues' decisions: a decision about `own` (the release this driver drives)
    /// goes into its own queue of messages, any other to that release's driver.
    fn dispatch(self: &Arc<Self>, own: Option<(&str, &mpsc::UnboundedSender<Msg>)>) {
        for decision in self.queues.take() {
            if let Some((name, tx)) = own
                && decision.release == name
            {
                let _ = tx.send(Msg::Deadline(decision.event));
                continue;
            }
            let engine = self.clone();
            tokio::spawn(async move {
                let name = decision.release;
                if let Err(e) = engine.submit(&name, decision.event, "engine").await {
                    // Its turn was not taken (canceled meanwhile, say): look at it again.
                    tracing::debug!(release = %name, "queue decision did not apply: {e}");
                    if let Ok(Some(release)) = engine.store.release(&name) {
                        let load = |pipeline: &str| engine.active_releases(pipeline);
                        engine.queues.reconsider(&release, &load);
                        engine.dispatch(None);
                    }
                }
            });
        }
    }

    /// A release without artifacts has nothing to fetch: its workspace is made here and the
    /// `Prepared` that follows goes into the same commit, instead of a commit of its own. Making
    /// an empty directory before the commit is safe: if the commit is lost, so is the reason to
    /// prepare, and a later prepare starts from a fresh directory anyway.
    async fn prepare_inline(
        &self,
        release: &mut Release,
        effects: &mut Vec<Effect>,
        what: &mut String,
    ) {
        if !release.artifacts.is_empty() {
            return;
        }
        while let Some(at) = effects
            .iter()
            .position(|e| matches!(e, Effect::Prepare { .. }))
        {
            let Effect::Prepare { stage, attempt } = effects.remove(at) else {
                unreachable!("matched above");
            };
            let event = match self.prepare(release, &stage, attempt).await {
                Ok(()) => Event::Prepared { stage, attempt },
                Err(reason) => Event::PrepareFailed {
                    stage,
                    attempt,
                    reason,
                },
            };
            let more = event.describe(release);
            match core::apply(release, event, now_ms()) {
                Ok(next) => {
                    what.push_str("; ");
                    what.push_str(&more);
                    effects.extend(next);
                }
                Err(e) => tracing::error!(release = %release.name, "inline prepare: {e}"),
            }
        }
    }

    /// Applies an event to a stored release from outside a drive (a redeploy, say).
    pub async fn apply(
        &self,
        name: &str,
        event: Event,
        actor: &str,
        observer: &dyn Observer,
    ) -> Result<Release, EngineError> {
        let mut release = self
            .store
            .release(name)?
            .ok_or_else(|| EngineError::NoRelease(name.into()))?;
        self.transition(&mut release, event, actor, None, observer)
            .await?;
        Ok(release)
    }

    /// Drives the release `name` until nothing more can happen without someone: it finished,
    /// or it waits on an approval nobody here decides, or on a manual stage. Unfinished work
    /// from before a restart is recovered first. (A local `sluice run`; the service keeps a
    /// driver per release instead, see [`Engine::serve`].)
    pub async fn drive(
        self: &Arc<Self>,
        name: &str,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<Release, EngineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.run_driver(name, tx, rx, false, approvals, observer)
            .await
    }

    /// The driver loop: recovers the release, then applies one message at a time. A local
    /// driver ends when nothing is in flight; a served one when the release has ended too.
    async fn run_driver(
        self: &Arc<Self>,
        name: &str,
        tx: mpsc::UnboundedSender<Msg>,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        served: bool,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<Release, EngineError> {
        let mut release = self
            .store
            .release(name)?
            .ok_or_else(|| EngineError::NoRelease(name.into()))?;
        let mut in_flight = 0usize;
        let mut cancels: HashMap<String, watch::Sender<bool>> = HashMap::new();

        let mut pending: Vec<Effect> = Vec::new();
        if release.revision == 0 {
            let created = Event::Created;
            pending.extend(
                self.transition(&mut release, created, "engine", None, observer.as_ref())
                    .await?,
            );
        } else if self
            .recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned())
        {
            let (events, effects) = core::recover(&release);
            pending.extend(effects);
            for event in events {
                pending.extend(
                    self.transition(&mut release, event, "engine", None, observer.as_ref())
                        .await?,
                );
            }
        }
        // A queued stage may have its turn now (after a restart, nothing else would say so).
        self.queue_committed(&release);
        loop {
            self.dispatch(Some((name, &tx)));
            for effect in pending.drain(..) {
                if let Effect::CancelTasks { stage } = &effect {
                    if let Some(cancel) = cancels.remove(stage) {
                        let _ = cancel.send(true);
                    }
                    continue;
                }
                let stage = effect_stage(&effect).map(str::to_owned);
                let canceled = stage.map(|stage| {
                    cancels
                        .entry(stage)
                        .or_insert_with(|| watch::channel(false).0)
                        .subscribe()
                });
                let act = Act {
                    tx: &tx,
                    canceled,
                    served,
                };
                if self.spawn(&release, effect, act, &approvals, &observer) {
                    in_flight += 1;
                }
            }
            // Idle: a local drive is done; a served driver leaves (the release waits in the
            // store, and the next command or timer starts a new driver).
            if in_flight == 0 && rx.is_empty() && (!served || self.retire(name, &rx)) {
                break;
            }
            let Some(msg) = rx.recv().await else { break };
            let (event, actor, log) = match msg {
                Msg::Command {
                    event,
                    actor,
                    receipt,
                    reply,
                } => {
                    let result = self
                        .command(&mut release, event, &actor, receipt, &observer)
                        .await;
                    let result = result.map(|effects| {
                        pending.extend(effects);
                        release.clone()
                    });
                    let _ = reply.send(result);
                    continue;
                }
                Msg::Deadline(event) => (event, "engine".to_owned(), None),
                Msg::Event(event, actor) => {
                    in_flight -= 1;
                    (event, actor, None)
                }
                Msg::TaskDone(event, log) => {
                    in_flight -= 1;
                    (event, "engine".to_owned(), Some(log))
                }
                Msg::Nothing => {
                    in_flight -= 1;
                    continue;
                }
            };
            match self
                .transition(&mut release, event, &actor, log, observer.as_ref())
                .await
            {
                Ok(effects) => pending.extend(effects),
                // A result about work that was canceled or superseded meanwhile: nothing to do.
                Err(EngineError::Transition(stale)) => {
                    tracing::debug!(release = %release.name, "ignored: {stale}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(release)
    }

    /// Applies a command. An approval is void when a plugin of its stage changed since the
    /// release was created: the stage fails and the approver hears why.
    async fn command(
        &self,
        release: &mut Release,
        event: Event,
        actor: &str,
        receipt: Option<Receipt>,
        observer: &Arc<dyn Observer>,
    ) -> Result<Vec<Effect>, EngineError> {
        if let Event::Decide {
            stage,
            attempt,
            approve: true,
            ..
        } = &event
            && let Some(reason) = self.changed_plugin(release, stage)
        {
            let void = Event::Void {
                stage: stage.clone(),
                attempt: *attempt,
                reason: reason.clone(),
            };
            // Only a pending approval can be void; otherwise the decision's own error stands.
            if core::apply(&mut release.clone(), void.clone(), now_ms()).is_ok() {
                self.transition(release, void, actor, None, observer.as_ref())
                    .await?;
                return Err(EngineError::Void(reason));
            }
        }
        self.transition_with(release, event, actor, None, receipt, observer.as_ref())
            .await
    }

    /// Why the plugins of `stage` are not those the release recorded, if they are not.
    fn changed_plugin(&self, release: &Release, stage: &str) -> Option<String> {
        let spec = release.plan.stages.iter().find(|s| s.name == stage)?;
        let refs = release.plan.artifacts.iter().map(|a| &a.source);
        refs.chain(spec.plugins())
            .find_map(|reference| self.release_plugin(release, reference).err())
    }

    /// Starts acting on an effect; true when it will answer on `tx`.
    fn spawn(
        self: &Arc<Self>,
        release: &Release,
        effect: Effect,
        act: Act<'_>,
        approvals: &Arc<dyn Approvals>,
        observer: &Arc<dyn Observer>,
    ) -> bool {
        let Act {
            tx,
            canceled,
            served,
        } = act;
        let effect_tx = tx.clone();
        let tx = tx.clone();
        // Runs `work` unless the stage's deployment is canceled first (dropping the work, and
        // with it a running task's store); either way the driver hears back once.
        let cancelable = move |work: std::pin::Pin<Box<dyn Future<Output = Msg> + Send>>| {
            let tx = effect_tx;
            let mut canceled = canceled;
            async move {
                let msg = match canceled.as_mut() {
                    Some(canceled) => tokio::select! {
                        msg = work => msg,
                        _ = canceled.wait_for(|c| *c) => Msg::Nothing,
                    },
                    None => work.await,
                };
                let _ = tx.send(msg);
            }
        };
        match effect {
            Effect::Prepare { stage, attempt } => {
                let (engine, release) = (self.clone(), release.clone());
                tokio::spawn(cancelable(Box::pin(async move {
                    let event = match engine.prepare(&release, &stage, attempt).await {
                        Ok(()) => Event::Prepared { stage, attempt },
                        Err(reason) => Event::PrepareFailed {
                            stage,
                            attempt,
                            reason,
                        },
                    };
                    Msg::Event(event, "engine".into())
                })));
                true
            }
            Effect::RunTask {
                stage,
                attempt,
                task,
            } => {
                let (engine, release, observer) = (self.clone(), release.clone(), observer.clone());
                tokio::spawn(cancelable(Box::pin(async move {
                    let (outcome, lines) = engine
                        .run_task(&release, &stage, attempt, task, observer)
                        .await;
                    let log = TaskLog {
                        stage: stage.clone(),
                        attempt,
                        task: release
                            .plan
                            .stages
                            .iter()
                            .find(|s| s.name == stage)
                            .and_then(|s| s.tasks.get(task))
                            .map_or_else(|| task.to_string(), |t| t.name.clone()),
                        lines,
                    };
                    let event = Event::TaskFinished {
                        stage,
                        attempt,
                        task,
                        outcome,
                    };
                    Msg::TaskDone(event, log)
                })));
                true
            }
            Effect::RequestApproval { stage, kind } => {
                if !approvals.decides() {
                    return false;
                }
                let (approvals, release) = (approvals.clone(), release.clone());
                let attempt = release
                    .stage(&stage)
                    .and_then(|s| s.attempts.last())
                    .map_or(1, |a| a.number);
                tokio::task::spawn_blocking(move || {
                    let msg = match approvals.decide(&release, &stage, kind) {
                        Some((approve, comment)) => Msg::Event(
                            Event::Decide {
                                stage,
                                attempt,
                                kind,
                                by: release.creator.clone(),
                                groups: Vec::new(),
                                approve,
                                comment,
                                authority: Authority::Override,
                                defer_until: None,
                            },
                            release.creator.clone(),
                        ),
                        None => Msg::Nothing,
                    };
                    let _ = tx.send(msg);
                });
                true
            }
            Effect::Timer { at, event } if served => {
                // A served release's driver may have left by then: the timer comes back
                // through `submit`, which starts one. Not in flight: nobody waits for it.
                let (engine, name) = (self.clone(), release.name.clone());
                tokio::spawn(async move {
                    let wait = at.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    if let Err(e) = engine.submit(&name, event, "engine").await {
                        tracing::debug!(release = %name, "timer did not apply: {e}");
                    }
                });
                false
            }
            Effect::Timer { at, event } => {
                // A deferred deployment is work to come; an approval's expiry only a deadline.
                let work = matches!(event, Event::Due { .. });
                tokio::spawn(async move {
                    let wait = at.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let msg = if work {
                        Msg::Event(event, "engine".into())
                    } else {
                        Msg::Deadline(event)
                    };
                    let _ = tx.send(msg);
                });
                work
            }
            Effect::EvaluateGates {
                stage,
                attempt,
                kind,
                at,
            } => {
                let (engine, release) = (self.clone(), release.clone());
                tokio::spawn(cancelable(Box::pin(async move {
                    let wait = at.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let results = engine.evaluate_gates(&release, &stage, attempt, kind).await;
                    let event = Event::GatesEvaluated {
                        stage,
                        attempt,
                        kind,
                        results,
                    };
                    Msg::Event(event, "engine".into())
                })));
                true
            }
            Effect::Rollback { stage } if served => {
                let (engine, failed) = (self.clone(), release.clone());
                tokio::spawn(async move { engine.roll_back(&failed, &stage).await });
                false
            }
            Effect::Rollback { stage } => {
                tracing::warn!(
                    release = %release.name,
                    "{stage}: rolling back redeploys another release, which `sluice serve` does; nothing rolled back here"
                );
                false
            }
            Effect::CancelTasks { .. } | Effect::Finished(_) => false,
        }
    }

    /// Rolls stage `stage` back after `failed`'s post-deployment gates failed on it: redeploys
    /// the release that most recently succeeded on the stage.
    async fn roll_back(self: &Arc<Self>, failed: &Release, stage: &str) {
        let succeeded_at = |release: &Release| {
            let attempt = release.stage(stage)?.attempts.last()?;
            matches!(
                attempt.state,
                core::StageState::Succeeded | core::StageState::PartiallySucceeded
            )
            .then_some(attempt.finished_at?)
        };
        let last_good = match self.store.releases() {
            Ok(all) => all
                .into_iter()
                .filter(|r| {
                    r.pipeline == failed.pipeline
                        && r.name != failed.name
                        && r.state != ReleaseState::Abandoned
                })
                .filter_map(|r| Some((succeeded_at(&r)?, r.name)))
                .max(),
            Err(e) => {
                tracing::error!(release = %failed.name, "{stage}: cannot roll back: {e}");
                return;
            }
        };
        let Some((_, target)) = last_good else {
            tracing::warn!(
                release = %failed.name,
                "{stage}: no other release succeeded on this stage: nothing to roll back to"
            );
            return;
        };
        let event = Event::Rollback {
            stage: stage.to_owned(),
            of: failed.name.clone(),
        };
        if let Err(e) = self.submit(&target, event, "engine").await {
            tracing::error!(release = %target, "{stage}: rollback of {} refused: {e}", failed.name);
        }
    }

    /// Every release that is still active.
    pub fn unfinished(&self) -> Result<Vec<Release>, EngineError> {
        Ok(self
            .store
            .releases()?
            .into_iter()
            .filter(|r| r.state == ReleaseState::Active)
            .collect())
    }

    fn workspace(&self, release: &str, stage: &str, attempt: u32) -> PathBuf {
        self.data_dir
            .join("workspaces")
            .join(release)
            .join(stage)
            .join(attempt.to_string())
    }
}

/// How a driver acts on effects: where results go, what cancels them, whether it is served.
struct Act<'a> {
    tx: &'a mpsc::UnboundedSender<Msg>,
    canceled: Option<watch::Receiver<bool>>,
    served: bool,
}

/// The stage an effect works in, for canceling it.
fn effect_stage(effect: &Effect) -> Option<&str> {
    match effect {
        Effect::Prepare { stage, .. }
        | Effect::RunTask { stage, .. }
        | Effect::EvaluateGates { stage, .. } => Some(stage),
        _ => None,
    }
}

/// The digest recorded for `reference` when the release was created.
fn recorded_digest(release: &Release, reference: &str) -> Option<Digest> {
    release
        .digests
        .iter()
        .find(|(r, _)| r == reference)
        .and_then(|(_, d)| Digest::parse(d))
}
