//! Scalar decoding for path-rule attributes, following Go's `parseutil`: durations
//! (`min_wrapping_ttl`, `max_wrapping_ttl`) and absolute times (`expiration`).

use serde_json::Value;

/// Parses a duration as Vault's `ParseDurationSecond` does and returns whole seconds.
///
/// Accepted: a number (seconds; fractions truncated as Go does), an integer string
/// (seconds), `<n>d` (days), or a Go duration string (`"1h30m"`, `"1.5h"`, `"300ms"`).
/// `null` and `""` mean unset. Zero and negative durations mean unset too (Vault only
/// enforces positive TTLs). Sub-second positive durations are rounded **up** to whole
/// seconds so that a set TTL stays set.
pub fn duration_secs(value: &Value) -> Result<Option<u64>, String> {
    let nanos = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => number_secs(n).saturating_mul(1_000_000_000),
        Value::String(s) => string_nanos(s)?,
        _ => return Err("could not parse duration from input".to_string()),
    };
    Ok(positive_secs(nanos))
}

fn number_secs(n: &serde_json::Number) -> i128 {
    if let Some(i) = n.as_i64() {
        return i128::from(i);
    }
    if let Some(u) = n.as_u64() {
        return i128::from(u);
    }
    // Go converts a float to a Duration by truncation; `as` saturates on overflow.
    n.as_f64().map_or(0, |f| f.trunc() as i128)
}

fn positive_secs(nanos: i128) -> Option<u64> {
    if nanos <= 0 {
        return None;
    }
    let secs = (nanos + 999_999_999) / 1_000_000_000;
    Some(u64::try_from(secs).unwrap_or(u64::MAX))
}

fn string_nanos(s: &str) -> Result<i128, String> {
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(i128::from(secs) * 1_000_000_000);
    }
    if let Some(days) = s.strip_suffix('d') {
        let days: i64 = days.parse().map_err(|_| format!("strconv.ParseInt: parsing {days:?}: invalid syntax"))?;
        return Ok(i128::from(days) * 86_400 * 1_000_000_000);
    }
    go_duration_nanos(s)
}

/// Go's `time.ParseDuration`: an optional sign, then one or more `<decimal><unit>` pairs.
fn go_duration_nanos(input: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {input:?}");
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
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {input:?}"));
        }
        let scale = unit_nanos(unit).ok_or_else(|| format!("time: unknown unit {unit:?} in duration {input:?}"))?;
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 9.3e18 {
        return Err(invalid());
    }
    let nanos = total as i128;
    Ok(if negative { -nanos } else { nanos })
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// Parses an absolute time as Vault's `ParseAbsoluteTime` does, into Unix seconds:
/// RFC 3339 (with or without fractional seconds), or an integer of Unix seconds (as a
/// number or a string).
pub fn unix_time(value: &Value) -> Result<i64, String> {
    const MESSAGE: &str = "could not parse string as date and time";
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| MESSAGE.to_string()),
        Value::String(s) => rfc3339_secs(s).or_else(|| s.parse::<i64>().ok()).ok_or_else(|| MESSAGE.to_string()),
        _ => Err(MESSAGE.to_string()),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → Unix seconds (the fraction is dropped).
fn rfc3339_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 7)?, digits(s, 8, 10)?);
    let (hour, minute, second) = (digits(s, 11, 13)?, digits(s, 14, 16)?, digits(s, 17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = zone_offset_secs(skip_fraction(&s[19..])?)?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn skip_fraction(rest: &str) -> Option<&str> {
    let Some(fraction) = rest.strip_prefix('.') else {
        return Some(rest);
    };
    let len = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
    if len == 0 {
        return None;
    }
    Some(&fraction[len..])
}

fn zone_offset_secs(zone: &str) -> Option<i64> {
    if zone == "Z" || zone == "z" {
        return Some(0);
    }
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = (digits(zone, 1, 3)?, digits(zone, 4, 6)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

fn digits(s: &str, from: usize, to: usize) -> Option<i64> {
    let part = s.get(from..to)?;
    if !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_follow_parse_duration_second() {
        assert_eq!(duration_secs(&json!(60)), Ok(Some(60)));
        assert_eq!(duration_secs(&json!(1.5)), Ok(Some(1)));
        assert_eq!(duration_secs(&json!("90")), Ok(Some(90)));
        assert_eq!(duration_secs(&json!("2d")), Ok(Some(172_800)));
        assert_eq!(duration_secs(&json!("1h30m")), Ok(Some(5400)));
        assert_eq!(duration_secs(&json!("1.5h")), Ok(Some(5400)));
        assert_eq!(duration_secs(&json!("300ms")), Ok(Some(1)));
        assert_eq!(duration_secs(&json!("-5s")), Ok(None));
        assert_eq!(duration_secs(&json!("")), Ok(None));
        assert_eq!(duration_secs(&json!("0")), Ok(None));
        assert_eq!(duration_secs(&json!(null)), Ok(None));
    }

    #[test]
    fn bad_durations_give_go_messages() {
        assert_eq!(duration_secs(&json!("bogus")), Err("time: invalid duration \"bogus\"".to_string()));
        assert_eq!(duration_secs(&json!(true)), Err("could not parse duration from input".to_string()));
        assert_eq!(duration_secs(&json!("1x")), Err("time: unknown unit \"x\" in duration \"1x\"".to_string()));
        assert!(duration_secs(&json!("1.5d")).is_err());
        assert!(duration_secs(&json!("99999999999999999999h")).is_err());
    }

    #[test]
    fn absolute_times() {
        assert_eq!(unix_time(&json!("1970-01-01T00:00:00Z")), Ok(0));
        assert_eq!(unix_time(&json!("2020-01-01T00:00:00Z")), Ok(1_577_836_800));
        assert_eq!(unix_time(&json!("2099-01-01T00:00:00.5+02:00")), Ok(4_070_901_600));
        assert_eq!(unix_time(&json!("1700000000")), Ok(1_700_000_000));
        assert_eq!(unix_time(&json!(4_102_444_800_i64)), Ok(4_102_444_800));
        assert!(unix_time(&json!("bogus")).is_err());
        assert!(unix_time(&json!("2020-13-01T00:00:00Z")).is_err());
        assert!(unix_time(&json!(true)).is_err());
    }
}
