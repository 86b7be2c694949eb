//! The sequencer: the single writer of cairn's state.
//!
//! Requests wait in a channel. The sequencer task takes every request already waiting (up
//! to a batch limit), decides each against a working copy of the state — folding each
//! decision in before deciding the next, so check-and-set, token uses and cascades are
//! atomic — then commits all their events and erasures to the ledger in ONE call (one
//! frame, one `fdatasync`). Only once the ledger says durable does it publish the new
//! state to readers and answer. If the ledger refuses, the working copy is dropped and
//! every request of the batch gets the error: nothing half-done is ever visible.
//!
//! A committer may take several batches before the first is durable ([`Committer::depth`]:
//! a cluster leader pipelines frames through Raft). The next batch is then decided on the
//! working state of the batches in flight, and batches settle in order. If one fails, no
//! new batch is decided until every batch in flight has settled (those decided on the
//! failed one fail with it: their frames do not continue the chain), and deciding starts
//! again from the published state.
//!
//! Where a round is long whatever its size (a cluster's), a batch just answered makes the
//! next one wait a moment ([`Committer::lingers`]) for the clients it answered, so that
//! clients waiting for their answers keep riding in full batches.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use ledger::{Entry, EventDraft, Ledger, Receipt};
use migrations::{Body, Envelope};
use projections::State;
use tokio::sync::{mpsc, oneshot};

use crate::decide::{Effect, decide};
use crate::{Env, Rejection, Reply, Request};

/// Most requests decided into one commit.
const MAX_BATCH: usize = 4096;
/// Fewest requests that start a batch while another is in flight.
const MIN_PIPELINED_BATCH: usize = 64;
/// The longest a batch waits for the clients of the batch just answered ([`Committer::lingers`]),
/// and the share of a round it may wait (1/`LINGER_SHARE_OF_ROUND`).
const LINGER_MAX: std::time::Duration = std::time::Duration::from_millis(4);
const LINGER_SHARE_OF_ROUND: u32 = 4;
/// Fewest requests answered together that make the next batch wait for their clients.
const LINGER_MIN_COHORT: usize = 16;

/// A request's fate once its batch is durable.
#[derive(Debug, Clone)]
pub struct Committed {
    pub result: Result<Reply, Rejection>,
    /// The published state that includes this request's effects.
    pub state: Arc<State>,
    /// Seqs of the events this request appended (its access event is the last).
    pub seqs: Vec<u64>,
}

/// Why a request could not be committed at all (maps to 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SequencerError {
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::Error),
    #[error("the sequencer has stopped")]
    Closed,
    /// A cluster node that is not the leader has no sequencer.
    #[error("this node is not the cluster's leader")]
    NotLeader,
    /// The cluster could not commit (no quorum, leadership lost mid-commit).
    #[error("the cluster could not commit: {0}")]
    Unavailable(String),
    /// A standby cannot commit this request (it writes): the whole request must go to the
    /// leader instead, before anything of it was recorded.
    #[error("this request must be forwarded to the cluster's leader")]
    Forward,
}

/// A boxed future of a remote submission.
pub type RemoteFuture<'a> = Pin<Box<dyn Future<Output = Result<Committed, SequencerError>> + Send + 'a>>;

/// Where a node without a running sequencer (a cluster standby) sends access-only
/// requests (`command: None`): the leader's sequencer, which checks the token again and
/// counts its uses, so there stays one chain.
pub trait RemoteSubmit: Send + Sync + 'static {
    fn submit(&self, request: Request) -> RemoteFuture<'_>;
}

/// A boxed future, for the object-safe [`Committer`].
pub type CommitFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Receipt>, SequencerError>> + Send + 'a>>;

/// A commit handed to the committer: resolves once it is queued, to the future of its
/// durability.
pub type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<CommitFuture<'a>, SequencerError>> + Send + 'a>>;

/// What the sequencer folded for a batch: the state after it, with every one of its events
/// at `time` (the time the batch was decided at).
#[derive(Clone)]
pub struct Folded {
    pub state: Arc<State>,
    pub time: u64,
}

/// Where the sequencer's batches go: the local ledger, or a cluster that replicates a frame
/// before every node appends it.
pub trait Committer: Send + Sync + 'static {
    /// Takes entries to commit as one frame. The outer future resolves once the frame is
    /// queued (frames are committed in the order they are queued); the inner one gives one
    /// receipt per entry once the frame is durable. `folded` is the state after the batch
    /// as the sequencer computed it: a committer that folds frames itself may use it
    /// instead for a frame of exactly these entries at exactly that time.
    fn start(&self, entries: Vec<Entry>, folded: Folded) -> StartFuture<'_>;
    /// True when committing also folds the events into the published state (a cluster
    /// node folds every frame it applies), so the sequencer must not publish its copy.
    fn publishes(&self) -> bool {
        false
    }
    /// How many batches may be in flight at once.
    fn depth(&self) -> usize {
        1
    }
    /// True when a commit costs a long round whatever its size (a cluster's: `fsync`s on
    /// several nodes and network hops). After a batch is answered, the next one then waits
    /// a moment for the clients just answered to send their next request ([`Linger`]).
    fn lingers(&self) -> bool {
        false
    }
}

impl Committer for Ledger {
    fn start(&self, entries: Vec<Entry>, _folded: Folded) -> StartFuture<'_> {
        Box::pin(async move {
            let commit: CommitFuture<'_> =
                Box::pin(async move { Ledger::commit(self, entries).await.map_err(SequencerError::Ledger) });
            Ok(commit)
        })
    }
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Committed, SequencerError>>,
}

/// Handle to the sequencer task. On a cluster node it is running only while the node
/// leads ([`Sequencer::run`], [`Sequencer::stop`]); meanwhile submissions are refused with
/// [`SequencerError::NotLeader`].
#[derive(Clone, Default)]
pub struct Sequencer {
    tx: Arc<RwLock<Option<mpsc::Sender<Job>>>>,
    /// Set while a new leader prepares to run the sequencer: submissions wait for it
    /// (bounded) instead of being refused.
    starting: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set on a cluster node: used by [`Sequencer::submit`] while the local task is not
    /// running (a standby serving reads).
    remote: Arc<RwLock<Option<Arc<dyn RemoteSubmit>>>>,
}

/// How long a submission waits for a sequencer that is starting.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Sequencer {
    /// Starts the sequencer on the current tokio runtime. `published` must already hold
    /// the state of everything durable in `ledger`.
    pub fn start(ledger: Arc<Ledger>, published: Arc<ArcSwap<State>>, env: Arc<dyn Env + Send + Sync>) -> Sequencer {
        let s = Sequencer::default();
        s.run(ledger, published, env);
        s
    }

    /// (Re)starts the task, committing through `committer`. `published` must hold the state
    /// of everything committed. A task already running stops once its queue is empty.
    pub fn run(&self, committer: Arc<dyn Committer>, published: Arc<ArcSwap<State>>, env: Arc<dyn Env + Send + Sync>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(rx, committer, published, env));
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        self.starting.send_replace(false);
    }

    /// The sequencer is about to start (a new leader catching up): until [`Sequencer::run`]
    /// or [`Sequencer::stop`], submissions wait instead of being refused.
    pub fn starting(&self) {
        self.starting.send_replace(true);
    }

    /// Stops taking requests (the node lost leadership); those already queued still go to
    /// the committer, which refuses them.
    pub fn stop(&self) {
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.starting.send_replace(false);
    }

    /// Sends access-only submissions to `remote` whenever the local task is not running.
    pub fn set_remote(&self, remote: Arc<dyn RemoteSubmit>) {
        *self.remote.write().unwrap_or_else(|e| e.into_inner()) = Some(remote);
    }

    pub fn is_running(&self) -> bool {
        self.tx.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Submits one request and waits until it is durable (or refused).
    pub async fn submit(&self, request: Request) -> Result<Committed, SequencerError> {
        let current = || self.tx.read().unwrap_or_else(|e| e.into_inner()).clone();
        let tx = match current() {
            Some(tx) => tx,
            None => {
                let mut starting = self.starting.subscribe();
                let _ = tokio::time::timeout(START_WAIT, starting.wait_for(|s| !*s)).await;
                match current() {
                    Some(tx) => tx,
                    None => return self.submit_remote(request).await,
                }
            }
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Job { request, reply }).await.map_err(|_| SequencerError::Closed)?;
        rx.await.map_err(|_| SequencerError::Closed)?
    }

    /// No local task: an access-only request goes to the remote sequencer if there is one;
    /// a write must be forwarded whole ([`SequencerError::Forward`]).
    async fn submit_remote(&self, request: Request) -> Result<Committed, SequencerError> {
        let remote = self.remote.read().unwrap_or_else(|e| e.into_inner()).clone();
        match remote {
            None => Err(SequencerError::NotLeader),
            Some(_) if request.command.is_some() => Err(SequencerError::Forward),
            Some(remote) => remote.submit(request).await,
        }
    }
}

/// A batch whose frame is queued and not yet durable.
struct InFlight<'a> {
    commit: CommitFuture<'a>,
    batch: Decided,
    started: std::time::Instant,
}

/// A batch was just answered: the next one waits (up to `until`) for about as many
/// requests as were answered. Clients that wait for each answer send their next request
/// right after it, a moment after the next batch would have left with the few requests
/// that came during the round; they would then wait a whole round, and batches lock into
/// alternating large and small ones (measured on a three-node cluster under 256 clients:
/// 231 and 25, every round), each paying the same `fsync`s and hops.
struct Linger {
    cohort: usize,
    until: tokio::time::Instant,
}

impl Linger {
    /// After a batch of `answered` requests whose round took `round`.
    fn after(answered: usize, round: std::time::Duration) -> Option<Linger> {
        if answered < LINGER_MIN_COHORT {
            return None;
        }
        let wait = (round / LINGER_SHARE_OF_ROUND).min(LINGER_MAX);
        Some(Linger { cohort: answered, until: tokio::time::Instant::now() + wait })
    }

    /// Gathers requests into `ready` until it holds the cohort or the time is up. Returns
    /// false if the channel closed.
    async fn wait(self, rx: &mut mpsc::Receiver<Job>, ready: &mut VecDeque<Job>) -> bool {
        while ready.len() < self.cohort.min(MAX_BATCH) {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(j) => ready.push_back(j),
                    None => return false,
                },
                () = tokio::time::sleep_until(self.until) => break,
            }
        }
        true
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    committer: Arc<dyn Committer>,
    published: Arc<ArcSwap<State>>,
    env: Arc<dyn Env + Send + Sync>,
) {
    let depth = committer.depth().max(1);
    let lingers = committer.lingers();
    let mut linger: Option<Linger> = None;
    // Requests to decide next, in order; and those waiting for an erasure target to be durable.
    let mut ready: VecDeque<Job> = VecDeque::new();
    let mut deferred: VecDeque<Job> = VecDeque::new();
    let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
    // The state after every batch decided so far; `None`: the published state.
    let mut working: Option<Arc<State>> = None;
    // A batch failed: decide nothing until every batch in flight has settled.
    let mut draining = false;
    let mut open = true;
    loop {
        let room = !draining && in_flight.len() < depth;
        if room {
            while ready.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => ready.push_back(j),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            // With a batch in flight, a new one starts only once enough requests wait: a
            // small batch costs a round of its own (fsyncs on every node) for little.
            let enough = if in_flight.is_empty() { 1 } else { MIN_PIPELINED_BATCH };
            if ready.len() >= enough {
                if in_flight.is_empty()
                    && let Some(l) = linger.take()
                    && !l.wait(&mut rx, &mut ready).await
                {
                    open = false;
                }
                let jobs: Vec<Job> = ready.drain(..ready.len().min(MAX_BATCH)).collect();
                let base = working.clone().unwrap_or_else(|| published.load_full());
                let durable_seq = published.load().last_seq;
                let batch = Batch::decide(jobs, &base, env.as_ref(), &mut deferred, durable_seq);
                if batch.entries.is_empty() {
                    // Nothing to write (every request was refused before any event).
                    batch.decided.answer_unchanged(&published.load_full());
                    continue;
                }
                let Batch { entries, decided } = batch;
                let folded = Folded { state: decided.working.clone(), time: decided.time };
                match committer.start(entries, folded).await {
                    Ok(commit) => {
                        working = Some(decided.working.clone());
                        in_flight.push_back(InFlight { commit, batch: decided, started: std::time::Instant::now() });
                    }
                    Err(e) => {
                        decided.fail(&e);
                        draining = true;
                    }
                }
                continue;
            }
        }
        if in_flight.is_empty() {
            if draining {
                draining = false;
                working = None;
                continue;
            }
            if !open {
                return;
            }
            // Idle: wait for the next request.
            match rx.recv().await {
                Some(j) => ready.push_back(j),
                None => open = false,
            }
            continue;
        }
        let wake = {
            let Some(front) = in_flight.front_mut() else { continue };
            tokio::select! {
                settled = &mut front.commit => Wake::Settled(settled),
                job = rx.recv(), if room && open => Wake::Job(job),
            }
        };
        match wake {
            Wake::Settled(settled) => {
                let Some(done) = in_flight.pop_front() else { continue };
                let answered = done.batch.jobs.len();
                let round = done.started.elapsed();
                if done.batch.settle(settled, committer.as_ref(), &published) {
                    linger = if lingers { Linger::after(answered, round) } else { None };
                } else {
                    draining = true;
                    linger = None;
                }
                // Deferred erasures may have a durable target now; they came first.
                while let Some(j) = deferred.pop_back() {
                    ready.push_front(j);
                }
                if in_flight.is_empty() && !draining {
                    working = None;
                }
            }
            Wake::Job(Some(j)) => ready.push_back(j),
            Wake::Job(None) => open = false,
        }
    }
}

/// What woke the sequencer while batches are in flight.
enum Wake {
    Settled(Result<Vec<Receipt>, SequencerError>),
    Job(Option<Job>),
}

/// The ledger entries of a decision, and the seqs they will get from `first_seq` on.
fn encode(effects: &[Effect], r: &Request, first_seq: u64) -> Result<(Vec<Entry>, Vec<u64>), Rejection> {
    let mut entries = Vec::with_capacity(effects.len());
    for effect in effects {
        entries.push(match effect {
            Effect::Event(d) => {
                let (kind, kind_version, body) =
                    d.event.encode().map_err(|e| Rejection::Internal(format!("cannot encode event: {e}")))?;
                Entry::Event(EventDraft {
                    kind,
                    kind_version,
                    request_id: r.request_id,
                    actor: r.actor.clone(),
                    body,
                    slots: d.slots.clone(),
                })
            }
            Effect::Erase { target, slots } => {
                Entry::Erase { target: *target, slots: slots.clone(), actor: r.actor.clone(), request_id: r.request_id }
            }
        });
    }
    let seqs = (first_seq..first_seq + entries.len() as u64).collect();
    Ok((entries, seqs))
}

/// Folds a decision's effects into `state` as the events they become, numbered from
/// `first_seq`; returns the next seq. The sequencer and the tests share this.
pub fn fold(
    state: &mut State,
    effects: &[Effect],
    first_seq: u64,
    time: u64,
    actor: &ledger::Actor,
    request_id: [u8; 16],
) -> u64 {
    let mut seq = first_seq;
    for effect in effects {
        let (body, slots) = match effect {
            Effect::Event(d) => (Body::App(d.event.clone()), d.slots.clone()),
            Effect::Erase { target, slots } => (
                Body::System(ledger::system::SystemEvent::PayloadErased { target: *target, slots: slots.clone() }),
                Vec::new(),
            ),
        };
        state.apply(&Envelope { seq, time, actor: actor.clone(), request_id, body, slots });
        seq += 1;
    }
    seq
}

/// Requests decided against one working state, waiting to be committed.
struct Batch {
    entries: Vec<Entry>,
    decided: Decided,
}

/// The decisions of a batch, answered once its frame settles.
struct Decided {
    /// The state after the batch.
    working: Arc<State>,
    /// The time every event of the batch was folded at.
    time: u64,
    first_seq: u64,
    next_seq: u64,
    jobs: Vec<(Job, Result<Reply, Rejection>, Vec<u64>)>,
}

impl Batch {
    /// Decides `jobs` in order on `base`. A request that erases a payload not yet durable
    /// (above `durable_seq`: written by this batch or one in flight) waits in `deferred`:
    /// the ledger erases only durable payloads.
    fn decide(jobs: Vec<Job>, base: &State, env: &dyn Env, deferred: &mut VecDeque<Job>, durable_seq: u64) -> Batch {
        let first_seq = base.last_seq + 1;
        let mut working = base.clone();
        let mut next_seq = first_seq;
        let mut entries = Vec::new();
        let mut decided = Vec::new();
        let now = env.now();
        for job in jobs {
            let out = decide(&working, &job.request, env);
            if out.effects.iter().any(|e| matches!(e, Effect::Erase { target, .. } if *target > durable_seq)) {
                deferred.push_back(job);
                continue;
            }
            let mut result = out.result;
            let (drafted, seqs) = match encode(&out.effects, &job.request, next_seq) {
                Ok(x) => x,
                Err(e) => {
                    result = Err(e);
                    (Vec::new(), Vec::new())
                }
            };
            if !drafted.is_empty() {
                let r = &job.request;
                next_seq = fold(&mut working, &out.effects, next_seq, now, &r.actor, r.request_id);
                entries.extend(drafted);
            }
            decided.push((job, result, seqs));
        }
        Batch {
            entries,
            decided: Decided { working: Arc::new(working), time: now, first_seq, next_seq, jobs: decided },
        }
    }
}

impl Decided {
    /// Answers a batch that wrote nothing, with the state it was decided on.
    fn answer_unchanged(self, state: &Arc<State>) {
        for (job, result, seqs) in self.jobs {
            let _ = job.reply.send(Ok(Committed { result, state: state.clone(), seqs }));
        }
    }

    /// Every request of the batch gets the error: nothing of it happened.
    fn fail(self, e: &SequencerError) {
        tracing::error!(error = %e, "commit refused; the batch is dropped");
        for (job, _, _) in self.jobs {
            let _ = job.reply.send(Err(e.clone()));
        }
    }

    /// Publishes (unless the committer does) and answers a batch whose commit settled;
    /// false if it failed.
    fn settle(
        self,
        settled: Result<Vec<Receipt>, SequencerError>,
        committer: &dyn Committer,
        published: &ArcSwap<State>,
    ) -> bool {
        let outcome = match settled {
            Ok(receipts) if receipts.iter().map(|r| r.seq).eq(self.first_seq..self.next_seq) => Ok(()),
            Ok(_) => Err(SequencerError::Ledger(ledger::Error::Failed(
                "ledger seqs differ from the sequencer's: another writer?".into(),
            ))),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            self.fail(&e);
            return false;
        }
        let state = if committer.publishes() {
            // The cluster node folded the frame as it appended it; publishing this copy
            // could undo a later frame applied meanwhile.
            published.load_full()
        } else {
            published.store(self.working.clone());
            self.working
        };
        for (job, result, seqs) in self.jobs {
            let _ = job.reply.send(Ok(Committed { result, state: state.clone(), seqs }));
        }
        true
    }
}
