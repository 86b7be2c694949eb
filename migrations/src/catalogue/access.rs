//! Access events: every request that reaches the API, allowed or denied, as Vault's audit
//! log records it — with keyed hashes in place of every value.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Allowed,
    /// Refused by the ACL or for a missing/invalid token.
    Denied,
    /// Accepted by the ACL but answered with an error (status code).
    Failed(u16),
}

/// One request (the actor of the envelope says who made it, with which token accessor).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Access {
    /// Logical operation: "read", "create", "update", "patch", "delete", "list", …
    pub operation: String,
    pub path: String,
    /// Accessor of the mount the path belongs to ("" if none).
    pub mount_accessor: String,
    pub outcome: Outcome,
    /// Policies of the token at the time of the request.
    pub policies: Vec<String>,
    /// Keyed hashes (hex) of the top-level request data fields, as Vault's audit HMACs them.
    pub request_hmac: BTreeMap<String, String>,
    /// Keyed hashes (hex) of the top-level response data fields.
    pub response_hmac: BTreeMap<String, String>,
    /// The request counted against the token's `num_uses`.
    pub used_token: bool,
}

/// Requests refused before authentication during one interval, counted instead of recorded
/// one by one (DESIGN.md: hostile traffic costs bounded ledger space): no token, a token
/// that never existed, or over the per-address quota. A request with a token that once
/// existed (revoked, expired, used up) is an [`Access`] of its own, with its accessor.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct RefusalsCounted {
    /// The interval, ns since the Unix epoch, server clock: first refusal to last.
    pub from: u64,
    pub to: u64,
    /// One entry per client address, at most a fixed number of them (the busiest first).
    pub sources: Vec<RefusalSource>,
    /// Addresses beyond that number, and the requests they made.
    pub other_sources: u64,
    pub other_requests: u64,
}

/// The refusals of one client address within a [`RefusalsCounted`] interval.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct RefusalSource {
    pub remote_addr: String,
    /// Answered 403: no token, or one that never existed.
    pub refused: u64,
    /// Answered 429: over the per-address quota of such requests.
    pub rate_limited: u64,
    /// The paths asked for, with how often, at most a fixed number (the most asked first);
    /// `other_paths` counts the requests to the rest.
    pub paths: Vec<(String, u64)>,
    pub other_paths: u64,
    /// Distinct keyed hashes of the tokens presented (never a token), at most a fixed
    /// number; `other_tokens` counts the presentations of the rest.
    pub token_hashes: Vec<[u8; 32]>,
    pub other_tokens: u64,
}

/// Kind number and version of [`Access`] (as in the catalogue).
pub const ACCESS_KIND: u16 = 0x0600;
pub const ACCESS_VERSION: u16 = 1;

/// `used_token` of an encoded [`Access`] body, read without decoding (no allocation):
/// replay needs nothing else from most access events. `None` if the bytes are not a
/// well-formed body (the caller then decodes it, and gets the error). It does not check
/// that strings are UTF-8; a decoder that does would refuse such a body, and replay would
/// too, via the full decode, unless `used_token` was read first as `false`.
pub fn access_used_token(body: &[u8]) -> Option<bool> {
    struct Skim<'a>(&'a [u8]);
    impl Skim<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn u64(&mut self) -> Option<u64> {
            let b = self.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Some(u64::from_be_bytes(a))
        }
        fn string(&mut self) -> Option<()> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.take(n).map(|_| ())
        }
        fn strings(&mut self, per_item: usize) -> Option<()> {
            let n = self.u64()?;
            for _ in 0..n {
                for _ in 0..per_item {
                    self.string()?;
                }
            }
            Some(())
        }
    }
    let mut s = Skim(body);
    s.string()?; // operation
    s.string()?; // path
    s.string()?; // mount_accessor
    let tag = s.take(4)?;
    match u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]]) {
        0 | 1 => {}
        2 => {
            s.take(2)?;
        }
        _ => return None,
    }
    s.strings(1)?; // policies
    s.strings(2)?; // request_hmac
    s.strings(2)?; // response_hmac
    let used = match s.take(1)? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    s.0.is_empty().then_some(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skim_reads_what_the_decoder_reads() {
        for (i, outcome) in [Outcome::Allowed, Outcome::Denied, Outcome::Failed(503)].into_iter().enumerate() {
            for used_token in [false, true] {
                let a = Access {
                    operation: "read".into(),
                    path: format!("secret/data/x{i}"),
                    mount_accessor: "kv_1234".into(),
                    outcome,
                    policies: vec!["default".into(); i],
                    request_hmac: (0..i).map(|k| (format!("k{k}"), "hmac".to_string())).collect(),
                    response_hmac: (0..2 * i).map(|k| (format!("r{k}"), String::new())).collect(),
                    used_token,
                };
                let body = ledger::body::encode(&a).expect("encode");
                assert_eq!(access_used_token(&body), Some(used_token));
                for cut in 0..body.len() {
                    assert_eq!(access_used_token(&body[..cut]), None, "cut at {cut}");
                }
                let mut longer = body.clone();
                longer.push(0);
                assert_eq!(access_used_token(&longer), None);
            }
        }
        let (kind, version, _) = crate::Event::Access(Access {
            operation: String::new(),
            path: String::new(),
            mount_accessor: String::new(),
            outcome: Outcome::Allowed,
            policies: vec![],
            request_hmac: Default::default(),
            response_hmac: Default::default(),
            used_token: false,
        })
        .encode()
        .expect("encode");
        assert_eq!((kind, version), (ACCESS_KIND, ACCESS_VERSION));
    }
}
