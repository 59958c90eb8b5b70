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
    /// Unix milliseconds; `field` (`at`, `defer-until`) names the input in a 400. A time jiff
    /// cannot hold (after the year 9999, before 1970) is refused here, at the edge, so every
    /// time the core adds a duration to stays far from the end of a `u64`.
    fn millis(&self, field: &str) -> Result<u64, ApiError> {
        const HOW: &str =
            "give an RFC 3339 time such as 2026-11-24T06:00:00Z, or Unix milliseconds";
        let shown = match self {
            Self::Millis(ms) => ms.to_string(),
            Self::Time(text) => text.clone(),
        };
        let bad = |why: String| ApiError::bad_request(format!("{field} `{shown}`: {why}; {HOW}"));
        let at = match self {
            Self::Millis(ms) => i64::try_from(*ms)
                .ok()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .ok_or_else(|| {
                    let latest = jiff::Timestamp::MAX;
                    bad(format!("it is after {latest}, the latest time accepted"))
                })?,
            Self::Time(text) => text
                .parse::<jiff::Timestamp>()
                .map_err(|e: jiff::Error| bad(e.to_string()))?,
        };
        u64::try_from(at.as_millisecond()).map_err(|_| bad("it is before 1970".into()))
    }
}

/// The page size when a list does not say.
fn default_limit() -> i64 {
    50
}
