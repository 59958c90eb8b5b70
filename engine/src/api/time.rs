//! A time to deploy at, as the API takes it (`at` of a deploy, `defer-until` of an approval):
//! an RFC 3339 time with an offset, or Unix milliseconds. The document says exactly what is
//! accepted (`oneOf` a `date-time` string and an integer from 0 to [`LATEST`]) and this file
//! accepts exactly that: a number with a zero fraction (`940.0`) is an integer, as it is to
//! JSON Schema; a fraction, a negative or a larger number is a 400 naming the field. A time
//! before 1970 is in the past, as any past time is: it means now (0).

use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

use super::error::ApiError;

/// The latest time accepted, in Unix milliseconds: the latest an RFC 3339 time can name,
/// `9999-12-31T23:59:59.999-23:59` (10000-01-01T23:58:59.999Z). Far from the end of a `u64`,
/// so every deadline the core adds a duration to stays in range.
pub(super) const LATEST: u64 = 253_402_387_139_999;

const HOW: &str = "give an RFC 3339 time with an offset, such as 2026-11-24T06:00:00Z, or Unix \
                   milliseconds (a whole number from 0 to 253402387139999)";

/// A time to deploy at, as sent: checked by [`DeferUntil::millis`], which names the field.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum DeferUntil {
    /// Unix milliseconds (any JSON number; checked to be a whole one in range).
    Millis(serde_json::Number),
    /// RFC 3339, with an offset or `Z`.
    Time(String),
}

impl DeferUntil {
    /// Unix milliseconds; `field` (`at`, `defer-until`) names the input in a 400.
    pub(super) fn millis(&self, field: &str) -> Result<u64, ApiError> {
        let bad = |shown: &str, why: &str| {
            ApiError::bad_request(format!("{field} `{shown}`: {why}; {HOW}"))
        };
        match self {
            Self::Millis(number) => {
                let shown = number.to_string();
                let ms = if let Some(ms) = number.as_u64() {
                    Some(ms)
                } else if number.as_i64().is_some() {
                    return Err(bad(&shown, "it is negative"));
                } else {
                    // Only a float is left: whole and in range, or refused.
                    number.as_f64().and_then(|f| {
                        (f.fract() == 0.0 && (0.0..=LATEST as f64).contains(&f)).then_some(f as u64)
                    })
                };
                match ms {
                    Some(ms) if ms <= LATEST => Ok(ms),
                    Some(_) => Err(bad(&shown, "it is after the latest time accepted")),
                    None if number.as_f64().is_some_and(|f| f.fract() != 0.0) => {
                        Err(bad(&shown, "it is not a whole number of milliseconds"))
                    }
                    None => Err(bad(&shown, "it is out of range")),
                }
            }
            Self::Time(text) => rfc3339(text).map_err(|why| bad(text, why)),
        }
    }
}

/// The schema: exactly what [`DeferUntil::millis`] accepts.
impl utoipa::PartialSchema for DeferUntil {
    fn schema() -> RefOr<Schema> {
        let time = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "RFC 3339 with an offset or Z, e.g. 2026-11-24T06:00:00+01:00; a time before \
                 1970 means now",
            ));
        let millis = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(LATEST as f64))
            .description(Some("Unix milliseconds"));
        OneOfBuilder::new()
            .item(time)
            .item(millis)
            .description(Some(
                "A time: RFC 3339 or Unix milliseconds (at most 253402387139999, the latest an \
                 RFC 3339 time can name)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for DeferUntil {}

/// An RFC 3339 `date-time` (section 5.6: `T` or `t`, `Z`, `z` or `±hh:mm`, any fraction, a leap
/// second only at 23:59 UTC) in Unix milliseconds, 0 for a time before 1970; why not.
fn rfc3339(text: &str) -> Result<u64, &'static str> {
    const SHAPE: &str = "it is not an RFC 3339 time (YYYY-MM-DDThh:mm:ss, a fraction if any, \
                         then Z or an offset ±hh:mm)";
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Result<i64, &'static str> {
        let part = b.get(from..from + n).ok_or(SHAPE)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        Ok(part.iter().fold(0, |v, d| v * 10 + i64::from(d - b'0')))
    };
    let byte = |at: usize, allowed: &[u8]| -> Result<(), &'static str> {
        b.get(at)
            .filter(|c| allowed.contains(c))
            .map(|_| ())
            .ok_or(SHAPE)
    };
    let year = digits(0, 4)?;
    byte(4, b"-")?;
    let month = digits(5, 2)?;
    byte(7, b"-")?;
    let day = digits(8, 2)?;
    byte(10, b"Tt")?;
    let hour = digits(11, 2)?;
    byte(13, b":")?;
    let minute = digits(14, 2)?;
    byte(16, b":")?;
    let second = digits(17, 2)?;
    let mut at = 19;
    let mut fraction_ms = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(SHAPE);
        }
        // Milliseconds: the first three digits; finer ones are dropped.
        fraction_ms = b[start..at.min(start + 3)]
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0, |v, d| v * 10 + i64::from(d - b'0'));
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == at + 6 => {
            let (h, m) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            byte(at + 3, b":")?;
            if h > 23 || m > 59 {
                return Err("its offset is out of range (at most ±23:59)");
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return Err(SHAPE),
    };
    if hour > 23 || minute > 59 || second > 60 {
        return Err("its time of day is out of range");
    }
    let date = i8::try_from(month)
        .ok()
        .zip(i8::try_from(day).ok())
        .and_then(|(m, d)| jiff::civil::Date::new(year as i16, m, d).ok())
        .ok_or("its date does not exist")?;
    let days = i64::from(
        date.since((jiff::Unit::Day, jiff::civil::date(1970, 1, 1)))
            .map_err(|_| "its date does not exist")?
            .get_days(),
    );
    let local_minutes = days * 1440 + hour * 60 + minute;
    let utc_minutes = local_minutes - offset_minutes;
    if second == 60 && utc_minutes.rem_euclid(1440) != 23 * 60 + 59 {
        return Err("a leap second (:60) is at 23:59 UTC only");
    }
    // A leap second is the last millisecond of its minute.
    let ms = utc_minutes * 60_000
        + if second == 60 {
            59_999
        } else {
            second * 1000 + fraction_ms
        };
    Ok(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(json: &str) -> Result<u64, String> {
        serde_json::from_str::<DeferUntil>(json)
            .map_err(|e| e.to_string())?
            .millis("at")
            .map_err(|e| e.body.error)
    }

    #[test]
    fn a_time_is_rfc_3339_with_an_offset_or_whole_milliseconds_in_range() {
        assert_eq!(at("940"), Ok(940));
        assert_eq!(at("940.0"), Ok(940));
        assert_eq!(at("0"), Ok(0));
        assert_eq!(at(&LATEST.to_string()), Ok(LATEST));
        assert_eq!(at(r#""1970-01-01T00:00:00.940Z""#), Ok(940));
        assert_eq!(at(r#""2026-11-24T06:00:00+01:00""#), Ok(1_795_496_400_000));
        assert_eq!(
            at(r#""2026-11-24t05:00:00.123456z""#),
            Ok(1_795_496_400_123)
        );
        assert_eq!(at(r#""9999-12-31T23:59:59.999-23:59""#), Ok(LATEST));
        assert_eq!(at(r#""1969-12-31T23:59:59Z""#), Ok(0));
        assert_eq!(at(r#""0001-01-01T00:00:00Z""#), Ok(0));
        assert_eq!(at(r#""2016-12-31T23:59:60Z""#), Ok(1_483_228_799_999));
        assert_eq!(
            jiff::Timestamp::from_millisecond(1_795_496_400_000)
                .unwrap()
                .to_string(),
            "2026-11-24T05:00:00Z"
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_field_and_what_to_give() {
        for (json, why) in [
            ("940.5", "not a whole number"),
            ("-1", "negative"),
            ("-1.0", "out of range"),
            ("18446744073709551615", "after the latest"),
            (&(LATEST + 1).to_string(), "after the latest"),
            ("1e300", "out of range"),
            (r#""tomorrow""#, "not an RFC 3339 time"),
            (r#""2026-11-24T06:00:00""#, "not an RFC 3339 time"),
            (r#""2026-11-24 06:00:00Z""#, "not an RFC 3339 time"),
            (r#""2026-11-24T06:00:00+1:00""#, "not an RFC 3339 time"),
            (r#""2026-11-24T06:00:00.Z""#, "not an RFC 3339 time"),
            (r#""2026-11-24T06:00:00Z ""#, "not an RFC 3339 time"),
            (r#""2026-02-30T06:00:00Z""#, "does not exist"),
            (r#""2026-11-24T24:00:00Z""#, "time of day"),
            (r#""2026-11-24T06:00:60Z""#, "leap second"),
            (r#""2026-11-24T06:00:00+24:00""#, "offset"),
            (r#""٢٠٢٦-11-24T06:00:00Z""#, "not an RFC 3339 time"),
        ] {
            let error = at(json).unwrap_err();
            assert!(error.starts_with("at `"), "{json}: {error}");
            assert!(error.contains(why), "{json}: {error}");
            assert!(error.contains("RFC 3339"), "{json}: {error}");
        }
    }
}
