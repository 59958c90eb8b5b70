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
    /// Bytes of log lines (stdout, stderr and the `log` import together), fields and progress
    /// reports; each of them also costs [`ITEM_OVERHEAD`].
    pub log: u64,
    /// Bytes of the returned value (warnings, output variables, versions); each item also
    /// costs [`ITEM_OVERHEAD`].
    pub output: u64,
}

/// What every log line, field, progress report, output variable, warning, version (and each of
/// a version's tags and metadata entries) costs against its limit on top of its text. Storing
/// an item costs more than its bytes — a record with its length, level and time, its place in
/// a list, its key in the store — so a limit that counted text alone let a flood of *empty*
/// items through (five million empty lines passed a 1 KiB log limit). With this floor, N items
/// cost at least N × 64 bytes: a 1 KiB limit takes at most 16 of them. 64 bytes is about what
/// one stored line costs the host beyond its text.
pub const ITEM_OVERHEAD: u64 = 64;

/// What an item of `text` bytes costs against its limit: [`ITEM_OVERHEAD`] plus its text.
pub fn item_cost(text: usize) -> u64 {
    ITEM_OVERHEAD.saturating_add(text as u64)
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
        // Log and output limits count items too: say so, or a flood of empty lines would
        // read as a limit hit by nothing.
        let counted = match self.kind {
            LimitKind::Log => {
                format!(
                    " (each line, field and progress report counts {ITEM_OVERHEAD} bytes plus its text)"
                )
            }
            LimitKind::Output => {
                format!(
                    " (each output, warning and version counts {ITEM_OVERHEAD} bytes plus its text)"
                )
            }
            _ => String::new(),
        };
        write!(
            f,
            "{what} of {} exceeded{counted}; raise it with {}",
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

/// The longest duration a pipeline or `sluice.toml` may give: 100 years (of 365 days). Every
/// deadline is a Unix-millisecond `u64` computed as a time plus such a duration, and the times
/// that enter the engine are at most the year 9999 (jiff's range), so with this bound no sum
/// can overflow; the core still adds with saturation (see [`millis`]), for plans stored
/// before the bound existed.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration in whole milliseconds, saturating: a duration too long for a `u64` of
/// milliseconds (only possible in a plan stored before [`MAX_DURATION`]) is `u64::MAX`, which
/// the core reads as "never" — the honest meaning of a deadline past the end of time.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Splits `64MiB` into `(64, "mib")`; `what` and `example` make the error message. A number
/// too large for a `u64` is `None` (the caller says how large it may be, in its unit).
fn number_and_unit(text: &str, what: &str, example: &str) -> Result<(Option<u64>, String), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = match number.parse::<u64>() {
        Ok(n) => Some(n),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => None,
        Err(_) => return Err(format!("`{text}` is not a {what}: write e.g. {example}")),
    };
    Ok((number, unit.trim().to_ascii_lowercase()))
}

/// `number` units of `factor` each, if that is at most `max`; otherwise the error saying the
/// largest accepted in the unit as written (`at most 876000h`).
fn scaled(
    text: &str,
    number: Option<u64>,
    (factor, max): (u64, u64),
    (unit, too): (&str, &str),
) -> Result<u64, String> {
    number
        .and_then(|n| n.checked_mul(factor))
        .filter(|&v| v <= max)
        .ok_or_else(|| {
            format!(
                "`{}` is too {too}: at most {}{unit}",
                text.trim(),
                max / factor
            )
        })
}

/// Parses a size such as `64MiB`, `512 KiB`, `1G`, `1000` (bytes); refuses one over
/// `u64::MAX` bytes, naming the largest accepted in the unit written.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = number_and_unit(text, "size", "`64MiB`, `512KiB`, `1GiB`")?;
    let (factor, shown): (u64, &str) = match unit.as_str() {
        "" | "b" => (1, " B"),
        "k" | "kb" | "kib" => (1 << 10, " KiB"),
        "m" | "mb" | "mib" => (1 << 20, " MiB"),
        "g" | "gb" | "gib" => (1 << 30, " GiB"),
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{}`: use B, KiB, MiB or GiB",
                text.trim()
            ));
        }
    };
    scaled(text, number, (factor, u64::MAX), (shown, "large"))
}

/// Parses a duration such as `30s`, `500ms`, `5m`, `1h`; refuses one over [`MAX_DURATION`]
/// (`` `99999999999999999h` is too long: at most 876000h ``), so that no deadline computed
/// from it can overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "duration", "`30s`, `500ms`, `5m`")?;
    let (factor, shown): (u64, &str) = match unit.as_str() {
        "ms" => (1, "ms"),
        "s" | "" => (1_000, "s"),
        "m" | "min" => (60_000, "m"),
        "h" => (3_600_000, "h"),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{}`: use ms, s, m or h",
                text.trim()
            ));
        }
    };
    let max = millis(MAX_DURATION);
    scaled(text, number, (factor, max), (shown, "long")).map(Duration::from_millis)
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
    fn durations_stop_at_a_hundred_years_in_every_unit() {
        let max = MAX_DURATION;
        assert_eq!(max, Duration::from_secs(876_000 * 3600));
        for (largest, refused, unit) in [
            ("3153600000000ms", "3153600000001ms", "ms"),
            ("3153600000s", "3153600001s", "s"),
            ("3153600000", "3153600001", "s"),
            ("52560000m", "52560001m", "m"),
            ("52560000min", "52560001min", "m"),
            ("876000h", "876001h", "h"),
        ] {
            assert_eq!(parse_duration(largest), Ok(max), "{largest}");
            let e = parse_duration(refused).unwrap_err();
            let at_most = max.as_millis()
                / u128::from(match unit {
                    "ms" => 1u32,
                    "s" => 1_000,
                    "m" => 60_000,
                    _ => 3_600_000,
                });
            assert_eq!(
                e,
                format!("`{refused}` is too long: at most {at_most}{unit}"),
                "{refused}"
            );
        }
        // Past a u64, past a u64 once multiplied, and the issue's own example.
        for text in [
            "18446744073709551616ms",
            "99999999999999999999999999h",
            "18446744073709551615s",
            "5124095576030432h",
        ] {
            assert!(
                parse_duration(text).unwrap_err().contains("too long"),
                "{text}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999h").unwrap_err(),
            "`99999999999999999h` is too long: at most 876000h"
        );
        assert_eq!(parse_duration("0h"), Ok(Duration::ZERO));
    }

    #[test]
    fn sizes_stop_at_a_u64_in_every_unit() {
        let gib = u64::MAX >> 30;
        for (largest, value, refused, at_most) in [
            (
                "18446744073709551615",
                u64::MAX,
                "18446744073709551616",
                "18446744073709551615 B",
            ),
            (
                "18446744073709551615B",
                u64::MAX,
                "18446744073709551616 b",
                "18446744073709551615 B",
            ),
            (
                "18014398509481983KiB",
                (u64::MAX >> 10) << 10,
                "18014398509481984KiB",
                "18014398509481983 KiB",
            ),
            (
                "17592186044415m",
                (u64::MAX >> 20) << 20,
                "17592186044416m",
                "17592186044415 MiB",
            ),
            (
                "17179869183GiB",
                gib << 30,
                "17179869184GiB",
                "17179869183 GiB",
            ),
        ] {
            assert_eq!(parse_bytes(largest), Ok(value), "{largest}");
            let e = parse_bytes(refused).unwrap_err();
            assert_eq!(
                e,
                format!("`{refused}` is too large: at most {at_most}"),
                "{refused}"
            );
        }
        assert!(
            parse_bytes("99999999999999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn millis_saturate() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(millis(MAX_DURATION), 3_153_600_000_000);
    }

    #[test]
    fn limit_message_names_the_setting() {
        let e = LimitExceeded::new(LimitKind::Memory, "16 MiB".into());
        assert_eq!(
            e.to_string(),
            "memory limit of 16 MiB exceeded; raise it with `limits.memory` on the task \
             (`--memory` for `sluice plugin run`)"
        );
        let e = LimitExceeded::new(LimitKind::Log, "1 KiB".into());
        assert_eq!(
            e.to_string(),
            "log limit of 1 KiB exceeded (each line, field and progress report counts 64 bytes \
             plus its text); raise it with `limits.log` on the task (`--log-limit` for `sluice \
             plugin run`)"
        );
    }

    #[test]
    fn an_empty_item_costs_the_overhead() {
        assert_eq!(item_cost(0), ITEM_OVERHEAD);
        assert_eq!(item_cost(10), ITEM_OVERHEAD + 10);
        assert_eq!(item_cost(usize::MAX), u64::MAX);
    }
}
