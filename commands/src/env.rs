//! What a rule may use besides the state: time, randomness, sealing and keyed hashing.
//! The sequencer provides the real ones; tests provide deterministic ones.

use ledger::{KeySlot, Sealed};
use zeroize::Zeroizing;

use crate::Rejection;

pub trait Env {
    /// Now, nanoseconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Fills `buf` with random bytes.
    fn random(&self, buf: &mut [u8]) -> Result<(), Rejection>;
    /// Seals `plaintext` under a fresh data key placed in key slot `slot` of its event.
    fn seal(&self, plaintext: &[u8], context: &[u8], slot: u8) -> Result<(Sealed, KeySlot), Rejection>;
    /// Opens a sealed payload.
    fn open(&self, sealed: &Sealed, slot: &KeySlot, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Rejection>;
    /// A keyed hash (blake3, keyed by the barrier's hash key) in a domain of its own.
    fn keyed_hash(&self, domain: &str, data: &[u8]) -> [u8; 32];
    /// The keyed hash a token id is stored under.
    fn token_hash(&self, id: &str) -> [u8; 32] {
        self.keyed_hash("token", id.as_bytes())
    }
}
