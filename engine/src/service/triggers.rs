//! Release triggers: continuous deployment (poll an artifact's source, a release for every new
//! version that passes the filters) and scheduled releases (cron in a time zone).
//!
//! Exactly once, across restarts and clock steps: each release a trigger creates is committed
//! with a receipt naming what caused it (the version, or the scheduled time), in the same commit,
//! and a trigger never creates a release whose receipt exists. Receipt keys start with a newline,
//! which no API idempotency key (`user\nkey`) does.
//!
//! The first poll of a continuous trigger releases the newest version and records the older ones
//! as seen: history is not replayed. A schedule fires at its times while the service runs; a
//! time missed while it was down is not made up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{InternalError, Service, ServiceError};
use crate::pipeline::{ContinuousTrigger, Plan, ReleaseTriggers, Schedule};
use crate::scheduler::CreateOptions;
use crate::scheduler::EngineError;
use crate::store::StoreError;
use crate::store::{Receipt, now_ms};
use crate::types::Version;

/// The longest the trigger loop sleeps, so that a pipeline changed through the API is picked up.
const TICK_MS: u64 = 1_000;

/// Why a release trigger did not do its work (the trigger loop logs it and tries again later).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The continuous trigger names an artifact the pipeline does not have.
    #[error("no artifact `{0}`")]
    NoArtifact(String),
    /// The artifact's source did not list its versions.
    #[error(transparent)]
    Versions(EngineError),
    /// A receipt could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The release could not be created.
    #[error(transparent)]
    Create(Box<ServiceError>),
}

/// When each pipeline's triggers are due next, for the triggers as they were then.
struct Due {
    triggers: ReleaseTriggers,
    poll_at: u64,
    fire_at: Option<u64>,
}

/// Starts the trigger loop; it ends when the service stops or is dropped.
pub(super) fn spawn(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let mut stopping = service.stopping.subscribe();
    tokio::spawn(async move {
        let mut due: HashMap<String, Due> = HashMap::new();
        loop {
            let Some(service) = weak.upgrade() else {
                return;
            };
            let now = now_ms();
            let mut wake = now + TICK_MS;
            for pipeline in service.pipelines() {
                let plan = &pipeline.loaded.plan;
                let triggers = &plan.triggers;
                if triggers.continuous.is_none() && triggers.schedule.is_none() {
                    continue;
                }
                let entry = due.entry(plan.name.clone()).or_insert_with(|| Due {
                    triggers: ReleaseTriggers::default(),
                    poll_at: now,
                    fire_at: None,
                });
                if entry.triggers != *triggers {
                    *entry = Due {
                        triggers: triggers.clone(),
                        poll_at: now,
                        fire_at: triggers.schedule.as_ref().and_then(|s| s.next_after(now)),
                    };
                }
                if let Some(cd) = &triggers.continuous {
                    if now >= entry.poll_at {
                        if let Err(e) = service.poll(plan, cd).await {
                            tracing::warn!(pipeline = %plan.name, "continuous trigger: {e}");
                        }
                        entry.poll_at = now_ms().saturating_add(crate::types::millis(cd.interval));
                    }
                    wake = wake.min(entry.poll_at);
                }
                if let (Some(schedule), Some(at)) = (&triggers.schedule, entry.fire_at) {
                    if now >= at {
                        if let Err(e) = service.fire(plan, schedule, at).await {
                            tracing::warn!(pipeline = %plan.name, "scheduled release: {e}");
                        }
                        entry.fire_at = schedule.next_after(at.max(now));
                    }
                    wake = entry.fire_at.map_or(wake, |at| wake.min(at));
                }
            }
            drop(service);
            let sleep = Duration::from_millis(wake.saturating_sub(now_ms()));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    });
}

/// The receipt key of a continuous trigger's artifact (`None`: the baseline marker).
fn seen_key(pipeline: &str, alias: &str, version: Option<&str>) -> String {
    match version {
        Some(id) => format!("\ntrigger\n{pipeline}\ncontinuous\n{alias}\n{id}"),
        None => format!("\ntrigger\n{pipeline}\ncontinuous\n{alias}"),
    }
}

/// A receipt that records the release it created.
fn receipt(key: String) -> Receipt {
    Receipt::lasting(key, |release| release.name.clone().into_bytes())
}

impl Service {
    /// Asks the artifact's source for versions; creates a release for each new one (oldest
    /// first). Returns the releases created.
    pub(super) async fn poll(
        &self,
        plan: &Plan,
        cd: &ContinuousTrigger,
    ) -> Result<Vec<String>, TriggerError> {
        let spec = plan
            .artifacts
            .iter()
            .find(|a| a.alias == cd.artifact)
            .ok_or_else(|| TriggerError::NoArtifact(cd.artifact.clone()))?;
        let versions = self
            .engine
            .versions(plan, spec)
            .await
            .map_err(TriggerError::Versions)?;
        let wanted: Vec<&Version> = versions
            .iter()
            .filter(|v| cd.branch.is_none() || v.branch == cd.branch)
            .filter(|v| cd.tag.as_ref().is_none_or(|t| v.tags.contains(t)))
            .collect();
        let store = self.store();
        let known = |key: &str| store.receipt(key).map(|r| r.is_some());
        let baseline = seen_key(&plan.name, &cd.artifact, None);
        let first = !known(&baseline)?;
        let mut created = Vec::new();
        // Oldest first; on the first poll only the newest is new.
        for (age, version) in wanted.iter().enumerate().rev() {
            let key = seen_key(&plan.name, &cd.artifact, Some(&version.id));
            if known(&key)? {
                continue;
            }
            if first && age > 0 {
                store.put_receipt(&key, b"")?;
                continue;
            }
            let options = CreateOptions {
                artifacts: BTreeMap::from([(cd.artifact.clone(), version.id.clone())]),
                creator: "trigger:continuous".into(),
                description: Some(format!(
                    "continuous deployment: {} {}",
                    cd.artifact, version.id
                )),
                ..CreateOptions::default()
            };
            let release = self
                .create_release(&plan.name, options, Some(receipt(key)))
                .await
                .map_err(|e| TriggerError::Create(Box::new(e)))?;
            tracing::info!(pipeline = %plan.name, release = %release.name, "created for {} {}", cd.artifact, version.id);
            created.push(release.name);
        }
        if first {
            store.put_receipt(&baseline, b"")?;
        }
        Ok(created)
    }

    /// Creates the release that pipeline `name`'s schedule calls for at `at` (Unix
    /// milliseconds), unless it was created already (the clock stepped back, the service
    /// restarted); returns the release created, if one was.
    pub async fn fire_schedule(&self, name: &str, at: u64) -> Result<Option<String>, ServiceError> {
        let plan = self.pipeline(name)?.loaded.plan;
        let schedule = plan.triggers.schedule.as_ref().ok_or_else(|| {
            ServiceError::Conflict(format!("pipeline {name} has no release schedule"))
        })?;
        self.fire(&plan, schedule, at)
            .await
            .map_err(|e| InternalError::Trigger(e).into())
    }

    async fn fire(
        &self,
        plan: &Plan,
        schedule: &Schedule,
        at: u64,
    ) -> Result<Option<String>, TriggerError> {
        let key = format!("\ntrigger\n{}\nschedule\n{at}", plan.name);
        if self.store().receipt(&key)?.is_some() {
            return Ok(None);
        }
        // On the zone's wall clock, as the schedule is written.
        let zone = jiff::tz::TimeZone::get(&schedule.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        let when = i64::try_from(at)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(|| at.to_string(), |t| t.to_zoned(zone).to_string());
        let options = CreateOptions {
            creator: "trigger:schedule".into(),
            description: Some(format!("scheduled: `{}` at {when}", schedule.cron)),
            ..CreateOptions::default()
        };
        let release = self
            .create_release(&plan.name, options, Some(receipt(key)))
            .await
            .map_err(|e| TriggerError::Create(Box::new(e)))?;
        Ok(Some(release.name))
    }
}
