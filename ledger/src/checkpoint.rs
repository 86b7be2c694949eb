//! Signed checkpoints: the record that closes every commit batch (FORMAT.md, "Checkpoint").
//!
//! A checkpoint commits to the whole ledger up to `last_seq`: the head of the hash chain
//! and the Merkle root over every event hash so far. It is signed with the writer's
//! ed25519 key over a domain-separated message that also names the ledger, so a checkpoint
//! of one ledger can never be replayed as one of another.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::hash::Hash;
use crate::keys::{KeyId, LedgerKey, PublicKey};

/// Record tag of a checkpoint inside a frame.
pub const CHECKPOINT_TAG: u8 = 0x02;
/// Domain prefix of the signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"cairn.checkpoint.v1\0";
/// Encoded size of a checkpoint record.
pub const CHECKPOINT_LEN: usize = 1 + 8 + 32 + 32 + 8 + 8 + 64;

/// Identifies one ledger (random, chosen at genesis).
pub type LedgerId = [u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Seq of the last event covered (also the Merkle tree size).
    pub last_seq: u64,
    /// Hash of event `last_seq`.
    pub head: Hash,
    /// Merkle root over the hashes of events 1..=last_seq.
    pub root: Hash,
    /// Time of signing, nanoseconds since the Unix epoch.
    pub time: u64,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The exact bytes the signature covers.
    pub fn signed_message(
        ledger_id: &LedgerId,
        last_seq: u64,
        head: &Hash,
        root: &Hash,
        time: u64,
        key_id: &KeyId,
    ) -> Vec<u8> {
        let mut e = Encoder::with_capacity(CHECKPOINT_DOMAIN.len() + 16 + 8 + 64 + 16);
        e.raw(CHECKPOINT_DOMAIN).raw(ledger_id).u64(last_seq).raw(&head.0).raw(&root.0).u64(time).raw(&key_id.0);
        e.into_vec()
    }

    pub fn sign(key: &LedgerKey, ledger_id: &LedgerId, last_seq: u64, head: Hash, root: Hash, time: u64) -> Checkpoint {
        let key_id = key.id();
        let signature = key.sign(&Self::signed_message(ledger_id, last_seq, &head, &root, time, &key_id));
        Checkpoint { last_seq, head, root, time, key_id, signature }
    }

    /// Checks the signature with `key`, which must be the key the checkpoint names.
    pub fn verify(&self, ledger_id: &LedgerId, key: &PublicKey) -> bool {
        key.id() == self.key_id
            && key.verify(
                &Self::signed_message(ledger_id, self.last_seq, &self.head, &self.root, self.time, &self.key_id),
                &self.signature,
            )
    }

    pub fn encode_into(&self, e: &mut Encoder) {
        e.u8(CHECKPOINT_TAG)
            .u64(self.last_seq)
            .raw(&self.head.0)
            .raw(&self.root.0)
            .u64(self.time)
            .raw(&self.key_id.0)
            .raw(&self.signature);
    }

    pub fn decode(d: &mut Decoder<'_>) -> Result<Checkpoint, DecodeError> {
        if d.u8()? != CHECKPOINT_TAG {
            return Err(DecodeError::Invalid { what: "checkpoint tag" });
        }
        Ok(Checkpoint {
            last_seq: d.u64()?,
            head: Hash(d.array()?),
            root: Hash(d.array()?),
            time: d.u64()?,
            key_id: KeyId(d.array()?),
            signature: d.array()?,
        })
    }

    /// The JSON form saved by auditors (`cairn ledger checkpoint`, `--expect-checkpoint`).
    pub fn to_saved(&self, ledger_id: &LedgerId) -> SavedCheckpoint {
        SavedCheckpoint {
            ledger_id: hex::encode(ledger_id),
            seq: self.last_seq,
            head: self.head.to_hex(),
            root: self.root.to_hex(),
            time: self.time,
            key_id: self.key_id.to_hex(),
            signature: hex::encode(self.signature),
        }
    }
}

/// A checkpoint as an auditor keeps it, with the ledger it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    pub ledger_id: String,
    pub seq: u64,
    pub head: String,
    pub root: String,
    /// ns since the Unix epoch, written as a decimal string: as a JSON number it is above
    /// 2^53, where tools such as jq round it. A number is still read.
    #[serde(with = "decimal_text")]
    pub time: u64,
    pub key_id: String,
    pub signature: String,
}

impl SavedCheckpoint {
    /// Parses the hex fields back; `None` if any is malformed.
    pub fn parse(&self) -> Option<(LedgerId, Checkpoint)> {
        let mut ledger_id = [0u8; 16];
        hex::decode_to_slice(&self.ledger_id, &mut ledger_id).ok()?;
        let mut key_id = [0u8; 8];
        hex::decode_to_slice(&self.key_id, &mut key_id).ok()?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature).ok()?;
        Some((
            ledger_id,
            Checkpoint {
                last_seq: self.seq,
                head: Hash::from_hex(&self.head)?,
                root: Hash::from_hex(&self.root)?,
                time: self.time,
                key_id: KeyId(key_id),
                signature,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_every_field_and_the_ledger() {
        let key = LedgerKey::generate().expect("rng");
        let id = [9u8; 16];
        let cp = Checkpoint::sign(&key, &id, 42, Hash([1; 32]), Hash([2; 32]), 7);
        assert!(cp.verify(&id, &key.public()));
        assert!(!cp.verify(&[8u8; 16], &key.public()));
        for tamper in [
            Checkpoint { last_seq: 43, ..cp },
            Checkpoint { head: Hash([3; 32]), ..cp },
            Checkpoint { root: Hash([3; 32]), ..cp },
            Checkpoint { time: 8, ..cp },
        ] {
            assert!(!tamper.verify(&id, &key.public()));
        }
        let mut e = Encoder::default();
        cp.encode_into(&mut e);
        assert_eq!(e.len(), CHECKPOINT_LEN);
        let back = Checkpoint::decode(&mut Decoder::new(e.as_slice())).expect("decodes");
        assert_eq!(back, cp);
        let saved = cp.to_saved(&id);
        assert_eq!(saved.parse(), Some((id, cp)));
    }
}

/// A u64 written as a decimal string, read from a string or a JSON number.
mod decimal_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse().map_err(serde::de::Error::custom)
            }
            Either::Text(_) => Err(serde::de::Error::custom("time is not a decimal number of nanoseconds")),
        }
    }
}
