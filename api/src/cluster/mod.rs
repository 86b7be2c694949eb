//! A cairn node in a cluster (`storage "raft"`): the glue between the server and the
//! `cluster` crate, the only place that knows openraft (ARCHITECTURE.md, "Replication").
//!
//! - Every node runs Raft from the start, and applies committed frames to its own ledger
//!   ([`applier`]). But only an unsealed node holds the cluster's TLS credentials (derived
//!   from the root key), so a sealed node neither replicates nor starts elections; a new
//!   node's join completes at its unseal ([`join`]).
//! - The leader, once unsealed, runs the sequencer. Its batches become frames
//!   ([`ClusterCommitter`]): built and signed on its ledger's head, replicated, and
//!   acknowledged once a majority holds them and this node applied them.
//! - An unsealed standby forwards every request but the seal endpoints to the leader
//!   ([`forward`]).
//! - Except reads: a standby answers them itself ([`standby`]), their access events
//!   sequenced by the leader ([`remote_access`]). Every answer carries `X-Vault-Index`
//!   ([`index`]).

pub mod applier;
pub mod forward;
pub mod index;
pub mod join;
pub mod node_key;
pub mod remote_access;
pub mod standby;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use commands::Env;
use commands::sequencer::{CommitFuture, Committer, Folded, Sequencer, SequencerError, StartFuture};
use ledger::{Entry, LedgerKey};
use projections::State;

pub use applier::{LedgerApplier, Outcome};
pub use cluster::{Cluster, ClusterError, Member, Status};

use crate::config::RaftConfig;

/// One node: its Raft side and its ledger.
pub struct Node {
    pub id: String,
    pub cluster: Cluster,
    pub applier: LedgerApplier,
    pub config: RaftConfig,
    /// For forwarding requests to the leader.
    pub http: reqwest::Client,
    /// A join that waits for this node's unseal: the cluster's seal material.
    pub pending_join: std::sync::Mutex<Option<join::JoinMaterial>>,
}

/// How far a join request got.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// This node is a member.
    Member,
    /// The cluster's seal material is here; the join completes when this node is unsealed.
    AwaitingUnseal,
}

impl Node {
    pub fn status(&self) -> Status {
        self.cluster.status()
    }

    /// Whether this node leads, from the leader watch (cheap: every request asks).
    pub fn is_leader(&self) -> bool {
        self.cluster.leader_changes().borrow().as_deref() == Some(self.id.as_str())
    }

    /// The leader's API address, waiting (bounded) while no leader is known. `None` if
    /// none is known by then, or if this node leads meanwhile.
    pub async fn wait_leader_api_addr(&self, within: Duration) -> Option<String> {
        self.wait_leader_member(within).await.map(|m| m.api_addr)
    }

    /// The leader's addresses, waiting (bounded) while no leader is known. `None` if none
    /// is known by then, or if this node leads meanwhile.
    pub async fn wait_leader_member(&self, within: Duration) -> Option<Member> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = self.cluster.status();
            if s.is_leader {
                return None;
            }
            if let Some((_, m)) = s.leader {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until this node leads.
    pub async fn wait_leader(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.is_leader() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.is_leader()
    }

    /// Proposes one frame and reads what became of it.
    pub async fn propose(&self, frame: Vec<u8>) -> Result<Outcome, SequencerError> {
        let reply = self.cluster.propose(frame).await.map_err(commit_error)?;
        Outcome::decode(&reply).ok_or_else(|| SequencerError::Unavailable("unreadable apply outcome".into()))
    }

    /// Restores a snapshot into this new cluster: bootstraps it if needed, then proposes
    /// the frames in order; each is checked and replicated like any frame. Returns the
    /// last seq. Nothing is left half-done on a refusal before the first frame; a refusal
    /// later leaves the frames before it (a prefix of a valid ledger, which verifies).
    pub async fn restore(&self, frames: &[&[u8]]) -> Result<u64, String> {
        if !self.cluster.is_initialized() {
            self.cluster.bootstrap().await.map_err(|e| e.to_string())?;
        }
        self.cluster.set_electable(true).await;
        if !self.wait_leader(Duration::from_secs(10)).await {
            return Err("this node is not the cluster's leader".into());
        }
        self.cluster.ensure_leader_applied().await.map_err(|e| e.to_string())?;
        let mut last_seq = 0;
        for frame in frames {
            match self.propose(frame.to_vec()).await.map_err(|e| e.to_string())? {
                Outcome::Written { last_seq: s } => last_seq = s,
                other => return Err(format!("frame after event {last_seq}: {other:?}")),
            }
        }
        // Sealed until unsealed with the snapshot's keys: stop standing for election.
        self.cluster.set_electable(false).await;
        Ok(last_seq)
    }

    /// The join waiting for this node's unseal, if any.
    pub fn pending_join(&self) -> Option<join::JoinMaterial> {
        self.pending_join.lock().ok().and_then(|p| p.clone())
    }

    /// Joins the cluster through the member at `leader_api_addr` (its API address). A sealed
    /// node fetches the cluster's seal material and waits to be unsealed ([`join`]); an
    /// unsealed one, which holds the cluster's credentials, asks to be added at once.
    /// `ca_pem`: the CA certificates its API's TLS certificate is checked against (Vault's
    /// `leader_ca_cert`); empty for the platform's roots.
    pub async fn join(&self, leader_api_addr: &str, ca_pem: &str) -> Result<Joined, String> {
        if self.cluster.has_credentials() {
            return self.join_as_member(leader_api_addr, ca_pem).await.map(|()| Joined::Member);
        }
        let material = join::fetch(&self.api_client(ca_pem)?, leader_api_addr, &self.id, ca_pem).await?;
        if let Ok(mut p) = self.pending_join.lock() {
            *p = Some(material);
        }
        Ok(Joined::AwaitingUnseal)
    }

    /// With this node's credentials: asks the member at `leader_api_addr` where the leader's
    /// cluster listener is, then asks there to be added.
    pub async fn join_as_member(&self, leader_api_addr: &str, ca_pem: &str) -> Result<(), String> {
        let url = format!("{}/v1/sys/leader", leader_api_addr.trim_end_matches('/'));
        let answer: serde_json::Value = self
            .api_client(ca_pem)?
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let cluster_addr = answer
            .get("leader_cluster_address")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{leader_api_addr} knows no leader yet"))?;
        let within = cluster::MEMBERSHIP_TIMEOUT + Duration::from_secs(10);
        self.cluster.join(cluster_addr, within).await.map_err(|e| e.to_string())
    }

    /// A client for another node's API: trusting only `ca_pem` if given.
    fn api_client(&self, ca_pem: &str) -> Result<reqwest::Client, String> {
        if ca_pem.trim().is_empty() {
            return Ok(self.http.clone());
        }
        crate::auth::jwt_verify::http::client(ca_pem, false).map_err(|e| format!("leader_ca_cert: {e}"))
    }

    /// `retry_join`: until this node is part of a cluster or holds the seal material of
    /// one, tries each leader address in turn, with a pause between rounds.
    pub fn spawn_retry_join(self: &Arc<Self>) {
        if self.config.retry_join.is_empty() || self.cluster.is_initialized() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(500);
            while !node.cluster.is_initialized() && node.pending_join().is_none() {
                for stanza in &node.config.retry_join {
                    let addr = &stanza.leader_api_addr;
                    let joined = match stanza.ca_pem() {
                        Ok(ca) => node.join(addr, &ca).await,
                        Err(e) => Err(e),
                    };
                    match joined {
                        Ok(Joined::Member) => {
                            tracing::info!(leader = %addr, "joined the cluster");
                            return;
                        }
                        Ok(Joined::AwaitingUnseal) => {
                            tracing::info!(leader = %addr, "the cluster's seal material is here: the join completes at unseal");
                            return;
                        }
                        Err(e) => tracing::info!(leader = %addr, error = %e, "cannot join yet; retrying"),
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// The server's own routes on the cluster listener, behind its mutual TLS: standbys' access
/// events ([`remote_access`]) and the requests they forward ([`forward`]).
pub fn internal_routes(api: Arc<crate::http::Api>) -> axum::Router {
    use axum::extract::State;
    use axum::http::Request;
    type Api = Arc<crate::http::Api>;
    let access =
        |State(api): State<Api>, req: Request<axum::body::Body>| async move { remote_access::serve(&api, req).await };
    let forwarded = |State(api): State<Api>, req: Request<axum::body::Body>| async move {
        forward::serve_forwarded(api, req).await
    };
    axum::Router::new()
        .route(remote_access::PATH, axum::routing::any(access))
        .route(&format!("{}/{{*rest}}", forward::PREFIX), axum::routing::any(forwarded))
        .with_state(api)
}

fn commit_error(e: ClusterError) -> SequencerError {
    match e {
        ClusterError::NotLeader { .. } => SequencerError::NotLeader,
        other => SequencerError::Unavailable(other.to_string()),
    }
}

/// The leader's way to commit a batch: build the frame on the ledger's head (or on the last
/// frame still in flight), sign it, replicate it; done once applied here.
pub struct ClusterCommitter {
    pub node: Arc<Node>,
    /// The ledger key from `sys/init`, which every node holds: it signs until this node's
    /// own key is registered.
    pub init_key: Arc<LedgerKey>,
    /// This node's own key ([`node_key`]).
    pub node_key: Arc<LedgerKey>,
    /// Frames proposed and not yet settled, and the chain after the last of them.
    pending: std::sync::Mutex<Pending>,
}

/// Frames in flight; `chain` is what the next frame is built on while any is.
#[derive(Default)]
struct Pending {
    in_flight: usize,
    chain: Option<Box<ledger::ChainState>>,
}

/// Counts one frame in flight; settles it when dropped, whatever became of it. With no frame
/// left in flight the next one is built on the durable chain again, which also recovers
/// from a frame that failed (those built on it fail too).
struct InFlight<'a>(&'a std::sync::Mutex<Pending>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.chain = None;
        }
    }
}

impl ClusterCommitter {
    /// This node's key once the ledger has registered it, else the init key.
    fn signer(&self, ledger: &ledger::Ledger) -> &LedgerKey {
        let id = self.node_key.id();
        if ledger.keys().iter().any(|k| k.key.id() == id && k.is_active()) { &self.node_key } else { &self.init_key }
    }

    /// Registers this node's key in the ledger (a `KeyRegistered` event in a frame of its
    /// own, signed by a key the ledger already trusts), unless it is registered already.
    pub async fn register_node_key(&self) -> Result<(), SequencerError> {
        let ledger = self.node.applier.ledger().ok_or(SequencerError::Closed)?;
        let id = self.node_key.id();
        if ledger.keys().iter().any(|k| k.key.id() == id) {
            ledger.set_signer(self.node_key.clone());
            return Ok(());
        }
        let entry =
            Entry::register_key(&ledger.id(), &self.node_key, ledger::Actor::system(), crate::core::random_id());
        let prepared = ledger.prepare(vec![entry], &self.init_key)?;
        match self.node.propose(prepared.frame).await? {
            Outcome::Written { .. } => {
                tracing::info!(node = %self.node.id, key = %id, "this node's checkpoint key is registered");
                ledger.set_signer(self.node_key.clone());
                Ok(())
            }
            other => Err(SequencerError::Unavailable(format!("key registration: {other:?}"))),
        }
    }
}

impl ClusterCommitter {
    pub fn new(node: Arc<Node>, init_key: Arc<LedgerKey>, node_key: Arc<LedgerKey>) -> Self {
        ClusterCommitter { node, init_key, node_key, pending: Default::default() }
    }
}

impl Committer for ClusterCommitter {
    fn start(&self, entries: Vec<Entry>, folded: Folded) -> StartFuture<'_> {
        Box::pin(async move {
            let ledger = self.node.applier.ledger().ok_or(SequencerError::Closed)?;
            let (prepared, in_flight) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let signer = self.signer(&ledger);
                // Stamped with the time the batch was decided at, as the sequencer folded it.
                let prepared = if self.depth() > 1 {
                    // The next frame may be built before this one is durable: on its chain.
                    let (prepared, chain) = ledger.prepare_on(p.chain.as_deref(), entries, signer, folded.time)?;
                    let Some(chain) = chain else {
                        return Err(SequencerError::Unavailable("every node would refuse the frame".into()));
                    };
                    p.chain = Some(chain);
                    prepared
                } else {
                    ledger.prepare_at(entries, signer, folded.time)?
                };
                // The frame's time is later than the batch's if the last frame's was: then
                // the sequencer's fold is not the frame's, and the frame is folded on apply.
                if let Some(last) = prepared.receipts.last()
                    && prepared.receipts.iter().all(|r| r.time == folded.time)
                {
                    self.node.applier.expect_own_frame(last.seq, last.hash, folded.state);
                }
                p.in_flight += 1;
                (prepared, InFlight(&self.pending))
            };
            let proposal = self.node.cluster.submit(prepared.frame).await.map_err(commit_error)?;
            let receipts = prepared.receipts;
            let commit: CommitFuture<'_> = Box::pin(async move {
                let _in_flight = in_flight;
                let reply = proposal.outcome().await.map_err(commit_error)?;
                let outcome = Outcome::decode(&reply)
                    .ok_or_else(|| SequencerError::Unavailable("unreadable apply outcome".into()))?;
                match outcome {
                    Outcome::Written { last_seq } if receipts.last().map(|r| r.seq) == Some(last_seq) => Ok(receipts),
                    Outcome::Written { .. } | Outcome::AlreadyHeld => {
                        Err(SequencerError::Unavailable("the replicated frame landed elsewhere in the ledger".into()))
                    }
                    Outcome::Refused(reason) => Err(SequencerError::Unavailable(format!("frame refused: {reason}"))),
                }
            });
            Ok(commit)
        })
    }

    fn publishes(&self) -> bool {
        true
    }

    /// A round is `fsync`s on a majority and network hops, whatever the batch's size.
    fn lingers(&self) -> bool {
        true
    }

    /// `pipeline_depth` of the raft stanza: frames kept in flight, each one batch.
    fn depth(&self) -> usize {
        self.node.config.pipeline_depth.max(1)
    }
}

/// Runs the sequencer while this node leads, and stops it when it does not. The sequencer
/// starts only once everything committed is applied here, so it decides on the latest
/// state. Ends when aborted (at seal).
pub fn watch_leadership(
    node: Arc<Node>,
    sequencer: Sequencer,
    committer: Arc<ClusterCommitter>,
    state: Arc<ArcSwap<State>>,
    env: Arc<dyn Env + Send + Sync>,
    audit: Arc<ArcSwap<crate::config::AuditSettings>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leader = node.cluster.leader_changes();
        loop {
            let leads = leader.borrow_and_update().as_deref() == Some(node.id.as_str());
            if leads && !sequencer.is_running() {
                sequencer.starting();
                match node.cluster.ensure_leader_applied().await {
                    Ok(()) => {
                        // A new leader signs with its own key from its first batch on.
                        if let Err(e) = committer.register_node_key().await {
                            tracing::warn!(error = %e, "cannot register this node's key; signing with the cluster's");
                        }
                        tracing::info!(node = %node.id, "leading: the sequencer starts");
                        sequencer.run(committer.clone(), state.clone(), env.clone());
                        // The new leader brings in its configuration's audit devices, as
                        // OpenBao's active node does; a plan it cannot apply is logged.
                        let (seq, st, settings) = (sequencer.clone(), state.clone(), audit.load_full());
                        let actor = crate::audit_config::actor(Some(&node.id));
                        tokio::spawn(async move {
                            if let Err(e) = crate::audit_config::reconcile(&seq, &st, &settings, &actor).await {
                                tracing::error!(error = %e, "the configuration's audit devices were not applied");
                            }
                        });
                    }
                    Err(e) => {
                        sequencer.stop();
                        tracing::info!(error = %e, "not confirmed as leader");
                    }
                }
            } else if !leads && sequencer.is_running() {
                tracing::info!(node = %node.id, "no longer leading: the sequencer stops");
                sequencer.stop();
            }
            // Re-check now and then: a confirmation can fail while leadership stays.
            let _ = tokio::time::timeout(Duration::from_millis(500), leader.changed()).await;
        }
    })
}
