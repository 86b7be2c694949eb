//! What the ledger says about the barrier: is it initialized, how is it sealed, and the
//! wrapped keys (useless without the unseal key shares).

use std::collections::BTreeMap;

use migrations::{Initialized, KeyringRotated, RootKeyAutoSealed};

/// One keyring term as recorded (wrapped under the root key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyringTerm {
    pub wrapped_key: Vec<u8>,
    /// Install time, nanoseconds since the Unix epoch.
    pub installed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealState {
    /// The `Initialized` event, once there is one.
    pub init: Option<Initialized>,
    pub keyring: BTreeMap<u32, KeyringTerm>,
    /// The root key wrapped by an external key service (auto-unseal), when the barrier was
    /// initialized with one; the `Initialized` shares are then recovery shares.
    pub auto_sealed: Option<RootKeyAutoSealed>,
}

impl SealState {
    pub fn is_initialized(&self) -> bool {
        self.init.is_some()
    }

    pub(crate) fn initialized(&mut self, e: &Initialized) {
        self.keyring.insert(e.keyring_term, KeyringTerm { wrapped_key: e.wrapped_keyring_key.clone(), installed: 0 });
        self.init = Some(e.clone());
    }

    pub(crate) fn keyring_rotated(&mut self, e: &KeyringRotated, time: u64) {
        self.keyring.insert(e.term, KeyringTerm { wrapped_key: e.wrapped_key.clone(), installed: time });
    }

    /// Every keyring term's key as recorded, wrapped under the root key (what
    /// `barrier::open_keyring` opens).
    pub fn wrapped_terms(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.keyring.iter().map(|(term, t)| (*term, t.wrapped_key.as_slice()))
    }

    /// The term new seals use.
    pub fn active_term(&self) -> u32 {
        self.keyring.keys().next_back().copied().unwrap_or(1)
    }
}
