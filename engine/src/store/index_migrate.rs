//! Schema version 1 -> 2: a store written before the indexes gets every index row and count
//! (`index.rs`) built from its records, in the transaction that sets the new version, so a
//! crash leaves either the old store untouched or the new one whole.

use redb::{ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::index::{self, Writer};
use super::summary::Indexed;
use super::{AUDIT, RELEASES, StoreError, decode, storage};
use crate::core::Release;

/// What migrating found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Migrated {
    /// Releases indexed.
    pub(super) releases: u64,
    /// Records that did not decode: left as they are, in no index.
    pub(super) unreadable: u64,
    /// Audit entries of a release indexed.
    pub(super) entries: u64,
}

/// Just the release an audit entry names.
#[derive(Deserialize)]
struct Named {
    release: String,
}

/// Builds every index of a version-1 store, inside `txn` (which also writes the new version).
pub(super) fn from_v1(txn: &WriteTransaction) -> Result<Migrated, StoreError> {
    index::create(txn)?;
    let mut writer = Writer::open(txn);
    let mut migrated = Migrated::default();
    let releases = txn.open_table(RELEASES).map_err(storage)?;
    for row in releases.iter().map_err(storage)? {
        let (key, value) = row.map_err(storage)?;
        let release: Release = match decode(key.value(), value.value()) {
            Ok(release) => release,
            Err(e) => {
                // One bad record must not stop the store opening: it stays where it is, in no
                // index, for whoever reads it to report.
                tracing::error!(release = key.value(), "not indexed: {e}");
                migrated.unreadable += 1;
                continue;
            }
        };
        writer.put(&Indexed::of(&release)?)?;
        migrated.releases += 1;
    }
    let audit = txn.open_table(AUDIT).map_err(storage)?;
    for row in audit.iter().map_err(storage)? {
        let (key, value) = row.map_err(storage)?;
        let seq = key.value();
        let Ok(named) = serde_json::from_slice::<Named>(value.value()) else {
            tracing::error!(seq, "audit entry not indexed: it does not decode");
            continue;
        };
        if !named.release.is_empty() {
            writer.audit(&named.release, seq)?;
            migrated.entries += 1;
        }
    }
    tracing::info!(
        releases = migrated.releases,
        unreadable = migrated.unreadable,
        audit_entries = migrated.entries,
        "data store migrated to schema version 2 (indexes built)"
    );
    Ok(migrated)
}
