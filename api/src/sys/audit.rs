//! `sys/audit` (list, enable, disable devices) and `sys/audit-hash/<path>`.
//!
//! As in OpenBao 2.7.2, the API enables a device only if the configuration sets
//! `unsafe_allow_api_audit_creation = true` (and one with a `prefix` only with
//! `allow_audit_log_prefixing = true`); devices are otherwise declared in the
//! configuration (`crate::audit_config`), and the API cannot disable those. A `file`
//! device's path is checked as text by the rules and on disk here (`crate::audit_file`)
//! before the command is sequenced.

use axum::http::Method;
use commands::Command;
use projections::audit::AuditDevice;
use serde_json::{Map, Value, json};

use crate::audit::Salt;
use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

/// A device as `sys/audit` lists it.
fn entry(d: &AuditDevice) -> Value {
    json!({
        "type": d.kind,
        "description": d.description,
        "options": d.options,
        "local": d.local,
        "path": d.path,
    })
}

/// OpenBao 2.7.2's answer (400) to `PUT sys/audit/<path>` without
/// `unsafe_allow_api_audit_creation`.
pub const API_CREATION_REFUSED: &str =
    "cannot enable audit device via API; use declarative, config-based audit device management instead";

pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    let m = &ctx.req.method;
    if tail.is_empty() {
        if *m != Method::GET {
            return Err(super::unsupported());
        }
        let all: Map<String, Value> = ctx.state.audit.all().map(|d| (d.path.clone(), entry(d))).collect();
        return Ok(Handled::Read(Reply::data_with_copy(Value::Object(all))));
    }
    match m.as_str() {
        "POST" | "PUT" => enable(ctx, tail).await,
        "DELETE" => {
            Ok(Handled::write(Command::DisableAudit { path: tail.to_string(), from_config: false }, Reply::NoContent))
        }
        _ => Err(super::unsupported_operation()),
    }
}

/// `PUT sys/audit/<path>`: refused unless the configuration allows it; then the rules'
/// checks, and a `file` device's path on disk, before anything is recorded.
async fn enable(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    let settings = ctx.core().audit_settings();
    if !settings.unsafe_allow_api_audit_creation {
        return Err(Reply::error(400, API_CREATION_REFUSED));
    }
    let req = ctx.req;
    let options = super::mounts::string_map(req.get("options"));
    if options.contains_key("prefix") && !settings.allow_audit_log_prefixing {
        return Err(Reply::error(400, "audit log prefixing is not allowed"));
    }
    let kind = req.get_str("type").unwrap_or("").to_string();
    if ctx.state.audit.get(&commands::audit::normalize(tail)).is_some() {
        return Err(Reply::error(400, "path already in use"));
    }
    commands::audit::validate(&kind, &options).map_err(|e| Reply::error(400, e.to_string()))?;
    if kind == "file"
        && let Some(path) = commands::audit::file_path(&options).filter(|p| commands::audit::file_keyword(p).is_none())
    {
        let (path, prefix) = (path.to_string(), options.get("prefix").cloned().unwrap_or_default());
        tokio::task::spawn_blocking(move || crate::audit_file::check(&path, &prefix))
            .await
            .map_err(|e| Reply::error(500, e.to_string()))?
            .map_err(|e| Reply::error(400, e.to_string()))?;
    }
    let command = Command::EnableAudit {
        path: tail.to_string(),
        kind,
        description: req.get_str("description").unwrap_or("").to_string(),
        options,
        local: req.get("local").and_then(Value::as_bool).unwrap_or(false),
        from_config: false,
    };
    Ok(Handled::write(command, Reply::NoContent))
}

/// `PUT sys/audit-hash/<path> {"input": …}`: the device's hash of a value, as it would
/// appear in that device's entries.
pub fn hash(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    if !matches!(ctx.req.method.as_str(), "POST" | "PUT") {
        return Err(super::unsupported_operation());
    }
    let path = commands::audit::normalize(tail);
    let device =
        ctx.state.audit.get(&path).ok_or_else(|| Reply::error(400, format!("unknown audit backend \"{path}\"")))?;
    let input = match ctx.req.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let salt = Salt::open(&ctx.unsealed.env, device).map_err(|e| Reply::error(500, e.to_string()))?;
    let hash = salt.hmac_value(&ctx.unsealed.env, &input);
    Ok(Handled::Read(Reply::data_with_copy(json!({ "hash": hash }))))
}
