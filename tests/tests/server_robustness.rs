//! The server never falls over on hostile or odd input, and token expiry happens on its
//! own, by an event in the ledger.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::server::{DevServer, Target};

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
