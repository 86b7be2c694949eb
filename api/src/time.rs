//! Times as Vault prints them: RFC 3339 in UTC with nanoseconds
//! (`2026-11-22T17:57:29.193164057Z`), or `""` for "never".

/// RFC 3339 with nanoseconds, from ns since the Unix epoch.
pub fn rfc3339(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (y, mo, d, h, mi, s) = civil(secs);
    if frac == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        let f = format!("{frac:09}");
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{}Z", f.trim_end_matches('0'))
    }
}

/// `""` for 0, else [`rfc3339`].
pub fn rfc3339_or_empty(nanos: u64) -> String {
    if nanos == 0 { String::new() } else { rfc3339(nanos) }
}

/// Seconds since the epoch → (year, month, day, hour, minute, second), UTC
/// (Howard Hinnant's days-from-civil algorithm, inverted).
fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_370_249_193_164_057), "2026-11-22T17:57:29.193164057Z");
        assert_eq!(rfc3339(1_709_164_800_500_000_000), "2024-02-29T00:00:00.5Z");
        assert_eq!(rfc3339_or_empty(0), "");
    }
}
