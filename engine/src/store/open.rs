//! Before the data store's file is opened for writing: a file that is damaged is refused and
//! left exactly as it is; a file a crash left goes on to redb's own recovery.
//!
//! redb recovers a file that was not closed cleanly when it opens it, and that recovery writes (the
//! header, then a commit). A file that *was* closed cleanly is trusted by a plain open: garbage in
//! its pages is seen only when they are read, as an error or a panic, and a write after it may
//! spread the damage. So [`refuse_damaged`] first runs redb's open with its integrity check on (a
//! crash's recovery included: every page of the committed trees checksummed, falling back to the
//! commit before a torn last one) through a copy-on-write view of the file ([`Probe`]): whatever
//! the check writes stays in memory, in order, and reaches the file only if the check passes.
//! It costs one read of the file at every start: about 0.27 s for 136 MB in a debug build
//! (`what_the_check_costs_on_a_100_mb_file` in `tests_crash_open.rs` measures it).
//!
//! When the file needs redb's recovery (a plain open through a probe first learns whether it
//! does: [`repair_due`]), the check makes it: verified, the allocator state rebuilt and
//! committed, a clean close. Its writes are replayed onto the file in the order redb made
//! them, each sync where redb synced, so a crash during the replay is a crash during
//! redb's own recovery, which the next open recovers again. The open after it finds a file
//! whose allocator state is recorded, and the file is read twice, not three times. The data
//! directory's lock ([`lock_dir`]) keeps any other process off the file meanwhile.
//!
//! What passes: a cleanly closed file that verifies; a file a crash left whose last commit, or
//! the one before it when the last was torn (never acknowledged: its fsync did not return),
//! verifies. What is refused: a file that is not a redb database (a garbage header), one shorter
//! than its own header says (truncated), one whose pages do not verify.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{DatabaseError, StorageBackend};

use super::StoreError;

/// The granularity of the copy-on-write view.
const BLOCK: u64 = 4096;

/// The check's page cache: it reads every page once, so a small one does.
const PROBE_CACHE: usize = 16 << 20;

/// The progress redb's repair reports once the trees it keeps have verified (it reports 0.3
/// when the last commit did not and it falls back to the one before, 0.6 when one verified,
/// 0.9 half-way through rebuilding the allocator state).
const VERIFIED: f64 = 0.6;

/// Opens the backend a replay writes through: the file itself (or the fault tests' view of it).
pub(super) type Replay<'a> = &'a dyn Fn() -> io::Result<Box<dyn StorageBackend>>;

/// How long an open waits for the data directory's lock before it refuses: a process that is
/// exiting (a supervisor's restart overlapping the old one), or a child another thread forked
/// in the moment before it runs its program (it shares the lock until then), lets go of it
/// within that.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How often it looks again while it waits.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Locks `data_dir` for this process (`sluice.lock`, an advisory lock the OS drops with the
/// process): no other process may open its store, nor write its file while this one's open
/// replays redb's recovery ([`refuse_damaged`]). Waits [`LOCK_WAIT`] for another holder to let
/// go before it refuses.
pub(super) fn lock_dir(data_dir: &Path) -> Result<File, String> {
    let path = data_dir.join("sluice.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open its lock {}: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(LOCK_POLL);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "the data directory {} is in use by another Sluice (it holds the lock {}): \
                     stop it, or give this one another --data-dir",
                    data_dir.display(),
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
    }
}

/// Refuses the database file at `path` if it is damaged, without writing to it; when a crash
/// left it, makes redb's recovery (writing it through `replay`) and says so (true). A missing
/// or empty file is a new database; a file another process has open is left to the real open,
/// which says so.
pub(super) fn refuse_damaged(path: &Path, replay: Replay<'_>) -> Result<bool, StoreError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(StoreError::Open {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(false);
    }
    let open_err = |e: io::Error| StoreError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let due = repair_due(&file, len).map_err(open_err)?;
    let probe = Probe::new(file, len).map_err(open_err)?;
    let view = probe.view.clone();
    // The check reports its progress: at 0.6 the commit the open would keep (the last, or the
    // one before a torn last) has verified, and what is left is rebuilding the allocator
    // state. Unless the open must repair the file anyway, stop there.
    let verified = Arc::new(AtomicBool::new(false));
    let seen = verified.clone();
    let outcome = probed(probe, true, move |session| {
        if session.progress() >= VERIFIED {
            seen.store(true, Ordering::Relaxed);
            if !due {
                session.abort();
            }
        }
    });
    let reason = match outcome {
        Ok(Ok(())) if due => {
            let log = std::mem::take(&mut lock(&view).log);
            apply(&log, replay().map_err(open_err)?.as_ref()).map_err(open_err)?;
            return Ok(true);
        }
        Ok(Ok(())) => return Ok(false),
        Ok(Err(DatabaseError::RepairAborted)) if verified.load(Ordering::Relaxed) => {
            return Ok(false);
        }
        Ok(Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch)) => {
            return Ok(false);
        }
        Ok(Err(DatabaseError::UpgradeRequired(version))) => {
            return Err(StoreError::Open {
                path: path.to_owned(),
                reason: format!(
                    "it is in redb's file format {version}, which this Sluice does not read: \
                     use the Sluice that wrote it"
                ),
            });
        }
        // redb reports what it found in the file as an I/O error of its own making; an
        // error of the disk keeps its OS text.
        Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e)))) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the check stopped")
            .to_owned(),
    };
    Err(StoreError::Damaged {
        path: path.to_owned(),
        reason,
    })
}

/// Whether opening the file makes redb repair it (its last commit recorded no allocator state:
/// a crash). Learnt by a plain open through a [`Probe`], stopped where the repair would start;
/// a file that fails it is left to the check to judge.
fn repair_due(file: &File, len: u64) -> io::Result<bool> {
    let probe = Probe::new(file.try_clone()?, len)?;
    let due = Arc::new(AtomicBool::new(false));
    let seen = due.clone();
    let _ = probed(probe, false, move |session| {
        seen.store(true, Ordering::Relaxed);
        session.abort();
    });
    Ok(due.load(Ordering::Relaxed))
}

/// redb's open of `probe` (with its integrity check if `check`), `repair` called as it
/// repairs; a panic of redb's (a damaged file may cause one) is caught.
fn probed(
    probe: Probe,
    check: bool,
    repair: impl Fn(&mut redb::RepairSession) + 'static,
) -> std::thread::Result<Result<(), DatabaseError>> {
    std::panic::catch_unwind(AssertUnwindSafe(move || {
        let mut builder = redb::Builder::new();
        builder
            .set_cache_size(PROBE_CACHE)
            .set_check_integrity_on_open(check)
            .set_repair_callback(repair);
        builder.create_with_backend(probe).map(drop)
    }))
}

/// The file as redb sees it during the check: reads come from the file unless the check wrote
/// that block; writes, length changes and syncs stay here, noted in order for a replay. Locks
/// are the file's, so a file another process has open is seen as such.
#[derive(Debug)]
struct Probe {
    inner: FileBackend,
    view: Arc<Mutex<View>>,
}

#[derive(Debug)]
struct View {
    /// The length redb sees.
    len: u64,
    /// The file's length (what lies past it reads as zeros).
    file_len: u64,
    /// Blocks the check wrote, by index.
    written: HashMap<u64, Vec<u8>>,
    /// What the check did to the file, in order: what a replay does.
    log: Vec<Change>,
}

/// One change the check made to the file.
#[derive(Debug)]
enum Change {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Sync,
}

/// Makes the changes of `log` to the file behind `backend`, in order, and syncs it.
fn apply(log: &[Change], backend: &dyn StorageBackend) -> io::Result<()> {
    for change in log {
        match change {
            Change::Write(offset, data) => backend.write(*offset, data)?,
            Change::SetLen(len) => backend.set_len(*len)?,
            Change::Sync => backend.sync_data()?,
        }
    }
    backend.sync_data()
}

fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

impl Probe {
    fn new(file: File, len: u64) -> io::Result<Self> {
        Ok(Self {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            view: Arc::new(Mutex::new(View {
                len,
                file_len: len,
                written: HashMap::new(),
                log: Vec::new(),
            })),
        })
    }

    fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    /// Reads from the file itself, zeros past its end.
    fn read_file(&self, file_len: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        if offset >= file_len {
            return Ok(());
        }
        let n = (file_len - offset).min(out.len() as u64) as usize;
        self.inner.read(offset, &mut out[..n])
    }
}

impl StorageBackend for Probe {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.view().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let view = self.view();
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(out.len() - done);
            let part = &mut out[done..done + n];
            match view.written.get(&(at / BLOCK)) {
                Some(block) => part.copy_from_slice(&block[within..within + n]),
                None => self.read_file(view.file_len, at, part)?,
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut view = self.view();
        view.len = len;
        // What a shrink cuts off reads as zeros if the file grows again, as in the file.
        if len < view.file_len {
            view.file_len = len;
            view.written.retain(|index, _| index * BLOCK < len);
            if let Some(block) = view.written.get_mut(&(len / BLOCK)) {
                block[(len % BLOCK) as usize..].fill(0);
            }
        }
        view.log.push(Change::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.view().log.push(Change::Sync);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut view = self.view();
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !view.written.contains_key(&index) {
                let mut block = vec![0; BLOCK as usize];
                self.read_file(view.file_len, index * BLOCK, &mut block)?;
                view.written.insert(index, block);
            }
            let block = view.written.get_mut(&index).expect("inserted above");
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        view.len = view.len.max(offset + data.len() as u64);
        view.log.push(Change::Write(offset, data.to_vec()));
        Ok(())
    }

    super::delegate_locks!();
}
