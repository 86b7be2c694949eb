//! Tokens and token roles. A token id never appears here: only its keyed hash.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

/// A new service token.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenCreated {
    /// Keyed hash of the token id (`KeyedHasher::hash("token", id)`).
    pub id_hash: [u8; 32],
    pub accessor: String,
    /// Accessor of the parent token; `None` for orphans.
    pub parent: Option<String>,
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    /// Where the token came from ("auth/token/create", "auth/token/root", …).
    pub path: String,
    /// 0 means unlimited.
    pub num_uses: u64,
    /// TTL granted at creation, seconds (0: never expires).
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub role: String,
    pub entity_id: String,
    /// Creation time, nanoseconds since the Unix epoch.
    pub issue_time: u64,
    /// When it expires, nanoseconds since the Unix epoch; 0 for never.
    pub expire_time: u64,
    /// Tokens made at init have no `issue_time`/`renewable` in lookups (Vault's root).
    pub from_init: bool,
    /// CIDR blocks the token may be used from; empty: anywhere. (Since version 2.)
    pub bound_cidrs: Vec<String>,
}

/// Version 1 of [`TokenCreated`], before `bound_cidrs`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenCreatedV1 {
    pub id_hash: [u8; 32],
    pub accessor: String,
    pub parent: Option<String>,
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub path: String,
    pub num_uses: u64,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub role: String,
    pub entity_id: String,
    pub issue_time: u64,
    pub expire_time: u64,
    pub from_init: bool,
}

impl From<TokenCreatedV1> for TokenCreated {
    fn from(v: TokenCreatedV1) -> TokenCreated {
        TokenCreated {
            id_hash: v.id_hash,
            accessor: v.accessor,
            parent: v.parent,
            policies: v.policies,
            meta: v.meta,
            display_name: v.display_name,
            path: v.path,
            num_uses: v.num_uses,
            ttl: v.ttl,
            explicit_max_ttl: v.explicit_max_ttl,
            period: v.period,
            renewable: v.renewable,
            role: v.role,
            entity_id: v.entity_id,
            issue_time: v.issue_time,
            expire_time: v.expire_time,
            from_init: v.from_init,
            bound_cidrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenRenewed {
    pub accessor: String,
    /// The TTL granted by this renewal, seconds.
    pub ttl: u64,
    pub expire_time: u64,
}

/// Why tokens stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum RevocationReason {
    /// An explicit revoke (of these tokens or of an ancestor).
    Revoked,
    /// The TTL ran out.
    Expired,
    /// The last allowed use was spent.
    UsesExhausted,
}

/// Tokens revoked together (a token and its descendants). `orphaned` children of a
/// `revoke-orphan` survive and lose their parent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokensRevoked {
    pub accessors: Vec<String>,
    pub orphaned: Vec<String>,
    pub reason: RevocationReason,
}

/// A token role (`auth/token/roles/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenRole {
    pub name: String,
    pub allowed_policies: Vec<String>,
    pub disallowed_policies: Vec<String>,
    pub allowed_policies_glob: Vec<String>,
    pub disallowed_policies_glob: Vec<String>,
    pub orphan: bool,
    pub renewable: bool,
    pub path_suffix: String,
    pub token_period: u64,
    pub token_explicit_max_ttl: u64,
    pub token_no_default_policy: bool,
    pub token_type: String,
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_num_uses: u64,
    pub allowed_entity_aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenRoleWritten {
    pub role: TokenRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenRoleDeleted {
    pub name: String,
}
