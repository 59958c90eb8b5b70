//! The database behind a handle that can be swapped, and the latch its I/O errors set.
//!
//! redb refuses every read and write of a `Database` after any I/O error on its file, until it
//! is reopened. Every transaction of the store goes through [`Handle`], whose file backend
//! ([`Watched`]) sees every error first and latches the store's [`Health`]:
//! - **ENOSPC** from a write or from growing the file: [`Health::Full`]. Writes are refused at
//!   once (507) without touching the file; the poisoned database is closed (after its last
//!   transaction ends) and reopened for the reads; [`Handle::probe`] (the service's health
//!   check, only while latched) commits a write of [`PROBE_BYTES`] to learn that space returned,
//!   and clears the latch: the next write goes through, no restart.
//! - **Any other error of a write, a sync or a read** (EIO): [`Health::Failed`], fail-stop. The
//!   store never writes again through this process (a failed fsync is never retried: the
//!   kernel may have dropped the pages it could not write), and the fail-stop hook runs: the
//!   binary logs and exits, so its supervisor restarts it and recovery runs.

use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, StorageBackend, WriteTransaction,
};
use tokio::sync::watch;

use super::watched::Watched;

/// How much a probe writes while the disk is full: space for this much means writes can go on.
pub const PROBE_BYTES: usize = 1 << 20;

/// How long a reopen waits for the transactions of the closed database to end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

const PROBE: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("space_probe");

/// Whether the store can write, as its last I/O said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes commit.
    Healthy,
    /// The disk of the data directory is full: writes are refused until space returns.
    Full(String),
    /// An I/O error other than a full disk: this process writes nothing more.
    Failed(String),
}

/// What the binary does when the store fails (see the module's header): set once, by `main`.
static EXIT_HOOK: OnceLock<fn(&str)> = OnceLock::new();

/// Makes every store of this process call `hook` when it fails (the binary: log and exit).
pub fn on_failure_exit(hook: fn(&str)) {
    let _ = EXIT_HOOK.set(hook);
}

/// A test's fail-stop callback.
pub(super) type FailStop = Arc<dyn Fn(&str) + Send + Sync>;

/// The state the backend's errors set, shared by the handle and every backend it opened.
pub(super) struct Latch {
    health: watch::Sender<Health>,
    /// The open database saw an I/O error: redb refuses it from now on.
    poisoned: AtomicBool,
    /// Errors before this is set (while opening) are the open's to report.
    armed: AtomicBool,
    /// A reopen is under way (the test hook lets it rewrite the file's own blocks).
    reopening: AtomicBool,
    /// A test's fail-stop callback, in place of the process's hook.
    callback: Mutex<Option<FailStop>>,
}

impl Latch {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            health: watch::Sender::new(Health::Healthy),
            poisoned: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            reopening: AtomicBool::new(false),
            callback: Mutex::new(None),
        })
    }

    /// Whether a reopen is under way.
    pub(super) fn reopening(&self) -> bool {
        self.reopening.load(Ordering::SeqCst)
    }

    /// An I/O call failed: latch what it means.
    pub(super) fn io_error(&self, call: &str, e: &io::Error) {
        self.poisoned.store(true, Ordering::SeqCst);
        let full = is_no_space(e) && call != "sync";
        if full {
            let reason = format!("{call} of the database file failed: {e}");
            self.health.send_if_modified(|h| match h {
                Health::Healthy => {
                    tracing::error!(
                        "the disk of the data directory is full ({reason}): writes are refused \
                         until space is freed; reads go on"
                    );
                    *h = Health::Full(reason);
                    true
                }
                _ => false,
            });
            return;
        }
        let reason = format!("{call} of the database file failed: {e}");
        let first = self.health.send_if_modified(|h| {
            if matches!(h, Health::Failed(_)) {
                return false;
            }
            *h = Health::Failed(reason.clone());
            true
        });
        if first && self.armed.load(Ordering::SeqCst) {
            self.fail_stop(&reason);
        }
    }

    fn fail_stop(&self, reason: &str) {
        let callback = self
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(callback) = callback {
            callback(reason);
        } else if let Some(hook) = EXIT_HOOK.get() {
            hook(reason);
        } else {
            tracing::error!(
                "the data store failed ({reason}): it writes nothing more in this process"
            );
        }
    }
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch").finish_non_exhaustive()
    }
}

pub(super) fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull
}

/// Opens the database file again (with the same backend, plain or faulty).
pub(super) type Opener = Box<dyn Fn() -> Result<Box<dyn StorageBackend>, io::Error> + Send + Sync>;

/// The store's database, swapped for a fresh one after a full disk.
pub(super) struct Handle {
    db: RwLock<Option<Arc<Database>>>,
    latch: Arc<Latch>,
    open: Opener,
    builder: fn() -> redb::Builder,
    /// Held by whoever reopens (one at a time).
    reopening: Mutex<()>,
    /// Whether a commit was made since the last checkpoint (`commit.rs`).
    owed: Arc<AtomicBool>,
}

/// A transaction, holding the database it belongs to (so a reopen waits for it to end).
pub(super) struct Txn<T> {
    txn: T,
    _db: Arc<Database>,
    /// The handle's "a commit since the last checkpoint" flag.
    owed: Arc<AtomicBool>,
}

impl<T> Deref for Txn<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.txn
    }
}

impl Txn<WriteTransaction> {
    /// Ends it with nothing written.
    pub(super) fn abort(self) -> Result<(), redb::StorageError> {
        self.txn.abort()
    }

    /// Commits (durably, with fsync).
    pub(super) fn commit(self) -> Result<(), redb::CommitError> {
        self.txn.commit()?;
        self.owed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Commits recording redb's allocator state (quick-repair: two-phase, the data synced
    /// before the header that names it), so an open after a crash that follows loads that
    /// state instead of rebuilding it from every tree.
    pub(super) fn commit_checkpoint(mut self) -> Result<(), redb::CommitError> {
        self.txn.set_quick_repair(true);
        // Cleared first: a commit racing this one (they are serialised) sets it again.
        self.owed.store(false, Ordering::SeqCst);
        self.txn
            .commit()
            .inspect_err(|_| self.owed.store(true, Ordering::SeqCst))
    }
}

/// Why the handle refused a transaction without asking redb: an `io::Error` inside redb's own
/// error type, so every `map_err(storage)` classifies it (`super::storage`).
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    /// Latched full.
    #[error("{0}")]
    Full(String),
    /// Latched failed.
    #[error("{0}")]
    Failed(String),
    /// No database is open (its reopen failed).
    #[error("the data store is closed after a full disk and could not be reopened yet: {0}")]
    Closed(String),
}

fn refused(r: Refused) -> redb::TransactionError {
    redb::TransactionError::Storage(redb::StorageError::Io(io::Error::other(r)))
}

impl Handle {
    /// Opens the database; also says whether opening it repaired it.
    pub(super) fn open(
        open: Opener,
        builder: fn() -> redb::Builder,
    ) -> Result<(Self, bool), DatabaseError> {
        let latch = Latch::new();
        // The first open says whether redb repaired the file (it was not closed cleanly).
        let repairing = Arc::new(AtomicBool::new(false));
        let seen = repairing.clone();
        let mut first = builder();
        first.set_repair_callback(move |_| seen.store(true, Ordering::Relaxed));
        let db = first.create_with_backend(Watched::new(open()?, latch.clone()))?;
        let handle = Self {
            db: RwLock::new(Some(Arc::new(db))),
            latch,
            open,
            builder,
            reopening: Mutex::new(()),
            owed: Arc::default(),
        };
        Ok((handle, repairing.load(Ordering::Relaxed)))
    }

    /// Whether a commit was made since the last checkpoint.
    pub(super) fn owes_checkpoint(&self) -> bool {
        self.owed.load(Ordering::SeqCst)
    }

    /// From now on an I/O error that is not a full disk is fail-stop.
    pub(super) fn arm(&self) {
        self.latch.armed.store(true, Ordering::SeqCst);
    }

    pub(super) fn health(&self) -> watch::Receiver<Health> {
        self.latch.health.subscribe()
    }

    pub(super) fn set_fail_stop(&self, callback: FailStop) {
        *self
            .latch
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(callback);
    }

    /// Begins a read transaction (on a reopened database after a full disk).
    pub(super) fn begin_read(&self) -> Result<Txn<ReadTransaction>, redb::TransactionError> {
        let db = self.current()?;
        let txn = db.begin_read()?;
        Ok(Txn {
            txn,
            _db: db,
            owed: self.owed.clone(),
        })
    }

    /// Begins a write transaction; refused at once while the store is latched.
    pub(super) fn begin_write(&self) -> Result<Txn<WriteTransaction>, redb::TransactionError> {
        match &*self.latch.health.borrow() {
            Health::Healthy => {}
            Health::Full(reason) => return Err(refused(Refused::Full(reason.clone()))),
            Health::Failed(reason) => return Err(refused(Refused::Failed(reason.clone()))),
        }
        self.begin_write_unlatched()
    }

    fn begin_write_unlatched(&self) -> Result<Txn<WriteTransaction>, redb::TransactionError> {
        let db = self.current()?;
        let txn = db.begin_write()?;
        Ok(Txn {
            txn,
            _db: db,
            owed: self.owed.clone(),
        })
    }

    /// The open database, reopened first if a full disk poisoned it.
    fn current(&self) -> Result<Arc<Database>, redb::TransactionError> {
        if self.latch.poisoned.load(Ordering::SeqCst)
            && matches!(*self.latch.health.borrow(), Health::Full(_))
        {
            self.reopen();
        }
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        db.clone().ok_or_else(|| {
            let why = match &*self.latch.health.borrow() {
                Health::Full(reason) | Health::Failed(reason) => reason.clone(),
                Health::Healthy => "reopening".into(),
            };
            refused(Refused::Closed(why))
        })
    }

    /// Closes the poisoned database (once its transactions ended) and opens the file again.
    fn reopen(&self) {
        let _one = self.reopening.lock().unwrap_or_else(|e| e.into_inner());
        if !self.latch.poisoned.load(Ordering::SeqCst) {
            return;
        }
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old {
            // Transactions hold the database: it closes (and unlocks the file) when the last
            // one ends. They are short; one that does not end keeps the store closed.
            let deadline = Instant::now() + CLOSE_WAIT;
            let mut old = Some(old);
            while let Some(db) = old.take() {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        // A failed close only means the poisoned file was not marked clean.
                        let _ = db.close();
                    }
                    Err(db) if Instant::now() < deadline => {
                        old = Some(db);
                        std::thread::yield_now();
                    }
                    Err(db) => {
                        tracing::error!("the full store's transactions did not end: not reopened");
                        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
                        return;
                    }
                }
            }
        }
        self.latch.reopening.store(true, Ordering::SeqCst);
        let reopened = create(&self.open, self.builder, &self.latch);
        self.latch.reopening.store(false, Ordering::SeqCst);
        match reopened {
            Ok(db) => {
                self.latch.poisoned.store(false, Ordering::SeqCst);
                *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
                tracing::warn!("the data store was reopened after a full disk: reads go on");
            }
            Err(e) => tracing::warn!("reopening the data store after a full disk: {e}"),
        }
    }

    /// While latched full: reopens if needed and commits a write of [`PROBE_BYTES`] (then
    /// deletes it); when both commit, space is back and the latch clears. Nothing while
    /// healthy or failed. Returns whether it wrote.
    pub(super) fn probe(&self) -> bool {
        if !matches!(*self.latch.health.borrow(), Health::Full(_)) {
            return false;
        }
        let wrote = || -> Result<(), Box<dyn std::error::Error>> {
            let bytes = vec![0u8; PROBE_BYTES];
            for fill in [Some(bytes.as_slice()), None] {
                let txn = self.begin_write_unlatched()?;
                {
                    let mut table = txn.open_table(PROBE)?;
                    match fill {
                        Some(bytes) => table.insert("probe", bytes)?,
                        None => table.remove("probe")?,
                    };
                }
                txn.commit()?;
            }
            Ok(())
        };
        match wrote() {
            Ok(()) => {
                self.latch.health.send_if_modified(|h| {
                    let full = matches!(h, Health::Full(_));
                    if full {
                        *h = Health::Healthy;
                    }
                    full
                });
                tracing::warn!("space returned on the data directory's disk: writes go on");
            }
            Err(e) => tracing::debug!("the disk is still full: {e}"),
        }
        true
    }
}

fn create(
    open: &Opener,
    builder: fn() -> redb::Builder,
    latch: &Arc<Latch>,
) -> Result<Database, DatabaseError> {
    let inner = open()?;
    builder().create_with_backend(Watched::new(inner, latch.clone()))
}
