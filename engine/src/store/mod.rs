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
//!
//! Under faults (`handle.rs`): a full disk latches the store (writes refused with
//! [`StoreError::NoSpace`], reads go on from a reopened database, a probe while latched learns
//! that space returned); any other I/O error is fail-stop ([`StoreError::Failed`]).

/// The `close` and lock methods of a [`redb::StorageBackend`] that wraps another in `inner`:
/// the wrappers (`watched.rs`, `open.rs`, `faulty.rs`) change I/O, never locking.
macro_rules! delegate_locks {
    () => {
        fn close(&self) -> Result<(), std::io::Error> {
            self.inner.close()
        }

        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.try_lock_range(start, end)
        }

        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.try_lock_shared_range(start, end)
        }

        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.lock_range(start, end)
        }

        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.lock_shared_range(start, end)
        }

        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.unlock_range(start, end)
        }

        fn query_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.query_lock_range(start, end)
        }
    };
}
use delegate_locks;

mod agents;
mod audit;
#[cfg(test)]
mod checkpoint_tests;
mod commit;
mod deferred;
#[cfg(test)]
mod deferred_tests;
mod fault;
#[doc(hidden)]
pub mod faulty;
#[cfg(test)]
mod faulty_tests;
mod handle;
#[cfg(test)]
mod handle_tests;
mod index;
#[cfg(test)]
mod index_batch_tests;
mod index_migrate;
#[cfg(test)]
mod index_migrate_tests;
#[cfg(test)]
mod index_prop_tests;
mod index_read;
#[cfg(test)]
mod index_tests;
mod open;
mod pipelines;
mod quarantine;
mod receipts;
mod records;
mod refusals;
#[cfg(test)]
mod replay_tests;
mod summary;
mod tail;
#[cfg(test)]
mod tests_crash_open;
mod watched;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

pub use audit::{AuditScan, SCAN_PAGE};
pub use fault::STORAGE_VAR as FAULT_STORAGE_VAR;
pub use handle::{Health, PROBE_BYTES, on_failure_exit};
pub use index_read::{ApprovalPage, StateCounts, SummaryPage};
pub use quarantine::Quarantined;
pub use receipts::Receipt;
pub use summary::{ApprovalView, StageSummary, Summary, approvals_of};
pub use tail::{FollowPage, Followed};

/// redb's page cache. Its default (1 GiB) lets the cache, and so the engine's memory, grow with
/// the store; releases are read rarely (a driver loads one when it starts), so a small cache
/// costs little.
const CACHE_BYTES: usize = 32 << 20;

/// Bumped when the layout changes incompatibly. Version 2 added the indexes (`index.rs`); a
/// version-1 store is migrated when opened (`index_migrate.rs`). Version 3 applies them in
/// batches, behind the records by what the mark says (`deferred.rs`): a Sluice of version 2
/// would read them as complete, so it is refused one.
pub const SCHEMA_VERSION: u64 = 3;

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
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the data store {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database file is damaged (not a database, truncated, pages that do not verify); it
    /// was refused before anything was written to it.
    #[error(
        "the data store {path} is damaged ({reason}): restore it from a backup, or move it aside \
         to start empty; it was not modified"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check found.
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
    /// The disk of the data directory is full: the write was refused, nothing changed.
    #[error(
        "the disk of the data directory is full ({0}): nothing was changed; free space on it \
         and retry (writes resume by themselves once there is space)"
    )]
    NoSpace(String),
    /// An I/O error that is not a full disk: this process stores nothing more.
    #[error(
        "the data store failed ({0}): nothing was changed; sluice stops so that a restart \
         recovers the store"
    )]
    Failed(String),
    /// The store cannot be read now (it is reopening after a full disk).
    #[error("the data store is unavailable: {0}")]
    Unavailable(String),
    /// A record could not be decoded.
    #[error("data store record {key} is unreadable: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A redb error as a store error: a full disk, a failure (fail-stop), the store closed, or
/// anything else.
fn storage<E: Into<redb::Error>>(e: E) -> StoreError {
    let e = e.into();
    match &e {
        redb::Error::Io(io) => {
            if let Some(refused) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<handle::Refused>())
            {
                return match refused {
                    handle::Refused::Full(why) => StoreError::NoSpace(why.clone()),
                    handle::Refused::Failed(why) => StoreError::Failed(why.clone()),
                    handle::Refused::Closed(_) => StoreError::Unavailable(refused.to_string()),
                };
            }
            if handle::is_no_space(io) {
                StoreError::NoSpace(io.to_string())
            } else {
                StoreError::Failed(io.to_string())
            }
        }
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => StoreError::Unavailable(
            "an earlier I/O error closed the database; it reopens once the disk has space".into(),
        ),
        _ => StoreError::Storage(e.to_string()),
    }
}

impl StoreError {
    /// Whether this is a full disk (the API's 507).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::NoSpace(_))
    }
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
    /// The database, behind a handle a full disk swaps (`handle.rs`).
    db: Arc<handle::Handle>,
    /// The length of the audit trail, bumped after every commit that extends it.
    audit_len: Arc<watch::Sender<u64>>,
    /// The newest audit entries, encoded once for every follower (`audit.rs`).
    tail: tail::Tail,
    /// Writes for the committer thread; `None` once dropped.
    writer: Option<mpsc::Sender<commit::Job>>,
    committer: Option<JoinHandle<()>>,
    /// The expiring receipts stored, and when the store was opened.
    receipts: Arc<receipts::Counts>,
    /// What opening it took.
    opening: Opening,
    /// The checkpoints the committer made when the writes stopped (`commit.rs`).
    checkpoints: Arc<watch::Sender<u64>>,
    /// The index rows waiting for their commit (`deferred.rs`).
    deferred: Arc<deferred::Deferred>,
    /// The data directory's lock, held while the store is open: the last field, so it is
    /// released after the database is closed.
    _lock: std::fs::File,
}

/// What opening the store took.
#[derive(Clone, Copy, Debug)]
pub struct Opening {
    /// The damaged-file check (`open.rs`): one verified read of the file, and redb's repair
    /// when one is due.
    pub checked: std::time::Duration,
    /// Whether redb rebuilt its allocator state from every tree: the file was not closed
    /// cleanly and its last commit recorded no allocator state (the check makes that repair).
    pub repaired: bool,
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
        Self::open_with(data_dir, None)
    }

    /// Opens the store in `data_dir` with its file's I/O obeying `plan` (the fault tests).
    #[doc(hidden)]
    pub fn open_faulty(data_dir: &Path, plan: &Arc<faulty::FaultPlan>) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Some(plan))
    }

    fn open_with(
        data_dir: &Path,
        plan: Option<&Arc<faulty::FaultPlan>>,
    ) -> Result<Self, StoreError> {
        let path = data_dir.join("sluice.redb");
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_err(e.to_string()))?;
        fault::check().map_err(&open_err)?;
        let file = path.clone();
        let quiet = plan.is_none().then_some(commit::QUIET);
        let plan = plan.cloned();
        let open: handle::Opener = Box::new(move || match &plan {
            None => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&file)?;
                let backend =
                    redb::backends::FileBackend::new(file).map_err(std::io::Error::other)?;
                Ok(Box::new(backend) as Box<dyn redb::StorageBackend>)
            }
            Some(plan) => Ok(Box::new(plan.backend(&file)?) as Box<dyn redb::StorageBackend>),
        });
        let lock = open::lock_dir(data_dir).map_err(&open_err)?;
        let checking = std::time::Instant::now();
        let recovered = open::refuse_damaged(&path, &*open)?;
        let checked = checking.elapsed();
        let builder = || {
            let mut builder = redb::Builder::new();
            builder.set_cache_size(CACHE_BYTES);
            builder
        };
        let (db, repaired) =
            handle::Handle::open(open, builder).map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(db);
        let txn = db.begin_write().map_err(storage)?;
        let len = index_migrate::layout(&txn, &path)?;
        let counts = Arc::new(receipts::Counts::open(&txn)?);
        // A checkpoint: a crash before the first write reopens without a repair.
        txn.commit_checkpoint().map_err(storage)?;
        db.arm();
        let (writer, jobs) = mpsc::channel();
        let audit_len = Arc::new(watch::Sender::new(len));
        let checkpoints = Arc::new(watch::Sender::new(0));
        let deferred = Arc::new(deferred::Deferred::new(len));
        let committer = commit::Committer {
            deferred: deferred.clone(),
            db: db.clone(),
            audit_len: audit_len.clone(),
            receipts: counts.clone(),
            quiet,
            checkpoints: checkpoints.clone(),
        };
        let committer = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || commit::commit_loop(committer, jobs))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            db,
            audit_len,
            tail: tail::Tail::default(),
            writer: Some(writer),
            committer: Some(committer),
            receipts: counts,
            opening: Opening {
                checked,
                repaired: recovered || repaired,
            },
            _lock: lock,
            checkpoints,
            deferred,
        })
    }

    /// Whether the store writes, as its last I/O said (for readiness: no I/O of its own).
    pub fn health(&self) -> Health {
        self.db.health().borrow().clone()
    }

    /// The store's health, changing when a fault latches it or the latch clears.
    pub fn health_changes(&self) -> watch::Receiver<Health> {
        self.db.health()
    }

    /// While the disk is latched full: reopens the database if needed and probes with a write
    /// of [`PROBE_BYTES`]; the latch clears when it commits. Does nothing otherwise (no write
    /// while healthy). Returns whether it wrote.
    pub fn probe(&self) -> bool {
        self.db.probe()
    }

    /// Calls `callback` (in place of the process's [`on_failure_exit`] hook) when the store
    /// fails: for tests, which observe the fail-stop instead of exiting.
    #[doc(hidden)]
    pub fn on_fail_stop(&self, callback: impl Fn(&str) + Send + Sync + 'static) {
        self.db.set_fail_stop(Arc::new(callback));
    }

    /// What opening the store took.
    pub fn opening(&self) -> Opening {
        self.opening
    }

    /// Records redb's allocator state now, as the committer does once the writes stop for a
    /// moment, so that a crash after it reopens without rebuilding that state.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.deferred.checkpoint(&self.db)
    }

    /// How many checkpoints the committer made on its own so far, changing as it makes them.
    #[doc(hidden)]
    pub fn quiet_checkpoints(&self) -> watch::Receiver<u64> {
        self.checkpoints.subscribe()
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
