//! A deterministic [`Env`] for the rule and sequencer tests: a settable clock, counter-based
//! randomness, a fixed keyring and hash key.

use std::sync::atomic::{AtomicU64, Ordering};

use commands::{Env, Rejection};
use ledger::seal::{KeyedHasher, Keyring};
use ledger::{KeySlot, Sealed};
use zeroize::Zeroizing;

pub const SEC: u64 = 1_000_000_000;

pub struct TestEnv {
    now: AtomicU64,
    counter: AtomicU64,
    keyring: Keyring,
    hasher: KeyedHasher,
}

impl TestEnv {
    pub fn new() -> Self {
        let mut keyring = Keyring::new();
        keyring.insert(1, &[7; 32]);
        TestEnv {
            now: AtomicU64::new(1_000 * SEC),
            counter: AtomicU64::new(0),
            keyring,
            hasher: KeyedHasher::derive(&[9; 32]),
        }
    }
    #[allow(dead_code)] // not every test file moves the clock
    pub fn advance(&self, secs: u64) {
        self.now.fetch_add(secs * SEC, Ordering::SeqCst);
    }
}

impl Env for TestEnv {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), Rejection> {
        for chunk in buf.chunks_mut(32) {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            chunk.copy_from_slice(&blake3::hash(&n.to_be_bytes()).as_bytes()[..chunk.len()]);
        }
        Ok(())
    }
    fn seal(&self, plaintext: &[u8], context: &[u8], slot: u8) -> Result<(Sealed, KeySlot), Rejection> {
        self.keyring.seal(plaintext, context, slot).map_err(|e| Rejection::Internal(e.to_string()))
    }
    fn open(&self, sealed: &Sealed, slot: &KeySlot, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Rejection> {
        self.keyring.open(sealed, slot, context).map_err(|e| Rejection::Internal(e.to_string()))
    }
    fn keyed_hash(&self, domain: &str, data: &[u8]) -> [u8; 32] {
        self.hasher.hash(domain, data).0
    }
}

/// A policy write by the server itself: one event, and a write that never conflicts
/// (no check-and-set), for the sequencer tests.
#[allow(dead_code)] // the rule tests build their own requests
pub fn policy_write(name: &str) -> commands::Request {
    commands::Request {
        caller: None,
        actor: ledger::Actor::system(),
        request_id: [1; 16],
        access: None,
        command: Some(commands::Command::WritePolicy {
            name: name.into(),
            text: r#"path "secret/*" { capabilities = ["read"] }"#.into(),
            cas: None,
        }),
    }
}
