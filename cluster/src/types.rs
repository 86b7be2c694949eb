//! The openraft type configuration and the few wire types around it: node ids, members and
//! the opaque entry (`Frame`). Nothing outside this crate sees an openraft type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node id as Vault spells it ("node1").
pub type NodeId = String;

/// Where a node can be reached: its API (Vault's `api_addr`) and its cluster listener
/// (Vault's `cluster_addr`, `host:port`), which carries the Raft RPCs and join requests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    pub api_addr: String,
    pub cluster_addr: String,
}

/// openraft's node id: a string in a newtype, because the storage conformance suite builds
/// ids from integers (`From<u64>`), which `String` does not implement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nid(pub String);

impl fmt::Display for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for Nid {
    fn from(n: u64) -> Self {
        Nid(n.to_string())
    }
}

/// One replicated entry: a ledger frame built by the leader, opaque here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame(#[serde(with = "bytes")] pub Vec<u8>);

/// `Vec<u8>` as one byte string for serde, not as a sequence of single bytes: bincode then
/// copies it whole instead of encoding byte by byte (which cost each node about a tenth of
/// its CPU under load). The encoding is the same either way (a length, then the bytes), so
/// logs and snapshots written before read back unchanged.
pub(crate) mod bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame of {} bytes", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// cairn's Raft types: opaque frames in, the applier's reply bytes out.
    pub TypeConfig:
        D = Frame,
        R = Vec<u8>,
        NodeId = Nid,
        Node = Member,
);

pub(crate) type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub(crate) type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub(crate) type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// bincode 2 (serde path, standard config) with a size limit, so a hostile length prefix in
/// an RPC body cannot make the decoder allocate without bound.
const LIMIT: usize = 1 << 30;

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(v, bincode::config::standard().with_limit::<LIMIT>()).map_err(|e| e.to_string())
}

/// [`encode`], appended to `out`.
pub(crate) fn encode_into<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(v, out, bincode::config::standard().with_limit::<LIMIT>())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    let (v, used) = bincode::serde::decode_from_slice(b, bincode::config::standard().with_limit::<LIMIT>())
        .map_err(|e| e.to_string())?;
    if used != b.len() {
        return Err(format!("{} trailing bytes", b.len() - used));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_encodes_as_before_and_round_trips() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 1, 2]).collect();
        // As a plain `Vec<u8>` (a sequence of single bytes) it encoded the same way.
        let as_sequence = encode(&bytes).expect("encode");
        let as_bytes = encode(&Frame(bytes.clone())).expect("encode");
        assert_eq!(as_bytes, as_sequence, "logs written before read back unchanged");
        assert_eq!(decode::<Frame>(&as_sequence).expect("decode"), Frame(bytes));
        assert!(decode::<Frame>(&as_sequence[..as_sequence.len() - 1]).is_err());
    }
}
