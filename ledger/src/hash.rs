//! Hashes with domain separation (FORMAT.md, "Hashes").
//!
//! Every hash the ledger computes is domain-separated, so a value hashed for one purpose
//! can never be passed off as another: an event hash is blake3 over the ASCII tag
//! `cairn.event.v1\0` and the event; a Merkle interior node is blake3 in *keyed* mode,
//! under [`node_key`], over exactly `left ‖ right` (one 64-byte block). The leaves of the
//! Merkle tree are the event hashes themselves: they are already separated from nodes by
//! their domain, so the RFC 6962 `0x00` leaf prefix would only cost a second hash per event.

use std::fmt;

/// Domain prefix of an event hash.
pub const EVENT_DOMAIN: &[u8] = b"cairn.event.v1\0";
/// Domain prefix of a signing key's id.
pub const KEY_ID_DOMAIN: &[u8] = b"cairn.key-id.v1\0";

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash every chain starts from: the `prev` of event 1 (32 zero bytes).
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The hash of an encoded event record (which contains `prev`, so this is the chain link).
pub fn event_hash(encoded_event: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(EVENT_DOMAIN);
    h.update(encoded_event);
    Hash(*h.finalize().as_bytes())
}

/// Text whose plain blake3 hash is the key of Merkle node hashing.
pub const NODE_KEY_SOURCE: &[u8] = b"cairn.merkle-node.v1";

/// The key of Merkle node hashing: `blake3("cairn.merkle-node.v1")`.
pub fn node_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| *blake3::hash(NODE_KEY_SOURCE).as_bytes())
}

/// Merkle interior node: `blake3_keyed(node_key, left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&left.0);
    buf[32..].copy_from_slice(&right.0);
    Hash(*blake3::keyed_hash(node_key(), &buf).as_bytes())
}

/// Root of the empty tree: `blake3("")`, as RFC 9162 defines MTH({}).
pub fn empty_root() -> Hash {
    Hash(*blake3::hash(&[]).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_node_and_event_hashes() {
        let h = Hash([7u8; 32]);
        let mut both = [7u8; 64];
        both[..32].copy_from_slice(&h.0);
        // The same 64 bytes hashed as an event and as a node give different hashes.
        assert_ne!(node_hash(&h, &h), event_hash(&both));
        assert_ne!(node_hash(&h, &h), Hash(*blake3::hash(&both).as_bytes()));
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
