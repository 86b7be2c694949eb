//! Access events: every request that reaches the API, allowed or denied, as Vault's audit
//! log records it — with keyed hashes in place of every value.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Outcome {
    Allowed,
    /// Refused by the ACL or for a missing/invalid token.
    Denied,
    /// Accepted by the ACL but answered with an error (status code).
    Failed(u16),
}

/// One request (the actor of the envelope says who made it, with which token accessor).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Access {
    /// Logical operation: "read", "create", "update", "patch", "delete", "list", …
    pub operation: String,
    pub path: String,
    /// Accessor of the mount the path belongs to ("" if none).
    pub mount_accessor: String,
    pub outcome: Outcome,
    /// Policies of the token at the time of the request.
    pub policies: Vec<String>,
    /// Keyed hashes (hex) of the top-level request data fields, as Vault's audit HMACs them.
    pub request_hmac: BTreeMap<String, String>,
    /// Keyed hashes (hex) of the top-level response data fields.
    pub response_hmac: BTreeMap<String, String>,
    /// The request counted against the token's `num_uses`.
    pub used_token: bool,
}
