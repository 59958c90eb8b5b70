//! Committing a transition: one event applied to a release and stored (with its audit entry,
//! a task's log, a request's receipt) before anyone acts on its effects; a release without
//! artifacts has its prepare folded into the same commit.

use super::driver::TaskLog;
use super::{Engine, EngineError, Observer};
use crate::core::{self, Effect, Event, Release};
use crate::store::{LogKey, Receipt, now_ms};

impl Engine {
    /// Applies one event, commits it (with the task's log and the request's receipt, if any),
    /// and returns the effects to act on. `release` changes only once the commit is durable:
    /// when it fails, the caller keeps the release as stored (and may apply the event again).
    pub(super) async fn transition(
        &self,
        release: &mut Release,
        event: Event,
        actor: &str,
        log: Option<&TaskLog>,
        receipt: Option<Receipt>,
        observer: &dyn Observer,
    ) -> Result<Vec<Effect>, EngineError> {
        let mut what = event.describe(release);
        // The transition is made on a copy: an invalid event changes nothing, and neither does
        // a commit that fails (a full disk, say), so the driver's release stays the stored one.
        let mut next = release.clone();
        let mut effects = core::apply(&mut next, event, now_ms())?;
        self.prepare_inline(&mut next, &mut effects, &mut what)
            .await;
        let key = log.map(|l| LogKey {
            release: &next.name,
            stage: &l.stage,
            attempt: l.attempt,
            task: &l.task,
        });
        let log = key.as_ref().zip(log).map(|(k, l)| (k, l.lines.as_slice()));
        self.store.save(&next, actor, &what, log, receipt).await?;
        *release = next;
        observer.committed(release, &what);
        self.queue_committed(release);
        Ok(effects)
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
        // A stage on an agent is prepared there: its `Prepare` queues its job.
        while let Some(at) = effects.iter().position(
            |e| matches!(e, Effect::Prepare { stage, .. } if !super::remote::pooled(release, stage)),
        ) {
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
}
