//! The indexes, applied in batches off the commit path.
//!
//! A commit of release records writes the records and their audit entries only; the index rows
//! they call for (`index.rs`) wait in memory, in [`Pending`], until one commit applies them
//! for many releases at once: a leaf page of an index then takes the rows of a batch instead of
//! being rewritten (and synced) by every commit. Written per commit, the rows cost W1 a third
//! (BENCHMARKS.md).
//!
//! When they are applied: once [`DUE_RELEASES`] releases or [`DUE_ENTRIES`] audit entries
//! wait (the committer, after the batch that made it so); when the writes stop (with the
//! committer's checkpoint); before any read of an index (each reader calls [`Deferred::fresh`]);
//! when the store closes; and on open, from the trail.
//!
//! Why nothing is lost: the store's `meta` row `index-applied` says how far the trail is
//! indexed. It moves only in a commit that applied every entry before it, and every commit of
//! a release record appends an audit entry naming it. So the open re-indexes, from their
//! records, the releases named in the entries after it (at most what was waiting: a crash loses
//! no row). And the records' commit takes the lock of [`Pending`] before it commits and adds its
//! rows before it lets go: no apply can move the mark past a commit whose rows it has not seen.
//!
//! Reads: every reader of an index applies what waits first, in one commit of its own, so it
//! sees every commit acknowledged before it began. When that commit is refused (a full disk),
//! the lists read the indexes as they are (behind by what waits; their reads keep answering),
//! and the reads the engine acts on (active releases, a rollback's target, the drain, a
//! release's trail) fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use redb::{ReadableTable, WriteTransaction};

use super::handle::{Handle, Txn};
use super::summary::Indexed;
use super::{AUDIT, AuditEntry, META, RELEASES, StoreError, decode, index, storage};
use crate::core::Release;

/// The `meta` row: the audit trail's length up to which every entry is indexed.
pub(super) const APPLIED: &str = "index-applied";

/// Releases waiting before the committer applies them.
pub(super) const DUE_RELEASES: usize = 256;

/// Audit entries waiting before the committer applies them.
pub(super) const DUE_ENTRIES: usize = 4096;

/// The rows waiting for their commit.
#[derive(Default)]
pub(super) struct Pending {
    /// Each release's latest summary (a later commit replaces an earlier one's).
    releases: HashMap<String, Indexed>,
    /// (release, seq) of each audit entry naming a release.
    audit: Vec<(String, u64)>,
    /// The trail's length after the last commit added here.
    through: u64,
}

impl Pending {
    /// Adds the rows of `indexed` (the release as committed) and of its audit entry `seq`.
    pub(super) fn add(&mut self, indexed: Indexed, seq: u64) {
        self.audit.push((indexed.summary.name.clone(), seq));
        self.releases.insert(indexed.summary.name.clone(), indexed);
        self.through = self.through.max(seq + 1);
    }

    fn due(&self) -> bool {
        self.releases.len() >= DUE_RELEASES || self.audit.len() >= DUE_ENTRIES
    }

    /// Writes every waiting row in `txn`, and the mark (at least `through`).
    fn write(&self, txn: &WriteTransaction, through: u64) -> Result<(), StoreError> {
        self.write_rows(txn)?;
        mark(txn, self.through.max(through))
    }

    fn write_rows(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut rows = index::Writer::open(txn);
        for indexed in self.releases.values() {
            rows.put(indexed)?;
        }
        for (release, seq) in &self.audit {
            rows.audit(release, *seq)?;
        }
        Ok(())
    }
}

/// [`Pending`], and whether anything waits (read without the lock, which a commit holds
/// through its fsync).
#[derive(Default)]
pub(super) struct Deferred {
    pending: Mutex<Pending>,
    waiting: AtomicBool,
}

/// The lock a commit of records holds across its commit (see the module).
pub(super) struct Adding<'d> {
    pending: MutexGuard<'d, Pending>,
    waiting: &'d AtomicBool,
}

impl std::ops::Deref for Adding<'_> {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        &self.pending
    }
}

impl std::ops::DerefMut for Adding<'_> {
    fn deref_mut(&mut self) -> &mut Pending {
        &mut self.pending
    }
}

impl Drop for Adding<'_> {
    fn drop(&mut self) {
        let waiting = !self.pending.audit.is_empty() || !self.pending.releases.is_empty();
        self.waiting.store(waiting, Ordering::SeqCst);
    }
}

/// How an apply commits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// A plain durable commit.
    Plain,
    /// A checkpoint (`commit.rs`): the writes stopped.
    Checkpoint,
}

impl Deferred {
    /// Nothing waiting, the trail indexed up to `through`.
    pub(super) fn new(through: u64) -> Self {
        Self {
            pending: Mutex::new(Pending {
                through,
                ..Pending::default()
            }),
            waiting: AtomicBool::new(false),
        }
    }

    /// Takes the lock, for a commit of records: call it after the commit's writes, commit,
    /// then add the rows (on success) before dropping it.
    pub(super) fn adding(&self) -> Adding<'_> {
        Adding {
            pending: self.pending.lock().unwrap_or_else(|e| e.into_inner()),
            waiting: &self.waiting,
        }
    }

    /// How many releases' rows wait.
    #[cfg(test)]
    pub(super) fn releases_waiting(&self) -> usize {
        self.adding().releases.len()
    }

    /// Whether anything waits.
    pub(super) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether enough waits that the committer should apply it now.
    pub(super) fn due(&self) -> bool {
        self.waiting() && self.adding().due()
    }

    /// Applies what waits, in one commit of its own (nothing when nothing waits): every index
    /// then says what every commit acknowledged before this call says.
    pub(super) fn fresh(&self, db: &Handle) -> Result<(), StoreError> {
        self.apply(db, Commit::Plain)
    }

    /// As [`Deferred::fresh`]; when the store refuses the commit, the indexes are read as
    /// they are (a list, which keeps answering while the disk is full).
    pub(super) fn fresh_or_behind(&self, db: &Handle) {
        if let Err(e) = self.fresh(db) {
            tracing::debug!("the indexes are read behind the last commits: {e}");
        }
    }

    /// Applies what waits, committing as `how` says (a checkpoint is committed even when
    /// nothing waits).
    pub(super) fn apply(&self, db: &Handle, how: Commit) -> Result<(), StoreError> {
        if how == Commit::Plain && !self.waiting() {
            return Ok(());
        }
        let txn = db.begin_write().map_err(storage)?;
        let mut pending = self.adding();
        if pending.audit.is_empty() && pending.releases.is_empty() {
            if how == Commit::Plain {
                // Another reader applied it first.
                return txn.abort().map_err(storage);
            }
        } else {
            pending.write(&txn, 0)?;
        }
        commit(txn, how)?;
        pending.releases.clear();
        pending.audit.clear();
        Ok(())
    }

    /// In a commit that writes index rows of its own (a quarantine): applies what waits in
    /// `txn` first, so that its rows come after them. Then the commit writes its own rows,
    /// calls [`Adding::marked`], commits, and calls [`Adding::clear`].
    pub(super) fn within(&self, txn: &WriteTransaction) -> Result<Adding<'_>, StoreError> {
        let pending = self.adding();
        pending.write_rows(txn)?;
        Ok(pending)
    }
}

impl Adding<'_> {
    /// Writes the mark in `txn`: the trail is indexed up to `through` once it commits.
    pub(super) fn marked(self, txn: &WriteTransaction, through: u64) -> Result<Self, StoreError> {
        mark(txn, self.through.max(through))?;
        Ok(self)
    }

    /// After the commit that applied everything: nothing waits, the mark at `through`.
    pub(super) fn clear(mut self, through: u64) {
        self.releases.clear();
        self.audit.clear();
        self.through = self.through.max(through);
    }
}

fn commit(txn: Txn<WriteTransaction>, how: Commit) -> Result<(), StoreError> {
    match how {
        Commit::Plain => txn.commit(),
        Commit::Checkpoint => txn.commit_checkpoint(),
    }
    .map_err(storage)
}

fn mark(txn: &WriteTransaction, through: u64) -> Result<(), StoreError> {
    txn.open_table(META)
        .map_err(storage)?
        .insert(APPLIED, through)
        .map_err(storage)?;
    Ok(())
}

/// On open, in its commit: indexes the trail's entries from the mark on (`from`: where the
/// mark is, `len`: the trail's length), each named release from its record as it is now (a
/// record gone or unreadable is left as indexed: its quarantine takes it out); moves the mark
/// to the end. Returns how many entries it indexed.
pub(super) fn catch_up(txn: &WriteTransaction, from: u64, len: u64) -> Result<u64, StoreError> {
    let mut named: Vec<(String, u64)> = Vec::new();
    {
        let trail = txn.open_table(AUDIT).map_err(storage)?;
        for row in trail.range(from..).map_err(storage)? {
            let (seq, bytes) = row.map_err(storage)?;
            let entry: AuditEntry = decode(&format!("audit entry {}", seq.value()), bytes.value())?;
            if !entry.release.is_empty() {
                named.push((entry.release, seq.value()));
            }
        }
    }
    let mut pending = Pending::default();
    {
        let records = txn.open_table(RELEASES).map_err(storage)?;
        for (name, seq) in &named {
            pending.audit.push((name.clone(), *seq));
            if pending.releases.contains_key(name) {
                continue;
            }
            let Some(bytes) = records.get(name.as_str()).map_err(storage)? else {
                continue;
            };
            if let Ok(release) = serde_json::from_slice::<Release>(bytes.value()) {
                pending
                    .releases
                    .insert(name.clone(), Indexed::of(&release)?);
            }
        }
    }
    pending.write(txn, len)?;
    Ok(named.len() as u64)
}

/// Where the mark is in the store `txn` opened (`None`: a store from before the mark).
pub(super) fn applied(txn: &WriteTransaction) -> Result<Option<u64>, StoreError> {
    Ok(txn
        .open_table(META)
        .map_err(storage)?
        .get(APPLIED)
        .map_err(storage)?
        .map(|v| v.value()))
}
