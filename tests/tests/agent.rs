//! The real `bao agent` against the server, as a service on a VM runs it: auto-auth with
//! AppRole (the secret id file removed after reading), a token sink, templates that render
//! a KV v2 secret and dynamic PostgreSQL credentials to files, renewal of its token and of
//! the credentials' lease, and its API proxy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::db::{PG_ADDR, PgCleanup, pg_role_exists, psql_as, unique_name};
use e2e::server::bao_bin;
use e2e::{DevServer, Server};
use serde_json::{Value, json};

const ROOT: &str = "root";

/// The agent process; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(s: &Server, method: &str, path: &str, body: Value) -> Result<Value> {
    let reply = s.http(method, &format!("/v1/{path}"), Some(ROOT), Some(&body.to_string()))?;
    ensure!((200..300).contains(&reply.status), "{method} {path}: {} {}", reply.status, reply.body);
    Ok(if reply.body.trim().is_empty() { Value::Null } else { reply.json()? })
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits (at most `limit`) for a file to hold something.
fn wait_for_file(path: &Path, limit: Duration, agent: &Agent) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{} was not rendered in {limit:?}\n--- agent log ---\n{}", path.display(), agent.log());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A GET through the agent's proxy with `token`.
fn via_agent(port: u16, path: &str, token: &str) -> Result<Value> {
    let addr = format!("127.0.0.1:{port}").parse()?;
    let reply =
        e2e::http_with(addr, "GET", &format!("/v1/{path}"), &[("X-Vault-Token", token)], b"", Duration::from_secs(10))?;
    ensure!(reply.status == 200, "agent proxy GET {path}: {} {}", reply.status, reply.body);
    reply.json()
}

#[test]
fn bao_agent_auto_auths_with_approle_renders_kv_and_database_templates_and_renews() -> Result<()> {
    let mut cleanup = PgCleanup::new();
    let role = unique_name("r", 7)?;
    cleanup.role_prefix(&format!("v-approle-{role}-"));
    cleanup.role_prefix(&format!("v-token-{role}-"));
    let s = DevServer::start()?;

    // The operator's side: a policy, an AppRole role, a secret and a database role.
    let policy = format!(
        "path \"secret/data/app/*\" {{ capabilities = [\"read\"] }}\n\
         path \"database/creds/{role}\" {{ capabilities = [\"read\"] }}\n\
         path \"sys/leases/renew\" {{ capabilities = [\"update\"] }}"
    );
    ok(&s, "PUT", "sys/policies/acl/app", json!({ "policy": policy }))?;
    ok(&s, "POST", "sys/auth/approle", json!({"type": "approle"}))?;
    ok(
        &s,
        "POST",
        "auth/approle/role/agent",
        json!({"token_policies": ["app"], "token_ttl": "6s", "token_max_ttl": "1h"}),
    )?;
    ok(&s, "PUT", "secret/data/app/config", json!({"data": {"user": "svc", "password": "s3cret"}}))?;
    ok(&s, "POST", "sys/mounts/database", json!({"type": "database"}))?;
    ok(
        &s,
        "POST",
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{PG_ADDR}/postgres?sslmode=disable"),
            "username": "postgres",
            "password": "unused",
            "allowed_roles": role,
        }),
    )?;
    ok(
        &s,
        "POST",
        &format!("database/roles/{role}"),
        json!({
            "db_name": "pg",
            "creation_statements": r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#,
            "default_ttl": "6s",
            "max_ttl": "1h",
        }),
    )?;
    let role_id = ok(&s, "GET", "auth/approle/role/agent/role-id", json!({}))?["data"]["role_id"]
        .as_str()
        .context("role_id")?
        .to_string();
    let secret_id = ok(&s, "POST", "auth/approle/role/agent/secret-id", json!({}))?["data"]["secret_id"]
        .as_str()
        .context("secret_id")?
        .to_string();

    // The VM's side: two files and an agent.
    let dir = tempfile::tempdir()?;
    let file = |name: &str| dir.path().join(name);
    std::fs::write(file("role_id"), &role_id)?;
    std::fs::write(file("secret_id"), &secret_id)?;
    let port = free_port()?;
    let config = format!(
        r#"
vault {{ address = "{addr}" }}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{role_id}"
      secret_id_file_path = "{secret_id}"
      remove_secret_id_file_after_reading = true
    }}
  }}
  sink "file" {{ config = {{ path = "{sink}" }} }}
}}
cache {{}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  tls_disable = true
}}
template {{
  contents = "{{{{ with secret \"secret/data/app/config\" }}}}{{{{ .Data.data.user }}}}:{{{{ .Data.data.password }}}}{{{{ end }}}}"
  destination = "{kv_out}"
}}
template {{
  contents = "{{{{ with secret \"database/creds/{role}\" }}}}{{{{ .Data.username }}}}:{{{{ .Data.password }}}}{{{{ end }}}}"
  destination = "{db_out}"
}}
"#,
        addr = s.addr(),
        role_id = file("role_id").display(),
        secret_id = file("secret_id").display(),
        sink = file("token").display(),
        kv_out = file("kv.txt").display(),
        db_out = file("db.txt").display(),
    );
    std::fs::write(file("agent.hcl"), config)?;
    let log = file("agent.log");
    let child = Command::new(bao_bin()?)
        .args(["agent", &format!("-config={}", file("agent.hcl").display())])
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .env("HOME", dir.path())
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("agent.err"))?))
        .spawn()
        .context("start bao agent")?;
    let agent = Agent { child, log };

    let kv = wait_for_file(&file("kv.txt"), Duration::from_secs(30), &agent)?;
    ensure!(kv == "svc:s3cret", "kv template: {kv:?}");
    let db = wait_for_file(&file("db.txt"), Duration::from_secs(30), &agent)?;
    let (user, password) = db.split_once(':').context("db template")?;
    ensure!(user.starts_with("v-approle-") && pg_role_exists(user)?, "db template user {user:?}");
    psql_as(user, password, "SELECT 1")?.success()?;
    ensure!(!file("secret_id").exists(), "the agent removes the secret id file after reading it");

    // The sink token is the login's; the agent keeps it and the credentials' lease alive
    // past their 6 s TTLs, and the user stays.
    let token = wait_for_file(&file("token"), Duration::from_secs(5), &agent)?;
    let token = token.trim();
    let me = s.http("GET", "/v1/auth/token/lookup-self", Some(token), None)?.json()?;
    ensure!(me["data"]["path"] == "auth/approle/login" && me["data"]["meta"]["role_name"] == "agent", "{me}");
    let leases = ok(&s, "LIST", &format!("sys/leases/lookup/database/creds/{role}/"), json!({}))?;
    let lease_key = leases["data"]["keys"][0].as_str().context("one lease")?.to_string();
    let lease_id = format!("database/creds/{role}/{lease_key}");
    thread::sleep(Duration::from_secs(10));
    let me = s.http("GET", "/v1/auth/token/lookup-self", Some(token), None)?;
    ensure!(
        me.status == 200,
        "the agent's token outlived its 6 s TTL: {} {}
{}",
        me.status,
        me.body,
        agent.log()
    );
    ensure!(!me.json()?["data"]["last_renewal"].is_null(), "the agent renewed its token");
    let lease = ok(&s, "PUT", "sys/leases/lookup", json!({ "lease_id": lease_id }))?;
    ensure!(!lease["data"]["last_renewal"].is_null(), "the agent renewed the credentials' lease: {lease}");
    ensure!(pg_role_exists(user)?, "the renewed user is still there");

    // Requests through the agent's proxy reach the server.
    let kv_proxy = via_agent(port, "secret/data/app/config", token)?;
    ensure!(kv_proxy["data"]["data"]["password"] == "s3cret", "{kv_proxy}");
    drop(agent);
    Ok(())
}
