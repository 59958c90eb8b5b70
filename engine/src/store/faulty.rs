//! A storage backend that fails on purpose, for the fault tests (modelled on redb's own crash
//! tests and SQLite's test VFS): redb's file backend wrapped by a [`FaultPlan`] that can fail the
//! Nth `write`, `set_len`, `sync_data` or `read` with EIO or ENOSPC, tear a write (only a prefix
//! of the buffer reaches the file, then the machine stops), stop the machine before any I/O call,
//! fill the disk until told otherwise, and afterwards simulate a power loss: every byte written
//! since the last successful sync is dropped, or a seeded random part of it kept.
//!
//! The plan keeps a copy of the file as of its last successful sync, so it is for test-sized
//! databases. Not used outside tests and the `SLUICE_FAULT_*` hooks. A plan can also trace a
//! run (`trace.rs`) and rebuild the file as a crash at any of its I/O calls would have left it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;
use redb::backends::FileBackend;

#[path = "faulty_trace.rs"]
mod trace;
pub use trace::Traced;

/// A kind of I/O call redb makes on its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `write`.
    Write,
    /// `set_len` (growing or trimming the file).
    SetLen,
    /// `sync_data` (fsync).
    Sync,
    /// `read`.
    Read,
}

impl Op {
    fn index(self) -> usize {
        self as usize
    }
}

/// What happens to a call a rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with EIO; the file is unchanged.
    Eio,
    /// The call fails with ENOSPC; the file is unchanged.
    NoSpace,
    /// A write: only its first `n` bytes reach the file, then the machine stops.
    Torn(usize),
    /// The machine stops just before the call: it and every later call fail.
    Crash,
}

/// How much of what was written since the last successful sync survives a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Nothing: the file is as it was at the last successful sync.
    DropUnsynced,
    /// Each unsynced write survives or not, as a generator seeded with this decides (disks
    /// reorder writes between two syncs).
    KeepSome(u64),
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The Nth call (1-based) of one kind, counted since the plan was made.
    Nth(Op, u64),
    /// The Nth call of `write`, `set_len` or `sync_data`, whichever it is.
    NthIo(u64),
    /// The Nth I/O call after the next `set_len` that grows the file (0: that call).
    AfterGrowth(u64),
}

/// An unsynced change to the file.
#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct State {
    path: PathBuf,
    /// Calls made so far, by [`Op::index`].
    counts: [u64; 4],
    /// `write`, `set_len` and `sync_data` calls made so far.
    io: u64,
    rules: Vec<(Trigger, Fault)>,
    /// Writes and growing `set_len`s fail with ENOSPC while set.
    full: bool,
    /// Only growing the file fails with ENOSPC while set (a full ext4/xfs disk: rewriting
    /// blocks the file already has needs no space).
    full_growth: bool,
    /// Set once the machine stopped: every call fails from then on.
    crashed: bool,
    /// The file as of the last successful sync.
    durable: Vec<u8>,
    /// What was changed since, in order.
    unsynced: Vec<Change>,
    /// Successful syncs so far.
    syncs: u64,
    /// Every change and sync since [`FaultPlan::start_trace`], when tracing.
    trace: Option<trace::Trace>,
}

/// The faults to inject into a database file, shared between a test and the backends it opens
/// (one at a time) on that file.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<State>,
}

impl FaultPlan {
    /// A plan that injects nothing until told to.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A backend over the database file at `path` (created if missing) that obeys this plan.
    /// What the file holds now counts as synced.
    pub fn backend(self: &Arc<Self>, path: &Path) -> io::Result<FaultyBackend> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let durable = std::fs::read(path)?;
        let mut state = self.state();
        state.path = path.to_owned();
        state.durable = durable;
        state.unsynced.clear();
        state.crashed = false;
        drop(state);
        Ok(FaultyBackend {
            inner: FileBackend::new(file.try_clone()?).map_err(io::Error::other)?,
            file,
            plan: self.clone(),
        })
    }

    /// Fails the `n`th call (1-based, counted since the plan was made) of kind `op` with `fault`.
    pub fn fail_nth(&self, op: Op, n: u64, fault: Fault) {
        self.state().rules.push((Trigger::Nth(op, n), fault));
    }

    /// Fails the `n`th call from now on (1 is the next) of kind `op` with `fault`.
    pub fn fail_next(&self, op: Op, n: u64, fault: Fault) {
        let mut state = self.state();
        let at = state.counts[op.index()] + n;
        state.rules.push((Trigger::Nth(op, at), fault));
    }

    /// Stops the machine just before the `n`th `write`/`set_len`/`sync_data` from now on.
    pub fn crash_at_io(&self, n: u64) {
        let mut state = self.state();
        let at = state.io + n;
        state.rules.push((Trigger::NthIo(at), Fault::Crash));
    }

    /// Stops the machine `k` I/O calls after the next `set_len` that grows the file (`0`: just
    /// before that `set_len`): a crash while the file grows, wherever the growth falls.
    pub fn crash_after_growth(&self, k: u64) {
        self.state()
            .rules
            .push((Trigger::AfterGrowth(k), Fault::Crash));
    }

    /// Fills the disk (`true`): every write and every growing `set_len` fails with ENOSPC
    /// until it is emptied again (`false`).
    pub fn set_full(&self, full: bool) {
        self.state().full = full;
    }

    /// Fills the disk the way a full ext4 or xfs disk is full (`true`): growing the file (a
    /// growing `set_len`, a write past its end) fails with ENOSPC, rewriting what it holds
    /// succeeds, until it is emptied again (`false`).
    pub fn set_full_growth(&self, full: bool) {
        self.state().full_growth = full;
    }

    /// Forgets every rule not yet fired.
    pub fn clear(&self) {
        self.state().rules.clear();
    }

    /// How many calls of kind `op` were made so far.
    pub fn count(&self, op: Op) -> u64 {
        self.state().counts[op.index()]
    }

    /// How many `write`/`set_len`/`sync_data` calls were made so far.
    pub fn io_calls(&self) -> u64 {
        self.state().io
    }

    /// How many syncs succeeded so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Whether the machine stopped (a crash or torn write fired).
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Simulates a power loss once the database is closed (dropped): the file keeps what
    /// `loss` says of the writes since the last successful sync. The next [`FaultPlan::backend`]
    /// starts the machine again.
    pub fn power_loss(&self, loss: PowerLoss) -> io::Result<()> {
        let mut state = self.state();
        let image = survive(state.durable.clone(), &state.unsynced, loss);
        std::fs::write(&state.path, &image)?;
        state.unsynced.clear();
        state.crashed = true;
        Ok(())
    }

    /// The fault a call of kind `op` meets, if any, counting the call.
    fn on_call(&self, op: Op, grows: bool) -> Result<Option<Fault>, io::Error> {
        let mut state = self.state();
        if state.crashed {
            return Err(io::Error::other("the machine stopped (injected crash)"));
        }
        state.counts[op.index()] += 1;
        if op != Op::Read {
            state.io += 1;
        }
        let (nth, io) = (state.counts[op.index()], state.io);
        if op == Op::SetLen && grows {
            for (trigger, _) in &mut state.rules {
                if let Trigger::AfterGrowth(k) = *trigger {
                    *trigger = Trigger::NthIo(io + k);
                }
            }
        }
        let fired = state.rules.iter().position(|(trigger, _)| match *trigger {
            Trigger::Nth(o, n) => o == op && n == nth,
            Trigger::NthIo(n) => op != Op::Read && n == io,
            Trigger::AfterGrowth(_) => false,
        });
        let fault = fired.map(|i| state.rules.remove(i).1);
        let no_space = (state.full && (op == Op::Write || grows)) || (state.full_growth && grows);
        let fault = fault.or(no_space.then_some(Fault::NoSpace));
        match fault {
            Some(Fault::Crash) => {
                state.crashed = true;
                Err(io::Error::other("the machine stopped (injected crash)"))
            }
            Some(Fault::Eio) => Err(io::Error::from_raw_os_error(libc_eio())),
            Some(Fault::NoSpace) => Err(io::Error::from_raw_os_error(libc_enospc())),
            other => Ok(other),
        }
    }

    fn record(&self, change: Change) {
        let mut state = self.state();
        let io = state.io;
        if let Some(trace) = &mut state.trace {
            trace.change(io, &change);
        }
        state.unsynced.push(change);
    }

    fn synced(&self) {
        let mut state = self.state();
        let io = state.io;
        if let Some(trace) = &mut state.trace {
            trace.sync(io);
        }
        let unsynced = std::mem::take(&mut state.unsynced);
        for change in &unsynced {
            apply(&mut state.durable, change);
        }
        state.syncs += 1;
    }

    fn stop(&self) {
        self.state().crashed = true;
    }
}

fn apply(image: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Change::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// `image` after a power loss: each of the unsynced `changes` kept as `loss` says.
fn survive<'a>(
    mut image: Vec<u8>,
    changes: impl IntoIterator<Item = &'a Change>,
    loss: PowerLoss,
) -> Vec<u8> {
    let mut rng = match loss {
        PowerLoss::DropUnsynced => None,
        PowerLoss::KeepSome(seed) => Some(SplitMix(seed)),
    };
    for change in changes {
        if rng.as_mut().is_some_and(|rng| rng.next() % 2 == 0) {
            apply(&mut image, change);
        }
    }
    image
}

const fn libc_eio() -> i32 {
    5
}

const fn libc_enospc() -> i32 {
    28
}

/// A small seeded generator (splitmix64): the same seed keeps the same writes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// redb's file backend, obeying a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    /// The same file, for a torn write's prefix.
    file: File,
    plan: Arc<FaultPlan>,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.plan.on_call(Op::Read, false)?;
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let grows = len > self.inner.len()?;
        self.plan.on_call(Op::SetLen, grows)?;
        self.inner.set_len(len)?;
        self.plan.record(Change::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.plan.on_call(Op::Sync, false)?;
        // What a sync makes durable is the plan's copy, from which a power loss rewrites the
        // file; the test machine never loses power for real, so the disk is not asked (the
        // sweeps sync thousands of times).
        self.plan.synced();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let extends = offset + data.len() as u64 > self.inner.len()?;
        if let Some(Fault::Torn(keep)) = self.plan.on_call(Op::Write, extends)? {
            let prefix = &data[..keep.min(data.len())];
            std::os::unix::fs::FileExt::write_all_at(&self.file, prefix, offset)?;
            self.plan.record(Change::Write {
                offset,
                data: prefix.to_vec(),
            });
            self.plan.stop();
            return Err(io::Error::other("the machine stopped mid-write (injected)"));
        }
        self.inner.write(offset, data)?;
        self.plan.record(Change::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    super::delegate_locks!();
}
