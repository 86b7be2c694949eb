//! The cluster listener and its client: Raft RPCs and join requests as HTTPS POSTs on the
//! node's `cluster_addr` (Vault's port 8201), bodies in bincode 2 (entries are binary frames
//! up to a few MiB, which JSON would inflate). Both ends authenticate with the cluster's
//! mutual TLS ([`crate::tls`]): a node without credentials (sealed) neither accepts nor
//! makes a connection.
//!
//! Routes, all `POST`, body and answer both bincode:
//! `/cluster/v1/append`, `/vote`, `/pre_vote`, `/snapshot`, `/transfer_leader` carry
//! openraft's messages and answer `Result<reply, String>`; `/cluster/v1/join` carries a
//! [`JoinRequest`] and answers a [`JoinReply`]. A body that does not decode is answered with
//! status 400; nothing in a handler can panic on input. Other paths go to the server's own
//! routes, if it set any ([`Cluster::set_extension`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::tls::Credentials;
use crate::types::{Member, Nid, Snapshot, TypeConfig, Vote, decode, encode};
use crate::{Cluster, ClusterError, NodeId};

/// This node's cluster credentials of the moment: `None` while sealed.
pub(crate) type CredentialWatch = watch::Receiver<Option<Arc<Credentials>>>;

/// Largest RPC body accepted: snapshots carry the whole state.
pub(crate) const MAX_BODY: usize = 1 << 30;

/// The client side: every peer connection uses the credentials of the moment.
#[derive(Clone)]
pub struct Network {
    creds: CredentialWatch,
}

impl Network {
    pub(crate) fn new(creds: CredentialWatch) -> Self {
        Network { creds }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: Nid, node: &Member) -> Peer {
        Peer { creds: self.creds.clone(), base: format!("https://{}/cluster/v1", node.cluster_addr) }
    }
}

/// A connection to one peer.
pub struct Peer {
    creds: CredentialWatch,
    base: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

/// Why a call failed: unreachable (connect/timeout) or answered with an error.
enum CallError {
    Unreachable(String),
    Remote(String),
}

async fn call<Req: Serialize, Resp: DeserializeOwned>(
    creds: &CredentialWatch,
    url: String,
    req: &Req,
    ttl: Duration,
) -> Result<Resp, CallError> {
    let http = creds.borrow().as_ref().map(|c| c.client.clone());
    let Some(http) = http else {
        return Err(CallError::Unreachable("this node has no cluster credentials (it is sealed)".into()));
    };
    let body = encode(req).map_err(CallError::Remote)?;
    let r = http.post(url).timeout(ttl).body(body).send().await.map_err(|e| CallError::Unreachable(e.to_string()))?;
    let status = r.status();
    let bytes = r.bytes().await.map_err(|e| CallError::Unreachable(e.to_string()))?;
    if !status.is_success() {
        return Err(CallError::Remote(format!("status {status}: {}", String::from_utf8_lossy(&bytes))));
    }
    let res: Result<Resp, String> = decode(&bytes).map_err(CallError::Remote)?;
    res.map_err(CallError::Remote)
}

fn rpc_err<E: std::error::Error>(e: CallError) -> RPCError<TypeConfig, E> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
        CallError::Remote(m) => RPCError::Network(NetworkError::new(&Msg(m))),
    }
}

impl Peer {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, CallError> {
        call(&self.creds, format!("{}/{path}", self.base), req, option.hard_ttl()).await
    }
}

/// The least time an append may take before the peer counts as unreachable.
const APPEND_TTL_MIN: Duration = Duration::from_secs(1);

/// First and longest pause before retrying a peer that did not answer.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    /// A peer that is down is retried after 100 ms doubling to 1 s (openraft's default
    /// retries every heartbeat and logs a warning each time). A peer that comes back
    /// catches up within 1 s; elections are not affected.
    fn backoff(&self) -> Option<openraft::network::Backoff> {
        let pauses = std::iter::successors(Some(BACKOFF_FIRST), |d| Some((*d * 2).min(BACKOFF_MAX)));
        Some(openraft::network::Backoff::new(pauses))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft bounds an append by the heartbeat interval (100 ms). A follower that is
        // merely busy (an fsync on a loaded machine) takes longer now and then; a timeout
        // counts as unreachable and pauses replication to it (the backoff below), which
        // under load costs far more than waiting. A dead follower refuses the connection
        // at once, and elections do not wait for appends.
        let ttl = option.hard_ttl().max(APPEND_TTL_MIN);
        call(&self.creds, format!("{}/append", self.base), &rpc, ttl).await.map_err(rpc_err)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("vote", &rpc, &option).await.map_err(rpc_err)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("pre_vote", &rpc, &option).await.map_err(rpc_err)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = SnapshotRequest { vote, meta: snapshot.meta, data: snapshot.snapshot };
        let send = self.rpc::<_, SnapshotResponse<TypeConfig>>("snapshot", &req, &option);
        tokio::select! {
            r = send => r.map_err(|e| match e {
                CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::new(&Msg(m))),
                CallError::Remote(m) => StreamingError::Network(NetworkError::new(&Msg(m))),
            }),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("transfer_leader", &req, &option).await.map_err(rpc_err)
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: Vote,
    meta: crate::types::SnapshotMeta,
    #[serde(with = "crate::types::bytes")]
    data: Vec<u8>,
}

/// "Please add me": sent by a joining node to any member.
#[derive(Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub id: NodeId,
    pub member: Member,
}

/// The answer to a join request.
#[derive(Serialize, Deserialize)]
pub(crate) enum JoinReply {
    Added,
    /// Not the leader: ask this one (if known).
    NotLeader(Option<(NodeId, Member)>),
    Failed(String),
}

fn answer<T: Serialize>(r: Result<T, String>) -> (StatusCode, Vec<u8>) {
    match encode(&r) {
        Ok(b) => (StatusCode::OK, b),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.into_bytes()),
    }
}

fn bad(e: String) -> (StatusCode, Vec<u8>) {
    (StatusCode::BAD_REQUEST, e.into_bytes())
}

async fn h_append(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    answer(c.raft().append_entries(req).await.map_err(|e| e.to_string()))
}

async fn h_vote(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: VoteRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    answer(c.raft().vote(req).await.map_err(|e| e.to_string()))
}

async fn h_pre_vote(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: VoteRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    answer(c.raft().pre_vote(req).await.map_err(|e| e.to_string()))
}

async fn h_snapshot(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: SnapshotRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let snap = Snapshot { meta: req.meta, snapshot: req.data };
    answer(c.raft().install_full_snapshot(req.vote, snap).await.map_err(|e| e.to_string()))
}

async fn h_transfer_leader(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: TransferLeaderRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    answer(c.raft().handle_transfer_leader(req).await.map_err(|e| e.to_string()))
}

async fn h_join(State(c): State<Cluster>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req: JoinRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let reply = match c.add_voter(req.id, req.member).await {
        Ok(()) => JoinReply::Added,
        Err(ClusterError::NotLeader { leader }) => JoinReply::NotLeader(leader),
        Err(e) => JoinReply::Failed(e.to_string()),
    };
    answer(Ok::<_, String>(reply))
}

/// Any other path: the server's own routes ([`Cluster::set_extension`]), else 404.
async fn h_extension(State(c): State<Cluster>, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    match c.extension() {
        Some(routes) => match routes.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The cluster listener's routes.
pub(crate) fn router(c: Cluster) -> Router {
    Router::new()
        .route("/cluster/v1/append", post(h_append))
        .route("/cluster/v1/vote", post(h_vote))
        .route("/cluster/v1/pre_vote", post(h_pre_vote))
        .route("/cluster/v1/snapshot", post(h_snapshot))
        .route("/cluster/v1/transfer_leader", post(h_transfer_leader))
        .route("/cluster/v1/join", post(h_join))
        .fallback(h_extension)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(c)
}

/// The client side of a join: ask `addr`, follow "not leader" answers, retry while no leader
/// is known; bounded by `deadline` overall.
pub(crate) async fn join(
    creds: &CredentialWatch,
    addr: &str,
    id: NodeId,
    me: Member,
    deadline: Duration,
) -> Result<(), ClusterError> {
    if creds.borrow().is_none() {
        return Err(ClusterError::Unavailable("this node has no cluster credentials (it is sealed)".into()));
    }
    let until = tokio::time::Instant::now() + deadline;
    let mut target = addr.split("://").last().unwrap_or(addr).trim_end_matches('/').to_string();
    let req = JoinRequest { id, member: me };
    let mut last = String::from("no answer");
    while tokio::time::Instant::now() < until {
        let url = format!("https://{target}/cluster/v1/join");
        // Adding a voter waits for it to catch up: give the call most of the time left.
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match call::<_, JoinReply>(creds, url, &req, left.max(Duration::from_millis(100))).await {
            Ok(JoinReply::Added) => return Ok(()),
            Ok(JoinReply::NotLeader(Some((_, m)))) => {
                target = m.cluster_addr;
                continue;
            }
            Ok(JoinReply::NotLeader(None)) => last = format!("{target}: no leader known"),
            Ok(JoinReply::Failed(e)) => last = format!("{target}: {e}"),
            Err(CallError::Unreachable(e)) | Err(CallError::Remote(e)) => last = format!("{target}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ClusterError::Unavailable(format!("join timed out: {last}")))
}

/// How long a peer may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` over mutual TLS, with the credentials of the moment: while
/// there are none (sealed) every connection is closed at once, and when they change (seal,
/// unseal) the connections made under the old ones are cut. Ends when `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    mut creds: CredentialWatch,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            changed = creds.changed() => {
                if changed.is_err() {
                    break;
                }
                conns.abort_all();
                continue;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: pause rather than spin.
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(current) = creds.borrow().clone() else {
            tracing::debug!(%peer, "cluster connection closed: this node is sealed");
            continue;
        };
        let acceptor = TlsAcceptor::from(current.server.clone());
        let app = app.clone();
        conns.spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    // Debug, as the API listener's garbage: a port scan must not flood the
                    // log. The dialing node logs its own side (openraft: unreachable).
                    tracing::debug!(%peer, error = %e, "cluster connection refused: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app)).await {
                tracing::debug!(%peer, error = %e, "cluster connection ended");
            }
        });
    }
    conns.abort_all();
}
