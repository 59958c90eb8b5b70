//! The store under faults (#13), on the fault backend (`store/faulty.rs`): a crash at every I/O
//! call of a release's commits, power losses at many points, a second crash during recovery, a
//! crash while the file grows — each reopened and held against what was acknowledged — and a
//! damaged file refused by `sluice serve` and `sluice run` without a byte of it changed.

mod commit_crash;
mod damaged;
mod growth;
mod power_loss;
mod recovery;
pub mod workload;
