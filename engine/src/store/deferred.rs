//! The indexes, applied in batches off the commit path.
//!
//! A commit of release records writes the records and their audit entries only; the index rows
//! they call for (`index.rs`) wait in memory, in [`Pending`], until one commit applies them
//! for many releases at once: a leaf page of an index then takes the rows of a batch instead of
//! being rewritten (and synced) by every commit. Written per commit, the rows cost W1 15-35%
//! (BENCHMARKS.md).
//!
//! When they are applied: once [`DUE_RELEASES`] releases or [`DUE_ENTRIES`] audit entries
//! wait, or the trail grew [`DUE_ENTRIES`] past the mark (after the commit that made it so);
//! when the writes stop (with the committer's checkpoint); before any read of an index (each
//! reader calls [`Deferred::fresh`]); when the store closes; and on open, from the trail.
//!
//! Why nothing is lost: the store's `meta` row `index-applied` (the mark) says how far the
//! trail is indexed. Every commit of a release record appends an audit entry naming it, and
//! takes the lock of [`Pending`] before it commits and adds its rows before it lets go. So an
//! apply, inside its write transaction and that lock, sees the rows of every entry the trail
//! has, and moves the mark to the trail's end in the commit that writes them. The open
//! re-indexes, from their records, the releases named in the entries after the mark: a crash
//! loses no row, and the open reads at most what was waiting.
//!
//! Reads: every reader of an index applies what waits first, in one commit of its own (readers
//! at once share it), so it sees every commit acknowledged before it began. When that commit
//! is refused (a full disk), the lists read the indexes as they are (behind by what waits;
//! their reads keep answering), and the reads the engine acts on (active releases, a
//! rollback's target, the drain, a release's trail) fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use redb::{ReadableTable, WriteTransaction};

use super::audit::end_of;
use super::handle::Handle;
use super::index_migrate::Named;
use super::summary::Indexed;
use super::{AUDIT, META, RELEASES, StoreError, decode, index, storage};
use crate::core::Release;

/// The `meta` row: the audit trail's length up to which every entry is indexed.
pub(super) const APPLIED: &str = "index-applied";

/// Releases waiting before the committer applies them.
pub(super) const DUE_RELEASES: usize = 256;

/// Audit entries waiting (or entries of no release past the mark, which the open would read
/// again) before they are applied.
pub(super) const DUE_ENTRIES: usize = 4096;

/// The rows waiting for their commit.
#[derive(Default)]
pub(super) struct Pending {
    /// Each release's latest summary (a later commit replaces an earlier one's).
    releases: HashMap<String, Indexed>,
    /// (release, seq) of each audit entry naming a release.
    audit: Vec<(String, u64)>,
    /// The mark as stored.
    marked: u64,
}

impl Pending {
    /// Adds the rows of `indexed` (the release as committed) and of its audit entry `seq`.
    pub(super) fn add(&mut self, indexed: Indexed, seq: u64) {
        self.audit.push((indexed.summary.name.clone(), seq));
        self.releases.insert(indexed.summary.name.clone(), indexed);
    }

    fn is_empty(&self) -> bool {
        self.releases.is_empty() && self.audit.is_empty()
    }

    fn due(&self, len: u64) -> bool {
        self.releases.len() >= DUE_RELEASES
            || self.audit.len() >= DUE_ENTRIES
            || len.saturating_sub(self.marked) >= DUE_ENTRIES as u64
    }

    /// Writes every waiting row in `txn`.
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

    /// After the commit that applied every row, the mark at `len`.
    fn applied(&mut self, len: u64) {
        self.releases.clear();
        self.audit.clear();
        self.marked = len;
    }
}

/// [`Pending`], and whether any row waits (read without the lock, which a commit holds
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
        self.waiting
            .store(!self.pending.is_empty(), Ordering::SeqCst);
    }
}

/// Why an apply commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A read: only if rows wait.
    Read,
    /// Enough waits, or the trail grew past the mark.
    Due,
    /// The writes stopped (`commit.rs`): a checkpoint, committed even when nothing waits.
    Checkpoint,
}

impl Deferred {
    /// Nothing waiting, the mark at `marked`.
    pub(super) fn new(marked: u64) -> Self {
        Self {
            pending: Mutex::new(Pending {
                marked,
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

    /// Whether any row waits.
    pub(super) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// After a commit that made the trail `len` long: applies what waits if enough does (or
    /// if the trail grew [`DUE_ENTRIES`] past the mark). The commit it follows stands: a
    /// failure here is logged, and what waits is applied later.
    pub(super) fn apply_if_due(&self, db: &Handle, len: u64) {
        let due = self.adding().due(len);
        if due && let Err(e) = self.apply(db, Why::Due) {
            tracing::warn!("the waiting index rows were not applied: {e}");
        }
    }

    /// Applies what waits, in one commit of its own (nothing when nothing waits): every index
    /// then says what every commit acknowledged before this call says.
    pub(super) fn fresh(&self, db: &Handle) -> Result<(), StoreError> {
        self.apply(db, Why::Read)
    }

    /// As [`Deferred::fresh`]; when the store refuses the commit, the indexes are read as
    /// they are (a list, which keeps answering while the disk is full).
    pub(super) fn fresh_or_behind(&self, db: &Handle) {
        if let Err(e) = self.fresh(db) {
            tracing::debug!("the indexes are read behind the last commits: {e}");
        }
    }

    /// Applies what waits in a checkpoint (`commit.rs`), committed even when nothing does.
    pub(super) fn checkpoint(&self, db: &Handle) -> Result<(), StoreError> {
        self.apply(db, Why::Checkpoint)
    }

    fn apply(&self, db: &Handle, why: Why) -> Result<(), StoreError> {
        if why == Why::Read && !self.waiting() {
            return Ok(());
        }
        let txn = db.begin_write().map_err(storage)?;
        // Inside the write transaction and the lock, every commit before this one has added
        // its rows: the trail's length now is where the mark can go.
        let mut pending = self.adding();
        if why == Why::Read && pending.is_empty() {
            // Another reader applied it first.
            return txn.abort().map_err(storage);
        }
        let len = end_of(&txn.open_table(AUDIT).map_err(storage)?)?;
        pending.write_rows(&txn)?;
        if len != pending.marked {
            mark(&txn, len)?;
        }
        match why {
            Why::Read | Why::Due => txn.commit(),
            Why::Checkpoint => txn.commit_checkpoint(),
        }
        .map_err(storage)?;
        pending.applied(len);
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
    /// Writes the mark in `txn` at the trail's length `len`, which it has once it commits.
    pub(super) fn marked(self, txn: &WriteTransaction, len: u64) -> Result<Self, StoreError> {
        mark(txn, len)?;
        Ok(self)
    }

    /// After the commit that applied everything: nothing waits, the mark at `len`.
    pub(super) fn clear(mut self, len: u64) {
        self.applied(len);
    }
}

fn mark(txn: &WriteTransaction, len: u64) -> Result<(), StoreError> {
    txn.open_table(META)
        .map_err(storage)?
        .insert(APPLIED, len)
        .map_err(storage)?;
    Ok(())
}

/// On open, in its commit: indexes the trail's entries from the mark on (`from`: where the
/// mark is, `len`: the trail's length), each named release from its record as it is now (a
/// record gone or unreadable is left as indexed: its quarantine takes it out); moves the mark
/// to the end.
pub(super) fn catch_up(txn: &WriteTransaction, from: u64, len: u64) -> Result<(), StoreError> {
    let mut named: Vec<(String, u64)> = Vec::new();
    {
        let trail = txn.open_table(AUDIT).map_err(storage)?;
        for row in trail.range(from..).map_err(storage)? {
            let (seq, bytes) = row.map_err(storage)?;
            let entry: Named = decode(&format!("audit entry {}", seq.value()), bytes.value())?;
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
    pending.write_rows(txn)?;
    mark(txn, len)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_no_release_past_the_mark_make_an_apply_due() {
        let pending = Pending {
            marked: 10,
            ..Pending::default()
        };
        assert!(!pending.due(10 + DUE_ENTRIES as u64 - 1));
        assert!(pending.due(10 + DUE_ENTRIES as u64));
    }
}
