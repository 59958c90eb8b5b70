//! The handlers, a file per resource, and the one request type two of them share: a time to
//! deploy at (`at` of a deploy, `defer-until` of an approval; see `api/time.rs`).

pub(super) mod agents;
pub(super) mod approvals;
pub(super) mod audit;
pub(super) mod logs;
pub(super) mod ops;
pub(super) mod pipelines;
pub(super) mod quarantine;
pub(super) mod releases;

pub(super) use super::time::DeferUntil;

/// The page size when a list does not say.
fn default_limit() -> i64 {
    50
}
