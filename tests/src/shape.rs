//! Values that legitimately differ from one server to another (request ids, times,
//! tokens, accessors): check their shape, then replace them by a placeholder so the rest
//! of an answer can be compared exactly with `assert_eq!`.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The expected shape of a server-chosen value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `8-4-4-4-12` lower-case hex (Vault's request ids and nonces are UUID-shaped).
    Uuid,
    /// RFC 3339 UTC time with optional fraction: `2026-11-22T17:57:29.193164057Z`.
    Time,
    /// Integer Unix seconds after 2020.
    UnixSeconds,
    /// A service token: `s.` followed by 24 base62 characters.
    ServiceToken,
    /// A token accessor: 24 base62 characters.
    Accessor,
    /// `vault-cluster-` followed by 8 hex digits.
    ClusterName,
    /// Any non-empty string (server versions, storage names).
    NonEmptyString,
    /// Any string, possibly empty (`build_date`).
    AnyString,
    /// An integer in this inclusive range (a TTL counting down).
    Within(i64, i64),
}

impl Shape {
    fn placeholder(self) -> String {
        match self {
            Shape::Uuid => "<uuid>".into(),
            Shape::Time => "<time>".into(),
            Shape::UnixSeconds => "<unix seconds>".into(),
            Shape::ServiceToken => "<service token>".into(),
            Shape::Accessor => "<accessor>".into(),
            Shape::ClusterName => "<cluster name>".into(),
            Shape::NonEmptyString => "<non-empty string>".into(),
            Shape::AnyString => "<string>".into(),
            Shape::Within(lo, hi) => format!("<integer in {lo}..={hi}>"),
        }
    }

    /// Whether `v` has this shape.
    pub fn matches(self, v: &Value) -> bool {
        let s = v.as_str();
        match self {
            Shape::Uuid => s.is_some_and(is_uuid),
            Shape::Time => s.is_some_and(is_rfc3339_utc),
            Shape::UnixSeconds => v.as_i64().is_some_and(|n| n > 1_577_836_800),
            Shape::ServiceToken => {
                s.is_some_and(|t| t.strip_prefix("s.").is_some_and(|rest| rest.len() == 24 && is_base62(rest)))
            }
            Shape::Accessor => s.is_some_and(|t| t.len() == 24 && is_base62(t)),
            Shape::ClusterName => s.is_some_and(|t| {
                t.strip_prefix("vault-cluster-").is_some_and(|h| h.len() == 8 && h.bytes().all(is_lower_hex))
            }),
            Shape::NonEmptyString => s.is_some_and(|t| !t.is_empty()),
            Shape::AnyString => s.is_some(),
            Shape::Within(lo, hi) => v.as_i64().is_some_and(|n| (lo..=hi).contains(&n)),
        }
    }
}

/// Checks each `(JSON pointer, shape)` of `v` and replaces the value by the shape's
/// placeholder. A missing field or a wrong shape is an error naming the field.
pub fn redact(v: &mut Value, fields: &[(&str, Shape)]) -> Result<()> {
    let before = v.clone();
    for (pointer, shape) in fields {
        let slot = v.pointer_mut(pointer).with_context(|| format!("no field {pointer} in {before:#}"))?;
        if !shape.matches(slot) {
            bail!("field {pointer} should be {}, got {slot}\nin {before:#}", shape.placeholder());
        }
        *slot = Value::String(shape.placeholder());
    }
    Ok(())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { is_lower_hex(b) })
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !fixed || !s.ends_with('Z') {
        return false;
    }
    let frac = &s[19..s.len() - 1];
    frac.is_empty() || frac.strip_prefix('.').is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

/// Decodes standard, padded base64 (the alphabet of `keys_base64`).
pub fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {s:?}"),
        } as u32)
    };
    anyhow::ensure!(s.len().is_multiple_of(4), "base64 length {} is not a multiple of 4: {s:?}", s.len());
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for quad in s.as_bytes().chunks(4) {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        anyhow::ensure!(pad <= 2, "bad base64 padding: {s:?}");
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_accept_real_openbao_values_and_reject_others() {
        assert!(Shape::Uuid.matches(&json!("f66ac6c6-e6a5-4b9c-50da-fdfb73d5a294")));
        assert!(!Shape::Uuid.matches(&json!("f66ac6c6e6a54b9c50dafdfb73d5a294")));
        assert!(Shape::Time.matches(&json!("2026-11-22T17:57:29.193164057Z")));
        assert!(Shape::Time.matches(&json!("2026-11-22T18:19:44Z")));
        assert!(!Shape::Time.matches(&json!("")));
        assert!(Shape::ServiceToken.matches(&json!("s.0OGiteK6T8rhJCRlIAXUcqI2")));
        assert!(!Shape::ServiceToken.matches(&json!("hvs.0OGiteK6T8rhJCRlIAXUcqI2")));
        assert!(Shape::Accessor.matches(&json!("smf7DLh40fLfQFA8epvTZCLK")));
        assert!(Shape::ClusterName.matches(&json!("vault-cluster-52ac1d83")));
        assert!(Shape::Within(1, 3).matches(&json!(3)));
        assert!(!Shape::Within(1, 3).matches(&json!(4)));
    }

    #[test]
    fn redact_replaces_checked_fields_and_names_the_bad_one() {
        let mut v = json!({"request_id": "f66ac6c6-e6a5-4b9c-50da-fdfb73d5a294", "data": {"ttl": 5}});
        redact(&mut v, &[("/request_id", Shape::Uuid), ("/data/ttl", Shape::Within(0, 10))]).expect("shapes");
        assert_eq!(v, json!({"request_id": "<uuid>", "data": {"ttl": "<integer in 0..=10>"}}));
        let err = redact(&mut json!({"a": 1}), &[("/a", Shape::Time)]).expect_err("wrong shape");
        assert!(err.to_string().contains("/a"), "{err}");
    }

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("aGVsbG8=").expect("decode"), b"hello");
        assert_eq!(base64_decode("aGk=").expect("decode"), b"hi");
        assert_eq!(base64_decode("YWJj").expect("decode"), b"abc");
        assert!(base64_decode("a!==").is_err());
    }
}
