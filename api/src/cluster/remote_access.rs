//! Access events of standby-served reads, sequenced by the leader (one chain).
//!
//! A standby that answers a read itself still needs its access event durable before the
//! answer leaves, and only the leader's sequencer appends. The standby's sequencer has no
//! task: [`RemoteAccessClient`] sends each *access-only* request (`command: None`) to the
//! leader's internal endpoint [`PATH`], on its cluster listener (mutual TLS: only unsealed
//! nodes of this cluster reach it, see [`routes`]); the leader submits it to its own sequencer, which
//! checks the token again and counts its uses, and returns the result and the seqs. A
//! write is never sent this way (the sequencer answers `Forward`, and the whole HTTP request
//! goes to the leader instead).
//!
//! The endpoint appends access events on a client's behalf, so it must only accept
//! standbys of this cluster: besides the listener's TLS, the body is authenticated by
//! HMAC-SHA256 under a key derived from the root key (only unsealed nodes hold it),
//! carries its time (refused if more than
//! [`MAX_SKEW_SECS`] away) and is refused a second time with the same request id (no replay
//! within that window).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::{Body, to_bytes};
use axum::http::Request as HttpRequest;
use axum::response::Response;
use commands::sequencer::{Committed, RemoteFuture, RemoteSubmit, SequencerError};
use commands::{Caller, Rejection, Reply, Request};
use hmac::{Hmac, KeyInit, Mac};
use migrations::Access;
use projections::State;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Node;
use super::forward::error;
use crate::http::Api;

/// The leader's internal endpoint, on the cluster listener.
pub const PATH: &str = "/cairn/internal/access";
/// The header that carries the body's HMAC (hex).
const AUTH_HEADER: &str = "x-cairn-node-auth";
/// Key-derivation label of the node-to-node key.
pub const KEY_LABEL: &str = "cairn.node-access.hmac.v1";
/// How far a request's time may be from the leader's clock.
const MAX_SKEW_SECS: u64 = 30;
/// Largest body accepted (an access event with its field hashes).
const MAX_BODY: usize = 1 << 20;

/// An access-only request on the wire.
#[derive(Serialize, Deserialize)]
struct WireRequest {
    /// Seconds since the epoch when the standby sent it.
    time: u64,
    caller: Option<WireCaller>,
    actor_accessor: String,
    actor_entity_id: Option<String>,
    actor_display_name: String,
    actor_remote_addr: String,
    request_id: String,
    access: Option<Access>,
}

#[derive(Serialize, Deserialize)]
struct WireCaller {
    accessor: String,
    id_hash: String,
}

/// The leader's answer.
#[derive(Serialize, Deserialize)]
struct WireCommitted {
    /// `None`: accepted. Otherwise the rejection's status and message.
    rejection: Option<(u16, String)>,
    seqs: Vec<u64>,
}

fn now_secs() -> u64 {
    crate::core::now_nanos() / 1_000_000_000
}

fn tag(key: &[u8; 32], body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(body);
    Some(mac)
}

fn to_wire(r: &Request) -> WireRequest {
    WireRequest {
        time: now_secs(),
        caller: r.caller.as_ref().map(|c| WireCaller { accessor: c.accessor.clone(), id_hash: hex::encode(c.id_hash) }),
        actor_accessor: r.actor.accessor.clone(),
        actor_entity_id: r.actor.entity_id.map(hex::encode),
        actor_display_name: r.actor.display_name.clone(),
        actor_remote_addr: r.actor.remote_addr.clone(),
        request_id: hex::encode(r.request_id),
        access: r.access.clone(),
    }
}

fn from_wire(w: WireRequest) -> Option<Request> {
    let fixed = |s: &str| -> Option<Vec<u8>> { hex::decode(s).ok() };
    let caller = match w.caller {
        Some(c) => Some(Caller { accessor: c.accessor, id_hash: fixed(&c.id_hash)?.try_into().ok()? }),
        None => None,
    };
    let entity_id = match w.actor_entity_id {
        Some(e) => Some(fixed(&e)?.try_into().ok()?),
        None => None,
    };
    Some(Request {
        caller,
        actor: ledger::Actor {
            accessor: w.actor_accessor,
            entity_id,
            display_name: w.actor_display_name,
            remote_addr: w.actor_remote_addr,
        },
        request_id: fixed(&w.request_id)?.try_into().ok()?,
        access: w.access,
        command: None,
    })
}

fn rejection_of(status: u16, message: String) -> Rejection {
    match status {
        400 => Rejection::Invalid(message),
        403 => Rejection::PermissionDenied,
        404 => Rejection::NotFound,
        _ => Rejection::Internal(message),
    }
}

/// A standby's side: sends access-only requests to the leader.
pub struct RemoteAccessClient {
    node: Arc<Node>,
    key: Zeroizing<[u8; 32]>,
    /// This node's published state, for the [`Committed`] it hands back.
    state: Arc<ArcSwap<State>>,
}

impl RemoteAccessClient {
    pub fn new(node: Arc<Node>, root_key: &[u8; 32], state: Arc<ArcSwap<State>>) -> RemoteAccessClient {
        RemoteAccessClient { node, key: super::index::derive_key(root_key, KEY_LABEL), state }
    }

    async fn send(&self, request: Request) -> Result<Committed, SequencerError> {
        // This request goes to the leader whole: its access event is the leader's to make.
        if super::standby::forwarding() {
            return Err(SequencerError::Forward);
        }
        let unavailable = |m: &str| SequencerError::Unavailable(m.to_string());
        let leader = self
            .node
            .wait_leader_member(Duration::from_secs(3))
            .await
            .ok_or_else(|| unavailable("no active node to record the request"))?
            .cluster_addr;
        let http = self.node.cluster.peer_client().ok_or_else(|| unavailable("this node is sealed"))?;
        let body = serde_json::to_vec(&to_wire(&request)).map_err(|_| unavailable("cannot encode the request"))?;
        let auth = tag(&self.key, &body).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default();
        // From here on the leader may have recorded it, whatever we hear back.
        super::standby::note_sent();
        let url = format!("https://{leader}{PATH}");
        let answer = http
            .post(&url)
            .timeout(Duration::from_secs(10))
            .header(AUTH_HEADER, auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::debug!(leader = %leader, error = %e, "recording a standby read on the leader failed");
                unavailable("the active node could not be reached")
            })?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|_| unavailable("the active node's answer was cut short"))?;
        if !status.is_success() {
            tracing::warn!(leader = %leader, %status, "the active node did not record a standby read");
            return Err(unavailable("the active node did not record the request"));
        }
        let wire: WireCommitted =
            serde_json::from_slice(&bytes).map_err(|_| unavailable("unreadable answer from the active node"))?;
        let result = match wire.rejection {
            None => Ok(Reply::Done),
            Some((status, message)) => Err(rejection_of(status, message)),
        };
        Ok(Committed { result, state: self.state.load_full(), seqs: wire.seqs })
    }
}

impl RemoteSubmit for RemoteAccessClient {
    fn submit(&self, request: Request) -> RemoteFuture<'_> {
        Box::pin(self.send(request))
    }
}

/// Request ids seen in the last [`MAX_SKEW_SECS`] (with when), so a captured request
/// cannot be replayed while its time is still accepted.
#[derive(Default)]
pub struct SeenIds(Mutex<HashMap<[u8; 16], u64>>);

impl SeenIds {
    /// False if `id` was seen within the window.
    fn first_time(&self, id: [u8; 16], now: u64) -> bool {
        let Ok(mut seen) = self.0.lock() else { return false };
        if seen.len() > 4096 {
            seen.retain(|_, t| now.saturating_sub(*t) <= 2 * MAX_SKEW_SECS);
        }
        match seen.get(&id) {
            Some(t) if now.saturating_sub(*t) <= 2 * MAX_SKEW_SECS => false,
            _ => {
                seen.insert(id, now);
                true
            }
        }
    }
}

/// The leader's side of [`PATH`].
pub async fn serve(api: &Api, req: HttpRequest<Body>) -> Response {
    if req.method() != axum::http::Method::POST {
        return error(405, "method not allowed");
    }
    let Some(node) = api.core.cluster() else { return error(404, "not a cluster node") };
    let Some(unsealed) = api.core.unsealed().await else { return error(503, "Vault is sealed") };
    if !node.is_leader() {
        return error(503, "local node not active");
    }
    let given = req.headers().get(AUTH_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| hex::decode(v).ok());
    let Ok(body) = to_bytes(req.into_body(), MAX_BODY).await else { return error(413, "request too large") };
    let key = unsealed.derived_key(KEY_LABEL);
    let authentic = match (given, tag(&key, &body)) {
        (Some(given), Some(mac)) => mac.verify_slice(&given).is_ok(),
        _ => false,
    };
    if !authentic {
        tracing::warn!("refused an internal access request that is not from a node of this cluster");
        return error(403, "permission denied");
    }
    let Ok(wire) = serde_json::from_slice::<WireRequest>(&body) else { return error(400, "malformed request") };
    let now = now_secs();
    if wire.time.abs_diff(now) > MAX_SKEW_SECS {
        return error(403, "request too old");
    }
    let Some(request) = from_wire(wire) else { return error(400, "malformed request") };
    if !api.remote_seen.first_time(request.request_id, now) {
        return error(403, "request replayed");
    }
    match unsealed.sequencer.submit(request).await {
        Ok(committed) => {
            let rejection = committed.result.err().map(|r| (r.status(), r.to_string()));
            let answer = WireCommitted { rejection, seqs: committed.seqs };
            match serde_json::to_vec(&answer) {
                Ok(json) => axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::OK,
                    [("content-type", "application/json")],
                    json,
                )),
                Err(_) => error(500, "cannot encode the answer"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a standby's access event could not be recorded");
            error(503, "the audit ledger cannot record this request; refusing it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_request_survives_the_wire() {
        let request = Request {
            caller: Some(Caller { accessor: "acc".into(), id_hash: [3u8; 32] }),
            actor: ledger::Actor {
                accessor: "acc".into(),
                entity_id: Some([4u8; 16]),
                display_name: "token".into(),
                remote_addr: "10.0.0.1".into(),
            },
            request_id: [5u8; 16],
            access: None,
            command: None,
        };
        let json = serde_json::to_vec(&to_wire(&request)).expect("encode");
        let back = from_wire(serde_json::from_slice(&json).expect("decode")).expect("valid");
        assert_eq!(back, request);
    }

    #[test]
    fn a_request_id_is_taken_once_within_the_window() {
        let seen = SeenIds::default();
        assert!(seen.first_time([1u8; 16], 1000));
        assert!(!seen.first_time([1u8; 16], 1010));
        assert!(seen.first_time([2u8; 16], 1010));
        assert!(seen.first_time([1u8; 16], 1000 + 3 * MAX_SKEW_SECS), "long after: its time is refused anyway");
    }
}
