//! The scheduler: the imperative shell around the pure core. It owns each release it drives,
//! feeds events to [`core::apply`], **commits every transition to the store before acting on its
//! effects**, and applies the effects on tokio: workspaces and artifact fetches, tasks in the
//! sandbox (logs stored per task), approval requests. On start it resumes unfinished releases
//! through [`core::recover`].

mod run;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::{self, ApprovalKind, ChosenArtifact, Effect, Event, Release, ReleaseState};
use crate::pipeline::{self, Loaded, PipelineError, Selector};
use crate::plugin::{Digest, LogEvent, PluginHost, PluginRef, Version};
use crate::store::{LogKey, Store, StoreError, now_ms};

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
}

/// Sees what the engine does, for a live view.
pub trait Observer: Send + Sync {
    /// A transition was committed.
    fn committed(&self, _release: &Release, _what: &str) {}
    /// A task wrote a log line or reported progress.
    fn task_event(&self, _release: &str, _stage: &str, _task: &str, _event: &LogEvent) {}
}

/// Decides pending approvals for the local operator (a prompt, or `--approve all`).
pub trait Approvals: Send + Sync {
    /// Returns `Some((approve, comment))` to decide now, `None` to leave the approval pending.
    /// Called on a blocking thread: it may wait for a person.
    fn decide(&self, release: &Release, stage: &str, kind: ApprovalKind) -> Option<(bool, String)>;
}

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

/// The engine: store, plugin host, data directory.
pub struct Engine {
    store: Store,
    host: Arc<PluginHost>,
    data_dir: PathBuf,
}

/// A message from an effect back to the driving loop.
enum Msg {
    Event(Event, String),
    /// A task finished: its event, and its log to store in the same commit.
    TaskDone(Event, TaskLog),
    Nothing,
}

/// A finished task's log, stored with the transition that records the task's end.
struct TaskLog {
    stage: String,
    attempt: u32,
    task: String,
    lines: Vec<crate::plugin::LogLine>,
}

impl Engine {
    /// An engine over the store and workspaces in `data_dir`.
    pub fn new(store: Store, host: Arc<PluginHost>, data_dir: PathBuf) -> Self {
        Self {
            store,
            host,
            data_dir,
        }
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
        let refs = plan.artifacts.iter().map(|a| &a.source).chain(
            plan.stages
                .iter()
                .flat_map(|s| s.tasks.iter().map(|t| &t.plugin)),
        );
        for reference in refs {
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
        let release = self
            .store
            .create_release(&plan.name, &options.creator, |number| {
                let mut release = Release::new(
                    plan.clone(),
                    number,
                    options.creator.clone(),
                    options.description.clone(),
                    artifacts,
                    options.variables.clone(),
                    digests.into_iter().collect(),
                    now,
                );
                // Start the first stages in the same commit; `drive` finds their effects
                // through `core::recover`, exactly as after a restart.
                if let Err(e) = core::apply(&mut release, Event::Created, now) {
                    invalid = Some(e);
                }
                release
            })?;
        match invalid {
            Some(e) => Err(e.into()),
            None => Ok(release),
        }
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
        let what = describe(release, &event);
        // `apply` changes nothing on an invalid event. If the commit below fails, the caller
        // gets the error and drops this copy: the stored release stays the source of truth.
        let effects = core::apply(release, event, now_ms())?;
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
        self.store.save(release, actor, &what, log).await?;
        observer.committed(release, &what);
        Ok(effects)
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
    /// from before a restart is recovered first.
    pub async fn drive(
        self: &Arc<Self>,
        name: &str,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
    ) -> Result<Release, EngineError> {
        let mut release = self
            .store
            .release(name)?
            .ok_or_else(|| EngineError::NoRelease(name.into()))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let mut in_flight = 0usize;

        let mut pending: Vec<Effect> = Vec::new();
        if release.revision == 0 {
            let created = Event::Created;
            pending.extend(
                self.transition(&mut release, created, "engine", None, observer.as_ref())
                    .await?,
            );
        } else {
            let (events, effects) = core::recover(&release);
            pending.extend(effects);
            for event in events {
                pending.extend(
                    self.transition(&mut release, event, "engine", None, observer.as_ref())
                        .await?,
                );
            }
        }
        loop {
            for effect in pending.drain(..) {
                if self.spawn(&release, effect, &tx, &approvals, &observer) {
                    in_flight += 1;
                }
            }
            if in_flight == 0 {
                break;
            }
            let Some(msg) = rx.recv().await else { break };
            in_flight -= 1;
            let (event, actor, log) = match msg {
                Msg::Event(event, actor) => (event, actor, None),
                Msg::TaskDone(event, log) => (event, "engine".to_owned(), Some(log)),
                Msg::Nothing => continue,
            };
            pending.extend(
                self.transition(&mut release, event, &actor, log, observer.as_ref())
                    .await?,
            );
        }
        Ok(release)
    }

    /// Starts acting on an effect; true when it will answer on `tx`.
    fn spawn(
        self: &Arc<Self>,
        release: &Release,
        effect: Effect,
        tx: &mpsc::UnboundedSender<Msg>,
        approvals: &Arc<dyn Approvals>,
        observer: &Arc<dyn Observer>,
    ) -> bool {
        let tx = tx.clone();
        match effect {
            Effect::Prepare { stage, attempt } => {
                let (engine, release) = (self.clone(), release.clone());
                tokio::spawn(async move {
                    let event = match engine.prepare(&release, &stage, attempt).await {
                        Ok(()) => Event::Prepared { stage },
                        Err(reason) => Event::PrepareFailed { stage, reason },
                    };
                    let _ = tx.send(Msg::Event(event, "engine".into()));
                });
                true
            }
            Effect::RunTask {
                stage,
                attempt,
                task,
            } => {
                let (engine, release, observer) = (self.clone(), release.clone(), observer.clone());
                tokio::spawn(async move {
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
                        task,
                        outcome,
                    };
                    let _ = tx.send(Msg::TaskDone(event, log));
                });
                true
            }
            Effect::RequestApproval { stage, kind } => {
                let (approvals, release) = (approvals.clone(), release.clone());
                tokio::task::spawn_blocking(move || {
                    let msg = match approvals.decide(&release, &stage, kind) {
                        Some((approve, comment)) => Msg::Event(
                            Event::Decide {
                                stage,
                                by: release.creator.clone(),
                                groups: Vec::new(),
                                approve,
                                comment,
                                on_behalf_of_all: true,
                            },
                            release.creator.clone(),
                        ),
                        None => Msg::Nothing,
                    };
                    let _ = tx.send(msg);
                });
                true
            }
            // Nothing runs concurrently with a local drive that could be canceled from here;
            // the service mode cancels through the same effect.
            Effect::CancelTasks { .. } | Effect::Finished(_) => false,
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

/// The digest recorded for `reference` when the release was created.
fn recorded_digest(release: &Release, reference: &str) -> Option<Digest> {
    release
        .digests
        .iter()
        .find(|(r, _)| r == reference)
        .and_then(|(_, d)| Digest::parse(d))
}

fn describe(release: &Release, event: &Event) -> String {
    let task_name = |stage: &str, task: &usize| {
        release
            .plan
            .stages
            .iter()
            .find(|s| s.name == stage)
            .and_then(|s| s.tasks.get(*task))
            .map_or_else(|| task.to_string(), |t| t.name.clone())
    };
    match event {
        Event::Created => "release created".into(),
        Event::Deploy { stage } => format!("{stage}: deploy requested"),
        Event::Decide {
            stage,
            by,
            approve,
            comment,
            ..
        } => {
            let verb = if *approve { "approved" } else { "rejected" };
            if comment.is_empty() {
                format!("{stage}: {verb} by {by}")
            } else {
                format!("{stage}: {verb} by {by}: {comment}")
            }
        }
        Event::Prepared { stage } => format!("{stage}: artifacts fetched"),
        Event::PrepareFailed { stage, reason } => format!("{stage}: preparing failed: {reason}"),
        Event::TaskFinished {
            stage,
            task,
            outcome,
        } => {
            let task = task_name(stage, task);
            match outcome {
                core::TaskOutcome::Succeeded { warnings, .. } if warnings.is_empty() => {
                    format!("{stage}: task {task} succeeded")
                }
                core::TaskOutcome::Succeeded { warnings, .. } => {
                    format!(
                        "{stage}: task {task} succeeded with issues: {}",
                        warnings.join("; ")
                    )
                }
                core::TaskOutcome::Failed(why) => format!("{stage}: task {task} failed: {why}"),
            }
        }
        Event::TaskInterrupted { stage, task } => format!(
            "{stage}: task {} {}",
            task_name(stage, task),
            core::INTERRUPTED
        ),
        Event::TaskRestarted { stage, task } => {
            format!(
                "{stage}: task {} restarted after an engine restart (idempotent)",
                task_name(stage, task)
            )
        }
        Event::Cancel { stage } => format!("{stage}: canceled"),
        Event::Abandon => "release abandoned".into(),
    }
}
