//! Receipts expire: an idempotent change's answer replays for `limits.receipt-ttl` (24 h by
//! default), then a lookup treats it as absent and the sweep deletes it. The sweep runs every
//! [`every`] while the service lives, in batches of at most [`BATCH`] receipts, one write
//! transaction each, so it never holds the store's one writer for long; a batch that finds
//! fewer than [`BATCH`] ends the round.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Service;
use crate::store::{StoreError, now_ms};

/// Receipts deleted per write transaction at most.
pub const BATCH: usize = 256;

/// How often the sweep runs: every `ttl`, at most every minute.
pub fn every(ttl: Duration) -> Duration {
    ttl.min(Duration::from_secs(60))
}

impl Service {
    /// The answer stored for an idempotent request under `key` (`user\nkey`), unless it is
    /// older than `receipt-ttl`.
    pub fn receipt(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store().fresh_receipt(key, self.receipts_cut_off())
    }

    /// How many idempotency receipts are stored (expired ones not swept yet included).
    pub fn receipt_count(&self) -> u64 {
        self.store().receipt_count()
    }

    /// Deletes every receipt older than `receipt-ttl` now, a batch at a time; returns how many
    /// went. Blocking (each batch is a commit): the sweep loop runs it off the async threads.
    pub fn sweep_receipts(&self) -> Result<usize, StoreError> {
        let cut_off = self.receipts_cut_off();
        let mut swept = 0;
        loop {
            let batch = self.store().sweep_receipts(cut_off, BATCH)?;
            swept += batch;
            if batch < BATCH || self.is_stopping() {
                return Ok(swept);
            }
        }
    }

    /// Receipts stored before this (Unix milliseconds) have expired.
    fn receipts_cut_off(&self) -> u64 {
        let ttl = crate::types::millis(self.config.limits.receipt_ttl);
        now_ms().saturating_sub(ttl)
    }
}

/// Starts the sweep; it ends when the service stops or is dropped.
pub(super) fn spawn(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let mut stopping = service.stopping.subscribe();
    let mut ticks = tokio::time::interval(every(service.config.limits.receipt_ttl));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let Some(service) = weak.upgrade() else {
                return;
            };
            match tokio::task::spawn_blocking(move || service.sweep_receipts()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!("swept {n} expired idempotency receipts"),
                Ok(Err(e)) => tracing::warn!("sweeping expired idempotency receipts: {e}"),
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceConfig;

    #[test]
    fn receipt_ttl_is_read_and_a_bad_or_zero_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let load = |ttl: &str| {
            let limits = format!("[limits]\nreceipt-ttl = \"{ttl}\"\n");
            std::fs::write(&path, format!("pipelines = \"p\"\n{limits}")).unwrap();
            ServiceConfig::load(&path)
        };
        let config = load("90m").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.receipt_ttl, Duration::from_secs(90 * 60));
        let shown = path.display();
        let e = load("a day").unwrap_err();
        assert!(
            e.starts_with(&format!("{shown}: limits.receipt-ttl: ")),
            "{e}"
        );
        let e = load("500ms").unwrap_err();
        assert_eq!(
            e,
            format!("{shown}: limits.receipt-ttl must be at least 1s")
        );
        let e = load("9999999999h").unwrap_err();
        assert!(
            e.contains("limits.receipt-ttl: ") && e.contains("too long"),
            "{e}"
        );

        std::fs::write(&path, "pipelines = \"p\"\n").unwrap();
        let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.receipt_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(every(config.limits.receipt_ttl), Duration::from_secs(60));
        assert_eq!(every(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
