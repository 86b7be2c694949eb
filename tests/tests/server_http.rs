//! The HTTP front door as clients and operators meet it: bad input gets Vault's errors and
//! changes nothing, a sealed server answers 503, a TLS listener serves the `bao` CLI over
//! HTTPS only, and SIGHUP applies a new log level without a restart.
//!
//! The answers to bad input were observed on OpenBao 2.x (`CAIRN_COMPAT_TARGET=openbao`
//! runs these tests against it); the TLS and SIGHUP tests are about cairn itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, DevServer, Options, Server, Target};
use serde_json::json;

/// Vault's `max_request_size` default: 32 MiB.
const MAX_REQUEST_SIZE: usize = 32 << 20;

/// The secret every bad request aims at, and what it must still hold afterwards.
const TARGET: &str = "/v1/secret/data/target";

/// The target secret is exactly as written (one version, `{"a":"b"}`), and the server is
/// unsealed and serving.
fn unchanged(s: &Server, after: &str) -> Result<()> {
    let read = s.http("GET", TARGET, Some("root"), None).with_context(|| format!("read after {after}"))?;
    ensure!(read.status == 200, "after {after}, a normal read answers {} {}", read.status, read.body);
    let body = read.json()?;
    ensure!(body["data"]["data"] == json!({"a": "b"}), "after {after}, the secret changed: {body:#}");
    let meta = s.http("GET", "/v1/secret/metadata/target", Some("root"), None)?.json()?;
    ensure!(meta["data"]["current_version"] == json!(1), "after {after}, the version changed: {meta:#}");
    let status = s.http("GET", "/v1/sys/seal-status", None, None)?.json()?;
    ensure!(status["sealed"] == json!(false), "after {after}, the server is sealed: {status:#}");
    Ok(())
}

#[test]
fn bad_input_gets_vaults_errors_and_changes_nothing() -> Result<()> {
    let s = DevServer::start()?;
    let put = s.http("PUT", TARGET, Some("root"), Some(r#"{"data":{"a":"b"}}"#))?;
    assert_eq!(put.status, 200, "{}", put.body);
    unchanged(&s, "the first write")?;
    let token = ("X-Vault-Token", "root");

    // Malformed JSON.
    let r = s.http_with("PUT", TARGET, &[token], br#"{"data": {"a": "#)?;
    assert_eq!(r.status, 400, "{}", r.body);
    let errors = r.json()?["errors"].clone();
    assert!(
        errors.as_array().is_some_and(
            |e| e.len() == 1 && e[0].as_str().is_some_and(|m| m.starts_with("failed to decode JSON input"))
        ),
        "{}",
        r.body
    );
    unchanged(&s, "malformed JSON")?;

    // A JSON array where an object belongs.
    let r = s.http_with("PUT", TARGET, &[token], b"[1,2]")?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "{\"errors\":[\"failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}\"]}\n"
        )
    );
    unchanged(&s, "a JSON array")?;

    // A valid JSON body one byte over 32 MiB.
    let mut big = br#"{"data":{"a":""#.to_vec();
    let tail = br#""}}"#;
    big.resize(MAX_REQUEST_SIZE + 1 - tail.len(), b'x');
    big.extend_from_slice(tail);
    assert_eq!(big.len(), MAX_REQUEST_SIZE + 1);
    let r = s.http_with("PUT", TARGET, &[token], &big)?;
    assert_eq!((r.status, r.body.as_str()), (413, "{\"errors\":[\"http: request body too large\"]}\n"));
    unchanged(&s, "a body over 32 MiB")?;

    // PATCH needs the merge-patch content type.
    let r = s.http_with("PATCH", TARGET, &[token, ("Content-Type", "application/json")], br#"{"data":{"a":"c"}}"#)?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            415,
            "{\"errors\":[\"PATCH requires Content-Type of application/merge-patch+json, provided application/json\"]}\n"
        )
    );
    unchanged(&s, "a PATCH with the wrong Content-Type")?;

    // A method Vault does not know, and a method sys/seal does not take.
    let r = s.http_with("FOO", TARGET, &[token], b"")?;
    assert_eq!((r.status, r.body.as_str()), (405, "{\"errors\":[]}\n"));
    unchanged(&s, "an unknown method")?;
    let r = s.http_with("GET", "/v1/sys/seal", &[token], b"")?;
    assert_eq!((r.status, r.body.as_str()), (405, "{\"errors\":[]}\n"));
    unchanged(&s, "GET sys/seal")?;

    // No mount at the path.
    let r = s.http("GET", "/v1/nomount/thing", Some("root"), None)?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "{\"errors\":[\"no handler for route \\\"nomount/thing\\\". route entry not found.\"]}\n")
    );
    let r = s.http("PUT", "/v1/nomount/thing", Some("root"), Some(r#"{"a":"b"}"#))?;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = s.http("GET", "/v1/nomount/thing", Some("root"), None)?;
    assert_eq!(r.status, 404, "a write to a path with no mount stored nothing: {}", r.body);
    unchanged(&s, "requests to a path with no mount")?;
    Ok(())
}

/// A KV v2 write of one field holding `len` bytes.
fn big_write(len: usize) -> Vec<u8> {
    let mut body = br#"{"data":{"blob":""#.to_vec();
    body.resize(body.len() + len, b'z');
    body.extend_from_slice(br#""}}"#);
    body
}

#[test]
fn a_large_write_under_the_request_limit_is_stored_or_refused_as_a_client_error() -> Result<()> {
    let s = DevServer::start()?;
    let put = s.http("PUT", TARGET, Some("root"), Some(r#"{"data":{"a":"b"}}"#))?;
    assert_eq!(put.status, 200, "{}", put.body);
    // 5 MiB: well under Vault's 32 MiB request limit (OpenBao stores it).
    let body = big_write(5 << 20);
    let r = s.http_with("PUT", "/v1/secret/data/large", &[("X-Vault-Token", "root")], &body)?;
    let shown: String = r.body.chars().take(300).collect();
    match r.status {
        200 => {
            let back = s.http("GET", "/v1/secret/data/large", Some("root"), None)?;
            assert_eq!(back.status, 200, "the stored large secret reads back");
            let blob = back.json()?["data"]["data"]["blob"].as_str().map(str::len);
            assert_eq!(blob, Some(5 << 20), "the large secret reads back whole");
        }
        400..=499 => {
            assert!(r.json()?["errors"].as_array().is_some_and(|e| !e.is_empty()), "a 4xx says why: {shown}");
            let back = s.http("GET", "/v1/secret/data/large", Some("root"), None)?;
            assert_eq!(back.status, 404, "a refused write stores nothing");
        }
        other => bail!(
            "PUT secret/data/large with a 5 MiB value (request under 32 MiB) answered {other} {shown}: \
             expected 200 (stored) or a 4xx saying it is too large, not a server error that invites a retry"
        ),
    }
    unchanged(&s, "a 5 MiB write")
}

#[test]
fn a_write_too_large_for_the_ledger_does_not_fail_other_clients_requests() -> Result<()> {
    let s = DevServer::start()?;
    let put = s.http("PUT", TARGET, Some("root"), Some(r#"{"data":{"a":"b"}}"#))?;
    assert_eq!(put.status, 200, "{}", put.body);
    let addr = s.socket_addr();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let body = big_write(5 << 20);
    let (failures, big_answers) = thread::scope(|scope| -> Result<(Vec<String>, Vec<u16>)> {
        // Four clients writing small secrets in a loop, each its own path.
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let stop = &stop;
                scope.spawn(move || -> Result<Vec<String>> {
                    let mut failures = Vec::new();
                    let mut n = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let path = format!("/v1/secret/data/small-{w}");
                        let body = json!({"data": {"n": n}}).to_string();
                        let r =
                            e2e::process::http(addr, "PUT", &path, Some("root"), Some(&body), Duration::from_secs(30))?;
                        if r.status != 200 {
                            failures.push(format!("PUT {path} (n={n}): {} {}", r.status, r.body.trim()));
                        }
                    }
                    Ok(failures)
                })
            })
            .collect();
        let mut big_answers = Vec::new();
        for _ in 0..5 {
            let r = e2e::http_with(
                addr,
                "PUT",
                "/v1/secret/data/large",
                &[("X-Vault-Token", "root")],
                &body,
                Duration::from_secs(60),
            );
            big_answers.push(r.map(|r| r.status).unwrap_or(0));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut failures = Vec::new();
        for w in workers {
            failures.extend(w.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??);
        }
        Ok((failures, big_answers))
    })?;
    assert!(
        failures.is_empty(),
        "small writes by other clients failed while 5 MiB writes were refused ({big_answers:?}): {} failures, e.g. {:?}",
        failures.len(),
        failures.iter().take(3).collect::<Vec<_>>()
    );
    unchanged(&s, "concurrent writes")
}

#[test]
fn a_sealed_server_answers_503_vault_is_sealed_and_keeps_its_data() -> Result<()> {
    let s = ConfigServer::start()?;
    let (root_token, key) = s.init_and_unseal()?;
    let root = Some(root_token.as_str());
    let mount = s.http("POST", "/v1/sys/mounts/secret", root, Some(r#"{"type":"kv","options":{"version":"2"}}"#))?;
    assert_eq!(mount.status, 204, "{}", mount.body);
    let put = s.http("PUT", "/v1/secret/data/kept", root, Some(r#"{"data":{"a":"b"}}"#))?;
    assert_eq!(put.status, 200, "{}", put.body);

    let sealed = s.bao_as(&root_token, &["operator", "seal"])?.success()?;
    assert_eq!(sealed.stdout, "Success! Vault is sealed.\n");

    let sealed_reply = (503, "{\"errors\":[\"Vault is sealed\"]}\n");
    for (method, path, token, body) in [
        ("GET", "/v1/secret/data/kept", root, None),
        ("PUT", "/v1/secret/data/kept", root, Some(r#"{"data":{"a":"changed"}}"#)),
        ("LIST", "/v1/secret/metadata", root, None),
        ("GET", "/v1/secret/data/kept", None, None),
        ("GET", "/v1/secret/data/kept", Some("s.AAAAAAAAAAAAAAAAAAAAAAAA"), None),
        ("GET", "/v1/nomount/thing", root, None),
        ("GET", "/v1/auth/token/lookup-self", root, None),
    ] {
        let r = s.http(method, path, token, body)?;
        assert_eq!((r.status, r.body.as_str()), sealed_reply, "{method} {path} while sealed");
    }
    let status = s.http("GET", "/v1/sys/seal-status", None, None)?;
    assert_eq!((status.status, &status.json()?["sealed"]), (200, &json!(true)));

    // Unsealed again: the data written before is there, the write tried while sealed is not.
    let unseal = s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": key }).to_string()))?;
    assert_eq!(unseal.json()?["sealed"], json!(false), "{}", unseal.body);
    let read = s.http("GET", "/v1/secret/data/kept", root, None)?;
    assert_eq!(read.status, 200, "{}", read.body);
    let read = read.json()?;
    assert_eq!((&read["data"]["data"], &read["data"]["metadata"]["version"]), (&json!({"a": "b"}), &json!(1)));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

#[test]
fn a_tls_listener_serves_the_cli_over_https_and_refuses_plain_http() -> Result<()> {
    let certs = tempfile::Builder::new().prefix("cairn-tls-").tempdir()?;
    let tls = e2e::certs::make_certificates(certs.path())?;
    let s = ConfigServer::start_with(Options { tls: Some(tls), ..Options::default() })?;
    assert!(s.addr().starts_with("https://127.0.0.1:"), "{}", s.addr());

    // Everything through the real CLI, over HTTPS, trusting only our CA.
    let init = s.bao(&["operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"])?.success()?.json()?;
    let root = init["root_token"].as_str().context("root_token")?.to_string();
    let key = init["unseal_keys_b64"][0].as_str().context("unseal key")?.to_string();
    let unsealed = s.bao(&["operator", "unseal", "-format=json", &key])?.success()?.json()?;
    assert_eq!(unsealed["sealed"], json!(false));
    s.bao_as(&root, &["secrets", "enable", "-path=secret", "kv-v2"])?.success()?;
    let put = s.bao_as(&root, &["kv", "put", "-format=json", "secret/over-tls", "value=only-over-https"])?.success()?;
    assert_eq!(put.json()?["data"]["version"], json!(1));
    let got = s.bao_as(&root, &["kv", "get", "-field=value", "secret/over-tls"])?.success()?;
    assert_eq!(got.stdout, "only-over-https");

    // Plain HTTP to the same port gets nothing: the CLI fails, and a raw request either
    // fails or gets an error status without the secret.
    let plain = format!("http://{}", s.socket_addr());
    let env = [("BAO_ADDR", plain.as_str()), ("VAULT_ADDR", plain.as_str())];
    let cli = s.bao_env(Some(&root), &env, &["kv", "get", "-field=value", "secret/over-tls"])?;
    assert!(cli.code != Some(0) && !cli.stdout.contains("only-over-https"), "{cli}");
    match s.http("GET", "/v1/secret/data/over-tls", Some(&root), None) {
        Err(_) => {}
        Ok(r) => assert!(r.status >= 400 && !r.body.contains("only-over-https"), "plain HTTP: {} {}", r.status, r.body),
    }
    // And the HTTPS listener is still serving after that.
    let again = s.bao_as(&root, &["kv", "get", "-field=value", "secret/over-tls"])?.success()?;
    assert_eq!(again.stdout, "only-over-https");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------

/// What cairn logs at debug level when a connection ends with an HTTP parse error.
const DEBUG_LINE: &str = "connection ended with an error";
/// What cairn logs (at info) when SIGHUP applied a new log level.
const RELOADED: &str = "SIGHUP: log level reloaded";

/// Sends bytes that are not HTTP and waits until the server closes the connection.
fn garbage_request(s: &Server) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&s.socket_addr(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"THIS IS NOT HTTP\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Ok(())
}

/// Waits (at most 10 s) until the log contains `needle` at least `n` times.
fn wait_for_log(s: &Server, needle: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.log().matches(needle).count() < n {
        if Instant::now() >= deadline {
            bail!("the log does not show {needle:?} {n} time(s) within 10 s\n--- log ---\n{}", s.log());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Replaces the `log_level` line of the server's configuration file.
fn set_log_level(s: &Server, level: &str) -> Result<()> {
    let file = s.config_file().context("a config-mode server has a configuration file")?;
    let text = std::fs::read_to_string(file)?;
    let line = text.lines().find(|l| l.trim_start().starts_with("log_level")).context("no log_level line")?;
    let edited = text.replace(line, &format!("log_level = \"{level}\""));
    std::fs::write(file, edited)?;
    Ok(())
}

/// A garbage request, then the number of debug lines it left in the log (after a pause
/// long enough for the line to be written if it is going to be).
fn debug_lines_after_garbage(s: &Server) -> Result<usize> {
    garbage_request(s)?;
    s.http("GET", "/v1/sys/health", None, None)?;
    thread::sleep(Duration::from_millis(500));
    Ok(s.log().matches(DEBUG_LINE).count())
}

/// A config-mode cairn at log level info, initialised and unsealed; its root token.
fn info_server() -> Result<(ConfigServer, String)> {
    let s = ConfigServer::start_with(Options {
        target: Some(Target::Cairn),
        config: "log_level = \"info\"\n".into(),
        ..Options::default()
    })?;
    let (root, _) = s.init_and_unseal()?;
    let mount =
        s.http("POST", "/v1/sys/mounts/secret", Some(&root), Some(r#"{"type":"kv","options":{"version":"2"}}"#))?;
    ensure!(mount.status == 204, "{}", mount.body);
    Ok((s, root))
}

/// The same process still answers normal requests.
fn still_serving(s: &mut ConfigServer, pid: u32, root: &str, n: u32) -> Result<()> {
    ensure!(s.is_running()? && s.pid() == pid, "the server process changed or exited");
    let body = json!({"data": {"n": n}}).to_string();
    let put = s.http("PUT", "/v1/secret/data/hup", Some(root), Some(&body))?;
    ensure!(put.status == 200, "write after SIGHUP: {} {}", put.status, put.body);
    let get = s.http("GET", "/v1/secret/data/hup", Some(root), None)?;
    ensure!(get.json()?["data"]["data"]["n"] == json!(n), "read after SIGHUP: {}", get.body);
    Ok(())
}

#[test]
fn sighup_raises_the_log_level_without_a_restart() -> Result<()> {
    let (mut s, root) = info_server()?;
    let pid = s.pid();
    assert_eq!(debug_lines_after_garbage(&s)?, 0, "at info level, no debug lines");

    set_log_level(&s, "debug")?;
    s.signal("HUP")?;
    wait_for_log(&s, RELOADED, 1)?;
    let first = debug_lines_after_garbage(&s)?;
    assert!(first >= 1, "at debug level, the garbage request is logged\n--- log ---\n{}", s.log());
    still_serving(&mut s, pid, &root, 1)
}

#[test]
fn sighup_lowers_the_log_level_again_after_raising_it() -> Result<()> {
    let (mut s, root) = info_server()?;
    let pid = s.pid();

    set_log_level(&s, "debug")?;
    s.signal("HUP")?;
    wait_for_log(&s, RELOADED, 1)?;
    let at_debug = debug_lines_after_garbage(&s)?;
    assert!(at_debug >= 1, "at debug level, the garbage request is logged\n--- log ---\n{}", s.log());

    // Back to info, as an operator does once done debugging.
    set_log_level(&s, "info")?;
    s.signal("HUP")?;
    wait_for_log(&s, RELOADED, 2).context("the second SIGHUP (debug -> info) was not applied")?;
    let back = debug_lines_after_garbage(&s)?;
    assert_eq!(
        back,
        at_debug,
        "back at info level, garbage requests are no longer logged at debug\n--- log ---\n{}",
        s.log()
    );
    still_serving(&mut s, pid, &root, 2)
}
