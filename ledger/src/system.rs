//! The ledger's own event kinds (FORMAT.md, "System events"): genesis, signing-key
//! rotation, signing-key registration and payload erasure. Their bodies use the canonical codec, not bincode, because
//! an offline verifier in any language must read them.

use crate::checkpoint::LedgerId;
use crate::codec::{DecodeError, Decoder, Encoder};
use crate::keys::{KeyId, LedgerKey, PublicKey};

pub const KIND_GENESIS: u16 = 0x0001;
pub const KIND_KEY_ROTATION: u16 = 0x0002;
pub const KIND_PAYLOAD_ERASED: u16 = 0x0003;
pub const KIND_KEY_REGISTERED: u16 = 0x0004;

/// Domain prefix of the new key's proof of possession in a rotation.
pub const ROTATION_DOMAIN: &[u8] = b"cairn.key-rotation.v1\0";

/// Domain prefix of a registered key's proof of possession.
pub const REGISTRATION_DOMAIN: &[u8] = b"cairn.key-registration.v1\0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// Event 1 of every ledger: its id and first checkpoint key.
    Genesis { ledger_id: LedgerId, key: [u8; 32] },
    /// Replaces the checkpoint key from the next frame on. The frame holding this event is
    /// signed by the old key; `proof` is the new key's signature over
    /// `ROTATION_DOMAIN ‖ ledger id ‖ old key id ‖ new key`.
    KeyRotation { old_key: KeyId, new_key: [u8; 32], proof: [u8; 64] },
    /// The key slots `slots` of event `target` were zeroed: those payloads are gone.
    PayloadErased { target: u64, slots: Vec<u8> },
    /// Adds `key` to the keys that may sign checkpoints, from the next frame on, retiring
    /// none (each node of a cluster signs the frames it builds with its own key). The frame
    /// holding this event is signed by a key already active; `proof` is the new key's
    /// signature over `REGISTRATION_DOMAIN ‖ ledger id ‖ key`.
    KeyRegistered { key: [u8; 32], proof: [u8; 64] },
}

impl SystemEvent {
    pub fn kind(&self) -> u16 {
        match self {
            SystemEvent::Genesis { .. } => KIND_GENESIS,
            SystemEvent::KeyRotation { .. } => KIND_KEY_ROTATION,
            SystemEvent::PayloadErased { .. } => KIND_PAYLOAD_ERASED,
            SystemEvent::KeyRegistered { .. } => KIND_KEY_REGISTERED,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(112);
        match self {
            SystemEvent::Genesis { ledger_id, key } => {
                e.raw(ledger_id).raw(key);
            }
            SystemEvent::KeyRotation { old_key, new_key, proof } => {
                e.raw(&old_key.0).raw(new_key).raw(proof);
            }
            SystemEvent::PayloadErased { target, slots } => {
                e.u64(*target).short_bytes(slots);
            }
            SystemEvent::KeyRegistered { key, proof } => {
                e.raw(key).raw(proof);
            }
        }
        e.into_vec()
    }

    /// Decodes the body of a system event of `kind` (version 1); `Ok(None)` for a kind
    /// that is not a system kind.
    pub fn decode(kind: u16, kind_version: u16, body: &[u8]) -> Result<Option<SystemEvent>, DecodeError> {
        if !matches!(kind, KIND_GENESIS | KIND_KEY_ROTATION | KIND_PAYLOAD_ERASED | KIND_KEY_REGISTERED) {
            return Ok(None);
        }
        if kind_version != 1 {
            return Err(DecodeError::Invalid { what: "system event version" });
        }
        let mut d = Decoder::new(body);
        let ev = match kind {
            KIND_GENESIS => SystemEvent::Genesis { ledger_id: d.array()?, key: d.array()? },
            KIND_KEY_ROTATION => {
                SystemEvent::KeyRotation { old_key: KeyId(d.array()?), new_key: d.array()?, proof: d.array()? }
            }
            KIND_KEY_REGISTERED => SystemEvent::KeyRegistered { key: d.array()?, proof: d.array()? },
            _ => {
                let target = d.u64()?;
                let slots = d.short_bytes()?.to_vec();
                if slots.is_empty() || slots.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(DecodeError::Invalid { what: "erased slot list" });
                }
                SystemEvent::PayloadErased { target, slots }
            }
        };
        d.finish()?;
        Ok(Some(ev))
    }

    /// The message a new key signs to prove it is held by whoever rotates to it.
    pub fn rotation_message(ledger_id: &LedgerId, old_key: &KeyId, new_key: &[u8; 32]) -> Vec<u8> {
        let mut e = Encoder::with_capacity(ROTATION_DOMAIN.len() + 56);
        e.raw(ROTATION_DOMAIN).raw(ledger_id).raw(&old_key.0).raw(new_key);
        e.into_vec()
    }

    /// A rotation from `old` to `new`, with the new key's proof of possession.
    pub fn rotation(ledger_id: &LedgerId, old: KeyId, new: &LedgerKey) -> SystemEvent {
        let new_key = new.public().to_bytes();
        let proof = new.sign(&Self::rotation_message(ledger_id, &old, &new_key));
        SystemEvent::KeyRotation { old_key: old, new_key, proof }
    }

    /// Checks a rotation's proof of possession and returns the new key if it is valid.
    pub fn verify_rotation(
        ledger_id: &LedgerId,
        old_key: &KeyId,
        new_key: &[u8; 32],
        proof: &[u8; 64],
    ) -> Option<PublicKey> {
        let key = PublicKey::from_bytes(new_key)?;
        key.verify(&Self::rotation_message(ledger_id, old_key, new_key), proof).then_some(key)
    }

    /// The message a key signs to prove it is held by whoever registers it.
    pub fn registration_message(ledger_id: &LedgerId, key: &[u8; 32]) -> Vec<u8> {
        let mut e = Encoder::with_capacity(REGISTRATION_DOMAIN.len() + 48);
        e.raw(REGISTRATION_DOMAIN).raw(ledger_id).raw(key);
        e.into_vec()
    }

    /// A registration of `key` in ledger `ledger_id`, with its proof of possession.
    pub fn registration(ledger_id: &LedgerId, key: &LedgerKey) -> SystemEvent {
        let public = key.public().to_bytes();
        let proof = key.sign(&Self::registration_message(ledger_id, &public));
        SystemEvent::KeyRegistered { key: public, proof }
    }

    /// Checks a registration's proof of possession (strictly; weak keys refused) and
    /// returns the key if it is valid.
    pub fn verify_registration(ledger_id: &LedgerId, key: &[u8; 32], proof: &[u8; 64]) -> Option<PublicKey> {
        let public = PublicKey::from_bytes(key)?;
        public.verify(&Self::registration_message(ledger_id, key), proof).then_some(public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_bodies_round_trip_and_reject_bad_input() {
        let k = LedgerKey::generate().expect("rng");
        let id = [3u8; 16];
        let events = [
            SystemEvent::Genesis { ledger_id: id, key: k.public().to_bytes() },
            SystemEvent::rotation(&id, KeyId([1; 8]), &k),
            SystemEvent::PayloadErased { target: 9, slots: vec![0, 2] },
            SystemEvent::registration(&id, &k),
        ];
        for ev in events {
            let body = ev.encode();
            assert_eq!(SystemEvent::decode(ev.kind(), 1, &body), Ok(Some(ev.clone())));
            assert!(SystemEvent::decode(ev.kind(), 2, &body).is_err());
            assert!(SystemEvent::decode(ev.kind(), 1, &body[..body.len() - 1]).is_err());
        }
        assert_eq!(SystemEvent::decode(0x0100, 1, b"anything"), Ok(None));
        let unsorted = SystemEvent::PayloadErased { target: 1, slots: vec![2, 1] }.encode();
        assert!(SystemEvent::decode(KIND_PAYLOAD_ERASED, 1, &unsorted).is_err());
    }

    #[test]
    fn rotation_proof_binds_old_key_and_ledger() {
        let k = LedgerKey::generate().expect("rng");
        let id = [3u8; 16];
        let SystemEvent::KeyRotation { old_key, new_key, proof } = SystemEvent::rotation(&id, KeyId([1; 8]), &k) else {
            unreachable!("rotation builds a rotation")
        };
        assert!(SystemEvent::verify_rotation(&id, &old_key, &new_key, &proof).is_some());
        assert!(SystemEvent::verify_rotation(&[4u8; 16], &old_key, &new_key, &proof).is_none());
        assert!(SystemEvent::verify_rotation(&id, &KeyId([2; 8]), &new_key, &proof).is_none());
    }

    #[test]
    fn registration_proof_binds_key_and_ledger() {
        let k = LedgerKey::generate().expect("rng");
        let id = [3u8; 16];
        let SystemEvent::KeyRegistered { key, proof } = SystemEvent::registration(&id, &k) else {
            unreachable!("registration builds a registration")
        };
        assert_eq!(SystemEvent::verify_registration(&id, &key, &proof), Some(k.public()));
        assert!(SystemEvent::verify_registration(&[4u8; 16], &key, &proof).is_none());
        let other = LedgerKey::generate().expect("rng").public().to_bytes();
        assert!(SystemEvent::verify_registration(&id, &other, &proof).is_none());
        let mut bad = proof;
        bad[0] ^= 1;
        assert!(SystemEvent::verify_registration(&id, &key, &bad).is_none());
        // The identity point is weak: refused even before the signature is looked at.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(SystemEvent::verify_registration(&id, &identity, &proof).is_none());
    }
}
