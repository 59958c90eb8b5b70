//! Release records: creating one (with its number and first audit entry), reading one or all.

use redb::ReadableTable;

use super::summary::Indexed;
use super::{
    AUDIT, AuditEntry, COUNTERS, RELEASES, Receipt, Store, StoreError, fault, now_ms, receipts,
    refusals, storage,
};
use crate::core::Release;

impl Store {
    /// Creates a release: takes the pipeline's next number, builds the release with `make`,
    /// stores it, all in one transaction.
    pub fn create_release(
        &self,
        pipeline: &str,
        actor: &str,
        make: impl FnOnce(u64) -> Release,
        receipt: Option<Receipt>,
    ) -> Result<Release, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let (release, audit_len, count) = {
            let mut counters = txn.open_table(COUNTERS).map_err(storage)?;
            let number = counters
                .get(pipeline)
                .map_err(storage)?
                .map_or(0, |v| v.value())
                + 1;
            counters.insert(pipeline, number).map_err(storage)?;
            let release = make(number);
            put_release(&txn, &release)?;
            let audit_len = append_audit(
                &txn,
                AuditEntry {
                    seq: 0,
                    release: release.name.clone(),
                    revision: release.revision,
                    at: now_ms(),
                    actor: actor.to_owned(),
                    what: "created".to_owned(),
                },
            )?;
            let mut receipts = receipts::Writer::open(&txn)?;
            if let Some(receipt) = receipt {
                receipts.put(&receipt.seal(&release))?;
            }
            (release, audit_len, receipts.count(&self.receipts)?)
        };
        let indexed = Indexed::of(&release)?;
        let mut waiting = self.deferred.adding();
        txn.commit().map_err(storage)?;
        waiting.add(indexed, audit_len - 1);
        drop(waiting);
        // Creations alone (no transition yet) also apply once enough waits.
        self.deferred.apply_if_due(&self.db, audit_len);
        self.receipts.publish(count);
        refusals::forward(&self.audit_len, audit_len);
        fault::after_commit();
        Ok(release)
    }

    /// The release called `name`.
    pub fn release(&self, name: &str) -> Result<Option<Release>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(RELEASES).map_err(storage)?;
        let value = table.get(name).map_err(storage)?;
        match value {
            Some(v) => self.decoded(name, v.value()),
            None => Ok(None),
        }
    }

    /// Every release, ordered by pipeline then number (a record that does not decode is
    /// quarantined and left out).
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(RELEASES).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            out.extend(self.decoded(key.value(), value.value())?);
        }
        out.sort_by(|a: &Release, b| (&a.pipeline, a.number).cmp(&(&b.pipeline, b.number)));
        Ok(out)
    }
}

/// Stores `release` in `txn` (its index rows wait: `deferred.rs`).
fn put_release(txn: &redb::WriteTransaction, release: &Release) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(release).map_err(|e| StoreError::Storage(e.to_string()))?;
    let mut table = txn.open_table(RELEASES).map_err(storage)?;
    table
        .insert(release.name.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Appends `entry` to the audit trail at its end (its `seq` set here); returns the trail's new
/// length. Its row in the index by release is the caller's (`deferred.rs`). Every writer of the
/// trail but the committer's batches (which number a run of entries at once) goes through
/// here.
pub(super) fn append_audit(
    txn: &redb::WriteTransaction,
    mut entry: AuditEntry,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT).map_err(storage)?;
    entry.seq = super::audit::end_of(&table)?;
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Storage(e.to_string()))?;
    table.insert(entry.seq, bytes.as_slice()).map_err(storage)?;
    Ok(entry.seq + 1)
}
