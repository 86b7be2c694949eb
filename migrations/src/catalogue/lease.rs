//! Leases: credentials handed out with a TTL (dynamic database users, later other
//! engines). A lease is recorded *before* its credential exists, so no credential is
//! ever outside the ledger's sight; every revocation attempt is recorded too.

use bincode::{Decode, Encode};

/// What a lease stands for, with what its revocation needs (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum LeaseSecret {
    /// A user of a `database` engine connection, made for a role.
    Database { config: String, role: String, username: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct LeaseIssued {
    /// `<request path>/<24 base62>`, e.g. `database/creds/ro/jizGmYrWlrnndv0zAw8Bb9ku`.
    pub lease_id: String,
    /// The request path that made it (`database/creds/ro`).
    pub path: String,
    /// Uuid of the mount it belongs to.
    pub mount: String,
    pub issue_time: u64,
    pub expire_time: u64,
    /// Renewals never go past this (issue time + max TTL).
    pub max_expire_time: u64,
    pub renewable: bool,
    /// Accessor of the token that asked for it: revoking the token revokes the lease.
    pub token: String,
    pub secret: LeaseSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct LeaseRenewed {
    pub lease_id: String,
    pub expire_time: u64,
    pub time: u64,
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum LeaseEnd {
    /// `sys/leases/revoke` (or the engine's own revoke).
    Revoked,
    /// Its TTL ran out.
    Expired,
    /// The token that made it was revoked.
    TokenRevoked,
    /// `sys/leases/revoke-prefix`.
    Prefix,
    /// `sys/leases/revoke-force`: dropped from cairn whatever the backend said.
    Forced,
    /// Creating the credential failed after the lease was recorded; nothing was handed out.
    CreationFailed,
    /// Its mount was disabled (`sys/mounts/<path>` DELETE revokes every lease under it).
    MountDisabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct LeaseRevoked {
    pub lease_id: String,
    pub reason: LeaseEnd,
    pub time: u64,
}

/// One failed revocation attempt; the lease stays and is retried at `next_attempt`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct LeaseRevocationFailed {
    pub lease_id: String,
    pub attempt: u32,
    /// The backend's error (never a password: database errors are redacted).
    pub error: String,
    pub next_attempt: u64,
    pub time: u64,
}
