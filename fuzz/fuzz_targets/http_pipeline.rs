//! Fuzz target: HTTP requests made from arbitrary bytes, served in process by the router of
//! a dev server (`api::server::open_dev`, on tmpfs): the URL's path and its canonical form,
//! the body, the token, the ACL, every handler, the sequencer and the ledger. Nothing may
//! panic, and every answer must be an HTTP answer with a JSON body of Vault's shape or none.
//!
//! Layout: byte 0 picks the method, byte 1 the token (none, root, a bogus one, or the one
//! in the headers), then the request target up to `\n`, header lines up to an empty line,
//! and the body. Requests that would end the run (sealing, revoking root) or slow it to a
//! crawl (outside calls, passes over the whole ledger) are skipped.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "LIST", "PATCH", "HEAD", "OPTIONS", "SCAN", "G\u{e9}T"];

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().ok()?;
            let dir = tempfile::Builder::new().prefix("cairn-fuzz-").tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).ok()?;
            let path = dir.keep();
            let (core, _, _) = runtime.block_on(api::server::open_dev(&path, Some("root".into()))).ok()?;
            let limit = api::auth::ratelimit::RateLimit { per_second: 0, burst: 0 };
            let router = api::http::router(core, Arc::new(api::refusals::Refusals::new(limit)));
            Some(Server { runtime, router })
        })
        .as_ref()
}

/// The target percent-decoded and lowercased, for the checks below.
fn decoded(target: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(target.len());
    let mut i = 0;
    while i < target.len() {
        let hex = target.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (target[i], hex) {
            (b'%', Some(b)) => {
                decoded.push(b.to_ascii_lowercase());
                i += 3;
            }
            (b, _) => {
                decoded.push(b.to_ascii_lowercase());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// What the run must not be allowed to reach with the root token.
fn ends_the_run(target: &[u8]) -> bool {
    let text = decoded(target);
    ["seal", "revoke", "tidy", "rotate", "remove-peer"].iter().any(|w| text.contains(w))
}

/// Requests whose work is an outside call or a pass over the whole ledger: a database or a
/// JWKS/OIDC/Kubernetes server the fuzzer names (a DNS lookup that times out), or an
/// export, query or proof over a ledger that grows with every input. They would bring the
/// run to a few inputs a second; their parsing is reached by the other targets and tests.
fn too_slow(target: &[u8]) -> bool {
    let text = decoded(target);
    ["database", "jwt", "kubernetes", "oidc", "ledger/", "raft/snapshot"].iter().any(|w| text.contains(w))
}

fuzz_target!(|data: &[u8]| {
    let Some(server) = server() else { return };
    let [m, t, rest @ ..] = data else { return };
    let mut lines = rest.splitn(2, |&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let rest = lines.next().unwrap_or_default();
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    let token = match t % 4 {
        0 => None,
        1 => Some("root"),
        2 => Some("s.AAAAAAAAAAAAAAAAAAAAAAAA"),
        _ => Some(""),
    };
    if token == Some("root") && ends_the_run(target) || too_slow(target) {
        return;
    }
    let mut request = Request::builder().method(method).uri(target);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.header("x-vault-token", token);
    }
    for line in head.split(|&b| b == b'\n') {
        if let Some(at) = line.iter().position(|&b| b == b':') {
            let name = &line[..at];
            let value = line[at + 1..].strip_prefix(b" ").unwrap_or(&line[at + 1..]);
            // A header that names the token only counts for the fourth token choice.
            if name.eq_ignore_ascii_case(b"x-vault-token") && t % 4 != 3 {
                continue;
            }
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else { return };
    server.runtime.block_on(async {
        let Ok(response) = server.router.clone().oneshot(request).await;
        let status = response.status();
        let json = response.headers().get("content-type").is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        assert!(status.as_u16() >= 200 && status.as_u16() < 600, "status {status}");
        if json && !bytes.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer parses");
            assert!(v.is_object(), "a JSON answer is an object: {v}");
            // An error is Vault's `{"errors": […]}`, or an envelope with warnings (KV v2's
            // 404 for a path it does not serve), or a raw `sys/` answer (health, seal-status).
            if status.as_u16() >= 400 {
                let errors = v.get("errors").is_some_and(serde_json::Value::is_array);
                let warned = v.get("warnings").is_some_and(serde_json::Value::is_array);
                let raw = v.get("sealed").is_some() || v.get("initialized").is_some();
                // KV v2's 404 for a deleted or destroyed version carries its metadata.
                let kv = v.pointer("/data/metadata").is_some();
                assert!(errors || warned || raw || kv, "an error answer in Vault's shape: {v}");
            }
        }
    });
});
