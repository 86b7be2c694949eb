//! The database secrets engine's side that talks to databases: one [`Database`] per configured
//! connection (a pool of connections as the configured admin user), the statements Vault's
//! `postgresql-database-plugin` and `mysql-database-plugin` run, usernames and passwords in
//! Vault's shapes, and errors that never show a password.
//!
//! | file | job |
//! | --- | --- |
//! | `postgres.rs` | PostgreSQL (tokio-postgres): URL, connections, Vault's default statements |
//! | `mysql.rs`, `mysql_dsn.rs` | MySQL and MariaDB (mysql_async): Go DSN, connections, defaults |
//! | `pool.rs` | the connection pool (max open, max idle, lifetime, credential changes) |
//! | `statements.rs` | `{{name}}` rendering, `{{expiration}}` format, statement lists, MySQL splitting |
//! | `template.rs`, `gotemplate.rs` | usernames: Vault's default templates; the Go-template subset |
//! | `password.rs` | passwords: Vault's default password policy |
//! | `error.rs` | [`DbError`] and redaction |
//!
//! Every statement list runs in one transaction. PostgreSQL rolls back DDL, so a failed
//! creation leaves nothing behind. MySQL commits `CREATE USER` and `GRANT` at once, so a failed
//! creation drops the accounts it made (see `mysql.rs`).
//!
//! Calls wait for a free connection as long as it takes, like Vault's `database/sql`; a caller
//! that needs a deadline wraps the call in `tokio::time::timeout`.

mod error;
mod gotemplate;
mod mysql;
mod mysql_dsn;
mod password;
mod pool;
mod postgres;
pub mod routes;
pub mod runtime;
mod statements;
mod template;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

pub use error::DbError;
pub use password::generate_password;
pub use statements::{Vars, format_expiration, render};
pub use template::{generate_username, validate_username_template};

use pool::Limits;
use statements::check_value;

/// Which plugin a connection uses (its `plugin_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// `postgresql-database-plugin`.
    Postgres,
    /// `mysql-database-plugin` (MySQL 5.7+ and MariaDB): usernames up to 32 characters.
    Mysql,
    /// `mysql-legacy-database-plugin`, `mysql-rds-database-plugin` and
    /// `mysql-aurora-database-plugin`: the same, with Vault's 16-character username template.
    MysqlLegacy,
}

impl PluginKind {
    /// The kind for a `plugin_name`, or Vault's "plugin not found in the catalog" error.
    pub fn from_plugin_name(name: &str) -> Result<PluginKind, DbError> {
        match name {
            "postgresql-database-plugin" => Ok(PluginKind::Postgres),
            "mysql-database-plugin" => Ok(PluginKind::Mysql),
            "mysql-legacy-database-plugin" | "mysql-rds-database-plugin" | "mysql-aurora-database-plugin" => {
                Ok(PluginKind::MysqlLegacy)
            }
            other => Err(DbError::UnknownPlugin(other.to_string())),
        }
    }

    /// The longest username Vault's default template makes for this plugin.
    pub fn max_username_len(self) -> usize {
        match self {
            PluginKind::Postgres => 63,
            PluginKind::Mysql => 32,
            PluginKind::MysqlLegacy => 16,
        }
    }

    /// Vault's default `username_template` for this plugin.
    pub fn default_username_template(self) -> &'static str {
        match self {
            PluginKind::Postgres => template::POSTGRES_DEFAULT,
            PluginKind::Mysql => template::MYSQL_DEFAULT,
            PluginKind::MysqlLegacy => template::MYSQL_LEGACY_DEFAULT,
        }
    }
}

/// One connection's settings, as `database/config/<name>` holds them.
#[derive(Clone)]
pub struct ConnectionConfig {
    pub plugin: PluginKind,
    /// `postgresql://{{username}}:{{password}}@host:port/db?sslmode=disable` (or libpq's
    /// `key=value` form), or MySQL's Go DSN `{{username}}:{{password}}@tcp(host:port)/db`.
    pub connection_url: String,
    pub username: String,
    pub password: Zeroizing<String>,
    /// 0 means Vault's default, 4.
    pub max_open_connections: u32,
    /// 0 means `max_open_connections`; never more than it.
    pub max_idle_connections: u32,
    /// 0 means unlimited.
    pub max_connection_lifetime: Duration,
}

impl ConnectionConfig {
    /// A configuration with Vault's pool defaults.
    pub fn new(
        plugin: PluginKind,
        connection_url: impl Into<String>,
        username: impl Into<String>,
        password: Zeroizing<String>,
    ) -> ConnectionConfig {
        ConnectionConfig {
            plugin,
            connection_url: connection_url.into(),
            username: username.into(),
            password,
            max_open_connections: 4,
            max_idle_connections: 0,
            max_connection_lifetime: Duration::ZERO,
        }
    }

    fn limits(&self) -> Limits {
        let max_open = if self.max_open_connections == 0 { 4 } else { self.max_open_connections };
        let max_idle = if self.max_idle_connections == 0 { max_open } else { self.max_idle_connections.min(max_open) };
        let to_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            max_open: to_usize(max_open),
            max_idle: to_usize(max_idle),
            max_lifetime: Some(self.max_connection_lifetime).filter(|d| !d.is_zero()),
        }
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("plugin", &self.plugin)
            .field("connection_url", &self.connection_url)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("max_open_connections", &self.max_open_connections)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("max_connection_lifetime", &self.max_connection_lifetime)
            .finish()
    }
}

/// A configured database: a cheap-to-clone handle on one connection pool.
#[derive(Clone)]
pub struct Database {
    kind: PluginKind,
    backend: Arc<Backend>,
}

enum Backend {
    Postgres(postgres::Postgres),
    Mysql(mysql::Mysql),
}

impl Database {
    /// Checks the settings and sets up the pool. With `verify` (Vault's `verify_connection`,
    /// true by default there), one connection is opened now, so bad credentials fail here;
    /// without it nothing is opened until the first call.
    pub async fn connect(config: ConnectionConfig, verify: bool) -> Result<Database, DbError> {
        if config.connection_url.is_empty() {
            return Err(DbError::Config("connection_url cannot be empty".into()));
        }
        let placeholders = ["{{username}}", "{{password}}"];
        if placeholders.iter().any(|p| config.username.contains(p) || config.password.contains(p)) {
            return Err(DbError::Config("username and/or password cannot contain the template variables".into()));
        }
        let backend = match config.plugin {
            PluginKind::Postgres => Backend::Postgres(postgres::Postgres::new(&config, config.limits())?),
            PluginKind::Mysql | PluginKind::MysqlLegacy => Backend::Mysql(mysql::Mysql::new(&config, config.limits())?),
        };
        if verify {
            match &backend {
                Backend::Postgres(pg) => pg.verify().await?,
                Backend::Mysql(my) => my.verify().await?,
            }
        }
        Ok(Database { kind: config.plugin, backend: Arc::new(backend) })
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Runs the creation statements as one transaction (all or nothing): a statement that fails
    /// leaves no user behind. `expiration` fills `{{expiration}}` (`None`: `infinity`).
    pub async fn create_user(
        &self,
        statements: &[String],
        username: &str,
        password: &str,
        expiration: Option<SystemTime>,
    ) -> Result<(), DbError> {
        check_value(username, Some(password))?;
        let expiration = expiration.map_or_else(|| "infinity".to_string(), format_expiration);
        let vars = Vars { name: username, password: Some(password), expiration: Some(&expiration) };
        match &*self.backend {
            Backend::Postgres(pg) => pg.create_user(statements, &vars).await,
            Backend::Mysql(my) => my.create_user(statements, &vars).await,
        }
    }

    /// Runs the revocation statements, or the plugin's default when there are none
    /// (PostgreSQL: revoke what Vault revokes, then `DROP ROLE IF EXISTS`; MySQL: `REVOKE ALL`
    /// and `DROP USER` at `'%'`). A user that no longer exists is already revoked: `Ok`.
    pub async fn revoke_user(&self, statements: &[String], username: &str) -> Result<(), DbError> {
        check_value(username, None)?;
        match &*self.backend {
            Backend::Postgres(pg) => pg.revoke_user(statements, username).await,
            Backend::Mysql(my) => my.revoke_user(statements, username).await,
        }
    }

    /// Moves the user's expiry (lease renewal). PostgreSQL's default is
    /// `ALTER ROLE … VALID UNTIL`. MySQL has no default, so without statements nothing happens;
    /// custom renew statements do run (Vault's MySQL plugin ignores them).
    pub async fn renew_user(
        &self,
        statements: &[String],
        username: &str,
        expiration: SystemTime,
    ) -> Result<(), DbError> {
        check_value(username, None)?;
        let expiration = format_expiration(expiration);
        let vars = Vars { name: username, password: None, expiration: Some(&expiration) };
        match &*self.backend {
            Backend::Postgres(pg) => pg.renew_user(statements, &vars).await,
            Backend::Mysql(my) => my.renew_user(statements, &vars).await,
        }
    }

    /// Undoes a creation that succeeded but must not stand (Vault's `rollback_statements`);
    /// with no statements, the same as [`Database::revoke_user`] with none.
    pub async fn rollback_user(&self, statements: &[String], username: &str) -> Result<(), DbError> {
        self.revoke_user(statements, username).await
    }

    /// Changes an existing user's password (static roles; rotate-root with the configured
    /// username). The defaults are Vault's `ALTER ROLE "{{username}}" WITH PASSWORD …` and
    /// `ALTER USER '{{username}}'@'%' IDENTIFIED BY …`.
    pub async fn set_password(&self, statements: &[String], username: &str, password: &str) -> Result<(), DbError> {
        check_value(username, Some(password))?;
        let vars = Vars { name: username, password: Some(password), expiration: None };
        match &*self.backend {
            Backend::Postgres(pg) => pg.set_password(statements, &vars).await,
            Backend::Mysql(my) => my.set_password(statements, &vars).await,
        }
    }

    /// Replaces the pool's password (after rotate-root): idle connections are closed, those in
    /// use are closed when they come back, and one connection is opened with the new password
    /// to check it. The new password stays even if that check fails.
    pub async fn reconnect_with(&self, password: Zeroizing<String>) -> Result<(), DbError> {
        match &*self.backend {
            Backend::Postgres(pg) => pg.reconnect_with(password).await,
            Backend::Mysql(my) => my.reconnect_with(password).await,
        }
    }

    /// Closes the idle connections now (for example when the configuration is deleted); the
    /// pool stays usable. Connections also close when the last handle is dropped.
    pub fn close_idle(&self) {
        match &*self.backend {
            Backend::Postgres(pg) => pg.close_idle(),
            Backend::Mysql(my) => my.close_idle(),
        }
    }
}

#[cfg(test)]
mod tests;
