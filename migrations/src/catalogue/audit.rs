//! Audit devices (`sys/audit`): Vault-format copies of the access events, written by a
//! tailer per device. Enabling and disabling a device are events; the entries a device
//! writes are derived from the ledger and are not.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use ledger::Sealed;

/// A device was enabled at `path` ("file/"). Its HMAC salt is sealed (key slot 0), and
/// erased when the device is disabled, as Vault loses a device's salt on disable.
///
/// Version 2 adds `from_config`; version 1 bodies ([`AuditDeviceEnabledV1`]) were all
/// enabled through the API.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AuditDeviceEnabled {
    pub path: String,
    /// "file" or "socket".
    pub kind: String,
    pub description: String,
    /// The options as given (`file_path`, `address`, `hmac_accessor`, …).
    pub options: BTreeMap<String, String>,
    pub local: bool,
    /// 32 random bytes: the device's HMAC-SHA256 key.
    pub salt: Sealed,
    pub enabled_at: u64,
    /// Declared by an `audit` stanza of the server's configuration (OpenBao's
    /// "audit-config" table): only the configuration may disable it. False for a device
    /// enabled through `sys/audit`.
    pub from_config: bool,
}

/// Version 1 of [`AuditDeviceEnabled`], before `from_config`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AuditDeviceEnabledV1 {
    pub path: String,
    pub kind: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub local: bool,
    pub salt: Sealed,
    pub enabled_at: u64,
}

impl From<AuditDeviceEnabledV1> for AuditDeviceEnabled {
    fn from(v: AuditDeviceEnabledV1) -> AuditDeviceEnabled {
        AuditDeviceEnabled {
            path: v.path,
            kind: v.kind,
            description: v.description,
            options: v.options,
            local: v.local,
            salt: v.salt,
            enabled_at: v.enabled_at,
            from_config: false,
        }
    }
}

/// The device at `path` was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AuditDeviceDisabled {
    pub path: String,
}
