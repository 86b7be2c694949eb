//! Sealed payloads, erasable data keys and keyed hashes (FORMAT.md, "Sealed payloads").
//!
//! Every secret a body carries is encrypted with AES-256-GCM under a fresh random data key
//! (DEK) that is used exactly once. The DEK itself is wrapped under the active keyring term
//! and stored in a [`KeySlot`] *outside* the hashed bytes of the event. Erasing a payload
//! (`kv destroy`) zeroes its slot: the ciphertext stays in the chain, every hash still
//! verifies, and nobody — with or without the keyring — can decrypt it again.
//!
//! Nonces are random 96-bit values from the OS, never derived from a sequence number. Each
//! wrap under a keyring term counts against that term's budget; callers rotate the keyring
//! once [`Keyring::needs_rotation`] says so, well before the 2^32 random-nonce limit.
//! Both encryptions bind their context (what the payload is, where it lives) as associated
//! data, so a sealed value cannot be moved to another record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bincode::{Decode, Encode};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::hash::Hash;

/// Size of one key slot on disk.
pub const SLOT_LEN: usize = 68;
/// Wraps under one term after which the keyring should rotate (2^30).
pub const ROTATE_AFTER: u64 = 1 << 30;
/// Wraps under one term after which sealing is refused (3·2^30, below 2^32).
pub const HARD_LIMIT: u64 = 3 << 30;

const PAYLOAD_AAD_DOMAIN: &[u8] = b"cairn.seal.v1\0";
const DEK_AAD_DOMAIN: &[u8] = b"cairn.dek.v1\0";
const DIRECT_AAD_DOMAIN: &[u8] = b"cairn.wrap.v1\0";
const KEYED_HASH_CONTEXT: &str = "cairn 2026 keyed-hash v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The slot was erased: the payload is gone by design.
    #[error("payload erased")]
    Erased,
    /// The slot is neither intact nor erased.
    #[error("key slot damaged")]
    DamagedSlot,
    /// The keyring has no key for the slot's term.
    #[error("unknown keyring term {0}")]
    UnknownTerm(u32),
    /// Authentication failed: wrong key, wrong context or modified bytes.
    #[error("sealed payload failed authentication")]
    Authentication,
    /// The active term has used its nonce budget; rotate the keyring.
    #[error("keyring term {0} exhausted its encryption budget; rotate the keyring")]
    BudgetExhausted(u32),
    #[error("no active keyring term")]
    NoActiveTerm,
    #[error("operating system randomness unavailable")]
    Randomness,
}

/// State of a key slot as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Intact,
    Erased,
    Damaged,
}

/// A wrapped data key: `term u32 ‖ nonce 12 ‖ wrapped key 32 ‖ tag 16 ‖ crc32c 4`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeySlot(pub [u8; SLOT_LEN]);

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySlot(term {}, {:?})", self.term(), self.state())
    }
}

/// Key slots travel in projection snapshots as byte sequences (serde has no impl for
/// arrays longer than 32).
impl serde::Serialize for KeySlot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.0[..], s)
    }
}

impl<'de> serde::Deserialize<'de> for KeySlot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        let arr: [u8; SLOT_LEN] =
            bytes.try_into().map_err(|_| <D::Error as serde::de::Error>::custom("a key slot is 68 bytes"))?;
        Ok(KeySlot(arr))
    }
}

impl KeySlot {
    pub const ERASED: KeySlot = KeySlot([0u8; SLOT_LEN]);

    fn build(term: u32, nonce: &[u8; 12], wrapped: &[u8]) -> KeySlot {
        let mut b = [0u8; SLOT_LEN];
        b[..4].copy_from_slice(&term.to_be_bytes());
        b[4..16].copy_from_slice(nonce);
        b[16..64].copy_from_slice(wrapped);
        let crc = crc32c::crc32c(&b[..64]);
        b[64..].copy_from_slice(&crc.to_be_bytes());
        KeySlot(b)
    }

    pub fn term(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    pub fn state(&self) -> SlotState {
        if self.0.iter().all(|&b| b == 0) {
            SlotState::Erased
        } else if crc32c::crc32c(&self.0[..64]).to_be_bytes() == self.0[64..] {
            SlotState::Intact
        } else {
            SlotState::Damaged
        }
    }
}

/// A payload encrypted under the data key in slot `slot` of its event.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub slot: u8,
    pub nonce: [u8; 12],
    /// Ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
}

struct Term {
    cipher: Aes256Gcm,
    wraps: AtomicU64,
}

/// The versioned keyring: one AES-256 key per term, one term active for new seals.
#[derive(Default)]
pub struct Keyring {
    terms: BTreeMap<u32, Term>,
    active: Option<u32>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("terms", &self.terms.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, SealError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).map_err(|_| SealError::Randomness)?;
    Ok(out)
}

/// A fresh random 256-bit key.
pub fn random_key() -> Result<Zeroizing<[u8; 32]>, SealError> {
    random::<32>()
}

fn nonce(bytes: &[u8]) -> Result<Nonce<aes_gcm::aead::consts::U12>, SealError> {
    <[u8; 12]>::try_from(bytes).map(Nonce::from).map_err(|_| SealError::Authentication)
}

fn aad(domain: &[u8], term: Option<u32>, context: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(domain.len() + 4 + context.len());
    v.extend_from_slice(domain);
    if let Some(t) = term {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v.extend_from_slice(context);
    v
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key of `term` and makes the highest term active.
    pub fn insert(&mut self, term: u32, key: &[u8; 32]) {
        let cipher = Aes256Gcm::new(key.into());
        self.terms.insert(term, Term { cipher, wraps: AtomicU64::new(0) });
        self.active = self.terms.keys().next_back().copied();
    }

    pub fn active_term(&self) -> Option<u32> {
        self.active
    }

    pub fn terms(&self) -> impl Iterator<Item = u32> + '_ {
        self.terms.keys().copied()
    }

    /// Sets how many wraps a term has already done (counted from the ledger at start-up).
    pub fn set_wrap_count(&self, term: u32, count: u64) {
        if let Some(t) = self.terms.get(&term) {
            t.wraps.store(count, Ordering::Relaxed);
        }
    }

    pub fn wrap_count(&self, term: u32) -> u64 {
        self.terms.get(&term).map(|t| t.wraps.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// True once the active term has done [`ROTATE_AFTER`] wraps.
    pub fn needs_rotation(&self) -> bool {
        self.active.is_some_and(|t| self.wrap_count(t) >= ROTATE_AFTER)
    }

    /// Seals `plaintext` under a fresh data key placed in slot number `slot` of its event.
    pub fn seal(&self, plaintext: &[u8], context: &[u8], slot: u8) -> Result<(Sealed, KeySlot), SealError> {
        let term_no = self.active.ok_or(SealError::NoActiveTerm)?;
        let term = self.terms.get(&term_no).ok_or(SealError::UnknownTerm(term_no))?;
        if term.wraps.fetch_add(1, Ordering::Relaxed) >= HARD_LIMIT {
            return Err(SealError::BudgetExhausted(term_no));
        }
        let dek = random_key()?;
        let payload_nonce = random::<12>()?;
        let ciphertext = Aes256Gcm::new((&*dek).into())
            .encrypt(
                &Nonce::from(*payload_nonce),
                Payload { msg: plaintext, aad: &aad(PAYLOAD_AAD_DOMAIN, None, context) },
            )
            .map_err(|_| SealError::Authentication)?;
        let wrap_nonce = random::<12>()?;
        let wrapped = term
            .cipher
            .encrypt(
                &Nonce::from(*wrap_nonce),
                Payload { msg: &*dek, aad: &aad(DEK_AAD_DOMAIN, Some(term_no), context) },
            )
            .map_err(|_| SealError::Authentication)?;
        Ok((Sealed { slot, nonce: *payload_nonce, ciphertext }, KeySlot::build(term_no, &wrap_nonce, &wrapped)))
    }

    /// Opens a sealed payload with its key slot and the context it was sealed with.
    pub fn open(&self, sealed: &Sealed, slot: &KeySlot, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match slot.state() {
            SlotState::Erased => return Err(SealError::Erased),
            SlotState::Damaged => return Err(SealError::DamagedSlot),
            SlotState::Intact => {}
        }
        let term_no = slot.term();
        let term = self.terms.get(&term_no).ok_or(SealError::UnknownTerm(term_no))?;
        let dek = Zeroizing::new(
            term.cipher
                .decrypt(
                    &nonce(&slot.0[4..16])?,
                    Payload { msg: &slot.0[16..64], aad: &aad(DEK_AAD_DOMAIN, Some(term_no), context) },
                )
                .map_err(|_| SealError::Authentication)?,
        );
        let plaintext = Aes256Gcm::new_from_slice(&dek)
            .map_err(|_| SealError::Authentication)?
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload { msg: &sealed.ciphertext, aad: &aad(PAYLOAD_AAD_DOMAIN, None, context) },
            )
            .map_err(|_| SealError::Authentication)?;
        Ok(Zeroizing::new(plaintext))
    }
}

/// Encrypts with a long-lived key (root key, keyring terms, signing key seed): `nonce 12 ‖
/// ciphertext ‖ tag 16`. Not erasable; for key material only.
pub fn wrap(key: &[u8; 32], plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce = random::<12>()?;
    let ct = Aes256Gcm::new(key.into())
        .encrypt(&Nonce::from(*nonce), Payload { msg: plaintext, aad: &aad(DIRECT_AAD_DOMAIN, None, context) })
        .map_err(|_| SealError::Authentication)?;
    let mut out = Vec::with_capacity(12 + ct.len());
    out.extend_from_slice(&*nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`wrap`] produced; fails on a wrong key, wrong context or modified bytes.
pub fn unwrap(key: &[u8; 32], wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if wrapped.len() < 12 + 16 {
        return Err(SealError::Authentication);
    }
    let (nonce_bytes, ct) = wrapped.split_at(12);
    Aes256Gcm::new(key.into())
        .decrypt(&nonce(nonce_bytes)?, Payload { msg: ct, aad: &aad(DIRECT_AAD_DOMAIN, None, context) })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
}

/// blake3 in keyed mode: for values that must be matched but never recovered (token ids,
/// secret ids) and for the HMAC'd fields of access events.
#[derive(Clone)]
pub struct KeyedHasher {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher(..)")
    }
}

impl KeyedHasher {
    /// Derives the hashing key from a secret key, so the two are never the same bytes.
    pub fn derive(secret: &[u8; 32]) -> KeyedHasher {
        KeyedHasher { key: Zeroizing::new(blake3::derive_key(KEYED_HASH_CONTEXT, secret)) }
    }

    /// `blake3_keyed(key, domain ‖ 0x00 ‖ data)`.
    pub fn hash(&self, domain: &str, data: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(domain.as_bytes());
        h.update(&[0]);
        h.update(data);
        Hash(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        let mut k = Keyring::new();
        k.insert(1, &random_key().expect("rng"));
        k
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = keyring();
        let (sealed, slot) = k.seal(b"hunter2", b"kv/secret/app/1", 0).expect("seal");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&*k.open(&sealed, &slot, b"kv/secret/app/1").expect("open"), b"hunter2");
        assert_eq!(k.open(&sealed, &slot, b"kv/secret/app/2"), Err(SealError::Authentication));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(k.open(&flipped, &slot, b"kv/secret/app/1"), Err(SealError::Authentication));
        assert_eq!(k.wrap_count(1), 1);
    }

    #[test]
    fn erased_slot_makes_payload_unrecoverable_and_damage_is_detected() {
        let k = keyring();
        let (sealed, slot) = k.seal(b"v", b"ctx", 0).expect("seal");
        assert_eq!(slot.state(), SlotState::Intact);
        assert_eq!(k.open(&sealed, &KeySlot::ERASED, b"ctx"), Err(SealError::Erased));
        let mut damaged = slot;
        damaged.0[20] ^= 0xff;
        assert_eq!(damaged.state(), SlotState::Damaged);
        assert_eq!(k.open(&sealed, &damaged, b"ctx"), Err(SealError::DamagedSlot));
    }

    #[test]
    fn rotation_keeps_old_terms_readable_and_budget_is_enforced() {
        let mut k = keyring();
        let (old, old_slot) = k.seal(b"old", b"c", 0).expect("seal");
        k.insert(2, &random_key().expect("rng"));
        assert_eq!(k.active_term(), Some(2));
        let (new, new_slot) = k.seal(b"new", b"c", 0).expect("seal");
        assert_eq!(new_slot.term(), 2);
        assert_eq!(&*k.open(&old, &old_slot, b"c").expect("open"), b"old");
        assert_eq!(&*k.open(&new, &new_slot, b"c").expect("open"), b"new");
        assert!(!k.needs_rotation());
        k.set_wrap_count(2, ROTATE_AFTER);
        assert!(k.needs_rotation());
        k.set_wrap_count(2, HARD_LIMIT);
        assert_eq!(k.seal(b"x", b"c", 0).map(|_| ()), Err(SealError::BudgetExhausted(2)));
        let mut no_key = Keyring::new();
        no_key.insert(7, &random_key().expect("rng"));
        assert_eq!(no_key.open(&old, &old_slot, b"c"), Err(SealError::UnknownTerm(1)));
    }

    #[test]
    fn nonces_are_random_not_sequential() {
        let k = keyring();
        let (a, sa) = k.seal(b"same", b"c", 0).expect("seal");
        let (b, sb) = k.seal(b"same", b"c", 0).expect("seal");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(sa.0[4..16], sb.0[4..16]);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn direct_wrap_and_keyed_hash() {
        let key = random_key().expect("rng");
        let w = wrap(&key, b"root key", b"root").expect("wrap");
        assert_eq!(&*unwrap(&key, &w, b"root").expect("unwrap"), b"root key");
        assert!(unwrap(&key, &w, b"other").is_err());
        assert!(unwrap(&random_key().expect("rng"), &w, b"root").is_err());
        assert!(unwrap(&key, &w[..10], b"root").is_err());
        let h = KeyedHasher::derive(&key);
        assert_eq!(h.hash("token", b"s.abc"), h.hash("token", b"s.abc"));
        assert_ne!(h.hash("token", b"s.abc"), h.hash("secret-id", b"s.abc"));
        assert_ne!(h.hash("token", b"s.abc"), KeyedHasher::derive(&random_key().expect("rng")).hash("token", b"s.abc"));
    }
}
