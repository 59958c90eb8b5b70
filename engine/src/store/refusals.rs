//! Audit entries that belong to no release: refused requests (401, 403). The API bounds how
//! many it records (`api/limit.rs`); each is one small transaction of its own.

use tokio::sync::watch;

use super::{AuditEntry, Store, StoreError, now_ms, storage};

impl Store {
    /// Appends an entry of no release (`release` empty, `revision` 0) to the audit trail:
    /// `actor` did `what`. Returns once it is durable.
    pub fn record_refusal(&self, actor: &str, what: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let len = super::records::append_audit(
            &txn,
            AuditEntry {
                seq: 0,
                release: String::new(),
                revision: 0,
                at: now_ms(),
                actor: actor.to_owned(),
                what: what.to_owned(),
            },
        )?;
        txn.commit().map_err(storage)?;
        forward(&self.audit_len, len);
        // Refusals alone move the index mark too, so the open never reads more than
        // `DUE_ENTRIES` of them again.
        self.deferred.apply_if_due(&self.db, len);
        Ok(())
    }
}

/// Moves the trail's length forward to `len`, never back: the committer thread and a
/// refusal's transaction each announce the length their commit made, in either order.
pub(super) fn forward(audit_len: &watch::Sender<u64>, len: u64) {
    audit_len.send_if_modified(|known| {
        let grew = len > *known;
        if grew {
            *known = len;
        }
        grew
    });
}
