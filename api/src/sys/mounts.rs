//! `sys/mounts`, `sys/auth` and the `bao kv` preflight `sys/internal/ui/mounts/<path>`.

use std::collections::BTreeMap;

use axum::http::Method;
use commands::Command;
use migrations::{MountClass, MountConfig};
use projections::mount::Mount;
use serde_json::{Map, Value, json};

use crate::duration::parse_duration_value;
use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

const RUNNING_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.cairn");

/// A mount as `sys/mounts` lists it.
pub fn entry(m: &Mount) -> Value {
    let mut config = json!({
        "default_lease_ttl": m.config.default_lease_ttl,
        "force_no_cache": m.config.force_no_cache,
        "max_lease_ttl": m.config.max_lease_ttl,
    });
    if m.class == MountClass::Auth {
        config["token_type"] =
            json!(if m.config.token_type.is_empty() { "default-service" } else { &m.config.token_type });
    }
    for (key, list) in [
        ("audit_non_hmac_request_keys", &m.config.audit_non_hmac_request_keys),
        ("audit_non_hmac_response_keys", &m.config.audit_non_hmac_response_keys),
        ("passthrough_request_headers", &m.config.passthrough_request_headers),
    ] {
        if !list.is_empty() {
            config[key] = json!(list);
        }
    }
    if !m.config.listing_visibility.is_empty() {
        config["listing_visibility"] = json!(m.config.listing_visibility);
    }
    let options = if m.options.is_empty() && m.kind != "kv" { Value::Null } else { json!(m.options) };
    json!({
        "accessor": m.accessor,
        "config": config,
        "description": m.description,
        "external_entropy_access": false,
        "local": m.local,
        "options": options,
        "plugin_version": "",
        "running_plugin_version": RUNNING_VERSION,
        "running_sha256": "",
        "seal_wrap": m.seal_wrap,
        "type": m.kind,
        "uuid": m.uuid,
    })
}

pub async fn handle(ctx: &Ctx<'_>, class: MountClass, tail: &str) -> Result<Handled, Reply> {
    let m = &ctx.req.method;
    if tail.is_empty() {
        if *m != Method::GET {
            return Err(super::unsupported_operation());
        }
        let all: Map<String, Value> = ctx.state.mounts.of_class(class).map(|m| (m.path.clone(), entry(m))).collect();
        return Ok(Handled::Read(Reply::data_with_copy(Value::Object(all))));
    }
    let (path, tune) = match tail.strip_suffix("/tune") {
        Some(p) => (p, true),
        None => (tail, false),
    };
    // The canonical path names the mount without its trailing slash (`super::ROUTES`).
    let path = format!("{path}/");
    let prefix = match class {
        MountClass::Secret => path.clone(),
        MountClass::Auth => format!("auth/{path}"),
    };
    match (m.as_str(), tune) {
        ("GET", false) => {
            let mount =
                ctx.state.mounts.at_prefix(&prefix).ok_or_else(|| Reply::error(400, format!("No mount at {path}")))?;
            Ok(Handled::Read(Reply::data_with_copy(entry(mount))))
        }
        ("GET", true) => {
            let mount = ctx
                .state
                .mounts
                .at_prefix(&prefix)
                .ok_or_else(|| Reply::error(400, format!("cannot fetch sysview for path \"{path}\"")))?;
            Ok(Handled::Read(Reply::data_with_copy(tune_view(ctx, mount))))
        }
        ("POST" | "PUT", false) => enable(ctx, class, path),
        ("POST" | "PUT", true) => tune_write(ctx, prefix),
        ("DELETE", false) => {
            // A mount takes its leases with it: their credentials are revoked first.
            super::leases::revoke_under(ctx, &prefix, migrations::LeaseEnd::MountDisabled).await?;
            Ok(Handled::write(Command::DisableMount { prefix }, Reply::NoContent))
        }
        _ => Err(super::unsupported_operation()),
    }
}

fn tune_view(ctx: &Ctx<'_>, m: &Mount) -> Value {
    let s = ctx.core().settings;
    let or_default = |v: u64, d: u64| if v == 0 { d } else { v };
    let mut v = json!({
        "default_lease_ttl": or_default(m.config.default_lease_ttl, s.default_lease_ttl),
        "description": m.description,
        "force_no_cache": m.config.force_no_cache,
        "max_lease_ttl": or_default(m.config.max_lease_ttl, s.max_lease_ttl),
    });
    if !m.options.is_empty() || m.kind == "kv" {
        v["options"] = json!(m.options);
    }
    if m.class == MountClass::Auth {
        v["token_type"] = json!(if m.config.token_type.is_empty() { "default-service" } else { &m.config.token_type });
    }
    for (key, list) in [
        ("audit_non_hmac_request_keys", &m.config.audit_non_hmac_request_keys),
        ("audit_non_hmac_response_keys", &m.config.audit_non_hmac_response_keys),
    ] {
        if !list.is_empty() {
            v[key] = json!(list);
        }
    }
    if !m.config.listing_visibility.is_empty() {
        v["listing_visibility"] = json!(m.config.listing_visibility);
    }
    v
}

fn enable(ctx: &Ctx<'_>, class: MountClass, path: String) -> Result<Handled, Reply> {
    let req = ctx.req;
    let mut kind = req.get_str("type").unwrap_or("").to_string();
    let mut options = string_map(req.get("options"));
    if kind == "kv-v2" {
        kind = "kv".into();
        options.insert("version".into(), "2".into());
    } else if kind == "kv" && !options.contains_key("version") {
        options.insert("version".into(), "1".into());
    }
    let config = mount_config(req.get("config"), MountConfig::default())?;
    let command = Command::EnableMount {
        path,
        class,
        kind,
        description: req.get_str("description").unwrap_or("").to_string(),
        options,
        config,
        local: req.get("local").and_then(Value::as_bool).unwrap_or(false),
        seal_wrap: req.get("seal_wrap").and_then(Value::as_bool).unwrap_or(false),
    };
    Ok(Handled::write(command, Reply::NoContent))
}

fn tune_write(ctx: &Ctx<'_>, prefix: String) -> Result<Handled, Reply> {
    let mount =
        ctx.state.mounts.at_prefix(&prefix).ok_or_else(|| Reply::error(400, format!("no mount at {prefix}")))?;
    let config = mount_config(Some(&Value::Object(ctx.req.data.clone())), mount.config.clone())?;
    let mut options = mount.options.clone();
    options.extend(string_map(ctx.req.get("options")));
    let description = ctx.req.get_str("description").map(str::to_string);
    Ok(Handled::write(Command::TuneMount { prefix, description, config, options }, Reply::NoContent))
}

/// Reads mount config fields from a JSON object over `base`.
fn mount_config(v: Option<&Value>, mut base: MountConfig) -> Result<MountConfig, Reply> {
    let Some(Value::Object(c)) = v else { return Ok(base) };
    let ttl = |key: &str| -> Result<Option<u64>, Reply> {
        match c.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                parse_duration_value(v).map(Some).map_err(|e| Reply::error(400, format!("unable to parse {key}: {e}")))
            }
        }
    };
    if let Some(t) = ttl("default_lease_ttl")? {
        base.default_lease_ttl = t;
    }
    if let Some(t) = ttl("max_lease_ttl")? {
        base.max_lease_ttl = t;
    }
    if let Some(b) = c.get("force_no_cache").and_then(Value::as_bool) {
        base.force_no_cache = b;
    }
    let list = |key: &str| {
        c.get(key).map(|v| match v {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            Value::String(s) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
            _ => Vec::new(),
        })
    };
    if let Some(l) = list("audit_non_hmac_request_keys") {
        base.audit_non_hmac_request_keys = l;
    }
    if let Some(l) = list("audit_non_hmac_response_keys") {
        base.audit_non_hmac_response_keys = l;
    }
    if let Some(l) = list("passthrough_request_headers") {
        base.passthrough_request_headers = l;
    }
    if let Some(l) = list("allowed_response_headers") {
        base.allowed_response_headers = l;
    }
    if let Some(s) = c.get("listing_visibility").and_then(Value::as_str) {
        base.listing_visibility = s.to_string();
    }
    if let Some(s) = c.get("token_type").and_then(Value::as_str) {
        base.token_type = s.to_string();
    }
    Ok(base)
}

pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `GET sys/internal/ui/mounts/<path>`: which mount serves a path (the `bao kv`
/// preflight). Allowed when the token can do anything under that mount.
pub fn ui_mounts(ctx: &Ctx<'_>, path: &str) -> Result<Handled, Reply> {
    if path.is_empty() {
        return Ok(Handled::Read(Reply::data(json!({ "auth": {}, "secret": {} }))));
    }
    let with_slash = format!("{path}/");
    let found = ctx.state.mounts.route(path).or_else(|| ctx.state.mounts.route(&with_slash)).map(|(m, _)| m.clone());
    let Some(mount) = found.filter(|m| ctx.acl.is_root() || ctx.acl.has_mount_access(&m.api_prefix())) else {
        let shown = if path.ends_with('/') { path.to_string() } else { format!("{path}/") };
        return Err(Reply::error(
            403,
            format!(
                "preflight capability check returned 403, please ensure client's policies grant access to path \"{shown}\""
            ),
        ));
    };
    let mut e = entry(&mount);
    e["path"] = json!(mount.api_prefix());
    Ok(Handled::Read(Reply::data(e)))
}
