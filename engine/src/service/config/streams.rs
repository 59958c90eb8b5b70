//! `[limits]` keys of event streams: `streams` (open at once, all users), `streams-per-user`
//! and `stream-max` (how long one stays open before it ends; the client resumes with
//! `Last-Event-ID`).

use std::time::Duration;

use super::limits::{ApiLimits, RawLimits};
use crate::types::parse_duration;

/// The stream limits as read.
pub(super) struct StreamLimits {
    pub(super) streams: u32,
    pub(super) streams_per_user: u32,
    pub(super) stream_max: Duration,
}

/// Reads the stream keys of `[limits]`; a bad value is a problem naming the key in `shown`.
pub(super) fn limits(
    raw: &RawLimits,
    defaults: &ApiLimits,
    shown: &impl std::fmt::Display,
    problems: &mut Vec<String>,
) -> StreamLimits {
    let mut at_least_one = |key: &str, value: Option<u32>, default: u32| match value {
        None => default,
        Some(0) => {
            problems.push(format!(
                "{shown}: limits.{key} must be at least 1 (no event stream could open)"
            ));
            default
        }
        Some(n) => n,
    };
    let streams = at_least_one("streams", raw.streams, defaults.streams);
    let streams_per_user = at_least_one(
        "streams-per-user",
        raw.streams_per_user,
        defaults.streams_per_user,
    );
    let stream_max = match raw.stream_max.as_deref().map(parse_duration) {
        None => defaults.stream_max,
        Some(Ok(d)) if d.is_zero() => {
            problems.push(format!(
                "{shown}: limits.stream-max must be longer than 0s, e.g. \"30m\""
            ));
            defaults.stream_max
        }
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.stream-max: {e}"));
            defaults.stream_max
        }
    };
    StreamLimits {
        streams,
        streams_per_user,
        stream_max,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServiceConfig;

    fn load(limits: &str) -> Result<ServiceConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, format!("pipelines = \"p\"\n[limits]\n{limits}\n")).unwrap();
        ServiceConfig::load(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn stream_limits_are_read_with_their_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.limits.streams, 512);
        assert_eq!(config.limits.streams_per_user, 32);
        assert_eq!(config.limits.stream_max.as_secs(), 30 * 60);
        let config = load("streams = 3\nstreams-per-user = 2\nstream-max = \"1s\"").unwrap();
        assert_eq!(config.limits.streams, 3);
        assert_eq!(config.limits.streams_per_user, 2);
        assert_eq!(config.limits.stream_max.as_secs(), 1);
    }

    #[test]
    fn a_bad_stream_limit_is_refused_by_key_and_file() {
        let e = load("streams = 0\nstreams-per-user = 0\nstream-max = \"0s\"").unwrap_err();
        assert!(e.contains("FILE: limits.streams must be at least 1"), "{e}");
        assert!(
            e.contains("FILE: limits.streams-per-user must be at least 1"),
            "{e}"
        );
        assert!(
            e.contains("FILE: limits.stream-max must be longer than 0s"),
            "{e}"
        );
        let e = load("stream-max = \"soon\"").unwrap_err();
        assert!(e.contains("FILE: limits.stream-max: "), "{e}");
        let e = load("streams = -1").unwrap_err();
        assert!(e.contains("FILE:3: "), "{e}");
    }
}
