//! Tracing a run on the fault backend: every change to the file and every sync, with the index
//! of its I/O call, so that one fault-free run gives the file as a crash before *any* of its
//! calls, then a power loss, would have left it ([`FaultPlan::image_at`]) — the many-points
//! sweeps cut one traced run at hundreds of places instead of running it hundreds of times.

use super::{Change, FaultPlan, PowerLoss, apply, survive};

/// A traced run: where it started and what it did.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// The file as of the last sync before the trace started.
    base: Vec<u8>,
    /// Changes made before the trace started and not synced yet.
    pending: Vec<Change>,
    /// Each change or sync since, with the index of its I/O call (as [`FaultPlan::io_calls`]
    /// counts them).
    steps: Vec<(u64, Step)>,
}

#[derive(Debug)]
enum Step {
    Change(Change),
    Sync,
}

impl Trace {
    pub(super) fn change(&mut self, io: u64, change: &Change) {
        self.steps.push((io, Step::Change(change.clone())));
    }

    pub(super) fn sync(&mut self, io: u64) {
        self.steps.push((io, Step::Sync));
    }
}

/// One traced I/O call that changed the file or synced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traced {
    /// A write of `len` bytes at `offset`.
    Write {
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// The file's length set to `len`; `grew` when that made it longer.
    SetLen {
        /// The new length.
        len: u64,
        /// Whether the file grew.
        grew: bool,
    },
    /// A successful sync: everything before it is durable.
    Sync,
}

impl FaultPlan {
    /// Starts tracing: from now on every successful write, `set_len` and sync is remembered
    /// (with its data), for [`FaultPlan::traced`] and [`FaultPlan::image_at`].
    pub fn start_trace(&self) {
        let mut state = self.state();
        state.trace = Some(Trace {
            base: state.durable.clone(),
            pending: state.unsynced.clone(),
            steps: Vec::new(),
        });
    }

    /// The traced calls, in order, each with the index of its I/O call.
    pub fn traced(&self) -> Vec<(u64, Traced)> {
        let state = self.state();
        let Some(trace) = &state.trace else {
            return Vec::new();
        };
        let mut len = trace.base.len() as u64;
        for change in &trace.pending {
            len = length_after(len, change);
        }
        let mut out = Vec::with_capacity(trace.steps.len());
        for (io, step) in &trace.steps {
            let traced = match step {
                Step::Sync => Traced::Sync,
                Step::Change(Change::Write { offset, data }) => Traced::Write {
                    offset: *offset,
                    len: data.len() as u64,
                },
                Step::Change(Change::SetLen(to)) => Traced::SetLen {
                    len: *to,
                    grew: *to > len,
                },
            };
            if let Step::Change(change) = step {
                len = length_after(len, change);
            }
            out.push((*io, traced));
        }
        out
    }

    /// The file as the traced run would have left it had the machine stopped just before I/O
    /// call `n` (as [`FaultPlan::io_calls`] counts them) and the power then gone as `loss` says.
    /// Panics if the plan was not tracing.
    pub fn image_at(&self, n: u64, loss: PowerLoss) -> Vec<u8> {
        let state = self.state();
        let trace = state.trace.as_ref().expect("start_trace before image_at");
        let mut durable = trace.base.clone();
        let mut unsynced: Vec<&Change> = trace.pending.iter().collect();
        for (io, step) in &trace.steps {
            if *io >= n {
                break;
            }
            match step {
                Step::Change(change) => unsynced.push(change),
                Step::Sync => {
                    for change in unsynced.drain(..) {
                        apply(&mut durable, change);
                    }
                }
            }
        }
        survive(durable, unsynced, loss)
    }
}

fn length_after(len: u64, change: &Change) -> u64 {
    match change {
        Change::Write { offset, data } => len.max(offset + data.len() as u64),
        Change::SetLen(to) => *to,
    }
}
