//! The database secrets engine and leases, against the real PostgreSQL and MariaDB of the
//! machine, checked the way a service and an operator would: issued credentials log in and
//! can do exactly what the role's statements granted; after revoke, revoke-prefix, expiry or
//! the revocation of the token that asked, the user is gone; renewal stops at max TTL; bad
//! SQL answers 400 with the database's error and leaves nothing behind; static passwords
//! and the root password really change in the database; a database that is down when a
//! lease expires gets its user dropped once it is back, every failed attempt in the ledger;
//! a lease that expired while the server was down is revoked at start.
//!
//! Every name a test creates is unique and registered with a cleanup scope that drops it
//! when the test ends. PostgreSQL trusts every local TCP login whatever the password, so
//! password checks are made on MariaDB, which does check them.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use e2e::db::{
    MYSQL_ADDR, MysqlCleanup, PG_ADDR, PgCleanup, mariadb, mariadb_as, mysql_accounts_with_prefix, pg_ident,
    pg_role_exists, psql, psql_as, sql_literal, unique_name,
};
use e2e::ledger::read_ledger;
use e2e::proxy::Proxy;
use e2e::{DevServer, Options, Server, Target, files_containing, random_alnum};
use migrations::{Body, Event, LeaseEnd};
use serde_json::{Value, json};

/// The dev server's root token.
const ROOT: &str = "root";
/// How long the server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A cairn dev server (these tests read cairn's data directory or rely on cairn's
/// lookup fields, so never OpenBao).
fn cairn_dev() -> Result<DevServer> {
    DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })
}

/// `method path` with `body` as `token`; the answer's status and JSON body (`Null` when
/// empty).
fn call_as(s: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let body = body.map(|b| b.to_string());
    let reply = s.http(method, &format!("/v1/{path}"), Some(token), body.as_deref())?;
    let json = if reply.body.trim().is_empty() { Value::Null } else { reply.json()? };
    Ok((reply.status, json))
}

/// `method path` as root; fails unless the answer is 2xx.
fn ok(s: &Server, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    ok_as(s, ROOT, method, path, body)
}

fn ok_as(s: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let (status, json) = call_as(s, token, method, path, body)?;
    ensure!((200..300).contains(&status), "{method} {path} answered {status}: {json}\n--- server log ---\n{}", s.log());
    Ok(json)
}

/// `method path` as root; fails unless the answer is `want`. The error text (`errors`
/// joined) of the answer.
fn refused(s: &Server, method: &str, path: &str, body: Option<Value>, want: u16) -> Result<String> {
    let (status, json) = call_as(s, ROOT, method, path, body)?;
    ensure!(status == want, "{method} {path}: expected {want}, got {status}: {json}");
    Ok(json["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        .unwrap_or_default())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Polls `check` every 100 ms until it holds; fails with `what` after `within`.
fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {within:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A unique role name: 8 lowercase characters, so that the default username templates
/// (which keep the first 8 or 10 characters of the role) make usernames no other test's
/// role shares.
fn role_name() -> Result<String> {
    unique_name("r", 7)
}

/// The prefix of the dynamic usernames of `role`: every token of these tests, the dev
/// root token included, has the display name "token", as in OpenBao.
fn user_prefix(role: &str) -> String {
    format!("v-token-{role}-")
}

/// The PostgreSQL users of `role` that exist now.
fn pg_users(role: &str) -> Result<Vec<String>> {
    e2e::db::pg_roles_with_prefix(&user_prefix(role))
}

/// Registers `role`'s dynamic users for dropping at the end.
fn pg_cleanup_users(cleanup: &mut PgCleanup, role: &str) {
    cleanup.role_prefix(&user_prefix(role));
}

/// When the PostgreSQL role `name` stops being valid (unix seconds), if ever.
fn pg_valid_until(name: &str) -> Result<Option<i64>> {
    let out = psql(&format!(
        "SELECT coalesce(extract(epoch FROM rolvaliduntil)::bigint::text, 'never') FROM pg_roles WHERE rolname = {}",
        sql_literal(name)
    ))?;
    match out.trim() {
        "never" => Ok(None),
        v => Ok(Some(v.parse().with_context(|| format!("rolvaliduntil of {name}: {v:?}"))?)),
    }
}

/// A PostgreSQL connection URL to `addr` in Vault's template form.
fn pg_url(addr: &str) -> String {
    format!("postgresql://{{{{username}}}}:{{{{password}}}}@{addr}/postgres?sslmode=disable")
}

/// Mounts the database engine at `database/`.
fn enable_database(s: &Server) -> Result<()> {
    ok(s, "POST", "sys/mounts/database", Some(json!({ "type": "database" })))?;
    Ok(())
}

/// `database/config/<name>` for the shared PostgreSQL at `addr` (trust auth: the
/// password is only there to be sealed, and to be searched for on disk).
fn pg_config(s: &Server, name: &str, addr: &str, allowed_roles: &str, password: &str) -> Result<()> {
    ok(
        s,
        "POST",
        &format!("database/config/{name}"),
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg_url(addr),
            "username": "postgres",
            "password": password,
            "allowed_roles": allowed_roles,
        })),
    )?;
    Ok(())
}

/// The creation statement of a PostgreSQL login role valid until the lease's expiry.
const PG_CREATE_USER: &str =
    r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;

/// `database/roles/<role>` on connection `db` with `creation` statements and TTLs.
fn write_role(s: &Server, role: &str, db: &str, creation: &str, default_ttl: &str, max_ttl: &str) -> Result<()> {
    ok(
        s,
        "POST",
        &format!("database/roles/{role}"),
        Some(json!({ "db_name": db, "creation_statements": creation, "default_ttl": default_ttl, "max_ttl": max_ttl })),
    )?;
    Ok(())
}

/// A cairn dev server with the database engine, the connection `pg` to the shared
/// PostgreSQL and a role of [`PG_CREATE_USER`] with the given TTLs, whose users are
/// dropped at the end. Bind `cleanup` first so that it is dropped last.
struct PgFixture {
    cleanup: PgCleanup,
    role: String,
    s: DevServer,
}

fn pg_fixture(default_ttl: &str, max_ttl: &str) -> Result<PgFixture> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let s = cairn_dev()?;
    enable_database(&s)?;
    pg_config(&s, "pg", PG_ADDR, &role, "unused")?;
    write_role(&s, &role, "pg", PG_CREATE_USER, default_ttl, max_ttl)?;
    Ok(PgFixture { cleanup, role, s })
}

/// Issued credentials, as `database/creds/<role>` returned them.
#[derive(Debug, Clone)]
struct Creds {
    lease_id: String,
    lease_duration: u64,
    username: String,
    password: String,
}

fn creds_as(s: &Server, token: &str, role: &str) -> Result<Creds> {
    let r = ok_as(s, token, "GET", &format!("database/creds/{role}"), None)?;
    let text = |v: &Value, what: &str| -> Result<String> {
        v.as_str().map(str::to_string).with_context(|| format!("creds answer has no {what}: {r}"))
    };
    Ok(Creds {
        lease_id: text(&r["lease_id"], "lease_id")?,
        lease_duration: r["lease_duration"].as_u64().with_context(|| format!("no lease_duration: {r}"))?,
        username: text(&r["data"]["username"], "username")?,
        password: text(&r["data"]["password"], "password")?,
    })
}

fn creds(s: &Server, role: &str) -> Result<Creds> {
    creds_as(s, ROOT, role)
}

/// `sys/leases/lookup` of `lease_id`: `Some(data)` while the lease lives, `None` once
/// the server says "invalid lease".
fn lookup(s: &Server, lease_id: &str) -> Result<Option<Value>> {
    let (status, json) = call_as(s, ROOT, "PUT", "sys/leases/lookup", Some(json!({ "lease_id": lease_id })))?;
    match status {
        200 => Ok(Some(json["data"].clone())),
        400 if json.to_string().contains("invalid lease") => Ok(None),
        _ => bail!("lease lookup answered {status}: {json}"),
    }
}

/// The lease ids under `prefix` that `LIST sys/leases/lookup/<prefix>` shows.
fn listed_leases(s: &Server, prefix: &str) -> Result<Vec<String>> {
    let (status, json) = call_as(s, ROOT, "LIST", &format!("sys/leases/lookup/{prefix}"), None)?;
    match status {
        404 => Ok(Vec::new()),
        200 => Ok(json["data"]["keys"]
            .as_array()
            .map(|k| k.iter().filter_map(Value::as_str).map(|k| format!("{prefix}{k}")).collect())
            .unwrap_or_default()),
        _ => bail!("LIST sys/leases/lookup/{prefix} answered {status}: {json}"),
    }
}

fn stop(s: &mut Server) -> Result<()> {
    let status = s.stop(STOP_TIMEOUT)?;
    ensure!(status.success(), "SIGTERM should end the server with exit code 0, got {status}\n{}", s.log());
    Ok(())
}

/// What the ledger of a stopped server records about the end of one lease.
struct LeaseHistory {
    /// Why it ended (once, if all is well).
    ends: Vec<LeaseEnd>,
    /// Its failed revocation attempts: attempt number and error.
    failures: Vec<(u32, String)>,
}

fn lease_history(s: &Server, lease_id: &str) -> Result<LeaseHistory> {
    let mut history = LeaseHistory { ends: Vec::new(), failures: Vec::new() };
    for stored in read_ledger(s.data_dir())? {
        match &stored.env.body {
            Body::App(Event::LeaseRevoked(r)) if r.lease_id == lease_id => history.ends.push(r.reason),
            Body::App(Event::LeaseRevocationFailed(f)) if f.lease_id == lease_id => {
                history.failures.push((f.attempt, f.error.clone()))
            }
            _ => {}
        }
    }
    Ok(history)
}

/// A schema with one table for the granted statements to reach.
fn pg_schema_with_table(cleanup: &mut PgCleanup) -> Result<String> {
    let schema = unique_name("cairn_e2e_", 10)?;
    cleanup.schema(&schema);
    psql(&format!(
        "CREATE SCHEMA {0}; CREATE TABLE {0}.items (n int); INSERT INTO {0}.items VALUES (1), (2), (3)",
        schema
    ))?;
    Ok(schema)
}

/// The full life of a PostgreSQL credential: issued with the role's TTL, able to read
/// what it was granted and nothing more, valid until the lease's max expiry in the
/// database itself, renewed, listed, revoked: then gone. No password is ever on disk.
#[test]
fn postgres_credentials_can_do_what_was_granted_until_revoked() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let schema = pg_schema_with_table(&mut cleanup)?;
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let s = cairn_dev()?;
    enable_database(&s)?;
    let root_password = format!("root-{}", random_alnum(24)?);
    pg_config(&s, "pg", PG_ADDR, &role, &root_password)?;
    let creation = format!(
        r#"{PG_CREATE_USER} GRANT USAGE ON SCHEMA {schema} TO "{{{{name}}}}"; GRANT SELECT ON {schema}.items TO "{{{{name}}}}";"#
    );
    write_role(&s, &role, "pg", &creation, "1h", "2h")?;

    let before = unix_now();
    let c = creds(&s, &role)?;
    let after = unix_now();
    ensure!(c.lease_id.starts_with(&format!("database/creds/{role}/")), "lease id {}", c.lease_id);
    ensure!(c.lease_duration == 3600, "the role's default_ttl is 1h, lease_duration is {}", c.lease_duration);
    ensure!(c.username.starts_with(&format!("v-token-{role}-")), "Vault's default username template: {}", c.username);
    ensure!(c.password.len() >= 20, "a password of {} characters", c.password.len());
    ensure!(pg_role_exists(&c.username)?, "the user {} was not created", c.username);

    // The database itself ends the user at the lease's max expiry (2h), whatever cairn does.
    let until = pg_valid_until(&c.username)?.context("the user must have a VALID UNTIL")?;
    ensure!(
        (before + 7200 - 2..=after + 7200 + 2).contains(&until),
        "VALID UNTIL {until}, issued at {before}..{after}"
    );

    // What the statements granted works; nothing else does.
    let q = |sql: &str| psql_as(&c.username, &c.password, sql);
    let read = q(&format!("SELECT sum(n) FROM {schema}.items"))?.success()?;
    ensure!(read.stdout.trim() == "6", "the user reads the table: {read}");
    let insert = q(&format!("INSERT INTO {schema}.items VALUES (4)"))?;
    ensure!(insert.code != Some(0) && insert.stderr.contains("permission denied"), "insert must be denied: {insert}");

    // Lookup, renew, list.
    let data = lookup(&s, &c.lease_id)?.context("the lease must be live")?;
    ensure!(data["renewable"] == json!(true) && data["ttl"].as_u64().is_some_and(|t| t > 3500), "lookup: {data}");
    let renewed = ok(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": c.lease_id, "increment": "30m" })))?;
    ensure!(renewed["lease_duration"] == json!(1800) && renewed["lease_id"] == json!(c.lease_id), "renew: {renewed}");
    ensure!(listed_leases(&s, &format!("database/creds/{role}/"))? == vec![c.lease_id.clone()], "LIST shows the lease");

    // Revoke: the user is gone before the answer, and can do nothing any more.
    ok(&s, "PUT", "sys/leases/revoke", Some(json!({ "lease_id": c.lease_id })))?;
    ensure!(!pg_role_exists(&c.username)?, "revoke must drop {}", c.username);
    let after_revoke = q(&format!("SELECT sum(n) FROM {schema}.items"))?;
    ensure!(after_revoke.code != Some(0), "a revoked user must not log in: {after_revoke}");
    ensure!(lookup(&s, &c.lease_id)?.is_none(), "the lease must be gone after revoke");
    ensure!(listed_leases(&s, &format!("database/creds/{role}/"))?.is_empty(), "LIST after revoke");

    // Neither the user's password nor the connection's is on disk in clear, and the
    // connection's is never read back.
    let config = ok(&s, "GET", "database/config/pg", None)?;
    ensure!(!config.to_string().contains(&root_password), "the root password must never be read back: {config}");
    for secret in [&c.password, &root_password] {
        let found = files_containing(s.data_dir(), secret.as_bytes())?;
        ensure!(found.is_empty(), "a password is in clear in {found:?}");
    }
    ensure!(!s.log().contains(&c.password), "the server log holds the user's password");
    Ok(())
}

/// A lease left alone is revoked at its expiry: the user disappears within a couple of
/// seconds of it, and the ledger says why.
#[test]
fn expired_lease_drops_the_user() -> Result<()> {
    let PgFixture { cleanup: _cleanup, role, mut s } = pg_fixture("3s", "1h")?;
    let issued = Instant::now();
    let c = creds(&s, &role)?;
    ensure!(c.lease_duration == 3, "lease_duration {}", c.lease_duration);
    ensure!(pg_role_exists(&c.username)?, "the user was not created");
    wait_until(Duration::from_secs(8), "the expired user is dropped", || Ok(!pg_role_exists(&c.username)?))?;
    ensure!(issued.elapsed() >= Duration::from_millis(2900), "dropped before its expiry: {:?}", issued.elapsed());
    // The user is dropped first, then the lease recorded as revoked.
    wait_until(Duration::from_secs(2), "the expired lease is gone", || Ok(lookup(&s, &c.lease_id)?.is_none()))?;
    stop(&mut s)?;
    let LeaseHistory { ends, failures } = lease_history(&s, &c.lease_id)?;
    ensure!(ends == vec![LeaseEnd::Expired] && failures.is_empty(), "ledger: ends {ends:?}, failures {failures:?}");
    Ok(())
}

/// Renewal extends a lease up to its max TTL and no further: the capped renewal warns, the
/// next one is refused, and the user still dies at max TTL.
#[test]
fn renewal_stops_at_max_ttl() -> Result<()> {
    let PgFixture { cleanup: _cleanup, role, s } = pg_fixture("2s", "6s")?;
    let issued = Instant::now();
    let c = creds(&s, &role)?;
    let capped = ok(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": c.lease_id, "increment": "1h" })))?;
    let ttl = capped["lease_duration"].as_u64().context("lease_duration")?;
    ensure!((4..=6).contains(&ttl), "a renewal past max_ttl is capped at it (6s from issue): {capped}");
    ensure!(
        capped["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "a capped renewal carries a warning: {capped}"
    );
    let e = refused(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": c.lease_id, "increment": "1h" })), 400)?;
    ensure!(e.contains("max TTL"), "renewal at max TTL is refused: {e}");
    ensure!(pg_role_exists(&c.username)?, "the user lives until max TTL");
    wait_until(Duration::from_secs(10), "the user is dropped at max TTL", || Ok(!pg_role_exists(&c.username)?))?;
    ensure!(issued.elapsed() >= Duration::from_millis(5900), "dropped before max TTL: {:?}", issued.elapsed());
    // The user is dropped first, then the lease recorded as revoked (at the next tick).
    wait_until(Duration::from_secs(2), "the lease is gone", || Ok(lookup(&s, &c.lease_id)?.is_none()))?;
    let e = refused(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": c.lease_id })), 400)?;
    ensure!(e.contains("lease not found"), "renewing a revoked lease: {e}");
    Ok(())
}

/// A role without TTLs takes the mount's (as tuned): default_lease_ttl for the lease,
/// max_lease_ttl as its cap, and the user's VALID UNTIL follows the cap.
#[test]
fn ttls_come_from_the_mount_when_the_role_has_none() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let s = cairn_dev()?;
    ok(
        &s,
        "POST",
        "sys/mounts/database",
        Some(json!({ "type": "database", "config": { "default_lease_ttl": "10m", "max_lease_ttl": "1h" } })),
    )?;
    ok(&s, "POST", "sys/mounts/database/tune", Some(json!({ "max_lease_ttl": "20m" })))?;
    pg_config(&s, "pg", PG_ADDR, &role, "unused")?;
    ok(
        &s,
        "POST",
        &format!("database/roles/{role}"),
        Some(json!({ "db_name": "pg", "creation_statements": PG_CREATE_USER })),
    )?;
    let before = unix_now();
    let c = creds(&s, &role)?;
    ensure!(c.lease_duration == 600, "the mount's default_lease_ttl (10m): {}", c.lease_duration);
    let until = pg_valid_until(&c.username)?.context("VALID UNTIL")?;
    ensure!(
        (before + 1200 - 2..=unix_now() + 1200 + 2).contains(&until),
        "VALID UNTIL at the tuned max (20m): {until}"
    );
    let renewed = ok(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": c.lease_id, "increment": "1h" })))?;
    let ttl = renewed["lease_duration"].as_u64().context("lease_duration")?;
    ensure!((1190..=1200).contains(&ttl), "renewal capped at the tuned max_lease_ttl (20m): {renewed}");
    ok(&s, "PUT", &format!("sys/leases/revoke-prefix/database/creds/{role}"), None)?;
    ensure!(!pg_role_exists(&c.username)?, "revoke-prefix drops the user");
    Ok(())
}

/// revoke-prefix ends every lease under the prefix, and only those: a role whose name
/// extends the prefix keeps its users.
#[test]
fn revoke_prefix_drops_every_user_under_the_prefix() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    let sibling = format!("{role}x");
    pg_cleanup_users(&mut cleanup, &role);
    let s = cairn_dev()?;
    enable_database(&s)?;
    pg_config(&s, "pg", PG_ADDR, &format!("{role},{sibling}"), "unused")?;
    write_role(&s, &role, "pg", PG_CREATE_USER, "1h", "1h")?;
    write_role(&s, &sibling, "pg", PG_CREATE_USER, "1h", "1h")?;
    let mine: Vec<Creds> = (0..4).map(|_| creds(&s, &role)).collect::<Result<_>>()?;
    let other = creds(&s, &sibling)?;
    // The default template keeps 8 characters of the role: the sibling's users share the
    // prefix of the role's, so tell them apart by name.
    let is_mine = |u: &String| mine.iter().any(|c| &c.username == u);
    ensure!(pg_users(&role)?.iter().filter(|u| is_mine(u)).count() == 4, "four users of {role}");

    ok(&s, "PUT", &format!("sys/leases/revoke-prefix/database/creds/{role}"), None)?;
    for c in &mine {
        ensure!(!pg_role_exists(&c.username)?, "revoke-prefix must drop {}", c.username);
        ensure!(lookup(&s, &c.lease_id)?.is_none(), "lease {} must be gone", c.lease_id);
    }
    ensure!(pg_role_exists(&other.username)?, "revoke-prefix of {role} must not touch {sibling}'s user");
    ensure!(lookup(&s, &other.lease_id)?.is_some(), "revoke-prefix of {role} must not touch {sibling}'s lease");

    // Revoke-prefix needs sudo: a token without it is refused and nothing changes.
    ok(
        &s,
        "PUT",
        "sys/policies/acl/ops",
        Some(json!({ "policy": r#"path "sys/leases/*" { capabilities = ["update"] }"# })),
    )?;
    let token = ok(&s, "POST", "auth/token/create", Some(json!({ "policies": ["ops"] })))?["auth"]["client_token"]
        .as_str()
        .context("client_token")?
        .to_string();
    let (status, _) = call_as(&s, &token, "PUT", &format!("sys/leases/revoke-prefix/database/creds/{sibling}"), None)?;
    ensure!(status == 403, "revoke-prefix without sudo: {status}");
    ensure!(pg_role_exists(&other.username)?, "a refused revoke-prefix changes nothing");

    // An exact lease id as the prefix revokes that lease.
    ok(&s, "PUT", &format!("sys/leases/revoke-prefix/{}", other.lease_id), None)?;
    ensure!(!pg_role_exists(&other.username)?, "revoke-prefix of a lease id drops its user");
    Ok(())
}

/// A role whose statements fail answers 400 with the database's own error, and leaves no
/// live lease and no user behind (the statements run in one transaction).
#[test]
fn bad_sql_answers_400_and_leaves_nothing_behind() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let table = unique_name("no_such_table_", 8)?;
    let s = cairn_dev()?;
    enable_database(&s)?;
    pg_config(&s, "pg", PG_ADDR, &role, "unused")?;
    let creation = format!(r#"{PG_CREATE_USER} GRANT SELECT ON {table} TO "{{{{name}}}}";"#);
    write_role(&s, &role, "pg", &creation, "1h", "1h")?;
    for _ in 0..2 {
        let e = refused(&s, "GET", &format!("database/creds/{role}"), None, 400)?;
        ensure!(e.contains(&format!("relation \"{table}\" does not exist")), "the database's error: {e}");
    }
    ensure!(pg_users(&role)?.is_empty(), "no user may be left: {:?}", pg_users(&role)?);
    ensure!(listed_leases(&s, &format!("database/creds/{role}/"))?.is_empty(), "no live lease may be left");
    Ok(())
}

/// MariaDB account for cairn to connect as (MariaDB checks passwords, unlike the local
/// PostgreSQL): allowed to create users and grant what it holds.
fn mysql_admin(cleanup: &mut MysqlCleanup) -> Result<(String, String)> {
    let admin = unique_name("cairn_adm_", 8)?;
    let password = format!("adm-{}", random_alnum(20)?);
    cleanup.user(&admin);
    mariadb(&format!(
        "CREATE USER {0}@'%' IDENTIFIED BY {1}; GRANT ALL PRIVILEGES ON *.* TO {0}@'%' WITH GRANT OPTION",
        sql_literal(&admin),
        sql_literal(&password)
    ))?;
    Ok((admin, password))
}

fn mysql_config(s: &Server, name: &str, admin: &str, password: &str, allowed_roles: &str) -> Result<()> {
    ok(
        s,
        "POST",
        &format!("database/config/{name}"),
        Some(json!({
            "plugin_name": "mysql-database-plugin",
            "connection_url": format!("{{{{username}}}}:{{{{password}}}}@tcp({MYSQL_ADDR})/"),
            "username": admin,
            "password": password,
            "allowed_roles": allowed_roles,
            "max_open_connections": 4,
        })),
    )?;
    Ok(())
}

/// MariaDB credentials log in with their password (and not without it), read what was
/// granted, are refused the rest, and are gone after revoke; cairn's connection password
/// can be rotated and is then known to nobody else.
#[test]
fn mariadb_credentials_and_root_rotation() -> Result<()> {
    let mut cleanup = MysqlCleanup::new();
    let (admin, admin_password) = mysql_admin(&mut cleanup)?;
    let db = unique_name("cairn_e2e_", 10)?;
    cleanup.database(&db);
    mariadb(&format!("CREATE DATABASE {db}; CREATE TABLE {db}.items (n int); INSERT INTO {db}.items VALUES (1), (2)"))?;
    let role = role_name()?;
    cleanup.user_prefix(&user_prefix(&role));
    let s = cairn_dev()?;
    enable_database(&s)?;
    mysql_config(&s, "my", &admin, &admin_password, &role)?;
    let creation = format!(
        "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON {db}.* TO '{{{{name}}}}'@'%';"
    );
    write_role(&s, &role, "my", &creation, "1h", "1h")?;

    let c = creds(&s, &role)?;
    ensure!(c.username.len() <= 32 && c.username.starts_with(&format!("v-token-{role}-")), "username {}", c.username);
    let read = mariadb_as(&c.username, &c.password, &format!("SELECT sum(n) FROM {db}.items"))?.success()?;
    ensure!(read.stdout.trim() == "3", "the user reads what it was granted: {read}");
    let insert = mariadb_as(&c.username, &c.password, &format!("INSERT INTO {db}.items VALUES (3)"))?;
    ensure!(insert.code != Some(0) && insert.stderr.contains("denied"), "insert must be denied: {insert}");
    let wrong = mariadb_as(&c.username, "not-the-password", "SELECT 1")?;
    ensure!(wrong.code != Some(0) && wrong.stderr.contains("Access denied"), "a wrong password must fail: {wrong}");

    // Rotate the connection's password: the old one stops working at once, and cairn,
    // the only holder of the new one, still issues credentials with it.
    ok(&s, "POST", "database/rotate-root/my", None)?;
    let old = mariadb_as(&admin, &admin_password, "SELECT 1")?;
    ensure!(old.code != Some(0) && old.stderr.contains("Access denied"), "the old root password must be dead: {old}");
    let config = ok(&s, "GET", "database/config/my", None)?;
    ensure!(config["data"].get("password").is_none(), "the root password is never read back: {config}");
    let second = creds(&s, &role)?;
    mariadb_as(&second.username, &second.password, "SELECT 1")?.success()?;

    ok(&s, "PUT", &format!("sys/leases/revoke-prefix/database/creds/{role}"), None)?;
    for user in [&c.username, &second.username] {
        ensure!(mysql_accounts_with_prefix(user)?.is_empty(), "revoke must drop the account {user}");
    }
    let gone = mariadb_as(&c.username, &c.password, "SELECT 1")?;
    ensure!(gone.code != Some(0), "a revoked user must not log in: {gone}");
    for secret in [&c.password, &second.password, &admin_password] {
        let found = files_containing(s.data_dir(), secret.as_bytes())?;
        ensure!(found.is_empty(), "a password is in clear in {found:?}");
    }
    Ok(())
}

/// A static role's password really changes in the database, on demand and every
/// rotation period: MariaDB accepts the new one and refuses the old; on PostgreSQL the
/// stored password hash changes.
#[test]
fn static_role_passwords_rotate_in_the_database() -> Result<()> {
    let mut my_cleanup = MysqlCleanup::new();
    let mut pg_cleanup = PgCleanup::new();
    let (admin, admin_password) = mysql_admin(&mut my_cleanup)?;
    let my_user = unique_name("cairn_st_", 8)?;
    my_cleanup.user(&my_user);
    let initial = format!("init-{}", random_alnum(20)?);
    mariadb(&format!("CREATE USER {}@'%' IDENTIFIED BY {}", sql_literal(&my_user), sql_literal(&initial)))?;
    let pg_user = unique_name("cairn_st_", 8)?;
    pg_cleanup.role(&pg_user);
    psql(&format!("CREATE ROLE {} WITH LOGIN PASSWORD {}", pg_ident(&pg_user), sql_literal(&initial)))?;
    let pg_hash = || psql(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = {}", sql_literal(&pg_user)));
    let pg_hash_before = pg_hash()?;

    let s = cairn_dev()?;
    enable_database(&s)?;
    mysql_config(&s, "my", &admin, &admin_password, "app-my")?;
    pg_config(&s, "pg", PG_ADDR, "app-pg", "unused")?;
    ok(
        &s,
        "POST",
        "database/static-roles/app-my",
        Some(json!({ "db_name": "my", "username": my_user, "rotation_period": "1h" })),
    )?;
    ok(
        &s,
        "POST",
        "database/static-roles/app-pg",
        Some(json!({ "db_name": "pg", "username": pg_user, "rotation_period": "5s" })),
    )?;

    // Creating the role set a password nobody knew before.
    let first = ok(&s, "GET", "database/static-creds/app-my", None)?["data"].clone();
    let p1 = first["password"].as_str().context("password")?.to_string();
    ensure!(first["username"] == json!(my_user) && p1 != initial, "static-creds: {first}");
    mariadb_as(&my_user, &p1, "SELECT 1")?.success()?;
    let dead = mariadb_as(&my_user, &initial, "SELECT 1")?;
    ensure!(dead.code != Some(0), "the password from before the role must be dead: {dead}");

    // rotate-role: a new password, live in the database at once.
    ok(&s, "POST", "database/rotate-role/app-my", None)?;
    let p2 = ok(&s, "GET", "database/static-creds/app-my", None)?["data"]["password"]
        .as_str()
        .context("password")?
        .to_string();
    ensure!(p2 != p1, "rotate-role must change the password");
    mariadb_as(&my_user, &p2, "SELECT 1")?.success()?;
    let dead = mariadb_as(&my_user, &p1, "SELECT 1")?;
    ensure!(dead.code != Some(0), "the rotated-out password must be dead: {dead}");

    // PostgreSQL, every 5 s by itself: the stored hash keeps changing.
    let after_create = pg_hash()?;
    ensure!(after_create != pg_hash_before, "creating the static role sets a new PostgreSQL password");
    let pw_now = || -> Result<String> {
        Ok(ok(&s, "GET", "database/static-creds/app-pg", None)?["data"]["password"]
            .as_str()
            .context("password")?
            .to_string())
    };
    let first_pg = pw_now()?;
    wait_until(Duration::from_secs(15), "the PostgreSQL static password rotates by itself", || {
        Ok(pw_now()? != first_pg && pg_hash()? != after_create)
    })?;
    for secret in [&p1, &p2, &first_pg] {
        let found = files_containing(s.data_dir(), secret.as_bytes())?;
        ensure!(found.is_empty(), "a static password is in clear in {found:?}");
    }
    Ok(())
}

/// The database is down when a lease expires: each failed revocation is retried with
/// back-off, recorded in the ledger and shown by lookup, while the user's own VALID UNTIL
/// bounds the exposure; once the database is back, the user is dropped.
#[test]
fn revocation_survives_an_unreachable_database() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let upstream: SocketAddr = PG_ADDR.parse()?;
    let proxy = Proxy::start(upstream)?;
    let mut s = cairn_dev()?;
    enable_database(&s)?;
    let via_proxy = format!("127.0.0.1:{}", proxy.port());
    pg_config(&s, "pg", &via_proxy, &role, "unused")?;
    write_role(&s, &role, "pg", PG_CREATE_USER, "2s", "2s")?;
    let issued = unix_now();
    let c = creds(&s, &role)?;
    proxy.off();

    wait_until(Duration::from_secs(20), "two failed revocation attempts show in lookup", || {
        Ok(lookup(&s, &c.lease_id)?.is_some_and(|d| d["revocation_attempts"].as_u64().is_some_and(|n| n >= 2)))
    })?;
    let data = lookup(&s, &c.lease_id)?.context("the lease lives until revoked")?;
    ensure!(data["last_revocation_error"].as_str().is_some_and(|e| !e.is_empty()), "lookup: {data}");
    ensure!(data["next_revocation_attempt"].is_string() && data["renewable"] == json!(false), "lookup: {data}");
    ensure!(pg_role_exists(&c.username)?, "the user outlives the outage");
    let until = pg_valid_until(&c.username)?.context("VALID UNTIL bounds the exposure")?;
    ensure!(
        (issued - 1..=issued + 4).contains(&until),
        "VALID UNTIL {until} must be the lease's max expiry ({issued}+2)"
    );

    proxy.on()?;
    wait_until(Duration::from_secs(30), "the user is dropped once the database is back", || {
        Ok(!pg_role_exists(&c.username)?)
    })?;
    wait_until(Duration::from_secs(5), "the lease is gone", || Ok(lookup(&s, &c.lease_id)?.is_none()))?;

    stop(&mut s)?;
    let LeaseHistory { ends, failures } = lease_history(&s, &c.lease_id)?;
    ensure!(ends == vec![LeaseEnd::Expired], "the ledger ends the lease once, as expired: {ends:?}");
    let attempts: Vec<u32> = failures.iter().map(|(n, _)| *n).collect();
    ensure!(attempts.len() >= 2 && attempts.iter().zip(1..).all(|(&a, n)| a == n), "attempts 1, 2, …: {attempts:?}");
    ensure!(failures.iter().all(|(_, e)| !e.contains(&c.password)), "an error holds the password");
    Ok(())
}

/// Revoking a token revokes the leases it asked for and those of its child tokens; the
/// ledger ties every lease to the accessor of the token that held it.
#[test]
fn revoking_a_token_revokes_its_leases_and_its_childrens() -> Result<()> {
    let PgFixture { cleanup: _cleanup, role, mut s } = pg_fixture("1h", "1h")?;
    let policy = format!(
        "path \"database/creds/{role}\" {{ capabilities = [\"read\"] }}\npath \"auth/token/create\" {{ capabilities = [\"update\"] }}"
    );
    ok(&s, "PUT", "sys/policies/acl/app", Some(json!({ "policy": policy })))?;
    let token = |as_token: &str| -> Result<(String, String)> {
        let auth =
            ok_as(&s, as_token, "POST", "auth/token/create", Some(json!({ "policies": ["app"] })))?["auth"].clone();
        Ok((
            auth["client_token"].as_str().context("client_token")?.to_string(),
            auth["accessor"].as_str().context("accessor")?.to_string(),
        ))
    };
    let (parent, parent_accessor) = token(ROOT)?;
    let (child, child_accessor) = token(&parent)?;
    let (bystander, _) = token(ROOT)?;
    let of_parent = creds_as(&s, &parent, &role)?;
    let of_child = creds_as(&s, &child, &role)?;
    let of_bystander = creds_as(&s, &bystander, &role)?;
    ensure!(of_parent.username.starts_with(&format!("v-token-{role}-")), "username {}", of_parent.username);

    ok(&s, "POST", "auth/token/revoke", Some(json!({ "token": parent })))?;
    for c in [&of_parent, &of_child] {
        // Token revocation ends its leases in the background: the user is dropped first,
        // then the lease is recorded as revoked.
        wait_until(Duration::from_secs(10), "the token's leases are revoked", || {
            Ok(!pg_role_exists(&c.username)? && lookup(&s, &c.lease_id)?.is_none())
        })?;
    }
    ensure!(pg_role_exists(&of_bystander.username)?, "another token's user must stay");

    stop(&mut s)?;
    let mut issued_to = Vec::new();
    for stored in read_ledger(s.data_dir())? {
        if let Body::App(Event::LeaseIssued(l)) = &stored.env.body {
            issued_to.push((l.lease_id.clone(), l.token.clone()));
        }
    }
    for (c, accessor) in [(&of_parent, &parent_accessor), (&of_child, &child_accessor)] {
        ensure!(
            issued_to.contains(&(c.lease_id.clone(), accessor.clone())),
            "the ledger ties {} to the accessor {accessor}: {issued_to:?}",
            c.lease_id
        );
        let ends = lease_history(&s, &c.lease_id)?.ends;
        ensure!(ends == vec![LeaseEnd::TokenRevoked], "{}: {ends:?}", c.lease_id);
    }
    Ok(())
}

/// Leases that expire while the server is down are revoked when it starts again.
#[test]
fn leases_that_expired_while_down_are_revoked_at_start() -> Result<()> {
    let PgFixture { cleanup: _cleanup, role, mut s } = pg_fixture("3s", "1h")?;
    let c = creds(&s, &role)?;
    let lives = creds(&s, &role)?;
    ok(&s, "PUT", "sys/leases/renew", Some(json!({ "lease_id": lives.lease_id, "increment": "1h" })))?;
    stop(&mut s)?;
    thread::sleep(Duration::from_secs(4));
    ensure!(pg_role_exists(&c.username)?, "nothing revokes while the server is down");
    s.start_again()?;
    wait_until(Duration::from_secs(5), "the lease that expired while down is revoked", || {
        Ok(!pg_role_exists(&c.username)? && lookup(&s, &c.lease_id)?.is_none())
    })?;
    ensure!(lookup(&s, &lives.lease_id)?.is_some(), "the renewed lease lives on after a restart");
    ensure!(pg_role_exists(&lives.username)?, "the renewed lease's user stays");
    Ok(())
}

/// The CLI flow of a Vault user, with the real `bao` CLI (also against OpenBao with
/// `CAIRN_COMPAT_TARGET=openbao`).
#[test]
fn cli_flow_with_bao() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = role_name()?;
    pg_cleanup_users(&mut cleanup, &role);
    let s = DevServer::start()?;
    s.bao(&["secrets", "enable", "database"])?.success()?;
    s.bao(&[
        "write",
        "database/config/pg",
        "plugin_name=postgresql-database-plugin",
        &format!("connection_url={}", pg_url(PG_ADDR)),
        "username=postgres",
        "password=unused",
        &format!("allowed_roles={role}"),
    ])?
    .success()?;
    s.bao(&[
        "write",
        &format!("database/roles/{role}"),
        "db_name=pg",
        &format!("creation_statements={PG_CREATE_USER}"),
        "default_ttl=1h",
        "max_ttl=24h",
    ])?
    .success()?;
    let read = || -> Result<(String, String)> {
        let r = s.bao(&["read", "-format=json", &format!("database/creds/{role}")])?.success()?.json()?;
        Ok((
            r["lease_id"].as_str().context("lease_id")?.to_string(),
            r["data"]["username"].as_str().context("username")?.to_string(),
        ))
    };
    let (lease, user) = read()?;
    let (_, user2) = read()?;
    ensure!(pg_role_exists(&user)? && pg_role_exists(&user2)?, "bao read database/creds creates users");

    let renewed = s.bao(&["lease", "renew", "-format=json", "-increment=2h", &lease])?.success()?.json()?;
    ensure!(renewed["lease_id"] == json!(lease) && renewed["lease_duration"] == json!(7200), "renew: {renewed}");
    let looked = s.bao(&["lease", "lookup", "-format=json", &lease])?.success()?.json()?;
    ensure!(looked["data"]["id"] == json!(lease), "lookup: {looked}");
    let listed =
        s.bao(&["list", "-format=json", &format!("sys/leases/lookup/database/creds/{role}")])?.success()?.json()?;
    ensure!(listed.as_array().is_some_and(|k| k.len() == 2), "two leases listed: {listed}");

    // Without -sync the CLI asks for a revocation in the background (202): wait for it.
    s.bao(&["lease", "revoke", "-prefix", &format!("database/creds/{role}")])?.success()?;
    wait_until(Duration::from_secs(10), "bao lease revoke -prefix drops every user", || {
        Ok(!pg_role_exists(&user)? && !pg_role_exists(&user2)?)
    })?;
    let gone = s.bao(&["lease", "lookup", &lease])?;
    ensure!(gone.code != Some(0) && gone.stderr.contains("invalid lease"), "lookup after revoke: {gone}");
    Ok(())
}
