//! The `database` engine's HTTP API (openbao-api.md §8): `config/`, `reset/`,
//! `rotate-root/`, `roles/`, `creds/`, `static-roles/`, `static-creds/`, `rotate-role/`.
//!
//! Shapes and parsing live here; talking to databases lives in [`super::runtime`]; the
//! rules in `commands::database`.

use commands::{Command, DbCommand, Secret};
use migrations::{DbRole, DbStaticRole, LeaseEnd, LeaseSecret};
use projections::mount::Mount;
use serde_json::{Map, Value, json};

use super::runtime;
use crate::duration::parse_duration_value;
use crate::engines::{bool_value, string_list};
use crate::http::reply::{Envelope, Reply};
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};
use crate::sys::unsupported_operation;

/// The paths of a database mount (`crate::routes`), with Vault's names.
pub static ROUTES: Table = Table {
    name: "database",
    routes: &[
        route("config/?"),
        route("config/{name}"),
        route("roles/?"),
        route("roles/{name}"),
        route("static-roles/?"),
        route("static-roles/{name}"),
        route("creds/{name}"),
        route("static-creds/{name}"),
        route("reset/{name}"),
        route("rotate-root/{name}"),
        route("rotate-role/{name}"),
    ],
    unmatched: crate::auth::no_route,
};

/// Shortest static rotation period Vault accepts.
const MIN_ROTATION_PERIOD: u64 = 5;

pub async fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let (head, name) = rest.split_once('/').unwrap_or((rest, ""));
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    let uuid = mount.uuid.as_str();
    match (head, m) {
        ("config" | "roles" | "static-roles", _) if ctx.req.list || (name.is_empty() && m == "GET") => {
            list(ctx, uuid, head)
        }
        ("config", "GET") => read_config(ctx, uuid, name),
        ("config", _) if write => write_config(ctx, uuid, name).await,
        ("config", "DELETE") => delete(DbCommand::DeleteConnection { mount: uuid.into(), name: name.into() }),
        ("reset", _) if write => {
            runtime::reset(ctx.unsealed, uuid, name);
            Ok(Handled::Read(Reply::NoContent))
        }
        ("rotate-root", _) if write => rotate_root(ctx, uuid, name).await,
        ("roles", "GET") => read_role(ctx, uuid, name),
        ("roles", _) if write => write_role(ctx, uuid, name),
        ("roles", "DELETE") => delete(DbCommand::DeleteRole { mount: uuid.into(), name: name.into() }),
        ("creds", "GET") => creds(ctx, mount, name).await,
        ("static-roles", "GET") => read_static_role(ctx, uuid, name),
        ("static-roles", _) if write => write_static_role(ctx, uuid, name).await,
        ("static-roles", "DELETE") => delete(DbCommand::DeleteStaticRole { mount: uuid.into(), name: name.into() }),
        ("static-creds", "GET") => static_creds(ctx, uuid, name),
        ("rotate-role", _) if write => rotate_role(ctx, uuid, name).await,
        (
            "config" | "reset" | "rotate-root" | "roles" | "creds" | "static-roles" | "static-creds" | "rotate-role",
            _,
        ) => Err(unsupported_operation()),
        _ => Err(Reply::error(404, format!("no handler for route \"{}\". route entry not found.", ctx.req.path))),
    }
}

fn delete(cmd: DbCommand) -> Result<Handled, Reply> {
    Ok(Handled::write(Command::Database(cmd), Reply::NoContent))
}

fn list(ctx: &Ctx<'_>, mount: &str, what: &str) -> Result<Handled, Reply> {
    let keys: Vec<String> = match ctx.state.databases.mount(mount) {
        None => Vec::new(),
        Some(m) => match what {
            "config" => m.connections.keys().cloned().collect(),
            "roles" => m.roles.keys().cloned().collect(),
            _ => m.statics.keys().cloned().collect(),
        },
    };
    if keys.is_empty() {
        return Err(Reply::not_found());
    }
    Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
}

fn required_name(name: &str) -> Result<(), Reply> {
    if name.is_empty() || name.contains('/') {
        return Err(Reply::error(400, "a name is required (and may not contain \"/\")"));
    }
    Ok(())
}

fn duration_field(ctx: &Ctx<'_>, key: &str) -> Result<Option<u64>, Reply> {
    match ctx.req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_duration_value(v)
            .map(Some)
            .map_err(|e| Reply::error(400, format!("error converting input for field \"{key}\": {e}"))),
    }
}

fn u32_field(ctx: &Ctx<'_>, key: &str) -> Result<Option<u32>, Reply> {
    match crate::http::fields::int(&ctx.req.data, key)? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| Reply::error(400, format!("error converting input for field \"{key}\": out of range"))),
    }
}

// ---- connections ----

fn read_config(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let c = ctx.state.databases.connection(mount, name).ok_or_else(Reply::not_found)?;
    let cfg = &c.config;
    let mut details = Map::new();
    details.insert("connection_url".into(), json!(cfg.connection_url));
    details.insert("username".into(), json!(cfg.username));
    if cfg.max_open_connections > 0 {
        details.insert("max_open_connections".into(), json!(cfg.max_open_connections));
    }
    if cfg.max_idle_connections > 0 {
        details.insert("max_idle_connections".into(), json!(cfg.max_idle_connections));
    }
    if cfg.max_connection_lifetime > 0 {
        details.insert("max_connection_lifetime".into(), json!(format!("{}s", cfg.max_connection_lifetime)));
    }
    if !cfg.username_template.is_empty() {
        details.insert("username_template".into(), json!(cfg.username_template));
    }
    Ok(Handled::Read(Reply::data(json!({
        "allowed_roles": cfg.allowed_roles,
        "connection_details": details,
        "password_policy": cfg.password_policy,
        "plugin_name": cfg.plugin_name,
        "plugin_version": "",
        "root_credentials_rotate_statements": cfg.root_rotation_statements,
        "verify_connection": cfg.verify_connection,
    }))))
}

async fn write_config(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    required_name(name)?;
    let old = ctx.state.databases.connection(mount, name).map(|c| c.config.clone());
    let is_new = old.is_none();
    let mut cfg = old.unwrap_or_default();
    let req = ctx.req;
    if let Some(p) = req.get_str("plugin_name") {
        cfg.plugin_name = p.to_string();
    }
    if cfg.plugin_name.is_empty() {
        return Err(Reply::error(400, "plugin_name must be specified"));
    }
    super::PluginKind::from_plugin_name(&cfg.plugin_name)
        .map_err(|e| Reply::error(400, format!("error creating database object: {e}")))?;
    if let Some(u) = req.get_str("connection_url") {
        cfg.connection_url = u.to_string();
    }
    if let Some(u) = req.get_str("username") {
        cfg.username = u.to_string();
    }
    if let Some(roles) = string_list(req.get("allowed_roles")) {
        cfg.allowed_roles = roles;
    }
    if let Some(s) = string_list(req.get("root_rotation_statements")) {
        cfg.root_rotation_statements = s;
    }
    cfg.verify_connection = bool_value(req.get("verify_connection")).unwrap_or(true);
    if let Some(n) = u32_field(ctx, "max_open_connections")? {
        cfg.max_open_connections = n.max(1);
    }
    if let Some(n) = u32_field(ctx, "max_idle_connections")? {
        cfg.max_idle_connections = n;
    }
    if let Some(d) = duration_field(ctx, "max_connection_lifetime")? {
        cfg.max_connection_lifetime = d;
    }
    if let Some(t) = req.get_str("username_template") {
        super::validate_username_template(t).map_err(|e| Reply::error(400, e.to_string()))?;
        cfg.username_template = t.to_string();
    }
    if let Some(p) = req.get_str("password_policy") {
        if !p.is_empty() {
            return Err(Reply::error(400, "password policies are not supported by this server yet"));
        }
        cfg.password_policy = String::new();
    }
    if cfg.connection_url.is_empty() {
        return Err(Reply::error(400, "connection_url cannot be empty"));
    }
    if has_literal_password(&cfg.connection_url) {
        // The URL is stored and read back in clear; a password in it would be too.
        return Err(Reply::error(
            400,
            "connection_url must not contain a password: write {{password}} in it and give the password in the \"password\" field, which is stored sealed",
        ));
    }
    let password = req.get_str("password").filter(|p| !p.is_empty()).map(Secret::new);
    if is_new && password.is_none() && cfg.connection_url.contains("{{password}}") {
        return Err(Reply::error(400, "password is required for a new connection"));
    }
    if cfg.verify_connection {
        let known = match &password {
            Some(p) => Some(p.clone()),
            None => runtime::root_password(ctx.unsealed, &ctx.state, mount, name)?,
        };
        runtime::verify(&cfg, known.as_ref().map(Secret::expose).unwrap_or("")).await.map_err(|e| {
            Reply::error(400, format!("error creating database object: error verifying connection: {e}"))
        })?;
    }
    let password = password.or_else(|| is_new.then(|| Secret::new("")));
    let cmd = DbCommand::WriteConnection { mount: mount.into(), name: name.into(), config: cfg, password };
    runtime::reset(ctx.unsealed, mount, name);
    Ok(Handled::write(Command::Database(cmd), Reply::NoContent))
}

/// Whether a connection URL (PostgreSQL URL or key=value form, MySQL DSN) holds a password
/// other than the `{{password}}` placeholder.
fn has_literal_password(url: &str) -> bool {
    let placeholder = |v: &str| v.is_empty() || v == "{{password}}" || v == "'{{password}}'";
    // key=value form, or a `password=` query parameter.
    for part in url.split(|c: char| c.is_whitespace() || c == '?' || c == '&') {
        if let Some(v) = part.strip_prefix("password=")
            && !placeholder(v)
        {
            return true;
        }
    }
    // user:password@host (URL user-info or Go DSN).
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let Some(at) = rest.rfind('@') else { return false };
    rest[..at].split_once(':').is_some_and(|(_, pass)| !placeholder(pass))
}

/// `rotate-root/<name>`: a new root password, staged in the ledger, set in the database,
/// confirmed. Nobody ever sees it.
async fn rotate_root(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let c = ctx
        .state
        .databases
        .connection(mount, name)
        .cloned()
        .ok_or_else(|| Reply::error(400, "no configuration found"))?;
    if c.config.username.is_empty() {
        return Err(Reply::error(400, "unable to rotate root credentials: no username in configuration"));
    }
    let password = new_password()?;
    let stage = DbCommand::StageRootPassword { mount: mount.into(), name: name.into(), password: password.clone() };
    let committed = ctx.commit_step(Command::Database(stage)).await?;
    let result = runtime::set_root_password(ctx.unsealed, &committed.state, mount, name, &password).await;
    let (command, reply) = match result {
        Ok(()) => {
            let confirm = DbCommand::ConfirmRootPassword { mount: mount.into(), name: name.into() };
            (Some(Command::Database(confirm)), Reply::NoContent)
        }
        Err(e) => (None, Reply::error(400, format!("failed to update user: {e}"))),
    };
    let done = ctx.finish(command, &reply).await?;
    done.result.map_err(crate::http::rejection_reply)?;
    runtime::reset(ctx.unsealed, mount, name);
    Ok(Handled::Recorded(reply))
}

// ---- dynamic roles ----

fn role_view(r: &DbRole) -> Value {
    json!({
        "creation_statements": r.creation_statements,
        "credential_type": if r.credential_type.is_empty() { "password" } else { r.credential_type.as_str() },
        "db_name": r.db_name,
        "default_ttl": r.default_ttl,
        "max_ttl": r.max_ttl,
        "renew_statements": r.renew_statements,
        "revocation_statements": r.revocation_statements,
        "rollback_statements": r.rollback_statements,
    })
}

fn read_role(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let r = ctx.state.databases.role(mount, name).ok_or_else(Reply::not_found)?;
    Ok(Handled::Read(Reply::data(role_view(r))))
}

fn write_role(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    required_name(name)?;
    let req = ctx.req;
    let mut role = ctx.state.databases.role(mount, name).map(|r| (**r).clone()).unwrap_or_default();
    if let Some(db) = req.get_str("db_name") {
        role.db_name = db.to_string();
    }
    if role.db_name.is_empty() {
        return Err(Reply::error(400, "empty database name attribute"));
    }
    for (key, field) in [
        ("creation_statements", &mut role.creation_statements),
        ("revocation_statements", &mut role.revocation_statements),
        ("rollback_statements", &mut role.rollback_statements),
        ("renew_statements", &mut role.renew_statements),
    ] {
        if let Some(list) = statement_list(req.get(key)) {
            *field = list;
        }
    }
    if role.creation_statements.is_empty() {
        return Err(Reply::error(400, "creation statements are required"));
    }
    if let Some(t) = duration_field(ctx, "default_ttl")? {
        role.default_ttl = t;
    }
    if let Some(t) = duration_field(ctx, "max_ttl")? {
        role.max_ttl = t;
    }
    if role.max_ttl > 0 && role.default_ttl > role.max_ttl {
        return Err(Reply::error(400, "ttl cannot be greater than max_ttl"));
    }
    role.credential_type = "password".into();
    let cmd = DbCommand::WriteRole { mount: mount.into(), name: name.into(), role };
    Ok(Handled::write(Command::Database(cmd), Reply::NoContent))
}

/// Statements as a JSON list, or one string (kept whole: a statement may hold commas).
fn statement_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) if s.is_empty() => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => {
            Some(a.iter().filter_map(|x| x.as_str()).filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
        _ => None,
    }
}

/// `creds/<role>`: the lease is in the ledger before the user exists; if creating the user
/// fails the lease ends at once (`CreationFailed`) and the database's error is the answer.
async fn creds(ctx: &Ctx<'_>, mount: &Mount, role_name: &str) -> Result<Handled, Reply> {
    let uuid = mount.uuid.as_str();
    let role = ctx
        .state
        .databases
        .role(uuid, role_name)
        .cloned()
        .ok_or_else(|| Reply::error(400, format!("unknown role: {role_name}")))?;
    let conn = ctx.state.databases.connection(uuid, &role.db_name).cloned().ok_or_else(|| {
        Reply::error(400, format!("error getting database: no database configuration named {:?}", role.db_name))
    })?;
    if !role_allowed(&conn.config.allowed_roles, role_name) {
        return Err(Reply::error(400, format!("{role_name:?} is not an allowed role")));
    }
    let (ttl, max_ttl) = lease_ttls(ctx, mount, &role);
    let template = Some(conn.config.username_template.as_str()).filter(|t| !t.is_empty());
    let kind =
        super::PluginKind::from_plugin_name(&conn.config.plugin_name).map_err(|e| Reply::error(400, e.to_string()))?;
    let username = super::generate_username(kind, template, &ctx.token.display_name, role_name)
        .map_err(|e| Reply::error(500, format!("unable to generate username: {e}")))?;
    let password = new_password()?;
    let path = ctx.req.path.as_str().to_string();
    let secret =
        LeaseSecret::Database { config: role.db_name.clone(), role: role_name.to_string(), username: username.clone() };
    let issue = Command::IssueLease { path, mount: uuid.to_string(), ttl, max_ttl, secret };
    let committed = ctx.commit_step(issue).await?;
    let Ok(commands::Reply::LeaseIssued { lease_id, ttl }) = committed.result.clone() else {
        return Err(Reply::error(500, "lease was not issued"));
    };
    let lease = committed.state.leases.get(&lease_id).cloned().ok_or_else(|| Reply::error(500, "lease vanished"))?;
    let created =
        runtime::create_user(ctx.unsealed, &committed.state, uuid, &role, &username, &password, lease.max_expire_time)
            .await;
    match created {
        Ok(()) => {
            let reply = Reply::envelope(Envelope {
                status: 200,
                lease_id,
                renewable: true,
                lease_duration: ttl,
                data: Some(json!({ "username": username, "password": password.expose() })),
                ..Envelope::default()
            });
            ctx.finish(None, &reply).await?.result.map_err(crate::http::rejection_reply)?;
            Ok(Handled::Recorded(reply))
        }
        Err(e) => {
            let reply = Reply::error(400, e);
            let end = Command::RecordLeasesRevoked { lease_ids: vec![lease_id], reason: LeaseEnd::CreationFailed };
            ctx.finish(Some(end), &reply).await?;
            Ok(Handled::Recorded(reply))
        }
    }
}

fn new_password() -> Result<Secret, Reply> {
    let p = super::generate_password().map_err(|e| Reply::error(500, e.to_string()))?;
    Ok(Secret::new(p.as_str()))
}

fn role_allowed(allowed: &[String], role: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == role)
}

/// (ttl, max ttl) of a new lease: the role's, else the mount's, else the server's; never
/// past the mount's (or server's) max.
fn lease_ttls(ctx: &Ctx<'_>, mount: &Mount, role: &DbRole) -> (u64, u64) {
    let (mount_default, mount_max) = mount_ttls(ctx, mount);
    let max = if role.max_ttl > 0 { role.max_ttl.min(mount_max) } else { mount_max };
    let ttl = if role.default_ttl > 0 { role.default_ttl } else { mount_default };
    (ttl.min(max), max)
}

/// The mount's tuned (default, max) lease TTLs, falling back to the server's.
pub fn mount_ttls(ctx: &Ctx<'_>, mount: &Mount) -> (u64, u64) {
    let s = ctx.core().settings;
    let pick = |v: u64, d: u64| if v == 0 { d } else { v };
    let max = pick(mount.config.max_lease_ttl, s.max_lease_ttl);
    (pick(mount.config.default_lease_ttl, s.default_lease_ttl).min(max), max)
}

// ---- static roles ----

fn read_static_role(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let s = ctx.state.databases.static_role(mount, name).ok_or_else(Reply::not_found)?;
    Ok(Handled::Read(Reply::data(json!({
        "credential_type": "password",
        "db_name": s.role.db_name,
        "last_vault_rotation": last_rotation(s.last_rotation),
        "rotation_period": s.role.rotation_period,
        "rotation_statements": s.role.rotation_statements,
        "username": s.role.username,
    }))))
}

fn last_rotation(t: u64) -> Value {
    if t == 0 { Value::Null } else { json!(crate::time::rfc3339(t)) }
}

async fn write_static_role(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    required_name(name)?;
    let req = ctx.req;
    let existing = ctx.state.databases.static_role(mount, name).map(|s| s.role.clone());
    let is_new = existing.is_none();
    let mut role: DbStaticRole = existing.unwrap_or_default();
    if let Some(db) = req.get_str("db_name") {
        role.db_name = db.to_string();
    }
    if role.db_name.is_empty() {
        return Err(Reply::error(400, "database name is a required field"));
    }
    if let Some(u) = req.get_str("username") {
        role.username = u.to_string();
    }
    if role.username.is_empty() {
        return Err(Reply::error(400, "username is a required field to create a static account"));
    }
    match duration_field(ctx, "rotation_period")? {
        Some(p) if p < MIN_ROTATION_PERIOD => {
            return Err(Reply::error(400, format!("rotation_period must be {MIN_ROTATION_PERIOD} seconds or more")));
        }
        Some(p) => role.rotation_period = p,
        None if is_new => return Err(Reply::error(400, "rotation_period is required to create static accounts")),
        None => {}
    }
    if let Some(list) = statement_list(req.get("rotation_statements")) {
        role.rotation_statements = list;
    }
    let conn = ctx
        .state
        .databases
        .connection(mount, &role.db_name)
        .cloned()
        .ok_or_else(|| Reply::error(400, format!("no database configuration named {:?}", role.db_name)))?;
    if !role_allowed(&conn.config.allowed_roles, name) {
        return Err(Reply::error(400, format!("{name:?} is not an allowed role")));
    }
    let cmd = DbCommand::WriteStaticRole { mount: mount.into(), name: name.into(), role };
    if !is_new {
        return Ok(Handled::write(Command::Database(cmd), Reply::NoContent));
    }
    // A new static role takes over its user: its password rotates now.
    ctx.commit_step(Command::Database(cmd)).await?;
    rotate_now(ctx, mount, name).await
}

fn static_creds(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let s = ctx.state.databases.static_role(mount, name).ok_or_else(|| Reply::error(400, "unknown role"))?;
    let sealed =
        s.password.as_ref().ok_or_else(|| Reply::error(400, "the static role's password has not been set yet"))?;
    let password = runtime::open_static_password(ctx.unsealed, mount, name, sealed)?;
    let now = crate::core::now_nanos();
    let ttl = s.due().saturating_sub(now) / 1_000_000_000;
    Ok(Handled::Read(Reply::data(json!({
        "last_vault_rotation": last_rotation(s.last_rotation),
        "password": password.expose(),
        "rotation_period": s.role.rotation_period,
        "ttl": ttl,
        "username": s.role.username,
    }))))
}

async fn rotate_role(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    if ctx.state.databases.static_role(mount, name).is_none() {
        return Err(Reply::error(400, "no static role found for role name"));
    }
    rotate_now(ctx, mount, name).await
}

/// Stages a new password for a static role, sets it in the database, confirms it.
async fn rotate_now(ctx: &Ctx<'_>, mount: &str, name: &str) -> Result<Handled, Reply> {
    let _guard = runtime::rotation_guard(ctx.unsealed).await;
    let password = new_password()?;
    let stage = DbCommand::StageStaticPassword { mount: mount.into(), name: name.into(), password: password.clone() };
    let committed = ctx.commit_step(Command::Database(stage)).await?;
    let result = runtime::set_static_password(ctx.unsealed, &committed.state, mount, name, &password).await;
    let (command, reply) = match result {
        Ok(()) => (DbCommand::ConfirmStaticPassword { mount: mount.into(), name: name.into() }, Reply::NoContent),
        Err(e) => (
            DbCommand::RecordStaticRotationFailure { mount: mount.into(), name: name.into(), error: e.clone() },
            Reply::error(400, format!("error setting credentials: {e} (it will be retried)")),
        ),
    };
    ctx.finish(Some(Command::Database(command)), &reply).await?.result.map_err(crate::http::rejection_reply)?;
    Ok(Handled::Recorded(reply))
}

#[cfg(test)]
mod tests {
    use super::has_literal_password;

    #[test]
    fn passwords_written_into_connection_urls_are_found() {
        for url in [
            "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
            "postgres://{{username}}@db/app",
            "{{username}}:{{password}}@tcp(127.0.0.1:3306)/",
            "host=db user={{username}} password={{password}} dbname=app",
            "postgresql://db/app?user={{username}}&password={{password}}",
        ] {
            assert!(!has_literal_password(url), "{url}");
        }
        for url in [
            "postgresql://postgres:hunter2@127.0.0.1:5432/postgres",
            "root:hunter2@tcp(127.0.0.1:3306)/",
            "host=db user=app password=hunter2",
            "postgresql://db/app?password=hunter2",
            "postgresql://u:p@ss@db/app",
        ] {
            assert!(has_literal_password(url), "{url}");
        }
    }
}
