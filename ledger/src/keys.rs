//! Checkpoint signing keys: ed25519, strict verification, weak keys refused.
//!
//! A key is named by its [`KeyId`], the first 8 bytes of `blake3("cairn.key-id.v1\0" ‖
//! public key)`. The private half never leaves this type except as the 32-byte seed the
//! server seals under its keyring.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::hash::KEY_ID_DOMAIN;

/// Short, stable name of a public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(public: &[u8; 32]) -> KeyId {
        let mut h = blake3::Hasher::new();
        h.update(KEY_ID_DOMAIN);
        h.update(public);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        KeyId(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A public checkpoint key that passed the registration checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// Accepts a public key only if it is a valid, non-weak (not small-order) point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if key.is_weak() {
            return None;
        }
        Some(PublicKey { key, id: KeyId::of(bytes) })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `verify_strict` only: canonical S, and neither R nor A of small order.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.key.verify_strict(message, &sig).is_ok()
    }

    /// The text form printed by `cairn ledger public-key` and read by `--trusted-key`.
    pub fn to_text(&self) -> String {
        use base64::Engine;
        format!("ed25519:{}", base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }

    /// Parses `ed25519:<base64>` (or bare base64 / 64 hex digits).
    pub fn from_text(text: &str) -> Option<PublicKey> {
        use base64::Engine;
        let t = text.trim();
        let t = t.strip_prefix("ed25519:").unwrap_or(t);
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).ok()?
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).ok()?
        };
        PublicKey::from_bytes(&<[u8; 32]>::try_from(bytes.as_slice()).ok()?)
    }
}

/// The private checkpoint key of a ledger writer.
pub struct LedgerKey {
    key: SigningKey,
    public: PublicKey,
}

impl LedgerKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<LedgerKey, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        // A weak key from 32 random bytes has negligible probability, but check anyway.
        LedgerKey::from_seed(&seed).ok_or_else(|| getrandom::Error::new_custom(1))
    }

    /// Rebuilds a key from its 32-byte seed; `None` if its public half is weak.
    pub fn from_seed(seed: &[u8; 32]) -> Option<LedgerKey> {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::from_bytes(&key.verifying_key().to_bytes())?;
        Some(LedgerKey { key, public })
    }

    /// The seed, for sealing under the keyring. Handle with care.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn id(&self) -> KeyId {
        self.public.id
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LedgerKey({})", self.public.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_strictly_and_bind_the_message() {
        let k = LedgerKey::generate().expect("rng");
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hellO", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!k.public().verify(b"hello", &bad));
        let other = LedgerKey::generate().expect("rng");
        assert!(!other.public().verify(b"hello", &sig));
    }

    #[test]
    fn weak_and_malformed_public_keys_are_refused() {
        // The identity point (small order) encodes as 1 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_none());
        assert!(PublicKey::from_text("ed25519:AAAA").is_none());
        let k = LedgerKey::generate().expect("rng");
        assert_eq!(PublicKey::from_text(&k.public().to_text()), Some(k.public()));
        assert_eq!(PublicKey::from_text(&hex::encode(k.public().to_bytes())), Some(k.public()));
    }

    #[test]
    fn seed_round_trips() {
        let k = LedgerKey::generate().expect("rng");
        let back = LedgerKey::from_seed(&k.seed()).expect("valid");
        assert_eq!(back.public(), k.public());
    }
}
