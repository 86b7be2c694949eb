//! Secrets-engine and auth-method mounts. Events name mounts by uuid, not path.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

/// Whether a mount is a secrets engine (`sys/mounts`) or an auth method (`sys/auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum MountClass {
    Secret,
    Auth,
}

/// Tunable settings of a mount (`sys/mounts/<p>/tune`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct MountConfig {
    /// Seconds; 0 means the system default.
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
    pub force_no_cache: bool,
    pub audit_non_hmac_request_keys: Vec<String>,
    pub audit_non_hmac_response_keys: Vec<String>,
    pub listing_visibility: String,
    pub passthrough_request_headers: Vec<String>,
    pub allowed_response_headers: Vec<String>,
    /// Auth mounts only ("default-service", "service", "batch", …).
    pub token_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct MountEnabled {
    pub uuid: String,
    /// Path with its trailing slash ("secret/", for auth mounts without "auth/").
    pub path: String,
    pub class: MountClass,
    /// Engine type: "kv", "cubbyhole", "token", …
    pub kind: String,
    pub accessor: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub config: MountConfig,
    pub local: bool,
    pub seal_wrap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct MountTuned {
    pub uuid: String,
    pub description: Option<String>,
    pub config: MountConfig,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct MountDisabled {
    pub uuid: String,
}
