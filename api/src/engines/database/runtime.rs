//! The database engine at run time: one pool per configured connection, opened with the
//! root password unsealed from the ledger, and the engine's part in leases (create, renew,
//! revoke users) and in password rotations (rotate-root, static roles).
//!
//! Every call to a database has a deadline: an unreachable database makes a revocation
//! fail (and be retried with back-off), never hang the scheduler.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use commands::{Command, DbCommand, Env, Secret};
use migrations::{DbConnectionConfig, DbRole, LeaseSecret};
use projections::State;
use projections::database::{DbConnection, root_password_context, static_password_context};
use projections::kv::SealedValue;
use projections::lease::Lease;
use zeroize::Zeroizing;

use super::{ConnectionConfig, Database, DbError, PluginKind};
use crate::core::{Unsealed, now_nanos};
use crate::http::reply::Reply;

/// Longest wait for one database operation (connecting included).
const DEADLINE: Duration = Duration::from_secs(10);

/// Open pools by `(mount uuid, connection name)`, each with the seq of the connection's
/// configuration it was opened for (a newer configuration opens a new pool).
#[derive(Default)]
pub struct Pools {
    open: Mutex<HashMap<(String, String), (u64, Database)>>,
    /// Held from staging a static password to recording its outcome, so the scheduler and
    /// an API rotation never interleave on one role.
    rotation: tokio::sync::Mutex<()>,
}

/// Waits for the right to rotate static passwords (see [`Pools`]).
pub async fn rotation_guard(unsealed: &Unsealed) -> tokio::sync::MutexGuard<'_, ()> {
    unsealed.databases.rotation.lock().await
}

/// Drops a connection's pool (its configuration changed, or `reset/<name>`).
pub fn reset(unsealed: &Unsealed, mount: &str, name: &str) {
    let removed = unsealed.databases.open.lock().ok().and_then(|mut m| m.remove(&(mount.into(), name.into())));
    if let Some((_, db)) = removed {
        db.close_idle();
    }
}

async fn within<T>(what: &str, f: impl Future<Output = Result<T, DbError>>) -> Result<T, String> {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{what}: no answer from the database within {} s", DEADLINE.as_secs())),
    }
}

fn open_sealed(unsealed: &Unsealed, v: &SealedValue, context: &[u8]) -> Result<Zeroizing<String>, String> {
    let plain = unsealed.env.open(&v.sealed, &v.slot, context).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&plain).map_err(|_| "stored password is not UTF-8".to_string())?;
    Ok(Zeroizing::new(text.to_string()))
}

fn connection_config(cfg: &DbConnectionConfig, password: Zeroizing<String>) -> Result<ConnectionConfig, String> {
    let kind = PluginKind::from_plugin_name(&cfg.plugin_name).map_err(|e| e.to_string())?;
    let mut c = ConnectionConfig::new(kind, cfg.connection_url.clone(), cfg.username.clone(), password);
    c.max_open_connections = cfg.max_open_connections;
    c.max_idle_connections = cfg.max_idle_connections;
    c.max_connection_lifetime = Duration::from_secs(cfg.max_connection_lifetime);
    Ok(c)
}

/// Opens one connection with these settings now (`verify_connection`).
pub async fn verify(cfg: &DbConnectionConfig, password: &str) -> Result<(), String> {
    let c = connection_config(cfg, Zeroizing::new(password.to_string()))?;
    within("connecting", Database::connect(c, true)).await.map(drop)
}

/// The connection's current root password, if it has one (to verify new settings with).
pub fn root_password(unsealed: &Unsealed, state: &State, mount: &str, name: &str) -> Result<Option<Secret>, Reply> {
    let Some(c) = state.databases.connection(mount, name) else { return Ok(None) };
    let Some(p) = &c.password else { return Ok(None) };
    let plain = open_sealed(unsealed, p, &root_password_context(mount, name)).map_err(|e| Reply::error(500, e))?;
    Ok(Some(Secret::new(plain.as_str())))
}

/// The pool of a configured connection, opened on first use.
async fn database(unsealed: &Unsealed, state: &State, mount: &str, name: &str) -> Result<Database, String> {
    let conn = state
        .databases
        .connection(mount, name)
        .cloned()
        .ok_or_else(|| format!("no database configuration named {name:?}"))?;
    let key = (mount.to_string(), name.to_string());
    if let Ok(open) = unsealed.databases.open.lock()
        && let Some((seq, db)) = open.get(&key)
        && *seq == conn.seq
    {
        return Ok(db.clone());
    }
    let db = open_pool(unsealed, mount, name, &conn).await?;
    if let Ok(mut open) = unsealed.databases.open.lock() {
        open.insert(key, (conn.seq, db.clone()));
    }
    Ok(db)
}

async fn open_pool(unsealed: &Unsealed, mount: &str, name: &str, conn: &DbConnection) -> Result<Database, String> {
    let context = root_password_context(mount, name);
    let live = match &conn.password {
        Some(p) => open_sealed(unsealed, p, &context)?,
        None => Zeroizing::new(String::new()),
    };
    let Some(staged) = &conn.staged_password else {
        let c = connection_config(&conn.config, live)?;
        return within("connecting", Database::connect(c, false)).await;
    };
    // A rotate-root did not finish: the database holds the old password or the staged one.
    let first = within("connecting", Database::connect(connection_config(&conn.config, live)?, true)).await;
    if first.is_ok() {
        return first;
    }
    let staged = open_sealed(unsealed, staged, &context)?;
    let db = within("connecting", Database::connect(connection_config(&conn.config, staged)?, true)).await?;
    // The staged password works: the rotation did happen. Say so in the ledger.
    let confirm = DbCommand::ConfirmRootPassword { mount: mount.into(), name: name.into() };
    if let Err(e) = unsealed.submit_as_system(Command::Database(confirm)).await {
        tracing::warn!(error = %e, "could not record the finished root rotation");
    }
    Ok(db)
}

fn system_time(nanos: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// Creates a dynamic user valid until `valid_until` (ns): the lease's max expiry, so a user
/// outlives its lease by at most that much even if no revocation ever reaches the database.
pub async fn create_user(
    unsealed: &Unsealed,
    state: &State,
    mount: &str,
    role: &DbRole,
    username: &str,
    password: &Secret,
    valid_until: u64,
) -> Result<(), String> {
    let db = database(unsealed, state, mount, &role.db_name).await?;
    let at = Some(system_time(valid_until));
    within("creating the user", db.create_user(&role.creation_statements, username, password.expose(), at)).await
}

/// Revokes a lease's database user (the role's revocation statements, or the plugin's).
pub async fn revoke_lease_user(unsealed: &Unsealed, state: &State, lease: &Lease) -> Result<(), String> {
    let LeaseSecret::Database { config, role, username } = &lease.secret;
    let statements =
        state.databases.role(&lease.mount, role).map(|r| r.revocation_statements.clone()).unwrap_or_default();
    let db = database(unsealed, state, &lease.mount, config).await?;
    within("revoking the user", db.revoke_user(&statements, username)).await
}

/// Runs a role's renew statements, if it has any. Users are valid until their lease's max
/// expiry from the start, so there is nothing else to move.
pub async fn renew_lease_user(unsealed: &Unsealed, state: &State, lease: &Lease) -> Result<(), String> {
    let LeaseSecret::Database { config, role, username } = &lease.secret;
    let Some(role) = state.databases.role(&lease.mount, role) else { return Ok(()) };
    if role.renew_statements.is_empty() {
        return Ok(());
    }
    let db = database(unsealed, state, &lease.mount, config).await?;
    let at = system_time(lease.max_expire_time);
    within("renewing the user", db.renew_user(&role.renew_statements, username, at)).await
}

/// The TTL a renewal without `increment` asks for: the role's, else the mount's default.
pub fn lease_default_ttl(ctx: &crate::http::Ctx<'_>, lease: &Lease) -> u64 {
    let LeaseSecret::Database { role, .. } = &lease.secret;
    let role_ttl = ctx.state.databases.role(&lease.mount, role).map(|r| r.default_ttl).unwrap_or(0);
    if role_ttl > 0 {
        return role_ttl;
    }
    match ctx.state.mounts.get(&lease.mount) {
        Some(m) => super::routes::mount_ttls(ctx, m).0,
        None => ctx.core().settings.default_lease_ttl,
    }
}

/// Sets a connection's staged root password in the database (as its configured user).
pub async fn set_root_password(
    unsealed: &Unsealed,
    state: &State,
    mount: &str,
    name: &str,
    password: &Secret,
) -> Result<(), String> {
    let conn = state.databases.connection(mount, name).cloned().ok_or("no configuration found")?;
    // The pool must use the current password, not be reopened with the staged one.
    let db = database(unsealed, state, mount, name).await?;
    let statements = &conn.config.root_rotation_statements;
    let result =
        within("rotating the root password", db.set_password(statements, &conn.config.username, password.expose()))
            .await;
    reset(unsealed, mount, name);
    result
}

/// Sets a static role's staged password in the database.
pub async fn set_static_password(
    unsealed: &Unsealed,
    state: &State,
    mount: &str,
    name: &str,
    password: &Secret,
) -> Result<(), String> {
    let s = state.databases.static_role(mount, name).cloned().ok_or("no static role found for role name")?;
    let db = database(unsealed, state, mount, &s.role.db_name).await?;
    within("rotating the password", db.set_password(&s.role.rotation_statements, &s.role.username, password.expose()))
        .await
}

/// A static role's current password, unsealed for `static-creds`.
pub fn open_static_password(unsealed: &Unsealed, mount: &str, name: &str, v: &SealedValue) -> Result<Secret, Reply> {
    let plain = open_sealed(unsealed, v, &static_password_context(mount, name)).map_err(|e| Reply::error(500, e))?;
    Ok(Secret::new(plain.as_str()))
}

/// Rotates every static role whose period is up (or whose last attempt failed and is due
/// again). A password left staged by a failed attempt is set again as it is: the database
/// may already hold it.
pub async fn rotate_due_static_roles(unsealed: &Unsealed, published: &arc_swap::ArcSwap<State>) {
    let now = now_nanos();
    let due: Vec<_> = published.load().databases.all_statics().into_iter().filter(|(_, _, s)| s.due() <= now).collect();
    for (mount, name, _) in due {
        let _guard = rotation_guard(unsealed).await;
        // Read again under the guard: an API rotation may have just finished.
        let state = published.load_full();
        let Some(s) = state.databases.static_role(&mount, &name).cloned() else { continue };
        if s.due() > now_nanos() {
            continue;
        }
        let password = match &s.staged_password {
            Some(staged) => match open_sealed(unsealed, staged, &static_password_context(&mount, &name)) {
                Ok(p) => Secret::new(p.as_str()),
                Err(e) => {
                    tracing::error!(role = %name, error = %e, "cannot open a staged static password");
                    continue;
                }
            },
            None => {
                let Ok(p) = super::generate_password() else { continue };
                let password = Secret::new(p.as_str());
                let stage = DbCommand::StageStaticPassword {
                    mount: mount.clone(),
                    name: name.clone(),
                    password: password.clone(),
                };
                if let Err(e) = unsealed.submit_as_system(Command::Database(stage)).await {
                    tracing::error!(role = %name, error = %e, "could not stage a static password");
                    continue;
                }
                password
            }
        };
        let result = set_static_password(unsealed, &state, &mount, &name, &password).await;
        let record = match result {
            Ok(()) => DbCommand::ConfirmStaticPassword { mount: mount.clone(), name: name.clone() },
            Err(error) => {
                tracing::warn!(role = %name, error = %error, "static role rotation failed; will retry");
                DbCommand::RecordStaticRotationFailure { mount: mount.clone(), name: name.clone(), error }
            }
        };
        if let Err(e) = unsealed.submit_as_system(Command::Database(record)).await {
            tracing::error!(role = %name, error = %e, "could not record a static rotation");
        }
    }
}
