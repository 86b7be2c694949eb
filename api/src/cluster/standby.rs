//! An unsealed standby answers reads itself (unless `disable_standby_reads`), and every
//! node honours `X-Vault-Index` (ARCHITECTURE.md, "Replication").
//!
//! A standby serves a GET or LIST from its published state through the normal pipeline;
//! its access event goes to the leader ([`super::remote_access`]). Anything else goes to
//! the leader whole ([`super::forward`]), and so does a read that turns out to need a write
//! or a token this node does not know yet. That decision must come before anything of the
//! request was recorded, or it would be recorded twice: a per-request [`Scope`] notes
//! whether an access event was sent to the leader and whether the pipeline asked to
//! forward, and a forward is only done while nothing was sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request as HttpRequest};
use axum::response::Response;

use super::Node;
use super::forward::{error, forward};
use super::index::{self, Inconsistent};
use crate::core::{Core, Unsealed};
use crate::http::Api;
use crate::http::request::read_body;

/// How long `X-Vault-Inconsistent: await-state` waits for the node to reach an index.
const AWAIT_STATE: Duration = Duration::from_secs(2);

/// What one standby-served request did so far.
#[derive(Default)]
struct Scope {
    /// An access event was sent to the leader (it may be recorded).
    sent: AtomicBool,
    /// The pipeline found that the leader must answer this request.
    forward: AtomicBool,
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

/// Called before an access event goes to the leader.
pub(crate) fn note_sent() {
    let _ = SCOPE.try_with(|s| s.sent.store(true, Ordering::SeqCst));
}

/// The pipeline hit a write on a standby: the leader must answer.
pub(crate) fn note_forward() {
    let _ = SCOPE.try_with(|s| s.forward.store(true, Ordering::SeqCst));
}

/// The pipeline already asked for the leader: nothing more of this request may be sent
/// (such as the failure record of the handler that met the write).
pub(crate) fn forwarding() -> bool {
    SCOPE.try_with(|s| s.forward.load(Ordering::SeqCst)).unwrap_or(false)
}

/// True (and the request will be forwarded) when this request is served by a standby
/// that has recorded nothing of it yet. The pipeline then stops without recording: for a
/// token this node does not know, which may be a moment old on the leader.
pub(crate) fn forward_instead() -> bool {
    SCOPE
        .try_with(|s| {
            if s.sent.load(Ordering::SeqCst) {
                return false;
            }
            s.forward.store(true, Ordering::SeqCst);
            true
        })
        .unwrap_or(false)
}

/// Paths a standby never serves itself even for GET: their answer is the leader's view
/// (Raft configuration, snapshots, the durable ledger and its proofs).
fn leader_only(path: &str) -> bool {
    let path = path.trim_start_matches("/v1/");
    ["sys/storage/", "sys/ledger/", "sys/metrics"].iter().any(|p| path.starts_with(p))
}

/// Whether a standby may try to answer this request itself.
fn may_serve(core: &Core, req: &HttpRequest<Body>) -> bool {
    let read = matches!(req.method().as_str(), "GET" | "LIST");
    // A wrapped answer creates a wrapping token: a write.
    let wrapped = req.headers().contains_key("x-vault-wrap-ttl");
    !core.settings.disable_standby_reads && read && !wrapped && !leader_only(req.uri().path())
}

/// What the `X-Vault-Index` of a request asks of this node.
pub enum Gate {
    /// Reached (or none given): go on.
    Go,
    /// Not reached, and the client asked for the leader.
    Forward,
    /// An answer: a bad header, or 412.
    Answer(Response),
}

/// Checks a request's `X-Vault-Index` against this node's published state; waits
/// (bounded) if asked to. `can_forward`: this node is a standby.
pub async fn gate(core: &Core, unsealed: &Unsealed, headers: &HeaderMap, can_forward: bool) -> Gate {
    if !headers.contains_key(index::HEADER) {
        return Gate::Go;
    }
    let required = match unsealed.index.required(headers) {
        Ok(Some(r)) => r,
        Ok(None) => return Gate::Go,
        Err(e) => return Gate::Answer(error(400, &format!("invalid X-Vault-Index header: {e}"))),
    };
    let reached = || core.state.load().last_seq >= required;
    if reached() {
        return Gate::Go;
    }
    match Inconsistent::from_headers(headers) {
        Inconsistent::ForwardActiveNode if can_forward => return Gate::Forward,
        Inconsistent::Fail => return Gate::Answer(error(412, index::NOT_PRESENT)),
        // The active node itself, or await-state: wait a little.
        Inconsistent::ForwardActiveNode | Inconsistent::AwaitState => {}
    }
    let deadline = tokio::time::Instant::now() + AWAIT_STATE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if reached() {
            return Gate::Go;
        }
    }
    Gate::Answer(error(412, index::NOT_PRESENT))
}

/// Adds `X-Vault-Index` for `seq` to an answer.
pub fn add_index(response: &mut Response, unsealed: &Unsealed, seq: u64) {
    if seq == 0 || response.headers().contains_key(index::HEADER) {
        return;
    }
    let value = unsealed.index.encode(seq);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(index::HEADER, v);
    }
}

/// Sends a request to the leader (waiting, bounded, for one to be known).
async fn to_leader(node: &Node, req: HttpRequest<Body>) -> Response {
    let Some(http) = node.cluster.peer_client() else { return error(503, "Vault is sealed") };
    match node.wait_leader_member(Duration::from_secs(3)).await {
        Some(leader) => forward(&http, &leader.cluster_addr, req).await,
        None => error(503, "local node not active but active cluster node not found"),
    }
}

/// An unsealed standby's answer to a request it does not answer as any node would
/// (`forward::answered_locally`).
pub async fn handle(api: &Api, node: &Node, unsealed: &Arc<Unsealed>, req: HttpRequest<Body>) -> Response {
    if !may_serve(&api.core, &req) {
        return to_leader(node, req).await;
    }
    match gate(&api.core, unsealed, req.headers(), true).await {
        Gate::Go => {}
        Gate::Forward => return to_leader(node, req).await,
        Gate::Answer(r) => return r,
    }
    // Kept, to forward the request as it came if the pipeline finds it needs the leader.
    let (parts, body) = req.into_parts();
    let bytes = match read_body(&parts.extensions, body).await {
        Ok(bytes) => bytes,
        Err(f) => return error(f.status(), f.message()),
    };
    let mut again = HttpRequest::new(Body::from(bytes.clone()));
    *again.method_mut() = parts.method.clone();
    *again.uri_mut() = parts.uri.clone();
    *again.headers_mut() = parts.headers.clone();
    if let Some(client) = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        again.extensions_mut().insert(*client);
    }
    if let Some(limits) = parts.extensions.get::<crate::listener::RequestLimits>() {
        again.extensions_mut().insert(*limits);
    }
    let scope = Arc::new(Scope::default());
    let local = HttpRequest::from_parts(parts, Body::from(bytes));
    let mut response = SCOPE.scope(scope.clone(), crate::http::serve_here(api, local)).await;
    if scope.forward.load(Ordering::SeqCst) {
        if !scope.sent.load(Ordering::SeqCst) {
            return to_leader(node, again).await;
        }
        // Not reached by any handler today (each commits its write before any access
        // event); answering the error is safer than recording the request twice.
        tracing::warn!("a standby-served request needed a write after its access event; refused");
        return response;
    }
    // The state this node answered from (at least the index the request asked for). Not
    // the seq of the read's own access event: a read changes no data, and an index past
    // what the standbys applied would send the client's next read to 412 and retry (Vault
    // also reports no index for its audit records).
    add_index(&mut response, unsealed, api.core.state.load().last_seq);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaders_views_are_not_served_by_a_standby() {
        assert!(leader_only("/v1/sys/storage/raft/configuration"));
        assert!(leader_only("/v1/sys/ledger/checkpoint"));
        assert!(!leader_only("/v1/secret/data/a"));
        assert!(!leader_only("/v1/sys/mounts"));
    }

    #[tokio::test]
    async fn forwarding_is_only_asked_before_anything_was_sent() {
        let scope = Arc::new(Scope::default());
        let asked = SCOPE.scope(scope.clone(), async { forward_instead() }).await;
        assert!(asked && scope.forward.load(Ordering::SeqCst));
        let scope = Arc::new(Scope::default());
        let asked = SCOPE
            .scope(scope.clone(), async {
                note_sent();
                forward_instead()
            })
            .await;
        assert!(!asked, "an access event may already be recorded");
        assert!(!forward_instead(), "outside a standby-served request");
        let scope = Arc::new(Scope::default());
        let after = SCOPE
            .scope(scope.clone(), async {
                note_forward();
                forwarding()
            })
            .await;
        assert!(after, "once asked, nothing more is sent");
    }
}
