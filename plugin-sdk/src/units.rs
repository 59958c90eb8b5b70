//! Durations and sizes as pipelines write them (`"500ms"`, `"30s"`, `"100MiB"`), and RFC 3339
//! times as indexes and registries write them (`rfc3339`), for plugin
//! configurations: `timeout: Option<units::Duration>` in a `serde` type reads `timeout = "30s"`.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A duration written `500ms`, `30s`, `5m` or `2h` (an integer and a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

/// A size in bytes written as an integer, or `512KiB`, `100MiB`, `2GiB` (also `KB`, `MB`, `GB`
/// as powers of 1000, and a bare `B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl Duration {
    /// Parses `text`.
    ///
    /// ```
    /// # use sluice_plugin_sdk::units::Duration;
    /// assert_eq!(Duration::parse("1500ms").unwrap().0.as_millis(), 1500);
    /// assert_eq!(Duration::parse("2m").unwrap().0.as_secs(), 120);
    /// assert!(Duration::parse("soon").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split(text);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (write e.g. `500ms`, `30s`, `5m`)"))?;
        let d = match unit {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
            "h" => std::time::Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "`{text}` has no known unit: write `ms`, `s`, `m` or `h` after the number"
                ));
            }
        };
        Ok(Self(d))
    }
}

impl Bytes {
    /// Parses `text`.
    ///
    /// ```
    /// # use sluice_plugin_sdk::units::Bytes;
    /// assert_eq!(Bytes::parse("100MiB").unwrap().0, 100 << 20);
    /// assert_eq!(Bytes::parse("4096").unwrap().0, 4096);
    /// assert!(Bytes::parse("lots").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split(text);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size (write e.g. `512KiB`, `100MiB`)"))?;
        let factor: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => {
                return Err(format!(
                    "`{text}` has no known unit: write B, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

fn split(text: &str) -> (&str, &str) {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (&text[..at], text[at..].trim())
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(n) => Ok(Self(n)),
            Written::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 30 && n % (1 << 30) == 0 => write!(f, "{} GiB", n >> 30),
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// An RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, as seconds since the Unix epoch
/// (none before it); `None` when it is not one (a bad form, February 30).
///
/// ```
/// # use sluice_plugin_sdk::units::rfc3339;
/// assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
/// assert_eq!(rfc3339("2026-11-30T13:30:00.250+01:30"), Some(1_796_040_000));
/// assert_eq!(rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
/// assert_eq!(rfc3339("2026-02-29T00:00:00Z"), None);
/// assert_eq!(rfc3339("1969-12-31T23:59:59Z"), None);
/// assert_eq!(rfc3339("yesterday"), None);
/// ```
pub fn rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (num_of(&rest[1..3])?, num_of(&rest[4..6])?);
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(seconds).ok()
}

fn num_of(text: &str) -> Option<i64> {
    text.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| text.parse().ok())?
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
