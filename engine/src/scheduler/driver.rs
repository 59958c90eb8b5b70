//! A release's driver: the actor that owns one release while it is driven. It recovers the
//! release, then takes one message at a time (an effect's result, a deadline or queue turn, a
//! command from outside), commits the transition and acts on its effects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::effects::{Act, effect_stage};
use super::{Approvals, Engine, EngineError, Observer};
use crate::core::{self, Effect, Event, Release};
use crate::store::{Health, Receipt, StoreError, now_ms};
use crate::types::LogLine;

/// Whether a driver serves its release or drives it for a local `sluice run`; it decides when
/// the driver ends and what timers and rollbacks mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A local drive: it ends when nothing is in flight; its timers are waited for in the
    /// drive (a deferred deployment as work to come); a rollback, which redeploys another
    /// release, is left to the service.
    Local,
    /// A driver of the service: it leaves when idle (the next command or timer starts a new
    /// one); its timers come back through [`Engine::submit`]; a rollback redeploys the release
    /// that last succeeded on the stage.
    Served,
}

/// A message to a release's driver.
pub(super) enum Msg {
    /// An effect's result, to apply, and who it is from.
    Event(Event, String),
    /// A task finished: its event, and its log to store in the same commit.
    TaskDone(Event, TaskLog),
    /// An agent's report (of a job's prepare or task): applied, and `ack` told whether it
    /// was committed.
    Reported {
        /// What to apply.
        event: Event,
        /// `agent:NAME`.
        actor: String,
        /// A task's log, stored in the same commit.
        log: Option<TaskLog>,
        /// Told after the commit.
        ack: super::remote::Ack,
    },
    /// An effect ended with nothing to apply.
    Nothing,
    /// An event no effect in flight waits for: an approval's deadline passed, or the stage
    /// queue gave the release its turn or skipped it. Applied unless it no longer applies;
    /// nobody waits for it.
    Unawaited(Event),
    /// A command from outside, answered with the release after it or why it does not apply.
    Command {
        /// What to apply.
        event: Event,
        /// Who asks, for the audit trail.
        actor: String,
        /// The request's response, stored in the commit of the transition.
        receipt: Option<Receipt>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Release, EngineError>>,
    },
}

/// A finished task's log, stored with the transition that records the task's end.
pub(super) struct TaskLog {
    /// The task's stage.
    pub(super) stage: String,
    /// The stage's attempt the task ran in.
    pub(super) attempt: u32,
    /// The task's name (its index when the plan has no such task).
    pub(super) task: String,
    /// What the task wrote.
    pub(super) lines: Vec<LogLine>,
}

/// One release's driver, with everything it keeps between two messages.
pub(super) struct Driver {
    /// Commits the transitions (its store) and acts on the effects (its host, its queues).
    engine: Arc<Engine>,
    /// The release as last committed; while the driver lives it is the release's only writer.
    release: Release,
    /// Served or local: when the driver ends, and what its timers and rollbacks do.
    mode: Mode,
    /// A sender to the driver itself: each effect answers through a clone, and queue decisions
    /// about this release come back through it.
    tx: mpsc::UnboundedSender<Msg>,
    /// The messages, taken one at a time so everything that happens to the release is ordered.
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Decides approval requests for a local operator, or leaves them to commands.
    approvals: Arc<dyn Approvals>,
    /// Sees every commit and every task's log lines.
    observer: Arc<dyn Observer>,
    /// Effects started that will still answer: a driver does not end while any is out.
    in_flight: usize,
    /// The switch that cancels the running work of each stage (flipped by `CancelTasks`).
    cancels: HashMap<String, watch::Sender<bool>>,
    /// Effects of committed transitions not acted on yet.
    pending: Vec<Effect>,
    /// Its part of the start-up recovery, given back once recovered and acting again.
    recovering: Option<super::recovery::Token>,
    /// The ended (or replaced) deployments whose workspaces were looked at already.
    tidied: HashSet<(String, u32)>,
    /// Messages taken while waiting for a full disk to have space again, applied next.
    deferred: VecDeque<Msg>,
}

impl Driver {
    /// A driver for the stored release `name`, taking its messages from `channel`.
    pub(super) fn open(
        engine: Arc<Engine>,
        name: &str,
        mode: Mode,
        approvals: Arc<dyn Approvals>,
        observer: Arc<dyn Observer>,
        channel: (mpsc::UnboundedSender<Msg>, mpsc::UnboundedReceiver<Msg>),
    ) -> Result<Self, EngineError> {
        let release = engine
            .store
            .release(name)?
            .ok_or_else(|| EngineError::NoRelease(name.into()))?;
        let (tx, rx) = channel;
        Ok(Self {
            engine,
            release,
            mode,
            tx,
            rx,
            approvals,
            observer,
            in_flight: 0,
            cancels: HashMap::new(),
            pending: Vec::new(),
            recovering: None,
            tidied: HashSet::new(),
            deferred: VecDeque::new(),
        })
    }

    /// Hands the driver its part of the start-up recovery.
    pub(super) fn recovering(mut self, token: Option<super::recovery::Token>) -> Self {
        self.recovering = token;
        self
    }

    /// The driver loop: recovers the release, then applies one message at a time. A local
    /// driver ends when nothing is in flight; a served one when the release has ended too.
    pub(super) async fn run(mut self) -> Result<Release, EngineError> {
        self.recover().await?;
        // A queued stage may have its turn now (after a restart, nothing else would say so).
        self.engine.queue_committed(&self.release);
        loop {
            self.engine
                .dispatch(Some((self.release.name.as_str(), &self.tx)));
            self.act();
            self.engine.tidy_workspaces(&self.release, &mut self.tidied);
            // Recovered: its events committed, its timers and work set going again.
            if let Some(token) = self.recovering.take() {
                token.recovered();
            }
            // Idle: a local drive is done; a served driver leaves (the release waits in the
            // store, and the next command or timer starts a new driver).
            if self.in_flight == 0
                && self.deferred.is_empty()
                && self.rx.is_empty()
                && self.may_end()
            {
                break;
            }
            let msg = match self.deferred.pop_front() {
                Some(msg) => msg,
                None => match self.rx.recv().await {
                    Some(msg) => msg,
                    None => break,
                },
            };
            self.on_message(msg).await?;
        }
        Ok(self.release)
    }

    /// Starts a new release's first stages, or (the first time since the engine started)
    /// recovers the work an earlier engine left unfinished.
    async fn recover(&mut self) -> Result<(), EngineError> {
        if self.release.revision == 0 {
            self.commit_stored(Event::Created, "engine", None).await?;
        } else if self
            .engine
            .recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.release.name.clone())
        {
            let (events, effects) = core::recover(&self.release);
            self.pending.extend(effects);
            for event in events {
                self.commit_stored(event, "engine", None).await?;
            }
        }
        Ok(())
    }

    /// Whether an idle driver ends: a local one does; a served one leaves the registry unless
    /// something was sent to it meanwhile.
    fn may_end(&self) -> bool {
        match self.mode {
            Mode::Local => true,
            Mode::Served => self.engine.retire(&self.release.name, &self.rx),
        }
    }

    /// Starts acting on the pending effects, counting those that will answer.
    fn act(&mut self) {
        for effect in self.pending.drain(..) {
            if let Effect::CancelTasks { stage } = &effect {
                if let Some(cancel) = self.cancels.remove(stage) {
                    let _ = cancel.send(true);
                }
                continue;
            }
            let stage = effect_stage(&effect).map(str::to_owned);
            let canceled = stage.map(|stage| {
                self.cancels
                    .entry(stage)
                    .or_insert_with(|| watch::channel(false).0)
                    .subscribe()
            });
            let act = Act {
                tx: &self.tx,
                canceled,
                mode: self.mode,
                approvals: &self.approvals,
                observer: &self.observer,
            };
            if self.engine.act_on(&self.release, effect, act) {
                self.in_flight += 1;
            }
        }
    }

    /// Applies one message: a command is answered; anything else is committed, unless it is
    /// about work canceled or superseded meanwhile. An error here stops the driver.
    async fn on_message(&mut self, msg: Msg) -> Result<(), EngineError> {
        let (event, actor, log) = match msg {
            Msg::Command {
                event,
                actor,
                receipt,
                reply,
            } => {
                let result = self.on_command(event, &actor, receipt).await;
                let _ = reply.send(result.map(|()| self.release.clone()));
                return Ok(());
            }
            Msg::Reported {
                event,
                actor,
                log,
                ack,
            } => {
                self.in_flight -= 1;
                return match self.commit_stored(event, &actor, log.as_ref()).await {
                    Ok(()) => {
                        let _ = ack.send(Ok(self.release.clone()));
                        Ok(())
                    }
                    // About work canceled or superseded meanwhile: the agent hears 409.
                    Err(EngineError::Transition(stale)) => {
                        let _ = ack.send(Err(EngineError::Transition(stale)));
                        Ok(())
                    }
                    Err(e) => {
                        let _ = ack.send(Err(EngineError::Stopped(self.release.name.clone())));
                        Err(e)
                    }
                };
            }
            Msg::Unawaited(event) => (event, "engine".to_owned(), None),
            Msg::Event(event, actor) => {
                self.in_flight -= 1;
                (event, actor, None)
            }
            Msg::TaskDone(event, log) => {
                self.in_flight -= 1;
                (event, "engine".to_owned(), Some(log))
            }
            Msg::Nothing => {
                self.in_flight -= 1;
                return Ok(());
            }
        };
        match self.commit_stored(event, &actor, log.as_ref()).await {
            Ok(()) => Ok(()),
            // A result about work that was canceled or superseded meanwhile: nothing to do.
            Err(EngineError::Transition(stale)) => {
                tracing::debug!(release = %self.release.name, "ignored: {stale}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Applies a command. An approval is void when a plugin of its stage changed since the
    /// release was created: the stage fails and the approver hears why.
    async fn on_command(
        &mut self,
        event: Event,
        actor: &str,
        receipt: Option<Receipt>,
    ) -> Result<(), EngineError> {
        if let Event::Decide {
            stage,
            attempt,
            approve: true,
            ..
        } = &event
            && let Some(reason) = self.changed_plugin(stage)
        {
            let void = Event::Void {
                stage: stage.clone(),
                attempt: *attempt,
                reason: reason.clone(),
            };
            // Only a pending approval can be void; otherwise the decision's own error stands.
            if core::apply(&mut self.release.clone(), void.clone(), now_ms()).is_ok() {
                self.engine
                    .transition(
                        &mut self.release,
                        void,
                        actor,
                        None,
                        None,
                        self.observer.as_ref(),
                    )
                    .await?;
                return Err(EngineError::Void(reason));
            }
        }
        self.commit(event, actor, None, receipt).await
    }

    /// Why the plugins of `stage` are not those the release recorded, if they are not.
    fn changed_plugin(&self, stage: &str) -> Option<String> {
        let release = &self.release;
        let spec = release.plan.stages.iter().find(|s| s.name == stage)?;
        let refs = release.plan.artifacts.iter().map(|a| &a.source);
        refs.chain(spec.plugins())
            .find_map(|reference| self.engine.release_plugin(release, reference).err())
    }

    /// Commits an event nobody waits for (an effect's result, a deadline, recovery): when the
    /// disk is full, a served driver waits for space and commits it then, so a task's end is
    /// never lost to a full disk while the process lives (commands meanwhile hear the 507 at
    /// once).
    async fn commit_stored(
        &mut self,
        event: Event,
        actor: &str,
        log: Option<&TaskLog>,
    ) -> Result<(), EngineError> {
        loop {
            match self.commit(event.clone(), actor, log, None).await {
                // A local run ends with the error instead (`sluice resume` carries on).
                Err(EngineError::Store(e)) if e.is_no_space() && self.mode == Mode::Served => {
                    tracing::warn!(
                        release = %self.release.name,
                        "waiting for space on the data directory's disk to store: {e}"
                    );
                    if !self.wait_for_space().await {
                        return Err(EngineError::Store(e));
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits until the store is no longer latched full, answering commands with the full
    /// disk meanwhile and keeping every other message for later. False if the driver's
    /// channel closed.
    async fn wait_for_space(&mut self) -> bool {
        let mut health = self.engine.store.health_changes();
        loop {
            let msg = tokio::select! {
                _ = health.wait_for(|h| !matches!(h, Health::Full(_))) => return true,
                msg = self.rx.recv() => msg,
            };
            match msg {
                Some(Msg::Command { reply, .. }) => {
                    let full = match &*health.borrow() {
                        Health::Full(why) => why.clone(),
                        _ => "the disk was full".into(),
                    };
                    let _ = reply.send(Err(EngineError::Store(StoreError::NoSpace(full))));
                }
                Some(other) => self.deferred.push_back(other),
                None => return false,
            }
        }
    }

    /// Applies and commits one event; its effects wait in `pending` to be acted on. When the
    /// commit fails, the release stays as stored (`transition` works on a copy).
    async fn commit(
        &mut self,
        event: Event,
        actor: &str,
        log: Option<&TaskLog>,
        receipt: Option<Receipt>,
    ) -> Result<(), EngineError> {
        let effects = self
            .engine
            .transition(
                &mut self.release,
                event,
                actor,
                log,
                receipt,
                self.observer.as_ref(),
            )
            .await?;
        self.pending.extend(effects);
        Ok(())
    }
}
