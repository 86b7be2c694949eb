//! The `X-Vault-Index` consistency header (Vault's "replication state"), so a client can
//! read its own writes on any node of a cluster.
//!
//! The value is base64 (standard, padded) of `v1:<cluster id>:<local index>:<replicated
//! index>:<hex HMAC-SHA256 of everything before the last colon>`, the format Vault's and
//! OpenBao's Go clients parse, merge and compare (`ParseReplicationState`). cairn fills it
//! with the ledger id (hex) as the cluster id, the ledger seq as the local index, and 0 as
//! the replicated index (cairn has no performance replication).
//!
//! The HMAC key is derived from the root key, which every unsealed node of a cluster holds
//! and nothing else does: any unsealed node can check an index another one issued, and a
//! client cannot make one up to stall a node.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The response and request header.
pub const HEADER: &str = "x-vault-index";
/// What a request asks when its index is not reached yet.
pub const INCONSISTENT_HEADER: &str = "x-vault-inconsistent";
/// OpenBao's message for an index not reached (`logical.ErrMissingRequiredState`), with 412.
pub const NOT_PRESENT: &str = "required index state not present";

/// The key-derivation label of the header's HMAC key (domain separation from every other
/// key derived from the root key).
pub const KEY_LABEL: &str = "cairn.x-vault-index.hmac.v1";

/// A key derived from the root key for one purpose: HMAC-SHA256(root key, label).
pub fn derive_key(root_key: &[u8; 32], label: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length: this cannot fail.
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(root_key) {
        mac.update(label.as_bytes());
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// A parsed, authenticated index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultIndex {
    pub cluster_id: String,
    pub local: u64,
    pub replicated: u64,
}

/// Why a header value is refused; the messages are safe to show (no key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("could not decode replication state")]
    NotBase64,
    #[error("invalid replication state header format")]
    Format,
    #[error("invalid replication state header HMAC (mismatch)")]
    BadHmac,
    #[error("the replication state is from another cluster")]
    OtherCluster,
}

/// Issues and checks the headers of one cluster. Built once per unseal: every answer of
/// a cluster node carries a header, and keying HMAC-SHA256 (and deriving its key) for each
/// one cost more than the tag itself.
pub struct Signer {
    /// HMAC-SHA256 keyed with the derived key, before any message: cloned for each tag.
    keyed: Hmac<Sha256>,
    /// The ledger id, in hex.
    cluster_id: String,
}

impl Signer {
    /// For the cluster whose root key and ledger id these are.
    pub fn new(root_key: &[u8; 32], ledger_id: &[u8]) -> Signer {
        Signer::with_key(&derive_key(root_key, KEY_LABEL), &hex::encode(ledger_id))
    }

    /// With the HMAC key itself.
    pub fn with_key(key: &[u8; 32], cluster_id: &str) -> Signer {
        // HMAC pads a key shorter than its block (64 bytes) with zeros: padding it here
        // gives the same MAC and needs no fallible constructor.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        let keyed = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        Signer { keyed, cluster_id: cluster_id.to_string() }
    }

    /// HMAC-SHA256 over `state`.
    fn mac(&self, state: &str) -> Hmac<Sha256> {
        let mut m = self.keyed.clone();
        m.update(state.as_bytes());
        m
    }

    /// The header value for `local` (a ledger seq).
    pub fn encode(&self, local: u64) -> String {
        let state = format!("v1:{}:{local}:0", self.cluster_id);
        let tag = hex::encode(self.mac(&state).finalize().into_bytes());
        STANDARD.encode(format!("{state}:{tag}"))
    }

    /// Parses and authenticates one header value issued for this cluster.
    pub fn parse(&self, raw: &str) -> Result<VaultIndex, IndexError> {
        let decoded = STANDARD.decode(raw.trim()).map_err(|_| IndexError::NotBase64)?;
        let decoded = String::from_utf8(decoded).map_err(|_| IndexError::Format)?;
        let (state, tag) = decoded.rsplit_once(':').ok_or(IndexError::Format)?;
        let tag = hex::decode(tag).map_err(|_| IndexError::Format)?;
        // Constant-time comparison.
        self.mac(state).verify_slice(&tag).map_err(|_| IndexError::BadHmac)?;
        let pieces: Vec<&str> = state.split(':').collect();
        let [version, cluster, local, replicated] = pieces.as_slice() else { return Err(IndexError::Format) };
        if *version != "v1" || cluster.is_empty() {
            return Err(IndexError::Format);
        }
        let local = local.parse().map_err(|_| IndexError::Format)?;
        let replicated = replicated.parse().map_err(|_| IndexError::Format)?;
        if *cluster != self.cluster_id {
            return Err(IndexError::OtherCluster);
        }
        Ok(VaultIndex { cluster_id: (*cluster).to_string(), local, replicated })
    }

    /// The highest local index among a request's header values (a Go client with
    /// read-your-writes may send up to two); `Ok(None)` without any.
    pub fn required(&self, headers: &axum::http::HeaderMap) -> Result<Option<u64>, IndexError> {
        let mut highest = None;
        for value in headers.get_all(HEADER) {
            let text = value.to_str().map_err(|_| IndexError::Format)?;
            // Several states may also come comma-separated in one header line.
            for one in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let index = self.parse(one)?;
                highest = Some(highest.unwrap_or(0).max(index.local));
            }
        }
        Ok(highest)
    }
}

/// What a request wants when its index is not reached (`X-Vault-Inconsistent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inconsistent {
    /// 412, the client retries (the default).
    Fail,
    /// The leader answers.
    ForwardActiveNode,
    /// Wait (bounded) for the node to reach the index, then 412.
    AwaitState,
}

impl Inconsistent {
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Inconsistent {
        match headers.get(INCONSISTENT_HEADER).and_then(|v| v.to_str().ok()).map(str::trim) {
            Some("forward-active-node") => Inconsistent::ForwardActiveNode,
            Some("await-state") => Inconsistent::AwaitState,
            _ => Inconsistent::Fail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9u8; 32];

    fn signer(key: &[u8; 32], cluster: &str) -> Signer {
        Signer::with_key(key, cluster)
    }

    #[test]
    fn an_index_round_trips_in_vaults_format() {
        let raw = signer(&KEY, "00ff").encode(42);
        let decoded = String::from_utf8(STANDARD.decode(&raw).expect("base64")).expect("utf8");
        let (state, tag) = decoded.rsplit_once(':').expect("tag");
        assert_eq!(state, "v1:00ff:42:0");
        assert_eq!(tag.len(), 64, "hex HMAC-SHA256");
        let parsed = signer(&KEY, "00ff").parse(&raw).expect("parse");
        assert_eq!(parsed, VaultIndex { cluster_id: "00ff".into(), local: 42, replicated: 0 });
    }

    #[test]
    fn the_tag_is_hmac_sha256_of_the_state_under_the_key() {
        let raw = signer(&KEY, "00ff").encode(42);
        let decoded = String::from_utf8(STANDARD.decode(&raw).expect("base64")).expect("utf8");
        let (state, tag) = decoded.rsplit_once(':').expect("tag");
        let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("HMAC takes any key length");
        mac.update(state.as_bytes());
        assert_eq!(tag, hex::encode(mac.finalize().into_bytes()));
        // And from the root key: the key derived under the header's label.
        let root = [3u8; 32];
        let raw = Signer::new(&root, &[0xab, 0xcd]).encode(7);
        assert_eq!(raw, signer(&derive_key(&root, KEY_LABEL), "abcd").encode(7));
    }

    #[test]
    fn a_forged_or_foreign_index_is_refused() {
        let raw = signer(&KEY, "00ff").encode(42);
        assert_eq!(signer(&[8u8; 32], "00ff").parse(&raw), Err(IndexError::BadHmac), "another key");
        assert_eq!(signer(&KEY, "0101").parse(&raw), Err(IndexError::OtherCluster));
        // The same state with another seq but the old tag.
        let decoded = String::from_utf8(STANDARD.decode(&raw).expect("b64")).expect("utf8");
        let forged = STANDARD.encode(decoded.replacen(":42:", ":4200:", 1));
        assert_eq!(signer(&KEY, "00ff").parse(&forged), Err(IndexError::BadHmac));
        assert_eq!(signer(&KEY, "00ff").parse("%%%"), Err(IndexError::NotBase64));
        assert_eq!(signer(&KEY, "00ff").parse(&STANDARD.encode("no-colon")), Err(IndexError::Format));
        assert_eq!(signer(&KEY, "00ff").parse(&STANDARD.encode("v1:00ff:1:0:zz")), Err(IndexError::Format));
        // A well-tagged state of the wrong shape.
        let state = "v2:00ff:1:0";
        let tag = hex::encode(signer(&KEY, "00ff").mac(state).finalize().into_bytes());
        assert_eq!(signer(&KEY, "00ff").parse(&STANDARD.encode(format!("{state}:{tag}"))), Err(IndexError::Format));
    }

    #[test]
    fn the_required_index_is_the_highest_of_all_values() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(signer(&KEY, "00ff").required(&headers), Ok(None));
        headers.append(HEADER, signer(&KEY, "00ff").encode(7).parse().expect("value"));
        headers.append(HEADER, signer(&KEY, "00ff").encode(3).parse().expect("value"));
        assert_eq!(signer(&KEY, "00ff").required(&headers), Ok(Some(7)));
        headers.append(HEADER, "garbage".parse().expect("value"));
        assert!(signer(&KEY, "00ff").required(&headers).is_err(), "one bad value spoils the request");
    }

    #[test]
    fn x_vault_inconsistent_defaults_to_fail() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(Inconsistent::from_headers(&headers), Inconsistent::Fail);
        for (value, want) in [
            ("fail", Inconsistent::Fail),
            ("forward-active-node", Inconsistent::ForwardActiveNode),
            ("await-state", Inconsistent::AwaitState),
            ("something-else", Inconsistent::Fail),
        ] {
            headers.insert(INCONSISTENT_HEADER, value.parse().expect("value"));
            assert_eq!(Inconsistent::from_headers(&headers), want, "{value}");
        }
    }

    #[test]
    fn derived_keys_are_separated_by_label() {
        let root = [1u8; 32];
        assert_ne!(*derive_key(&root, KEY_LABEL), *derive_key(&root, "another"));
        assert_eq!(*derive_key(&root, KEY_LABEL), *derive_key(&root, KEY_LABEL));
        assert_ne!(*derive_key(&root, KEY_LABEL), *derive_key(&[2u8; 32], KEY_LABEL));
    }
}
