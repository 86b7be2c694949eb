//! The server's core: the barrier (sealed or unsealed), the published state, and — while
//! unsealed — the keys, the open ledger and the sequencer.
//!
//! Sealed, the server holds only what the ledger says in clear (seal configuration,
//! wrapped keys, the projections of everything else, whose secrets stay sealed). Unsealing
//! combines key shares into the unseal key, which must open the root key by authenticated
//! decryption; the root key opens the keyring, the ledger's signing key and the keyed-hash
//! key. Only then is the ledger opened for writing and the sequencer started.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use barrier::{
    HMAC_KEY_CONTEXT, KEYRING_CONTEXT, SIGNING_KEY_CONTEXT, WrongKey, open_keyring, open_root_key, shamir, unwrap_key,
};
use commands::sealing::{InitKeys, initial_events};
use commands::sequencer::{Sequencer, fold};
use commands::{Command, Effect, Env, Rejection, Request};
use ledger::seal::{KeyedHasher, Keyring, wrap};
use ledger::{Entry, EventDraft, KeySlot, Ledger, LedgerKey, Options, Sealed};
use projections::State;
use tokio::sync::RwLock;
use zeroize::Zeroizing;

/// Settings of the running server that rules need.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
    /// Logins per client address.
    pub login_rate_limit: crate::auth::ratelimit::RateLimit,
    /// Requests refused before authentication per client address (`crate::refusals`).
    pub unauthenticated_rate_limit: crate::auth::ratelimit::RateLimit,
    /// A cluster standby forwards reads too (`disable_standby_reads`).
    pub disable_standby_reads: bool,
}

/// What can go wrong at the barrier; every message is safe to show (no key material).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    #[error("Vault is not initialized")]
    NotInitialized,
    #[error("Vault is sealed")]
    Sealed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Shamir(#[from] shamir::ShamirError),
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::Error),
    /// The configuration's audit devices cannot be brought into the ledger (a declared
    /// device changed, or its file is refused): the server stays sealed, as OpenBao
    /// refuses to become active.
    #[error("audit devices in the configuration: {0}")]
    AuditConfig(String),
    #[error("{0}")]
    Internal(String),
}

impl From<Rejection> for CoreError {
    fn from(r: Rejection) -> Self {
        CoreError::Internal(r.to_string())
    }
}

impl From<WrongKey> for CoreError {
    fn from(_: WrongKey) -> Self {
        bad_key()
    }
}

/// The real environment of rules: wall clock, OS randomness, the keyring, keyed hashes.
pub struct RealEnv {
    keyring: ArcSwap<Keyring>,
    hasher: KeyedHasher,
}

impl RealEnv {
    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Keyed hash of an audit value (hex), as access events record request fields.
    pub fn audit_hash(&self, data: &[u8]) -> [u8; 32] {
        self.hasher.hash("audit", data).0
    }
}

impl Env for RealEnv {
    fn now(&self) -> u64 {
        now_nanos()
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), Rejection> {
        getrandom::fill(buf).map_err(|_| Rejection::Internal("operating system randomness unavailable".into()))
    }
    fn seal(&self, plaintext: &[u8], context: &[u8], slot: u8) -> Result<(Sealed, KeySlot), Rejection> {
        self.keyring.load().seal(plaintext, context, slot).map_err(|e| Rejection::Internal(e.to_string()))
    }
    fn open(&self, sealed: &Sealed, slot: &KeySlot, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Rejection> {
        self.keyring.load().open(sealed, slot, context).map_err(|e| Rejection::Internal(e.to_string()))
    }
    fn keyed_hash(&self, domain: &str, data: &[u8]) -> [u8; 32] {
        self.hasher.hash(domain, data).0
    }
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Everything that exists only while unsealed.
pub struct Unsealed {
    pub env: Arc<RealEnv>,
    pub ledger: Arc<Ledger>,
    pub sequencer: Sequencer,
    /// Open database connection pools (they hold root passwords: dropped at seal).
    pub databases: crate::engines::database::runtime::Pools,
    root_key: Zeroizing<[u8; 32]>,
    /// Issues and checks `X-Vault-Index` headers (keyed from the root key).
    pub index: crate::cluster::index::Signer,
    /// The audit devices' tailers (stopped when this is dropped, at seal).
    _audit: crate::audit::Supervisor,
    /// In a cluster: the task that runs the sequencer while this node leads.
    leadership: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Unsealed {
    fn drop(&mut self) {
        if let Some(task) = self.leadership.take() {
            task.abort();
        }
        self.sequencer.stop();
    }
}

impl Unsealed {
    /// A key for one purpose (`label`), derived from the root key: every unsealed node of
    /// a cluster derives the same, and nothing else can. Never logged.
    pub fn derived_key(&self, label: &str) -> Zeroizing<[u8; 32]> {
        crate::cluster::index::derive_key(&self.root_key, label)
    }

    /// Submits a command as the server itself (no caller, no access event: expiries,
    /// revocations, rotations) and waits until it is durable.
    pub async fn submit_as_system(
        &self,
        command: Command,
    ) -> Result<commands::sequencer::Committed, commands::sequencer::SequencerError> {
        let request = Request {
            caller: None,
            actor: ledger::Actor::system(),
            request_id: random_id(),
            access: None,
            command: Some(command),
        };
        self.sequencer.submit(request).await
    }
}

/// Shares collected towards an unseal.
#[derive(Default)]
struct UnsealProgress {
    shares: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

/// The seal-status object (`sys/seal-status`, `sys/unseal`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SealStatus {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub initialized: bool,
    pub sealed: bool,
    pub t: u8,
    pub n: u8,
    pub progress: usize,
    pub nonce: String,
    pub recovery_seal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_seal_type: Option<&'static str>,
    pub version: &'static str,
    pub build_date: &'static str,
    pub migration: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub storage_type: &'static str,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The core of one server.
pub struct Core {
    data_dir: PathBuf,
    pub state: Arc<ArcSwap<State>>,
    barrier: RwLock<Option<Arc<Unsealed>>>,
    unseal: Mutex<UnsealProgress>,
    pub settings: Settings,
    /// Held while a projection snapshot is being written.
    snapshotting: Mutex<()>,
    /// Set for `storage "raft"` once the cluster side has started.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Node>>,
    /// The auto-unseal key service (`seal` stanza), set once at start.
    auto_seal: std::sync::OnceLock<Arc<crate::seal::AutoSeal>>,
    /// The configuration's audit settings (replaced at SIGHUP); none in dev mode.
    audit: Arc<ArcSwap<crate::config::AuditSettings>>,
}

fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// Folds every durable event of the ledger in `dir` into a fresh state.
pub fn replay(dir: &Path) -> Result<State, CoreError> {
    Ok(projections::replay::replay(dir, &mut |_, _| {}).map_err(replay_error)?.state)
}

fn replay_error(e: projections::replay::ReplayError) -> CoreError {
    match e {
        projections::replay::ReplayError::Ledger(e) => CoreError::Ledger(e),
        e => CoreError::Internal(e.to_string()),
    }
}

fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(projections::snapshot::SNAPSHOTS_DIR)
}

/// A snapshot is written once this many events were folded since the last one (at
/// startup, by the periodic task, and at shutdown only if at least one event is new).
pub const SNAPSHOT_EVERY: u64 = 1_000_000;

/// How long a joining node's unseal waits for the cluster's ledger to reach it.
const JOIN_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The state at startup: the newest snapshot that matches the ledger plus the events after
/// it, or a full replay. A progress bar shows on a terminal.
fn rebuild_at_start(data_dir: &Path) -> Result<projections::replay::Replayed, CoreError> {
    let started = std::time::Instant::now();
    let mut bar = ::replay::progress::bytes_bar("replaying the ledger");
    let r = projections::replay::rebuild(&ledger_dir(data_dir), &snapshot_dir(data_dir), &mut |done, total| {
        if let Some(b) = bar.as_mut() {
            b(done, total)
        }
    })
    .map_err(replay_error)?;
    if r.state.last_seq > 0 {
        tracing::info!(
            events = r.state.last_seq,
            folded = r.folded,
            snapshot = r.from_snapshot.map(|m| m.last_seq).unwrap_or(0),
            ms = started.elapsed().as_millis() as u64,
            "state rebuilt from the ledger"
        );
    }
    Ok(r)
}

impl Core {
    /// Opens the core on a data directory, replaying whatever ledger is there. Sealed.
    pub fn open(data_dir: &Path, settings: Settings) -> Result<Core, CoreError> {
        ledger::fs::create_private_dir_all(data_dir)
            .map_err(|e| CoreError::Internal(format!("cannot create {}: {e}", data_dir.display())))?;
        // The data directory holds sealed secrets, keyed hashes and the ledger: nobody but the
        // server's user has any business listing or reading it.
        match ledger::fs::tighten_dir(data_dir) {
            Ok(true) => tracing::warn!(
                dir = %data_dir.display(),
                "the data directory was open to other users; its mode is now 0700"
            ),
            Ok(false) => {}
            Err(e) => {
                return Err(CoreError::Internal(format!("cannot restrict access to {}: {e}", data_dir.display())));
            }
        }
        let rebuilt = rebuild_at_start(data_dir)?;
        if rebuilt.folded >= SNAPSHOT_EVERY
            && let Some(meta) = rebuilt.meta()
        {
            // Off the startup path: the clone is O(1) and the write runs on its own thread.
            let (dir, state) = (snapshot_dir(data_dir), rebuilt.state.clone());
            std::thread::spawn(move || match projections::snapshot::write(&dir, &state, &meta) {
                Ok(path) => tracing::info!(path = %path.display(), "projection snapshot written"),
                Err(e) => tracing::warn!(error = %e, "cannot write a projection snapshot"),
            });
        }
        let state = rebuilt.state;
        Ok(Core {
            data_dir: data_dir.to_path_buf(),
            state: Arc::new(ArcSwap::from_pointee(state)),
            barrier: RwLock::new(None),
            unseal: Mutex::new(UnsealProgress::default()),
            settings,
            snapshotting: Mutex::new(()),
            cluster: std::sync::OnceLock::new(),
            auto_seal: std::sync::OnceLock::new(),
            audit: Arc::new(ArcSwap::from_pointee(crate::config::AuditSettings::default())),
        })
    }

    /// The audit settings in force: declared devices, and what `sys/audit` may do.
    pub fn audit_settings(&self) -> Arc<crate::config::AuditSettings> {
        self.audit.load_full()
    }

    /// Sets the audit settings (at start, before any unseal).
    pub fn set_audit_settings(&self, settings: crate::config::AuditSettings) {
        self.audit.store(Arc::new(settings));
    }

    /// SIGHUP: new audit settings, and the declared devices reconciled at once where the
    /// sequencer runs (a single node, or the leader); elsewhere at the next unseal or
    /// leadership. Errors are logged: the server keeps running with the devices it has.
    pub async fn reload_audit(&self, settings: crate::config::AuditSettings) {
        self.set_audit_settings(settings);
        let Some(unsealed) = self.unsealed().await else { return };
        if !unsealed.sequencer.is_running() {
            return;
        }
        let actor = crate::audit_config::actor(self.cluster().map(|n| n.id.as_str()));
        let settings = self.audit_settings();
        if let Err(e) = crate::audit_config::reconcile(&unsealed.sequencer, &self.state, &settings, &actor).await {
            tracing::error!(error = %e, "SIGHUP: the configuration's audit devices were not applied");
        }
    }

    /// The cluster side, for `storage "raft"`.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Node>> {
        self.cluster.get()
    }

    /// Starts this node's Raft side (`storage "raft"`): the local ledger becomes a replica
    /// fed by the cluster, and a node that is not part of a cluster yet tries its
    /// `retry_join` addresses. A sealed node is cut off from the others (no cluster
    /// credentials) and does not stand for election.
    pub async fn start_cluster(
        &self,
        raft: &crate::config::RaftConfig,
        api_addr: String,
        cluster_addr: String,
    ) -> Result<(), CoreError> {
        let dir = ledger_dir(&self.data_dir);
        let state = self.state.clone();
        let applier = tokio::task::spawn_blocking(move || crate::cluster::LedgerApplier::open(dir, state))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))??;
        let config =
            cluster::ClusterConfig::new(raft.node_id.clone(), self.data_dir.join("raft"), api_addr, cluster_addr);
        let started = cluster::Cluster::start(config, Arc::new(applier.clone()))
            .await
            .map_err(|e| CoreError::Internal(format!("cannot start the cluster: {e}")))?;
        started.set_electable(false).await;
        let node = Arc::new(crate::cluster::Node {
            id: raft.node_id.clone(),
            cluster: started,
            applier,
            config: raft.clone(),
            http: reqwest::Client::new(),
            pending_join: Default::default(),
        });
        node.spawn_retry_join();
        self.cluster.set(node).map_err(|_| CoreError::Internal("the cluster was already started".into()))
    }

    /// Stops the Raft side (at shutdown).
    pub async fn stop_cluster(&self) {
        if let Some(node) = self.cluster() {
            node.cluster.shutdown().await;
        }
    }

    /// Writes a projection snapshot if at least `min_new` events were added since the
    /// newest one. The snapshot is folded from the ledger (the newest snapshot plus the
    /// events after it), not taken from the live state: the live fold stamps the
    /// sequencer's clock where the ledger stamps the writer's, and a snapshot must be
    /// exactly what replay gives. Blocking; one at a time. Returns the seq written.
    pub fn refresh_snapshot(&self, min_new: u64) -> Result<Option<u64>, CoreError> {
        let _one = self.snapshotting.lock().map_err(|_| CoreError::Internal("snapshot lock poisoned".into()))?;
        let dir = snapshot_dir(&self.data_dir);
        let newest = projections::snapshot::list(&dir).first().map(|(seq, _)| *seq).unwrap_or(0);
        let published = self.state.load().last_seq;
        if published < newest.saturating_add(min_new.max(1)) {
            return Ok(None);
        }
        let r =
            projections::replay::rebuild(&ledger_dir(&self.data_dir), &dir, &mut |_, _| {}).map_err(replay_error)?;
        let Some(meta) = r.meta() else { return Ok(None) };
        if meta.last_seq <= newest && r.from_snapshot.is_some() {
            return Ok(None);
        }
        projections::snapshot::write(&dir, &r.state, &meta).map_err(|e| CoreError::Internal(e.to_string()))?;
        Ok(Some(meta.last_seq))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn is_initialized(&self) -> bool {
        self.state.load().seal.is_initialized()
    }

    /// Configures auto-unseal (once, at start, before any init or unseal).
    pub fn set_auto_seal(&self, seal: crate::seal::AutoSeal) -> Result<(), CoreError> {
        self.auto_seal.set(Arc::new(seal)).map_err(|_| CoreError::Internal("auto-unseal is already configured".into()))
    }

    /// The configured auto-unseal type (`"transit"`), if any.
    pub fn auto_seal_kind(&self) -> Option<&'static str> {
        self.auto_seal.get().map(|s| s.kind())
    }

    /// Unseals through the auto-unseal key service, with no human: `Ok(true)` once unsealed
    /// (also if it already was), `Ok(false)` when there is nothing to do (no seal configured,
    /// not initialized, or initialized with key shares only). The server calls it at start and
    /// after init; a cluster node calls it once its replicated ledger is initialized.
    pub async fn auto_unseal(&self) -> Result<bool, CoreError> {
        let Some(seal) = self.auto_seal.get() else { return Ok(false) };
        if self.barrier.read().await.is_some() {
            return Ok(true);
        }
        let state = self.state.load_full();
        if state.seal.init.is_none() {
            // A joining node: the cluster's seal material came with the join.
            let Some(recorded) = self.join_material().and_then(|m| m.auto_sealed) else { return Ok(false) };
            let root_key = seal.unwrap(&recorded).await.map_err(|e| CoreError::Internal(e.to_string()))?;
            self.complete_join(root_key).await?;
            return Ok(true);
        }
        let Some(recorded) = state.seal.auto_sealed.as_ref() else {
            tracing::warn!(
                "the barrier was initialized with key shares: unseal it with them (seal migration is not supported)"
            );
            return Ok(false);
        };
        let root_key = seal.unwrap(recorded).await.map_err(|e| CoreError::Internal(e.to_string()))?;
        self.unseal_with_root_key(root_key, false).await?;
        Ok(true)
    }

    /// The unsealed parts, or `None` while sealed.
    pub async fn unsealed(&self) -> Option<Arc<Unsealed>> {
        self.barrier.read().await.clone()
    }

    pub fn seal_status(&self, unsealed: bool) -> SealStatus {
        let state = self.state.load();
        let init = state.seal.init.as_ref();
        let progress = self.unseal.lock().map(|p| (p.shares.len(), p.nonce.clone())).unwrap_or_default();
        let auto = self.auto_seal_kind().or(state.seal.auto_sealed.as_ref().map(|_| "transit"));
        // A joining node shows the cluster's seal configuration, as Vault's does.
        let shares = self.shares_config(init);
        let (t, n) = shares.unwrap_or((0, 0));
        SealStatus {
            kind: auto.unwrap_or("shamir"),
            initialized: shares.is_some(),
            sealed: !unsealed,
            t,
            n,
            progress: progress.0,
            nonce: progress.1,
            recovery_seal: auto.is_some(),
            recovery_seal_type: auto.map(|_| "shamir"),
            version: VERSION,
            build_date: "",
            migration: false,
            cluster_name: (unsealed && init.is_some()).then(|| cluster_name(init)),
            cluster_id: if unsealed { init.map(|i| i.cluster_id.clone()) } else { None },
            storage_type: if self.cluster().is_some() { "raft" } else { "sled" },
        }
    }

    /// `sys/init`: creates the ledger with its genesis and the initial events. The server
    /// stays sealed. Returns the unseal key shares and the root token, shown once. With an
    /// auto-unseal key service (not in dev mode), the root key is also wrapped by it
    /// (`RootKeyAutoSealed`) and the shares are recovery shares.
    pub async fn init(
        &self,
        shares: usize,
        threshold: usize,
        root_token_id: Option<&str>,
        dev: bool,
    ) -> Result<(Vec<Zeroizing<Vec<u8>>>, String, Zeroizing<[u8; 32]>), CoreError> {
        let _guard = self.barrier.write().await;
        if self.is_initialized() {
            return Err(CoreError::AlreadyInitialized);
        }
        if self.join_material().is_some() {
            return Err(CoreError::BadRequest(
                "this node is joining a cluster: unseal it with the cluster's keys instead".into(),
            ));
        }
        // Bad input changes nothing: check it before touching the disk.
        shamir::check_config(shares, threshold)?;
        if let Some(node) = self.cluster() {
            return self.init_cluster(node, shares, threshold, root_token_id, dev).await;
        }
        let dir = ledger_dir(&self.data_dir);
        if Ledger::exists(&dir) {
            // A ledger without an Initialized event: an init that stopped between creating
            // the ledger and committing its first events. It holds nothing but a genesis
            // whose keys died with that process; keep it aside and start over.
            let aside = self.data_dir.join(format!("ledger.incomplete-init-{}", now_nanos()));
            tracing::warn!(from = %dir.display(), to = %aside.display(), "moving aside a ledger from an interrupted init");
            std::fs::rename(&dir, &aside)
                .map_err(|e| CoreError::Internal(format!("cannot move aside {}: {e}", dir.display())))?;
        }
        let InitDrafts { keys, drafts, root_token, signing } =
            self.init_drafts(shares, threshold, root_token_id, dev).await?;
        let entries = initial_entries(&drafts)?;
        let receipts = {
            let l = tokio::task::spawn_blocking(move || Ledger::create(&dir, signing, Options::default()))
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))??;
            let r = l.commit(entries).await?;
            tokio::task::spawn_blocking(move || l.close()).await.map_err(|e| CoreError::Internal(e.to_string()))??;
            r
        };
        let mut state = (**self.state.load()).clone();
        let effects: Vec<Effect> = drafts.into_iter().map(Effect::Event).collect();
        let first = receipts.first().map(|r| r.seq).unwrap_or(2);
        fold(&mut state, &effects, first, now_nanos(), &ledger::Actor::system(), [0; 16]);
        self.state.store(Arc::new(state));
        let shares = shamir::split(&keys.unseal_key, shares, threshold)?;
        Ok((shares, root_token, keys.unseal_key))
    }

    /// New keys and the initial events. With an auto-unseal key service (not in dev mode),
    /// the root key is also wrapped by it (`RootKeyAutoSealed`).
    async fn init_drafts(
        &self,
        shares: usize,
        threshold: usize,
        root_token_id: Option<&str>,
        dev: bool,
    ) -> Result<InitDrafts, CoreError> {
        let keys = InitKeys::generate()?;
        let auto_sealed = match self.auto_seal.get().filter(|_| !dev) {
            Some(seal) => Some(seal.wrap(&keys.root_key).await.map_err(|e| CoreError::Internal(e.to_string()))?),
            None => None,
        };
        let env = env_from(&keys.keyring_key, 1, &keys.hmac_key);
        let (mut drafts, root_token) = initial_events(
            u8::try_from(shares).unwrap_or(u8::MAX),
            u8::try_from(threshold).unwrap_or(u8::MAX),
            &keys,
            root_token_id,
            dev,
            &env,
        )?;
        if let Some(e) = auto_sealed {
            drafts.insert(1, commands::Drafted { event: migrations::Event::RootKeyAutoSealed(e), slots: Vec::new() });
        }
        let signing = LedgerKey::from_seed(&keys.signing_seed)
            .ok_or_else(|| CoreError::Internal("generated signing key is weak".into()))?;
        Ok(InitDrafts { keys, drafts, root_token, signing })
    }

    /// `sys/init` on a cluster node: it bootstraps a cluster of itself if it is in none,
    /// and the genesis and initial events go through the cluster like any frame.
    async fn init_cluster(
        &self,
        node: &Arc<crate::cluster::Node>,
        shares: usize,
        threshold: usize,
        root_token_id: Option<&str>,
        dev: bool,
    ) -> Result<(Vec<Zeroizing<Vec<u8>>>, String, Zeroizing<[u8; 32]>), CoreError> {
        let unavailable = |e: String| CoreError::Internal(format!("cluster: {e}"));
        if node.applier.ledger().is_some() {
            return Err(CoreError::Internal(
                "this cluster's ledger exists but holds no initialization: an earlier init was interrupted; start the cluster afresh".into(),
            ));
        }
        if !node.cluster.is_initialized() {
            node.cluster.bootstrap().await.map_err(|e| unavailable(e.to_string()))?;
        }
        node.cluster.set_electable(true).await;
        if !node.wait_leader(std::time::Duration::from_secs(10)).await {
            return Err(CoreError::Internal("this node is not the cluster's leader; initialize the leader".into()));
        }
        node.cluster.ensure_leader_applied().await.map_err(|e| unavailable(e.to_string()))?;
        let InitDrafts { keys, drafts, root_token, signing } =
            self.init_drafts(shares, threshold, root_token_id, dev).await?;
        let entries = initial_entries(&drafts)?;
        let genesis = Ledger::genesis_frame(&signing, &Options::default())?;
        let proposed = |o: crate::cluster::Outcome| match o {
            crate::cluster::Outcome::Written { .. } => Ok(()),
            other => Err(CoreError::Internal(format!("the cluster did not take the frame: {other:?}"))),
        };
        proposed(node.propose(genesis).await.map_err(|e| unavailable(e.to_string()))?)?;
        let ledger = node.applier.ledger().ok_or_else(|| CoreError::Internal("the genesis was not applied".into()))?;
        let prepared = ledger.prepare(entries, &signing)?;
        proposed(node.propose(prepared.frame).await.map_err(|e| unavailable(e.to_string()))?)?;
        let shares = shamir::split(&keys.unseal_key, shares, threshold)?;
        Ok((shares, root_token, keys.unseal_key))
    }

    /// One `sys/unseal` step. Returns whether the barrier is now unsealed.
    pub async fn unseal_step(&self, share: Option<Zeroizing<Vec<u8>>>, reset: bool) -> Result<bool, CoreError> {
        let state = self.state.load_full();
        // A node joining a cluster unseals with the cluster's material until the cluster's
        // ledger has reached it.
        let joining = if state.seal.init.is_none() { self.join_material() } else { None };
        let (threshold, _) = self.shares_config(state.seal.init.as_ref()).ok_or(CoreError::NotInitialized)?;
        if self.barrier.read().await.is_some() {
            return Ok(true);
        }
        let ready = {
            let mut p = self.unseal.lock().map_err(|_| CoreError::Internal("unseal state poisoned".into()))?;
            if reset {
                *p = UnsealProgress::default();
                return Ok(false);
            }
            let Some(share) = share else { return Ok(false) };
            if share.len() < 16 {
                return Err(CoreError::BadRequest("invalid key: key is shorter than minimum 16 bytes".into()));
            }
            if p.shares.is_empty() {
                p.nonce = uuid::Uuid::new_v4().to_string();
            }
            if !p.shares.contains(&share) {
                p.shares.push(share);
            }
            if p.shares.len() < usize::from(threshold) {
                return Ok(false);
            }
            std::mem::take(&mut *p)
        };
        let unseal_key = shamir::combine(&ready.shares, usize::from(threshold)).map_err(|_| bad_key())?;
        match joining {
            Some(m) => {
                let root_key = open_root_key(&unseal_key, &m.wrapped_root_key)?;
                self.complete_join(root_key).await?;
            }
            None => self.unseal_with(&unseal_key, false).await?,
        }
        Ok(true)
    }

    /// Initialized, or joining a cluster whose seal material is here: what `sys/init`,
    /// `sys/health` and `sys/seal-status` show (as Vault's joining node does), and when
    /// `sys/unseal` takes keys.
    pub fn shows_initialized(&self) -> bool {
        self.is_initialized() || self.join_material().is_some()
    }

    /// `(threshold, shares)` of the key shares that unseal this node: the ledger's, or a
    /// pending join's (the cluster's) before the ledger has reached it; `None` for neither.
    fn shares_config(&self, init: Option<&migrations::Initialized>) -> Option<(u8, u8)> {
        match init {
            Some(i) => Some((i.secret_threshold, i.secret_shares)),
            None => self.join_material().map(|m| (m.secret_threshold, m.secret_shares)),
        }
    }

    /// The seal material of a join waiting for this node's unseal.
    pub fn join_material(&self) -> Option<crate::cluster::join::JoinMaterial> {
        self.cluster().and_then(|n| n.pending_join())
    }

    /// Completes a join with the cluster's root key, opened from the join's material: takes
    /// the cluster's credentials, asks to be added, waits (bounded) for the cluster's
    /// ledger to arrive, and unseals from it. On a failure the node stays sealed, without
    /// credentials, and the join can be completed by unsealing again.
    async fn complete_join(&self, root_key: Zeroizing<[u8; 32]>) -> Result<(), CoreError> {
        let node = self.cluster().ok_or(CoreError::NotInitialized)?;
        let material = node.pending_join().ok_or(CoreError::NotInitialized)?;
        let unavailable = |e: String| CoreError::Internal(format!("cannot join the cluster: {e}"));
        let secret = crate::cluster::index::derive_key(&root_key, crate::cluster::join::CLUSTER_TLS_LABEL);
        node.cluster.set_credentials(Some(&secret)).map_err(|e| unavailable(e.to_string()))?;
        // The member that gave the material first, then the `retry_join` addresses.
        let mut members = vec![(material.leader_api_addr.clone(), Ok(material.leader_ca_cert.clone()))];
        for stanza in &node.config.retry_join {
            if stanza.leader_api_addr.trim_end_matches('/') != material.leader_api_addr {
                members.push((stanza.leader_api_addr.clone(), stanza.ca_pem()));
            }
        }
        let mut failures = Vec::new();
        for (member, ca) in &members {
            let joined = match ca {
                Ok(ca) => node.join_as_member(member, ca).await,
                Err(e) => Err(e.clone()),
            };
            match joined {
                Ok(()) => {
                    failures.clear();
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            let _ = node.cluster.set_credentials(None);
            return Err(unavailable(failures.join("; ")));
        }
        tracing::info!(leader = %material.leader_api_addr, "joined the cluster; waiting for its ledger");
        let deadline = tokio::time::Instant::now() + JOIN_REPLICATION_TIMEOUT;
        while !self.is_initialized() {
            if tokio::time::Instant::now() >= deadline {
                let _ = node.cluster.set_credentials(None);
                return Err(unavailable(format!(
                    "the cluster's ledger did not arrive within {JOIN_REPLICATION_TIMEOUT:?}; unseal again to retry"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.unseal_with_root_key(root_key, false).await?;
        if let Ok(mut p) = node.pending_join.lock() {
            *p = None;
        }
        Ok(())
    }

    /// Unseals with the unseal key itself (after combining shares, or in dev mode).
    pub async fn unseal_with(&self, unseal_key: &[u8; 32], dev: bool) -> Result<(), CoreError> {
        let init = self.state.load().seal.init.clone().ok_or(CoreError::NotInitialized)?;
        let root_key = open_root_key(unseal_key, &init.wrapped_root_key)?;
        self.unseal_with_root_key(root_key, dev).await
    }

    /// Unseals with the root key (opened by the unseal key or by the auto-unseal service).
    async fn unseal_with_root_key(&self, root_key: Zeroizing<[u8; 32]>, dev: bool) -> Result<(), CoreError> {
        let mut barrier = self.barrier.write().await;
        if barrier.is_some() {
            return Ok(());
        }
        let state = self.state.load_full();
        let init = state.seal.init.clone().ok_or(CoreError::NotInitialized)?;
        let keyring = open_keyring(&root_key, state.seal.wrapped_terms())?;
        let hmac_key = unwrap_key(&root_key, &init.wrapped_hmac_key, HMAC_KEY_CONTEXT)?;
        let seed = unwrap_key(&root_key, &init.wrapped_signing_key, SIGNING_KEY_CONTEXT)?;
        let signing =
            LedgerKey::from_seed(&seed).ok_or_else(|| CoreError::Internal("stored signing key is weak".into()))?;
        if let Some(node) = self.cluster() {
            let data_dir = self.data_dir.clone();
            let (id, rk) = (node.id.clone(), Zeroizing::new(*root_key));
            let node_key =
                tokio::task::spawn_blocking(move || crate::cluster::node_key::load_or_create(&data_dir, &id, &rk))
                    .await
                    .map_err(|e| CoreError::Internal(e.to_string()))?
                    .map_err(CoreError::Internal)?;
            let secret = crate::cluster::index::derive_key(&root_key, crate::cluster::join::CLUSTER_TLS_LABEL);
            let unsealed = self.unseal_node(node, signing, node_key, keyring, &hmac_key, root_key)?;
            node.cluster.set_credentials(Some(&secret)).map_err(|e| CoreError::Internal(e.to_string()))?;
            *barrier = Some(unsealed.clone());
            drop(barrier);
            node.cluster.set_electable(true).await;
            if node.is_leader() {
                // Who unsealed is recorded by the leader (a standby's unseal is in its log).
                // In the background: a node restarted as a stale leader must not hold the
                // unseal answer until its proposal times out.
                let u = unsealed.clone();
                tokio::spawn(async move {
                    wait_running(&u.sequencer).await;
                    if let Err(e) = u.submit_as_system(Command::RecordUnsealed { dev }).await {
                        tracing::warn!(error = %e, "could not record the unseal in the ledger");
                    }
                });
            }
            return Ok(());
        }
        let dir = ledger_dir(&self.data_dir);
        let ledger = tokio::task::spawn_blocking(move || Ledger::open(&dir, signing, Options::default()))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))??;
        if ledger.durable().last_seq != state.last_seq {
            // Recovery changed what is durable (it cut a torn tail): read the state again.
            let fresh = replay(&ledger_dir(&self.data_dir))?;
            self.state.store(Arc::new(fresh));
        }
        // The configuration's audit devices are checked before anything is recorded: a
        // plan that cannot be applied keeps the server sealed.
        let audit_changes =
            crate::audit_config::plan(&self.state.load(), &self.audit_settings()).map_err(CoreError::AuditConfig)?;
        let checked = audit_changes.clone();
        tokio::task::spawn_blocking(move || crate::audit_config::check_files(&checked))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .map_err(CoreError::AuditConfig)?;
        for (term, count) in ledger.wraps() {
            keyring.set_wrap_count(term, count);
        }
        let env = Arc::new(RealEnv { keyring: ArcSwap::from_pointee(keyring), hasher: KeyedHasher::derive(&hmac_key) });
        let ledger = Arc::new(ledger);
        let sequencer = Sequencer::start(ledger.clone(), self.state.clone(), env.clone());
        let audit = crate::audit::start(ledger.clone(), self.state.clone(), env.clone(), &self.data_dir);
        let index = crate::cluster::index::Signer::new(&root_key, &ledger.id());
        let unsealed = Arc::new(Unsealed {
            env,
            ledger,
            sequencer,
            databases: Default::default(),
            root_key,
            index,
            _audit: audit,
            leadership: None,
        });
        unsealed
            .submit_as_system(Command::RecordUnsealed { dev })
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        crate::audit_config::apply(&unsealed.sequencer, &crate::audit_config::actor(None), audit_changes)
            .await
            .map_err(CoreError::AuditConfig)?;
        *barrier = Some(unsealed);
        Ok(())
    }

    /// The unsealed parts of a cluster node: its replica ledger (already open), the keys,
    /// and a sequencer that runs while the node leads.
    fn unseal_node(
        &self,
        node: &Arc<crate::cluster::Node>,
        signing: LedgerKey,
        node_key: LedgerKey,
        keyring: Keyring,
        hmac_key: &[u8; 32],
        root_key: Zeroizing<[u8; 32]>,
    ) -> Result<Arc<Unsealed>, CoreError> {
        let ledger = node.applier.ledger().ok_or(CoreError::NotInitialized)?;
        for (term, count) in ledger.wraps() {
            keyring.set_wrap_count(term, count);
        }
        let node_key = Arc::new(node_key);
        let signing = Arc::new(signing);
        // Notes are signed by the init key until this node's own is registered (as leader).
        ledger.set_signer(signing.clone());
        let env = Arc::new(RealEnv { keyring: ArcSwap::from_pointee(keyring), hasher: KeyedHasher::derive(hmac_key) });
        let sequencer = Sequencer::default();
        // While this node stands by, its reads' access events are sequenced by the leader.
        sequencer.set_remote(Arc::new(crate::cluster::remote_access::RemoteAccessClient::new(
            node.clone(),
            &root_key,
            self.state.clone(),
        )));
        let committer = Arc::new(crate::cluster::ClusterCommitter::new(node.clone(), signing, node_key));
        let leadership = crate::cluster::watch_leadership(
            node.clone(),
            sequencer.clone(),
            committer,
            self.state.clone(),
            env.clone(),
            self.audit.clone(),
        );
        let audit = crate::audit::start(ledger.clone(), self.state.clone(), env.clone(), &self.data_dir);
        let index = crate::cluster::index::Signer::new(&root_key, &ledger.id());
        Ok(Arc::new(Unsealed {
            env,
            ledger,
            sequencer,
            databases: Default::default(),
            root_key,
            index,
            _audit: audit,
            leadership: Some(leadership),
        }))
    }

    /// Seals: records who sealed, stops the sequencer, closes the ledger, drops every key.
    pub async fn seal(&self, actor: ledger::Actor) -> Result<(), CoreError> {
        let mut barrier = self.barrier.write().await;
        let Some(unsealed) = barrier.take() else { return Ok(()) };
        let request = Request {
            caller: None,
            actor,
            request_id: random_id(),
            access: None,
            command: Some(Command::RecordSealed),
        };
        if let Err(e) = unsealed.sequencer.submit(request).await {
            tracing::warn!(error = %e, "could not record the seal in the ledger");
        }
        if let Some(node) = self.cluster() {
            // A sealed node cannot sign: it hands leadership on and stops standing. Then it
            // drops its cluster credentials: cut off until unsealed again.
            node.cluster.set_electable(false).await;
            let handed_on = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            while node.is_leader() && tokio::time::Instant::now() < handed_on {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if let Err(e) = node.cluster.set_credentials(None) {
                tracing::warn!(error = %e, "cannot drop the cluster credentials");
            }
        }
        drop(unsealed);
        if let Ok(mut p) = self.unseal.lock() {
            *p = UnsealProgress::default();
        }
        Ok(())
    }

    /// Rotates the keyring: a new term, wrapped under the root key, recorded by event.
    pub async fn rotate_keyring(
        &self,
        unsealed: &Unsealed,
        caller: commands::Caller,
        actor: ledger::Actor,
        access: migrations::Access,
    ) -> Result<commands::sequencer::Committed, CoreError> {
        let key = ledger::seal::random_key().map_err(|e| CoreError::Internal(e.to_string()))?;
        let wrapped =
            wrap(&unsealed.root_key, &*key, KEYRING_CONTEXT).map_err(|e| CoreError::Internal(e.to_string()))?;
        let request = Request {
            caller: Some(caller),
            actor,
            request_id: random_id(),
            access: Some(access),
            command: Some(Command::RotateKeyring { wrapped_key: wrapped }),
        };
        let committed = unsealed.sequencer.submit(request).await.map_err(|e| CoreError::Internal(e.to_string()))?;
        if committed.result.is_ok() {
            let next = open_keyring(&unsealed.root_key, committed.state.seal.wrapped_terms())?;
            let current = unsealed.env.keyring.load();
            for t in next.terms() {
                next.set_wrap_count(t, current.wrap_count(t));
            }
            unsealed.env.keyring.store(Arc::new(next));
        }
        Ok(committed)
    }
}

/// What `sys/init` makes before anything is written.
struct InitDrafts {
    keys: InitKeys,
    drafts: Vec<commands::Drafted>,
    root_token: String,
    signing: LedgerKey,
}

/// The initial events as ledger entries (system actor, no request).
fn initial_entries(drafts: &[commands::Drafted]) -> Result<Vec<Entry>, CoreError> {
    let mut entries = Vec::with_capacity(drafts.len());
    for d in drafts {
        let (kind, kind_version, body) = d.event.encode().map_err(|e| CoreError::Internal(e.to_string()))?;
        entries.push(Entry::Event(EventDraft {
            kind,
            kind_version,
            request_id: [0; 16],
            actor: ledger::Actor::system(),
            body,
            slots: d.slots.clone(),
        }));
    }
    Ok(entries)
}

fn env_from(keyring_key: &[u8; 32], term: u32, hmac_key: &[u8; 32]) -> RealEnv {
    let mut keyring = Keyring::new();
    keyring.insert(term, keyring_key);
    RealEnv { keyring: ArcSwap::from_pointee(keyring), hasher: KeyedHasher::derive(hmac_key) }
}

/// Waits (bounded) for a new leader's sequencer to start.
async fn wait_running(sequencer: &Sequencer) {
    for _ in 0..100 {
        if sequencer.is_running() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn bad_key() -> CoreError {
    CoreError::BadRequest("unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: cipher: message authentication failed".into())
}

/// `vault-cluster-<8 hex>` derived from the cluster id.
fn cluster_name(init: Option<&migrations::Initialized>) -> String {
    let id = init.map(|i| i.cluster_id.replace('-', "")).unwrap_or_default();
    format!("vault-cluster-{}", &id[..8.min(id.len())])
}

/// A random request id (UUID bytes).
pub fn random_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            default_lease_ttl: 3600,
            max_lease_ttl: 7200,
            login_rate_limit: crate::auth::ratelimit::RateLimit::LOGINS,
            unauthenticated_rate_limit: crate::auth::ratelimit::RateLimit::UNAUTHENTICATED,
            disable_standby_reads: false,
        }
    }

    #[tokio::test]
    async fn an_interrupted_init_is_moved_aside_and_init_runs_again() {
        let dir = tempfile::tempdir().expect("tmp");
        // What a crash right after creating the ledger leaves: a genesis and nothing else.
        drop(
            Ledger::create(&ledger_dir(dir.path()), LedgerKey::generate().expect("rng"), Options::default())
                .expect("create"),
        );
        let core = Core::open(dir.path(), settings()).expect("open");
        assert!(!core.is_initialized());
        let (shares, _root, _) = core.init(3, 2, None, false).await.expect("init");
        assert!(core.is_initialized());
        let moved = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("ledger.incomplete-init-"));
        assert!(moved, "the interrupted ledger was kept aside");
        assert!(!core.unseal_step(Some(shares[0].clone()), false).await.expect("first share"));
        assert!(core.unseal_step(Some(shares[2].clone()), false).await.expect("second share"));
        assert!(core.unsealed().await.is_some());
    }

    #[tokio::test]
    async fn a_wrong_share_combination_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let core = Core::open(dir.path(), settings()).expect("open");
        let (shares, _, _) = core.init(3, 2, None, false).await.expect("init");
        let mut forged = shares[1].clone();
        forged[10] ^= 0xff;
        assert!(!core.unseal_step(Some(shares[0].clone()), false).await.expect("first share"));
        let err = core.unseal_step(Some(forged), false).await.expect_err("a forged share must not unseal");
        assert!(err.to_string().contains("message authentication failed"), "{err}");
        assert!(core.unsealed().await.is_none());
        assert_eq!(core.seal_status(false).progress, 0, "a failed attempt resets the progress");
        // Bad configurations are refused before anything is written.
        let other = tempfile::tempdir().expect("tmp");
        let fresh = Core::open(other.path(), settings()).expect("open");
        assert!(fresh.init(2, 3, None, false).await.is_err());
        assert!(!Ledger::exists(&ledger_dir(other.path())));
    }
}
