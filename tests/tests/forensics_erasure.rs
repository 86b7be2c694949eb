//! Forensics that survive erasure (FORMAT.md §8.1), as an incident responder meets it: a
//! secret is written twice, the moment of interest passes, then `kv destroy` and KV v2's
//! pruning of old versions zero key slots of events before that moment. Every tool that
//! reads up to the moment, and every bundle cut before the erasure, still verifies and
//! answers; the ledger as a whole stays intact.

use anyhow::{Context, Result, ensure};
use e2e::{DevServer, Options, Server, Target, cairn, stdout};
use serde_json::{Value, json};

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

fn call(s: &Server, method: &str, path: &str, body: Value) -> Result<Value> {
    let body = if body.is_null() { None } else { Some(body.to_string()) };
    let reply = s.http(method, &format!("/v1/{path}"), Some("root"), body.as_deref())?;
    ensure!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    if reply.body.trim().is_empty() { Ok(Value::Null) } else { reply.json() }
}

/// The current time as RFC 3339, between two pauses so no commit batch straddles it.
fn moment() -> Result<String> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let text = replay::time::rfc3339(u64::try_from(now.as_nanos())?);
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(text)
}

/// The seq of the last event at or before `at`, from a replay report.
fn seq_at(data: &str, at: &str) -> Result<u64> {
    let r = run_json(&["replay", "--data-dir", data, "--at", at, "--format", "json"])?;
    r["seq"].as_u64().context("seq")
}

#[test]
fn every_tool_reads_a_moment_before_a_destroy_and_a_prune() -> Result<()> {
    let mut s = DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })?;
    call(&s, "POST", "secret/data/app/db", json!({"data": {"password": "one"}}))?;
    let t1 = moment()?;
    call(&s, "POST", "secret/data/app/db", json!({"data": {"password": "two"}}))?;
    call(&s, "POST", "secret/metadata/app/pruned", json!({"max_versions": 1}))?;
    call(&s, "POST", "secret/data/app/pruned", json!({"data": {"v": "kept until pruned"}}))?;
    let t = moment()?;
    // After the moment: destroy version 1, prune the other secret's only version by
    // writing a second one, and change something else.
    call(&s, "POST", "secret/destroy/app/db", json!({"versions": [1]}))?;
    call(&s, "POST", "secret/data/app/pruned", json!({"data": {"v": "newer"}}))?;
    call(&s, "PUT", "sys/policies/acl/late", json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"}))?;
    s.stop(std::time::Duration::from_secs(10))?;
    let data = s.data_dir().to_str().context("path")?.to_owned();

    // The whole ledger: intact, with the two erased payloads.
    let whole = run_json(&["ledger", "verify", "--data-dir", &data, "--format", "json"])?;
    ensure!(whole["intact"] == true && whole["erased_payloads"] == 2, "{whole}");

    // replay --at T: the state then, both versions present and not destroyed.
    let then = run_json(&["replay", "--data-dir", &data, "--at", &t, "--format", "json"])?;
    let db = &then["kv"]["secret/app/db"];
    ensure!(db["current_version"] == 2 && db["versions"]["1"]["destroyed"] == false, "{then}");
    ensure!(then["kv"]["secret/app/pruned"]["current_version"] == 1, "{then}");
    ensure!(then["policies"].get("late").is_none(), "{then}");
    // replay --diff T1 T: the second version appears.
    let diff = run_json(&["replay", "--data-dir", &data, "--diff", &t1, &t, "--format", "json"])?;
    ensure!(diff["sections"]["kv"]["changed"]["secret/app/db"]["after"]["current_version"] == 2, "{diff}");
    // who-can at T.
    let who = run(&["replay", "who-can", "--data-dir", &data, "--path", "secret/data/app/db", "--at", &t])?;
    ensure!(who.contains("root"), "{who}");
    // ledger query up to T: both writes of the first secret.
    let rows = run_json(&["ledger", "query", "--data-dir", &data, "--to", &t, "--format", "json"])?;
    let writes = rows.as_array().context("rows")?.iter().filter(|r| r["kind"] == "KvWritten").count();
    ensure!(writes == 3, "three KV writes before the moment: {rows}");

    // A bundle cut at the moment carries the later erasures' proofs and verifies offline.
    let to = seq_at(&data, &t)?.to_string();
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("before-destroy.bundle");
    let bundle_arg = bundle.to_str().context("path")?;
    run(&["ledger", "export", "--data-dir", &data, "--out", bundle_arg, "--to", &to])?;
    let verified = run_json(&["ledger", "verify", "--bundle", bundle_arg, "--format", "json"])?;
    ensure!(verified["intact"] == true && verified["erased_payloads"] == 2, "{verified}");
    ensure!(verified["later_erasures_proven_to"].as_u64() > Some(to.parse()?), "{verified}");
    let text = run(&["ledger", "verify", "--bundle", bundle_arg])?;
    ensure!(text.contains("intact") && text.contains("erased later"), "{text}");
    let from_bundle = run_json(&["replay", "--bundle", bundle_arg, "--at", &t1, "--format", "json"])?;
    ensure!(from_bundle["kv"]["secret/app/db"]["current_version"] == 1, "{from_bundle}");
    // The independent verifier agrees.
    let py = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../ledger/tools/verify_ledger.py"))
        .arg(&data)
        .output()?;
    ensure!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
    Ok(())
}
