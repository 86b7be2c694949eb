//! Forensics and compliance, as an incident responder and an auditor use them: a bundle
//! exported online from a running server verifies offline and holds no secret in clear;
//! `cairn replay` rebuilds the state as of a moment and diffs two moments; `who-can`
//! names every token that could read a path then, with the rule that let it; and
//! `cairn ledger query` finds the same events offline and through `sys/ledger/query`.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use e2e::{DevServer, Options, Server, Target, cairn, random_alnum, stdout};
use serde_json::{Value, json};

fn cairn_dev() -> Result<DevServer> {
    DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })
}

/// `cairn ARGS`, which must succeed; its stdout.
fn run(args: &[&str]) -> Result<String> {
    let out = cairn(args)?;
    ensure!(
        out.status.success(),
        "cairn {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout(&out))
}

fn run_json(args: &[&str]) -> Result<Value> {
    let text = run(args)?;
    serde_json::from_str(&text).with_context(|| format!("cairn {} printed no JSON: {text}", args.join(" ")))
}

fn call(s: &Server, token: &str, method: &str, path: &str, body: Value) -> Result<Value> {
    let body = if body.is_null() { None } else { Some(body.to_string()) };
    let token = if token.is_empty() { None } else { Some(token) };
    let reply = s.http(method, &format!("/v1/{path}"), token, body.as_deref())?;
    ensure!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    if reply.body.trim().is_empty() { Ok(Value::Null) } else { reply.json() }
}

/// The current time as RFC 3339, and a pause so that events before and after it never
/// share a commit time.
fn moment() -> Result<String> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let text = replay::time::rfc3339(u64::try_from(now.as_nanos())?);
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(text)
}

fn bundle_contains(bundle: &Path, needle: &str) -> Result<bool> {
    let bytes = std::fs::read(bundle)?;
    Ok(bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[test]
fn an_incident_replayed_from_an_online_export() -> Result<()> {
    let s = cairn_dev()?;
    let root = "root";
    let first_value = format!("first-{}", random_alnum(20)?);
    let second_value = format!("second-{}", random_alnum(20)?);
    let password = format!("pw-{}", random_alnum(20)?);

    // Before: one secret version, a reader policy and a token holding it.
    call(&s, root, "POST", "secret/data/app", json!({"data": {"password": first_value}}))?;
    call(
        &s,
        root,
        "PUT",
        "sys/policies/acl/reader",
        json!({"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}),
    )?;
    let reader = call(&s, root, "POST", "auth/token/create", json!({"policies": ["reader"], "ttl": "1h"}))?;
    let reader_token = reader["auth"]["client_token"].as_str().context("token")?.to_owned();
    let reader_accessor = reader["auth"]["accessor"].as_str().context("accessor")?.to_owned();
    let doomed = call(&s, root, "POST", "auth/token/create", json!({"policies": ["reader"]}))?;
    let doomed_token = doomed["auth"]["client_token"].as_str().context("token")?.to_owned();
    let doomed_accessor = doomed["auth"]["accessor"].as_str().context("accessor")?.to_owned();
    call(&s, &reader_token, "GET", "secret/data/app", Value::Null)?;
    let before = moment()?;

    // The incident: a new version, metadata, a userpass user, a revoked token, and a
    // denied read by the reader.
    call(&s, root, "POST", "secret/data/app", json!({"data": {"password": second_value}}))?;
    call(&s, root, "POST", "secret/metadata/app", json!({"custom_metadata": {"owner": "ops"}}))?;
    call(&s, root, "POST", "sys/auth/userpass", json!({"type": "userpass"}))?;
    call(&s, root, "POST", "auth/userpass/users/alice", json!({"password": password, "token_policies": ["reader"]}))?;
    let login = call(&s, "", "POST", "auth/userpass/login/alice", json!({"password": password}))?;
    let alice_token = login["auth"]["client_token"].as_str().context("alice")?.to_owned();
    call(&s, root, "POST", "auth/token/revoke-accessor", json!({"accessor": doomed_accessor}))?;
    let denied = s.http("GET", "/v1/secret/data/other", Some(&reader_token), None)?;
    ensure!(denied.status == 403, "{}", denied.body);
    let after = moment()?;

    // The online tools need sudo: a reader's token is refused, root's is not.
    let refused = s.http("GET", "/v1/sys/ledger/query", Some(&reader_token), None)?;
    ensure!(refused.status == 403, "query without sudo: {} {}", refused.status, refused.body);
    let bad = s.http("GET", "/v1/sys/ledger/query?from=yesterday", Some(root), None)?;
    ensure!(bad.status == 400 && bad.body.contains("RFC 3339"), "{} {}", bad.status, bad.body);

    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("incident.bundle");
    let bundle_arg = bundle.to_str().context("path")?;
    let address = s.addr();
    run(&["ledger", "export", "--address", &address, "--token", root, "--out", bundle_arg])?;
    let verified = run(&["ledger", "verify", "--bundle", bundle_arg])?;
    ensure!(verified.contains("intact"), "{verified}");
    for secret in [&first_value, &second_value, &password, &reader_token, &doomed_token, &alice_token] {
        ensure!(!bundle_contains(&bundle, secret)?, "the bundle holds a secret in clear");
    }
    // A reader's token cannot export.
    let out = cairn(&["ledger", "export", "--address", &address, "--token", &reader_token, "--out", bundle_arg])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"), "{out:?}");

    // The state before the incident, and after it.
    let then = run_json(&["replay", "--bundle", bundle_arg, "--at", &before, "--format", "json"])?;
    ensure!(then["kv"]["secret/app"]["current_version"] == 1, "{}", then["kv"]);
    ensure!(then["policies"]["reader"].as_str().is_some_and(|p| p.contains("secret/data/app")), "{}", then["policies"]);
    ensure!(then["tokens"][&doomed_accessor]["policies"] == json!(["default", "reader"]), "{}", then["tokens"]);
    ensure!(then["mounts"].get("auth/userpass/").is_none(), "{}", then["mounts"]);
    let now = run_json(&["replay", "--bundle", bundle_arg, "--at", &after, "--format", "json"])?;
    ensure!(now["kv"]["secret/app"]["current_version"] == 2, "{}", now["kv"]);
    ensure!(now["kv"]["secret/app"]["custom_metadata"] == json!({"owner": "ops"}), "{}", now["kv"]);
    ensure!(now["tokens"].get(&doomed_accessor).is_none(), "a revoked token is not live: {}", now["tokens"]);
    ensure!(now["mounts"]["auth/userpass/"]["type"] == "userpass", "{}", now["mounts"]);
    let text = serde_json::to_string(&now)?;
    ensure!(!text.contains(&second_value) && !text.contains(&password), "a replay report shows no value");

    let diff = run_json(&["replay", "--bundle", bundle_arg, "--diff", &before, &after, "--format", "json"])?;
    let sections = &diff["sections"];
    ensure!(sections["kv"]["changed"]["secret/app"]["after"]["current_version"] == 2, "{diff}");
    ensure!(sections["tokens"]["removed"].get(&doomed_accessor).is_some(), "{diff}");
    ensure!(sections["mounts"]["added"].get("auth/userpass/").is_some(), "{diff}");
    ensure!(sections.get("policies").is_none(), "the policies did not change: {diff}");

    // Who could read the secret: before, the doomed token too; after, not any more, but
    // alice's login token (through the reader policy).
    let grants = |at: &str| -> Result<Vec<(String, String, Value)>> {
        let v = run_json(&[
            "replay",
            "who-can",
            "--bundle",
            bundle_arg,
            "--path",
            "secret/data/app",
            "--at",
            at,
            "--format",
            "json",
        ])?;
        Ok(v.as_array()
            .context("a list")?
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap_or("").to_owned(),
                    g["pattern"].as_str().unwrap_or("").to_owned(),
                    g["policies"].clone(),
                )
            })
            .collect())
    };
    let then = grants(&before)?;
    ensure!(then.contains(&(doomed_accessor.clone(), "secret/data/app".into(), json!(["reader"]))), "{then:?}");
    ensure!(then.contains(&(reader_accessor.clone(), "secret/data/app".into(), json!(["reader"]))), "{then:?}");
    ensure!(then.iter().any(|g| g.1 == "*" && g.2 == json!(["root"])), "root: {then:?}");
    ensure!(then.len() == 3, "{then:?}");
    let now = grants(&after)?;
    ensure!(!now.iter().any(|g| g.0 == doomed_accessor), "{now:?}");
    ensure!(now.len() == 4, "root, the reader, alice's token and alice's userpass user: {now:?}");
    ensure!(now.iter().any(|g| g.0 == "auth/userpass/users/alice" && g.2 == json!(["reader"])), "{now:?}");
    let nobody = run(&["replay", "who-can", "--bundle", bundle_arg, "--path", "secret/data/other"])?;
    ensure!(nobody.lines().count() == 2, "only root can read secret/data/other: {nobody}");

    // The reader's requests, offline and online: the allowed read, the denied one, and its
    // attempt at the ledger query.
    let offline =
        run_json(&["ledger", "query", "--bundle", bundle_arg, "--actor", &reader_accessor, "--format", "json"])?;
    let seen: Vec<(String, String)> = offline
        .as_array()
        .context("rows")?
        .iter()
        .map(|r| (r["path"].as_str().unwrap_or("").to_owned(), r["outcome"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected = [("secret/data/app", "allowed"), ("secret/data/other", "denied"), ("sys/ledger/query", "denied")];
    ensure!(seen.iter().map(|(p, o)| (p.as_str(), o.as_str())).eq(expected), "{seen:?}");
    let online = run_json(&[
        "ledger",
        "query",
        "--address",
        &address,
        "--token",
        root,
        "--actor",
        &reader_accessor,
        "--format",
        "json",
    ])?;
    // Online, the ledger goes on: the reader's refused export came after the bundle.
    let (online_rows, offline_rows) = (online.as_array().context("rows")?, offline.as_array().context("rows")?);
    ensure!(online_rows.len() == 4 && online_rows[..3] == offline_rows[..], "online {online} vs offline {offline}");
    ensure!(online_rows[3]["path"] == "sys/ledger/export" && online_rows[3]["outcome"] == "denied", "{online}");
    // Writes under secret/ in the window: both versions' KvWritten with their access events.
    let writes = run_json(&[
        "ledger",
        "query",
        "--bundle",
        bundle_arg,
        "--path",
        "secret/data/",
        "--op",
        "update",
        "--from",
        &before,
        "--to",
        &after,
        "--format",
        "json",
    ])?;
    let kinds: Vec<&str> = writes.as_array().context("rows")?.iter().filter_map(|r| r["kind"].as_str()).collect();
    ensure!(kinds.contains(&"KvWritten") && kinds.contains(&"access"), "{writes}");
    Ok(())
}

#[test]
fn replay_refuses_a_tampered_ledger_and_bad_moments() -> Result<()> {
    let mut s = cairn_dev()?;
    call(&s, "root", "POST", "secret/data/app", json!({"data": {"k": "v"}}))?;
    s.stop(std::time::Duration::from_secs(5))?;
    let data = s.data_dir().to_str().context("path")?.to_owned();
    let out = cairn(&["replay", "--data-dir", &data, "--at", "yesterday"])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("RFC 3339"), "{out:?}");
    let report = run_json(&["replay", "--data-dir", &data, "--at", "3", "--format", "json"])?;
    ensure!(report["seq"] == 3 && report["kv"].as_object().is_some_and(|k| k.is_empty()), "{report}");

    // One flipped byte in the middle of the ledger: replay stops with the seq, not a state.
    let seg_dir = s.data_dir().join("ledger").join("segments");
    let seg = std::fs::read_dir(&seg_dir)?.next().context("a segment")??.path();
    let mut bytes = std::fs::read(&seg)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&seg, bytes)?;
    let out = cairn(&["replay", "--data-dir", &data])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("does not verify at seq"), "{err}");
    Ok(())
}
