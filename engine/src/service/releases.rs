//! Releases through the service: creating one (and starting to drive it), reading one,
//! submitting deploy/cancel/abandon, and following a task's log.

use super::{InternalError, LogFollow, Service, ServiceError, User};
use crate::core::{Event, Release};
use crate::scheduler::CreateOptions;
use crate::store::{LogKey, Receipt};

impl Service {
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
            .create_release(&pipeline.loaded, options, receipt)
            .await?;
        self.pending.update(&release);
        self.changed.send_modify(|n| *n += 1);
        self.engine.start(&release.name);
        Ok(release)
    }

    /// The release called `name`: not found, or quarantined (its record does not decode).
    pub fn release(&self, name: &str) -> Result<Release, ServiceError> {
        if let Some(release) = self.store().release(name).map_err(InternalError::Store)? {
            return Ok(release);
        }
        match self
            .store()
            .quarantined_one(name)
            .map_err(InternalError::Store)?
        {
            Some(q) => Err(ServiceError::Conflict(quarantined(&q))),
            None => Err(ServiceError::NotFound(format!(
                "there is no release `{name}`"
            ))),
        }
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
            .submit(release, event, &user.name, receipt)
            .await?)
    }

    /// Follows one task's log: the lines so far, then each as it is written, until the task
    /// ends.
    pub fn follow_log(&self, key: &LogKey<'_>) -> Result<LogFollow, ServiceError> {
        let release = self.release(key.release)?;
        LogFollow::start(&self.live, &self.engine, &release, key)
    }
}

/// What a request for a quarantined release hears.
pub(super) fn quarantined(q: &crate::store::Quarantined) -> String {
    format!(
        "release `{}` is quarantined: its stored record does not decode ({}); its bytes are kept \
         in the quarantine table (GET /api/v1/quarantine lists it), every other release goes on",
        crate::types::escape(&q.key),
        crate::types::escape(&q.reason)
    )
}
