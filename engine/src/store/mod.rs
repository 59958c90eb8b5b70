//! Durable state in redb — **the only module that imports redb**. Typed access per entity:
//! releases (a JSON record each, rewritten per transition: `records.rs`), per-pipeline release
//! counters, the audit trail (one entry per transition, in commit order: `audit.rs`, its newest
//! entries shared by followers in `tail.rs`), task logs and pipeline versions (`pipelines.rs`),
//! request receipts (`receipts.rs`). Every write is committed with fsync before the caller hears
//! back, so nothing is acted on before it is durable.
//!
//! Group commit (`commit.rs`): transitions arriving together (many releases in flight) are
//! written by one committer thread in a single transaction and share its fsync; each caller
//! still waits for the commit that holds its write.

mod audit;
mod commit;
mod fault;
mod pipelines;
mod quarantine;
mod receipts;
mod records;
mod refusals;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub use audit::{AuditScan, SCAN_PAGE};
pub use quarantine::Quarantined;
pub use receipts::Receipt;
pub use tail::{FollowPage, Followed};

/// redb's page cache. Its default (1 GiB) lets the cache, and so the engine's memory, grow with
/// the store; releases are read rarely (a driver loads one when it starts), so a small cache
/// costs little.
const CACHE_BYTES: usize = 32 << 20;

/// Bumped when the layout changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("release_counters");
const RELEASES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("releases");
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
const LOGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("task_logs");
/// Every version of every pipeline the service was given, by name.
const PIPELINES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pipeline_versions");

/// One stored version of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineVersion {
    /// 1, 2, ...
    pub version: u64,
    /// The TOML text.
    pub source: String,
    /// When (Unix milliseconds).
    pub at: u64,
    /// Who put it (`file` when loaded from the pipelines directory).
    pub by: String,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the data store {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Written by an incompatible version of Sluice.
    #[error(
        "the data store {path} has schema version {found}, this Sluice reads version {SCHEMA_VERSION}: \
         use a matching Sluice or a new --data-dir"
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A read or write failed.
    #[error("data store error: {0}")]
    Storage(String),
    /// A record could not be decoded.
    #[error("data store record {key} is unreadable: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// Why.
        reason: String,
    },
}

fn storage<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Storage(e.into().to_string())
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the trail: 0, 1, 2, ... in commit order.
    #[serde(default)]
    pub seq: u64,
    /// Release; empty for a refused request (401, 403: no release changed).
    pub release: String,
    /// The release's revision after the change.
    pub revision: u64,
    /// When (Unix milliseconds).
    pub at: u64,
    /// Who, or `engine`.
    pub actor: String,
    /// What happened.
    pub what: String,
}

/// Identifies one task's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey<'a> {
    /// Release name.
    pub release: &'a str,
    /// Stage.
    pub stage: &'a str,
    /// Attempt.
    pub attempt: u32,
    /// Task name.
    pub task: &'a str,
}

impl LogKey<'_> {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.release, self.stage, self.attempt, self.task
        )
    }
}

/// The engine's durable state.
pub struct Store {
    db: Arc<Database>,
    /// The length of the audit trail, bumped after every commit that extends it.
    audit_len: Arc<watch::Sender<u64>>,
    /// The newest audit entries, encoded once for every follower (`audit.rs`).
    tail: tail::Tail,
    /// Writes for the committer thread; `None` once dropped.
    writer: Option<mpsc::Sender<commit::Job>>,
    committer: Option<JoinHandle<()>>,
    /// The expiring receipts stored, and when the store was opened.
    receipts: Arc<receipts::Counts>,
    /// Whether opening it repaired it (it was not closed cleanly: a crash, a SIGKILL).
    repaired: bool,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Let the committer finish what it has, and release the database file, before returning.
        self.writer.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("sluice.redb");
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_err(e.to_string()))?;
        let repairing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = repairing.clone();
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .set_repair_callback(move |_| {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed)
                })
                .create(&path)
                .map_err(|e| open_err(e.to_string()))?,
        );
        let repaired = repairing.load(std::sync::atomic::Ordering::Relaxed);
        let txn = db.begin_write().map_err(storage)?;
        let (len, counts) = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let found = meta
                .get("schema-version")
                .map_err(storage)?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema-version", SCHEMA_VERSION)
                        .map_err(storage)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => return Err(StoreError::Schema { path, found }),
            }
            txn.open_table(COUNTERS).map_err(storage)?;
            txn.open_table(RELEASES).map_err(storage)?;
            txn.open_table(AUDIT).map_err(storage)?;
            txn.open_table(LOGS).map_err(storage)?;
            txn.open_table(PIPELINES).map_err(storage)?;
            let len = txn
                .open_table(AUDIT)
                .map_err(storage)?
                .last()
                .map_err(storage)?
                .map_or(0, |(k, _)| k.value() + 1);
            (len, Arc::new(receipts::Counts::open(&txn)?))
        };
        txn.commit().map_err(storage)?;
        let (writer, jobs) = mpsc::channel();
        let committer_db = db.clone();
        let audit_len = Arc::new(watch::Sender::new(len));
        let committer_len = audit_len.clone();
        let committer_counts = counts.clone();
        let committer = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || commit::commit_loop(committer_db, jobs, committer_len, committer_counts))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            db,
            audit_len,
            tail: tail::Tail::default(),
            writer: Some(writer),
            committer: Some(committer),
            receipts: counts,
            repaired,
        })
    }

    /// Whether opening the store repaired it (it was not closed cleanly).
    pub fn repaired(&self) -> bool {
        self.repaired
    }

    /// Whether a write transaction commits now (for readiness).
    pub fn can_commit(&self) -> bool {
        let Ok(txn) = self.db.begin_write() else {
            return false;
        };
        txn.open_table(META).is_ok() && txn.commit().is_ok()
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
