//! The server never falls over on hostile or odd input, and token expiry happens on its
//! own, by an event in the ledger. Hostile clients over raw TCP cannot hold connections or
//! requests for long: slow bodies and headers are cut at the listener's timeouts, connections
//! over `max_connections_per_address` are answered 503 at once, bodies over
//! `max_request_size` get Vault's 413, and requests over `max_request_duration` are cut.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::server::{ConfigServer, DevServer, Options, Server, Target};
use serde_json::json;

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn a_thousand_odd_requests_leave_the_server_serving_and_its_ledger_intact() -> Result<()> {
    if Target::from_env()? != Target::Cairn {
        return Ok(()); // this test reads cairn's ledger
    }
    let s = DevServer::start()?;
    s.bao(&["kv", "put", "secret/app", "k=v"])?.success()?;
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "LIST", "HEAD", "OPTIONS", "BREW"];
    let paths = [
        "/v1/secret/data/app",
        "/v1/secret/metadata/",
        "/v1/secret/destroy/app",
        "/v1/secret/subkeys/app?depth=x",
        "/v1/sys/mounts/x",
        "/v1/sys/policies/acl/p",
        "/v1/sys/capabilities-self",
        "/v1/auth/token/create",
        "/v1/auth/token/lookup",
        "/v1/auth/token/roles/r",
        "/v1/cubbyhole/a/b",
        "/v1/sys/internal/ui/mounts/secret",
        "/v1/sys/unseal",
        "/v1/sys/init",
        "/v1/sys/health?sealedcode=abc",
        "/v1/%ff%00/..",
        "/v1/",
        "/v2/x",
        "/",
        "/v1/secret/data/app?version=18446744073709551616",
        "/v1/sys/rotate",
        "/v1/sys/key-status",
    ];
    let bodies = [
        "",
        "{",
        "[]",
        "null",
        "1",
        "{\"data\":5}",
        "{\"data\":{\"a\":{\"b\":[1,{\"c\":null}]}}}",
        "{\"policy\":\"path \\\"x\\\" { capabilities = [\\\"read\\\"\"}",
        "{\"versions\":\"1,x,3\"}",
        "{\"options\":{\"cas\":\"-1\"},\"data\":{}}",
        "{\"ttl\":\"-5s\",\"policies\":\"a,,b\"}",
        "{\"key\":\"zz\"}",
        "{\"paths\":[1,2]}",
        "a=b&c=%zz",
        "{\"max_versions\":1e309}",
    ];
    let tokens = [Some("root"), None, Some("s.nope"), Some("")];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    for i in 0..1000 {
        let (m, p, b) = (rng.pick(&methods), rng.pick(&paths), rng.pick(&bodies));
        let token = tokens[(rng.next() % 4) as usize];
        let reply = s.http(m, p, token, Some(b)).with_context(|| format!("request {i}: {m} {p} {b:?}"))?;
        ensure!(
            reply.status < 500 || reply.status == 503,
            "request {i}: {m} {p} {b:?} answered {}: {}",
            reply.status,
            reply.body
        );
        ensure!(started.elapsed() < Duration::from_secs(120), "too slow");
    }
    // Still serving, and the secret is untouched unless one of the requests legitimately
    // destroyed it with the root token — so check the server, not the value.
    let health = s.http("GET", "/v1/sys/health", None, None)?;
    ensure!(health.status == 200, "health after the storm: {} {}", health.status, health.body);
    let lookup = s.http("GET", "/v1/auth/token/lookup-self", Some("root"), None)?;
    ensure!(lookup.status == 200, "lookup-self: {} {}", lookup.status, lookup.body);
    ensure!(!s.log().contains("panicked"), "the server log shows a panic:\n{}", s.log());
    Ok(())
}

#[test]
fn an_expired_token_is_revoked_by_the_server_on_its_own() -> Result<()> {
    if Target::from_env()? != Target::Cairn {
        return Ok(()); // this test reads cairn's ledger
    }
    let mut s = DevServer::start()?;
    let created = s.bao(&["token", "create", "-ttl=1s", "-policy=default", "-format=json"])?.success()?.json()?;
    let token = created["auth"]["client_token"].as_str().context("client_token")?.to_string();
    let accessor = created["auth"]["accessor"].as_str().context("accessor")?.to_string();
    // The expiry ticker runs every second; give it a few.
    std::thread::sleep(Duration::from_secs(4));
    let own = s.http("GET", "/v1/auth/token/lookup-self", Some(&token), None)?;
    ensure!(own.status == 403, "an expired token still works: {} {}", own.status, own.body);
    s.stop(Duration::from_secs(10))?;
    // The revocation is an event of the server's own, with the reason "expired".
    let segments = s.data_dir().join("ledger").join("segments");
    let mut found = false;
    for item in ledger::segments::FrameScan::new(&segments)? {
        let (frame, _) = item?;
        for fe in &frame.events {
            let env = migrations::Envelope::decode(&fe.event, frame.slots_of(fe).to_vec())?;
            if let migrations::Body::App(migrations::Event::TokensRevoked(r)) = &env.body
                && r.accessors.contains(&accessor)
            {
                ensure!(r.reason == migrations::RevocationReason::Expired, "revoked for {:?}, not expiry", r.reason);
                ensure!(env.actor.accessor.is_empty(), "expiry should be the server's own act, not {:?}", env.actor);
                found = true;
            }
        }
    }
    ensure!(found, "no TokensRevoked event for the expired token's accessor {accessor}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Slow and greedy clients, over raw TCP.
// ---------------------------------------------------------------------------------------

/// A config-mode server with these lines in its listener stanza.
fn with_listener(target: Option<Target>, lines: &str) -> Result<ConfigServer> {
    ConfigServer::start_with(Options { target, listener: lines.into(), ..Options::default() })
}

/// Reads until the server closes the connection (or `bound` passes): what it sent, and when
/// it closed (`None`: still open after `bound`).
fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Result<(String, Option<Duration>)> {
    let begun = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = bound.saturating_sub(begun.elapsed());
        if left.is_zero() {
            return Ok((String::from_utf8_lossy(&seen).into_owned(), None));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            // A reset is a close too.
            Err(_) => break,
        }
    }
    Ok((String::from_utf8_lossy(&seen).into_owned(), Some(begun.elapsed())))
}

/// The server answers a normal request from another client.
fn still_answers(s: &Server) -> Result<()> {
    let r = s.http("GET", "/v1/sys/seal-status", None, None)?;
    ensure!(r.status == 200, "seal-status from another client: {} {}", r.status, r.body);
    Ok(())
}

/// One keep-alive request on an open connection; returns the status line.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> Result<String> {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: cairn\r\n\r\n").as_bytes())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then exactly Content-Length bytes of body.
    loop {
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "the server closed the connection: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .context("no Content-Length")?;
            if seen.len() >= end + 4 + length {
                return Ok(text.lines().next().unwrap_or("").to_owned());
            }
        }
    }
}

#[test]
fn a_body_that_never_arrives_is_cut_at_http_read_timeout() -> Result<()> {
    let s = with_listener(Some(Target::Cairn), "  http_read_timeout = \"2s\"\n")?;
    let mut slow = TcpStream::connect_timeout(&s.socket_addr(), Duration::from_secs(5))?;
    // A large body announced, one byte sent: the server must not wait for the rest for long.
    let begun = Instant::now();
    slow.write_all(b"PUT /v1/sys/unseal HTTP/1.1\r\nHost: cairn\r\nContent-Length: 100000\r\n\r\n{")?;
    still_answers(&s).context("while a body is pending")?;
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(15))?;
    ensure!(closed.is_some(), "the connection of a body that never arrives is still open after 15 s");
    let closed = begun.elapsed();
    ensure!(closed < Duration::from_secs(6), "closed only after {closed:?} (http_read_timeout is 2 s)");
    ensure!(closed >= Duration::from_millis(1500), "closed after {closed:?}, before http_read_timeout");
    ensure!(answer.starts_with("HTTP/1.1 408 "), "answer: {answer:?}");
    ensure!(answer.ends_with("\r\n\r\n{\"errors\":[\"request body read timed out\"]}\n"), "answer: {answer:?}");
    still_answers(&s).context("after the slow body was cut")
}

#[test]
fn a_slowloris_header_is_cut_at_http_read_header_timeout() -> Result<()> {
    let s = with_listener(None, "  http_read_header_timeout = \"2s\"\n")?;
    let mut slow = TcpStream::connect_timeout(&s.socket_addr(), Duration::from_secs(5))?;
    let mut writer = slow.try_clone()?;
    // One byte every 200 ms, for longer than the test waits: each byte is progress, but the
    // headers never end.
    let trickle = std::thread::spawn(move || {
        let header = b"GET /v1/sys/seal-status HTTP/1.1\r\nHost: cairn\r\nX-Slow: ".iter().chain([b'a'; 100].iter());
        for byte in header {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(15))?;
    let closed = closed.context("a slowloris header still holds its connection after 15 s")?;
    ensure!(closed < Duration::from_secs(6), "closed only after {closed:?} (http_read_header_timeout is 2 s)");
    ensure!(!answer.contains(" 200 "), "the slow request was served: {answer:?}");
    drop(slow);
    let _ = trickle.join();
    still_answers(&s)
}

#[test]
fn connections_over_max_connections_per_address_get_503_and_a_freed_place_is_reused() -> Result<()> {
    let s = with_listener(Some(Target::Cairn), "  max_connections_per_address = 4\n")?;
    let addr: SocketAddr = s.socket_addr();
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        let status = keep_alive_get(&mut c, "/v1/sys/seal-status").with_context(|| format!("connection {i}"))?;
        ensure!(status.starts_with("HTTP/1.1 200"), "connection {i}: {status}");
        held.push(c);
    }
    // The fifth from the same address is answered at once, and closed.
    let begun = Instant::now();
    let mut extra = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(10))?;
    ensure!(closed.is_some(), "the connection over the cap was kept open: {answer:?}");
    ensure!(begun.elapsed() < Duration::from_secs(2), "refused only after {:?}", begun.elapsed());
    ensure!(answer.starts_with("HTTP/1.1 503 "), "answer: {answer:?}");
    ensure!(
        answer.ends_with("\r\n\r\n{\"errors\":[\"too many connections from this address\"]}\n"),
        "answer: {answer:?}"
    );
    // So is a client's ordinary request.
    let r = s.http("GET", "/v1/sys/seal-status", None, None)?;
    ensure!(r.status == 503, "a fifth connection: {} {}", r.status, r.body);
    // The four admitted connections still work.
    for (i, c) in held.iter_mut().enumerate() {
        let status = keep_alive_get(c, "/v1/sys/seal-status").with_context(|| format!("held connection {i}"))?;
        ensure!(status.starts_with("HTTP/1.1 200"), "held connection {i}: {status}");
    }
    // One leaves; its place is free again once the server has seen it close.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.http("GET", "/v1/sys/seal-status", None, None)?;
        if r.status == 200 {
            break;
        }
        if Instant::now() >= deadline {
            bail!("a freed place was not reused within 5 s: {} {}", r.status, r.body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn max_request_size_refuses_a_bigger_body_with_vaults_413() -> Result<()> {
    // Vault's key and answer: this test also runs against OpenBao.
    let s = with_listener(None, "  max_request_size = 1024\n")?;
    let padded = |len: usize| {
        let mut body = br#"{"key":""#.to_vec();
        body.resize(len - 2, b'a');
        body.extend_from_slice(br#""}"#);
        body
    };
    let big = s.http_with("PUT", "/v1/sys/unseal", &[], &padded(1025))?;
    ensure!(
        (big.status, big.body.as_str()) == (413, "{\"errors\":[\"http: request body too large\"]}\n"),
        "a 1025-byte body: {} {:?}",
        big.status,
        big.body
    );
    let fits = s.http_with("PUT", "/v1/sys/unseal", &[], &padded(1024))?;
    ensure!(fits.status != 413, "a 1024-byte body is within max_request_size: {} {}", fits.status, fits.body);
    still_answers(&s)
}

#[test]
fn a_request_longer_than_max_request_duration_is_cut() -> Result<()> {
    let s = with_listener(Some(Target::Cairn), "  max_request_duration = \"2s\"\n")?;
    let (root, _) = s.init_and_unseal()?;
    let root = Some(root.as_str());
    let mount = s.http("POST", "/v1/sys/mounts/database", root, Some(r#"{"type":"database"}"#))?;
    ensure!(mount.status == 204, "mount: {} {}", mount.status, mount.body);
    // A "database" that accepts connections and never says a word: checking the connection
    // waits for it (cairn gives up on its own after 10 s).
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in silent.incoming().take(4).flatten() {
            kept.push(c);
            if kept.len() == 1 {
                std::thread::sleep(Duration::from_secs(15));
                return;
            }
        }
    });
    let config = json!({
        "plugin_name": "postgresql-database-plugin",
        "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres?sslmode=disable"),
        "username": "u",
        "password": "p",
        "allowed_roles": "*",
    })
    .to_string();
    let begun = Instant::now();
    let cut = e2e::process::http(
        s.socket_addr(),
        "POST",
        "/v1/database/config/silent",
        root,
        Some(&config),
        Duration::from_secs(30),
    )?;
    let took = begun.elapsed();
    ensure!(
        (cut.status, cut.body.as_str()) == (500, "{\"errors\":[\"context deadline exceeded\"]}\n"),
        "the slow request answered {} {:?} after {took:?}",
        cut.status,
        cut.body
    );
    ensure!(took >= Duration::from_millis(1500) && took < Duration::from_secs(6), "cut after {took:?} (limit 2 s)");
    // The cut write stored nothing, and the server goes on serving.
    let read = s.http("GET", "/v1/database/config/silent", root, None)?;
    ensure!(read.status == 404, "the cut configuration was stored: {} {}", read.status, read.body);
    still_answers(&s)?;
    drop(held);
    Ok(())
}
