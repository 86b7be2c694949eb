//! The login pipeline: rate limit, the method's check, then one commit with the login
//! command (entity, alias, token) and its access event. A refused login records its
//! access event (Failed) and answers without saying which part was wrong.

use std::sync::Arc;

use commands::{Command, Env, Login, LoginProof, Reply as CmdReply};
use migrations::Outcome as AccessOutcome;
use projections::State;
use projections::mount::Mount;
use projections::token::Token;
use serde_json::{Value, json};

use crate::core::Unsealed;
use crate::http::reply::{Envelope, Reply};
use crate::http::request::VaultRequest;
use crate::http::{Api, record_anonymous, rejection_reply};

pub async fn login(
    api: &Api,
    unsealed: &Arc<Unsealed>,
    req: &VaultRequest,
    state: &Arc<State>,
    mount: &Arc<Mount>,
    rest: &str,
) -> Result<Reply, Reply> {
    if !api.login_limiter.allow(&req.remote_addr) {
        return Err(Reply::error(429, "rate limit quota exceeded"));
    }
    if !matches!(req.method.as_str(), "POST" | "PUT") {
        return Err(crate::sys::unsupported_operation());
    }
    let proof = match mount.kind.as_str() {
        "approle" => Ok(approle_proof(unsealed, req, mount)),
        "userpass" => super::userpass::proof(unsealed, req, state, mount, rest).await,
        "jwt" => super::jwt::proof(api, req, state, mount).await,
        "kubernetes" => super::kubernetes::proof(unsealed, req, state, mount).await,
        _ => Err(super::no_route(req.path.as_str())),
    };
    let proof = match proof {
        Ok(p) => p,
        Err(reply) => {
            record_anonymous(unsealed, req, state, AccessOutcome::Failed(reply.status()), None).await?;
            return Err(reply);
        }
    };
    let (default_ttl, max_ttl) = mount_ttls(api, mount);
    let command = Command::Login(Box::new(Login {
        mount: mount.uuid.clone(),
        proof,
        remote_addr: req.remote_addr.clone(),
        default_ttl,
        max_ttl,
        path: req.path.as_str().to_string(),
    }));
    let committed = record_anonymous(unsealed, req, state, AccessOutcome::Allowed, Some(command)).await?;
    match &committed.result {
        Ok(CmdReply::LoggedIn { id, accessor, warnings }) => match committed.state.tokens.by_accessor(accessor) {
            Some(t) => Ok(Reply::envelope(Envelope {
                status: 200,
                auth: Some(auth_block(&committed.state, t, id)),
                warnings: warnings.clone(),
                ..Envelope::default()
            })),
            None => Err(Reply::error(500, "token vanished after login")),
        },
        Ok(_) => Err(Reply::error(500, "unexpected reply to a login")),
        Err(r) => Err(rejection_reply(r.clone())),
    }
}

/// An AppRole login is checked by the rules: here only the secret id's keyed hash.
fn approle_proof(unsealed: &Unsealed, req: &VaultRequest, mount: &Mount) -> LoginProof {
    let role_id = req.get_str("role_id").unwrap_or("").to_string();
    let secret_id_hash = req
        .get_str("secret_id")
        .filter(|s| !s.is_empty())
        .map(|s| commands::secret_id_hash(unsealed.env.as_ref() as &dyn Env, &mount.uuid, s));
    LoginProof::AppRole { role_id, secret_id_hash }
}

/// (default, max) TTL of tokens from this mount: its tuning, else the server's.
pub fn mount_ttls(api: &Api, mount: &Mount) -> (u64, u64) {
    let s = api.core.settings;
    let pick = |v: u64, d: u64| if v == 0 { d } else { v };
    (pick(mount.config.default_lease_ttl, s.default_lease_ttl), pick(mount.config.max_lease_ttl, s.max_lease_ttl))
}

/// The max TTL a login's token renews up to: its role's or user's `token_max_ttl` within
/// its auth mount's max (None for tokens that no login made).
pub fn renewal_max_ttl(api: &Api, state: &State, t: &Token) -> Option<u64> {
    if t.path.starts_with("auth/token/") || !t.path.starts_with("auth/") {
        return None;
    }
    let (mount, _) = state.mounts.route(&t.path)?;
    let (_, mount_max) = mount_ttls(api, mount);
    let methods = state.auth.mount(&mount.uuid);
    let settings = match mount.kind.as_str() {
        "approle" => t.meta.get("role_name").and_then(|r| methods?.approles.get(r)).map(|r| r.token.clone()),
        "userpass" => t.meta.get("username").and_then(|u| methods?.users.get(u)).map(|u| u.token.clone()),
        "jwt" | "kubernetes" => t.meta.get("role").and_then(|r| {
            let m = methods?;
            m.jwt_roles.get(r).map(|r| r.token.clone()).or_else(|| m.k8s_roles.get(r).map(|r| r.token.clone()))
        }),
        _ => None,
    };
    let role_max = settings.map_or(0, |s| s.token_max_ttl);
    Some(if role_max > 0 && role_max < mount_max { role_max } else { mount_max })
}

/// The `auth` block of a login (and of token renewals): the token's own policies, those
/// its entity and groups add, and both together.
pub fn auth_block(state: &State, t: &Token, client_token: &str) -> Value {
    let identity = if t.entity_id.is_empty() { Vec::new() } else { state.identity.policies_of(&t.entity_id) };
    let mut all: Vec<String> = t.policies.iter().chain(identity.iter()).cloned().collect();
    all.sort();
    all.dedup();
    let ttl = if t.expire_time == 0 { 0 } else { t.last_ttl };
    let mut block = serde_json::Map::new();
    block.insert("client_token".into(), json!(client_token));
    block.insert("accessor".into(), json!(t.accessor));
    block.insert("policies".into(), json!(all));
    block.insert("token_policies".into(), json!(t.policies));
    if !identity.is_empty() {
        block.insert("identity_policies".into(), json!(identity));
    }
    block.insert("metadata".into(), if t.meta.is_empty() { Value::Null } else { json!(t.meta) });
    block.insert("lease_duration".into(), json!(ttl));
    block.insert("renewable".into(), json!(t.renewable));
    block.insert("entity_id".into(), json!(t.entity_id));
    block.insert("token_type".into(), json!("service"));
    block.insert("orphan".into(), json!(t.orphan()));
    block.insert("mfa_requirement".into(), Value::Null);
    block.insert("num_uses".into(), json!(t.num_uses));
    Value::Object(block)
}
