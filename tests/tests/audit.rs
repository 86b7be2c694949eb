//! Audit devices: `bao audit enable/list/disable`, `sys/audit-hash`, and what a device
//! writes, in Vault's format; then cairn's own guarantees: a device never slows requests,
//! catches up from its cursor in order without duplicates, survives a restart, and follows
//! a rotated log file.
//!
//! The format test passes against OpenBao 2.7.2 (`CAIRN_COMPAT_TARGET=openbao`), which
//! needs `unsafe_allow_api_audit_creation` and so a config-mode server there.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, DevServer, Options, Server, Target};
use serde_json::{Value, json};

const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

enum Started {
    Dev(DevServer),
    Config(ConfigServer),
}

impl Deref for Started {
    type Target = Server;
    fn deref(&self) -> &Server {
        match self {
            Started::Dev(s) => s,
            Started::Config(s) => s,
        }
    }
}

/// A server where the API may enable audit devices, and its root token.
fn start() -> Result<(Started, String)> {
    if Target::from_env()? == Target::Cairn {
        return Ok((Started::Dev(DevServer::start()?), "root".into()));
    }
    let s = ConfigServer::start_with(Options {
        config: "unsafe_allow_api_audit_creation = true\n".into(),
        ..Options::default()
    })?;
    let (root, _) = s.init_and_unseal()?;
    Ok((Started::Config(s), root))
}

fn is_cairn() -> Result<bool> {
    Ok(Target::from_env()? == Target::Cairn)
}

/// The JSON lines of an audit file (none if it does not exist yet).
fn lines(path: &Path) -> Result<Vec<Value>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}"))).collect()
}

/// Waits until the file holds an entry of `kind` for `path` (devices write after commit).
fn wait_for(file: &Path, kind: &str, path: &str) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = lines(file)?;
        if all.iter().any(|l| l["type"] == kind && l["request"]["path"] == path) {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!("no {kind} entry for {path} in {}:\n{all:#?}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entry<'a>(all: &'a [Value], kind: &str, path: &str, op: Option<&str>) -> Result<&'a Value> {
    all.iter()
        .find(|l| {
            l["type"] == kind && l["request"]["path"] == path && op.is_none_or(|o| l["request"]["operation"] == o)
        })
        .with_context(|| format!("no {kind} entry for {path} {op:?}"))
}

fn hmac_shaped(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_prefix("hmac-sha256:"))
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[test]
fn a_file_device_writes_vaults_entries_with_hmacs_and_sys_audit_answers_like_vault() -> Result<()> {
    let (s, root) = start()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit.log");
    let file_arg = format!("file_path={}", file.display());
    // History before the device is not written.
    s.bao_as(&root, &["write", "cubbyhole/before", "password=early"])?.success()?;

    let on = s.bao_as(&root, &["audit", "enable", "file", &file_arg])?.success()?;
    assert_eq!(on.stdout, "Success! Enabled the file audit device at: file/\n");
    let list = s.bao_as(&root, &["audit", "list", "-detailed"])?.success()?;
    assert!(list.stdout.contains("file/    file    n/a            replicated     file_path="), "{}", list.stdout);
    let listed = s.http("GET", "/v1/sys/audit", Some(&root), None)?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let device = json!({"description": "", "local": false, "options": {"file_path": file.display().to_string()}, "path": "file/", "type": "file"});
    let body = listed.json()?;
    assert_eq!(body["data"], json!({ "file/": device }));
    assert_eq!(body["file/"], device);

    // Errors, as OpenBao words them.
    let dup =
        s.http("PUT", "/v1/sys/audit/file", Some(&root), Some(r#"{"type":"file","options":{"file_path":"/tmp/x"}}"#))?;
    assert_eq!((dup.status, dup.json()?["errors"].clone()), (400, json!(["path already in use"])));
    let bad = s.http("PUT", "/v1/sys/audit/bad", Some(&root), Some(r#"{"type":"nosuch"}"#))?;
    assert_eq!((bad.status, bad.json()?["errors"].clone()), (400, json!(["unknown backend type: \"nosuch\""])));
    let no_path = s.http("PUT", "/v1/sys/audit/f2", Some(&root), Some(r#"{"type":"file"}"#))?;
    assert_eq!((no_path.status, no_path.json()?["errors"].clone()), (400, json!(["file_path is required"])));
    let unknown = s.http("PUT", "/v1/sys/audit-hash/nope", Some(&root), Some(r#"{"input":"a"}"#))?;
    assert_eq!((unknown.status, unknown.json()?["errors"].clone()), (400, json!(["unknown audit backend \"nope/\""])));
    assert_eq!(s.http("LIST", "/v1/sys/audit", Some(&root), None)?.status, 404);
    assert_eq!(s.http("DELETE", "/v1/sys/audit/nope", Some(&root), None)?.status, 204);

    // A write, a read, and a denied request.
    s.bao_as(&root, &["write", "cubbyhole/app", "password=hunter2"])?.success()?;
    s.bao_as(&root, &["read", "cubbyhole/app"])?.success()?;
    let limited = s.bao_as(&root, &["token", "create", "-policy=default", "-field=token"])?.success()?;
    let limited = limited.stdout.trim().to_string();
    let denied = s.http("GET", "/v1/sys/mounts", Some(&limited), None)?;
    assert_eq!(denied.status, 403);
    // sys/audit needs sudo.
    assert_eq!(s.http("GET", "/v1/sys/audit", Some(&limited), None)?.status, 403);
    let hash = s.http("PUT", "/v1/sys/audit-hash/file", Some(&root), Some(r#"{"input":"hunter2"}"#))?;
    assert_eq!(hash.status, 200, "{}", hash.body);
    let hash = hash.json()?;
    let h = hash["data"]["hash"].clone();
    assert!(hmac_shaped(&h), "{hash}");
    assert_eq!(hash["hash"], h);

    let all = wait_for(&file, "response", "sys/audit-hash/file")?;
    let text = std::fs::read_to_string(&file)?;
    assert!(!text.contains("hunter2"), "a value in clear in the audit log");
    assert!(!text.contains(&limited), "a token in clear in the audit log");
    assert!(!text.contains("cubbyhole/before"), "the device wrote history from before it was enabled");

    for l in &all {
        let kind = l["type"].as_str().context("type")?;
        ensure!(kind == "request" || kind == "response", "{l}");
        let time = l["time"].as_str().context("time")?;
        ensure!(time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "time {time}");
        ensure!(l["request"]["namespace"] == json!({"id": "root"}), "{l}");
        ensure!(l["request"]["id"].as_str().is_some_and(|id| id.len() == 36), "{l}");
        if let Some(acc) = l["auth"].get("accessor") {
            ensure!(hmac_shaped(acc), "accessor not HMAC'd: {l}");
        }
    }

    let write = entry(&all, "request", "cubbyhole/app", None)?;
    assert_eq!(write["request"]["data"]["password"], h, "{write}");
    assert_eq!(write["auth"]["policies"], json!(["root"]));
    assert_eq!(write["auth"]["token_type"], "service");
    assert_eq!(write["request"]["mount_type"], "cubbyhole");
    assert_eq!(write["request"]["remote_address"], "127.0.0.1");
    let write_response = all
        .iter()
        .find(|l| l["type"] == "response" && l["request"]["id"] == write["request"]["id"])
        .context("the write's response entry")?;
    assert_eq!(write_response["request"]["path"], "cubbyhole/app");
    let read = entry(&all, "response", "cubbyhole/app", Some("read"))?;
    assert_eq!(read["response"]["data"]["password"], h, "{read}");
    assert_eq!(read["response"]["mount_type"], "cubbyhole");

    let denied_request = entry(&all, "request", "sys/mounts", Some("read"))?;
    assert_eq!(denied_request["error"], DENIED, "{denied_request}");
    assert_eq!(denied_request["auth"]["policy_results"]["allowed"], false);
    assert_eq!(denied_request["auth"]["policies"], json!(["default"]));
    let denied_response = entry(&all, "response", "sys/mounts", Some("read"))?;
    assert_eq!(denied_response["error"], DENIED);

    // Disabled: nothing more is written, and the list is empty.
    s.bao_as(&root, &["audit", "disable", "file"])?.success()?;
    assert_eq!(s.http("GET", "/v1/sys/audit", Some(&root), None)?.json()?["data"], json!({}));
    std::thread::sleep(Duration::from_millis(500));
    let before = lines(&file)?.len();
    s.bao_as(&root, &["read", "cubbyhole/app"])?.success()?;
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(lines(&file)?.len(), before, "the device wrote after it was disabled");
    Ok(())
}

#[test]
fn log_raw_is_refused_because_the_ledger_never_holds_values() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // OpenBao honours log_raw
    }
    let s = DevServer::start()?;
    let r = s.http(
        "PUT",
        "/v1/sys/audit/raw",
        Some("root"),
        Some(r#"{"type":"file","options":{"file_path":"/tmp/never","log_raw":"true"}}"#),
    )?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("log_raw is not supported"), "{}", r.body);
    Ok(())
}

/// A free loopback port, nobody listening.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn enable_socket(s: &Server, port: u16, timeout: &str) -> Result<()> {
    let r = s.http(
        "PUT",
        "/v1/sys/audit/sock",
        Some("root"),
        Some(
            &json!({"type": "socket", "options": {"address": format!("127.0.0.1:{port}"), "socket_type": "tcp", "write_timeout": timeout}})
                .to_string(),
        ),
    )?;
    ensure!(r.status == 204, "enable socket: {} {}", r.status, r.body);
    Ok(())
}

/// A write that must be answered quickly, whatever the device does.
fn quick_write(s: &Server, path: &str, body: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = s.http("PUT", &format!("/v1/{path}"), Some("root"), Some(body))?;
    ensure!(r.status == 204 || r.status == 200, "{path}: {} {}", r.status, r.body);
    Ok(t.elapsed())
}

#[test]
fn a_socket_device_that_is_down_catches_up_in_order_without_duplicates() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // OpenBao refuses to enable a device it cannot reach
    }
    let s = DevServer::start()?;
    let port = free_port()?;
    enable_socket(&s, port, "1s")?;
    let n = 20;
    for i in 0..n {
        let took = quick_write(&s, &format!("cubbyhole/k{i}"), &json!({ "v": format!("value-{i}") }).to_string())?;
        ensure!(took < Duration::from_secs(1), "a write took {took:?} while the device was down");
    }
    // The listener comes up: every missed entry arrives.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    listener.set_nonblocking(false)?;
    let (conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut received = Vec::new();
    let mut reader = BufReader::new(conn);
    let last = format!("cubbyhole/k{}", n - 1);
    while !received.iter().any(|l: &Value| l["type"] == "response" && l["request"]["path"] == last) {
        let mut line = String::new();
        ensure!(reader.read_line(&mut line)? > 0, "the device closed the connection; got {received:#?}");
        received.push(serde_json::from_str(&line)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for l in &received {
        let key = (l["request"]["id"].to_string(), l["type"].to_string());
        ensure!(seen.insert(key), "duplicate entry {l}");
    }
    let order: Vec<String> = received
        .iter()
        .filter(|l| l["type"] == "request")
        .filter_map(|l| l["request"]["path"].as_str().filter(|p| p.starts_with("cubbyhole/k")).map(str::to_string))
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("cubbyhole/k{i}")).collect();
    assert_eq!(order, expected);
    Ok(())
}

#[test]
fn a_hung_socket_does_not_slow_requests() -> Result<()> {
    if !is_cairn()? {
        return Ok(());
    }
    let s = DevServer::start()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    // Accepts, never reads.
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        listener.set_nonblocking(true).ok();
        while Instant::now() < deadline {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        held.len()
    });
    enable_socket(&s, port, "10s")?;
    // Each entry holds a hash per request field: 400 fields make ~40 KB entries, so the
    // socket buffers (a few MB on loopback) fill after a few hundred and the device's writes block.
    let body: serde_json::Map<String, Value> = (0..400).map(|i| (format!("field{i}"), json!(i))).collect();
    let body = Value::Object(body).to_string();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..250 {
        let took = quick_write(&s, &format!("cubbyhole/h{i}"), &body)?;
        slowest = slowest.max(took);
    }
    ensure!(slowest < Duration::from_secs(2), "slowest write {slowest:?} with a hung audit socket");
    ensure!(start.elapsed() < Duration::from_secs(30), "250 writes took {:?}", start.elapsed());
    drop(holder);
    Ok(())
}

#[test]
fn a_restarted_server_resumes_from_the_cursor_and_a_rotated_file_is_reopened() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // restarts a dev server with its data
    }
    let mut s = DevServer::start()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit.log");
    s.bao(&["audit", "enable", "file", &format!("file_path={}", file.display())])?.success()?;
    s.bao(&["write", "cubbyhole/one", "v=1"])?.success()?;
    wait_for(&file, "response", "cubbyhole/one")?;
    std::thread::sleep(Duration::from_millis(300));
    s.stop(Duration::from_secs(20))?;
    s.start_again()?;
    s.bao(&["write", "cubbyhole/two", "v=2"])?.success()?;
    let all = wait_for(&file, "response", "cubbyhole/two")?;
    let mut seen = std::collections::BTreeSet::new();
    for l in &all {
        ensure!(seen.insert((l["request"]["id"].to_string(), l["type"].to_string())), "duplicate entry {l}");
    }
    ensure!(all.iter().filter(|l| l["request"]["path"] == "cubbyhole/one").count() == 2, "{all:#?}");

    // Log rotation: the file is moved away; the device opens a new one at its path.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&file, &rotated)?;
    s.bao(&["write", "cubbyhole/three", "v=3"])?.success()?;
    let fresh = wait_for(&file, "response", "cubbyhole/three")?;
    ensure!(fresh.iter().all(|l| l["request"]["path"] != "cubbyhole/two"), "{fresh:#?}");
    ensure!(lines(&rotated)?.iter().all(|l| l["request"]["path"] != "cubbyhole/three"));
    Ok(())
}
