//! AppRole (`auth/<mount>/…`): roles, role ids, secret ids. Logins are in `login.rs`;
//! the secret id itself is answered once and stored only as its keyed hash.

use std::collections::BTreeMap;

use axum::http::Method;
use commands::sequencer::Committed;
use commands::{AuthCommand, Command, Reply as CmdReply, Secret};
use migrations::{AppRole, SecretIdEnd};
use projections::auth::SecretId;
use projections::mount::Mount;
use serde_json::{Map, Value, json};

use super::{keys_reply, no_route, split_name, token_fields};
use crate::duration::parse_duration_value;
use crate::engines::{bool_value, string_list};
use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};

/// The paths of an AppRole mount (`crate::routes`).
pub static ROUTES: Table = Table {
    name: "approle",
    routes: &[
        route(LOGIN),
        route("role/?"),
        route("role/{role_name}"),
        route("role/{role_name}/role-id"),
        route("role/{role_name}/secret-id/?"),
        route("role/{role_name}/custom-secret-id"),
        route("role/{role_name}/secret-id/lookup"),
        route("role/{role_name}/secret-id/destroy"),
        route("role/{role_name}/secret-id-accessor/lookup"),
        route("role/{role_name}/secret-id-accessor/destroy"),
        route("tidy/secret-id"),
    ],
    unmatched: no_route,
};

/// The login path.
pub const LOGIN: &str = "login";

pub fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    if rest == "role/" && ctx.req.list {
        let keys = ctx.state.auth.mount(&mount.uuid).map(|a| a.approles.keys().cloned().collect()).unwrap_or_default();
        return keys_reply(keys);
    }
    if rest == "tidy/secret-id" && write {
        return Ok(Handled::write(
            Command::Auth(AuthCommand::ExpireSecretIds),
            Reply::envelope(crate::http::reply::Envelope {
                status: 202,
                warnings: vec!["Tidy operation successfully started. Any information from the operation will be printed to OpenBao's server logs.".into()],
                ..Default::default()
            }),
        ));
    }
    let Some(role_path) = rest.strip_prefix("role/") else { return Err(no_route(ctx.req.path.as_str())) };
    let (name, tail) = split_name(role_path);
    let role = ctx.state.auth.mount(&mount.uuid).and_then(|a| a.approles.get(name)).cloned();
    let uuid = mount.uuid.clone();
    match (tail, m) {
        ("", "GET") => {
            let role = role.ok_or_else(Reply::not_found)?;
            Ok(Handled::Read(Reply::data(Value::Object(role_data(&role)))))
        }
        ("", _) if write => write_role(ctx, uuid, name, role.as_deref()),
        ("", "DELETE") => Ok(Handled::write(
            Command::Auth(AuthCommand::DeleteAppRole { mount: uuid, name: name.into() }),
            Reply::NoContent,
        )),
        ("role-id", "GET") => {
            let role = role.ok_or_else(Reply::not_found)?;
            Ok(Handled::Read(Reply::data(json!({ "role_id": role.role_id }))))
        }
        ("role-id", _) if write => {
            let mut role = (*role.ok_or_else(|| missing_role(name))?).clone();
            role.role_id = ctx
                .req
                .get_str("role_id")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Reply::error(400, "missing role_id"))?
                .into();
            Ok(Handled::write(Command::Auth(AuthCommand::WriteAppRole { mount: uuid, role }), Reply::NoContent))
        }
        ("secret-id/", _) if ctx.req.list => {
            role.ok_or_else(|| missing_role(name))?;
            let keys = ctx.state.auth.mount(&uuid).map(|a| a.secret_id_accessors(name)).unwrap_or_default();
            keys_reply(keys)
        }
        ("secret-id" | "custom-secret-id", _) if write => {
            role.ok_or_else(|| missing_role(name))?;
            issue_secret_id(ctx, uuid, name, tail == "custom-secret-id")
        }
        ("secret-id/lookup", _) if write => {
            let id = ctx.req.get_str("secret_id").ok_or_else(|| Reply::error(400, "missing secret_id"))?;
            let hash = commands::secret_id_hash(ctx.unsealed.env.as_ref(), &uuid, id);
            let found = ctx.state.auth.mount(&uuid).and_then(|a| a.secret_ids.get(&hash)).filter(|s| s.role == name);
            Ok(Handled::Read(found.map_or(Reply::NoContent, |s| Reply::data(secret_id_data(s)))))
        }
        ("secret-id-accessor/lookup", _) if write => {
            let accessor = accessor_field(ctx)?;
            let found = ctx.state.auth.mount(&uuid).and_then(|a| a.secret_id_by_accessor(name, &accessor)).ok_or_else(
                || Reply::error(500, format!("failed to find accessor entry for secret_id_accessor: {accessor:?}")),
            )?;
            Ok(Handled::Read(Reply::data(secret_id_data(found))))
        }
        ("secret-id/destroy", "POST" | "PUT" | "DELETE") => {
            let id = ctx.req.get_str("secret_id").ok_or_else(|| Reply::error(400, "missing secret_id"))?;
            let hash = commands::secret_id_hash(ctx.unsealed.env.as_ref(), &uuid, id);
            let found = ctx.state.auth.mount(&uuid).and_then(|a| a.secret_ids.get(&hash)).filter(|s| s.role == name);
            match found {
                Some(s) => Ok(Handled::write(destroy(uuid, name, s.accessor.clone()), Reply::NoContent)),
                None => Ok(Handled::Read(Reply::NoContent)),
            }
        }
        ("secret-id-accessor/destroy", "POST" | "PUT" | "DELETE") => {
            let accessor = accessor_field(ctx)?;
            if ctx.state.auth.mount(&uuid).and_then(|a| a.secret_id_by_accessor(name, &accessor)).is_none() {
                return Err(Reply::error(
                    500,
                    format!("failed to find accessor entry for secret_id_accessor: {accessor:?}"),
                ));
            }
            Ok(Handled::write(destroy(uuid, name, accessor), Reply::NoContent))
        }
        _ if ctx.req.method == Method::GET || write || m == "DELETE" => Err(no_route(ctx.req.path.as_str())),
        _ => Err(crate::sys::unsupported_operation()),
    }
}

fn missing_role(name: &str) -> Reply {
    Reply::error(400, format!("role \"{name}\" does not exist"))
}

fn accessor_field(ctx: &Ctx<'_>) -> Result<String, Reply> {
    ctx.req
        .get_str("secret_id_accessor")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Reply::error(400, "missing secret_id_accessor"))
}

fn destroy(mount: String, role: &str, accessor: String) -> Command {
    Command::Auth(AuthCommand::DestroySecretIds {
        mount,
        role: role.into(),
        accessors: vec![accessor],
        reason: SecretIdEnd::Destroyed,
    })
}

fn seconds(ctx: &Ctx<'_>, key: &str) -> Result<Option<u64>, Reply> {
    match ctx.req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_duration_value(v)
            .map(Some)
            .map_err(|e| Reply::error(400, format!("error converting input for field \"{key}\": {e}"))),
    }
}

fn count(ctx: &Ctx<'_>, key: &str) -> Result<Option<u64>, Reply> {
    crate::http::fields::count(&ctx.req.data, key, &format!("{key} cannot be negative"))
}

fn cidrs(ctx: &Ctx<'_>, key: &str) -> Result<Option<Vec<String>>, Reply> {
    string_list(ctx.req.get(key)).map(|l| commands::cidr::normalise(&l).map_err(|e| Reply::error(400, e))).transpose()
}

fn write_role(ctx: &Ctx<'_>, mount: String, name: &str, old: Option<&AppRole>) -> Result<Handled, Reply> {
    if name.is_empty() || name.contains('/') {
        return Err(Reply::error(400, "invalid role name"));
    }
    let mut role = match old {
        Some(r) => r.clone(),
        None => AppRole {
            name: name.into(),
            role_id: uuid::Uuid::new_v4().to_string(),
            bind_secret_id: true,
            ..AppRole::default()
        },
    };
    if let Some(id) = ctx.req.get_str("role_id").filter(|s| !s.is_empty()) {
        role.role_id = id.into();
    }
    if let Some(b) = bool_value(ctx.req.get("bind_secret_id")) {
        role.bind_secret_id = b;
    }
    if let Some(c) = cidrs(ctx, "secret_id_bound_cidrs")?.or(cidrs(ctx, "bound_cidr_list")?) {
        role.secret_id_bound_cidrs = c;
    }
    if let Some(n) = count(ctx, "secret_id_num_uses")? {
        role.secret_id_num_uses = n;
    }
    if let Some(t) = seconds(ctx, "secret_id_ttl")? {
        role.secret_id_ttl = t;
    }
    if let Some(b) = bool_value(ctx.req.get("local_secret_ids")) {
        role.local_secret_ids = b;
    }
    role.token = token_fields::parse(ctx.req, role.token)?;
    if !role.bind_secret_id && role.secret_id_bound_cidrs.is_empty() && role.token.token_bound_cidrs.is_empty() {
        return Err(Reply::error(400, "at least one constraint should be enabled on the role"));
    }
    Ok(Handled::write(Command::Auth(AuthCommand::WriteAppRole { mount, role }), Reply::NoContent))
}

fn role_data(r: &AppRole) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("bind_secret_id".into(), json!(r.bind_secret_id));
    d.insert("local_secret_ids".into(), json!(r.local_secret_ids));
    d.insert("secret_id_bound_cidrs".into(), json!(r.secret_id_bound_cidrs));
    d.insert("secret_id_num_uses".into(), json!(r.secret_id_num_uses));
    d.insert("secret_id_ttl".into(), json!(r.secret_id_ttl));
    token_fields::render(&r.token, &mut d);
    d
}

/// The secret-id metadata: a JSON object given as a string (Vault's form) or an object.
fn metadata(ctx: &Ctx<'_>) -> Result<BTreeMap<String, String>, Reply> {
    let parsed;
    let obj = match ctx.req.get("metadata") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|_| Reply::error(400, "failed to parse metadata: not a JSON object"))?;
            &parsed
        }
        Some(v) => v,
    };
    let Value::Object(m) = obj else { return Err(Reply::error(400, "failed to parse metadata: not a JSON object")) };
    Ok(m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect())
}

fn issue_secret_id(ctx: &Ctx<'_>, mount: String, role: &str, custom: bool) -> Result<Handled, Reply> {
    let custom = if custom {
        let id = ctx
            .req
            .get_str("secret_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Reply::error(400, "missing secret_id"))?;
        Some(Secret::new(id))
    } else {
        None
    };
    let command = Command::Auth(AuthCommand::IssueSecretId {
        mount,
        role: role.into(),
        custom,
        metadata: metadata(ctx)?,
        cidr_list: cidrs(ctx, "cidr_list")?.unwrap_or_default(),
        token_bound_cidrs: cidrs(ctx, "token_bound_cidrs")?.unwrap_or_default(),
        num_uses: count(ctx, "num_uses")?,
        ttl: seconds(ctx, "ttl")?,
    });
    Ok(Handled::Write {
        command,
        render: Box::new(|c: &Committed| match &c.result {
            Ok(CmdReply::SecretIdIssued { secret_id, accessor, num_uses, ttl }) => Reply::data(json!({
                "secret_id": secret_id,
                "secret_id_accessor": accessor,
                "secret_id_num_uses": num_uses,
                "secret_id_ttl": ttl,
            })),
            _ => Reply::error(500, "unexpected reply to secret id creation"),
        }),
    })
}

fn secret_id_data(s: &SecretId) -> Value {
    let time = |t: u64| if t == 0 { "0001-01-01T00:00:00Z".to_string() } else { crate::time::rfc3339(t) };
    json!({
        "cidr_list": s.cidr_list,
        "creation_time": time(s.creation_time),
        "expiration_time": time(s.expiration_time),
        "last_updated_time": time(s.last_updated),
        "metadata": s.metadata,
        "secret_id_accessor": s.accessor,
        "secret_id_num_uses": s.uses_left,
        "secret_id_ttl": s.ttl,
        "token_bound_cidrs": s.token_bound_cidrs,
    })
}
