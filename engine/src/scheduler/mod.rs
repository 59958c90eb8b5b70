//! The scheduler: the imperative shell around the pure core. One *driver* task owns each release
//! it drives (an actor, as in mini-redis): it feeds events to [`core::apply`] one at a time,
//! **commits every transition to the store before acting on its effects**, and applies the
//! effects on tokio: workspaces and artifact fetches, tasks in the sandbox (logs stored per
//! task), approval requests, timers. Decisions and deploys from outside (the HTTP API) are
//! commands sent to the release's driver, so they are ordered with its own events: two racing
//! decisions on one approval make exactly one transition. On start, unfinished releases are
//! resumed through [`core::recover`].
//!
//! Here: the engine, its registry of served drivers and the dispatch of stage-queue decisions.
//! The driver is in `driver.rs`, acting on effects in `effects.rs` (the work itself in
//! `run.rs`), committing a transition in `commit.rs`, creating a release in `create.rs`.

mod commit;
mod create;
mod driver;
mod effects;
mod queue;
mod recovery;
mod remote;
mod remote_gates;
mod run;
mod vars;
mod workspaces;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};

pub use create::CreateOptions;
use driver::{Driver, Mode, Msg};
pub use recovery::Recovery;
pub use remote::{Ack, Dispatch, JobFuture, Jobs, Remote, TaskDone};
pub use workspaces::{Sweep, Swept};

use crate::core::{self, ApprovalKind, Event, Release};
use crate::pipeline::{NotSettable, PipelineError};
use crate::plugin::PluginHost;
use crate::store::{LogKey, Receipt, Store, StoreError};
use crate::types::{LogEvent, Name, escape, path_under};

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline is invalid.
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An artifact version could not be chosen. Shown escaped (one line): the alias and a
    /// version may be a releaser's, the reason and the versions a source's.
    #[error("artifact `{}`: {}", escape(.alias), escape(.reason))]
    Artifact {
        /// Alias.
        alias: String,
        /// Why.
        reason: String,
    },
    /// A release-time variable the pipeline does not declare settable (or `sluice.*`).
    #[error(transparent)]
    NotSettable(#[from] NotSettable),
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

/// The engine: store, plugin host, data directory, and the drivers of the releases it serves.
pub struct Engine {
    /// Where every transition is committed before its effects are acted on.
    store: Store,
    /// Loads and runs the plugins: artifact sources, tasks, gates.
    host: Arc<PluginHost>,
    /// Holds the workspaces (`workspaces/<release>/<stage>/<attempt>`); grants and variables
    /// name it as `$(sluice.data-dir)`.
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
    /// Seals secret outputs before they are stored, opens them for later tasks.
    keys: crate::secrets::Keyring,
    /// The data directory, resolved once: no grant may reach it.
    fence: crate::pipeline::Fence,
    /// Set by the service: runs the jobs of stages with a pool on agents.
    jobs: OnceLock<remote::SharedJobs>,
}

impl Engine {
    /// An engine over the store and workspaces in `data_dir`.
    pub fn new(store: Store, host: Arc<PluginHost>, data_dir: PathBuf) -> Self {
        Self {
            store,
            host,
            keys: crate::secrets::Keyring::from_env(&data_dir),
            fence: crate::pipeline::Fence::new(&data_dir, None),
            data_dir,
            drivers: Mutex::new(HashMap::new()),
            service: OnceLock::new(),
            queues: queue::Queues::default(),
            recovered: Mutex::default(),
            jobs: OnceLock::new(),
        }
    }

    /// Hands the jobs of stages with a pool to `jobs` (the service's dispatcher) from now on;
    /// set once, before [`Engine::serve`]. Without it such a stage fails: only a service has
    /// agents.
    pub fn dispatch_to(&self, jobs: Arc<dyn Jobs>) {
        let _ = self.jobs.set(jobs);
    }

    /// The plugin host.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// Serves releases from now on: every unfinished release gets a driver that lives until
    /// the release ends, and [`Engine::submit`] reaches them. Returns at once, with the
    /// [`Recovery`] of the resumed releases: done when each driver has committed its recovery
    /// events and set its timers and work going again.
    pub fn serve(
        self: &Arc<Self>,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<Recovery, EngineError> {
        let _ = self.service.set((approvals, observer));
        let unfinished = self.unfinished()?;
        let (recovery, tokens) = Recovery::new(unfinished.len());
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        for (release, token) in unfinished.iter().zip(tokens) {
            // A driver already there (started by a command meanwhile) recovers it itself.
            if drivers.get(&release.name).is_none_or(|tx| tx.is_closed()) {
                let tx = self.spawn_driver(&release.name, Some(token));
                drivers.insert(release.name.clone(), tx);
            } else {
                token.recovered();
            }
        }
        Ok(recovery)
    }

    /// Starts driving a release (just created, say) if no driver has it yet.
    pub fn start(self: &Arc<Self>, name: &str) {
        self.ensure_driver(name);
    }

    /// Applies `event` to a served release, in order with everything else that happens to it,
    /// storing `receipt` (if any) in the commit of the transition; returns the release after the
    /// transition, or why it does not apply.
    pub async fn submit(
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
                    .or_insert_with(|| self.spawn_driver(name, None));
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
            let tx = self.spawn_driver(name, None);
            drivers.insert(name.to_owned(), tx);
        }
    }

    /// Spawns a long-lived driver for `name`, handing it `recovering` (its part of the
    /// start-up [`Recovery`]) if resumed at start; the caller registers the sender.
    fn spawn_driver(
        self: &Arc<Self>,
        name: &str,
        recovering: Option<recovery::Token>,
    ) -> mpsc::UnboundedSender<Msg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (approvals, observer) = self
            .service
            .get()
            .cloned()
            .unwrap_or_else(|| (Arc::new(Pending), Arc::new(Unobserved)));
        let (engine, name, driver_tx) = (self.clone(), name.to_owned(), tx.clone());
        tokio::spawn(async move {
            let opened = Driver::open(
                engine.clone(),
                &name,
                Mode::Served,
                approvals,
                observer,
                (driver_tx, rx),
            );
            let result = match opened {
                Ok(driver) => driver.recovering(recovering).run().await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!(release = %name, "driver stopped: {e}");
                // The next driver recovers the release again: what this one had in flight
                // may not be stored (its tasks would stay `running` otherwise).
                engine
                    .recovered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&name);
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

    /// Updates the stage queues after `release` was committed.
    fn queue_committed(&self, release: &Release) {
        self.queues
            .committed(release, &|pipeline| self.active_releases(pipeline));
    }

    /// The stored releases of `pipeline` still under way (to build its stage queues),
    /// through the pipeline-and-state index. A read that fails is an error, never an empty
    /// queue.
    fn active_releases(&self, pipeline: &str) -> Result<Vec<Release>, StoreError> {
        self.store.active_releases(Some(pipeline))
    }

    /// Sends the queues' decisions: a decision about `own` (the release this driver drives)
    /// goes into its own queue of messages, any other to that release's driver.
    fn dispatch(self: &Arc<Self>, own: Option<(&str, &mpsc::UnboundedSender<Msg>)>) {
        for decision in self.queues.take() {
            if let Some((name, tx)) = own
                && decision.release == name
            {
                let _ = tx.send(Msg::Unawaited(decision.event));
                continue;
            }
            let engine = self.clone();
            tokio::spawn(async move {
                let name = decision.release;
                if let Err(e) = engine.submit(&name, decision.event, "engine", None).await {
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
        self.transition(&mut release, event, actor, None, None, observer)
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
        let channel = mpsc::unbounded_channel();
        Driver::open(
            self.clone(),
            name,
            Mode::Local,
            approvals,
            observer,
            channel,
        )?
        .run()
        .await
    }

    /// As [`Engine::drive`], with `event` (by `actor`) applied inside the drive, after its
    /// recovery of work from before: a local redeploy, whose task then runs here (applied
    /// before the drive, its started task would read as one a restart interrupted). Why the
    /// event does not apply, if it does not, comes back in place of the release.
    pub async fn drive_after(
        self: &Arc<Self>,
        name: &str,
        event: Event,
        actor: &str,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<Release, EngineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply, mut answer) = oneshot::channel();
        let command = Msg::Command {
            event,
            actor: actor.to_owned(),
            receipt: None,
            reply,
        };
        // The receiver is held here: the send cannot fail.
        let _ = tx.send(command);
        let driven = Driver::open(
            self.clone(),
            name,
            Mode::Local,
            approvals,
            observer,
            (tx, rx),
        )?
        .run()
        .await;
        if let Ok(Err(refused)) = answer.try_recv() {
            return Err(refused);
        }
        driven
    }

    /// Every release that is still active, read through the state index (only those are
    /// decoded).
    pub fn unfinished(&self) -> Result<Vec<Release>, EngineError> {
        Ok(self.store.active_releases(None)?)
    }

    /// `DATA/workspaces/RELEASE/STAGE/ATTEMPT`, each part a [`Name`] joined by `path_under`,
    /// which checks the result stays under the workspaces directory: a workspace is cleared
    /// with `remove_dir_all`, so a release whose names are not names gets none.
    fn workspace(&self, release: &str, stage: &str, attempt: u32) -> Result<PathBuf, String> {
        let attempt = attempt.to_string();
        let names = [release, stage, attempt.as_str()]
            .into_iter()
            .map(Name::new)
            .collect::<Result<Vec<Name>, _>>()
            .map_err(|e| format!("no workspace for this deployment: {e}"))?;
        let names: Vec<&Name> = names.iter().collect();
        path_under(&self.data_dir.join("workspaces"), &names, "").map_err(|e| e.to_string())
    }
}
