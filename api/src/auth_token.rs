//! The token auth method (`auth/token/…`): create, lookup, renew, revoke, roles.

use std::collections::BTreeMap;

use commands::sequencer::Committed;
use commands::{Command, Reply as CmdReply, TokenParams};
use migrations::TokenRole;
use projections::token::Token;
use serde_json::{Value, json};

use crate::core::now_nanos;
use crate::duration::parse_duration_value;
use crate::engines::string_list;
use crate::http::reply::{Envelope, Reply};
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};
use crate::sys::{unsupported, unsupported_operation};

/// The paths of the token store (`crate::routes`).
pub static ROUTES: Table = Table {
    name: "token",
    routes: &[
        route("create"),
        route("create-orphan"),
        route("create/{role_name}"),
        route("lookup"),
        route("lookup-self"),
        route("lookup-accessor"),
        route("renew"),
        route("renew-self"),
        route("renew-accessor"),
        route("revoke"),
        route("revoke-self"),
        route("revoke-orphan"),
        route("revoke-accessor"),
        route("accessors/?"),
        route("roles/?"),
        route("roles/{role_name}"),
        route("tidy"),
    ],
    unmatched: |_| unsupported(),
};

pub fn handle(ctx: &Ctx<'_>, rest: &str) -> Result<Handled, Reply> {
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    match rest {
        "create" | "create-orphan" if write => create(ctx, rest == "create-orphan", None),
        r if r.starts_with("create/") && write => create(ctx, false, Some(r["create/".len()..].to_string())),
        "lookup" if write || m == "GET" => {
            let id = ctx.req.get_str("token").unwrap_or("");
            let t = lookup_by_id(ctx, id).ok_or_else(|| Reply::error(403, "bad token"))?;
            Ok(Handled::Read(Reply::data(lookup_data(&t, id))))
        }
        "lookup-self" if write || m == "GET" => Ok(Handled::Read(Reply::data(lookup_data(&ctx.token, ctx.req.token.as_deref().unwrap_or(""))))),
        "lookup-accessor" if write => {
            let t = by_accessor(ctx)?;
            Ok(Handled::Read(Reply::data(lookup_data(&t, ""))))
        }
        "renew" if write => {
            let id = ctx.req.get_str("token").unwrap_or("");
            let t = lookup_by_id(ctx, id).ok_or_else(|| Reply::error(400, "token not found"))?;
            renew(ctx, &t, id.to_string())
        }
        "renew-self" if write => renew(ctx, &ctx.token.clone(), ctx.req.token.clone().unwrap_or_default()),
        "renew-accessor" if write => {
            let t = by_accessor(ctx)?;
            renew(ctx, &t, String::new())
        }
        "revoke" | "revoke-orphan" if write => {
            let id = ctx.req.get_str("token").unwrap_or("");
            match lookup_by_id(ctx, id) {
                Some(t) => Ok(Handled::write(Command::RevokeToken { accessor: t.accessor.clone(), orphan_children: rest == "revoke-orphan" }, Reply::NoContent)),
                None => Ok(Handled::Read(Reply::NoContent)),
            }
        }
        "revoke-self" if write => Ok(Handled::write(Command::RevokeToken { accessor: ctx.token.accessor.clone(), orphan_children: false }, Reply::NoContent)),
        "revoke-accessor" if write => {
            let accessor = ctx.req.get_str("accessor").unwrap_or("").to_string();
            if ctx.state.tokens.by_accessor(&accessor).is_none() {
                return Ok(Handled::Read(Reply::NoContent.with_warnings(vec!["No token found with this accessor".into()])));
            }
            Ok(Handled::write(Command::RevokeToken { accessor, orphan_children: false }, Reply::NoContent))
        }
        // The path of a LIST ends with `/`.
        "accessors/" if ctx.req.list => {
            let keys: Vec<&str> = ctx.state.tokens.accessors().collect();
            Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
        }
        "roles/" if ctx.req.list => {
            let keys = ctx.state.tokens.role_names();
            if keys.is_empty() {
                return Err(Reply::not_found());
            }
            Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
        }
        r if r.starts_with("roles/") => role(ctx, &r["roles/".len()..]),
        "tidy" if write => Ok(Handled::Read(Reply::envelope(Envelope {
            status: 202,
            warnings: vec!["Tidy operation successfully started. Any information from the operation will be printed to OpenBao's server logs.".into()],
            ..Envelope::default()
        }))),
        "create" | "create-orphan" | "lookup" | "lookup-self" | "lookup-accessor" | "renew" | "renew-self" | "renew-accessor" | "revoke" | "revoke-self" | "revoke-orphan" | "revoke-accessor" | "accessors" | "roles" | "tidy" => {
            Err(unsupported_operation())
        }
        _ => Err(unsupported()),
    }
}

fn lookup_by_id(ctx: &Ctx<'_>, id: &str) -> Option<std::sync::Arc<Token>> {
    if id.is_empty() {
        return None;
    }
    let hash = commands::Env::token_hash(ctx.unsealed.env.as_ref(), id);
    ctx.state.tokens.by_hash(&hash).filter(|t| !t.expired(now_nanos())).cloned()
}

fn by_accessor(ctx: &Ctx<'_>) -> Result<std::sync::Arc<Token>, Reply> {
    let accessor = ctx.req.get_str("accessor").unwrap_or("");
    ctx.state
        .tokens
        .by_accessor(accessor)
        .filter(|t| !t.expired(now_nanos()))
        .cloned()
        .ok_or_else(|| Reply::error(400, "invalid accessor"))
}

/// `auth/token/lookup*` data (openbao-api.md §3.5).
pub fn lookup_data(t: &Token, id: &str) -> Value {
    let now = now_nanos();
    let remaining = if t.expire_time == 0 { 0 } else { t.expire_time.saturating_sub(now) / 1_000_000_000 };
    let mut d = json!({
        "accessor": t.accessor,
        "creation_time": t.issue_time / 1_000_000_000,
        "creation_ttl": t.creation_ttl,
        "display_name": t.display_name,
        "entity_id": t.entity_id,
        "expire_time": if t.expire_time == 0 { Value::Null } else { json!(crate::time::rfc3339(t.expire_time)) },
        "explicit_max_ttl": t.explicit_max_ttl,
        "id": id,
        "meta": if t.meta.is_empty() { Value::Null } else { json!(t.meta) },
        "num_uses": t.uses_left,
        "orphan": t.orphan(),
        "path": t.path,
        "policies": t.policies,
        "ttl": remaining,
        "type": "service",
    });
    if !t.from_init {
        d["issue_time"] = json!(crate::time::rfc3339(t.issue_time));
        d["renewable"] = json!(t.renewable);
    }
    if t.period > 0 {
        d["period"] = json!(t.period);
    }
    if t.last_renewal > 0 {
        d["last_renewal"] = json!(crate::time::rfc3339(t.last_renewal));
        d["last_renewal_time"] = json!(t.last_renewal / 1_000_000_000);
    }
    if !t.role.is_empty() {
        d["role"] = json!(t.role);
    }
    d
}

/// The `auth` block of a token create or renew.
pub fn auth_block(t: &Token, client_token: &str) -> Value {
    let ttl = if t.expire_time == 0 { 0 } else { t.last_ttl };
    json!({
        "client_token": client_token,
        "accessor": t.accessor,
        "policies": t.policies,
        "token_policies": t.policies,
        "metadata": if t.meta.is_empty() { Value::Null } else { json!(t.meta) },
        "lease_duration": ttl,
        "renewable": t.renewable,
        "entity_id": t.entity_id,
        "token_type": "service",
        "orphan": t.orphan(),
        "mfa_requirement": Value::Null,
        "num_uses": t.num_uses,
    })
}

fn auth_reply(committed: &Committed, accessor: &str, client_token: &str, warnings: Vec<String>) -> Reply {
    match committed.state.tokens.by_accessor(accessor) {
        Some(t) => Reply::envelope(Envelope {
            status: 200,
            auth: Some(auth_block(t, client_token)),
            warnings,
            ..Envelope::default()
        }),
        None => Reply::error(500, "token vanished after creation"),
    }
}

fn ttl_field(ctx: &Ctx<'_>, key: &str) -> Result<Option<u64>, Reply> {
    match ctx.req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            parse_duration_value(v).map(Some).map_err(|e| Reply::error(400, format!("error parsing {key}: {e}")))
        }
    }
}

fn bool_field(ctx: &Ctx<'_>, key: &str) -> Option<bool> {
    crate::engines::bool_value(ctx.req.get(key))
}

/// (default, max) TTL for tokens: the token mount's tuning, else the server's.
fn token_ttls(ctx: &Ctx<'_>) -> (u64, u64) {
    let s = ctx.core().settings;
    let cfg = ctx.state.mounts.at_prefix("auth/token/").map(|m| m.config.clone()).unwrap_or_default();
    let pick = |v: u64, d: u64| if v == 0 { d } else { v };
    (pick(cfg.default_lease_ttl, s.default_lease_ttl), pick(cfg.max_lease_ttl, s.max_lease_ttl))
}

fn create(ctx: &Ctx<'_>, orphan_path: bool, role: Option<String>) -> Result<Handled, Reply> {
    let req = ctx.req;
    if matches!(req.get_str("type"), Some("batch")) {
        return Err(Reply::error(400, "batch tokens are not supported by this server; use service tokens"));
    }
    let no_parent = bool_field(ctx, "no_parent").unwrap_or(false);
    if no_parent && !ctx.sudo {
        return Err(Reply::error(400, "root or sudo privileges required to create orphan token"));
    }
    let id = req.get_str("id").map(str::to_string);
    if id.is_some() && !ctx.token.is_root() {
        return Err(Reply::error(400, "root or sudo privileges required to specify token id"));
    }
    let meta: BTreeMap<String, String> = match req.get("meta") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    let num_uses = crate::http::fields::count(&req.data, "num_uses", "number of uses cannot be negative")?.unwrap_or(0);
    let path = if orphan_path { "auth/token/create-orphan" } else { "auth/token/create" };
    let params = TokenParams {
        policies: string_list(req.get("policies")),
        no_default_policy: bool_field(ctx, "no_default_policy").unwrap_or(false),
        meta,
        display_name: req.get_str("display_name").map(str::to_string),
        num_uses,
        ttl: ttl_field(ctx, "ttl")?,
        explicit_max_ttl: ttl_field(ctx, "explicit_max_ttl")?,
        period: ttl_field(ctx, "period")?,
        renewable: bool_field(ctx, "renewable"),
        orphan: orphan_path || no_parent,
        id,
        role,
        entity_id: String::new(),
        path: path.into(),
        bound_cidrs: commands::cidr::normalise(&string_list(req.get("bound_cidrs")).unwrap_or_default())
            .map_err(|e| Reply::error(400, e))?,
        login: false,
    };
    let (default_ttl, max_ttl) = token_ttls(ctx);
    Ok(Handled::Write {
        command: Command::CreateToken { params, max_ttl, default_ttl },
        render: Box::new(|c: &Committed| match &c.result {
            Ok(CmdReply::TokenIssued { id, accessor, warnings }) => auth_reply(c, accessor, id, warnings.clone()),
            _ => Reply::error(500, "unexpected reply to token creation"),
        }),
    })
}

fn renew(ctx: &Ctx<'_>, t: &Token, client_token: String) -> Result<Handled, Reply> {
    // An increment of 0 means "not given" (the bao CLI always sends one).
    let increment = ttl_field(ctx, "increment")?.filter(|&i| i > 0);
    let max_ttl = match crate::auth::login::renewal_max_ttl(ctx.api, &ctx.state, t) {
        Some(max) => max,
        None => token_ttls(ctx).1,
    };
    Ok(Handled::Write {
        command: Command::RenewToken { accessor: t.accessor.clone(), increment, max_ttl },
        render: Box::new(move |c: &Committed| match &c.result {
            Ok(CmdReply::TokenRenewed { accessor, warnings }) => {
                auth_reply(c, accessor, &client_token, warnings.clone())
            }
            _ => Reply::error(500, "unexpected reply to token renewal"),
        }),
    })
}

fn role(ctx: &Ctx<'_>, name: &str) -> Result<Handled, Reply> {
    let name = name.to_string();
    match ctx.req.method.as_str() {
        "GET" => {
            let r = ctx.state.tokens.role(&name).ok_or_else(Reply::not_found)?;
            Ok(Handled::Read(Reply::data(role_data(r))))
        }
        "POST" | "PUT" => {
            let mut r = ctx.state.tokens.role(&name).map(|r| (**r).clone()).unwrap_or(TokenRole {
                name: name.clone(),
                renewable: true,
                token_type: "default-service".into(),
                ..TokenRole::default()
            });
            let req = ctx.req;
            if let Some(l) = string_list(req.get("allowed_policies")) {
                r.allowed_policies = l;
            }
            if let Some(l) = string_list(req.get("disallowed_policies")) {
                r.disallowed_policies = l;
            }
            if let Some(b) = bool_field(ctx, "orphan") {
                r.orphan = b;
            }
            if let Some(b) = bool_field(ctx, "renewable") {
                r.renewable = b;
            }
            if let Some(b) = bool_field(ctx, "token_no_default_policy") {
                r.token_no_default_policy = b;
            }
            if let Some(s) = req.get_str("path_suffix") {
                r.path_suffix = s.to_string();
            }
            if let Some(t) = ttl_field(ctx, "token_period")?.or(ttl_field(ctx, "period")?) {
                r.token_period = t;
            }
            if let Some(t) = ttl_field(ctx, "token_explicit_max_ttl")?.or(ttl_field(ctx, "explicit_max_ttl")?) {
                r.token_explicit_max_ttl = t;
            }
            if let Some(t) = ttl_field(ctx, "token_ttl")? {
                r.token_ttl = t;
            }
            Ok(Handled::write(Command::WriteTokenRole(r), Reply::NoContent))
        }
        "DELETE" => Ok(Handled::write(Command::DeleteTokenRole { name }, Reply::NoContent)),
        _ => Err(unsupported_operation()),
    }
}

fn role_data(r: &TokenRole) -> Value {
    json!({
        "allowed_entity_aliases": if r.allowed_entity_aliases.is_empty() { Value::Null } else { json!(r.allowed_entity_aliases) },
        "allowed_policies": r.allowed_policies,
        "allowed_policies_glob": r.allowed_policies_glob,
        "disallowed_policies": r.disallowed_policies,
        "disallowed_policies_glob": r.disallowed_policies_glob,
        "explicit_max_ttl": r.token_explicit_max_ttl,
        "name": r.name,
        "orphan": r.orphan,
        "path_suffix": r.path_suffix,
        "period": r.token_period,
        "renewable": r.renewable,
        "token_explicit_max_ttl": r.token_explicit_max_ttl,
        "token_no_default_policy": r.token_no_default_policy,
        "token_period": r.token_period,
        "token_type": if r.token_type.is_empty() { "default-service" } else { &r.token_type },
    })
}
