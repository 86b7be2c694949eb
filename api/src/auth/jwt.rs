//! The `jwt` auth method (`auth/<mount>/config`, `role/<name>`, `login`): CI pipelines and
//! other workloads log in with a JWT their platform signed. Verification is
//! [`super::jwt_verify`]; keys fetched from a JWKS or OIDC discovery are cached per mount.

use std::collections::BTreeMap;
use std::sync::Arc;

use commands::{AuthCommand, Command, LoginProof, VerifiedLogin};
use migrations::{JwtConfig, JwtRole};
use projections::State;
use projections::mount::Mount;
use serde_json::{Map, Value, json};

use super::jwt_verify::{self, JwksCache};
use super::{Roles, no_route, token_fields};
use crate::engines::{bool_value, string_list};
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Api, Ctx, Handled};
use crate::routes::{Table, route};

/// The paths of a JWT mount (`crate::routes`).
pub static ROUTES: Table = Table {
    name: "jwt",
    routes: &[route(LOGIN), route("config"), route("role/?"), route("role/{name}")],
    unmatched: no_route,
};

/// The login path.
pub const LOGIN: &str = "login";

pub fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    let methods = ctx.state.auth.mount(&mount.uuid);
    match rest {
        "config" if m == "GET" => {
            let c = methods.and_then(|a| a.jwt_config.clone()).map(|c| (*c).clone()).unwrap_or_default();
            Ok(Handled::Read(Reply::data(config_data(&c))))
        }
        "config" if write => write_config(ctx, mount),
        _ => Roles { roles: methods.map(|a| &a.jwt_roles), read: role_data }
            .handle(
                ctx,
                rest,
                |name| Command::Auth(AuthCommand::DeleteJwtRole { mount: mount.uuid.clone(), name }),
                |name, old| write_role(ctx, mount, name, old),
            )
            .unwrap_or_else(|| Err(no_route(ctx.req.path.as_str()))),
    }
}

fn text(ctx: &Ctx<'_>, key: &str, old: &str) -> String {
    ctx.req.get_str(key).map(str::to_string).unwrap_or_else(|| old.to_string())
}

fn write_config(ctx: &Ctx<'_>, mount: &Mount) -> Result<Handled, Reply> {
    let old =
        ctx.state.auth.mount(&mount.uuid).and_then(|a| a.jwt_config.clone()).map(|c| (*c).clone()).unwrap_or_default();
    let mut c = JwtConfig {
        oidc_discovery_url: text(ctx, "oidc_discovery_url", &old.oidc_discovery_url),
        oidc_discovery_ca_pem: text(ctx, "oidc_discovery_ca_pem", &old.oidc_discovery_ca_pem),
        jwks_url: text(ctx, "jwks_url", &old.jwks_url),
        jwks_ca_pem: text(ctx, "jwks_ca_pem", &old.jwks_ca_pem),
        jwt_validation_pubkeys: string_list(ctx.req.get("jwt_validation_pubkeys"))
            .unwrap_or(old.jwt_validation_pubkeys),
        jwt_supported_algs: string_list(ctx.req.get("jwt_supported_algs")).unwrap_or(old.jwt_supported_algs),
        bound_issuer: text(ctx, "bound_issuer", &old.bound_issuer),
        default_role: text(ctx, "default_role", &old.default_role),
    };
    // OpenBao keeps the issuer URL, not the document's.
    if let Some(base) = c.oidc_discovery_url.strip_suffix("/.well-known/openid-configuration") {
        c.oidc_discovery_url = base.to_string();
    }
    let sources = [!c.jwt_validation_pubkeys.is_empty(), !c.jwks_url.is_empty(), !c.oidc_discovery_url.is_empty()];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(Reply::error(
            400,
            "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set",
        ));
    }
    for key in &c.jwt_validation_pubkeys {
        jwt_verify::check_public_key_pem(key).map_err(|e| Reply::error(400, e))?;
    }
    jwt_verify::check_supported_algs(&c.jwt_supported_algs).map_err(|e| Reply::error(400, e))?;
    // New keys or a new source: forget what was fetched.
    if let Ok(mut caches) = ctx.api.jwks.lock() {
        caches.remove(&mount.uuid);
    }
    Ok(Handled::write(
        Command::Auth(AuthCommand::WriteJwtConfig { mount: mount.uuid.clone(), config: c }),
        Reply::NoContent,
    ))
}

fn config_data(c: &JwtConfig) -> Value {
    json!({
        "bound_issuer": c.bound_issuer,
        "default_role": c.default_role,
        "jwks_ca_pem": c.jwks_ca_pem,
        "jwks_url": c.jwks_url,
        "jwt_supported_algs": c.jwt_supported_algs,
        "jwt_validation_pubkeys": c.jwt_validation_pubkeys,
        "oidc_discovery_ca_pem": c.oidc_discovery_ca_pem,
        "oidc_discovery_url": c.oidc_discovery_url,
        "oidc_client_id": "",
        "namespace_in_state": true,
        "provider_config": {},
    })
}

fn leeway(ctx: &Ctx<'_>, key: &str, old: i64) -> Result<i64, Reply> {
    match ctx.req.get(key) {
        None | Some(Value::Null) => Ok(old),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| Reply::error(400, format!("invalid {key}"))),
        Some(Value::String(s)) if s.trim().starts_with('-') => {
            s.trim().parse::<i64>().map_err(|_| Reply::error(400, format!("invalid {key}")))
        }
        Some(v) => crate::duration::parse_duration_value(v)
            .ok()
            .and_then(|d| i64::try_from(d).ok())
            .ok_or_else(|| Reply::error(400, format!("invalid {key}"))),
    }
}

/// `bound_claims`: each claim's accepted values, a string or a list of strings.
fn bound_claims(ctx: &Ctx<'_>, old: BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, Vec<String>>, Reply> {
    match ctx.req.get("bound_claims") {
        None | Some(Value::Null) => Ok(old),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let values = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| match x {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(_) | Value::Bool(_) => Ok(x.to_string()),
                            _ => Err(Reply::error(400, format!("bound claim is not a string or list: {k}"))),
                        })
                        .collect::<Result<_, _>>()?,
                    Value::Number(_) | Value::Bool(_) => vec![v.to_string()],
                    _ => return Err(Reply::error(400, format!("bound claim is not a string or list: {k}"))),
                };
                Ok((k.clone(), values))
            })
            .collect(),
        Some(_) => Err(Reply::error(400, "bound_claims must be a map")),
    }
}

fn write_role(ctx: &Ctx<'_>, mount: &Mount, name: &str, old: Option<&JwtRole>) -> Result<Handled, Reply> {
    let old = old.cloned().unwrap_or_else(|| JwtRole {
        name: name.into(),
        role_type: "jwt".into(),
        bound_claims_type: "string".into(),
        ..JwtRole::default()
    });
    let role_type = text(ctx, "role_type", &old.role_type);
    if role_type == "oidc" {
        return Err(Reply::error(400, "the OIDC login flow is not supported by this server; use role_type \"jwt\""));
    }
    if role_type != "jwt" {
        return Err(Reply::error(400, format!("invalid 'role_type': {role_type}")));
    }
    let bound_claims_type = text(ctx, "bound_claims_type", &old.bound_claims_type);
    if !matches!(bound_claims_type.as_str(), "string" | "glob") {
        return Err(Reply::error(400, format!("invalid 'bound_claims_type': {bound_claims_type}")));
    }
    let claim_mappings = match ctx.req.get("claim_mappings") {
        None | Some(Value::Null) => old.claim_mappings.clone(),
        Some(Value::Object(m)) => {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
        }
        Some(_) => return Err(Reply::error(400, "claim_mappings must be a map")),
    };
    let role = JwtRole {
        name: name.into(),
        role_type,
        bound_audiences: string_list(ctx.req.get("bound_audiences")).unwrap_or(old.bound_audiences.clone()),
        user_claim: text(ctx, "user_claim", &old.user_claim),
        user_claim_json_pointer: bool_value(ctx.req.get("user_claim_json_pointer"))
            .unwrap_or(old.user_claim_json_pointer),
        bound_subject: text(ctx, "bound_subject", &old.bound_subject),
        bound_claims: bound_claims(ctx, old.bound_claims.clone())?,
        bound_claims_type,
        claim_mappings,
        groups_claim: text(ctx, "groups_claim", &old.groups_claim),
        clock_skew_leeway: leeway(ctx, "clock_skew_leeway", old.clock_skew_leeway)?,
        expiration_leeway: leeway(ctx, "expiration_leeway", old.expiration_leeway)?,
        not_before_leeway: leeway(ctx, "not_before_leeway", old.not_before_leeway)?,
        max_age: old.max_age,
        allowed_redirect_uris: string_list(ctx.req.get("allowed_redirect_uris"))
            .unwrap_or(old.allowed_redirect_uris.clone()),
        oidc_scopes: string_list(ctx.req.get("oidc_scopes")).unwrap_or(old.oidc_scopes.clone()),
        verbose_oidc_logging: bool_value(ctx.req.get("verbose_oidc_logging")).unwrap_or(old.verbose_oidc_logging),
        token: token_fields::parse(ctx.req, old.token.clone())?,
    };
    if role.user_claim.is_empty() {
        return Err(Reply::error(400, "a user claim must be defined on the role"));
    }
    Ok(Handled::write(Command::Auth(AuthCommand::WriteJwtRole { mount: mount.uuid.clone(), role }), Reply::NoContent))
}

fn role_data(r: &JwtRole) -> Value {
    let mut d = Map::new();
    let list_or_null = |l: &Vec<String>| if l.is_empty() { Value::Null } else { json!(l) };
    d.insert("allowed_redirect_uris".into(), list_or_null(&r.allowed_redirect_uris));
    d.insert("bound_audiences".into(), json!(r.bound_audiences));
    let claims: Map<String, Value> =
        r.bound_claims.iter().map(|(k, v)| (k.clone(), if v.len() == 1 { json!(v[0]) } else { json!(v) })).collect();
    d.insert("bound_claims".into(), if claims.is_empty() { Value::Null } else { Value::Object(claims) });
    d.insert("bound_claims_type".into(), json!(r.bound_claims_type));
    d.insert("bound_subject".into(), json!(r.bound_subject));
    d.insert("claim_mappings".into(), if r.claim_mappings.is_empty() { Value::Null } else { json!(r.claim_mappings) });
    d.insert("clock_skew_leeway".into(), json!(r.clock_skew_leeway));
    d.insert("expiration_leeway".into(), json!(r.expiration_leeway));
    d.insert("groups_claim".into(), json!(r.groups_claim));
    d.insert("max_age".into(), json!(r.max_age));
    d.insert("not_before_leeway".into(), json!(r.not_before_leeway));
    d.insert("oidc_scopes".into(), list_or_null(&r.oidc_scopes));
    d.insert("role_type".into(), json!(r.role_type));
    d.insert("user_claim".into(), json!(r.user_claim));
    d.insert("user_claim_json_pointer".into(), json!(r.user_claim_json_pointer));
    d.insert("verbose_oidc_logging".into(), json!(r.verbose_oidc_logging));
    token_fields::render(&r.token, &mut d);
    Value::Object(d)
}

/// Checks a JWT login (`{"role": …, "jwt": …}`).
pub async fn proof(api: &Api, req: &VaultRequest, state: &State, mount: &Mount) -> Result<LoginProof, Reply> {
    let methods = state.auth.mount(&mount.uuid);
    let config =
        methods.and_then(|a| a.jwt_config.clone()).ok_or_else(|| Reply::error(400, "could not load configuration"))?;
    let name = req.get_str("role").filter(|r| !r.is_empty()).unwrap_or(&config.default_role).to_string();
    if name.is_empty() {
        return Err(Reply::error(400, "missing role"));
    }
    let role = methods
        .and_then(|a| a.jwt_roles.get(&name))
        .cloned()
        .ok_or_else(|| Reply::error(400, format!("role \"{name}\" could not be found")))?;
    let jwt = req.get_str("jwt").unwrap_or("");
    let cache = api.jwks_cache(&mount.uuid);
    let now = i64::try_from(crate::core::now_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
    let verified =
        jwt_verify::verify(&cache, &config, &role, jwt, now).await.map_err(|e| Reply::error(400, e.to_string()))?;
    let groups = (!role.groups_claim.is_empty()).then(|| verified.groups.clone());
    Ok(LoginProof::Verified(VerifiedLogin {
        alias_name: verified.alias_name.clone(),
        alias_metadata: verified.metadata.clone(),
        token: role.token.clone(),
        meta: verified.metadata,
        display_name: verified.alias_name,
        groups,
    }))
}

impl Api {
    /// The JWKS cache of a `jwt` mount.
    pub fn jwks_cache(&self, mount: &str) -> Arc<JwksCache> {
        match self.jwks.lock() {
            Ok(mut caches) => caches.entry(mount.to_string()).or_insert_with(|| Arc::new(JwksCache::new())).clone(),
            Err(_) => Arc::new(JwksCache::new()),
        }
    }
}
