//! RFC 3339 times, as Vault prints them (UTC, nanoseconds without trailing zeros).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 in UTC, from ns since the Unix epoch.
pub fn rfc3339(nanos: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| nanos.to_string())
}

/// ns since the Unix epoch of an RFC 3339 time (any offset); `None` when it is not one or
/// lies before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_a_time() {
        let t = parse_rfc3339("2026-11-23T15:04:05.5Z").expect("parses");
        assert_eq!(t, 1_795_446_245_500_000_000);
        assert_eq!(rfc3339(t), "2026-11-23T15:04:05.5Z");
        assert_eq!(parse_rfc3339("2026-11-23T16:04:05.5+01:00"), Some(t));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
