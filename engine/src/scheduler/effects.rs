//! Acting on effects: each committed effect starts on tokio (a workspace, a task, a gate, an
//! approval request, a timer, a rollback) and answers its driver with one message, unless its
//! stage's deployment is canceled first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::driver::{Mode, Msg, TaskLog};
use super::{Approvals, Engine, Observer};
use crate::core::{Authority, Effect, Event, Release};
use crate::store::now_ms;

/// How a driver acts on one effect: where the result goes, what cancels it, and what the
/// driver's mode makes of timers and rollbacks.
pub(super) struct Act<'a> {
    /// The driver's own queue of messages: the effect's result goes there.
    pub(super) tx: &'a mpsc::UnboundedSender<Msg>,
    /// Turns true when the deployment of the effect's stage is canceled; `None` for an effect
    /// that works in no stage (nothing cancels it).
    pub(super) canceled: Option<watch::Receiver<bool>>,
    /// Served or local: whether a timer comes back through [`Engine::submit`] and whether a
    /// rollback is made.
    pub(super) mode: Mode,
    /// Asked to decide an approval request (on a blocking thread), unless it never decides.
    pub(super) approvals: &'a Arc<dyn Approvals>,
    /// Sees a running task's log lines as they come.
    pub(super) observer: &'a Arc<dyn Observer>,
}

impl Engine {
    /// Starts acting on an effect; true when it will answer on `act.tx`.
    pub(super) fn act_on(
        self: &Arc<Self>,
        release: &Release,
        effect: Effect,
        act: Act<'_>,
    ) -> bool {
        let Act {
            tx,
            canceled,
            mode,
            approvals,
            observer,
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
            Effect::Prepare { stage, attempt } if super::remote::pooled(release, &stage) => {
                tokio::spawn(cancelable(self.remote_prepare(release, stage, attempt)));
                true
            }
            Effect::RunTask {
                stage,
                attempt,
                task,
            } if super::remote::pooled(release, &stage) => {
                tokio::spawn(cancelable(self.remote_task(release, stage, attempt, task)));
                true
            }
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
                                authority: Authority::Operator,
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
            Effect::Timer { at, event } if mode == Mode::Served => {
                // A served release's driver may have left by then: the timer comes back
                // through `submit`, which starts one. Not in flight: nobody waits for it.
                let (engine, name) = (self.clone(), release.name.clone());
                tokio::spawn(async move {
                    let wait = at.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    if let Err(e) = engine.submit(&name, event, "engine", None).await {
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
                        Msg::Unawaited(event)
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
                    // Where the stage runs: on an agent of its pool, or here.
                    if super::remote::pooled(&release, &stage) {
                        return engine.remote_gates(&release, stage, attempt, kind).await;
                    }
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
            Effect::Rollback { stage } if mode == Mode::Served => {
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
    /// the release that most recently succeeded on the stage (the stage-success index's first
    /// row other than `failed`).
    async fn roll_back(self: &Arc<Self>, failed: &Release, stage: &str) {
        let last_good = match self.store.last_good(&failed.pipeline, stage, &failed.name) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(release = %failed.name, "{stage}: cannot roll back: {e}");
                return;
            }
        };
        let Some(target) = last_good else {
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
        if let Err(e) = self.submit(&target, event, "engine", None).await {
            tracing::error!(release = %target, "{stage}: rollback of {} refused: {e}", failed.name);
        }
    }
}

/// The stage an effect works in, for canceling it.
pub(super) fn effect_stage(effect: &Effect) -> Option<&str> {
    match effect {
        Effect::Prepare { stage, .. }
        | Effect::RunTask { stage, .. }
        | Effect::EvaluateGates { stage, .. } => Some(stage),
        _ => None,
    }
}
