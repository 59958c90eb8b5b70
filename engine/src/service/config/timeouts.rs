//! The connection keys of `[limits]` in `sluice.toml` (`header-timeout`, `idle-timeout`,
//! `connections`), read apart from `config.rs` to keep it under 450 lines: a timeout is a
//! duration above zero, the cap at least 1; and the tests of the three keys.

use std::time::Duration;

use super::limits::{ApiLimits, RawLimits};
use crate::types::parse_duration;

/// `header-timeout`, `idle-timeout` and `connections` of the `[limits]` of the file `shown`,
/// defaults where absent; each bad one is a problem naming its key and the file (and its
/// default stands in while the rest is checked).
pub(super) fn connection_keys(
    problems: &mut Vec<String>,
    shown: &std::path::Display<'_>,
    limits: &RawLimits,
) -> (Duration, Duration, usize) {
    let defaults = ApiLimits::default();
    let mut timeout = |key: &str, text: Option<&str>, default: Duration| {
        let problem = match text.map(parse_duration) {
            None => return default,
            Some(Ok(d)) if !d.is_zero() => return d,
            Some(Ok(_)) => {
                "must be more than 0s (a zero timeout would close every connection)".into()
            }
            Some(Err(e)) => e,
        };
        problems.push(format!("{shown}: limits.{key}: {problem}"));
        default
    };
    let header = timeout(
        "header-timeout",
        limits.header_timeout.as_deref(),
        defaults.header_timeout,
    );
    let idle = timeout(
        "idle-timeout",
        limits.idle_timeout.as_deref(),
        defaults.idle_timeout,
    );
    let connections = limits.connections.unwrap_or(defaults.connections);
    if connections == 0 {
        problems.push(format!("{shown}: limits.connections must be at least 1"));
    }
    (header, idle, connections)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ApiLimits, ServiceConfig};

    fn load(limits: &str) -> Result<ServiceConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, format!("pipelines = \"p\"\n[limits]\n{limits}\n")).unwrap();
        ServiceConfig::load(&path).map_err(|e| {
            let shown = path.display().to_string();
            assert!(e.starts_with(&shown), "the file is named first: {e}");
            e
        })
    }

    #[test]
    fn connection_limits_default_to_10s_60s_and_1024_and_are_read() {
        let config = load("").unwrap();
        let defaults = ApiLimits::default();
        assert_eq!(
            (
                defaults.header_timeout,
                defaults.idle_timeout,
                defaults.connections
            ),
            (Duration::from_secs(10), Duration::from_secs(60), 1024)
        );
        assert_eq!(config.limits, defaults);
        let config =
            load("header-timeout = \"1s\"\nidle-timeout = \"500ms\"\nconnections = 3").unwrap();
        assert_eq!(config.limits.header_timeout, Duration::from_secs(1));
        assert_eq!(config.limits.idle_timeout, Duration::from_millis(500));
        assert_eq!(config.limits.connections, 3);
    }

    #[test]
    fn a_bad_connection_limit_is_refused_naming_its_key() {
        for (line, wanted) in [
            (
                "header-timeout = \"soon\"",
                "limits.header-timeout: `soon` is not a duration: write e.g. `30s`",
            ),
            (
                "header-timeout = \"0s\"",
                "limits.header-timeout: must be more than 0s",
            ),
            (
                "idle-timeout = \"99999999999999999h\"",
                "limits.idle-timeout: `99999999999999999h` is too long: at most 876000h",
            ),
            (
                "idle-timeout = \"0ms\"",
                "limits.idle-timeout: must be more than 0s",
            ),
            ("connections = 0", "limits.connections must be at least 1"),
        ] {
            let e = load(line).unwrap_err();
            assert!(e.contains(wanted), "{line}: {e}\nwanted: {wanted}");
        }
        // Not a number of connections at all: the TOML error names the line.
        let e = load("connections = -1").unwrap_err();
        assert!(e.contains("sluice.toml:3"), "{e}");
    }
}
