//! The `kubernetes` auth method (`auth/<mount>/config`, `role/<name>`, `login`): pods log
//! in with their service-account token, which the cluster's TokenReview API vouches for
//! ([`super::k8s_review`]). The reviewer JWT is sealed in the ledger and never read back.

use std::collections::BTreeMap;

use commands::{AuthCommand, Command, Env, LoginProof, Secret, VerifiedLogin};
use migrations::{KubernetesConfig, KubernetesRole};
use projections::State;
use projections::auth::reviewer_jwt_context;
use projections::mount::Mount;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{Roles, jwt_verify, k8s_review, no_route, token_fields};
use crate::core::Unsealed;
use crate::engines::{bool_value, string_list};
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};

/// The paths of a Kubernetes mount (`crate::routes`).
pub static ROUTES: Table = Table {
    name: "kubernetes",
    routes: &[route(LOGIN), route("config"), route("role/?"), route("role/{name}")],
    unmatched: no_route,
};

/// The login path.
pub const LOGIN: &str = "login";

/// Where a pod finds its own service-account token and the cluster CA (used, as Vault
/// does, when the config names neither and `disable_local_ca_jwt` is false).
const LOCAL_SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    let methods = ctx.state.auth.mount(&mount.uuid);
    match rest {
        "config" if m == "GET" => {
            let c = methods.and_then(|a| a.k8s_config.clone()).ok_or_else(Reply::not_found)?;
            Ok(Handled::Read(Reply::data(json!({
                "disable_iss_validation": c.config.disable_iss_validation,
                "disable_local_ca_jwt": c.config.disable_local_ca_jwt,
                "issuer": c.config.issuer,
                "kubernetes_ca_cert": c.config.kubernetes_ca_cert,
                "kubernetes_host": c.config.kubernetes_host,
                "pem_keys": c.config.pem_keys,
                "token_reviewer_jwt_set": c.token_reviewer_jwt.is_some(),
            }))))
        }
        "config" if write => write_config(ctx, mount),
        _ => Roles { roles: methods.map(|a| &a.k8s_roles), read: role_data }
            .handle(
                ctx,
                rest,
                |name| Command::Auth(AuthCommand::DeleteK8sRole { mount: mount.uuid.clone(), name }),
                |name, old| write_role(ctx, mount, name, old),
            )
            .unwrap_or_else(|| Err(no_route(ctx.req.path.as_str()))),
    }
}

fn write_config(ctx: &Ctx<'_>, mount: &Mount) -> Result<Handled, Reply> {
    let host = ctx.req.get_str("kubernetes_host").unwrap_or("").trim().to_string();
    if host.is_empty() {
        return Err(Reply::error(400, "no host provided"));
    }
    let config = KubernetesConfig {
        kubernetes_host: host,
        kubernetes_ca_cert: ctx.req.get_str("kubernetes_ca_cert").unwrap_or("").to_string(),
        pem_keys: string_list(ctx.req.get("pem_keys")).unwrap_or_default(),
        issuer: ctx.req.get_str("issuer").unwrap_or("").to_string(),
        disable_iss_validation: bool_value(ctx.req.get("disable_iss_validation")).unwrap_or(true),
        disable_local_ca_jwt: bool_value(ctx.req.get("disable_local_ca_jwt")).unwrap_or(false),
    };
    if config.disable_local_ca_jwt && config.kubernetes_ca_cert.is_empty() {
        return Err(Reply::error(400, "kubernetes_ca_cert must be given when disable_local_ca_jwt is true"));
    }
    for key in &config.pem_keys {
        jwt_verify::check_public_key_pem(key).map_err(|e| Reply::error(400, e))?;
    }
    let reviewer_jwt = ctx.req.get_str("token_reviewer_jwt").filter(|j| !j.is_empty()).map(Secret::new);
    Ok(Handled::write(
        Command::Auth(AuthCommand::WriteK8sConfig { mount: mount.uuid.clone(), config, reviewer_jwt }),
        Reply::NoContent,
    ))
}

fn write_role(ctx: &Ctx<'_>, mount: &Mount, name: &str, old: Option<&KubernetesRole>) -> Result<Handled, Reply> {
    let old = old.cloned().unwrap_or_else(|| KubernetesRole {
        name: name.into(),
        alias_name_source: "serviceaccount_uid".into(),
        ..KubernetesRole::default()
    });
    let role = KubernetesRole {
        name: name.into(),
        bound_service_account_names: string_list(ctx.req.get("bound_service_account_names"))
            .unwrap_or(old.bound_service_account_names.clone()),
        bound_service_account_namespaces: string_list(ctx.req.get("bound_service_account_namespaces"))
            .unwrap_or(old.bound_service_account_namespaces.clone()),
        audience: ctx.req.get_str("audience").map(str::to_string).unwrap_or(old.audience.clone()),
        alias_name_source: ctx
            .req
            .get_str("alias_name_source")
            .map(str::to_string)
            .unwrap_or(old.alias_name_source.clone()),
        token: token_fields::parse(ctx.req, old.token.clone())?,
    };
    if role.bound_service_account_names.is_empty() {
        return Err(Reply::error(400, "\"bound_service_account_names\" can not be empty"));
    }
    if role.bound_service_account_namespaces.is_empty() {
        return Err(Reply::error(400, "\"bound_service_account_namespaces\" can not be empty"));
    }
    if !matches!(role.alias_name_source.as_str(), "serviceaccount_uid" | "serviceaccount_name") {
        return Err(Reply::error(400, format!("invalid alias_name_source: {}", role.alias_name_source)));
    }
    Ok(Handled::write(Command::Auth(AuthCommand::WriteK8sRole { mount: mount.uuid.clone(), role }), Reply::NoContent))
}

fn role_data(r: &KubernetesRole) -> Value {
    let mut d = Map::new();
    d.insert("alias_name_source".into(), json!(r.alias_name_source));
    d.insert("audience".into(), json!(r.audience));
    d.insert("bound_service_account_names".into(), json!(r.bound_service_account_names));
    d.insert("bound_service_account_namespace_selector".into(), json!(""));
    d.insert("bound_service_account_namespaces".into(), json!(r.bound_service_account_namespaces));
    token_fields::render(&r.token, &mut d);
    Value::Object(d)
}

/// Checks a Kubernetes login (`{"role": …, "jwt": …}`) with a TokenReview.
pub async fn proof(unsealed: &Unsealed, req: &VaultRequest, state: &State, mount: &Mount) -> Result<LoginProof, Reply> {
    let methods = state.auth.mount(&mount.uuid);
    let name = req.get_str("role").unwrap_or("");
    if name.is_empty() {
        return Err(Reply::error(400, "missing role"));
    }
    let role = methods
        .and_then(|a| a.k8s_roles.get(name))
        .cloned()
        .ok_or_else(|| Reply::error(400, format!("invalid role name \"{name}\"")))?;
    let stored = methods
        .and_then(|a| a.k8s_config.clone())
        .ok_or_else(|| Reply::error(500, "could not load backend configuration"))?;
    let jwt = req.get_str("jwt").unwrap_or("");
    if jwt.is_empty() {
        return Err(Reply::error(400, "missing jwt"));
    }
    let mut config = stored.config.clone();
    let mut reviewer: Option<Zeroizing<String>> = match &stored.token_reviewer_jwt {
        Some(v) => {
            let plain = unsealed
                .env
                .open(&v.sealed, &v.slot, &reviewer_jwt_context(&mount.uuid))
                .map_err(|_| Reply::error(500, "cannot open the token reviewer JWT"))?;
            Some(Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()))
        }
        None => None,
    };
    if !config.disable_local_ca_jwt {
        // In a pod: the pod's own CA and token stand in for missing ones, as in Vault.
        if config.kubernetes_ca_cert.is_empty()
            && let Ok(ca) = std::fs::read_to_string(format!("{LOCAL_SA_DIR}/ca.crt"))
        {
            config.kubernetes_ca_cert = ca;
        }
        if reviewer.is_none()
            && let Ok(t) = std::fs::read_to_string(format!("{LOCAL_SA_DIR}/token"))
        {
            reviewer = Some(Zeroizing::new(t.trim().to_string()));
        }
    }
    let sa = k8s_review::review(&config, reviewer.as_deref().map(String::as_str), jwt, &role).await.map_err(|e| {
        if let k8s_review::K8sError::PermissionDenied { reason } = &e {
            tracing::info!(mount = %mount.path, role = %name, %reason, "kubernetes login refused");
        }
        Reply::error(e.status(), e.to_string())
    })?;
    let alias_metadata = BTreeMap::from([
        ("service_account_name".to_string(), sa.name.clone()),
        ("service_account_namespace".to_string(), sa.namespace.clone()),
        ("service_account_secret_name".to_string(), sa.secret_name.clone()),
        ("service_account_uid".to_string(), sa.uid.clone()),
    ]);
    let mut meta = alias_metadata.clone();
    meta.insert("role".into(), name.to_string());
    Ok(LoginProof::Verified(VerifiedLogin {
        alias_name: sa.alias_name.clone(),
        alias_metadata,
        token: role.token.clone(),
        meta,
        display_name: format!("{}-{}", sa.namespace, sa.name),
        groups: None,
    }))
}
