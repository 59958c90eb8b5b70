//! Per-call limits as plain values: memory, time, log volume and output size, the error that
//! names the setting to raise, and the size and duration parsers pipelines and `sluice.toml`
//! share. The plugin host enforces them (`plugin/limits.rs`); the WebAssembly stack is bounded
//! engine-wide (`plugin::HostConfig::max_stack`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds for one plugin call. Exceeding one fails that call with a [`LimitExceeded`] naming
/// the limit and the setting that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory the plugin may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time for the whole call, instantiation included.
    pub timeout: Duration,
    /// Bytes of log lines (stdout, stderr and the `log` import together).
    pub log: u64,
    /// Bytes of the returned value (warnings, output variables, versions).
    pub output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 256 << 20,
            timeout: Duration::from_secs(600),
            log: 8 << 20,
            output: 1 << 20,
        }
    }
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// Linear memory.
    Memory,
    /// Wall-clock time.
    Time,
    /// Log volume.
    Log,
    /// Size of the returned value.
    Output,
    /// WebAssembly call stack.
    Stack,
}

/// A limit was hit: which one, its value, and the setting that raises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitExceeded {
    /// The limit.
    pub kind: LimitKind,
    /// The limit's value, for people (`64 MiB`, `30s`).
    pub limit: String,
}

impl LimitExceeded {
    pub(crate) fn new(kind: LimitKind, limit: String) -> Self {
        Self { kind, limit }
    }

    /// The setting that raises the limit: the task's key in the pipeline and the
    /// `sluice plugin run` flag.
    pub fn setting(&self) -> &'static str {
        match self.kind {
            LimitKind::Memory => "`limits.memory` on the task (`--memory` for `sluice plugin run`)",
            LimitKind::Time => "`timeout` on the task (`--timeout` for `sluice plugin run`)",
            LimitKind::Log => "`limits.log` on the task (`--log-limit` for `sluice plugin run`)",
            LimitKind::Output => {
                "`limits.output` on the task (`--output-limit` for `sluice plugin run`)"
            }
            LimitKind::Stack => {
                "`max_stack` in the engine settings (`--stack` for `sluice plugin run`)"
            }
        }
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            LimitKind::Memory => "memory limit",
            LimitKind::Time => "time limit",
            LimitKind::Log => "log limit",
            LimitKind::Output => "output size limit",
            LimitKind::Stack => "stack limit",
        };
        write!(
            f,
            "{what} of {} exceeded; raise it with {}",
            self.limit,
            self.setting()
        )
    }
}

impl std::error::Error for LimitExceeded {}

/// Bytes for people: `64 MiB`, `512 KiB`, `100 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

/// Splits `64MiB` into `(64, "mib")`; `what` and `example` make the error message.
fn number_and_unit(text: &str, what: &str, example: &str) -> Result<(u64, String), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("`{text}` is not a {what}: write e.g. {example}"))?;
    Ok((number, unit.trim().to_ascii_lowercase()))
}

/// Parses a size such as `64MiB`, `512 KiB`, `1G`, `1000` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = number_and_unit(text, "size", "`64MiB`, `512KiB`, `1GiB`")?;
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{}`: use B, KiB, MiB or GiB",
                text.trim()
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{}` is too large", text.trim()))
}

/// Parses a duration such as `30s`, `500ms`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "duration", "`30s`, `500ms`, `5m`")?;
    Ok(match unit.as_str() {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{}`: use ms, s, m or h",
                text.trim()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_bytes("3 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(12), "12 B");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 fortnights").is_err());
    }

    #[test]
    fn limit_message_names_the_setting() {
        let e = LimitExceeded::new(LimitKind::Memory, "16 MiB".into());
        assert_eq!(
            e.to_string(),
            "memory limit of 16 MiB exceeded; raise it with `limits.memory` on the task \
             (`--memory` for `sluice plugin run`)"
        );
    }
}
