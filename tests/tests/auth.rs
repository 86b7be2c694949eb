//! Auth methods, response wrapping and identity, as a workload and an operator use them:
//! AppRole with a wrapped secret id through the real `bao` CLI, userpass with password
//! changes, entities made at login and reused, group policies that reach tokens already
//! issued, CIDR bindings, secret-id TTLs and use counts, and login rate limits.
//!
//! What a client sees was checked against OpenBao 2.7.2 (`CAIRN_COMPAT_TARGET=openbao`)
//! where the test says so; checks of cairn's ledger and data directory run on cairn only.

use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::ledger::read_ledger;
use e2e::{ConfigServer, DevServer, Options, Server, Target, files_containing, random_alnum};
use migrations::{Body, Event, Outcome};
use serde_json::{Value, json};

const ROOT: &str = "root";

/// `method path` with `body` as `token` (`None`: no token); status and JSON body.
fn call(s: &Server, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let body = body.map(|b| b.to_string());
    let reply = s.http(method, &format!("/v1/{path}"), token, body.as_deref())?;
    let json = if reply.body.trim().is_empty() { Value::Null } else { reply.json()? };
    Ok((reply.status, json))
}

/// `method path` as root; fails unless 2xx.
fn ok(s: &Server, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let (status, json) = call(s, Some(ROOT), method, path, body)?;
    ensure!((200..300).contains(&status), "{method} {path} answered {status}: {json}\n--- log ---\n{}", s.log());
    Ok(json)
}

/// `method path` fails with `status` and exactly these errors.
fn refused(
    s: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Value,
    status: u16,
    errors: &[&str],
) -> Result<()> {
    let (got, json) = call(s, token, method, path, Some(body))?;
    ensure!(
        got == status && json == json!({ "errors": errors }),
        "{method} {path}: want {status} {errors:?}, got {got} {json}"
    );
    Ok(())
}

fn is_cairn(s: &Server) -> bool {
    s.target() == Target::Cairn
}

/// Access events of the ledger for `path`, as (outcome) in order.
fn outcomes(s: &Server, path: &str) -> Result<Vec<Outcome>> {
    let stored = read_ledger(s.data_dir())?;
    Ok(stored
        .iter()
        .filter_map(|e| match &e.env.body {
            Body::App(Event::Access(a)) if a.path == path => Some(a.outcome),
            _ => None,
        })
        .collect())
}

/// `bao write auth/approle/login` without a token; its JSON answer.
fn cli_login(s: &Server, role_id: &str, secret_id: &str) -> Result<Value> {
    let args = [
        "write",
        "-format=json",
        "auth/approle/login",
        &format!("role_id={role_id}"),
        &format!("secret_id={secret_id}"),
    ];
    s.bao_without_token(&args)?.success()?.json()
}

#[test]
fn approle_with_a_wrapped_secret_id_through_the_bao_cli() -> Result<()> {
    let s = DevServer::start()?;
    s.bao(&["auth", "enable", "approle"])?.success()?;
    ok(
        &s,
        "PUT",
        "sys/policies/acl/app-read",
        Some(json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"})),
    )?;
    s.bao(&[
        "write",
        "auth/approle/role/web",
        "token_policies=app-read",
        "token_ttl=20m",
        "token_max_ttl=1h",
        "secret_id_num_uses=2",
        "secret_id_ttl=10m",
    ])?
    .success()?;
    s.bao(&["kv", "put", "secret/app/db", "password=app-secret"])?.success()?;
    let role_id = s.bao(&["read", "-field=role_id", "auth/approle/role/web/role-id"])?.success()?.stdout;

    // The operator hands out a wrapped secret id; the workload unwraps it once.
    let wrapped = s
        .bao(&["write", "-wrap-ttl=60s", "-f", "-format=json", "auth/approle/role/web/secret-id"])?
        .success()?
        .json()?;
    let wrap = &wrapped["wrap_info"];
    ensure!(wrap["ttl"] == 60 && wrap["creation_path"] == "auth/approle/role/web/secret-id", "{wrapped}");
    ensure!(wrapped["data"].is_null() && wrap["wrapped_accessor"].as_str().is_some_and(|a| !a.is_empty()), "{wrapped}");
    let wrapping_token = wrap["token"].as_str().context("wrap token")?.to_string();
    let unwrapped = s.bao_without_token(&["unwrap", "-format=json", &wrapping_token])?.success()?.json()?;
    let secret_id = unwrapped["data"]["secret_id"].as_str().context("secret_id")?.to_string();
    ensure!(unwrapped["data"]["secret_id_accessor"] == wrap["wrapped_accessor"], "{unwrapped}");
    ensure!(unwrapped["data"]["secret_id_num_uses"] == 2 && unwrapped["data"]["secret_id_ttl"] == 600, "{unwrapped}");
    // Single use: a second unwrap is refused.
    let again = s.bao_without_token(&["unwrap", &wrapping_token])?;
    ensure!(
        again.code == Some(2)
            && again.stderr.contains("Code: 400")
            && again.stderr.contains("wrapping token is not valid or does not exist"),
        "{}",
        again.stderr
    );

    // Login, then read what the role's policy allows, and only that.
    let login = cli_login(&s, &role_id, &secret_id)?;
    let auth = &login["auth"];
    ensure!(
        auth["policies"] == json!(["app-read", "default"]) && auth["token_policies"] == json!(["app-read", "default"]),
        "{login}"
    );
    ensure!(
        auth["metadata"] == json!({"role_name": "web"}) && auth["lease_duration"] == 1200 && auth["orphan"] == true,
        "{login}"
    );
    ensure!(auth["renewable"] == true && auth["entity_id"].as_str().is_some_and(|e| e.len() == 36), "{login}");
    let token = auth["client_token"].as_str().context("client_token")?.to_string();
    let read = s.bao_as(&token, &["kv", "get", "-field=password", "secret/app/db"])?.success()?;
    ensure!(read.stdout == "app-secret", "{}", read.stdout);
    let denied = s.bao_as(&token, &["kv", "put", "secret/app/db", "password=x"])?;
    ensure!(denied.code == Some(2) && denied.stderr.contains("Code: 403"), "{}", denied.stderr);
    let me = s.bao_as(&token, &["token", "lookup", "-format=json"])?.success()?.json()?;
    ensure!(me["data"]["path"] == "auth/approle/login" && me["data"]["display_name"] == "approle", "{me}");
    // Renewal stops at the role's token_max_ttl.
    let renewed = s.bao_as(&token, &["token", "renew", "-format=json", "-increment=2h"])?.success()?.json()?;
    ensure!(renewed["auth"]["lease_duration"].as_u64().is_some_and(|t| t <= 3600 && t > 3500), "{renewed}");

    // Two uses: the second login works, the third is refused without saying why.
    let login2 = cli_login(&s, &role_id, &secret_id)?;
    ensure!(login2["auth"]["entity_id"] == auth["entity_id"], "one role id, one entity: {login2}");
    refused(
        &s,
        None,
        "PUT",
        "auth/approle/login",
        json!({"role_id": role_id, "secret_id": secret_id}),
        400,
        &["invalid role or secret ID"],
    )?;
    refused(
        &s,
        None,
        "PUT",
        "auth/approle/login",
        json!({"role_id": "nope", "secret_id": secret_id}),
        400,
        &["invalid role or secret ID"],
    )?;
    refused(&s, None, "PUT", "auth/approle/login", json!({"role_id": role_id}), 400, &["missing secret_id"])?;

    if is_cairn(&s) {
        // The ledger has the used-up wrapping token's refusal and the failed logins; the
        // secret id and the wrapped response are nowhere in the data directory.
        let unwraps = outcomes(&s, "sys/wrapping/unwrap")?;
        ensure!(unwraps == vec![Outcome::Allowed, Outcome::Failed(400)], "{unwraps:?}");
        let logins = outcomes(&s, "auth/approle/login")?;
        ensure!(
            logins
                == vec![
                    Outcome::Allowed,
                    Outcome::Allowed,
                    Outcome::Failed(400),
                    Outcome::Failed(400),
                    Outcome::Failed(400)
                ],
            "{logins:?}"
        );
        let found = files_containing(s.data_dir(), secret_id.as_bytes())?;
        ensure!(found.is_empty(), "the secret id is stored in clear in {found:?}");
        ensure!(!s.log().contains(&secret_id), "the secret id reached the log");
        let stored = read_ledger(s.data_dir())?;
        let used = stored.iter().filter(|e| matches!(&e.env.body, Body::App(Event::SecretIdUsed(_)))).count();
        ensure!(used == 2, "two SecretIdUsed events, found {used}");
    }
    Ok(())
}

#[test]
fn userpass_logins_password_changes_and_one_answer_for_every_failure() -> Result<()> {
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/userpass", Some(json!({"type": "userpass"})))?;
    let password = format!("pw-{}", random_alnum(16)?);
    ok(
        &s,
        "POST",
        "auth/userpass/users/alice",
        Some(json!({"password": password, "token_policies": ["app-read"], "token_ttl": "1h", "token_max_ttl": "4h"})),
    )?;
    let user = ok(&s, "GET", "auth/userpass/users/alice", None)?;
    ensure!(
        user["data"]["token_ttl"] == 3600
            && user["data"]["token_max_ttl"] == 14400
            && user["data"].get("password").is_none(),
        "{user}"
    );
    ensure!(ok(&s, "LIST", "auth/userpass/users", None)?["data"]["keys"] == json!(["alice"]), "list");

    let login = s
        .bao_without_token(&[
            "login",
            "-method=userpass",
            "-format=json",
            "username=alice",
            &format!("password={password}"),
        ])?
        .success()?
        .json()?;
    let auth = &login["auth"];
    ensure!(auth["metadata"] == json!({"username": "alice"}) && auth["lease_duration"] == 3600, "{login}");
    ensure!(auth["policies"] == json!(["app-read", "default"]) && auth["orphan"] == true, "{login}");
    let token = auth["client_token"].as_str().context("token")?.to_string();
    let me = s.bao_as(&token, &["token", "lookup", "-format=json"])?.success()?.json()?;
    ensure!(
        me["data"]["display_name"] == "userpass-alice" && me["data"]["path"] == "auth/userpass/login/alice",
        "{me}"
    );

    let invalid = &["invalid username or password"];
    refused(&s, None, "PUT", "auth/userpass/login/alice", json!({"password": "wrong"}), 400, invalid)?;
    refused(&s, None, "PUT", "auth/userpass/login/mallory", json!({"password": password}), 400, invalid)?;

    let new_password = format!("pw-{}", random_alnum(16)?);
    ok(&s, "POST", "auth/userpass/users/alice/password", Some(json!({"password": new_password})))?;
    refused(&s, None, "PUT", "auth/userpass/login/alice", json!({"password": password}), 400, invalid)?;
    let (status, again) = call(&s, None, "PUT", "auth/userpass/login/alice", Some(json!({"password": new_password})))?;
    ensure!(status == 200 && again["auth"]["entity_id"] == auth["entity_id"], "same user, same entity: {again}");

    ok(&s, "DELETE", "auth/userpass/users/alice", None)?;
    refused(&s, None, "PUT", "auth/userpass/login/alice", json!({"password": new_password}), 400, invalid)?;

    if is_cairn(&s) {
        for secret in [&password, &new_password] {
            let found = files_containing(s.data_dir(), secret.as_bytes())?;
            ensure!(found.is_empty(), "a password is stored in clear in {found:?}");
            ensure!(!s.log().contains(secret.as_str()), "a password reached the log");
        }
        let logins = outcomes(&s, "auth/userpass/login/alice")?;
        let failed = logins.iter().filter(|o| **o == Outcome::Failed(400)).count();
        ensure!(failed == 3 && logins.len() == 5, "every login attempt is in the ledger: {logins:?}");
    }
    Ok(())
}

#[test]
fn group_policies_reach_tokens_already_issued_and_a_disabled_entity_locks_them_out() -> Result<()> {
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/userpass", Some(json!({"type": "userpass"})))?;
    let accessor =
        ok(&s, "GET", "sys/auth", None)?["data"]["userpass/"]["accessor"].as_str().context("accessor")?.to_string();
    ok(&s, "POST", "auth/userpass/users/bob", Some(json!({"password": "pw", "token_policies": ["default"]})))?;
    ok(
        &s,
        "PUT",
        "sys/policies/acl/team",
        Some(json!({"policy": "path \"secret/data/team/*\" { capabilities = [\"read\"] }"})),
    )?;
    ok(&s, "PUT", "secret/data/team/key", Some(json!({"data": {"v": "1"}})))?;

    let (_, login) = call(&s, None, "PUT", "auth/userpass/login/bob", Some(json!({"password": "pw"})))?;
    let token = login["auth"]["client_token"].as_str().context("token")?.to_string();
    let entity_id = login["auth"]["entity_id"].as_str().context("entity")?.to_string();
    let (status, _) = call(&s, Some(&token), "GET", "secret/data/team/key", None)?;
    ensure!(status == 403, "no group yet: {status}");

    // The entity found by its alias is the login's.
    let found =
        ok(&s, "POST", "identity/lookup/entity", Some(json!({"alias_name": "bob", "alias_mount_accessor": accessor})))?;
    ensure!(found["data"]["id"] == entity_id.as_str(), "{found}");
    ensure!(
        found["data"]["aliases"][0]["mount_type"] == "userpass" && found["data"]["aliases"][0]["name"] == "bob",
        "{found}"
    );

    let group = ok(
        &s,
        "POST",
        "identity/group",
        Some(json!({"name": "team", "policies": ["team"], "member_entity_ids": [entity_id]})),
    )?;
    let group_id = group["data"]["id"].as_str().context("group id")?.to_string();
    let read = ok(&s, "GET", &format!("identity/group/id/{group_id}"), None)?;
    ensure!(read["data"]["member_entity_ids"] == json!([entity_id]) && read["data"]["type"] == "internal", "{read}");

    // The token issued before the group now reads through it.
    let (status, body) = call(&s, Some(&token), "GET", "secret/data/team/key", None)?;
    ensure!(status == 200 && body["data"]["data"] == json!({"v": "1"}), "{status} {body}");
    let (_, login2) = call(&s, None, "PUT", "auth/userpass/login/bob", Some(json!({"password": "pw"})))?;
    ensure!(login2["auth"]["identity_policies"] == json!(["team"]), "{login2}");
    ensure!(
        login2["auth"]["policies"] == json!(["default", "team"])
            && login2["auth"]["token_policies"] == json!(["default"]),
        "{login2}"
    );

    let entity = ok(&s, "GET", &format!("identity/entity/id/{entity_id}"), None)?;
    ensure!(
        entity["data"]["group_ids"] == json!([group_id]) && entity["data"]["direct_group_ids"] == json!([group_id]),
        "{entity}"
    );

    // A disabled entity's tokens stop working, and it cannot log in.
    ok(&s, "POST", &format!("identity/entity/id/{entity_id}"), Some(json!({"disabled": true})))?;
    let (status, _) = call(&s, Some(&token), "GET", "secret/data/team/key", None)?;
    ensure!(status == 403, "disabled entity: {status}");
    let (status, _) = call(&s, None, "PUT", "auth/userpass/login/bob", Some(json!({"password": "pw"})))?;
    ensure!(status == 403, "disabled entity login: {status}");
    Ok(())
}

#[test]
fn bindings_secret_id_ttls_and_bound_tokens() -> Result<()> {
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/approle", Some(json!({"type": "approle"})))?;
    // The role only accepts secret ids from 10/8: a loopback login is refused.
    ok(&s, "POST", "auth/approle/role/far", Some(json!({"secret_id_bound_cidrs": ["10.0.0.0/8"]})))?;
    let role = ok(&s, "GET", "auth/approle/role/far", None)?;
    ensure!(role["data"]["secret_id_bound_cidrs"] == json!(["10.0.0.0/8"]), "{role}");
    let far_id = ok(&s, "GET", "auth/approle/role/far/role-id", None)?["data"]["role_id"]
        .as_str()
        .context("role id")?
        .to_string();
    let far_secret = ok(&s, "POST", "auth/approle/role/far/secret-id", None)?["data"]["secret_id"]
        .as_str()
        .context("sid")?
        .to_string();
    // OpenBao names the CIDR restriction (with a Go formatting bug); cairn gives every
    // AppRole login failure one answer.
    let (status, body) =
        call(&s, None, "PUT", "auth/approle/login", Some(json!({"role_id": far_id, "secret_id": far_secret})))?;
    ensure!(status == 400, "{status} {body}");
    if is_cairn(&s) {
        ensure!(body == json!({"errors": ["invalid role or secret ID"]}), "{body}");
    }

    // A short-lived secret id, and tokens bound to loopback (/32 is shown as an address).
    ok(
        &s,
        "POST",
        "auth/approle/role/near",
        Some(json!({"secret_id_ttl": "2s", "token_bound_cidrs": ["127.0.0.1/32"]})),
    )?;
    ensure!(
        ok(&s, "GET", "auth/approle/role/near", None)?["data"]["token_bound_cidrs"] == json!(["127.0.0.1"]),
        "normalised"
    );
    let near_id = ok(&s, "GET", "auth/approle/role/near/role-id", None)?["data"]["role_id"]
        .as_str()
        .context("role id")?
        .to_string();
    let issued = ok(&s, "POST", "auth/approle/role/near/secret-id", Some(json!({"metadata": "{\"env\":\"dev\"}"})))?;
    let sid = issued["data"]["secret_id"].as_str().context("sid")?.to_string();
    let lookup = ok(&s, "POST", "auth/approle/role/near/secret-id/lookup", Some(json!({"secret_id": sid})))?;
    ensure!(lookup["data"]["metadata"] == json!({"env": "dev"}) && lookup["data"]["secret_id_ttl"] == 2, "{lookup}");
    let listed = ok(&s, "LIST", "auth/approle/role/near/secret-id", None)?;
    ensure!(listed["data"]["keys"] == json!([issued["data"]["secret_id_accessor"]]), "{listed}");
    let (status, login) =
        call(&s, None, "PUT", "auth/approle/login", Some(json!({"role_id": near_id, "secret_id": sid})))?;
    ensure!(status == 200 && login["auth"]["metadata"] == json!({"env": "dev", "role_name": "near"}), "{login}");
    let token = login["auth"]["client_token"].as_str().context("token")?.to_string();
    let (status, _) = call(&s, Some(&token), "GET", "auth/token/lookup-self", None)?;
    ensure!(status == 200, "a loopback-bound token works from loopback: {status}");

    thread::sleep(Duration::from_millis(3_000));
    refused(
        &s,
        None,
        "PUT",
        "auth/approle/login",
        json!({"role_id": near_id, "secret_id": sid}),
        400,
        &["invalid role or secret ID"],
    )?;
    if is_cairn(&s) {
        // A token bound elsewhere is refused here (cairn: a token-create field).
        let t =
            ok(&s, "POST", "auth/token/create", Some(json!({"bound_cidrs": ["10.0.0.0/8"], "policies": ["default"]})))?;
        let far_token = t["auth"]["client_token"].as_str().context("token")?.to_string();
        let (status, _) = call(&s, Some(&far_token), "GET", "auth/token/lookup-self", None)?;
        ensure!(status == 403, "a 10/8-bound token from loopback: {status}");
        // The expired secret id ended by event.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stored = read_ledger(s.data_dir())?;
            let ended = stored.iter().any(|e| {
                matches!(&e.env.body, Body::App(Event::SecretIdsDestroyed(d)) if d.reason == migrations::SecretIdEnd::Expired)
            });
            if ended {
                break;
            }
            ensure!(std::time::Instant::now() < deadline, "no SecretIdsDestroyed(Expired) in the ledger");
            thread::sleep(Duration::from_millis(200));
        }
    }
    // Disabling the auth method revokes the tokens it issued.
    ok(&s, "DELETE", "sys/auth/approle", None)?;
    let (status, _) = call(&s, Some(&token), "GET", "auth/token/lookup-self", None)?;
    ensure!(status == 403, "a token of a disabled auth method: {status}");
    Ok(())
}

#[test]
fn any_response_can_be_wrapped_looked_up_rewrapped_and_unwrapped_once() -> Result<()> {
    let s = DevServer::start()?;
    ok(&s, "PUT", "secret/data/nested", Some(json!({"data": {"k": "v"}})))?;
    let wrapped =
        s.http_with("GET", "/v1/secret/data/nested", &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "60s")], b"")?;
    ensure!(wrapped.status == 200, "{}", wrapped.body);
    let w = wrapped.json()?;
    ensure!(w["request_id"] == "" && w["data"].is_null() && w["auth"].is_null(), "{w}");
    ensure!(w["wrap_info"]["ttl"] == 60 && w["wrap_info"]["creation_path"] == "secret/data/nested", "{w}");
    let first = w["wrap_info"]["token"].as_str().context("token")?.to_string();

    // Lookup needs no token.
    let (status, looked) = call(&s, None, "PUT", "sys/wrapping/lookup", Some(json!({"token": first})))?;
    ensure!(
        status == 200
            && looked["data"]["creation_path"] == "secret/data/nested"
            && looked["data"]["creation_ttl"] == 60,
        "{looked}"
    );

    // Rewrap: the old token is dead, the new one holds the same answer.
    let (status, re) = call(&s, Some(ROOT), "PUT", "sys/wrapping/rewrap", Some(json!({"token": first})))?;
    ensure!(status == 200 && re["wrap_info"]["creation_path"] == "secret/data/nested", "{re}");
    let second = re["wrap_info"]["token"].as_str().context("token")?.to_string();
    refused(
        &s,
        Some(ROOT),
        "PUT",
        "sys/wrapping/unwrap",
        json!({"token": first}),
        400,
        &["wrapping token is not valid or does not exist"],
    )?;
    let (status, un) = call(&s, Some(&second), "PUT", "sys/wrapping/unwrap", None)?;
    ensure!(status == 200 && un["data"]["data"] == json!({"k": "v"}) && un["data"]["metadata"]["version"] == 1, "{un}");
    ensure!(un["request_id"].as_str().is_some_and(|r| r.len() == 36), "a new request id: {un}");
    refused(
        &s,
        Some(&second),
        "PUT",
        "sys/wrapping/unwrap",
        json!({}),
        400,
        &["wrapping token is not valid or does not exist"],
    )?;

    // A wrapping token can do nothing but unwrap, and trying spends its one use.
    let other = s
        .http_with("GET", "/v1/secret/data/nested", &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "60s")], b"")?
        .json()?;
    let third = other["wrap_info"]["token"].as_str().context("token")?.to_string();
    let (status, _) = call(&s, Some(&third), "GET", "secret/data/nested", None)?;
    ensure!(status == 403, "a wrapping token reading a secret: {status}");
    refused(
        &s,
        Some(&third),
        "PUT",
        "sys/wrapping/unwrap",
        json!({}),
        400,
        &["wrapping token is not valid or does not exist"],
    )?;

    // A wrapped token create names the wrapped token's accessor; a 204 stays a 204.
    let created = s.http_with(
        "POST",
        "/v1/auth/token/create",
        &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "5m")],
        br#"{"policies":["default"]}"#,
    )?;
    let c = created.json()?;
    ensure!(
        c["wrap_info"]["ttl"] == 300 && c["wrap_info"]["wrapped_accessor"].as_str().is_some_and(|a| a.len() == 24),
        "{c}"
    );
    let no_content = s.http_with(
        "PUT",
        "/v1/sys/policies/acl/p",
        &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "5m")],
        br#"{"policy":"path \"a\" { capabilities = [\"read\"] }"}"#,
    )?;
    ensure!(no_content.status == 204, "{} {}", no_content.status, no_content.body);

    // sys/wrapping/wrap wraps the body; without a TTL it is refused.
    let ww = s
        .http_with(
            "PUT",
            "/v1/sys/wrapping/wrap",
            &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "30s")],
            br#"{"a":"b"}"#,
        )?
        .json()?;
    let t = ww["wrap_info"]["token"].as_str().context("token")?.to_string();
    let (_, un) = call(&s, Some(&t), "PUT", "sys/wrapping/unwrap", None)?;
    ensure!(un["data"] == json!({"a": "b"}), "{un}");
    refused(
        &s,
        Some(ROOT),
        "PUT",
        "sys/wrapping/wrap",
        json!({"a": "b"}),
        400,
        &["endpoint requires response wrapping to be used"],
    )?;
    Ok(())
}

#[test]
fn logins_are_rate_limited_per_client_address() -> Result<()> {
    let s = ConfigServer::start_with(Options {
        target: Some(Target::Cairn),
        config: "login_rate_limit = 1\nlogin_rate_burst = 3".into(),
        ..Options::default()
    })?;
    let init = s.http("PUT", "/v1/sys/init", None, Some(r#"{"secret_shares":1,"secret_threshold":1}"#))?.json()?;
    let root = init["root_token"].as_str().context("root")?.to_string();
    let key = init["keys_base64"][0].as_str().context("key")?.to_string();
    s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": key }).to_string()))?;
    let (status, _) = call(&s, Some(&root), "POST", "sys/auth/userpass", Some(json!({"type": "userpass"})))?;
    ensure!(status == 204, "enable: {status}");
    // A burst of 3, then one a second: 8 quick attempts cannot all pass, however slow
    // this machine is (that would take over 5 s).
    let started = std::time::Instant::now();
    let replies: Vec<(u16, Value)> = (0..8)
        .map(|_| call(&s, None, "PUT", "auth/userpass/login/nobody", Some(json!({"password": "x"}))))
        .collect::<Result<_>>()?;
    let statuses: Vec<u16> = replies.iter().map(|(st, _)| *st).collect();
    ensure!(statuses[..3] == [400, 400, 400], "{statuses:?}");
    if started.elapsed() < Duration::from_secs(5) {
        let limited = replies.iter().find(|(st, _)| *st == 429).context(format!("no 429 in {statuses:?}"))?;
        ensure!(limited.1 == json!({"errors": ["rate limit quota exceeded"]}), "{}", limited.1);
    }
    thread::sleep(Duration::from_millis(1_100));
    let (status, _) = call(&s, None, "PUT", "auth/userpass/login/nobody", Some(json!({"password": "x"})))?;
    ensure!(status == 400, "after a second the bucket has refilled: {status}");
    // Other endpoints are not limited.
    let (status, _) = call(&s, Some(&root), "GET", "auth/token/lookup-self", None)?;
    ensure!(status == 200, "{status}");
    Ok(())
}

#[test]
fn one_templated_policy_gives_every_user_a_path_of_their_own() -> Result<()> {
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/userpass", Some(json!({"type": "userpass"})))?;
    let accessor =
        ok(&s, "GET", "sys/auth", None)?["data"]["userpass/"]["accessor"].as_str().context("accessor")?.to_string();
    let policy = format!(
        "path \"secret/data/users/{{{{identity.entity.aliases.{accessor}.name}}}}/*\" {{ capabilities = [\"create\", \"update\", \"read\"] }}\n\
         path \"secret/data/by-id/{{{{identity.entity.id}}}}\" {{ capabilities = [\"read\"] }}"
    );
    ok(&s, "PUT", "sys/policies/acl/own", Some(json!({ "policy": policy })))?;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        ok(
            &s,
            "POST",
            &format!("auth/userpass/users/{user}"),
            Some(json!({"password": "pw", "token_policies": ["own"]})),
        )?;
        let (status, login) =
            call(&s, None, "PUT", &format!("auth/userpass/login/{user}"), Some(json!({"password": "pw"})))?;
        ensure!(status == 200, "{login}");
        let token = login["auth"]["client_token"].as_str().context("token")?.to_string();
        let entity = login["auth"]["entity_id"].as_str().context("entity")?.to_string();
        tokens.push((user, token, entity));
    }
    for (user, token, entity) in &tokens {
        let (status, body) = call(
            &s,
            Some(token),
            "PUT",
            &format!("secret/data/users/{user}/notes"),
            Some(json!({"data": {"n": user}})),
        )?;
        ensure!(status == 200, "{user} writes their own path: {status} {body}");
        let other = if *user == "alice" { "bob" } else { "alice" };
        let (status, _) = call(
            &s,
            Some(token),
            "PUT",
            &format!("secret/data/users/{other}/notes"),
            Some(json!({"data": {"n": user}})),
        )?;
        ensure!(status == 403, "{user} writes {other}'s path: {status}");
        ok(&s, "PUT", &format!("secret/data/by-id/{entity}"), Some(json!({"data": {"mine": true}})))?;
        let (status, _) = call(&s, Some(token), "GET", &format!("secret/data/by-id/{entity}"), None)?;
        ensure!(status == 200, "{user} reads by entity id: {status}");
    }
    Ok(())
}

fn now_secs() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
        .unwrap_or(i64::MAX)
}

#[test]
fn jwt_logins_from_a_ci_issuer_with_bound_claims_groups_and_key_rotation() -> Result<()> {
    let mut issuer = e2e::jwt::TestIssuer::start()?;
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/jwt", Some(json!({"type": "jwt"})))?;
    let accessor = ok(&s, "GET", "sys/auth", None)?["data"]["jwt/"]["accessor"].as_str().context("acc")?.to_string();
    ok(&s, "POST", "auth/jwt/config", Some(json!({"oidc_discovery_url": issuer.url, "bound_issuer": issuer.url})))?;
    ok(
        &s,
        "POST",
        "auth/jwt/role/ci",
        Some(json!({
            "role_type": "jwt", "bound_audiences": ["cairn"], "user_claim": "sub",
            "bound_claims": {"repo": "acme/*"}, "bound_claims_type": "glob",
            "claim_mappings": {"repo": "repo"}, "groups_claim": "groups",
            "token_policies": ["ci"], "token_ttl": "15m",
        })),
    )?;
    let role = ok(&s, "GET", "auth/jwt/role/ci", None)?;
    ensure!(role["data"]["bound_claims"] == json!({"repo": "acme/*"}) && role["data"]["token_ttl"] == 900, "{role}");

    // An external group fed by the groups claim adds its policy.
    let group = ok(
        &s,
        "POST",
        "identity/group",
        Some(json!({"name": "deployers", "type": "external", "policies": ["deploy"]})),
    )?;
    let group_id = group["data"]["id"].as_str().context("group")?.to_string();
    ok(
        &s,
        "POST",
        "identity/group-alias",
        Some(json!({"name": "deployers", "mount_accessor": accessor, "canonical_id": group_id})),
    )?;

    let now = now_secs();
    let iss = issuer.url.clone();
    let claims = |aud: &str, repo: &str, exp: i64| json!({"iss": iss, "sub": "pipeline-7", "aud": aud, "repo": repo, "groups": ["deployers"], "iat": now, "exp": exp});
    let jwt = issuer.sign(&claims("cairn", "acme/web", now + 300))?;
    let (status, login) = call(&s, None, "PUT", "auth/jwt/login", Some(json!({"role": "ci", "jwt": jwt})))?;
    ensure!(status == 200, "{login}");
    let auth = &login["auth"];
    ensure!(auth["metadata"] == json!({"repo": "acme/web", "role": "ci"}) && auth["lease_duration"] == 900, "{login}");
    ensure!(
        auth["identity_policies"] == json!(["deploy"]) && auth["policies"] == json!(["ci", "default", "deploy"]),
        "{login}"
    );
    let entity = ok(&s, "GET", &format!("identity/entity/id/{}", auth["entity_id"].as_str().context("e")?), None)?;
    ensure!(
        entity["data"]["aliases"][0]["name"] == "pipeline-7" && entity["data"]["group_ids"] == json!([group_id]),
        "{entity}"
    );

    // Wrong audience, unbound repo, expired, and alg none are refused.
    for (jwt, why) in [
        (issuer.sign(&claims("other", "acme/web", now + 300))?, "audience"),
        (issuer.sign(&claims("cairn", "evil/web", now + 300))?, "bound claim"),
        (issuer.sign(&claims("cairn", "acme/web", now - 600))?, "expired"),
    ] {
        let (status, body) = call(&s, None, "PUT", "auth/jwt/login", Some(json!({"role": "ci", "jwt": jwt})))?;
        ensure!(status == 400, "{why}: {status} {body}");
        ensure!(!body.to_string().contains(&jwt), "the error quotes the token ({why})");
    }
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none =
        format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims("cairn", "acme/web", now + 300)));
    let (status, _) = call(&s, None, "PUT", "auth/jwt/login", Some(json!({"role": "ci", "jwt": none})))?;
    ensure!(status == 400, "alg none: {status}");

    // The issuer rotates its key: tokens signed with the new key log in once the keys are
    // fetched again (an unknown key id refetches them, at most once every 5 s).
    issuer.rotate()?;
    thread::sleep(Duration::from_millis(5_200));
    let jwt = issuer.sign(&claims("cairn", "acme/api", now + 300))?;
    let (status, login) = call(&s, None, "PUT", "auth/jwt/login", Some(json!({"role": "ci", "jwt": jwt})))?;
    ensure!(status == 200 && login["auth"]["metadata"]["repo"] == "acme/api", "after rotation: {status} {login}");
    Ok(())
}

#[test]
fn kubernetes_logins_are_vouched_for_by_the_token_review_api() -> Result<()> {
    let k8s = e2e::k8s::FakeKubernetes::start()?;
    let s = DevServer::start()?;
    ok(&s, "POST", "sys/auth/kubernetes", Some(json!({"type": "kubernetes"})))?;
    // Before any role.
    let pod = k8s.issue_token("prod", "app-sa")?;
    refused(
        &s,
        None,
        "PUT",
        "auth/kubernetes/login",
        json!({"role": "app", "jwt": pod}),
        400,
        &["invalid role name \"app\""],
    )?;
    let reviewer = k8s.reviewer_token()?;
    ok(
        &s,
        "POST",
        "auth/kubernetes/config",
        Some(json!({"kubernetes_host": k8s.url, "kubernetes_ca_cert": k8s.ca_pem, "token_reviewer_jwt": reviewer})),
    )?;
    let config = ok(&s, "GET", "auth/kubernetes/config", None)?;
    ensure!(
        config["data"]["token_reviewer_jwt_set"] == true && config["data"].get("token_reviewer_jwt").is_none(),
        "{config}"
    );
    ok(
        &s,
        "POST",
        "auth/kubernetes/role/app",
        Some(
            json!({"bound_service_account_names": ["app-sa"], "bound_service_account_namespaces": ["prod"], "token_policies": ["app"], "token_ttl": "1h"}),
        ),
    )?;

    let (status, login) = call(&s, None, "PUT", "auth/kubernetes/login", Some(json!({"role": "app", "jwt": pod})))?;
    ensure!(status == 200, "{login}");
    let meta = &login["auth"]["metadata"];
    ensure!(
        meta["service_account_name"] == "app-sa"
            && meta["service_account_namespace"] == "prod"
            && meta["role"] == "app",
        "{login}"
    );
    ensure!(meta["service_account_uid"] == k8s.uid("prod", "app-sa").as_str(), "{login}");
    ensure!(
        login["auth"]["policies"] == json!(["app", "default"]) && login["auth"]["lease_duration"] == 3600,
        "{login}"
    );
    let reviews = k8s.reviews();
    ensure!(reviews >= 1, "the login was reviewed by the API server");

    // Another namespace is refused before any review; a deleted account by the review.
    let other = k8s.issue_token("dev", "app-sa")?;
    refused(
        &s,
        None,
        "PUT",
        "auth/kubernetes/login",
        json!({"role": "app", "jwt": other}),
        403,
        &["namespace not authorized"],
    )?;
    ensure!(k8s.reviews() == reviews, "no TokenReview for a namespace the role does not bind");
    k8s.delete_service_account("prod", "app-sa");
    refused(&s, None, "PUT", "auth/kubernetes/login", json!({"role": "app", "jwt": pod}), 403, &["permission denied"])?;

    if is_cairn(&s) {
        let found = files_containing(s.data_dir(), reviewer.as_bytes())?;
        ensure!(found.is_empty(), "the reviewer JWT is stored in clear in {found:?}");
        ensure!(!s.log().contains(&reviewer) && !s.log().contains(&pod), "a JWT reached the log");
    }
    Ok(())
}
