//! Quarantine: a release record that does not decode is moved, in one commit, out of the
//! releases table into the `quarantine` table (its key, its bytes as stored, why, when), with
//! an audit entry and an error line naming its key. Every other release goes on: one bad
//! record never fails a list, a start-up or a driver, so nothing restarts in a loop. The bytes
//! are kept as they were, for an operator (or a later Sluice) to look at; nothing reads them.
//!
//! The one hook is [`Store::decoded`]: every read of a release record goes through it.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{AuditEntry, RELEASES, Store, StoreError, index, now_ms, records, refusals, storage};
use crate::core::Release;

/// Records that did not decode, by key: a JSON [`Stored`] each.
const QUARANTINE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("quarantine");

/// One quarantined record, as listed (its bytes stay in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quarantined {
    /// The record's key: the release's name.
    pub key: String,
    /// The table it was in (`releases`).
    pub table: String,
    /// Why it did not decode.
    pub reason: String,
    /// When it was quarantined (Unix milliseconds).
    pub at: u64,
    /// How many bytes it has (kept in the quarantine table as stored).
    pub bytes: u64,
}

/// A quarantined record as stored: what is listed, and the bytes (hex).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    listed: Quarantined,
    raw: String,
}

impl Store {
    /// Decodes the stored release `key`; a record that does not decode is quarantined (see
    /// the module) and reads as no release.
    pub(super) fn decoded(&self, key: &str, bytes: &[u8]) -> Result<Option<Release>, StoreError> {
        match serde_json::from_slice(bytes) {
            Ok(release) => Ok(Some(release)),
            Err(e) => {
                self.quarantine(key, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Moves the release record `key` to the quarantine table if it still does not decode,
    /// with an audit entry, in one commit; true when it moved.
    pub fn quarantine(&self, key: &str, reason: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let (waiting, len) = {
            let mut releases = txn.open_table(RELEASES).map_err(storage)?;
            let Some(raw) = releases
                .get(key)
                .map_err(storage)?
                .map(|v| v.value().to_vec())
            else {
                return Ok(false);
            };
            // Rewritten meanwhile (or read torn): nothing to quarantine.
            if serde_json::from_slice::<Release>(&raw).is_ok() {
                return Ok(false);
            }
            releases.remove(key).map_err(storage)?;
            let stored = Stored {
                listed: Quarantined {
                    key: key.to_owned(),
                    table: "releases".into(),
                    reason: reason.to_owned(),
                    at: now_ms(),
                    bytes: raw.len() as u64,
                },
                raw: hex::encode(&raw),
            };
            let encoded =
                serde_json::to_vec(&stored).map_err(|e| StoreError::Storage(e.to_string()))?;
            txn.open_table(QUARANTINE)
                .map_err(storage)?
                .insert(key, encoded.as_slice())
                .map_err(storage)?;
            // What waits first, then out of every list and count; its entry still found by
            // release.
            let waiting = self.deferred.within(&txn)?;
            let mut rows = index::Writer::open(&txn);
            rows.remove(key)?;
            let len = records::append_audit(
                &txn,
                AuditEntry {
                    seq: 0,
                    release: key.to_owned(),
                    revision: 0,
                    at: stored.listed.at,
                    actor: "engine".into(),
                    what: format!(
                        "quarantined: the stored record does not decode ({reason}); its bytes \
                         are kept in the quarantine table, every other release goes on"
                    ),
                },
            )?;
            rows.audit(key, len - 1)?;
            drop(rows);
            (waiting.marked(&txn, len)?, len)
        };
        txn.commit().map_err(storage)?;
        waiting.clear(len);
        refusals::forward(&self.audit_len, len);
        tracing::error!(
            release = key,
            "release record `{key}` does not decode ({reason}): moved to the quarantine table \
             (see `sluice releases list` or GET /api/v1/quarantine); every other release goes on"
        );
        Ok(true)
    }

    /// Every quarantined record, by key.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(QUARANTINE) {
            Ok(table) => table,
            // Nothing was ever quarantined.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let stored: Stored = super::decode(key.value(), value.value())?;
            out.push(stored.listed);
        }
        Ok(out)
    }

    /// The quarantined record `key`, if it is one.
    pub fn quarantined_one(&self, key: &str) -> Result<Option<Quarantined>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(QUARANTINE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let value = table.get(key).map_err(storage)?;
        value
            .map(|v| super::decode::<Stored>(key, v.value()).map(|s| s.listed))
            .transpose()
    }

    /// Overwrites the release record `key` with `bytes`, as a damaged disk or an old bug
    /// would: for tests of the quarantine only.
    #[doc(hidden)]
    pub fn put_raw_release_for_tests(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        txn.open_table(RELEASES)
            .map_err(storage)?
            .insert(key, bytes)
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_record_moves_to_the_quarantine_with_its_bytes_and_an_audit_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_raw_release_for_tests("web-1", b"{not json")
            .unwrap();
        assert!(store.quarantined().unwrap().is_empty());
        assert_eq!(store.release("web-1").unwrap(), None, "reads as no release");
        assert!(store.releases().unwrap().is_empty());
        let listed = store.quarantined().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), listed[0].bytes), ("web-1", 9));
        assert_eq!(
            store.quarantined_one("web-1").unwrap().as_ref(),
            listed.first()
        );
        let trail = store.audit_from(0, 10).unwrap();
        assert_eq!(trail.len(), 1, "one audit entry: {trail:?}");
        assert_eq!(trail[0].release, "web-1");
        assert!(
            trail[0].what.starts_with("quarantined"),
            "{}",
            trail[0].what
        );
        // The bytes are kept as they were.
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(QUARANTINE).unwrap();
        let stored: Stored =
            serde_json::from_slice(table.get("web-1").unwrap().unwrap().value()).unwrap();
        assert_eq!(hex::decode(stored.raw).unwrap(), b"{not json");
        // Asked again (a record already moved, or one that decodes): nothing moves.
        assert!(!store.quarantine("web-1", "again").unwrap());
        assert_eq!(store.audit_from(0, 10).unwrap().len(), 1);
    }
}
