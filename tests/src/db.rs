//! The PostgreSQL and MariaDB servers the database tests share with other tests and
//! developers (`127.0.0.1:5432`, superuser `postgres` with trust auth; `127.0.0.1:3306`,
//! `root` with an empty password), reached through their own clients (`psql`, `mariadb`).
//!
//! A test gives everything it creates a unique name and registers it with a cleanup scope
//! ([`PgCleanup`], [`MysqlCleanup`]) that drops it when the test ends, passed or failed.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::{Run, run_bounded};

/// The shared PostgreSQL server.
pub const PG_ADDR: &str = "127.0.0.1:5432";
/// The shared MariaDB server.
pub const MYSQL_ADDR: &str = "127.0.0.1:3306";
/// How long one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A lowercase unique name: `prefix` then `len` random lowercase letters and digits
/// (identifiers that need no quoting in either database).
pub fn unique_name(prefix: &str, len: usize) -> Result<String> {
    Ok(format!("{prefix}{}", crate::random_alnum(len)?.to_ascii_lowercase()))
}

/// `'text'` as an SQL string literal, quotes doubled (for the names and passwords of these
/// tests, which hold no backslash).
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` as a PostgreSQL identifier.
pub fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn psql_command(user: &str, password: Option<&str>, sql: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", "5432"])
        .args(["-U", user, "-d", "postgres", "-c", sql])
        .env_remove("PGSERVICE")
        .env("PGCONNECT_TIMEOUT", "5");
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    cmd
}

/// Runs `sql` as the superuser `postgres`; fails unless it succeeds. The rows it printed,
/// one a line, fields separated by `|`.
pub fn psql(sql: &str) -> Result<String> {
    let run = run_bounded(psql_command("postgres", None, sql), CLIENT_TIMEOUT)?.success()?;
    Ok(run.stdout.trim_end().to_string())
}

/// Runs `sql` as `user` with `password` (PostgreSQL's trust auth accepts any password over
/// TCP, so this shows what the role may do, not that its password is right).
pub fn psql_as(user: &str, password: &str, sql: &str) -> Result<Run> {
    run_bounded(psql_command(user, Some(password), sql), CLIENT_TIMEOUT)
}

/// The roles whose name starts with `prefix`.
pub fn pg_roles_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let out =
        psql(&format!("SELECT rolname FROM pg_roles WHERE starts_with(rolname, {}) ORDER BY 1", sql_literal(prefix)))?;
    Ok(out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// Whether a role named `name` exists.
pub fn pg_role_exists(name: &str) -> Result<bool> {
    let out = psql(&format!("SELECT count(*) FROM pg_roles WHERE rolname = {}", sql_literal(name)))?;
    Ok(out.trim() == "1")
}

fn mariadb_command(user: &str, password: &str, sql: &str) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P", "3306", "--connect-timeout=5", "-N", "-B"])
        .args(["-u", user]);
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    cmd.args(["-e", sql]).env_remove("MYSQL_PWD");
    cmd
}

/// Runs `sql` as MariaDB's `root` (empty password); fails unless it succeeds. The rows it
/// printed, one a line, fields separated by tabs.
pub fn mariadb(sql: &str) -> Result<String> {
    let run = run_bounded(mariadb_command("root", "", sql), CLIENT_TIMEOUT)?.success()?;
    Ok(run.stdout.trim_end().to_string())
}

/// Runs `sql` as `user` logging in with `password` (MariaDB checks it).
pub fn mariadb_as(user: &str, password: &str, sql: &str) -> Result<Run> {
    anyhow::ensure!(!password.is_empty(), "an empty password would log in without one");
    run_bounded(mariadb_command(user, password, sql), CLIENT_TIMEOUT)
}

/// `(user, host)` of the MariaDB accounts whose user name starts with `prefix`.
pub fn mysql_accounts_with_prefix(prefix: &str) -> Result<Vec<(String, String)>> {
    let out = mariadb(&format!(
        "SELECT User, Host FROM mysql.user WHERE LEFT(User, {}) = {} ORDER BY 1, 2",
        prefix.chars().count(),
        sql_literal(prefix)
    ))?;
    let mut accounts = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let Some((user, host)) = line.split_once('\t') else { bail!("unexpected mysql.user row {line:?}") };
        accounts.push((user.to_string(), host.to_string()));
    }
    Ok(accounts)
}

/// Drops, when dropped, the PostgreSQL schemas (with everything in them) and roles a test
/// registered, and every role whose name starts with a registered prefix (the dynamic
/// users of a role).
#[derive(Debug, Default)]
pub struct PgCleanup {
    schemas: Vec<String>,
    roles: Vec<String>,
    role_prefixes: Vec<String>,
}

impl PgCleanup {
    pub fn new() -> PgCleanup {
        PgCleanup::default()
    }

    /// Drops `schema` (cascading) at the end.
    pub fn schema(&mut self, schema: &str) {
        self.schemas.push(schema.to_string());
    }

    /// Drops the role `name` at the end.
    pub fn role(&mut self, name: &str) {
        self.roles.push(name.to_string());
    }

    /// Drops every role whose name starts with `prefix` at the end.
    pub fn role_prefix(&mut self, prefix: &str) {
        self.role_prefixes.push(prefix.to_string());
    }

    fn clean(&self) -> Result<()> {
        for schema in &self.schemas {
            psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", pg_ident(schema)))?;
        }
        let mut roles = self.roles.clone();
        for prefix in &self.role_prefixes {
            roles.extend(pg_roles_with_prefix(prefix)?);
        }
        for role in roles {
            if pg_role_exists(&role)? {
                let r = pg_ident(&role);
                psql(&format!("DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}"))?;
            }
        }
        Ok(())
    }
}

impl Drop for PgCleanup {
    fn drop(&mut self) {
        if let Err(e) = self.clean() {
            eprintln!("PostgreSQL cleanup failed: {e:#}");
        }
    }
}

/// Drops, when dropped, the MariaDB databases and accounts a test registered, and every
/// account whose user name starts with a registered prefix.
#[derive(Debug, Default)]
pub struct MysqlCleanup {
    databases: Vec<String>,
    users: Vec<String>,
    user_prefixes: Vec<String>,
}

impl MysqlCleanup {
    pub fn new() -> MysqlCleanup {
        MysqlCleanup::default()
    }

    /// Drops the database `name` at the end.
    pub fn database(&mut self, name: &str) {
        self.databases.push(name.to_string());
    }

    /// Drops every account of the user `name` at the end.
    pub fn user(&mut self, name: &str) {
        self.users.push(name.to_string());
    }

    /// Drops every account whose user name starts with `prefix` at the end.
    pub fn user_prefix(&mut self, prefix: &str) {
        self.user_prefixes.push(prefix.to_string());
    }

    fn clean(&self) -> Result<()> {
        for db in &self.databases {
            mariadb(&format!("DROP DATABASE IF EXISTS `{}`", db.replace('`', "``")))?;
        }
        let mut accounts = Vec::new();
        for prefix in self.user_prefixes.iter().chain(&self.users) {
            accounts.extend(
                mysql_accounts_with_prefix(prefix)?
                    .into_iter()
                    .filter(|(user, _)| self.user_prefixes.contains(prefix) || user == prefix),
            );
        }
        for (user, host) in accounts {
            mariadb(&format!("DROP USER IF EXISTS {}@{}", sql_literal(&user), sql_literal(&host)))?;
        }
        Ok(())
    }
}

impl Drop for MysqlCleanup {
    fn drop(&mut self) {
        if let Err(e) = self.clean() {
            eprintln!("MariaDB cleanup failed: {e:#}");
        }
    }
}
