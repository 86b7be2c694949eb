//! Hashes with domain separation (FORMAT.md, "Hashes").
//!
//! Every hash the ledger computes is blake3 over a domain prefix and the data, so a value
//! hashed for one purpose can never be passed off as another: event hashes start with the
//! ASCII tag `cairn.event.v1\0`, Merkle leaves with `0x00` and interior nodes with `0x01`
//! (the RFC 9162 tree shape).

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

/// Merkle leaf hash of one event hash: `blake3(0x00 ‖ event_hash)`.
pub fn leaf_hash(event: &Hash) -> Hash {
    let mut buf = [0u8; 33];
    buf[1..].copy_from_slice(&event.0);
    Hash(*blake3::hash(&buf).as_bytes())
}

/// Merkle interior node: `blake3(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash(*blake3::hash(&buf).as_bytes())
}

/// Root of the empty tree: `blake3("")`, as RFC 9162 defines MTH({}).
pub fn empty_root() -> Hash {
    Hash(*blake3::hash(&[]).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_leaf_node_and_event_hashes() {
        let h = Hash([7u8; 32]);
        let as_leaf = leaf_hash(&h);
        let as_event = event_hash(&[0u8; 32]);
        assert_ne!(as_leaf, as_event);
        assert_ne!(node_hash(&h, &h), leaf_hash(&h));
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
