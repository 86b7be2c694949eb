//! Audit devices: `bao audit enable/list/disable`, `sys/audit-hash`, and what a device
//! writes, in Vault's format; devices declared in the configuration (`audit` stanzas), the
//! API refused unless `unsafe_allow_api_audit_creation` (CVE-2025-6000), and the file
//! rules that hold even then; then cairn's own guarantees: a device never slows requests,
//! catches up from its cursor in order without duplicates, survives a restart, and follows
//! a rotated log file.
//!
//! The format, refusal and declared-device tests pass against OpenBao 2.7.2
//! (`CAIRN_COMPAT_TARGET=openbao`); the others test what cairn does beyond it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, DevServer, Options, Server, Target};
use serde_json::{Value, json};

const DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

/// OpenBao 2.7.2's answer to an API enable without `unsafe_allow_api_audit_creation`.
const API_REFUSED: &str =
    "cannot enable audit device via API; use declarative, config-based audit device management instead";

/// The configuration line that lets `sys/audit` enable devices.
const API_AUDIT: &str = "unsafe_allow_api_audit_creation = true\n";

/// A config-mode server with these configuration lines, initialized and unsealed: the
/// server, its root token and its unseal key.
fn configured(config: &str) -> Result<(ConfigServer, String, String)> {
    let s = ConfigServer::start_with(Options { config: config.into(), ..Options::default() })?;
    let (root, key) = s.init_and_unseal()?;
    Ok((s, root, key))
}

/// A server where the API may enable audit devices, and its root token.
fn start() -> Result<(ConfigServer, String)> {
    let (s, root, _) = configured(API_AUDIT)?;
    Ok((s, root))
}

/// An `audit "file"` stanza.
fn file_stanza(name: &str, file: &Path, extra: &str) -> String {
    format!("audit \"file\" \"{name}\" {{\n  options {{\n    file_path = \"{}\"\n{extra}  }}\n}}\n", file.display())
}

/// An `audit "socket"` stanza (TCP).
fn socket_stanza(name: &str, port: u16, timeout: &str) -> String {
    format!(
        "audit \"socket\" \"{name}\" {{\n  options {{\n    address = \"127.0.0.1:{port}\"\n    socket_type = \"tcp\"\n    write_timeout = \"{timeout}\"\n  }}\n}}\n"
    )
}

/// `sys/unseal` with the one key: the reply.
fn unseal(s: &Server, key: &str) -> Result<e2e::HttpReply> {
    s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": key }).to_string()))
}

/// Replaces `from` by `to` in a config-mode server's file (for its next start or SIGHUP).
fn edit_config(s: &Server, from: &str, to: &str) -> Result<()> {
    let file = s.config_file().context("a config-mode server")?;
    let text = std::fs::read_to_string(file)?;
    ensure!(text.contains(from), "the configuration has no {from:?}:\n{text}");
    std::fs::write(file, text.replace(from, to))?;
    Ok(())
}

/// The devices `sys/audit` lists, by path.
fn listed(s: &Server, token: &str) -> Result<Vec<String>> {
    let r = s.http("GET", "/v1/sys/audit", Some(token), None)?;
    ensure!(r.status == 200, "sys/audit: {} {}", r.status, r.body);
    Ok(r.json()?["data"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default())
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
    let (s, root) = start()?;
    let r = s.http(
        "PUT",
        "/v1/sys/audit/raw",
        Some(&root),
        Some(r#"{"type":"file","options":{"file_path":"/tmp/never","log_raw":"true"}}"#),
    )?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("log_raw is not supported"), "{}", r.body);
    Ok(())
}

#[test]
fn the_api_may_not_enable_a_device_unless_the_configuration_allows_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit.log");
    let body = json!({"type": "file", "options": {"file_path": file.display().to_string()}}).to_string();
    let (s, root, _) = configured("")?;
    let r = s.http("PUT", "/v1/sys/audit/file", Some(&root), Some(&body))?;
    assert_eq!((r.status, r.json()?["errors"].clone()), (400, json!([API_REFUSED])));
    let cli = s.bao_as(&root, &["audit", "enable", "file", &format!("file_path={}", file.display())])?;
    assert_eq!(cli.code, Some(2), "{cli}");
    assert!(cli.stderr.contains(&format!("Code: 400. Errors:\n\n* {API_REFUSED}")), "{cli}");
    assert!(listed(&s, &root)?.is_empty());
    // Disabling is not creation: a device that does not exist is no error.
    assert_eq!(s.http("DELETE", "/v1/sys/audit/file", Some(&root), None)?.status, 204);
    // Without sudo on sys/audit, the ACL answers first.
    let limited = s.bao_as(&root, &["token", "create", "-policy=default", "-field=token"])?.success()?;
    assert_eq!(s.http("PUT", "/v1/sys/audit/file", Some(limited.stdout.trim()), Some(&body))?.status, 403);
    drop(s);

    // Dev mode has no configuration: as `bao server -dev`, it refuses too.
    let dev = DevServer::start()?;
    let r = dev.http("PUT", "/v1/sys/audit/file", Some("root"), Some(&body))?;
    assert_eq!((r.status, r.json()?["errors"].clone()), (400, json!([API_REFUSED])));
    assert!(!file.exists(), "a refused device created its file");
    Ok(())
}

#[test]
fn a_device_declared_in_the_configuration_writes_entries_and_the_api_cannot_disable_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("declared.log");
    let stanza =
        file_stanza("declared", &file, "").replace("  options", "  description = \"from the file\"\n  options");
    let (s, root, _) = configured(&format!("{API_AUDIT}{stanza}"))?;
    let r = s.http("GET", "/v1/sys/audit", Some(&root), None)?;
    let device = json!({"description": "from the file", "local": false, "options": {"file_path": file.display().to_string()}, "path": "declared/", "type": "file"});
    assert_eq!(r.json()?["data"], json!({ "declared/": device }));

    s.bao_as(&root, &["write", "cubbyhole/app", "password=hunter2"])?.success()?;
    s.bao_as(&root, &["read", "cubbyhole/app"])?.success()?;
    let all = wait_for(&file, "response", "cubbyhole/app")?;
    let read = entry(&all, "response", "cubbyhole/app", Some("read"))?;
    assert!(hmac_shaped(&read["response"]["data"]["password"]), "{read}");
    assert!(!std::fs::read_to_string(&file)?.contains("hunter2"));
    assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);

    // OpenBao's answers: the API neither disables nor replaces it.
    let off = s.http("DELETE", "/v1/sys/audit/declared", Some(&root), None)?;
    assert_eq!(
        (off.status, off.json()?["errors"].clone()),
        (400, json!(["cannot disable configuration-managed audit device"]))
    );
    let cli = s.bao_as(&root, &["audit", "disable", "declared"])?;
    assert!(cli.code != Some(0) && cli.stderr.contains("cannot disable configuration-managed audit device"), "{cli}");
    let other = json!({"type": "file", "options": {"file_path": dir.path().join("other.log").display().to_string()}});
    let again = s.http("PUT", "/v1/sys/audit/declared", Some(&root), Some(&other.to_string()))?;
    assert_eq!((again.status, again.json()?["errors"].clone()), (400, json!(["path already in use"])));
    assert_eq!(listed(&s, &root)?, ["declared/"]);
    // A device the API enabled, the API disables.
    assert_eq!(s.http("PUT", "/v1/sys/audit/api", Some(&root), Some(&other.to_string()))?.status, 204);
    assert_eq!(s.http("DELETE", "/v1/sys/audit/api", Some(&root), None)?.status, 204);
    assert_eq!(listed(&s, &root)?, ["declared/"]);

    if is_cairn()? {
        // The ledger says the configuration enabled it, and who tried to disable it.
        let data = s.data_dir().to_path_buf();
        let mut s = s;
        s.stop(Duration::from_secs(20))?;
        let events = e2e::ledger::read_ledger(&data)?;
        let enabled = events
            .iter()
            .find_map(|e| match &e.env.body {
                migrations::Body::App(migrations::Event::AuditDeviceEnabled(d)) if d.path == "declared/" => {
                    Some((e.env.actor.display_name.clone(), e.env.actor.accessor.clone(), d.from_config))
                }
                _ => None,
            })
            .context("the enable event")?;
        assert_eq!(enabled, ("config".to_string(), String::new(), true));
        let refused = events.iter().any(|e| {
            matches!(&e.env.body, migrations::Body::App(migrations::Event::Access(a))
                if a.path == "sys/audit/declared" && a.outcome == migrations::Outcome::Failed(400))
        });
        assert!(refused, "the refused disable is in the ledger");
    }
    Ok(())
}

#[test]
fn hostile_file_devices_are_refused_and_create_nothing() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // OpenBao 2.7.2 accepts most of these (mode 0777 becomes 0666)
    }
    let (s, root, _) = configured(&format!("{API_AUDIT}allow_audit_log_prefixing = true\n"))?;
    let dir = tempfile::tempdir()?;
    let server_dir = s.config_file().and_then(Path::parent).context("the server's directory")?.to_path_buf();
    let real = dir.path().join("real");
    std::fs::create_dir(&real)?;
    std::os::unix::fs::symlink(&real, dir.path().join("via"))?;
    let precious = dir.path().join("precious");
    std::fs::write(&precious, "keep me as I am\n")?;
    std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o600))?;
    let before = std::fs::read(&precious)?;
    let unique = format!("pwned-{}", std::process::id());
    let climbed = format!("/tmp/x/../../../tmp/{unique}");
    let good = dir.path().join("good.log");
    let text = |p: &Path| p.display().to_string();

    let cases: Vec<(Value, &str)> = vec![
        (json!({"file_path": climbed}), "may not contain \".\" or \"..\" segments"),
        (json!({"file_path": "relative.log"}), "must be an absolute path"),
        (json!({"file_path": text(&precious)}), "exists and is not an audit log"),
        (json!({"file_path": "/proc/self/fd/1"}), "may not be under /proc, /sys or /dev"),
        (json!({"file_path": "/dev/stdout"}), "may not be under /proc, /sys or /dev"),
        (json!({"file_path": text(&dir.path().join("via/audit.log"))}), "via is a symbolic link"),
        (json!({"file_path": text(&dir.path().join("missing/audit.log"))}), "missing does not exist"),
        (json!({"file_path": text(&good), "mode": "0777"}), "audit file mode 0777 is wider than 0600"),
        (json!({"file_path": text(&good), "mode": "0644"}), "audit file mode 0644 is wider than 0600"),
        (json!({"file_path": text(&good), "prefix": "#!/bin/sh\n"}), "prefix may not contain control characters"),
    ];
    for (options, expected) in &cases {
        let body = json!({"type": "file", "options": options}).to_string();
        let r = s.http("PUT", "/v1/sys/audit/hostile", Some(&root), Some(&body))?;
        let errors = r.json()?["errors"].clone();
        ensure!(r.status == 400, "{options}: {} {}", r.status, r.body);
        let message = errors[0].as_str().unwrap_or_default();
        ensure!(errors.as_array().is_some_and(|e| e.len() == 1) && message.contains(expected), "{options}: {errors}");
    }
    let cli = s.bao_as(&root, &["audit", "enable", "-path=hostile", "file", "file_path=/proc/self/fd/1"])?;
    assert!(cli.code == Some(2) && cli.stderr.contains("Code: 400"), "{cli}");
    assert!(listed(&s, &root)?.is_empty(), "a refused device was enabled");
    assert!(!Path::new(&format!("/tmp/{unique}")).exists(), "the climbing path created its file");
    assert!(!server_dir.join("relative.log").exists(), "a relative path landed in the server's directory");
    assert_eq!(std::fs::read(&precious)?, before, "the existing file changed");
    assert!(!real.join("audit.log").exists(), "a file was created through the symlink");
    assert!(!dir.path().join("missing").exists(), "a directory was created");
    assert!(!good.exists(), "a refused mode created the file");

    // The same path with a safe mode and prefix works.
    let ok = json!({"type": "file", "options": {"file_path": text(&good), "mode": "0600", "prefix": "cairn: "}});
    let r = s.http("PUT", "/v1/sys/audit/good", Some(&root), Some(&ok.to_string()))?;
    assert_eq!(r.status, 204, "{}", r.body);
    s.bao_as(&root, &["write", "cubbyhole/x", "v=1"])?.success()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&good).unwrap_or_default().contains("\"cubbyhole/x\"") {
        ensure!(Instant::now() < deadline, "no entry in {}", good.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = std::fs::read_to_string(&good)?;
    assert!(written.lines().all(|l| l.starts_with("cairn: {")), "{written}");
    assert_eq!(std::fs::metadata(&good)?.permissions().mode() & 0o777, 0o600);
    Ok(())
}

/// A free loopback port, nobody listening.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// A write that must be answered quickly, whatever the device does.
fn quick_write(s: &Server, token: &str, path: &str, body: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = s.http("PUT", &format!("/v1/{path}"), Some(token), Some(body))?;
    ensure!(r.status == 204 || r.status == 200, "{path}: {} {}", r.status, r.body);
    Ok(t.elapsed())
}

#[test]
fn a_declared_socket_device_that_is_down_catches_up_in_order_without_duplicates() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // OpenBao refuses to enable a device it cannot reach
    }
    let port = free_port()?;
    let (s, root, _) = configured(&socket_stanza("sock", port, "1s"))?;
    assert_eq!(listed(&s, &root)?, ["sock/"]);
    let n = 20;
    for i in 0..n {
        let took =
            quick_write(&s, &root, &format!("cubbyhole/k{i}"), &json!({ "v": format!("value-{i}") }).to_string())?;
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
    let (s, root, _) = configured(&socket_stanza("sock", port, "10s"))?;
    // Each entry holds a hash per request field: 400 fields make ~40 KB entries, so the
    // socket buffers (a few MB on loopback) fill after a few hundred and the device's writes block.
    let body: serde_json::Map<String, Value> = (0..400).map(|i| (format!("field{i}"), json!(i))).collect();
    let body = Value::Object(body).to_string();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..250 {
        let took = quick_write(&s, &root, &format!("cubbyhole/h{i}"), &body)?;
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
        return Ok(()); // restarts a server with its data
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit.log");
    let (mut s, root, key) = configured(&file_stanza("file", &file, ""))?;
    s.bao_as(&root, &["write", "cubbyhole/one", "v=1"])?.success()?;
    wait_for(&file, "response", "cubbyhole/one")?;
    std::thread::sleep(Duration::from_millis(300));
    s.stop(Duration::from_secs(20))?;
    s.start_again()?;
    assert_eq!(unseal(&s, &key)?.status, 200);
    s.bao_as(&root, &["write", "cubbyhole/two", "v=2"])?.success()?;
    let all = wait_for(&file, "response", "cubbyhole/two")?;
    let mut seen = std::collections::BTreeSet::new();
    for l in &all {
        ensure!(seen.insert((l["request"]["id"].to_string(), l["type"].to_string())), "duplicate entry {l}");
    }
    ensure!(all.iter().filter(|l| l["request"]["path"] == "cubbyhole/one").count() == 2, "{all:#?}");
    ensure!(listed(&s, &root)? == ["file/"], "the unchanged device was kept, not enabled again");

    // Log rotation: the file is moved away; the device opens a new one at its path.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&file, &rotated)?;
    s.bao_as(&root, &["write", "cubbyhole/three", "v=3"])?.success()?;
    let fresh = wait_for(&file, "response", "cubbyhole/three")?;
    ensure!(fresh.iter().all(|l| l["request"]["path"] != "cubbyhole/two"), "{fresh:#?}");
    ensure!(lines(&rotated)?.iter().all(|l| l["request"]["path"] != "cubbyhole/three"));
    Ok(())
}

#[test]
fn the_configuration_alone_changes_its_devices_across_restarts() -> Result<()> {
    if !is_cairn()? {
        return Ok(()); // OpenBao's config-mode test server keeps nothing across a restart (inmem)
    }
    let dir = tempfile::tempdir()?;
    let (kept, dropped) = (dir.path().join("kept.log"), dir.path().join("dropped.log"));
    let kept_stanza = file_stanza("kept", &kept, "");
    let dropped_stanza = file_stanza("dropped", &dropped, "");
    let (mut s, root, key) = configured(&format!("{API_AUDIT}{kept_stanza}{dropped_stanza}"))?;
    let api_file = dir.path().join("api.log");
    let api = json!({"type": "file", "options": {"file_path": api_file.display().to_string()}}).to_string();
    assert_eq!(s.http("PUT", "/v1/sys/audit/api", Some(&root), Some(&api))?.status, 204);
    assert_eq!(listed(&s, &root)?, ["api/", "dropped/", "kept/"]);
    s.bao_as(&root, &["write", "cubbyhole/first", "v=1"])?.success()?;
    wait_for(&dropped, "response", "cubbyhole/first")?;

    // A stanza removed: its device is disabled at the next unseal; the API's stays.
    s.stop(Duration::from_secs(20))?;
    edit_config(&s, &dropped_stanza, "")?;
    s.start_again()?;
    assert_eq!(unseal(&s, &key)?.status, 200);
    assert_eq!(listed(&s, &root)?, ["api/", "kept/"]);
    s.bao_as(&root, &["write", "cubbyhole/second", "v=2"])?.success()?;
    wait_for(&kept, "response", "cubbyhole/second")?;
    wait_for(&api_file, "response", "cubbyhole/second")?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(lines(&dropped)?.iter().all(|l| l["request"]["path"] != "cubbyhole/second"), "the dropped device wrote");

    // A declared device changed in place, or declared where the API made one: the server
    // stays sealed and says why (OpenBao's active node refuses to start the same way).
    let changed = file_stanza("kept", &dir.path().join("elsewhere.log"), "");
    let api_twin = file_stanza("api", &api_file, "");
    let missing_dir = file_stanza("new", &dir.path().join("missing/new.log"), "");
    for (from, to, why) in [
        (kept_stanza.as_str(), changed.as_str(), "modifications to audit devices are not allowed"),
        (kept_stanza.as_str(), format!("{kept_stanza}{api_twin}").as_str(), "was already created by API"),
        (kept_stanza.as_str(), format!("{kept_stanza}{missing_dir}").as_str(), "missing does not exist"),
    ] {
        s.stop(Duration::from_secs(20))?;
        edit_config(&s, from, to)?;
        s.start_again()?;
        let r = unseal(&s, &key)?;
        ensure!(r.status == 400 && r.body.contains(why), "unseal: {} {}", r.status, r.body);
        let status = s.http("GET", "/v1/sys/seal-status", None, None)?.json()?;
        ensure!(status["sealed"] == json!(true), "{status}");
        edit_config(&s, to, from)?;
    }

    // SIGHUP applies a new stanza and the API flag at once.
    s.stop(Duration::from_secs(20))?;
    s.start_again()?;
    assert_eq!(unseal(&s, &key)?.status, 200);
    let late = dir.path().join("late.log");
    edit_config(&s, API_AUDIT, &file_stanza("late", &late, ""))?;
    s.signal("HUP")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&s, &root)? != ["api/", "kept/", "late/"] {
        ensure!(Instant::now() < deadline, "SIGHUP did not enable the new stanza: {:?}", listed(&s, &root)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    let other = json!({"type": "file", "options": {"file_path": dir.path().join("x.log").display().to_string()}});
    let r = s.http("PUT", "/v1/sys/audit/x", Some(&root), Some(&other.to_string()))?;
    assert_eq!((r.status, r.json()?["errors"].clone()), (400, json!([API_REFUSED])));

    // The ledger: the configuration (actor "config") disabled the dropped device.
    let data = s.data_dir().to_path_buf();
    s.stop(Duration::from_secs(20))?;
    let events = e2e::ledger::read_ledger(&data)?;
    let disabled: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.env.body {
            migrations::Body::App(migrations::Event::AuditDeviceDisabled(d)) => {
                Some((d.path.clone(), e.env.actor.display_name.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(disabled, [("dropped/".to_string(), "config".to_string())]);
    Ok(())
}
