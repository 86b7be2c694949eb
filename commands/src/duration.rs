//! Durations as Go prints them (`time.Duration.String()` for whole seconds), which is how
//! Vault words TTLs in messages: 0 → "0s", 3600 → "1h0m0s", 12319 → "3h25m19s".

pub fn format_go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(59), "59s");
        assert_eq!(format_go_duration(60), "1m0s");
        assert_eq!(format_go_duration(3600), "1h0m0s");
        assert_eq!(format_go_duration(12319), "3h25m19s");
        assert_eq!(format_go_duration(2_764_800), "768h0m0s");
    }
}
