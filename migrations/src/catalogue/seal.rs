//! Initialization, keyring and seal events.
//!
//! Key material appears here only wrapped: the root key under the unseal key (which exists
//! only as Shamir shares outside the server), everything else under the root key.

use bincode::{Decode, Encode};

/// The barrier was initialized: how it is sealed and the wrapped keys it starts with.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Initialized {
    pub secret_shares: u8,
    pub secret_threshold: u8,
    /// The root key, wrapped under the unseal key (`ledger::seal::wrap`, context "root-key").
    pub wrapped_root_key: Vec<u8>,
    /// Keyring term 1, wrapped under the root key.
    pub keyring_term: u32,
    pub wrapped_keyring_key: Vec<u8>,
    /// The ledger's checkpoint signing key seed, wrapped under the root key.
    pub wrapped_signing_key: Vec<u8>,
    /// The key of keyed hashes (token ids, HMACs of access events), wrapped under the root key.
    pub wrapped_hmac_key: Vec<u8>,
    /// Identifier shown as `cluster_id` (a UUID).
    pub cluster_id: String,
}

/// A new keyring term, wrapped under the root key; new seals use it from now on.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KeyringRotated {
    pub term: u32,
    pub wrapped_key: Vec<u8>,
}

/// The server was unsealed (or started unsealed in dev mode) and began writing.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Unsealed {
    pub dev: bool,
}

/// An operator sealed the server (`sys/seal`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct SealedByOperator {}

/// The root key, wrapped by an external key service at init (auto-unseal, Vault's `seal`
/// stanza). Recorded in the same batch as [`Initialized`], whose Shamir shares are then
/// *recovery* shares: they still open the root key by themselves (cairn's deviation from
/// Vault, where recovery keys only authorize operations), so the server can be unsealed
/// while the key service is down.
///
/// Nothing here is secret without the key service: the ciphertext opens only through it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct RootKeyAutoSealed {
    /// The seal type (`"transit"`).
    pub seal_type: String,
    /// The transit mount path (`"transit/"`) and key name used at init: informative, the
    /// running configuration says where to decrypt.
    pub mount_path: String,
    pub key_name: String,
    /// The key service's ciphertext of the root key (transit: `vault:v1:…`).
    pub ciphertext: String,
}
