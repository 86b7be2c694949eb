//! Request forwarding: an unsealed standby passes a request to the leader unchanged and
//! passes the answer back, so a client pointed at any node works (Vault forwards to the
//! active node the same way, over its cluster port). It goes over the cluster listener's
//! mutual TLS, with the client's address, so the leader sees the client as if it had asked
//! it: its access event, `token_bound_cidrs` and login limits. The leader records the access
//! event, so there is one chain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, Request as HttpRequest, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::Api;
use crate::http::request::read_body;

/// Paths a node always answers itself: its own seal state and health, and who leads.
pub fn answered_locally(path: &str) -> bool {
    let path = path.trim_start_matches("/v1/").trim_end_matches('/');
    matches!(
        path,
        "sys/seal-status"
            | "sys/health"
            | "sys/leader"
            | "sys/unseal"
            | "sys/init"
            | "sys/storage/raft/join"
            | "sys/storage/raft/bootstrap/challenge"
    )
}

/// Headers that describe one hop, not the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "content-length"
    )
}

/// Where a standby forwards requests on the leader's cluster listener: this prefix, then
/// the request's own path and query.
pub const PREFIX: &str = "/cairn/internal/forward";
/// The client's address, as the standby saw it: trusted only on the cluster listener,
/// whose peers are this cluster's unsealed nodes.
const FORWARDED_FOR: &str = "x-cairn-forwarded-for";

/// Sends `req` to the leader, on its cluster listener at `leader_cluster_addr` (`host:port`,
/// with this node's cluster credentials), and returns its answer. The leader serves it as
/// if the client had asked it: with the client's address.
pub async fn forward(http: &reqwest::Client, leader_cluster_addr: &str, req: HttpRequest<Body>) -> Response {
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| *a);
    let (parts, body) = req.into_parts();
    let bytes = match read_body(&parts.extensions, body).await {
        Ok(bytes) => bytes,
        Err(f) => return error(f.status(), f.message()),
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("https://{leader_cluster_addr}{PREFIX}{path}");
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return error(405, "method not allowed");
    };
    let mut out = http.request(method, &url).timeout(Duration::from_secs(90)).body(bytes);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) && name.as_str() != FORWARDED_FOR {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(client) = client {
        out = out.header(FORWARDED_FOR, client.to_string());
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(leader = %leader_cluster_addr, error = %e, "forwarding to the leader failed");
            return error(503, "the request could not be forwarded to the active node");
        }
    };
    let status = answer.status().as_u16();
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "content-length"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(_) => return error(503, "the active node's answer was cut short"),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_bytes(&value)) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

/// The leader's side: a request a standby forwarded, served as if the client had asked
/// here (its path without [`PREFIX`], its address from [`FORWARDED_FOR`]).
pub async fn serve_forwarded(api: Arc<Api>, mut req: HttpRequest<Body>) -> Response {
    let inner = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("").strip_prefix(PREFIX).unwrap_or("");
    let Ok(uri) = inner.parse::<axum::http::Uri>() else {
        return error(400, "malformed forwarded request");
    };
    *req.uri_mut() = uri;
    let client = req.headers_mut().remove(FORWARDED_FOR);
    req.extensions_mut().remove::<ConnectInfo<SocketAddr>>();
    if let Some(a) = client.and_then(|v| v.to_str().ok().and_then(|s| s.parse::<SocketAddr>().ok())) {
        req.extensions_mut().insert(ConnectInfo(a));
    }
    crate::http::handle_request(api, req).await
}

/// Vault's error body.
pub fn error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [message] }).to_string();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body).into_response()
}
