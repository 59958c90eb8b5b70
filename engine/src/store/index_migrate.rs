//! The layout an open finds, and brings to this version in its first transaction, so a crash
//! leaves either the old store untouched or the new one whole:
//! - version 1 -> 3: a store written before the indexes gets every index row and count
//!   (`index.rs`) built from its records;
//! - version 2 -> 3: its indexes are whole (each written in its record's commit); the mark of
//!   `deferred.rs` is set at the trail's end;
//! - version 3: the entries after the mark are indexed (`deferred::catch_up`).

use std::path::Path;

use redb::{ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::audit::end_of;
use super::index::{self, Writer};
use super::summary::Indexed;
use super::{
    AUDIT, COUNTERS, LOGS, META, PIPELINES, RELEASES, SCHEMA_VERSION, StoreError, decode, deferred,
    storage,
};
use crate::core::Release;

/// Brings the store `txn` opened (at `path`) to this version's layout, every table created and
/// every index caught up; returns the audit trail's length.
pub(super) fn layout(txn: &WriteTransaction, path: &Path) -> Result<u64, StoreError> {
    let found = {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let found = meta
            .get("schema-version")
            .map_err(storage)?
            .map(|v| v.value());
        if !matches!(found, None | Some(1 | 2 | SCHEMA_VERSION)) {
            return Err(StoreError::Schema {
                path: path.to_owned(),
                found: found.unwrap_or_default(),
            });
        }
        if found != Some(SCHEMA_VERSION) {
            meta.insert("schema-version", SCHEMA_VERSION)
                .map_err(storage)?;
        }
        found
    };
    txn.open_table(COUNTERS).map_err(storage)?;
    txn.open_table(RELEASES).map_err(storage)?;
    txn.open_table(AUDIT).map_err(storage)?;
    txn.open_table(LOGS).map_err(storage)?;
    txn.open_table(PIPELINES).map_err(storage)?;
    index::create(txn)?;
    if found == Some(1) {
        from_v1(txn)?;
    }
    let len = end_of(&txn.open_table(AUDIT).map_err(storage)?)?;
    // A new store, or versions 1 (just migrated) and 2: every entry is indexed.
    let applied = match found {
        Some(SCHEMA_VERSION) => deferred::applied(txn)?.unwrap_or(0),
        _ => len,
    };
    deferred::catch_up(txn, applied, len)?;
    Ok(len)
}

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

/// Just the release an audit entry names (empty: none).
#[derive(Deserialize)]
pub(super) struct Named {
    pub(super) release: String,
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
