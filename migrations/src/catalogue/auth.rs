//! Auth methods other than tokens: AppRole, userpass, JWT/OIDC and Kubernetes. Events
//! name their auth mount by uuid.
//!
//! No credential is ever here in clear: AppRole secret ids only as keyed hashes,
//! userpass password hashes and the Kubernetes reviewer JWT sealed (key slot 0 of
//! their event, erased once replaced).

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use ledger::Sealed;

/// The token fields every role and user carries (Vault's `tokenutil`). Seconds; 0 means
/// the mount's or the system's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct TokenSettings {
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_explicit_max_ttl: u64,
    pub token_period: u64,
    pub token_policies: Vec<String>,
    /// CIDR blocks the login's token may be used from (normalised: a /32 is a bare address).
    pub token_bound_cidrs: Vec<String>,
    pub token_no_default_policy: bool,
    pub token_num_uses: u64,
    /// "default" or "service" ("batch" is refused).
    pub token_type: String,
    pub token_strictly_bind_ip: bool,
}

/// An AppRole role (`auth/<mount>/role/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AppRole {
    pub name: String,
    /// An identifier, not a credential (Vault shows it to whoever may read the role).
    pub role_id: String,
    pub bind_secret_id: bool,
    pub secret_id_bound_cidrs: Vec<String>,
    /// 0: unlimited.
    pub secret_id_num_uses: u64,
    /// Seconds; 0: never expires.
    pub secret_id_ttl: u64,
    pub local_secret_ids: bool,
    pub token: TokenSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AppRoleWritten {
    pub mount: String,
    pub role: AppRole,
}

/// A role and every secret id it had.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AppRoleDeleted {
    pub mount: String,
    pub name: String,
}

/// A new secret id of a role. The secret id itself is only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct SecretIdIssued {
    pub mount: String,
    pub role: String,
    /// `KeyedHasher::hash("approle-secret-id", <mount uuid> NUL <secret id>)`.
    pub id_hash: [u8; 32],
    pub accessor: String,
    pub metadata: BTreeMap<String, String>,
    pub cidr_list: Vec<String>,
    pub token_bound_cidrs: Vec<String>,
    /// 0: unlimited.
    pub num_uses: u64,
    /// Seconds; 0: never expires.
    pub ttl: u64,
    pub creation_time: u64,
    /// 0: never.
    pub expiration_time: u64,
    /// Made with `custom-secret-id` (the caller chose the value).
    pub custom: bool,
}

/// A login spent one use of a secret id (it goes when its last use is spent).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct SecretIdUsed {
    pub mount: String,
    pub role: String,
    pub accessor: String,
}

/// Why secret ids stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub enum SecretIdEnd {
    Destroyed,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct SecretIdsDestroyed {
    pub mount: String,
    pub role: String,
    pub accessors: Vec<String>,
    pub reason: SecretIdEnd,
}

/// A userpass user. `password: None` keeps the current one; the sealed value is an
/// argon2id hash in PHC form, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct UserpassUserWritten {
    pub mount: String,
    pub name: String,
    pub password_hash: Option<Sealed>,
    pub token: TokenSettings,
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct UserpassUserDeleted {
    pub mount: String,
    pub name: String,
}

/// `auth/<jwt mount>/config`: where the signing keys come from, and who must have issued.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct JwtConfig {
    pub oidc_discovery_url: String,
    pub oidc_discovery_ca_pem: String,
    pub jwks_url: String,
    pub jwks_ca_pem: String,
    /// PEM public keys (RSA, EC, Ed25519).
    pub jwt_validation_pubkeys: Vec<String>,
    /// Empty: every asymmetric algorithm (RS, PS, ES 256/384/512 and EdDSA), as OpenBao.
    pub jwt_supported_algs: Vec<String>,
    pub bound_issuer: String,
    pub default_role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct JwtConfigWritten {
    pub mount: String,
    pub config: JwtConfig,
}

/// A role of the `jwt` method (`role_type` "jwt").
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct JwtRole {
    pub name: String,
    pub role_type: String,
    pub bound_audiences: Vec<String>,
    pub user_claim: String,
    pub user_claim_json_pointer: bool,
    pub bound_subject: String,
    /// Claim (or JSON pointer) → accepted values; a JSON string or list of strings each.
    pub bound_claims: BTreeMap<String, Vec<String>>,
    /// "string" or "glob".
    pub bound_claims_type: String,
    /// Claim → metadata key.
    pub claim_mappings: BTreeMap<String, String>,
    pub groups_claim: String,
    /// Seconds; 0: the default (60 s skew, 150 s for exp and nbf), negative: none.
    pub clock_skew_leeway: i64,
    pub expiration_leeway: i64,
    pub not_before_leeway: i64,
    pub max_age: u64,
    pub allowed_redirect_uris: Vec<String>,
    pub oidc_scopes: Vec<String>,
    pub verbose_oidc_logging: bool,
    pub token: TokenSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct JwtRoleWritten {
    pub mount: String,
    pub role: JwtRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct JwtRoleDeleted {
    pub mount: String,
    pub name: String,
}

/// `auth/<kubernetes mount>/config`, without the reviewer JWT (sealed beside it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KubernetesConfig {
    pub kubernetes_host: String,
    pub kubernetes_ca_cert: String,
    pub pem_keys: Vec<String>,
    pub issuer: String,
    pub disable_iss_validation: bool,
    pub disable_local_ca_jwt: bool,
}

/// `token_reviewer_jwt: None` means none is set: logins review themselves with their own
/// JWT, as Vault does.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KubernetesConfigWritten {
    pub mount: String,
    pub config: KubernetesConfig,
    pub token_reviewer_jwt: Option<Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KubernetesRole {
    pub name: String,
    pub bound_service_account_names: Vec<String>,
    pub bound_service_account_namespaces: Vec<String>,
    pub audience: String,
    /// "serviceaccount_uid" (default) or "serviceaccount_name".
    pub alias_name_source: String,
    pub token: TokenSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KubernetesRoleWritten {
    pub mount: String,
    pub role: KubernetesRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KubernetesRoleDeleted {
    pub mount: String,
    pub name: String,
}
