//! MySQL and MariaDB through mysql_async: connections and the statements of Vault's
//! `mysql-database-plugin` (its defaults are quoted from `plugins/database/mysql/mysql.go`).
//!
//! Statement strings are split at `;` by `statements::split_mysql` (quote- and comment-aware)
//! *before* rendering, and each piece runs with the text protocol inside `START TRANSACTION` …
//! `COMMIT`, as Vault runs them in one transaction. MySQL commits `CREATE USER`, `GRANT` and
//! `DROP USER` implicitly, so a transaction cannot undo them: when a creation fails, the
//! accounts it made are dropped (those with the new name whose host was not there before,
//! read from `mysql.user`, which needs the admin to be able to read it, as `GRANT ALL ON *.*`
//! allows; without it the accounts stay and a warning is logged).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use zeroize::Zeroizing;

use super::error::redact;
use super::mysql_dsn::{self, Dsn};
use super::pool::{Connector, Limits, Pool};
use super::statements::{Vars, expand_all, render, split_mysql};
use super::{ConnectionConfig, DbError};

const DEFAULT_REVOKE: &str = "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{{name}}'@'%'; DROP USER '{{name}}'@'%'";
const DEFAULT_SET_PASSWORD: &str = "ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}';";

pub(super) struct Mysql {
    pool: Pool<MyConnector>,
}

pub(super) struct MyConnector {
    opts: OptsBuilder,
    /// Whether the DSN takes the password from `{{password}}` (so a new one replaces it).
    password_placeholder: bool,
    timeout: Duration,
    target: String,
}

impl Connector for MyConnector {
    type Conn = Conn;

    async fn open(&self, password: &str) -> Result<Conn, DbError> {
        let mut opts = self.opts.clone();
        if self.password_placeholder {
            opts = opts.pass(Some(password));
        }
        let fail = |why: String| {
            DbError::Connect(redact(&format!("failed to connect to {}: {why}", self.target), &[password]))
        };
        match tokio::time::timeout(self.timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(fail(message(&e))),
            Err(_) => Err(fail(format!("timed out after {:?}", self.timeout))),
        }
    }

    async fn check(&self, conn: &mut Conn) -> bool {
        conn.ping().await.is_ok()
    }
}

impl Mysql {
    pub(super) fn new(config: &ConnectionConfig, limits: Limits) -> Result<Mysql, DbError> {
        let dsn = mysql_dsn::parse(&config.connection_url)?;
        let connector = connector(&dsn, &config.username, &config.password)?;
        Ok(Mysql { pool: Pool::new(connector, config.password.clone(), limits) })
    }

    pub(super) async fn verify(&self) -> Result<(), DbError> {
        let mut conn =
            self.pool.get().await.map_err(|e| DbError::Connect(format!("error verifying - connection: {e}")))?;
        conn.conn()?.ping().await.map_err(|e| self.error("error verifying - ping: ", &e, &[]))
    }

    pub(super) async fn create_user(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = expand_all(statements);
        if statements.is_empty() {
            return Err(DbError::EmptyStatements);
        }
        let before = self.hosts_of(vars.name).await;
        let Err(error) = self.transaction(&statements, vars).await else {
            return Ok(());
        };
        match before {
            Ok(before) => self.drop_new_accounts(vars.name, &before).await,
            Err(e) => tracing::warn!(error = %e, "cannot read mysql.user: accounts of a failed creation are left"),
        }
        Err(error)
    }

    pub(super) async fn revoke_user(&self, statements: &[String], username: &str) -> Result<(), DbError> {
        // Idempotent: a user with no account left is revoked. When mysql.user cannot be read,
        // the statements run anyway.
        if self.hosts_of(username).await.is_ok_and(|hosts| hosts.is_empty()) {
            return Ok(());
        }
        let statements = or_default(expand_all(statements), DEFAULT_REVOKE);
        self.transaction(&statements, &Vars { name: username, password: None, expiration: None }).await
    }

    /// Vault's MySQL plugin ignores expiration changes; here custom renew statements run, and
    /// with none nothing happens.
    pub(super) async fn renew_user(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = expand_all(statements);
        if statements.is_empty() {
            return Ok(());
        }
        self.transaction(&statements, vars).await
    }

    pub(super) async fn set_password(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = or_default(expand_all(statements), DEFAULT_SET_PASSWORD);
        self.transaction(&statements, vars).await
    }

    pub(super) async fn reconnect_with(&self, password: Zeroizing<String>) -> Result<(), DbError> {
        self.pool.set_password(password);
        self.verify().await
    }

    pub(super) fn close_idle(&self) {
        self.pool.retire_all();
    }

    /// Splits, renders and runs the statements in one transaction; rolls back on failure.
    async fn transaction(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let secrets = [vars.password.unwrap_or("")];
        let mut pooled = self.pool.get().await?;
        // Until COMMIT or ROLLBACK is through, a cancelled call leaves the connection unsettled.
        pooled.unsettled(true);
        let conn = pooled.conn()?;
        let result = run(conn, statements, vars).await;
        let settled = result.is_ok() || conn.query_drop("ROLLBACK").await.is_ok();
        pooled.unsettled(!settled);
        result.map_err(|e| self.error("", &e, &secrets))
    }

    /// The hosts of the accounts named `user`.
    async fn hosts_of(&self, user: &str) -> Result<Vec<String>, DbError> {
        let mut pooled = self.pool.get().await?;
        pooled
            .conn()?
            .exec::<String, _, _>("SELECT Host FROM mysql.user WHERE User = ?", (user,))
            .await
            .map_err(|e| self.error("", &e, &[]))
    }

    /// Drops the accounts named `user` whose host is not in `before` (best effort, logged).
    async fn drop_new_accounts(&self, user: &str, before: &[String]) {
        let after = match self.hosts_of(user).await {
            Ok(after) => after,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read mysql.user: accounts of a failed creation are left");
                return;
            }
        };
        for host in after.iter().filter(|h| !before.contains(h)) {
            let drop = format!("DROP USER IF EXISTS {}@{}", quote(user), quote(host));
            let result = match self.pool.get().await {
                Ok(mut pooled) => match pooled.conn() {
                    Ok(conn) => conn.query_drop(drop).await.map_err(|e| self.error("", &e, &[])),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not drop an account left by a failed creation");
            }
        }
    }

    fn error(&self, context: &str, e: &mysql_async::Error, secrets: &[&str]) -> DbError {
        let root = self.pool.password();
        let mut all = vec![root.as_str()];
        all.extend_from_slice(secrets);
        DbError::Statement(redact(&format!("{context}{}", message(e)), &all))
    }
}

async fn run(conn: &mut Conn, statements: &[String], vars: &Vars<'_>) -> Result<(), mysql_async::Error> {
    conn.query_drop("START TRANSACTION").await?;
    for statement in statements {
        for piece in split_mysql(statement) {
            conn.query_drop(render(&piece, vars)).await?;
        }
    }
    conn.query_drop("COMMIT").await
}

fn connector(dsn: &Dsn, username: &str, password: &str) -> Result<MyConnector, DbError> {
    let user = dsn.user.replace("{{username}}", username);
    let pass = dsn.pass.as_deref().map(|p| p.replace("{{password}}", password));
    let (opts, timeout) = mysql_dsn::options(dsn, &user, pass.as_deref())?;
    let password_placeholder = dsn.pass.as_deref().is_some_and(|p| p.contains("{{password}}"));
    Ok(MyConnector { opts, password_placeholder, timeout, target: dsn.target() })
}

fn or_default(statements: Vec<String>, default: &str) -> Vec<String> {
    if statements.is_empty() { vec![default.to_string()] } else { statements }
}

/// A MySQL string literal (quotes doubled, backslashes escaped).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A driver error the way go-sql-driver prints a server's: `Error 1064 (42000): <message>`;
/// other errors by their innermost cause (`Connection refused (os error 111)`).
fn message(e: &mysql_async::Error) -> String {
    if let mysql_async::Error::Server(s) = e {
        return format!("Error {} ({}): {}", s.code, s.state, s.message);
    }
    let mut innermost: &dyn std::error::Error = e;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_placeholder_only_when_the_dsn_has_one() {
        let dsn = mysql_dsn::parse("{{username}}:{{password}}@tcp(127.0.0.1:3306)/").expect("dsn");
        assert!(connector(&dsn, "root", "pw").expect("connector").password_placeholder);
        let dsn = mysql_dsn::parse("root:literal@tcp(127.0.0.1:3306)/").expect("dsn");
        assert!(!connector(&dsn, "root", "pw").expect("connector").password_placeholder);
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote(r"a'b\c"), r"'a''b\\c'");
    }
}
