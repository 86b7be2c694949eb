//! What a cluster node does with each committed Raft entry: the entry is a ledger frame;
//! append it to the local ledger (checked against the chain) and fold its events into the
//! published state. Every node, the leader included, goes through here, so every node's
//! ledger holds the same bytes and every node's state is the fold of the same events.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use ledger::{Applied, Hash, Ledger, Options, StoredEvent};
use migrations::Envelope;
use projections::State;
use serde::{Deserialize, Serialize};

/// A node's ledger is answered once a replicated frame is written and syncs it right after,
/// off the answer's path: the Raft log (durable on a majority before the frame is committed)
/// keeps the frame until the ledger has synced it, and hands it again after a crash
/// ([`cluster::Applier::durable_mark`]). One `fdatasync` per commit instead of two on every
/// node, where they queue on the same disk.
fn replica_options() -> Options {
    Options { defer_frame_sync: true, ..Options::default() }
}

/// The future type of [`cluster::Applier`].
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// What became of a frame, as the leader's proposer learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Written { last_seq: u64 },
    AlreadyHeld,
    Refused(String),
}

impl Outcome {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Outcome> {
        serde_json::from_slice(bytes).ok()
    }
}

struct Inner {
    dir: PathBuf,
    ledger: RwLock<Option<Arc<Ledger>>>,
    state: Arc<ArcSwap<State>>,
    /// The leader's own frames in flight, with the state its sequencer folded for each.
    expected: Mutex<VecDeque<Expected>>,
}

/// A frame this node (leading) built: identified by its last event, and the state after it.
struct Expected {
    last_seq: u64,
    last_hash: Hash,
    state: Arc<State>,
}

/// Frames in flight are at most `pipeline_depth` (≤ 16); older ones were never applied.
const EXPECTED_MAX: usize = 32;

/// The ledger and the published state of one node, fed by the cluster.
#[derive(Clone)]
pub struct LedgerApplier(Arc<Inner>);

impl LedgerApplier {
    /// Opens the ledger in `dir` as a replica if there is one. `state` must hold the fold of
    /// that ledger (it is replayed again if recovery cut a torn tail).
    pub fn open(dir: PathBuf, state: Arc<ArcSwap<State>>) -> Result<LedgerApplier, ledger::Error> {
        let ledger = if Ledger::exists(&dir) {
            let l = Ledger::open_replica(&dir, replica_options())?;
            if l.durable().last_seq != state.load().last_seq {
                let fresh = projections::replay::replay(&dir, &mut |_, _| {})
                    .map_err(|e| ledger::Error::Invalid(format!("replay after recovery: {e}")))?;
                state.store(Arc::new(fresh.state));
            }
            Some(Arc::new(l))
        } else {
            None
        };
        Ok(LedgerApplier(Arc::new(Inner {
            dir,
            ledger: RwLock::new(ledger),
            state,
            expected: Mutex::new(VecDeque::new()),
        })))
    }

    /// The local ledger, once the genesis frame has been applied.
    pub fn ledger(&self) -> Option<Arc<Ledger>> {
        self.0.ledger.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Appends one frame and folds it. `Err` only for a local failure (the node must stop
    /// applying); a frame that does not continue the chain is `Refused` on every node alike.
    pub async fn apply_frame(&self, bytes: Vec<u8>) -> Result<Outcome, String> {
        let ledger = match self.ledger() {
            Some(l) => l,
            None => return self.create(bytes).await,
        };
        match ledger.append_frame(bytes).await {
            Ok(Applied::Written(events)) => {
                let last_seq = events.last().map(|e| e.event.seq).unwrap_or(0);
                match self.adoptable(&events) {
                    Some(state) => self.0.state.store(state),
                    None => self.fold(events)?,
                }
                Ok(Outcome::Written { last_seq })
            }
            Ok(Applied::AlreadyHeld) => Ok(Outcome::AlreadyHeld),
            Ok(Applied::Refused(reason)) => {
                tracing::warn!(%reason, "a replicated frame does not continue the ledger; skipped on every node");
                Ok(Outcome::Refused(reason))
            }
            Err(e) => Err(format!("appending a replicated frame: {e}")),
        }
    }

    /// The first frame creates the ledger (it must be a genesis).
    async fn create(&self, genesis: Vec<u8>) -> Result<Outcome, String> {
        let dir = self.0.dir.clone();
        let bytes = genesis.clone();
        let created = tokio::task::spawn_blocking(move || Ledger::create_replica(&dir, &bytes, replica_options()))
            .await
            .map_err(|e| e.to_string())?;
        let ledger = match created {
            Ok(l) => Arc::new(l),
            Err(ledger::Error::Invalid(reason)) => return Ok(Outcome::Refused(reason)),
            Err(e) => return Err(format!("creating the ledger: {e}")),
        };
        let events: Vec<StoredEvent> =
            ledger.events(1, u64::MAX).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let last_seq = ledger.durable().last_seq;
        *self.0.ledger.write().unwrap_or_else(|e| e.into_inner()) = Some(ledger);
        self.fold(events)?;
        Ok(Outcome::Written { last_seq })
    }

    /// Called by the leader for a frame it is about to replicate: `state` is its sequencer's
    /// fold of exactly the frame's events at the frame's time, on the state before the
    /// frame, so applying the frame here can publish it instead of folding again.
    pub fn expect_own_frame(&self, last_seq: u64, last_hash: Hash, state: Arc<State>) {
        let mut expected = self.0.expected.lock().unwrap_or_else(|e| e.into_inner());
        if expected.len() == EXPECTED_MAX {
            expected.pop_front();
        }
        expected.push_back(Expected { last_seq, last_hash, state });
    }

    /// The sequencer's state for the frame just written, if this node built that very frame
    /// (same last event, so the same bytes: the hash chains every event before it) on the
    /// state now published. Entries for frames that were never written are dropped.
    fn adoptable(&self, events: &[StoredEvent]) -> Option<Arc<State>> {
        let (first, last) = (events.first()?, events.last()?);
        let mut expected = self.0.expected.lock().unwrap_or_else(|e| e.into_inner());
        while expected.front().is_some_and(|x| x.last_seq < last.event.seq) {
            expected.pop_front();
        }
        let x = expected.front().filter(|x| x.last_seq == last.event.seq)?;
        let ours = x.last_hash == last.hash && x.state.last_seq == last.event.seq;
        let on_published = self.0.state.load().last_seq + 1 == first.event.seq;
        let state = (ours && on_published).then(|| x.state.clone());
        expected.pop_front();
        state
    }

    fn fold(&self, events: Vec<StoredEvent>) -> Result<(), String> {
        let mut next = (**self.0.state.load()).clone();
        for ev in events {
            let seq = ev.event.seq;
            let envelope = Envelope::decode(&ev.event, ev.slots)
                .map_err(|e| format!("event {seq} cannot be decoded by this version: {e}"))?;
            next.apply(&envelope);
        }
        self.0.state.store(Arc::new(next));
        Ok(())
    }

    async fn snapshot_bytes(&self) -> Result<Vec<u8>, String> {
        let Some(ledger) = self.ledger() else { return Ok(Vec::new()) };
        ledger.sync().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || ledger.durable_frames())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Installs a snapshot: the frames this ledger lacks are appended (a replica's ledger is
    /// always a prefix of the leader's, since only committed frames are applied).
    async fn install_bytes(&self, data: Vec<u8>) -> Result<(), String> {
        let frames = ledger::replica::split_frames(&data).map_err(|e| e.to_string())?;
        for frame in frames {
            if let Outcome::Refused(reason) = self.apply_frame(frame.to_vec()).await? {
                return Err(format!("snapshot frame refused: {reason}"));
            }
        }
        match self.ledger() {
            Some(ledger) => ledger.sync().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl cluster::Applier for LedgerApplier {
    fn apply(&self, entry: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let me = self.clone();
        Box::pin(async move { me.apply_frame(entry).await.map(|o| o.encode()) })
    }

    fn snapshot(&self) -> BoxFuture<Result<Vec<u8>, String>> {
        let me = self.clone();
        Box::pin(async move { me.snapshot_bytes().await })
    }

    fn install(&self, data: Vec<u8>) -> BoxFuture<Result<(), String>> {
        let me = self.clone();
        Box::pin(async move { me.install_bytes(data).await })
    }

    fn applied_mark(&self) -> u64 {
        self.ledger().map_or(0, |l| l.durable().last_seq)
    }

    fn durable_mark(&self) -> u64 {
        self.ledger().map_or(0, |l| l.synced_seq())
    }
}
