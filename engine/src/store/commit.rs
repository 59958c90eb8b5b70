//! The committer: one thread writes the transitions that arrive together in one transaction
//! and one fsync (group commit); each caller waits for the commit that holds its write. Their
//! index rows wait (`deferred.rs`): the committer applies them once enough wait, with its
//! checkpoint, and when it closes.
//!
//! Once the writes (its own and the store's other commits) stop for [`QUIET`], it commits a
//! checkpoint: an empty commit that records redb's allocator state (it looks every [`QUIET`]
//! while idle: an atomic load). A crash while the store is quiet then reopens at once; a crash
//! in the middle of a burst makes the next open rebuild that state from every tree (about a
//! second per 500 MiB here). Recording it in every commit would cost each one a second fsync:
//! on the hot path, 4 ms of W1's 9 (BENCHMARKS.md).

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::watch;

use super::deferred::Deferred;
use super::handle::Handle;
use super::summary::Indexed;
use super::{
    AUDIT, AuditEntry, LOGS, LogKey, RELEASES, Receipt, Store, StoreError, fault, now_ms, receipts,
    refusals, storage,
};
use crate::core::Release;
use crate::types::LogLine;

/// One caller's write: a release after a transition, its audit entry, maybe a task log.
pub(super) struct Job {
    release: Vec<u8>,
    /// Its summary and approvals, for the indexes (made on the caller's thread; taken once
    /// committed, to wait in `deferred.rs`).
    indexed: Option<Indexed>,
    name: String,
    audit: AuditEntry,
    log: Option<(String, Vec<u8>)>,
    receipt: Option<receipts::Sealed>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Writes per transaction at most, so one fsync never waits on an unbounded batch.
const MAX_BATCH: usize = 256;

/// How long the writes stop before the committer records a checkpoint.
pub(super) const QUIET: Duration = Duration::from_millis(100);

/// What the committer works with besides its jobs.
pub(super) struct Committer {
    pub(super) db: Arc<Handle>,
    pub(super) audit_len: Arc<watch::Sender<u64>>,
    pub(super) receipts: Arc<receipts::Counts>,
    /// Checkpoints after [`QUIET`] (`None`: never on its own; the fault tests, whose I/O
    /// sequences must not depend on timing).
    pub(super) quiet: Option<Duration>,
    /// How many checkpoints it committed on its own so far.
    pub(super) checkpoints: Arc<watch::Sender<u64>>,
    /// The index rows waiting (`deferred.rs`).
    pub(super) deferred: Arc<Deferred>,
}

pub(super) fn commit_loop(committer: Committer, jobs: mpsc::Receiver<Job>) {
    let Committer {
        db,
        audit_len,
        receipts,
        quiet,
        checkpoints,
        deferred,
    } = committer;
    loop {
        let first = match quiet {
            Some(quiet) => match jobs.recv_timeout(quiet) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if db.owes_checkpoint() || deferred.waiting() {
                        match deferred.checkpoint(&db) {
                            Ok(()) => {
                                checkpoints.send_modify(|n| *n += 1);
                            }
                            Err(e) => tracing::debug!("no checkpoint: {e}"),
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A failed batch is answered with its error, never acknowledged: a full disk is the
        // callers' 507 (the handle latched it and reopens for the reads), any other I/O error
        // is fail-stop (the handle's hook ran before the error got here).
        let result = write_batch(&db, &mut batch, &receipts, &deferred);
        if let Err(e) = &result {
            tracing::warn!("a commit of {} writes failed: {e}", batch.len());
        }
        if let Ok(len) = result {
            refusals::forward(&audit_len, len);
        }
        for job in batch {
            if result.is_ok() {
                fault::after_commit();
            }
            let _ = job.done.send(result.clone().map(|_| ()));
        }
        if let Ok(len) = result {
            deferred.apply_if_due(&db, len);
        }
    }
    // Closing: what waits is applied now rather than by the next open.
    if let Err(e) = deferred.fresh(&db) {
        tracing::debug!("the waiting index rows are left to the next open: {e}");
    }
}

/// Writes a batch in one transaction; returns the audit trail's new length. Its index rows
/// wait (`deferred.rs`), added once it committed.
fn write_batch(
    db: &Handle,
    batch: &mut [Job],
    counts: &receipts::Counts,
    deferred: &Deferred,
) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let (first, count) = {
        let mut releases = txn.open_table(RELEASES).map_err(storage)?;
        let mut audit = txn.open_table(AUDIT).map_err(storage)?;
        let mut logs = txn.open_table(LOGS).map_err(storage)?;
        let mut receipts = receipts::Writer::open(&txn)?;
        let first = super::audit::end_of(&audit)?;
        for (next, job) in (first..).zip(batch.iter()) {
            releases
                .insert(job.name.as_str(), job.release.as_slice())
                .map_err(storage)?;
            let entry = AuditEntry {
                seq: next,
                ..job.audit.clone()
            };
            let entry =
                serde_json::to_vec(&entry).map_err(|e| StoreError::Storage(e.to_string()))?;
            audit.insert(next, entry.as_slice()).map_err(storage)?;
            if let Some((key, lines)) = &job.log {
                logs.insert(key.as_str(), lines.as_slice())
                    .map_err(storage)?;
            }
            if let Some(receipt) = &job.receipt {
                receipts.put(receipt)?;
            }
        }
        (first, receipts.count(counts)?)
    };
    let mut waiting = deferred.adding();
    txn.commit().map_err(storage)?;
    // A release's jobs come in commit order (one writer per release): a later one's summary
    // replaces an earlier one's, also within a batch.
    for (seq, job) in (first..).zip(batch.iter_mut()) {
        if let Some(indexed) = job.indexed.take() {
            waiting.add(indexed, seq);
        }
    }
    drop(waiting);
    counts.publish(count);
    Ok(first + batch.len() as u64)
}

impl Store {
    /// Stores a release after a transition, with its audit entry and (when a task just
    /// finished) the task's log, durably; returns once the commit holding them is on disk.
    pub async fn save(
        &self,
        release: &Release,
        actor: &str,
        what: &str,
        log: Option<(&LogKey<'_>, &[LogLine])>,
        receipt: Option<Receipt>,
    ) -> Result<(), StoreError> {
        let encode = |e: serde_json::Error| StoreError::Storage(e.to_string());
        let log = match log {
            Some((key, lines)) => Some((key.key(), serde_json::to_vec(lines).map_err(encode)?)),
            None => None,
        };
        let (done, committed) = tokio::sync::oneshot::channel();
        let job = Job {
            release: serde_json::to_vec(release).map_err(encode)?,
            indexed: Some(Indexed::of(release)?),
            name: release.name.clone(),
            audit: AuditEntry {
                seq: 0,
                release: release.name.clone(),
                revision: release.revision,
                at: now_ms(),
                actor: actor.to_owned(),
                what: what.to_owned(),
            },
            log,
            receipt: receipt.map(|receipt| receipt.seal(release)),
            done,
        };
        let closed = || StoreError::Storage("the store is closed".into());
        self.writer
            .as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())?;
        committed.await.map_err(|_| closed())?
    }
}
