//! Raft replication of ledger frames among cairn nodes: the only crate that knows openraft.
//!
//! **Entries are frames.** The leader's sequencer validates commands against applied plus
//! in-flight state and builds one ledger frame (an event batch, already stamped and sealed);
//! that frame's bytes are the Raft entry. Every node hands committed entries, in log order,
//! to its [`Applier`], which appends the frame to its local ledger and folds projections.
//! Replicating the *result* of a command, not the command, keeps apply deterministic: sealing
//! uses random nonces and the sequencer stamps time. This crate never looks inside a frame.
//!
//! **Storage** ([`store`]): the Raft log's entries are in segment files under
//! `ClusterConfig::dir`/`log` ([`wal`]); the vote, the state machine's metadata and the last
//! snapshot in one redb file beside them. An append is `fdatasync`ed before openraft is told
//! it is flushed, off the append's path. The Raft log is not the ledger.
//!
//! **Transport** ([`net`]): HTTPS on the node's cluster listener (`cluster_addr`), bincode
//! bodies. The same listener answers join requests. Mutual TLS with credentials only an
//! unsealed node holds ([`tls`], [`Cluster::set_credentials`]): a sealed node is cut off.
//!
//! **Snapshots** are the applier's whole state as bytes ([`Applier::snapshot`]), taken between
//! two applies; one is built every [`SNAPSHOT_EVERY`] entries and the last
//! [`LOGS_KEPT_AFTER_SNAPSHOT`] entries before it stay in the log, so a lagging follower can
//! usually catch up from the log.
//!
//! Proposals that time out (quorum lost) are *not known to have failed*: the entry may still
//! be committed later, when a quorum is back, like any Raft write of unknown outcome.

mod net;
mod store;
mod tls;
mod types;
mod wal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use openraft::type_config::async_runtime::watch::WatchReceiver;
use openraft::{ChangeMembers, Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use tls::Credentials;
use types::{Frame, Nid, TypeConfig};
pub use types::{Member, NodeId};

/// Entries between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 10_000;
/// Entries kept in the log below a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;
/// How long `propose` waits for commit and apply before answering `Unavailable`.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `add_voter` waits for the new node to catch up, and each membership change.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server supplies: where committed entries go.
pub trait Applier: Send + Sync + 'static {
    /// Apply one committed entry. Entries come in log order, each exactly once per log index
    /// (after a crash an entry may be handed again if the applied index was not yet saved: the
    /// applier is idempotent). Ok(bytes) is the response returned to `propose` on the leader.
    /// Err = a local storage failure: the node stops applying (fatal), never skips.
    fn apply(&self, entry: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>>;
    /// The whole state as bytes, for a Raft snapshot.
    fn snapshot(&self) -> BoxFuture<'static, Result<Vec<u8>, String>>;
    /// Replace the whole state with bytes made by `snapshot` (on another node).
    fn install(&self, data: Vec<u8>) -> BoxFuture<'static, Result<(), String>>;
    /// How far the applier has got, as a number that grows with every entry it applies
    /// (the ledger's last seq). Read just after `apply`.
    fn applied_mark(&self) -> u64;
    /// How far what it applied is durable, in the same numbers. It may lag `applied_mark`
    /// (the applier syncs off the apply's path): the applied log id this node saves, and
    /// resumes from after a crash, is the last one whose mark was durable; the entries
    /// after it are handed again (the applier is idempotent). `snapshot` and `install`
    /// make everything durable first.
    fn durable_mark(&self) -> u64;
}

/// One node's settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Holds `log/` (the Raft log's entries) and `raft.redb` (vote, metadata, last snapshot).
    pub dir: PathBuf,
    pub api_addr: String,
    /// `host:port` to bind and to advertise (so not `0.0.0.0`, and not port 0).
    pub cluster_addr: String,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl ClusterConfig {
    /// Defaults measured on loopback: failover well under 2 s (see the tests).
    pub fn new(node_id: impl Into<NodeId>, dir: PathBuf, api_addr: String, cluster_addr: String) -> Self {
        ClusterConfig {
            node_id: node_id.into(),
            dir,
            api_addr,
            cluster_addr,
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
        }
    }
}

/// Errors as values.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("not the leader; leader: {leader:?}")]
    NotLeader { leader: Option<(NodeId, Member)> },
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("already initialized")]
    AlreadyInitialized,
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("storage or listener: {0}")]
    Io(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("the raft node has stopped: {0}")]
    Stopped(String),
}

/// An entry handed to Raft by [`Cluster::submit`], not known to be committed yet.
pub struct Proposal {
    cluster: Cluster,
    rx: tokio::sync::oneshot::Receiver<ClientWriteResult<TypeConfig>>,
}

impl Proposal {
    /// The applier's reply once the entry is committed by a majority and applied here (the
    /// leader). Bounded by [`PROPOSE_TIMEOUT`]; a timeout leaves the outcome unknown.
    pub async fn outcome(self) -> Result<Vec<u8>, ClusterError> {
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.rx).await {
            Ok(Ok(Ok(r))) => Ok(r.data),
            Ok(Ok(Err(e))) => Err(self.cluster.write_err(RaftError::APIError(e))),
            Ok(Err(_)) => Err(ClusterError::Stopped("the raft node dropped the proposal".into())),
            Err(_) => Err(ClusterError::Unavailable(format!("not committed within {PROPOSE_TIMEOUT:?}"))),
        }
    }
}

/// One member as seen in the membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub member: Member,
    pub voter: bool,
}

/// A snapshot of this node's view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node_id: NodeId,
    pub me: Member,
    pub leader: Option<(NodeId, Member)>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub members: Vec<MemberStatus>,
}

type Raft = openraft::Raft<TypeConfig, store::StateMachine>;

struct Inner {
    raft: Raft,
    node_id: NodeId,
    me: Member,
    leader_rx: watch::Receiver<Option<NodeId>>,
    /// Whether the stored state had a membership at start (metrics catch up a moment later).
    initialized_at_start: bool,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    server_stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    server: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// This node's cluster credentials, `None` while sealed; the listener and every peer
    /// connection watch them.
    creds: watch::Sender<Option<Arc<tls::Credentials>>>,
    /// The server's own node-to-node routes on the cluster listener ([`Cluster::set_extension`]).
    extension: std::sync::OnceLock<axum::Router>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

fn raft_err<E: std::fmt::Display>(e: RaftError<TypeConfig, E>) -> ClusterError {
    match e {
        RaftError::Fatal(f) => ClusterError::Stopped(f.to_string()),
        RaftError::APIError(e) => ClusterError::Raft(e.to_string()),
    }
}

impl Cluster {
    /// Opens the log store, binds the cluster listener, starts Raft.
    pub async fn start(cfg: ClusterConfig, applier: Arc<dyn Applier>) -> Result<Cluster, ClusterError> {
        let config = Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
            // A node starts sealed, without credentials: it must not resume as the leader
            // it was before a restart (it could reach no one, yet claim to lead).
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| ClusterError::Config(e.to_string()))?);
        // redb takes no mode: a private directory keeps its file private whatever the umask.
        wal::create_private_dir_all(&cfg.dir).map_err(|e| ClusterError::Io(format!("{}: {e}", cfg.dir.display())))?;
        let db = store::open(cfg.dir.join("raft.redb")).await.map_err(ClusterError::Io)?;
        let log = store::LogStore::open(cfg.dir.join("log"), db.clone())
            .await
            .map_err(|e| ClusterError::Io(e.to_string()))?;
        let sm = store::StateMachine::open(db, applier).await.map_err(|e| ClusterError::Io(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(&cfg.cluster_addr)
            .await
            .map_err(|e| ClusterError::Io(format!("bind {}: {e}", cfg.cluster_addr)))?;
        let (creds, creds_rx) = watch::channel(None);
        let raft = Raft::new(Nid(cfg.node_id.clone()), config, net::Network::new(creds_rx.clone()), log, sm)
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))?;

        let initialized_at_start = raft.is_initialized().await.map_err(|e| ClusterError::Stopped(e.to_string()))?;
        let (leader_tx, leader_rx) = watch::channel(None);
        let mut metrics = raft.metrics();
        let watcher = tokio::spawn(async move {
            loop {
                let leader = metrics.borrow_watched().current_leader.clone().map(|n| n.0);
                leader_tx.send_if_modified(|cur| {
                    if *cur != leader {
                        *cur = leader;
                        true
                    } else {
                        false
                    }
                });
                if metrics.changed().await.is_err() {
                    leader_tx.send_replace(None);
                    return;
                }
            }
        });

        let me = Member { api_addr: cfg.api_addr.clone(), cluster_addr: cfg.cluster_addr.clone() };
        let c = Cluster {
            inner: Arc::new(Inner {
                raft,
                node_id: cfg.node_id,
                me,
                leader_rx,
                initialized_at_start,
                tasks: std::sync::Mutex::new(vec![watcher]),
                server_stop: std::sync::Mutex::new(None),
                server: std::sync::Mutex::new(None),
                creds,
                extension: std::sync::OnceLock::new(),
            }),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = net::router(c.clone());
        let server = tokio::spawn(net::serve(listener, app, creds_rx, stop_rx));
        if let Ok(mut g) = c.inner.server_stop.lock() {
            *g = Some(stop_tx);
        }
        if let Ok(mut g) = c.inner.server.lock() {
            *g = Some(server);
        }
        Ok(c)
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Has a membership (bootstrapped or joined).
    pub fn is_initialized(&self) -> bool {
        if self.inner.initialized_at_start {
            return true;
        }
        let m = self.inner.raft.metrics();
        let r = m.borrow_watched();
        r.membership_config.membership().nodes().next().is_some()
    }

    /// Initialize a one-node cluster of this node.
    pub async fn bootstrap(&self) -> Result<(), ClusterError> {
        if self.is_initialized() {
            return Err(ClusterError::AlreadyInitialized);
        }
        let mut m = BTreeMap::new();
        m.insert(Nid(self.inner.node_id.clone()), self.inner.me.clone());
        self.inner.raft.initialize(m).await.map_err(|e| match e {
            RaftError::APIError(openraft::error::InitializeError::NotAllowed(_)) => ClusterError::AlreadyInitialized,
            e => raft_err(e),
        })
    }

    fn leader_of(&self, id: Option<Nid>, node: Option<Member>) -> Option<(NodeId, Member)> {
        let id = id?;
        let node = match node {
            Some(n) => n,
            None => {
                let m = self.inner.raft.metrics();
                let r = m.borrow_watched();
                r.membership_config.membership().get_node(&id).cloned()?
            }
        };
        Some((id.0, node))
    }

    fn write_err(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ClusterError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ClusterError::NotLeader { leader: self.leader_of(f.leader_id, f.leader_node) }
            }
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => ClusterError::Unavailable(format!(
                "leader changed, entry discarded (outcome unknown); new leader {:?}",
                f.leader_id
            )),
            e => raft_err(e),
        }
    }

    /// Replicates one entry; returns the applier's reply once it is committed by a majority
    /// and applied here (the leader). Bounded by [`PROPOSE_TIMEOUT`].
    pub async fn propose(&self, entry: Vec<u8>) -> Result<Vec<u8>, ClusterError> {
        self.submit(entry).await?.outcome().await
    }

    /// Hands one entry to Raft and returns without waiting for it to be committed: entries
    /// submitted one after another enter the log in that order, so a leader can keep
    /// several in flight (pipelining). [`Proposal::outcome`] waits for the result.
    pub async fn submit(&self, entry: Vec<u8>) -> Result<Proposal, ClusterError> {
        if !self.inner.raft.is_leader() {
            let m = self.inner.raft.metrics();
            let leader = m.borrow_watched().current_leader.clone();
            return Err(ClusterError::NotLeader { leader: self.leader_of(leader, None) });
        }
        let (responder, rx) = ProgressResponder::complete_only();
        let queued = self.inner.raft.write(Frame(entry)).responder(responder).await;
        queued.map_err(|e| ClusterError::Stopped(e.to_string()))?;
        Ok(Proposal { cluster: self.clone(), rx })
    }

    /// On the leader: add `id` as a learner, wait (bounded) until it caught up, make it a voter.
    pub async fn add_voter(&self, id: NodeId, member: Member) -> Result<(), ClusterError> {
        let nid = Nid(id);
        let already_voter = {
            let m = self.inner.raft.metrics();
            let r = m.borrow_watched();
            r.membership_config.membership().voter_ids().any(|v| v == nid)
        };
        if already_voter && self.inner.raft.is_leader() {
            return Ok(());
        }
        let t = MEMBERSHIP_TIMEOUT;
        match tokio::time::timeout(t, self.inner.raft.add_learner(nid.clone(), member, true)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(self.write_err(e)),
            Err(_) => return Err(ClusterError::Unavailable("learner did not catch up in time".into())),
        }
        let ids: BTreeSet<Nid> = [nid].into_iter().collect();
        match tokio::time::timeout(t, self.inner.raft.change_membership(ChangeMembers::AddVoterIds(ids), false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.write_err(e)),
            Err(_) => Err(ClusterError::Unavailable("membership change not committed in time".into())),
        }
    }

    /// On the leader: remove a voter or learner from the membership.
    pub async fn remove(&self, id: &str) -> Result<(), ClusterError> {
        let nid = Nid(id.to_string());
        let is_voter = {
            let m = self.inner.raft.metrics();
            let r = m.borrow_watched();
            r.membership_config.membership().voter_ids().any(|v| v == nid)
        };
        let ids: BTreeSet<Nid> = [nid].into_iter().collect();
        let change = if is_voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
        match tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.inner.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.write_err(e)),
            Err(_) => Err(ClusterError::Unavailable("membership change not committed in time".into())),
        }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> Status {
        let m = self.inner.raft.metrics();
        let r = m.borrow_watched();
        let membership = r.membership_config.membership();
        let voters: BTreeSet<Nid> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus { id: id.0.clone(), member: n.clone(), voter: voters.contains(id) })
            .collect();
        let leader =
            r.current_leader.as_ref().and_then(|id| membership.get_node(id).map(|n| (id.0.clone(), n.clone())));
        Status {
            node_id: self.inner.node_id.clone(),
            me: self.inner.me.clone(),
            is_leader: r.current_leader.as_ref().is_some_and(|l| l.0 == self.inner.node_id),
            leader,
            term: r.current_term,
            last_log_index: r.last_log_index,
            committed_index: r.cluster_committed.as_ref().map(|l| l.index()),
            applied_index: r.last_applied.as_ref().map(|l| l.index()),
            members,
        }
    }

    /// The current leader as seen here; `None` while there is none.
    pub fn leader_changes(&self) -> watch::Receiver<Option<NodeId>> {
        self.inner.leader_rx.clone()
    }

    /// On a (new) leader: wait until everything committed is applied here.
    pub async fn ensure_leader_applied(&self) -> Result<(), ClusterError> {
        let f = self.inner.raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex);
        match tokio::time::timeout(PROPOSE_TIMEOUT, f).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f)))) => {
                Err(ClusterError::NotLeader { leader: self.leader_of(f.leader_id, f.leader_node) })
            }
            Ok(Err(e)) => Err(raft_err(e)),
            Err(_) => Err(ClusterError::Unavailable("leadership not confirmed in time".into())),
        }
    }

    /// Gives this node its cluster credentials, derived from `secret` (at unseal: every
    /// unsealed node of the cluster derives the same secret, and only they can), or takes
    /// them away (`None`, at seal). Connections made under the old ones are cut.
    /// Given the secret they already come from, they are kept (no connection is cut).
    pub fn set_credentials(&self, secret: Option<&[u8; 32]>) -> Result<(), ClusterError> {
        let same = |held: &Option<Arc<tls::Credentials>>| match (held, secret) {
            (Some(c), Some(s)) => c.secret_id == tls::Credentials::secret_id(s),
            (None, None) => true,
            _ => false,
        };
        if same(&self.inner.creds.borrow()) {
            return Ok(());
        }
        let creds = match secret {
            Some(s) => Some(Arc::new(tls::Credentials::derive(s, &self.inner.node_id)?)),
            None => None,
        };
        self.inner.creds.send_replace(creds);
        Ok(())
    }

    /// Serves `routes` on the cluster listener too, behind its mutual TLS: node-to-node
    /// requests of the server's own (paths outside `/cluster/v1/`). Once.
    pub fn set_extension(&self, routes: axum::Router) -> Result<(), ClusterError> {
        self.inner
            .extension
            .set(routes)
            .map_err(|_| ClusterError::Config("the cluster extension is already set".into()))
    }

    pub(crate) fn extension(&self) -> Option<&axum::Router> {
        self.inner.extension.get()
    }

    /// An HTTPS client for the other nodes' cluster listeners, with this node's certificate;
    /// `None` while sealed.
    pub fn peer_client(&self) -> Option<reqwest::Client> {
        self.inner.creds.borrow().as_ref().map(|c| c.client.clone())
    }

    /// Whether this node holds cluster credentials (is unsealed).
    pub fn has_credentials(&self) -> bool {
        self.inner.creds.borrow().is_some()
    }

    /// Asks the member listening on `cluster_addr` (`host:port`) to add this node as a voter;
    /// follows "not leader" answers. Needs this node's credentials: a member accepts only a
    /// node that holds the cluster's secret. Retries while no leader is known or the member
    /// cannot be reached, for at most `within` (adding a voter waits up to
    /// [`MEMBERSHIP_TIMEOUT`] for it to catch up).
    pub async fn join(&self, cluster_addr: &str, within: Duration) -> Result<(), ClusterError> {
        let (id, me) = (self.inner.node_id.clone(), self.inner.me.clone());
        net::join(&self.inner.creds.subscribe(), cluster_addr, id, me, within).await
    }

    /// A sealed node must not start elections. If it leads, hand leadership to another voter.
    pub async fn set_electable(&self, yes: bool) {
        self.inner.raft.runtime_config().elect(yes);
        if yes || !self.inner.raft.is_leader() {
            return;
        }
        let other = {
            let m = self.inner.raft.metrics();
            let r = m.borrow_watched();
            r.membership_config.membership().voter_ids().find(|v| v.0 != self.inner.node_id)
        };
        if let Some(to) = other
            && let Err(e) = self.inner.raft.trigger().transfer_leader(to).await
        {
            tracing::warn!(error = %e, "transfer_leader");
        }
    }

    /// Stops Raft and the cluster listener. Idempotent.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let stop = self.inner.server_stop.lock().ok().and_then(|mut g| g.take());
        if let Some(s) = stop {
            let _ = s.send(());
        }
        let server = self.inner.server.lock().ok().and_then(|mut g| g.take());
        if let Some(mut h) = server {
            let t0 = Instant::now();
            if tokio::time::timeout(Duration::from_secs(2), &mut h).await.is_err() {
                h.abort();
                tracing::warn!(waited = ?t0.elapsed(), "cluster listener aborted");
            }
        }
        let tasks: Vec<_> = self.inner.tasks.lock().map(|mut g| g.drain(..).collect()).unwrap_or_default();
        for t in tasks {
            t.abort();
        }
    }
}
