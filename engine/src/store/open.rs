//! Before the data store's file is opened for writing: a file that is damaged is refused and
//! left exactly as it is; a file a crash left goes on to redb's own recovery.
//!
//! redb recovers a file that was not closed cleanly when it opens it, and that recovery writes (the
//! header, then a commit). A file that *was* closed cleanly is trusted by a plain open: garbage in
//! its pages is seen only when they are read, as an error or a panic, and a write after it may
//! spread the damage. So [`refuse_damaged`] first runs redb's open with its integrity check on (a
//! crash's recovery included: every page of the committed trees checksummed, falling back to the
//! commit before a torn last one) through a copy-on-write view of the file ([`Probe`]): whatever
//! the check would write stays in memory, and the file is opened for real only if the check passes.
//! It costs one read of the file at every start: about 0.27 s for 136 MB in a debug build
//! (`what_the_check_costs_on_a_100_mb_file` in `tests_crash_open.rs` measures it).
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

/// Refuses the database file at `path` if it is damaged, without writing to it. A missing or
/// empty file is a new database; a file another process has open is left to the real open,
/// which says so.
pub(super) fn refuse_damaged(path: &Path) -> Result<(), StoreError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Open {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    let probe = Probe::new(file, len).map_err(|e| StoreError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // The check reports its progress: at 0.6 the commit the open would keep (the last, or the
    // one before a torn last) has verified, and what is left is rebuilding the allocator state
    // — a second pass over the file the real open makes anyway when it must. Stop there.
    let verified = Arc::new(AtomicBool::new(false));
    let seen = verified.clone();
    // A damaged file may make redb panic instead of returning an error; that too is damage.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let mut builder = redb::Builder::new();
        builder
            .set_cache_size(PROBE_CACHE)
            .set_check_integrity_on_open(true)
            .set_repair_callback(move |session| {
                if session.progress() >= VERIFIED {
                    seen.store(true, Ordering::Relaxed);
                    session.abort();
                }
            });
        builder.create_with_backend(probe).map(drop)
    }));
    let reason = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(DatabaseError::RepairAborted)) if verified.load(Ordering::Relaxed) => return Ok(()),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch)) => {
            return Ok(());
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

/// The file as redb sees it during the check: reads come from the file unless the check wrote
/// that block, writes and length changes stay here, syncs do nothing. Locks are the file's, so
/// a file another process has open is seen as such.
#[derive(Debug)]
struct Probe {
    inner: FileBackend,
    view: Mutex<View>,
}

#[derive(Debug)]
struct View {
    /// The length redb sees.
    len: u64,
    /// The file's length (what lies past it reads as zeros).
    file_len: u64,
    /// Blocks the check wrote, by index.
    written: HashMap<u64, Vec<u8>>,
}

impl Probe {
    fn new(file: File, len: u64) -> io::Result<Self> {
        Ok(Self {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            view: Mutex::new(View {
                len,
                file_len: len,
                written: HashMap::new(),
            }),
        })
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
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
        self.view().len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
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
        Ok(())
    }

    super::delegate_locks!();
}
