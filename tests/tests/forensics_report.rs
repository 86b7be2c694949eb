//! `cairn replay report`: the file an analyst hands on after an incident. A reader policy
//! is widened by someone, a token reads what it could not before, another read is denied;
//! the report of that window names who did each thing, shows the policy change as a line
//! diff with its author and seq, who gained access, and how the ledger was verified. The
//! HTML form is one file with no external asset, and `--path` narrows it.

use anyhow::{Context, Result, ensure};
use e2e::{DevServer, Options, Server, Target, cairn, stdout};
use serde_json::{Value, json};

fn run(args: &[&str]) -> Result<String> {
    let out = cairn(args)?;
    ensure!(out.status.success(), "cairn {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(stdout(&out))
}

fn call(s: &Server, token: &str, method: &str, path: &str, body: Value) -> Result<Value> {
    let body = if body.is_null() { None } else { Some(body.to_string()) };
    let reply = s.http(method, &format!("/v1/{path}"), Some(token), body.as_deref())?;
    ensure!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    if reply.body.trim().is_empty() { Ok(Value::Null) } else { reply.json() }
}

fn moment() -> Result<String> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let text = replay::time::rfc3339(u64::try_from(now.as_nanos())?);
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(text)
}

#[test]
fn a_report_of_an_incident_names_who_did_what_and_who_gained_access() -> Result<()> {
    let mut s = DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })?;
    call(&s, "root", "POST", "secret/data/payroll", json!({"data": {"k": "v"}}))?;
    call(&s, "root", "POST", "secret/data/app", json!({"data": {"k": "v"}}))?;
    let narrow = "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n";
    call(&s, "root", "PUT", "sys/policies/acl/reader", json!({"policy": narrow}))?;
    let admin =
        call(&s, "root", "POST", "auth/token/create", json!({"policies": ["root"], "display_name": "mallory"}))?;
    let admin_token = admin["auth"]["client_token"].as_str().context("token")?.to_owned();
    let reader = call(&s, "root", "POST", "auth/token/create", json!({"policies": ["reader"], "display_name": "svc"}))?;
    let reader_token = reader["auth"]["client_token"].as_str().context("token")?.to_owned();
    let reader_accessor = reader["auth"]["accessor"].as_str().context("accessor")?.to_owned();
    let t1 = moment()?;

    // The incident: mallory widens the reader policy; the service reads payroll; a read of
    // something else is denied.
    let wide = format!("{narrow}path \"secret/data/payroll\" {{\n  capabilities = [\"read\"]\n}}\n");
    call(&s, &admin_token, "PUT", "sys/policies/acl/reader", json!({"policy": wide}))?;
    call(&s, &reader_token, "GET", "secret/data/payroll", Value::Null)?;
    let denied = s.http("GET", "/v1/secret/data/other", Some(&reader_token), None)?;
    ensure!(denied.status == 403);
    let t2 = moment()?;
    call(&s, "root", "POST", "secret/data/after", json!({"data": {"k": "v"}}))?;
    s.stop(std::time::Duration::from_secs(10))?;
    let data = s.data_dir().to_str().context("path")?.to_owned();

    let r: Value = serde_json::from_str(&run(&[
        "replay",
        "report",
        "--data-dir",
        &data,
        "--from",
        &t1,
        "--to",
        &t2,
        "--format",
        "json",
    ])?)?;
    // The timeline: the policy write by mallory, the read and the denial by svc, nothing after.
    let timeline = r["timeline"].as_array().context("timeline")?;
    let find = |path: &str, outcome: &str| {
        timeline.iter().find(|row| row["path"] == path && row["outcome"] == outcome && row["kind"] == "access")
    };
    let write = find("sys/policies/acl/reader", "allowed").context("the policy write")?;
    ensure!(write["actor"].as_str().is_some_and(|a| a.contains("mallory")), "{write}");
    let read = find("secret/data/payroll", "allowed").context("the payroll read")?;
    ensure!(read["actor"].as_str().is_some_and(|a| a.contains("svc") && a.contains(&reader_accessor)), "{read}");
    ensure!(find("secret/data/other", "denied").is_some(), "{timeline:?}");
    ensure!(!timeline.iter().any(|row| row["path"] == "secret/data/after"), "the window ends at T2");
    // The policy change as a line diff, with its author and seq.
    let change = &r["policy_changes"][0];
    let written = timeline.iter().find(|row| row["kind"] == "PolicyWritten").context("the PolicyWritten row")?;
    ensure!(change["name"] == "reader" && change["seq"] == written["seq"], "{change}");
    ensure!(change["actor"].as_str().is_some_and(|a| a.contains("mallory")), "{change}");
    let lines: Vec<&str> = change["diff"].as_array().context("diff")?.iter().filter_map(Value::as_str).collect();
    ensure!(lines.contains(&"+ path \"secret/data/payroll\" {"), "{lines:?}");
    ensure!(lines.contains(&"  path \"secret/data/app\" {"), "unchanged lines stay: {lines:?}");
    // Who could read payroll: svc gained it.
    let payroll = r["access"].as_array().context("access")?.iter().find(|a| a["path"] == "secret/data/payroll");
    let payroll = payroll.context("payroll was touched")?;
    let has = |side: &str| payroll[side].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == reader_accessor));
    ensure!(!has("before") && has("after"), "{payroll}");
    // Verification: the keys and checkpoints behind it.
    let v = &r["verification"];
    ensure!(v["checkpoints"].as_u64() > Some(0) && v["keys"].as_array().is_some_and(|k| !k.is_empty()), "{v}");

    // HTML: one file, nothing fetched from elsewhere, values escaped.
    let dir = tempfile::tempdir()?;
    let html_file = dir.path().join("report.html");
    let html_arg = html_file.to_str().context("path")?;
    run(&["replay", "report", "--data-dir", &data, "--from", &t1, "--to", &t2, "--format", "html", "--out", html_arg])?;
    let html = std::fs::read_to_string(&html_file)?;
    ensure!(html.starts_with("<!doctype html>") && html.contains("mallory"), "{html}");
    for external in ["<script", "<link", "src=", "http://", "https://", "@import", "url("] {
        ensure!(!html.contains(external), "the report refers to something outside it: {external}");
    }
    ensure!(html.contains("path &quot;secret/data/payroll&quot;"), "policy text is escaped");

    // --path narrows the timeline and the access section.
    let narrowed: Value = serde_json::from_str(&run(&[
        "replay",
        "report",
        "--data-dir",
        &data,
        "--from",
        &t1,
        "--to",
        &t2,
        "--path",
        "secret/data/payroll",
        "--format",
        "json",
    ])?)?;
    let rows = narrowed["timeline"].as_array().context("timeline")?;
    ensure!(!rows.is_empty() && rows.iter().all(|row| row["path"] == "secret/data/payroll"), "{rows:?}");
    let text = run(&["replay", "report", "--data-dir", &data, "--from", &t1, "--to", &t2])?;
    ensure!(text.contains("INCIDENT REPORT") && text.contains("+ path \"secret/data/payroll\" {"), "{text}");

    // replay --path and the readable diff.
    let filtered: Value =
        serde_json::from_str(&run(&["replay", "--data-dir", &data, "--path", "secret/data/app", "--format", "json"])?)?;
    let kv: Vec<&String> = filtered["kv"].as_object().context("kv")?.keys().collect();
    ensure!(kv == vec!["secret/app"], "{kv:?}");
    let diff = run(&["replay", "--data-dir", &data, "--diff", &t1, &t2])?;
    ensure!(diff.contains("+ path \"secret/data/payroll\" {"), "a policy change is a line diff: {diff}");
    Ok(())
}
