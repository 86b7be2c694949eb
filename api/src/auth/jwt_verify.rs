//! JWT login validation: Vault's `jwt` auth method for roles of `role_type` "jwt", as
//! OpenBao 2.x (builtin/credential/jwt with hashicorp/cap) does it.
//!
//! [`verify`] checks one login JWT against a mount's [`JwtConfig`] and a role, and returns
//! what the login needs ([`Verified`]). The signing keys come from a [`JwksCache`], one per
//! mount: static PEM keys, a JWKS URL, or OIDC discovery. Remote keys are fetched once,
//! then again when a token names an unknown `kid` or no cached key verifies it (at most
//! once every 5 s), so key rotation needs nothing from the operator.
//!
//! The checks, in OpenBao's order (each refusal is a 400 with the message shown), after
//! refusing roles of `role_type` "oidc" and empty tokens:
//! 1. the signature, with any key of the set (a remote set: the keys of the token's `kid`,
//!    or all keys when it names none) → `error validating token: error verifying token
//!    signature: …`. HMAC and `alg: none` tokens never verify;
//! 2. the header's `alg` is one of `jwt_supported_algs`, or when that is empty one of
//!    RS256/384/512, ES256/384/512, PS256/384/512 and EdDSA (OpenBao's list; ES512 is not
//!    supported here and never verifies) → `… invalid algorithm (alg) header parameter: …`;
//! 3. `iss` equals `bound_issuer` when set, `sub` equals `bound_subject` when set, and `aud`
//!    (a string or a list) holds one of `bound_audiences` when the role has any;
//! 4. times: one of `exp`, `nbf`, `iat` must be present, then cap's rules with the role's
//!    leeways (0: 60 s skew and 150 s for a missing `exp`/`nbf`; negative: none);
//! 5. a token with an `aud` is refused by a role without `bound_audiences`;
//! 6. `user_claim` (a JSON pointer only with `user_claim_json_pointer`) must be a string,
//!    `claim_mappings` values must be strings (missing ones are skipped), and `groups_claim`
//!    a string or a list of strings;
//! 7. `bound_claims`, each claim (a name or a `/json/pointer`) being a value or a list of
//!    which one element must match one accepted value, exactly or as a glob when
//!    `bound_claims_type` is "glob" → `error validating claims: …`.
//!
//! No message carries the token.

pub(crate) mod http;
pub(crate) mod jose;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use migrations::{JwtConfig, JwtRole};
use serde_json::Value;

pub use jose::TimeError;
use jose::{Jws, Leeways, PublicKey, Registered};

/// What a valid login JWT says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The value of the role's `user_claim`: the entity alias name and display name.
    pub alias_name: String,
    /// The values of `groups_claim` (empty strings dropped): the group alias names.
    pub groups: Vec<String>,
    /// The `claim_mappings` values under their metadata keys, plus `role`: the role name
    /// (Vault puts it in both the alias and the token metadata).
    pub metadata: BTreeMap<String, String>,
    /// Every claim of the token.
    pub claims: Value,
}

/// Why a login JWT is refused. Each message is OpenBao's for the same case; all are 400s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("role with oidc role_type is not allowed")]
    OidcRole,
    #[error("missing token")]
    MissingToken,
    /// The mount's key source cannot be used (no source, or discovery failed).
    #[error("error configuring token validator: {0}")]
    Config(String),
    #[error("error validating token: error verifying token signature: {0}")]
    Signature(String),
    #[error("error validating token: invalid algorithm (alg) header parameter: {0}")]
    Algorithm(String),
    /// A registered claim of the wrong type.
    #[error("error validating token: {0}")]
    Claims(String),
    #[error("error validating token: invalid issuer (iss) claim")]
    Issuer,
    #[error("error validating token: invalid subject (sub) claim")]
    Subject,
    #[error(
        "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"
    )]
    Audience,
    #[error("error validating token: {0}")]
    Time(TimeError),
    #[error("audience claim found in JWT but no audiences bound to the role")]
    AudienceNotBound,
    #[error("claim {0:?} not found in token")]
    UserClaimMissing(String),
    #[error("claim {0:?} could not be converted to string")]
    UserClaimNotString(String),
    #[error("error converting claim '{0}' to string")]
    MetadataNotString(String),
    #[error("failed to fetch groups: {0:?} claim not found in token")]
    GroupsMissing(String),
    #[error("{0:?} claim could not be converted to string list")]
    GroupsNotList(String),
    #[error("value {0} in groups claim could not be parsed as string")]
    GroupNotString(String),
    #[error("error validating claims: {0}")]
    BoundClaims(BoundClaimError),
}

/// Why `bound_claims` refuse a token (the part after `error validating claims: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundClaimError {
    #[error("claim {0:?} is missing")]
    Missing(String),
    #[error("received claim is not a string, bool, int or list")]
    NotScalarOrList(String),
    #[error("claim {0:?} does not match any associated bound claim values")]
    NoMatch(String),
}

/// The algorithms Vault checks the header against when `jwt_supported_algs` is empty.
pub const DEFAULT_SUPPORTED_ALGS: [&str; 10] =
    ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"];

/// Checks `jwt_supported_algs` as a config write does: OpenBao answers 400
/// `invalid jwt_supported_algs: <this message>`.
pub fn check_supported_algs(algs: &[String]) -> Result<(), String> {
    match algs.iter().find(|a| !DEFAULT_SUPPORTED_ALGS.contains(&a.as_str())) {
        Some(a) => Err(format!("unsupported signing algorithm {a:?}")),
        None => Ok(()),
    }
}

/// Checks one `jwt_validation_pubkeys` entry (or Kubernetes `pem_keys` entry) as a config
/// write does: OpenBao answers 400 `error parsing public key: <this message>`.
pub fn check_public_key_pem(pem: &str) -> Result<(), String> {
    jose::public_key_from_pem(pem).map(|_| ())
}

/// Where a mount's keys come from, in OpenBao's precedence (a config write allows only one).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Static(Vec<String>),
    Jwks { url: String, ca_pem: String },
    Discovery { url: String, ca_pem: String },
}

impl Source {
    fn of(config: &JwtConfig) -> Result<Source, JwtError> {
        if !config.jwt_validation_pubkeys.is_empty() {
            Ok(Source::Static(config.jwt_validation_pubkeys.clone()))
        } else if !config.jwks_url.is_empty() {
            Ok(Source::Jwks { url: config.jwks_url.clone(), ca_pem: config.jwks_ca_pem.clone() })
        } else if !config.oidc_discovery_url.is_empty() {
            Ok(Source::Discovery {
                url: config.oidc_discovery_url.clone(),
                ca_pem: config.oidc_discovery_ca_pem.clone(),
            })
        } else {
            Err(JwtError::Config("unsupported config type".to_owned()))
        }
    }
}

/// The public keys of a mount at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    remote: bool,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the keys came from a JWKS (then they can be fetched again).
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The `kid`s of the keys that have one.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Static keys are all tried; remote ones only those of the token's `kid`, or all of
    /// them when it names none (go-oidc's rule).
    fn verifies(&self, jws: &Jws<'_>) -> bool {
        match (&jws.kid, self.remote) {
            (Some(kid), true) => self.keys.iter().filter(|k| k.kid.as_ref() == Some(kid)).any(|k| k.verifies(jws)),
            _ => jose::any_verifies(&self.keys, jws),
        }
    }

    fn failure(&self) -> JwtError {
        JwtError::Signature(if self.remote {
            "failed to verify id token signature".to_owned()
        } else {
            "no known key successfully validated the token signature".to_owned()
        })
    }
}

/// The cached keys of one source.
#[derive(Debug)]
struct Snapshot {
    source: Option<Source>,
    keys: Arc<KeySet>,
    /// When the JWKS was last fetched, or the fetch last tried.
    fetched_at: Option<Instant>,
    /// The `jwks_uri` found by discovery.
    jwks_uri: Option<String>,
    client: Option<reqwest::Client>,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot { source: None, keys: Arc::new(KeySet::default()), fetched_at: None, jwks_uri: None, client: None }
    }

    /// Whether the cache answers for `source` without a fetch.
    fn serves(&self, source: &Source, kid: Option<&str>) -> bool {
        if self.source.as_ref() != Some(source) {
            return false;
        }
        match source {
            Source::Static(_) => true,
            _ => self.fetched_at.is_some() && kid.is_none_or(|k| self.keys.has_kid(k)),
        }
    }
}

/// Why the cache is asked to fetch.
enum Want<'a> {
    /// Keys for this `kid` (or any keys, for `None`).
    Kid(Option<&'a str>),
    /// No key of this set verified a token.
    Failed(&'a Arc<KeySet>),
}

/// The signing keys of one JWT mount, kept between logins. `Send + Sync`: share it (in an
/// `Arc`) among all logins of the mount. A changed config is noticed on the next call.
#[derive(Debug)]
pub struct JwksCache {
    min_refetch_interval: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held while fetching, so concurrent logins wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache::new()
    }
}

impl JwksCache {
    /// A JWKS is fetched again at most once every this long.
    pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

    pub fn new() -> JwksCache {
        JwksCache::with_refetch_interval(JwksCache::MIN_REFETCH_INTERVAL)
    }

    /// A cache that fetches again at most once every `interval` (tests use short ones).
    pub fn with_refetch_interval(interval: Duration) -> JwksCache {
        JwksCache {
            min_refetch_interval: interval,
            snapshot: RwLock::new(Arc::new(Snapshot::empty())),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        // The lock guards an `Arc` swap only, so a panic elsewhere cannot leave it half-written.
        self.snapshot.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn publish(&self, snapshot: Snapshot) -> Arc<KeySet> {
        let keys = snapshot.keys.clone();
        *self.snapshot.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
        keys
    }

    /// The keys of `config`'s source. A remote set is fetched when not cached yet, and
    /// again when `kid` is not among its keys (rate-limited: then the cached set returns).
    pub async fn keys(&self, config: &JwtConfig, kid: Option<&str>) -> Result<Arc<KeySet>, JwtError> {
        let source = Source::of(config)?;
        let snapshot = self.current();
        if snapshot.serves(&source, kid) {
            return Ok(snapshot.keys.clone());
        }
        self.fetch(&source, Want::Kid(kid)).await
    }

    /// The keys after `seen` failed to verify a token: fetched again unless that happened
    /// less than the refetch interval ago (or another login already did).
    async fn keys_after_failure(&self, config: &JwtConfig, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, JwtError> {
        let source = Source::of(config)?;
        self.fetch(&source, Want::Failed(seen)).await
    }

    async fn fetch(&self, source: &Source, want: Want<'_>) -> Result<Arc<KeySet>, JwtError> {
        let _one_fetch_at_a_time = self.fetching.lock().await;
        let old = self.current();
        let same_source = old.source.as_ref() == Some(source);
        if same_source {
            let settled = match want {
                Want::Kid(kid) => old.serves(source, kid),
                Want::Failed(seen) => !Arc::ptr_eq(&old.keys, seen) || matches!(source, Source::Static(_)),
            };
            let too_soon = old.fetched_at.is_some_and(|at| at.elapsed() < self.min_refetch_interval);
            if settled || too_soon {
                return Ok(old.keys.clone());
            }
        }
        let (url, ca_pem, discovery) = match source {
            Source::Static(pems) => {
                let keys = pems.iter().filter_map(|pem| jose::public_key_from_pem(pem).ok()).collect();
                return Ok(self.publish(Snapshot {
                    source: Some(source.clone()),
                    keys: Arc::new(KeySet { keys, remote: false }),
                    fetched_at: None,
                    jwks_uri: None,
                    client: None,
                }));
            }
            Source::Jwks { url, ca_pem } => (url, ca_pem, false),
            Source::Discovery { url, ca_pem } => (url, ca_pem, true),
        };
        let client = match (&old.client, same_source) {
            (Some(client), true) => client.clone(),
            _ => http::client(ca_pem, true).map_err(|e| {
                if discovery {
                    JwtError::Config(format!("keyset configuration error: {e}"))
                } else {
                    JwtError::Signature(format!("fetching keys {e}"))
                }
            })?,
        };
        let mut next = Snapshot {
            source: Some(source.clone()),
            keys: if same_source { old.keys.clone() } else { Arc::new(KeySet { keys: Vec::new(), remote: true }) },
            fetched_at: Some(Instant::now()),
            jwks_uri: if same_source { old.jwks_uri.clone() } else { None },
            client: Some(client.clone()),
        };
        let jwks_uri = match (discovery, &next.jwks_uri) {
            (false, _) => url.clone(),
            (true, Some(uri)) => uri.clone(),
            (true, None) => match discover(&client, url).await {
                Ok(uri) => {
                    next.jwks_uri = Some(uri.clone());
                    uri
                }
                Err(e) => {
                    self.publish(next);
                    return Err(JwtError::Config(format!("keyset configuration error: {e}")));
                }
            },
        };
        match fetch_jwks(&client, &jwks_uri).await {
            Ok(keys) => {
                next.keys = Arc::new(KeySet { keys, remote: true });
                Ok(self.publish(next))
            }
            Err(e) => {
                self.publish(next);
                Err(JwtError::Signature(format!("fetching keys {e}")))
            }
        }
    }
}

/// OIDC discovery: the `jwks_uri` of `issuer`'s configuration, whose `issuer` must be
/// `issuer` exactly (as cap and go-oidc require).
async fn discover(client: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.strip_suffix('/').unwrap_or(issuer));
    let response = client.get(&url).send().await.map_err(|e| http::describe(&e))?;
    let status = response.status();
    let body = http::body(response).await?;
    if !status.is_success() {
        return Err(format!("{status}: {}", short(&body)));
    }
    let doc: Value =
        serde_json::from_slice(&body).map_err(|e| format!("failed to decode OIDC discovery document: {e}"))?;
    let found = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
    if found != issuer {
        return Err(format!("issuer did not match the returned issuer, expected {issuer:?} got {found:?}"));
    }
    match doc.get("jwks_uri").and_then(Value::as_str) {
        Some(uri) if !uri.is_empty() => Ok(uri.to_owned()),
        _ => Err("the OIDC discovery document has no jwks_uri".to_owned()),
    }
}

/// The usable keys of the JWKS at `url` (keys that cannot verify here are skipped).
async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<PublicKey>, String> {
    let response = client.get(url).send().await.map_err(|e| http::describe(&e))?;
    let status = response.status();
    let body = http::body(response).await?;
    if !status.is_success() {
        return Err(format!("oidc: get keys failed: {status} {}", short(&body)));
    }
    let set: Value = serde_json::from_slice(&body).map_err(|e| format!("oidc: failed to decode keys: {e}"))?;
    let keys = set.get("keys").and_then(Value::as_array).ok_or("oidc: failed to decode keys: no \"keys\" list")?;
    Ok(keys.iter().filter_map(jose::public_key_from_jwk).collect())
}

/// The start of a response body, for an error message.
fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Validates `jwt` for a login to `role`, with the keys of `config` from `keys` (the
/// mount's cache), at `now_secs` (Unix seconds).
pub async fn verify(
    keys: &JwksCache,
    config: &JwtConfig,
    role: &JwtRole,
    jwt: &str,
    now_secs: i64,
) -> Result<Verified, JwtError> {
    if role.role_type == "oidc" {
        return Err(JwtError::OidcRole);
    }
    if jwt.is_empty() {
        return Err(JwtError::MissingToken);
    }
    let jws = jose::parse(jwt).map_err(|e| JwtError::Signature(e.to_string()))?;

    // 1. The signature.
    let mut set = keys.keys(config, jws.kid.as_deref()).await?;
    let mut valid = set.verifies(&jws);
    if !valid && set.is_remote() && jose::asymmetric_algorithm(&jws.alg).is_some() {
        set = keys.keys_after_failure(config, &set).await?;
        valid = set.verifies(&jws);
    }
    if !valid {
        return Err(set.failure());
    }

    // 2. The algorithm.
    let allowed = config.jwt_supported_algs.contains(&jws.alg)
        || (config.jwt_supported_algs.is_empty() && DEFAULT_SUPPORTED_ALGS.contains(&jws.alg.as_str()));
    if !allowed {
        return Err(JwtError::Algorithm("token signed with unexpected algorithm".to_owned()));
    }

    // 3. and 4. The registered claims.
    let registered = Registered::from_claims(&jws.claims).map_err(JwtError::Claims)?;
    if !config.bound_issuer.is_empty() && config.bound_issuer != registered.iss {
        return Err(JwtError::Issuer);
    }
    if !role.bound_subject.is_empty() && role.bound_subject != registered.sub {
        return Err(JwtError::Subject);
    }
    if !role.bound_audiences.is_empty() && !role.bound_audiences.iter().any(|a| registered.aud.contains(a)) {
        return Err(JwtError::Audience);
    }
    let leeways = Leeways {
        clock_skew: role.clock_skew_leeway,
        expiration: role.expiration_leeway,
        not_before: role.not_before_leeway,
    };
    jose::check_times(&registered, leeways, now_secs, false).map_err(JwtError::Time)?;

    // 5. An audience the role does not bind.
    if !registered.aud.is_empty() && role.bound_audiences.is_empty() {
        return Err(JwtError::AudienceNotBound);
    }

    // 6. The identity.
    let claims = jws.claims;
    let user = if role.user_claim_json_pointer {
        jose::claim(&claims, &role.user_claim)
    } else {
        claims.get(&role.user_claim).filter(|v| !v.is_null())
    };
    let alias_name = match user {
        None => return Err(JwtError::UserClaimMissing(role.user_claim.clone())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(JwtError::UserClaimNotString(role.user_claim.clone())),
    };
    let mut metadata = BTreeMap::new();
    for (source, target) in &role.claim_mappings {
        match jose::claim(&claims, source) {
            None => {}
            Some(Value::String(s)) => {
                metadata.insert(target.clone(), s.clone());
            }
            Some(_) => return Err(JwtError::MetadataNotString(source.clone())),
        }
    }
    metadata.insert("role".to_owned(), role.name.clone());
    let groups = if role.groups_claim.is_empty() { Vec::new() } else { groups(&claims, &role.groups_claim)? };

    // 7. The bound claims.
    check_bound_claims(&claims, role).map_err(JwtError::BoundClaims)?;

    Ok(Verified { alias_name, groups, metadata, claims })
}

/// The group names of `groups_claim`: a string or a list of strings.
fn groups(claims: &Value, groups_claim: &str) -> Result<Vec<String>, JwtError> {
    let raw = jose::claim(claims, groups_claim).ok_or_else(|| JwtError::GroupsMissing(groups_claim.to_owned()))?;
    let items: Vec<&Value> = match raw {
        Value::Array(items) => items.iter().collect(),
        Value::String(_) | Value::Bool(_) | Value::Number(_) => vec![raw],
        _ => return Err(JwtError::GroupsNotList(groups_claim.to_owned())),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => return Err(JwtError::GroupNotString(jose::render_number(n))),
            Value::Bool(b) => return Err(JwtError::GroupNotString(b.to_string())),
            _ => return Err(JwtError::GroupNotString("of a non-string type".to_owned())),
        }
    }
    Ok(out)
}

/// Every bound claim must be present, and one of its values (a list's elements) must
/// match one accepted value: exactly ("string"), or as a glob ("glob", strings only).
/// Numbers and booleans match their decimal and `true`/`false` forms in "string" mode.
fn check_bound_claims(claims: &Value, role: &JwtRole) -> Result<(), BoundClaimError> {
    let globs = role.bound_claims_type == "glob";
    for (name, accepted) in &role.bound_claims {
        let actual = jose::claim(claims, name).ok_or_else(|| BoundClaimError::Missing(name.clone()))?;
        let values: Vec<&Value> = match actual {
            Value::Array(items) => items.iter().collect(),
            Value::String(_) | Value::Bool(_) | Value::Number(_) => vec![actual],
            _ => return Err(BoundClaimError::NotScalarOrList(name.clone())),
        };
        let matches = |expected: &String, value: &&Value| match value {
            Value::String(s) if globs => jose::glob_match(expected, s),
            Value::String(s) => expected == s,
            Value::Number(n) if !globs => *expected == jose::render_number(n),
            Value::Bool(b) if !globs => *expected == b.to_string(),
            _ => false,
        };
        if !accepted.iter().any(|expected| values.iter().any(|value| matches(expected, value))) {
            return Err(BoundClaimError::NoMatch(name.clone()));
        }
    }
    Ok(())
}
