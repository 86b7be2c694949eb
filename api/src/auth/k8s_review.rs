//! Kubernetes service-account login, as OpenBao's `kubernetes` auth method
//! (builtin/credential/kubernetes) does it.
//!
//! [`review`] checks a service-account JWT in OpenBao's order:
//! 1. the signature against `pem_keys` when there are any (without them nothing is checked
//!    locally: the TokenReview is the proof). A bad signature or an unreadable token →
//!    403 `permission denied`;
//! 2. the header's `alg` is RS256/384/512 or ES256/384/512 and the token is signed → 403
//!    `invalid algorithm (alg) header parameter: …`;
//! 3. `iss` equals `issuer` when one is set and `disable_iss_validation` is off (OpenBao
//!    checks no default issuer); `aud` holds the role's `audience` when it has one; `exp`,
//!    `nbf`, `iat` when present, with 60 s of skew → 403 with cap's message;
//! 4. the service-account claims, legacy (`kubernetes.io/serviceaccount/...`) or projected
//!    (`kubernetes.io: {namespace, serviceaccount: {name, uid}}`, preferred). An `aud` that
//!    is a string and not a list is refused with a 500, as OpenBao's decoder does;
//! 5. `bound_service_account_names`, then `bound_service_account_namespaces` (`*` or globs)
//!    → 403 `service account name not authorized` / `namespace not authorized`;
//! 6. the alias name (`alias_name_source`) → 500 when the claims lack it;
//! 7. a TokenReview at `kubernetes_host`, with the reviewer JWT as bearer (or the login JWT
//!    itself when none is set), trusting only `kubernetes_ca_cert` when given; it must say
//!    authenticated, for a service account whose namespace, name and uid are the claims'
//!    (and for the audiences asked, when any) → otherwise 403 `permission denied`.
//!
//! No message carries the login or reviewer JWT; what the API server answers is scrubbed
//! of both before it reaches an error.

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use migrations::{KubernetesConfig, KubernetesRole};
use serde_json::{Value, json};

use crate::auth::jwt_verify::jose::{self, Leeways, Registered};
use crate::auth::jwt_verify::{TimeError, http};

/// The service account a login JWT belongs to, as the claims and the TokenReview agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The legacy token's `kubernetes.io/serviceaccount/secret.name` ("" for projected
    /// tokens): Vault's `service_account_secret_name` metadata.
    pub secret_name: String,
    /// The entity alias name: the uid, or `<namespace>/<name>` with `alias_name_source`
    /// "serviceaccount_name".
    pub alias_name: String,
}

/// Why a Kubernetes login is refused. [`K8sError::status`] is OpenBao's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    /// The signature or the TokenReview refused the JWT. `reason` is for the server's log
    /// only: clients see `permission denied`, as from OpenBao.
    #[error("permission denied")]
    PermissionDenied { reason: String },
    #[error("invalid algorithm (alg) header parameter: {0}")]
    Algorithm(&'static str),
    /// A registered claim of the wrong type.
    #[error("{0}")]
    Claims(String),
    #[error("invalid issuer (iss) claim")]
    Issuer,
    #[error("invalid audience (aud) claim: audience claim does not match any expected audience")]
    Audience,
    #[error("{0}")]
    Time(TimeError),
    /// The service-account claims have the wrong types (OpenBao's decoder; a 500).
    #[error("decoding failed due to the following error(s):\n\n{0}")]
    Decode(String),
    #[error("service account name not authorized")]
    NameNotAuthorized,
    #[error("namespace not authorized")]
    NamespaceNotAuthorized,
    #[error("could not parse UID from claims")]
    MissingUid,
    #[error("service account namespace and name must be set")]
    MissingNameOrNamespace,
    #[error("unknown alias_name_source {0:?}")]
    UnknownAliasNameSource(String),
}

impl K8sError {
    /// The HTTP status OpenBao answers with.
    pub fn status(&self) -> u16 {
        match self {
            K8sError::Decode(_)
            | K8sError::MissingUid
            | K8sError::MissingNameOrNamespace
            | K8sError::UnknownAliasNameSource(_) => 500,
            _ => 403,
        }
    }
}

/// The algorithms OpenBao accepts for service-account tokens.
const SUPPORTED_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];

/// Checks a service-account `jwt` for a login to `role`, then asks the API server.
/// `reviewer_jwt` is the mount's `token_reviewer_jwt` (`None`: the login JWT reviews itself).
pub async fn review(
    config: &KubernetesConfig,
    reviewer_jwt: Option<&str>,
    jwt: &str,
    role: &KubernetesRole,
) -> Result<ServiceAccount, K8sError> {
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let claims = check_jwt(config, jwt, role, now)?;
    let account = service_account(&claims)?;
    authorize(role, &account)?;
    let alias_name = alias_name(role, &account)?;
    let reviewer = reviewer_jwt.filter(|r| !r.is_empty()).unwrap_or(jwt);
    let secrets = [jwt, reviewer];
    let wanted = if role.audience.is_empty() { account.aud.clone() } else { vec![role.audience.clone()] };
    let found = token_review(config, reviewer, jwt, &wanted)
        .await
        .map_err(|reason| K8sError::PermissionDenied { reason: scrub(&reason, &secrets) })?;
    let uid = account.uid().unwrap_or_default();
    let mismatch = if found.name != account.name() {
        Some("JWT names did not match")
    } else if uid.is_empty() || found.uid != uid {
        Some("JWT UIDs did not match")
    } else if found.namespace != account.namespace() {
        Some("JWT namepaces did not match")
    } else {
        None
    };
    if let Some(reason) = mismatch {
        return Err(K8sError::PermissionDenied { reason: reason.to_owned() });
    }
    Ok(ServiceAccount {
        name: account.name().to_owned(),
        namespace: account.namespace().to_owned(),
        uid: uid.to_owned(),
        secret_name: account.secret_name.clone(),
        alias_name,
    })
}

/// Steps 1 to 3: the claims of `jwt` once its signature, algorithm, issuer, audience and
/// times pass.
fn check_jwt(config: &KubernetesConfig, jwt: &str, role: &KubernetesRole, now: i64) -> Result<Value, K8sError> {
    let denied =
        |reason: String| K8sError::PermissionDenied { reason: format!("error verifying token signature: {reason}") };
    let jws = jose::parse(jwt).map_err(|e| denied(e.to_string()))?;
    if !config.pem_keys.is_empty() {
        let keys: Vec<_> = config.pem_keys.iter().filter_map(|pem| jose::public_key_from_pem(pem).ok()).collect();
        if !jose::any_verifies(&keys, &jws) {
            return Err(denied("no known key successfully validated the token signature".to_owned()));
        }
    }
    if jws.unsigned {
        return Err(K8sError::Algorithm("token must be signed"));
    }
    if !SUPPORTED_ALGS.contains(&jws.alg.as_str()) {
        return Err(K8sError::Algorithm("token signed with unexpected algorithm"));
    }
    let registered = Registered::from_claims(&jws.claims).map_err(K8sError::Claims)?;
    if !config.disable_iss_validation && !config.issuer.is_empty() && registered.iss != config.issuer {
        return Err(K8sError::Issuer);
    }
    if !role.audience.is_empty() && !registered.aud.contains(&role.audience) {
        return Err(K8sError::Audience);
    }
    jose::check_times(&registered, Leeways::default(), now, true).map_err(K8sError::Time)?;
    Ok(jws.claims)
}

/// The service-account claims of a token, legacy and projected.
#[derive(Debug, Default)]
struct Claims {
    name: String,
    uid: String,
    secret_name: String,
    namespace: String,
    aud: Vec<String>,
    projected: Option<Projected>,
}

#[derive(Debug, Default)]
struct Projected {
    namespace: String,
    service_account: Option<(String, String)>,
}

impl Claims {
    /// The projected token's values win when the token has them.
    fn name(&self) -> &str {
        match &self.projected {
            Some(Projected { service_account: Some((name, _)), .. }) => name,
            _ => &self.name,
        }
    }

    fn namespace(&self) -> &str {
        match &self.projected {
            Some(p) => &p.namespace,
            None => &self.namespace,
        }
    }

    fn uid(&self) -> Result<&str, K8sError> {
        let uid = match &self.projected {
            Some(Projected { service_account: Some((_, uid)), .. }) => uid,
            _ => &self.uid,
        };
        if uid.is_empty() { Err(K8sError::MissingUid) } else { Ok(uid) }
    }
}

/// Go's name for the type of a JSON value, as OpenBao's decoder reports it.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A string member of `object` at `key`; `path` names it in errors.
fn string_member(object: &Value, key: &str, path: &str) -> Result<String, K8sError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(K8sError::Decode(format!(
            "'{path}' expected type 'string', got unconvertible type '{}'",
            go_type(other)
        ))),
    }
}

/// Step 4: the service-account claims, with the types OpenBao's decoder insists on.
fn service_account(claims: &Value) -> Result<Claims, K8sError> {
    const PREFIX: &str = "kubernetes.io/serviceaccount/";
    let legacy = |suffix: &str| {
        let key = format!("{PREFIX}{suffix}");
        string_member(claims, &key, &key)
    };
    let aud = match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(K8sError::Decode(format!(
                    "'aud[{i}]' expected type 'string', got unconvertible type '{}'",
                    go_type(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(K8sError::Decode(format!(
                "'aud' source data must be an array or slice, got {}",
                go_type(other)
            )));
        }
    };
    let projected = match claims.get("kubernetes.io") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => {
            let service_account = match p.get("serviceaccount") {
                None | Some(Value::Null) => None,
                Some(sa @ Value::Object(_)) => Some((
                    string_member(sa, "name", "kubernetes.io.serviceaccount.name")?,
                    string_member(sa, "uid", "kubernetes.io.serviceaccount.uid")?,
                )),
                Some(other) => {
                    return Err(K8sError::Decode(format!(
                        "'kubernetes.io.serviceaccount' expected a map, got '{}'",
                        go_type(other)
                    )));
                }
            };
            Some(Projected { namespace: string_member(p, "namespace", "kubernetes.io.namespace")?, service_account })
        }
        Some(other) => {
            return Err(K8sError::Decode(format!("'kubernetes.io' expected a map, got '{}'", go_type(other))));
        }
    };
    Ok(Claims {
        name: legacy("service-account.name")?,
        uid: legacy("service-account.uid")?,
        secret_name: legacy("secret.name")?,
        namespace: legacy("namespace")?,
        aud,
        projected,
    })
}

/// Step 5: the role's name and namespace bindings (OpenBao checks the name first).
fn authorize(role: &KubernetesRole, account: &Claims) -> Result<(), K8sError> {
    if !projections::auth::k8s_name_bound(role, account.name()) {
        return Err(K8sError::NameNotAuthorized);
    }
    if !projections::auth::k8s_namespace_bound(role, account.namespace()) {
        return Err(K8sError::NamespaceNotAuthorized);
    }
    Ok(())
}

/// Step 6: the alias name.
fn alias_name(role: &KubernetesRole, account: &Claims) -> Result<String, K8sError> {
    match role.alias_name_source.as_str() {
        "" | "serviceaccount_uid" => account.uid().map(str::to_owned),
        "serviceaccount_name" => {
            let (namespace, name) = (account.namespace(), account.name());
            if namespace.is_empty() || name.is_empty() {
                return Err(K8sError::MissingNameOrNamespace);
            }
            Ok(format!("{namespace}/{name}"))
        }
        other => Err(K8sError::UnknownAliasNameSource(other.to_owned())),
    }
}

/// Who the API server says a token belongs to.
#[derive(Debug)]
struct Reviewed {
    namespace: String,
    name: String,
    uid: String,
}

/// Step 7: a TokenReview of `jwt`, authenticated with `bearer`. `Err` carries the reason
/// (which may quote the server, so callers scrub it).
async fn token_review(
    config: &KubernetesConfig,
    bearer: &str,
    jwt: &str,
    audiences: &[String],
) -> Result<Reviewed, String> {
    let host = config.kubernetes_host.strip_suffix('/').unwrap_or(&config.kubernetes_host);
    let url = format!("{host}/apis/authentication.k8s.io/v1/tokenreviews");
    let mut spec = json!({ "token": jwt });
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let request = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec });
    let client = http::client(&config.kubernetes_ca_cert, false)?;
    let response = client
        .post(&url)
        .bearer_auth(bearer)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&request)
        .send()
        .await
        .map_err(|e| http::describe(&e))?;
    let status = response.status();
    let body = http::body(response).await?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err("lookup failed: service account unauthorized; this could mean it has been deleted or recreated with a new token".to_owned());
    }
    if !(200..=206).contains(&status.as_u16()) {
        return Err(format!("the TokenReview answered {status}"));
    }
    let answer: Value =
        serde_json::from_slice(&body).map_err(|e| format!("the TokenReview answer is not JSON: {e}"))?;
    if answer.get("kind").and_then(Value::as_str) == Some("Status") {
        let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
        return Err(format!("the API server answered a failure Status: {message}"));
    }
    let status = answer.get("status").cloned().unwrap_or(Value::Null);
    if let Some(error) = status.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Err(format!("lookup failed: {error}"));
    }
    if status.get("authenticated").and_then(Value::as_bool) != Some(true) {
        return Err("lookup failed: service account jwt not valid".to_owned());
    }
    if !audiences.is_empty() {
        let granted: Vec<&str> = status
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !audiences.iter().any(|a| granted.contains(&a.as_str())) {
            return Err(format!(
                "lookup failed: service account jwt valid for audience(s) {granted:?}, but wanted {audiences:?}"
            ));
        }
    }
    let user = status.get("user").cloned().unwrap_or(Value::Null);
    let username = user.get("username").and_then(Value::as_str).unwrap_or_default();
    let parts: Vec<&str> = username.split(':').collect();
    let [system, serviceaccount, namespace, name] = parts.as_slice() else {
        return Err("lookup failed: unexpected username format".to_owned());
    };
    if *system != "system" || *serviceaccount != "serviceaccount" {
        return Err("lookup failed: username returned is not a service account".to_owned());
    }
    let uid = user.get("uid").and_then(Value::as_str).unwrap_or_default();
    Ok(Reviewed { namespace: (*namespace).to_owned(), name: (*name).to_owned(), uid: uid.to_owned() })
}

/// `text` with every non-empty `secret` replaced.
fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |t, s| t.replace(s, "[redacted]"))
}
