//! Durations written the way Stolon (and Go) writes them: `"5s"`, `"1m30s"`, `"250ms"`, `"48h"`.
//!
//! Cluster specs written for Stolon must load unchanged, so the parser accepts Go's
//! `time.ParseDuration` syntax (a sequence of decimal numbers, each with an optional fraction and a
//! unit among `ns us µs ms s m h`). Negative durations are rejected: no timeout in a cluster spec
//! has a meaning below zero. The formatter writes the shortest exact form, which the parser
//! reads back to the same value.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write e.g. \"5s\" or \"1m30s\"")]
    Empty,
    #[error("negative duration {0:?}: durations must be zero or positive")]
    Negative(String),
    #[error("invalid duration {0:?}: write a number followed by a unit (h, m, s, ms, us, ns), e.g. \"1m30s\"")]
    Syntax(String),
    #[error("missing unit in duration {0:?}: write e.g. \"5s\", a bare number is ambiguous")]
    MissingUnit(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go-style duration (`"1m30s"`, `"0.5s"`, `"0"`).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    // Go accepts a bare "0" as the zero duration.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::Syntax(input.to_string()));
        }
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| DurationError::Syntax(input.to_string()))?;
        total_ns = total_ns
            .checked_add(scaled(number, scale).ok_or_else(|| DurationError::Syntax(input.to_string()))?)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        rest = next;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| DurationError::Overflow(input.to_string()))?;
    // The remainder of a division by 1e9 always fits in u32.
    let nanos = (total_ns % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number * scale` in nanoseconds, where `number` may carry a decimal fraction ("1.5").
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.contains('.') {
        return None;
    }
    let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    let mut total = int.checked_mul(scale)?;
    let mut divisor: u128 = 1;
    for digit in frac_part.chars() {
        divisor = divisor.checked_mul(10)?;
        let d = u128::from(digit.to_digit(10)?);
        // Digits finer than a nanosecond are dropped, as Go does.
        total = total.checked_add(d * scale / divisor)?;
    }
    Some(total)
}

/// Formats a duration in the shortest exact Go-compatible form: `"1m30s"`, `"250ms"`, `"0s"`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    let hours = secs / 3600;
    secs %= 3600;
    let minutes = secs / 60;
    secs %= 60;
    let nanos = d.subsec_nanos();
    let (ms, us, ns) = (nanos / 1_000_000, (nanos / 1_000) % 1_000, nanos % 1_000);
    for (value, unit) in [
        (hours, "h"),
        (minutes, "m"),
        (secs, "s"),
        (u64::from(ms), "ms"),
        (u64::from(us), "us"),
        (u64::from(ns), "ns"),
    ] {
        if value > 0 {
            out.push_str(&value.to_string());
            out.push_str(unit);
        }
    }
    out
}

/// Serde adapter for `Option<Duration>` fields written as Go duration strings.
pub mod opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        raw.map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde adapter for required `Duration` fields written as Go duration strings.
pub mod required {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("48h", Duration::from_secs(48 * 3600)),
            ("1h2m3s4ms", Duration::new(3723, 4_000_000)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+3s", Duration::from_secs(3)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(matches!(parse(""), Err(DurationError::Empty)));
        assert!(matches!(parse("-5s"), Err(DurationError::Negative(_))));
        assert!(matches!(parse("5"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(parse("5x"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("1.2.3s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("5 s"), Err(DurationError::Syntax(_))));
        assert!(parse("99999999999999999999h").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(90),
            Duration::from_millis(1500),
            Duration::from_secs(48 * 3600),
            Duration::new(3723, 4_005_006),
        ] {
            let text = format(d);
            assert_eq!(parse(&text), Ok(d), "{text}");
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
