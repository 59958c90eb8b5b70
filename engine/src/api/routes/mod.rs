//! The handlers, a file per resource, and the one request type two of them share: a time to
//! deploy at (`at` of a deploy, `defer-until` of an approval).

pub(super) mod approvals;
pub(super) mod audit;
pub(super) mod logs;
pub(super) mod ops;
pub(super) mod pipelines;
pub(super) mod releases;

use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;

/// A time to deploy at.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum DeferUntil {
    /// Unix milliseconds.
    Millis(u64),
    /// RFC 3339, with an offset or `Z`.
    Time(String),
}

impl DeferUntil {
    /// Unix milliseconds.
    fn millis(&self) -> Result<u64, ApiError> {
        let time = match self {
            Self::Millis(ms) => return Ok(*ms),
            Self::Time(text) => text,
        };
        let bad = |why: String| {
            ApiError::bad_request(format!(
                "defer-until `{time}`: {why}; give an RFC 3339 time such as 2026-11-24T06:00:00Z, or Unix milliseconds"
            ))
        };
        let at: jiff::Timestamp = time.parse().map_err(|e: jiff::Error| bad(e.to_string()))?;
        u64::try_from(at.as_millisecond()).map_err(|_| bad("it is before 1970".into()))
    }
}

/// The page size when a list does not say.
fn default_limit() -> i64 {
    50
}
