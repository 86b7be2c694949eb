//! PostgreSQL through tokio-postgres: the connection URL, connections, and the statements of
//! Vault's `postgresql-database-plugin` (its defaults are quoted from
//! `plugins/database/postgresql/postgresql.go`).
//!
//! Each rendered statement string goes to the server whole, with the simple-query protocol,
//! inside one transaction: the server splits it, so `;` inside quotes or `$$` bodies is safe.
//! (Vault splits at `;` unless it sees the word END.)

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};
use zeroize::Zeroizing;

use super::error::{percent_encode, redact};
use super::pool::{Connector, Limits, Pool};
use super::statements::{Vars, expand_all, render};
use super::{ConnectionConfig, DbError};

const DEFAULT_RENEW: &str = r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#;
const DEFAULT_SET_PASSWORD: &str = r#"ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}';"#;
/// When the URL sets none: how pg_stat_activity shows cairn (Vault writes `vault`).
const APPLICATION_NAME: &str = "cairn";
/// When the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Postgres {
    pool: Pool<PgConnector>,
}

pub(super) struct PgConnector {
    config: Config,
    /// Whether the URL takes the password from `{{password}}` (so a new one replaces it).
    password_placeholder: bool,
    /// `host=… user=… database=…`, for connection errors (pgx's wording).
    target: String,
}

impl Connector for PgConnector {
    type Conn = Client;

    async fn open(&self, password: &str) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        if self.password_placeholder {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            DbError::Connect(redact(&format!("failed to connect to `{}`: {}", self.target, message(&e)), &[password]))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    async fn check(&self, conn: &mut Client) -> bool {
        !conn.is_closed()
    }
}

impl Postgres {
    pub(super) fn new(config: &ConnectionConfig, limits: Limits) -> Result<Postgres, DbError> {
        let connector = connector(&config.connection_url, &config.username, &config.password)?;
        Ok(Postgres { pool: Pool::new(connector, config.password.clone(), limits) })
    }

    pub(super) async fn verify(&self) -> Result<(), DbError> {
        let mut conn =
            self.pool.get().await.map_err(|e| DbError::Connect(format!("error verifying connection: {e}")))?;
        conn.conn()?.simple_query("SELECT 1").await.map_err(|e| self.error("error verifying connection: ", &e, &[]))?;
        Ok(())
    }

    pub(super) async fn create_user(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = expand_all(statements);
        if statements.is_empty() {
            return Err(DbError::EmptyStatements);
        }
        self.transaction(&statements, vars, "failed to execute query: ").await
    }

    pub(super) async fn revoke_user(&self, statements: &[String], username: &str) -> Result<(), DbError> {
        let statements = expand_all(statements);
        if !self.role_exists(username).await? {
            return Ok(());
        }
        if statements.is_empty() {
            return self.default_revoke(username).await;
        }
        let vars = Vars { name: username, password: None, expiration: None };
        self.transaction(&statements, &vars, "").await
    }

    pub(super) async fn renew_user(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = or_default(expand_all(statements), DEFAULT_RENEW);
        self.transaction(&statements, vars, "").await
    }

    pub(super) async fn set_password(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), DbError> {
        let statements = or_default(expand_all(statements), DEFAULT_SET_PASSWORD);
        self.transaction(&statements, vars, "failed to execute query: ").await
    }

    pub(super) async fn reconnect_with(&self, password: Zeroizing<String>) -> Result<(), DbError> {
        self.pool.set_password(password);
        self.verify().await
    }

    pub(super) fn close_idle(&self) {
        self.pool.retire_all();
    }

    /// Renders and runs every statement string in one transaction. A transaction that lost
    /// a race on the catalog (two `GRANT`s on one table at once: "tuple concurrently
    /// updated"; a serialization failure; a deadlock) was rolled back whole, so it is run
    /// again, a few times, after a short pause.
    async fn transaction(&self, statements: &[String], vars: &Vars<'_>, context: &str) -> Result<(), DbError> {
        let secrets = [vars.password.unwrap_or("")];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.try_transaction(statements, vars).await {
                Ok(()) => return Ok(()),
                Err(Failure::Pool(e)) => return Err(e),
                Err(Failure::Db(e)) if is_transient(&e) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                Err(Failure::Db(e)) => return Err(self.error(context, &e, &secrets)),
            }
        }
    }

    async fn try_transaction(&self, statements: &[String], vars: &Vars<'_>) -> Result<(), Failure> {
        let mut pooled = self.pool.get().await.map_err(Failure::Pool)?;
        let client = pooled.conn().map_err(Failure::Pool)?;
        let tx = client.transaction().await.map_err(Failure::Db)?;
        for statement in statements {
            tx.batch_execute(&render(statement, vars)).await.map_err(Failure::Db)?;
        }
        tx.commit().await.map_err(Failure::Db)
    }

    async fn role_exists(&self, username: &str) -> Result<bool, DbError> {
        let mut pooled = self.pool.get().await?;
        let row = pooled
            .conn()?
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&username])
            .await
            .map_err(|e| self.error("", &e, &[]))?;
        row.try_get(0).map_err(|e| self.error("", &e, &[]))
    }

    /// Vault's `defaultDeleteUser`, made cheap: revoke the user's table, sequence, schema and
    /// database privileges one by one (carrying on past failures, to remove as much as
    /// possible), then drop the role. Vault issues every REVOKE whether or not the user
    /// holds the privilege; each one rewrites a shared catalog row (the `public` schema,
    /// the database), so concurrent revocations collide ("tuple concurrently updated") and
    /// crawl. Here one catalog query finds what the user really holds, and only those
    /// privileges are revoked: a user with no grants costs a single `DROP ROLE`.
    async fn default_revoke(&self, username: &str) -> Result<(), DbError> {
        let mut pooled = self.pool.get().await?;
        let client = pooled.conn()?;
        let user = quote_ident(username);
        let held = client.query(HELD_PRIVILEGES, &[&username]).await.map_err(|e| self.error("", &e, &[]))?;
        let mut revokes = Vec::new();
        for row in &held {
            let kind: String = row.try_get(0).map_err(|e| self.error("", &e, &[]))?;
            let name = quote_ident(&row.try_get::<_, String>(1).map_err(|e| self.error("", &e, &[]))?);
            match kind.as_str() {
                "relations" => {
                    revokes.push(format!("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {name} FROM {user};"));
                    revokes.push(format!("REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {name} FROM {user};"));
                }
                "schema" => revokes.push(format!("REVOKE ALL PRIVILEGES ON SCHEMA {name} FROM {user};")),
                _ => revokes.push(format!("REVOKE ALL PRIVILEGES ON DATABASE {name} FROM {user};")),
            }
        }
        let mut last_error = None;
        for revoke in &revokes {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                match client.batch_execute(revoke).await {
                    Ok(()) => break,
                    Err(e) if is_transient(&e) && attempt < MAX_ATTEMPTS => {
                        tokio::time::sleep(retry_pause(attempt)).await;
                    }
                    Err(e) => {
                        last_error = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = last_error {
            return Err(self.error("could not perform all revocation statements: ", &e, &[]));
        }
        client.batch_execute(&format!("DROP ROLE IF EXISTS {user};")).await.map_err(|e| self.error("", &e, &[]))
    }

    fn error(&self, context: &str, e: &tokio_postgres::Error, secrets: &[&str]) -> DbError {
        let root = self.pool.password();
        let mut all = vec![root.as_str()];
        all.extend_from_slice(secrets);
        DbError::Statement(redact(&format!("{context}{}", message(e)), &all))
    }
}

/// What a role holds privileges on, in the current database: `("relations", schema)` for
/// schemas with tables or sequences it was granted something on, `("schema", schema)` for
/// schemas it was granted something on, `("database", name)` for the current database.
/// Read from the ACLs themselves (`aclexplode`), not `information_schema`, whose views
/// slow down with the number of roles.
const HELD_PRIVILEGES: &str = "\
    WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1) \
    SELECT DISTINCT 'relations'::text, n.nspname::text FROM pg_class c \
        JOIN pg_namespace n ON n.oid = c.relnamespace \
        CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN r ON a.grantee = r.oid \
    UNION ALL SELECT DISTINCT 'schema'::text, n.nspname::text FROM pg_namespace n \
        CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN r ON a.grantee = r.oid \
    UNION ALL SELECT DISTINCT 'database'::text, d.datname::text FROM pg_database d \
        CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN r ON a.grantee = r.oid \
        WHERE d.datname = current_database()";

/// Runs of a transaction that lost a race, at most (the first one included).
const MAX_ATTEMPTS: u32 = 8;

/// Why one run of a transaction failed.
enum Failure {
    /// No connection: already a [`DbError`], not worth another run.
    Pool(DbError),
    Db(tokio_postgres::Error),
}

/// Errors that mean "rolled back because of a concurrent transaction; the same transaction
/// may well succeed now".
fn is_transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else { return false };
    let code = db.code();
    *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || (*code == SqlState::INTERNAL_ERROR && db.message().contains("concurrently"))
}

/// 2, 4, 8, … ms, plus up to as much again at random so racing transactions spread out.
fn retry_pause(attempt: u32) -> std::time::Duration {
    let base = 1u64 << attempt.min(8);
    let mut b = [0u8; 1];
    let jitter = if getrandom::fill(&mut b).is_ok() { u64::from(b[0]) % base } else { 0 };
    std::time::Duration::from_millis(base + jitter)
}

fn or_default(statements: Vec<String>, default: &str) -> Vec<String> {
    if statements.is_empty() { vec![default.to_string()] } else { statements }
}

/// `"name"` with inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A driver error the way pgx prints it: `ERROR: <message> (SQLSTATE <code>)` for the server's.
fn message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
    }
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Builds the connector from Vault's `connection_url`.
///
/// `{{username}}` and `{{password}}` are filled in (URL-encoded in a URL, as Vault escapes them).
/// Vault's extra `timezone=UTC` becomes the startup option `-c TimeZone=UTC` (a `timezone`
/// parameter in the URL sets another zone); `application_name` defaults to `cairn`.
/// `sslmode=allow` is read as `disable` (libpq tries without TLS first). TLS itself is not
/// supported yet, so `require`, `verify-ca` and `verify-full` are refused.
fn connector(url: &str, username: &str, password: &str) -> Result<PgConnector, DbError> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (user_text, password_text) =
        if is_url { (percent_encode(username), percent_encode(password)) } else { (username.into(), password.into()) };
    let filled = url.replace("{{username}}", &user_text).replace("{{password}}", &password_text);
    let (filled, timezone) = if is_url { rewrite_query(&filled)? } else { (filled, None) };
    let mut config: Config = filled.parse().map_err(|e: tokio_postgres::Error| {
        DbError::Config(redact(&format!("unable to parse connection url: {}", message(&e)), &[password]))
    })?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(tls_unsupported("require"));
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let timezone = format!("-c TimeZone={}", timezone.unwrap_or_else(|| "UTC".into()));
    let options = match config.get_options() {
        Some(o) if o.to_ascii_lowercase().contains("timezone") => o.to_string(),
        Some(o) => format!("{o} {timezone}"),
        None => timezone,
    };
    config.options(options);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let target = format!(
        "host={host} user={} database={}",
        config.get_user().unwrap_or(""),
        config.get_dbname().or(config.get_user()).unwrap_or("")
    );
    Ok(PgConnector { config, password_placeholder: url.contains("{{password}}"), target })
}

fn tls_unsupported(mode: &str) -> DbError {
    DbError::Config(format!(
        "sslmode={mode} is not supported yet: cairn connects to PostgreSQL without TLS (use sslmode=disable)"
    ))
}

/// Takes `timezone` out of the URL's query and maps the `sslmode` values tokio-postgres lacks.
fn rewrite_query(url: &str) -> Result<(String, Option<String>), DbError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut kept = Vec::new();
    let mut timezone = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key.to_ascii_lowercase().as_str(), value) {
            ("timezone", zone) => timezone = Some(zone.to_string()),
            ("sslmode", "allow") => kept.push("sslmode=disable".to_string()),
            ("sslmode", mode @ ("verify-ca" | "verify-full" | "require")) => return Err(tls_unsupported(mode)),
            _ => kept.push(pair.to_string()),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, timezone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gets_encoded_credentials_and_vaults_settings() {
        let c = connector(
            "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
            "ad@min",
            "p@ss:/?#é",
        )
        .expect("connector");
        assert_eq!(c.config.get_user(), Some("ad@min"));
        assert_eq!(c.config.get_password(), Some("p@ss:/?#é".as_bytes()));
        assert_eq!(c.config.get_application_name(), Some("cairn"));
        assert_eq!(c.config.get_options(), Some("-c TimeZone=UTC"));
        assert_eq!(c.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(c.password_placeholder);
        assert_eq!(c.target, "host=127.0.0.1 user=ad@min database=postgres");
    }

    #[test]
    fn url_settings_win_and_timezone_moves_to_options() {
        let c = connector(
            "postgres://u:literal@h/db?timezone=Europe/Paris&application_name=me&connect_timeout=3&sslmode=allow",
            "x",
            "y",
        )
        .expect("connector");
        assert_eq!(c.config.get_password(), Some("literal".as_bytes()));
        assert!(!c.password_placeholder);
        assert_eq!(c.config.get_application_name(), Some("me"));
        assert_eq!(c.config.get_options(), Some("-c TimeZone=Europe/Paris"));
        assert_eq!(c.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn key_value_form_is_filled_raw() {
        let c = connector("host=127.0.0.1 user={{username}} password={{password}} dbname=postgres", "postgres", "pw")
            .expect("connector");
        assert_eq!(c.config.get_user(), Some("postgres"));
        assert_eq!(c.config.get_password(), Some("pw".as_bytes()));
    }

    #[test]
    fn bad_urls_and_tls_modes_are_clear_errors_without_the_password() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgresql://{{{{username}}}}:{{{{password}}}}@h/db?sslmode={mode}");
            let e = connector(&url, "u", "secret").err().expect("refused").to_string();
            assert!(e.contains("not supported yet"), "{e}");
        }
        let e = connector("postgresql://u:{{password}}@h/db?nosuch=1", "u", "topsecret").err().expect("refused");
        let text = e.to_string();
        assert!(text.starts_with("unable to parse connection url"), "{text}");
        assert!(!text.contains("topsecret"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
