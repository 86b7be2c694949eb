//! Tests against the real servers of the machine: PostgreSQL at 127.0.0.1:5432 (superuser
//! `postgres`, trust) and MariaDB at 127.0.0.1:3306 (`root`, no password). Every test makes
//! its own uniquely named objects and drops them, even when it fails; none changes the
//! password of `postgres` or `root` (password tests use an admin user they create).
//!
//! The local PostgreSQL trusts every password on 127.0.0.1, so logging in proves nothing about
//! passwords there: PostgreSQL password checks read the SCRAM verifier in `pg_authid`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::*;

const PG_URL: &str = "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable";
const MY_URL: &str = "{{username}}:{{password}}@tcp(127.0.0.1:3306)/";

/// Vault's documented PostgreSQL creation statements.
fn pg_creation(table: &str) -> Vec<String> {
    vec![
        r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#.into(),
        format!(r#"GRANT SELECT ON {table} TO "{{{{name}}}}";"#),
    ]
}

/// Vault's documented MySQL creation statements.
fn my_creation() -> Vec<String> {
    vec!["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON *.* TO '{{name}}'@'%';".into()]
}

fn uid() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("randomness");
    format!("{}_{}", std::process::id(), hex::encode(b))
}

fn secs(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).expect("after epoch").as_secs()).expect("fits")
}

/// Runs `body`, then `cleanup` whatever happened, then re-raises the body's panic.
async fn guarded<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------- PostgreSQL helpers

async fn pg_login(user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(5432).user(user).password(password).dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn pg_admin() -> tokio_postgres::Client {
    pg_login("postgres", "").await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at 127.0.0.1:5432 ({e}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    })
}

async fn pg_db(user: &str, password: &str) -> Database {
    let config = ConnectionConfig::new(PluginKind::Postgres, PG_URL, user, Zeroizing::new(password.to_string()));
    Database::connect(config, true).await.expect("connect")
}

async fn pg_role_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    let row = admin.query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&name]).await.expect("query");
    row.get::<_, i64>(0) == 1
}

async fn pg_valid_until(admin: &tokio_postgres::Client, name: &str) -> i64 {
    let row = admin
        .query_one("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .expect("query");
    row.get(0)
}

/// Whether `password` matches the role's SCRAM-SHA-256 verifier (RFC 5802, as PostgreSQL
/// stores it: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`).
async fn pg_password_is(admin: &tokio_postgres::Client, name: &str, password: &str) -> bool {
    let row = admin.query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&name]).await.expect("query");
    let verifier: String = row.get(0);
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = verifier.strip_prefix("SCRAM-SHA-256$").expect("a SCRAM verifier");
    let (params, keys) = rest.split_once('$').expect("verifier shape");
    let (iterations, salt) = params.split_once(':').expect("verifier shape");
    let (stored_key, _) = keys.split_once(':').expect("verifier shape");
    let iterations: u32 = iterations.parse().expect("iterations");
    let salt = b64.decode(salt).expect("salt");
    let hmac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    // PBKDF2-HMAC-SHA256 with one output block.
    let mut u = hmac(password.as_bytes(), &[salt.as_slice(), &1u32.to_be_bytes()].concat());
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, b"Client Key");
    b64.encode(Sha256::digest(&client_key)) == stored_key
}

async fn pg_drop_roles(names: &[String]) {
    let admin = pg_admin().await;
    for name in names {
        let sql = format!(r#"DROP OWNED BY "{name}"; DROP ROLE "{name}""#);
        if pg_role_exists(&admin, name).await {
            let _ = admin.batch_execute(&sql).await;
        }
    }
}

/// Connections to the test server open under `application_name`.
async fn pg_connections(admin: &tokio_postgres::Client, app: &str) -> i64 {
    let row = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .expect("query");
    row.get(0)
}

// ---------------------------------------------------------------- MySQL helpers

async fn my_login(user: &str, password: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .prefer_socket(false)
        .user(Some(user))
        .pass(Some(password));
    mysql_async::Conn::new(opts).await
}

async fn my_admin() -> mysql_async::Conn {
    my_login("root", "").await.unwrap_or_else(|e| {
        panic!(
            "MariaDB is not reachable at 127.0.0.1:3306 as root ({e}); start it with \
             `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`"
        )
    })
}

async fn my_db(user: &str, password: &str) -> Database {
    let config = ConnectionConfig::new(PluginKind::Mysql, MY_URL, user, Zeroizing::new(password.to_string()));
    Database::connect(config, true).await.expect("connect")
}

async fn my_accounts(admin: &mut mysql_async::Conn, name: &str) -> usize {
    let hosts: Vec<String> = admin.exec("SELECT Host FROM mysql.user WHERE User = ?", (name,)).await.expect("query");
    hosts.len()
}

async fn my_drop_users(names: &[String]) {
    let mut admin = my_admin().await;
    for name in names {
        let hosts: Vec<String> =
            admin.exec("SELECT Host FROM mysql.user WHERE User = ?", (name,)).await.unwrap_or_default();
        for host in hosts {
            let _ = admin.query_drop(format!("DROP USER IF EXISTS '{name}'@'{host}'")).await;
        }
    }
}

fn my_error_code(e: &mysql_async::Error) -> u16 {
    match e {
        mysql_async::Error::Server(s) => s.code,
        other => panic!("expected a server error, got {other}"),
    }
}

// ---------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn pg_dynamic_user_is_created_used_renewed_and_revoked() {
    let id = uid();
    let table = format!("cairn_t_{id}");
    let name = generate_username(PluginKind::Postgres, None, "token", "ro").expect("username");
    let admin = pg_admin().await;
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int); INSERT INTO {table} VALUES (7);"))
        .await
        .expect("table");
    let body = {
        let (table, name) = (table.clone(), name.clone());
        async move {
            let admin = pg_admin().await;
            let db = pg_db("postgres", "").await;
            let password = generate_password().expect("password");
            let expires = SystemTime::now() + Duration::from_secs(3600);
            db.create_user(&pg_creation(&table), &name, &password, Some(expires)).await.expect("create");

            assert_eq!(pg_valid_until(&admin, &name).await, secs(expires), "VALID UNTIL is set");
            assert!(pg_password_is(&admin, &name, &password).await);

            let user = pg_login(&name, &password).await.expect("the new user logs in");
            let row = user.query_one(&format!("SELECT v FROM {table}"), &[]).await.expect("granted read");
            assert_eq!(row.get::<_, i32>(0), 7);
            let denied = user.batch_execute(&format!("INSERT INTO {table} VALUES (8)")).await.expect_err("no write");
            assert_eq!(denied.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
            drop(user);

            let later = expires + Duration::from_secs(3600);
            db.renew_user(&[], &name, later).await.expect("renew");
            assert_eq!(pg_valid_until(&admin, &name).await, secs(later), "renewal moved VALID UNTIL");

            db.revoke_user(&[], &name).await.expect("revoke");
            assert!(!pg_role_exists(&admin, &name).await, "the role is gone");
            let e = pg_login(&name, &password).await.expect_err("login fails after revocation");
            assert!(e.to_string().contains("db error") || e.as_db_error().is_some(), "{e}");
            db.revoke_user(&[], &name).await.expect("revoking again is fine");
            db.rollback_user(&[], &name).await.expect("so is a rollback");
        }
    };
    guarded(body, async {
        pg_drop_roles(&[name]).await;
        let _ = pg_admin().await.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await;
    })
    .await;
}

#[tokio::test]
async fn pg_failed_creation_leaves_no_role_and_reports_the_database_error() {
    let names: Vec<String> =
        (0..2).map(|_| generate_username(PluginKind::Postgres, None, "token", "bad").expect("username")).collect();
    let body = {
        let names = names.clone();
        async move {
            let admin = pg_admin().await;
            let db = pg_db("postgres", "").await;
            let password = generate_password().expect("password");
            // The bad statement is the second entry, or the second statement of one entry.
            let as_entries = vec![
                r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';"#.to_string(),
                r#"GRANT SELEC ON ALL TABLES IN SCHEMA public TO "{{name}}";"#.to_string(),
            ];
            let in_one = vec![as_entries.concat()];
            for (statements, name) in [(as_entries, &names[0]), (in_one, &names[1])] {
                let e = db.create_user(&statements, name, &password, None).await.expect_err("bad SQL");
                let text = e.to_string();
                assert!(matches!(e, DbError::Statement(_)), "{e:?}");
                assert_eq!(
                    text,
                    r#"failed to execute query: ERROR: unrecognized privilege type "selec" (SQLSTATE 42601)"#
                );
                assert!(!text.contains(password.as_str()));
                assert!(!pg_role_exists(&admin, name).await, "no role is left behind");
            }
            let e = db.create_user(&[], &names[0], &password, None).await.expect_err("no statements");
            assert_eq!(e.to_string(), "empty creation statements");
        }
    };
    guarded(body, pg_drop_roles(&names)).await;
}

#[tokio::test]
async fn pg_statement_lists_dollar_quotes_and_custom_revocation() {
    let name = generate_username(PluginKind::Postgres, None, "token", "custom").expect("username");
    let body = {
        let name = name.clone();
        async move {
            let admin = pg_admin().await;
            let db = pg_db("postgres", "").await;
            let password = generate_password().expect("password");
            let json = r#"["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';", "COMMENT ON ROLE \"{{ name }}\" IS 'a;b'"]"#
                .to_string();
            let body = r#"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{{name}}') THEN RAISE EXCEPTION 'missing; role'; END IF; END $$;"#;
            db.create_user(&[json, body.to_string()], &name, &password, None).await.expect("create");
            let comment: Option<String> = admin
                .query_one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", &[&name])
                .await
                .expect("comment")
                .get(0);
            assert_eq!(comment.as_deref(), Some("a;b"));
            assert!(pg_valid_until_is_null(&admin, &name).await, "no VALID UNTIL without expiration");

            let revoke = vec![r#"REVOKE ALL ON SCHEMA public FROM "{{name}}"; DROP ROLE "{{name}}";"#.to_string()];
            db.revoke_user(&revoke, &name).await.expect("custom revoke");
            assert!(!pg_role_exists(&admin, &name).await);
            // DROP ROLE without IF EXISTS would fail now; revocation of a gone user is a no-op.
            db.revoke_user(&revoke, &name).await.expect("idempotent");
        }
    };
    guarded(body, pg_drop_roles(&[name])).await;
}

async fn pg_valid_until_is_null(admin: &tokio_postgres::Client, name: &str) -> bool {
    let row = admin
        .query_one(
            "SELECT rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .expect("query");
    row.get(0)
}

#[tokio::test]
async fn pg_set_password_and_rotate_root() {
    let id = uid();
    let root = format!("cairn_admin_{id}");
    let static_user = format!("cairn_static_{id}");
    let dynamic = generate_username(PluginKind::Postgres, None, "token", "after").expect("username");
    let admin = pg_admin().await;
    admin
        .batch_execute(&format!(r#"CREATE ROLE "{root}" WITH LOGIN CREATEROLE PASSWORD 'initial-pw'"#))
        .await
        .expect("admin");
    let body = {
        let (root, static_user, dynamic) = (root.clone(), static_user.clone(), dynamic.clone());
        async move {
            let admin = pg_admin().await;
            let db = pg_db(&root, "initial-pw").await;
            let create = vec![r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';"#.to_string()];
            db.create_user(&create, &static_user, "old-password-1", None).await.expect("static user");

            let new = generate_password().expect("password");
            db.set_password(&[], &static_user, &new).await.expect("set password");
            assert!(pg_password_is(&admin, &static_user, &new).await, "the new password works");
            assert!(!pg_password_is(&admin, &static_user, "old-password-1").await, "the old one does not");

            // rotate-root: the admin changes its own password, then the pool takes it.
            let new_root = generate_password().expect("password");
            db.set_password(&[], &root, &new_root).await.expect("rotate root");
            assert!(pg_password_is(&admin, &root, &new_root).await);
            db.reconnect_with(new_root.clone()).await.expect("reconnect");
            db.create_user(&create, &dynamic, "pw-after-rotation", None).await.expect("works after rotation");
            // Not the default revocation: as in Vault, its REVOKE ... ON ALL TABLES IN SCHEMA
            // public fails for a non-superuser admin when public holds tables of other owners.
            let drop = vec![r#"DROP ROLE "{{name}}""#.to_string()];
            db.revoke_user(&drop, &dynamic).await.expect("revoke");
            db.revoke_user(&drop, &static_user).await.expect("revoke");

            let e = db.set_password(&[], "cairn_nobody_here", "x-1").await.expect_err("unknown role");
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
    };
    guarded(body, pg_drop_roles(&[static_user, dynamic, root])).await;
}

#[tokio::test]
async fn pg_connection_errors_never_show_the_password() {
    let id = uid();
    // The trust-only test server takes any password, so the password is made to appear in the
    // server's message through the role name.
    let secret = format!("s3cr3t{id}");
    let config = ConnectionConfig::new(
        PluginKind::Postgres,
        PG_URL,
        format!("cairn_nosuch_{secret}"),
        Zeroizing::new(secret.clone()),
    );
    let e = Database::connect(config.clone(), true).await.err().expect("no such role");
    let text = e.to_string();
    assert!(text.starts_with("error verifying connection: failed to connect to `host=127.0.0.1"), "{text}");
    assert!(text.contains("cairn_nosuch_[password]"), "{text}");
    assert!(!text.contains(&secret), "{text}");
    assert!(!format!("{e:?}").contains(&secret));

    // verify=false opens nothing: not even to a port where nothing listens.
    let mut unreachable = config.clone();
    unreachable.connection_url = "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres?sslmode=disable".into();
    let db = Database::connect(unreachable.clone(), false).await.expect("no connection yet");
    let e = db.revoke_user(&[], "someone").await.expect_err("first use connects");
    assert!(matches!(e, DbError::Connect(_)), "{e:?}");
    assert!(Database::connect(unreachable, true).await.is_err());

    let mut bad = config;
    bad.connection_url = String::new();
    assert_eq!(
        Database::connect(bad.clone(), false).await.err().expect("empty").to_string(),
        "connection_url cannot be empty"
    );
    bad.connection_url = PG_URL.into();
    bad.password = Zeroizing::new("{{password}}".into());
    assert!(Database::connect(bad, false).await.is_err());
}

#[tokio::test]
async fn pg_pool_respects_max_open_and_max_idle() {
    let app = format!("cairn-pool-{}", uid());
    let config = ConnectionConfig {
        max_open_connections: 2,
        max_idle_connections: 1,
        ..ConnectionConfig::new(
            PluginKind::Postgres,
            format!("{PG_URL}&application_name={app}"),
            "postgres",
            Zeroizing::new(String::new()),
        )
    };
    let db = Database::connect(config, false).await.expect("connect");
    let admin = pg_admin().await;
    assert_eq!(pg_connections(&admin, &app).await, 0, "verify=false opened nothing");

    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (db, done) = (db.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let sleep = vec!["SELECT pg_sleep(0.3)".to_string()];
            db.create_user(&sleep, "pool-test", "unused-pw", None).await.expect("sleep");
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let mut peak = 0;
    while done.load(Ordering::SeqCst) < 6 {
        peak = peak.max(pg_connections(&admin, &app).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(peak, 2, "two connections at most, and both used");
    assert!(started.elapsed() >= Duration::from_millis(850), "six 0.3 s calls on two connections take three rounds");
    // The server lets go of a closed connection a moment later.
    let settled = |want: i64| {
        let (admin, app) = (&admin, &app);
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut n = pg_connections(admin, app).await;
            while n != want && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                n = pg_connections(admin, app).await;
            }
            n
        }
    };
    assert_eq!(settled(1).await, 1, "one connection stays idle");
    db.close_idle();
    assert_eq!(settled(0).await, 0, "close_idle closes it");
}

// ---------------------------------------------------------------- MySQL / MariaDB

#[tokio::test]
async fn mysql_dynamic_user_is_created_used_and_revoked() {
    let id = uid();
    let schema = format!("cairn_{id}");
    let name = generate_username(PluginKind::Mysql, None, "token", "ro").expect("username");
    assert!(name.len() <= 32);
    let mut admin = my_admin().await;
    admin
        .query_drop(format!(
            "CREATE DATABASE `{schema}`; CREATE TABLE `{schema}`.t (v int); INSERT INTO `{schema}`.t VALUES (7)"
        ))
        .await
        .expect("schema");
    let body = {
        let (schema, name) = (schema.clone(), name.clone());
        async move {
            let mut admin = my_admin().await;
            let db = my_db("root", "").await;
            let password = generate_password().expect("password");
            db.create_user(&my_creation(), &name, &password, Some(SystemTime::now())).await.expect("create");
            assert_eq!(my_accounts(&mut admin, &name).await, 1);

            let mut user = my_login(&name, &password).await.expect("the new user logs in");
            let v: Option<i32> = user.query_first(format!("SELECT v FROM `{schema}`.t")).await.expect("granted read");
            assert_eq!(v, Some(7));
            let denied = user.query_drop(format!("INSERT INTO `{schema}`.t VALUES (8)")).await.expect_err("no write");
            assert_eq!(my_error_code(&denied), 1142, "INSERT command denied");
            user.disconnect().await.expect("disconnect");
            let wrong = my_login(&name, "not-the-password").await.expect_err("wrong password");
            assert_eq!(my_error_code(&wrong), 1045);

            db.renew_user(&[], &name, SystemTime::now()).await.expect("renewal is a no-op");
            db.revoke_user(&[], &name).await.expect("revoke");
            assert_eq!(my_accounts(&mut admin, &name).await, 0, "the account is gone");
            let gone = my_login(&name, &password).await.expect_err("login fails after revocation");
            assert!(matches!(my_error_code(&gone), 1045 | 1698), "access denied: {gone}");
            db.revoke_user(&[], &name).await.expect("revoking again is fine");
        }
    };
    guarded(body, async {
        my_drop_users(&[name]).await;
        let _ = my_admin().await.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`")).await;
    })
    .await;
}

#[tokio::test]
async fn mysql_failed_creation_leaves_no_account_and_reports_the_database_error() {
    let names: Vec<String> =
        (0..2).map(|_| generate_username(PluginKind::Mysql, None, "token", "bad").expect("username")).collect();
    let body = {
        let names = names.clone();
        async move {
            let mut admin = my_admin().await;
            let db = my_db("root", "").await;
            let password = generate_password().expect("password");
            let as_entries = vec![
                "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'".to_string(),
                "GRANT SELEC ON *.* TO '{{name}}'@'%'".to_string(),
            ];
            let in_one = vec![as_entries.join(";")];
            for (statements, name) in [(as_entries, &names[0]), (in_one, &names[1])] {
                let e = db.create_user(&statements, name, &password, None).await.expect_err("bad SQL");
                let text = e.to_string();
                assert!(text.starts_with("Error 1064 (42000): You have an error in your SQL syntax"), "{text}");
                assert!(!text.contains(password.as_str()));
                assert_eq!(my_accounts(&mut admin, name).await, 0, "no account is left behind");
            }
        }
    };
    guarded(body, my_drop_users(&names)).await;
}

#[tokio::test]
async fn mysql_creation_failure_keeps_accounts_that_existed_before() {
    let id = uid();
    let existing = format!("cairn_keep_{id}");
    let mut admin = my_admin().await;
    admin.query_drop(format!("CREATE USER '{existing}'@'localhost' IDENTIFIED BY 'keep-me'")).await.expect("existing");
    let body = {
        let existing = existing.clone();
        async move {
            let mut admin = my_admin().await;
            let db = my_db("root", "").await;
            // The '%' account is new, the 'localhost' one was there: only the new one goes.
            let statements = vec![
                "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'"
                    .to_string(),
            ];
            let e = db.create_user(&statements, &existing, "some-password-1", None).await.expect_err("exists");
            assert!(e.to_string().contains("Error 1396"), "{e}");
            let hosts: Vec<String> =
                admin.exec("SELECT Host FROM mysql.user WHERE User = ?", (existing.as_str(),)).await.expect("hosts");
            assert_eq!(hosts, vec!["localhost".to_string()]);
        }
    };
    guarded(body, my_drop_users(&[existing])).await;
}

#[tokio::test]
async fn mysql_statement_splitting_respects_quotes_and_comments() {
    let id = uid();
    let schema = format!("cairn_sc_{id}");
    let name = generate_username(PluginKind::Mysql, None, "token", "split").expect("username");
    let body = {
        let (schema, name) = (schema.clone(), name.clone());
        async move {
            let mut admin = my_admin().await;
            let db = my_db("root", "").await;
            let password = generate_password().expect("password");
            let statements = vec![
                format!("CREATE DATABASE `{schema}`; CREATE TABLE `{schema}`.notes (n varchar(40))"),
                format!(
                    r#"["CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'", "INSERT INTO `{schema}`.notes VALUES ('a;b'), (\"c;d\"), ('it''s;') /* x;y */ -- z;w"]"#
                ),
            ];
            db.create_user(&statements, &name, &password, None).await.expect("create");
            let notes: Vec<String> =
                admin.query(format!("SELECT n FROM `{schema}`.notes ORDER BY n")).await.expect("notes");
            assert_eq!(notes, vec!["a;b", "c;d", "it's;"]);
            let revoke = vec!["DROP USER '{{name}}'@'%'".to_string()];
            db.revoke_user(&revoke, &name).await.expect("custom revoke");
            db.revoke_user(&revoke, &name).await.expect("idempotent");
        }
    };
    guarded(body, async {
        my_drop_users(&[name]).await;
        let _ = my_admin().await.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`")).await;
    })
    .await;
}

#[tokio::test]
async fn mysql_set_password_and_rotate_root() {
    let id = uid();
    let root = format!("cairn_admin_{id}");
    let static_user = format!("cairn_static_{id}");
    let mut admin = my_admin().await;
    admin
        .query_drop(format!(
            "CREATE USER '{root}'@'%' IDENTIFIED BY 'initial-pw'; GRANT ALL ON *.* TO '{root}'@'%' WITH GRANT OPTION"
        ))
        .await
        .expect("admin");
    let body = {
        let (root, static_user) = (root.clone(), static_user.clone());
        async move {
            let db = my_db(&root, "initial-pw").await;
            let create = vec!["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'".to_string()];
            db.create_user(&create, &static_user, "old-password-1", None).await.expect("static user");

            let new = generate_password().expect("password");
            db.set_password(&[], &static_user, &new).await.expect("set password");
            my_login(&static_user, &new).await.expect("the new password works");
            let old = my_login(&static_user, "old-password-1").await.expect_err("the old one does not");
            assert_eq!(my_error_code(&old), 1045);

            let new_root = generate_password().expect("password");
            db.set_password(&[], &root, &new_root).await.expect("rotate root");
            my_login(&root, "initial-pw").await.expect_err("the old root password is dead");
            db.reconnect_with(new_root.clone()).await.expect("reconnect");
            db.revoke_user(&[], &static_user).await.expect("works after rotation");

            let e = db.reconnect_with(Zeroizing::new("wrong-root-pw".into())).await.expect_err("bad password");
            let text = e.to_string();
            assert!(text.starts_with("error verifying - connection: failed to connect to 127.0.0.1:3306"), "{text}");
            assert!(text.contains("Access denied"), "{text}");
        }
    };
    guarded(body, my_drop_users(&[static_user, root])).await;
}

#[tokio::test]
async fn mysql_connection_errors_never_show_the_password() {
    let secret = format!("s3cr3t{}", uid());
    let config = ConnectionConfig::new(
        PluginKind::Mysql,
        MY_URL,
        format!("cairn_nosuch_{secret}"),
        Zeroizing::new(secret.clone()),
    );
    let e = Database::connect(config.clone(), true).await.err().expect("access denied");
    let text = e.to_string();
    assert!(text.contains("Access denied for user 'cairn_nosuch_[password]'"), "{text}");
    assert!(!text.contains(&secret), "{text}");
    let db = Database::connect(config, false).await.expect("verify=false connects to nothing");
    assert_eq!(db.kind(), PluginKind::Mysql);
}

#[tokio::test]
async fn mysql_pool_respects_max_open() {
    let id = uid();
    let root = format!("cairn_pool_{id}");
    let mut admin = my_admin().await;
    admin.query_drop(format!("CREATE USER '{root}'@'%' IDENTIFIED BY 'pool-pw'")).await.expect("user");
    let body = {
        let root = root.clone();
        async move {
            let mut admin = my_admin().await;
            let config = ConnectionConfig {
                max_open_connections: 2,
                max_idle_connections: 1,
                ..ConnectionConfig::new(PluginKind::Mysql, MY_URL, &root, Zeroizing::new("pool-pw".into()))
            };
            let db = Database::connect(config, false).await.expect("connect");
            let count = "SELECT count(*) FROM information_schema.processlist WHERE user = ?";
            let done = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..6 {
                let (db, done) = (db.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let sleep = vec!["SELECT SLEEP(0.3)".to_string()];
                    db.create_user(&sleep, "pool-test", "unused-pw", None).await.expect("sleep");
                    done.fetch_add(1, Ordering::SeqCst);
                }));
            }
            let mut peak = 0;
            while done.load(Ordering::SeqCst) < 6 {
                let n: Option<i64> = admin.exec_first(count, (root.as_str(),)).await.expect("count");
                peak = peak.max(n.unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            for t in tasks {
                t.await.expect("task");
            }
            assert_eq!(peak, 2);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut idle: Option<i64> = None;
            while idle != Some(1) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                idle = admin.exec_first(count, (root.as_str(),)).await.expect("count");
            }
            assert_eq!(idle, Some(1), "one connection stays idle");
        }
    };
    guarded(body, my_drop_users(&[root])).await;
}

#[test]
fn database_handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Database>();
    check::<DbError>();
}

#[tokio::test]
async fn plugin_names_map_like_vaults_catalog() {
    assert_eq!(PluginKind::from_plugin_name("postgresql-database-plugin").expect("pg"), PluginKind::Postgres);
    assert_eq!(PluginKind::from_plugin_name("mysql-database-plugin").expect("my"), PluginKind::Mysql);
    for legacy in ["mysql-legacy-database-plugin", "mysql-rds-database-plugin", "mysql-aurora-database-plugin"] {
        assert_eq!(PluginKind::from_plugin_name(legacy).expect("legacy"), PluginKind::MysqlLegacy);
    }
    let e = PluginKind::from_plugin_name("mssql-database-plugin").expect_err("unknown");
    assert_eq!(e.to_string(), "plugin not found in the catalog: mssql-database-plugin");
    let debug =
        format!("{:?}", ConnectionConfig::new(PluginKind::Mysql, MY_URL, "u", Zeroizing::new("hunter2".into())));
    assert!(!debug.contains("hunter2"), "{debug}");
}
