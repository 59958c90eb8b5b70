//! Durable state in redb — **the only module that imports redb**. Typed access per entity:
//! releases (a JSON record each, rewritten per transition), per-pipeline release counters, the
//! audit trail (one entry per transition, in commit order) and task logs. Every write is
//! committed with fsync before the caller hears back, so nothing is acted on before it is durable.
//!
//! Group commit: transitions arriving together (many releases in flight) are written by one
//! committer thread in a single transaction and share its fsync; each caller still waits for the
//! commit that holds its write.

mod audit;
mod fault;
mod receipts;
mod refusals;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::core::Release;
use crate::types::LogLine;

pub use audit::{AuditScan, SCAN_PAGE};
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
    writer: Option<mpsc::Sender<Job>>,
    committer: Option<JoinHandle<()>>,
    /// The expiring receipts stored, and when the store was opened.
    receipts: Arc<receipts::Counts>,
}

/// One caller's write: a release after a transition, its audit entry, maybe a task log.
struct Job {
    release: Vec<u8>,
    name: String,
    audit: AuditEntry,
    log: Option<(String, Vec<u8>)>,
    receipt: Option<receipts::Sealed>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Writes per transaction at most, so one fsync never waits on an unbounded batch.
const MAX_BATCH: usize = 256;

fn commit_loop(
    db: Arc<Database>,
    jobs: mpsc::Receiver<Job>,
    audit_len: Arc<watch::Sender<u64>>,
    receipts: Arc<receipts::Counts>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &batch, &receipts).map_err(|e| e.to_string());
        if let Ok(len) = result {
            refusals::forward(&audit_len, len);
        }
        let result = result.map(|_| ());
        for job in batch {
            if result.is_ok() {
                fault::after_commit();
            }
            let _ = job.done.send(result.clone());
        }
    }
}

/// Writes a batch in one transaction; returns the audit trail's new length.
fn write_batch(db: &Database, batch: &[Job], counts: &receipts::Counts) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let (len, count) = {
        let mut releases = txn.open_table(RELEASES).map_err(storage)?;
        let mut audit = txn.open_table(AUDIT).map_err(storage)?;
        let mut logs = txn.open_table(LOGS).map_err(storage)?;
        let mut receipts = receipts::Writer::open(&txn)?;
        let first = audit
            .last()
            .map_err(storage)?
            .map_or(0, |(k, _)| k.value() + 1);
        for (next, job) in (first..).zip(batch) {
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
        (first + batch.len() as u64, receipts.count(counts)?)
    };
    txn.commit().map_err(storage)?;
    counts.publish(count);
    Ok(len)
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
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
                .map_err(|e| open_err(e.to_string()))?,
        );
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
            .spawn(move || commit_loop(committer_db, jobs, committer_len, committer_counts))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            db,
            audit_len,
            tail: tail::Tail::default(),
            writer: Some(writer),
            committer: Some(committer),
            receipts: counts,
        })
    }

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
            let audit_len = audit(&txn, &release, actor, "created")?;
            let mut receipts = receipts::Writer::open(&txn)?;
            if let Some(receipt) = receipt {
                receipts.put(&receipt.seal(&release))?;
            }
            (release, audit_len, receipts.count(&self.receipts)?)
        };
        txn.commit().map_err(storage)?;
        self.receipts.publish(count);
        refusals::forward(&self.audit_len, audit_len);
        fault::after_commit();
        Ok(release)
    }

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
        committed
            .await
            .map_err(|_| closed())?
            .map_err(StoreError::Storage)
    }

    /// The release called `name`.
    pub fn release(&self, name: &str) -> Result<Option<Release>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(RELEASES).map_err(storage)?;
        let value = table.get(name).map_err(storage)?;
        value.map(|v| decode(name, v.value())).transpose()
    }

    /// Every release, ordered by pipeline then number.
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(RELEASES).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            out.push(decode(key.value(), value.value())?);
        }
        out.sort_by(|a: &Release, b| (&a.pipeline, a.number).cmp(&(&b.pipeline, b.number)));
        Ok(out)
    }

    /// A task's log lines, if stored.
    pub fn log(&self, key: &LogKey<'_>) -> Result<Option<Vec<LogLine>>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(LOGS).map_err(storage)?;
        let k = key.key();
        let value = table.get(k.as_str()).map_err(storage)?;
        value.map(|v| decode(&k, v.value())).transpose()
    }

    /// Every stored version of pipeline `name`, oldest first.
    pub fn pipeline_versions(&self, name: &str) -> Result<Vec<PipelineVersion>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(PIPELINES).map_err(storage)?;
        let value = table.get(name).map_err(storage)?;
        Ok(value
            .map(|v| decode(name, v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    /// Stores `source` as the next version of pipeline `name`, unless it is the latest already;
    /// returns the latest version.
    pub fn put_pipeline(
        &self,
        name: &str,
        source: &str,
        by: &str,
    ) -> Result<PipelineVersion, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let latest = {
            let mut table = txn.open_table(PIPELINES).map_err(storage)?;
            let mut versions: Vec<PipelineVersion> = match table.get(name).map_err(storage)? {
                Some(v) => decode(name, v.value())?,
                None => Vec::new(),
            };
            if versions.last().is_none_or(|v| v.source != source) {
                versions.push(PipelineVersion {
                    version: versions.len() as u64 + 1,
                    source: source.to_owned(),
                    at: now_ms(),
                    by: by.to_owned(),
                });
                let bytes = serde_json::to_vec(&versions)
                    .map_err(|e| StoreError::Storage(e.to_string()))?;
                table.insert(name, bytes.as_slice()).map_err(storage)?;
            }
            versions.pop().expect("at least one version")
        };
        txn.commit().map_err(storage)?;
        Ok(latest)
    }

    /// Whether a write transaction commits now (for readiness).
    pub fn can_commit(&self) -> bool {
        let Ok(txn) = self.db.begin_write() else {
            return false;
        };
        txn.open_table(META).is_ok() && txn.commit().is_ok()
    }

    /// Every stored task log of `release`, in key order (stage, attempt, task).
    pub fn logs_of(&self, release: &str) -> Result<Vec<(String, Vec<LogLine>)>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(LOGS).map_err(storage)?;
        let prefix = format!("{release}/");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..).map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let Some(rest) = key.value().strip_prefix(&prefix) else {
                break;
            };
            out.push((rest.to_owned(), decode(key.value(), value.value())?));
        }
        Ok(out)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn put_release(txn: &redb::WriteTransaction, release: &Release) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(release).map_err(|e| StoreError::Storage(e.to_string()))?;
    let mut table = txn.open_table(RELEASES).map_err(storage)?;
    table
        .insert(release.name.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Appends an entry to the audit trail; returns the trail's new length.
fn audit(
    txn: &redb::WriteTransaction,
    release: &Release,
    actor: &str,
    what: &str,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT).map_err(storage)?;
    let next = table
        .last()
        .map_err(storage)?
        .map_or(0, |(k, _)| k.value() + 1);
    let entry = AuditEntry {
        seq: next,
        release: release.name.clone(),
        revision: release.revision,
        at: now_ms(),
        actor: actor.to_owned(),
        what: what.to_owned(),
    };
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Storage(e.to_string()))?;
    table.insert(next, bytes.as_slice()).map_err(storage)?;
    Ok(next + 1)
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
