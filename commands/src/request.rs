//! What the API hands the sequencer: who asks, what the access event records, and the
//! write to make (if any).

use std::collections::BTreeMap;

use migrations::{
    Access, AppRole, DbConnectionConfig, DbRole, DbStaticRole, Entity, EntityAlias, Group, GroupAlias, JwtConfig,
    JwtRole, KubernetesConfig, KubernetesRole, KvMetadata, LeaseEnd, LeaseSecret, MountClass, MountConfig, SecretIdEnd,
    TokenRole, TokenSettings,
};
use zeroize::Zeroizing;

/// The token a request was made with (never the token id itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub accessor: String,
    pub id_hash: [u8; 32],
}

/// One API request on its way to the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub caller: Option<Caller>,
    pub actor: ledger::Actor,
    pub request_id: [u8; 16],
    /// The access event as the API saw the request (outcome Allowed or Denied); the
    /// sequencer settles the final outcome.
    pub access: Option<Access>,
    /// The write, if the request makes one.
    pub command: Option<Command>,
}

/// Parameters of a new token, already validated for form by the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenParams {
    /// `None`: inherit the parent's policies.
    pub policies: Option<Vec<String>>,
    pub no_default_policy: bool,
    pub meta: BTreeMap<String, String>,
    pub display_name: Option<String>,
    pub num_uses: u64,
    pub ttl: Option<u64>,
    pub explicit_max_ttl: Option<u64>,
    pub period: Option<u64>,
    pub renewable: Option<bool>,
    /// No parent (create-orphan, `no_parent`, or a role with `orphan`).
    pub orphan: bool,
    /// A caller-chosen token id (root only).
    pub id: Option<String>,
    pub role: Option<String>,
    pub entity_id: String,
    /// The path the token was created through ("auth/token/create", …).
    pub path: String,
    /// CIDR blocks the token may be used from; empty: anywhere.
    pub bound_cidrs: Vec<String>,
    /// Made by a login: no parent bounds its policies, and the display name is used as
    /// given (no `token-` prefix).
    pub login: bool,
}

/// Every write cairn knows how to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    EnableMount {
        path: String,
        class: MountClass,
        kind: String,
        description: String,
        options: BTreeMap<String, String>,
        config: MountConfig,
        local: bool,
        seal_wrap: bool,
    },
    TuneMount {
        prefix: String,
        description: Option<String>,
        config: MountConfig,
        options: BTreeMap<String, String>,
    },
    DisableMount {
        prefix: String,
    },
    EnableAudit {
        path: String,
        kind: String,
        description: String,
        options: BTreeMap<String, String>,
        local: bool,
        /// Declared in the server's configuration (reconciled at unseal), not `sys/audit`.
        from_config: bool,
    },
    DisableAudit {
        path: String,
        /// The configuration no longer declares it; only then may a declared device go.
        from_config: bool,
    },
    WritePolicy {
        name: String,
        text: String,
        cas: Option<u64>,
    },
    DeletePolicy {
        name: String,
    },
    CreateToken {
        params: TokenParams,
        max_ttl: u64,
        default_ttl: u64,
    },
    RenewToken {
        accessor: String,
        increment: Option<u64>,
        max_ttl: u64,
    },
    RevokeToken {
        accessor: String,
        orphan_children: bool,
    },
    ExpireTokens,
    /// Records the requests refused before authentication in one interval (the server's
    /// own command, at the end of each interval).
    CountRefusals(migrations::RefusalsCounted),
    WriteTokenRole(TokenRole),
    DeleteTokenRole {
        name: String,
    },
    KvPut {
        mount: String,
        path: String,
        data: serde_json::Map<String, serde_json::Value>,
        cas: Option<u64>,
    },
    KvPatch {
        mount: String,
        path: String,
        patch: serde_json::Map<String, serde_json::Value>,
        cas: Option<u64>,
    },
    KvDeleteLatest {
        mount: String,
        path: String,
    },
    KvDeleteVersions {
        mount: String,
        path: String,
        versions: Vec<u64>,
    },
    KvUndelete {
        mount: String,
        path: String,
        versions: Vec<u64>,
    },
    KvDestroy {
        mount: String,
        path: String,
        versions: Vec<u64>,
    },
    KvMetadataPut {
        mount: String,
        path: String,
        update: KvMetadataUpdate,
    },
    KvMetadataDelete {
        mount: String,
        path: String,
    },
    KvConfigPut {
        mount: String,
        max_versions: Option<u64>,
        cas_required: Option<bool>,
        delete_version_after: Option<u64>,
    },
    KvV1Put {
        mount: String,
        path: String,
        data: serde_json::Map<String, serde_json::Value>,
    },
    KvV1Delete {
        mount: String,
        path: String,
    },
    RotateKeyring {
        wrapped_key: Vec<u8>,
    },
    /// A lease for a credential about to be created at `path` of `mount` (uuid).
    IssueLease {
        path: String,
        mount: String,
        ttl: u64,
        max_ttl: u64,
        secret: LeaseSecret,
    },
    RenewLease {
        lease_id: String,
        increment: Option<u64>,
        default_ttl: u64,
    },
    RecordLeasesRevoked {
        lease_ids: Vec<String>,
        reason: LeaseEnd,
    },
    /// Failed revocation attempts, `(lease id, error)`: each lease backs off and is
    /// revoked by the scheduler from then on, whatever its TTL.
    RecordRevocationFailures {
        failures: Vec<(String, String)>,
    },
    /// A write of the `database` engine.
    Database(DbCommand),
    RecordUnsealed {
        dev: bool,
    },
    RecordSealed,
    /// A write of an auth method.
    Auth(AuthCommand),
    /// A login: checks what only the ledger can (an AppRole secret id's uses), finds or
    /// makes the caller's entity and alias, and issues an orphan token.
    Login(Box<Login>),
    Identity(IdentityCommand),
    /// Wraps a response in the cubbyhole of a new single-use token.
    Wrap {
        response: Secret,
        ttl: u64,
        creation_path: String,
        /// Accessor of the token (or secret id) inside the response, if any.
        wrapped_accessor: String,
    },
    /// A wrapping token's response was read: the token ends, its cubbyhole is erased.
    Unwrap {
        accessor: String,
    },
    /// Moves a wrapped response to a new wrapping token (same TTL); the old one ends.
    Rewrap {
        accessor: String,
    },
}

/// Writes of the auth methods; `mount` is the auth mount's uuid.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthCommand {
    WriteAppRole {
        mount: String,
        role: AppRole,
    },
    DeleteAppRole {
        mount: String,
        name: String,
    },
    /// A new secret id: `custom` is a caller-chosen value, else one is generated.
    IssueSecretId {
        mount: String,
        role: String,
        custom: Option<Secret>,
        metadata: BTreeMap<String, String>,
        cidr_list: Vec<String>,
        token_bound_cidrs: Vec<String>,
        num_uses: Option<u64>,
        ttl: Option<u64>,
    },
    DestroySecretIds {
        mount: String,
        role: String,
        accessors: Vec<String>,
        reason: SecretIdEnd,
    },
    /// Ends every secret id whose TTL ran out.
    ExpireSecretIds,
    /// `password_hash`: an argon2id PHC string (the API hashes, off the sequencer).
    WriteUser {
        mount: String,
        name: String,
        password_hash: Option<Secret>,
        token: TokenSettings,
    },
    DeleteUser {
        mount: String,
        name: String,
    },
    WriteJwtConfig {
        mount: String,
        config: JwtConfig,
    },
    WriteJwtRole {
        mount: String,
        role: JwtRole,
    },
    DeleteJwtRole {
        mount: String,
        name: String,
    },
    /// `reviewer_jwt: None` clears it.
    WriteK8sConfig {
        mount: String,
        config: KubernetesConfig,
        reviewer_jwt: Option<Secret>,
    },
    WriteK8sRole {
        mount: String,
        role: KubernetesRole,
    },
    DeleteK8sRole {
        mount: String,
        name: String,
    },
}

/// A login through the auth mount `mount` (uuid).
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub mount: String,
    pub proof: LoginProof,
    /// The client's address, for CIDR bindings.
    pub remote_addr: String,
    /// The mount's default and max TTL (its tuning, else the server's).
    pub default_ttl: u64,
    pub max_ttl: u64,
    /// The request path ("auth/approle/login").
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoginProof {
    /// Checked by the rules: the role and secret id (its hash) and their CIDR bindings.
    AppRole { role_id: String, secret_id_hash: Option<[u8; 32]> },
    /// Checked by the API (a password hash, a JWT signature, a TokenReview).
    Verified(VerifiedLogin),
}

/// What an auth method established about a caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifiedLogin {
    /// The name the method knows the caller by (the entity alias).
    pub alias_name: String,
    pub alias_metadata: BTreeMap<String, String>,
    pub token: TokenSettings,
    /// Token metadata.
    pub meta: BTreeMap<String, String>,
    /// The token's display name, without the mount prefix ("alice").
    pub display_name: String,
    /// Group names the method reported (a JWT groups claim); None: it reports none.
    pub groups: Option<Vec<String>>,
}

/// Writes of `identity/`. An empty `id` creates.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityCommand {
    WriteEntity(Entity),
    DeleteEntity { id: String },
    WriteAlias(EntityAlias),
    DeleteAlias { id: String },
    WriteGroup(Group),
    DeleteGroup { id: String },
    WriteGroupAlias(GroupAlias),
    DeleteGroupAlias { id: String },
}

/// A password on its way to be sealed: never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Writes of the `database` engine; `mount` is the mount's uuid.
#[derive(Debug, Clone, PartialEq)]
pub enum DbCommand {
    /// `password: None` keeps the connection's current password.
    WriteConnection {
        mount: String,
        name: String,
        config: DbConnectionConfig,
        password: Option<Secret>,
    },
    DeleteConnection {
        mount: String,
        name: String,
    },
    /// Records a new root password before it is set in the database.
    StageRootPassword {
        mount: String,
        name: String,
        password: Secret,
    },
    /// The database took the staged root password.
    ConfirmRootPassword {
        mount: String,
        name: String,
    },
    WriteRole {
        mount: String,
        name: String,
        role: DbRole,
    },
    DeleteRole {
        mount: String,
        name: String,
    },
    WriteStaticRole {
        mount: String,
        name: String,
        role: DbStaticRole,
    },
    DeleteStaticRole {
        mount: String,
        name: String,
    },
    /// Records a static role's next password before it is set in the database.
    StageStaticPassword {
        mount: String,
        name: String,
        password: Secret,
    },
    ConfirmStaticPassword {
        mount: String,
        name: String,
    },
    RecordStaticRotationFailure {
        mount: String,
        name: String,
        error: String,
    },
}

impl DbCommand {
    pub fn mount(&self) -> &str {
        use DbCommand::*;
        match self {
            WriteConnection { mount, .. }
            | DeleteConnection { mount, .. }
            | StageRootPassword { mount, .. }
            | ConfirmRootPassword { mount, .. }
            | WriteRole { mount, .. }
            | DeleteRole { mount, .. }
            | WriteStaticRole { mount, .. }
            | DeleteStaticRole { mount, .. }
            | StageStaticPassword { mount, .. }
            | ConfirmStaticPassword { mount, .. }
            | RecordStaticRotationFailure { mount, .. } => mount,
        }
    }
}

/// Which metadata fields a write sets; `None` keeps the current value. With `patch`,
/// custom metadata merges (a `None` value deletes the key) instead of replacing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvMetadataUpdate {
    pub max_versions: Option<u64>,
    pub cas_required: Option<bool>,
    pub delete_version_after: Option<u64>,
    pub custom_metadata: Option<BTreeMap<String, Option<String>>>,
    pub patch: bool,
}

impl KvMetadataUpdate {
    pub(crate) fn apply_to(&self, mut m: KvMetadata) -> KvMetadata {
        if let Some(v) = self.max_versions {
            m.max_versions = v;
        }
        if let Some(v) = self.cas_required {
            m.cas_required = v;
        }
        if let Some(v) = self.delete_version_after {
            m.delete_version_after = v;
        }
        if let Some(custom) = &self.custom_metadata {
            if !self.patch {
                m.custom_metadata.clear();
            }
            for (k, v) in custom {
                match v {
                    Some(v) => {
                        m.custom_metadata.insert(k.clone(), v.clone());
                    }
                    None => {
                        m.custom_metadata.remove(k);
                    }
                }
            }
        }
        m
    }
}

/// What a write answers, besides the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done,
    Warnings(Vec<String>),
    KvWritten {
        version: u64,
        created: u64,
        deletion: u64,
    },
    TokenIssued {
        id: String,
        accessor: String,
        warnings: Vec<String>,
    },
    TokenRenewed {
        accessor: String,
        warnings: Vec<String>,
    },
    /// A revocation; `found` is false when the token did not exist.
    Revoked {
        found: bool,
    },
    MountEnabled {
        uuid: String,
        accessor: String,
    },
    LeaseIssued {
        lease_id: String,
        ttl: u64,
    },
    LeaseRenewed {
        lease_id: String,
        ttl: u64,
        warnings: Vec<String>,
    },
    SecretIdIssued {
        secret_id: String,
        accessor: String,
        num_uses: u64,
        ttl: u64,
    },
    /// A login's token (its details are in the committed state).
    LoggedIn {
        id: String,
        accessor: String,
        warnings: Vec<String>,
    },
    IdentityWritten {
        id: String,
        name: String,
    },
    Wrapped {
        token: String,
        accessor: String,
        creation_time: u64,
    },
}
