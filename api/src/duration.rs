//! Durations the way Vault reads and prints them: Go duration strings, integer seconds, days.
//!
//! Vault parses every TTL field with `parseutil.ParseDurationSecond`, and this module follows it:
//!
//! * `""` is zero; a string of digits (`"3600"`, `"+5"`) is whole seconds;
//! * a whole number of days ends in `d` (`"7d"`; `"1.5d"` and `"1h2d"` are errors);
//! * anything else is a Go `time.ParseDuration` string: `"30s"`, `"1h30m"`, `"1.5h"`, `"1h0m0s"`,
//!   `"500ms"`, `"0"`, with units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`;
//! * JSON integers are seconds ([`parse_duration_value`]).
//!
//! cairn works in whole seconds, like Vault's TTL fields (`int(dur.Seconds())`): a fraction of a
//! second is **truncated**, so `"1.9s"` is 1 and `"500ms"` is 0. Negative durations are errors,
//! except the zero ones (`"-0s"`). The largest duration is Go's, `i64::MAX` nanoseconds
//! ([`MAX_SECONDS`], about 292 years); larger values are errors rather than Go's silent wrap-around.
//! Error messages repeat Go's (`time: invalid duration "abc"`), which clients already know.

use thiserror::Error;

/// The longest duration accepted, in seconds: Go's `time.Duration` holds `i64::MAX` nanoseconds.
pub const MAX_SECONDS: u64 = i64::MAX as u64 / NANOS_PER_SECOND;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Not a duration at all (Go: `time: invalid duration "…"`).
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    /// A number without a unit, such as `"1.5"` (Go: `time: missing unit in duration "…"`).
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    /// A unit Go does not know, such as `"5y"`.
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// A duration below zero.
    #[error("duration {0:?} cannot be negative")]
    Negative(String),
    /// A duration longer than [`MAX_SECONDS`].
    #[error("duration {0:?} is too long (the limit is {MAX_SECONDS} seconds)")]
    OutOfRange(String),
    /// A JSON value that cannot hold a duration (a float, a boolean, an array, an object).
    #[error("expected a duration (a string such as \"1h\" or whole seconds), got {0}")]
    WrongType(String),
}

/// Parses a TTL as Vault does and returns whole seconds (fractions truncated; see the module doc).
///
/// `""` and `"0"` are zero. Negative values and values above [`MAX_SECONDS`] are errors.
pub fn parse_duration(s: &str) -> Result<u64, DurationError> {
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return whole_units(s, non_negative(s, secs)?, 1);
    }
    if let Some(days) = s.strip_suffix('d') {
        let days = days.parse::<i64>().map_err(|_| DurationError::Invalid(s.to_owned()))?;
        return whole_units(s, non_negative(s, days)?, SECONDS_PER_DAY);
    }
    parse_go_duration(s).map(|nanos| nanos / NANOS_PER_SECOND)
}

/// Parses a duration given in a JSON body or a JSON config: integers are seconds, strings go
/// through [`parse_duration`], `null` is zero.
///
/// Floats are refused, as in Vault: its JSON decoder keeps numbers as text, and `"1.5"` has no unit.
pub fn parse_duration_value(v: &serde_json::Value) -> Result<u64, DurationError> {
    match v {
        serde_json::Value::Null => Ok(0),
        serde_json::Value::String(s) => parse_duration(s),
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            match (n.as_u64(), n.as_i64()) {
                (Some(secs), _) => whole_units(&text, secs, 1),
                (None, Some(_)) => Err(DurationError::Negative(text)),
                (None, None) => Err(DurationError::MissingUnit(text)),
            }
        }
        serde_json::Value::Bool(_) => Err(DurationError::WrongType("a boolean".to_owned())),
        serde_json::Value::Array(_) => Err(DurationError::WrongType("an array".to_owned())),
        serde_json::Value::Object(_) => Err(DurationError::WrongType("an object".to_owned())),
    }
}

/// Parses a duration setting that is not a TTL (a listener's timeouts), keeping Go's precision:
/// `"500ms"` stays half a second where [`parse_duration_value`] truncates it to 0. Integers and
/// digit strings are seconds, `d` suffixes days, `null` and `""` are zero, as for TTLs.
pub fn parse_exact_duration_value(v: &serde_json::Value) -> Result<std::time::Duration, DurationError> {
    let text = match v {
        serde_json::Value::String(s) => s.as_str(),
        other => return parse_duration_value(other).map(std::time::Duration::from_secs),
    };
    let is_seconds = text.parse::<i64>().is_ok();
    let is_days = text.strip_suffix('d').is_some_and(|d| d.parse::<i64>().is_ok());
    if text.is_empty() || is_seconds || is_days {
        return parse_duration(text).map(std::time::Duration::from_secs);
    }
    parse_go_duration(text).map(std::time::Duration::from_nanos)
}

/// Durations as Go prints them; one implementation, shared with the rules.
pub use commands::duration::format_go_duration;

fn non_negative(input: &str, n: i64) -> Result<u64, DurationError> {
    u64::try_from(n).map_err(|_| DurationError::Negative(input.to_owned()))
}

/// `count` whole units of `unit_secs` seconds, checked against [`MAX_SECONDS`].
fn whole_units(input: &str, count: u64, unit_secs: u64) -> Result<u64, DurationError> {
    count
        .checked_mul(unit_secs)
        .filter(|secs| *secs <= MAX_SECONDS)
        .ok_or_else(|| DurationError::OutOfRange(input.to_owned()))
}

/// Go's `time.ParseDuration`, in nanoseconds. Grammar: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`.
///
/// Fractions are computed exactly in integers (Go uses a float64 there; the two differ by at
/// most a nanosecond, which the truncation to seconds hides).
fn parse_go_duration(input: &str) -> Result<u64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The whole part: [0-9]*
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        // The fraction: (\.[0-9]*)?
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(frac) => frac.split_at(frac.bytes().take_while(u8::is_ascii_digit).count()),
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid()); // "abc", ".s", "1h-5m"
        }
        // The unit: everything up to the next digit or dot.
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let unit_nanos = unit_nanos(unit)
            .ok_or_else(|| DurationError::UnknownUnit { unit: unit.to_owned(), input: input.to_owned() })?;

        let whole: u128 = if int_digits.is_empty() { 0 } else { int_digits.parse().map_err(|_| invalid())? };
        total = total.checked_add(whole.checked_mul(unit_nanos).ok_or_else(invalid)?).ok_or_else(invalid)?;
        total += fraction_nanos(frac_digits, unit_nanos);
        if total > i64::MAX as u128 + 1 {
            return Err(invalid());
        }
        rest = after;
    }
    match (negative, u64::try_from(total)) {
        (_, Ok(0)) => Ok(0),
        (true, _) => Err(DurationError::Negative(input.to_owned())),
        (false, Ok(nanos)) if nanos <= i64::MAX as u64 => Ok(nanos),
        (false, _) => Err(invalid()),
    }
}

/// `0.<digits>` units in nanoseconds, truncated. Digits past the 19th cannot change the result.
fn fraction_nanos(digits: &str, unit_nanos: u128) -> u128 {
    let kept = &digits[..digits.len().min(19)];
    let numerator: u128 = kept.parse().unwrap_or(0);
    let scale = 10u128.pow(kept.len() as u32);
    numerator * unit_nanos / scale
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(s: &str) -> u64 {
        match parse_duration(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn exact_durations_keep_fractions_of_a_second() {
        use std::time::Duration;
        let exact = |v: serde_json::Value| parse_exact_duration_value(&v).expect("duration");
        assert_eq!(exact(json!("500ms")), Duration::from_millis(500));
        assert_eq!(exact(json!("1.5s")), Duration::from_millis(1500));
        assert_eq!(exact(json!("5m")), Duration::from_secs(300));
        assert_eq!(exact(json!("90")), Duration::from_secs(90));
        assert_eq!(exact(json!(30)), Duration::from_secs(30));
        assert_eq!(exact(json!("2d")), Duration::from_secs(172_800));
        assert_eq!(exact(json!("")), Duration::ZERO);
        assert!(matches!(parse_exact_duration_value(&json!("-1s")), Err(DurationError::Negative(_))));
        assert!(matches!(parse_exact_duration_value(&json!(-3)), Err(DurationError::Negative(_))));
        assert!(matches!(parse_exact_duration_value(&json!("soon")), Err(DurationError::Invalid(_))));
    }

    #[test]
    fn go_duration_strings() {
        assert_eq!(ok("30s"), 30);
        assert_eq!(ok("5m"), 300);
        assert_eq!(ok("1h30m"), 5400);
        assert_eq!(ok("90m"), 5400);
        assert_eq!(ok("768h"), 2_764_800);
        assert_eq!(ok("1h0m0s"), 3600);
        assert_eq!(ok("5m0s"), 300);
        assert_eq!(ok("3h25m19s"), 12319);
        assert_eq!(ok("1.5h"), 5400);
        assert_eq!(ok(".5m"), 30);
        assert_eq!(ok("1.m"), 60);
        assert_eq!(ok("+5s"), 5);
        assert_eq!(ok("1h1h"), 7200, "Go allows repeated units");
        assert_eq!(ok("2562047h"), 2562047 * 3600);
    }

    #[test]
    fn sub_second_parts_are_truncated() {
        assert_eq!(ok("500ms"), 0);
        assert_eq!(ok("1500ms"), 1);
        assert_eq!(ok("1.9s"), 1);
        assert_eq!(ok("999999999ns"), 0);
        assert_eq!(ok("1000000000ns"), 1);
        assert_eq!(ok("2000000us"), 2);
        assert_eq!(ok("2000000µs"), 2);
        assert_eq!(ok("2000000μs"), 2);
        assert_eq!(ok("0.1h"), 360);
        assert_eq!(ok("1.0000000000000000000000001s"), 1);
        assert_eq!(ok("0.99999999999999999999999s"), 0);
    }

    #[test]
    fn integers_days_and_zero() {
        assert_eq!(ok(""), 0);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("-0"), 0);
        assert_eq!(ok("+0"), 0);
        assert_eq!(ok("0s"), 0);
        assert_eq!(ok("-0s"), 0);
        assert_eq!(ok("3600"), 3600);
        assert_eq!(ok("+5"), 5);
        assert_eq!(ok("007"), 7);
        assert_eq!(ok("7d"), 7 * 86_400);
        assert_eq!(ok("0d"), 0);
        assert_eq!(ok(&MAX_SECONDS.to_string()), MAX_SECONDS);
    }

    #[test]
    fn invalid_strings_use_go_messages() {
        let err = |s: &str| match parse_duration(s) {
            Ok(v) => panic!("{s:?} should fail, got {v}"),
            Err(e) => e,
        };
        assert_eq!(err("abc").to_string(), r#"time: invalid duration "abc""#);
        assert_eq!(err("1.5").to_string(), r#"time: missing unit in duration "1.5""#);
        assert_eq!(err("5y").to_string(), r#"time: unknown unit "y" in duration "5y""#);
        assert_eq!(err("5 s").to_string(), r#"time: unknown unit " s" in duration "5 s""#);
        for s in [" 5s", "-", "+", ".", ".s", "s", "1h-5m", "h1", "--5s", "1.5d", "1h2d", "d", "1e3s"] {
            assert!(
                matches!(err(s), DurationError::Invalid(_) | DurationError::UnknownUnit { .. }),
                "{s:?}: {}",
                err(s)
            );
        }
        assert!(matches!(err("5S"), DurationError::UnknownUnit { .. }));
        assert!(matches!(err("1 "), DurationError::UnknownUnit { .. }));
    }

    #[test]
    fn negative_durations_are_refused() {
        for s in ["-5", "-5s", "-1h30m", "-1d", "-0.5s", "-1ns"] {
            assert_eq!(parse_duration(s), Err(DurationError::Negative(s.to_owned())), "{s}");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(parse_duration("2562048h"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_duration("9223372037s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_duration("99999999999999999999999999999999999999999h"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_duration("9223372037"), Err(DurationError::OutOfRange(_))));
        assert!(matches!(parse_duration("106752d"), Err(DurationError::OutOfRange(_))));
        assert!(matches!(parse_duration("99999999999999999999d"), Err(DurationError::Invalid(_))));
        // Too many digits for an i64: Go's ParseDuration then says the unit is missing.
        assert!(matches!(parse_duration("99999999999999999999"), Err(DurationError::MissingUnit(_))));
        assert_eq!(ok("9223372036s"), 9_223_372_036);
    }

    #[test]
    fn json_values() {
        assert_eq!(parse_duration_value(&json!(3600)), Ok(3600));
        assert_eq!(parse_duration_value(&json!(0)), Ok(0));
        assert_eq!(parse_duration_value(&json!("1h")), Ok(3600));
        assert_eq!(parse_duration_value(&json!("3600")), Ok(3600));
        assert_eq!(parse_duration_value(&json!("")), Ok(0));
        assert_eq!(parse_duration_value(&json!(null)), Ok(0));
        assert_eq!(parse_duration_value(&json!(-5)), Err(DurationError::Negative("-5".into())));
        assert_eq!(parse_duration_value(&json!(1.5)), Err(DurationError::MissingUnit("1.5".into())));
        assert!(matches!(parse_duration_value(&json!(3600.0)), Err(DurationError::MissingUnit(_))));
        assert!(matches!(parse_duration_value(&json!(u64::MAX)), Err(DurationError::OutOfRange(_))));
        assert!(matches!(parse_duration_value(&json!(true)), Err(DurationError::WrongType(_))));
        assert!(matches!(parse_duration_value(&json!([1])), Err(DurationError::WrongType(_))));
        assert!(matches!(parse_duration_value(&json!({"a": 1})), Err(DurationError::WrongType(_))));
    }

    #[test]
    fn go_formatting() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(1), "1s");
        assert_eq!(format_go_duration(59), "59s");
        assert_eq!(format_go_duration(60), "1m0s");
        assert_eq!(format_go_duration(61), "1m1s");
        assert_eq!(format_go_duration(3599), "59m59s");
        assert_eq!(format_go_duration(3600), "1h0m0s");
        assert_eq!(format_go_duration(12319), "3h25m19s");
        assert_eq!(format_go_duration(2_764_800), "768h0m0s");
        assert_eq!(format_go_duration(MAX_SECONDS), "2562047h47m16s");
        assert_eq!(format_go_duration(u64::MAX), "5124095576030431h0m15s");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for secs in [0, 1, 59, 60, 61, 3599, 3600, 3601, 86_399, 86_400, 2_764_800, 31_536_000, MAX_SECONDS] {
            assert_eq!(parse_duration(&format_go_duration(secs)), Ok(secs), "{secs}");
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        for s in ["\u{0}", "1\u{b5}", "1\u{3bc}", "1µ", "é", "1.2.3s", "1..s", "1s.", "\u{feff}1s", "-.", "+-1s"] {
            let _ = parse_duration(s);
        }
    }
}
