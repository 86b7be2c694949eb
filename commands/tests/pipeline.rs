//! The sequencer with a committer that keeps several batches in flight (a cluster leader):
//! the next batch is decided on the state of those in flight, batches settle in order, and
//! a failure drains the pipeline and restarts deciding from the published state.
//!
//! The committer here is scripted: the test decides when each commit settles and how.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use commands::Request;
use commands::sequencer::{CommitFuture, Committed, Committer, Folded, Sequencer, SequencerError, StartFuture};
use ledger::{Entry, Hash, Receipt};
use projections::State;
use tokio::sync::oneshot;

mod common;
use common::{TestEnv, policy_write as policy};

type Settle = oneshot::Sender<Result<Vec<Receipt>, SequencerError>>;

/// A commit the scripted committer was handed: how many entries, and how to settle it.
struct Started {
    entries: usize,
    /// The state the sequencer says the batch leads to.
    folded: Arc<State>,
    settle: Settle,
}

#[derive(Default)]
struct Scripted {
    started: Mutex<Vec<Option<Started>>>,
}

impl Committer for Scripted {
    fn start(&self, entries: Vec<Entry>, folded: Folded) -> StartFuture<'_> {
        let (settle, settled) = oneshot::channel();
        let started = Started { entries: entries.len(), folded: folded.state, settle };
        self.started.lock().expect("scripted committer lock").push(Some(started));
        Box::pin(async move {
            let commit: CommitFuture<'_> =
                Box::pin(async move { settled.await.unwrap_or(Err(SequencerError::Closed)) });
            Ok(commit)
        })
    }
    fn depth(&self) -> usize {
        3
    }
}

impl Scripted {
    fn entries(&self, i: usize) -> usize {
        self.started.lock().expect("scripted committer lock")[i].as_ref().map_or(0, |s| s.entries)
    }

    fn folded(&self, i: usize) -> Arc<State> {
        self.started.lock().expect("scripted committer lock")[i].as_ref().expect("not settled yet").folded.clone()
    }

    fn count(&self) -> usize {
        self.started.lock().expect("scripted committer lock").len()
    }

    /// Waits (bounded) until `n` commits were started.
    async fn wait_started(&self, n: usize) {
        for _ in 0..200 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} commits were not started in time (started: {})", self.count());
    }

    /// Settles commit `i` as durable at seqs `first..`.
    fn succeed(&self, i: usize, first: u64) {
        let s = self.started.lock().expect("scripted committer lock")[i].take().expect("settled twice");
        let receipts =
            (first..first + s.entries as u64).map(|seq| Receipt { seq, hash: Hash::ZERO, time: 0 }).collect();
        s.settle.send(Ok(receipts)).expect("the commit is awaited");
    }

    fn fail(&self, i: usize) {
        let s = self.started.lock().expect("scripted committer lock")[i].take().expect("settled twice");
        s.settle.send(Err(SequencerError::Unavailable("scripted failure".into()))).expect("the commit is awaited");
    }
}

fn setup() -> (Sequencer, Arc<Scripted>, Arc<ArcSwap<State>>) {
    let env = Arc::new(TestEnv::new());
    let committer = Arc::new(Scripted::default());
    let published = Arc::new(ArcSwap::from_pointee(State::default()));
    let sequencer = Sequencer::default();
    sequencer.run(committer.clone(), published.clone(), env);
    (sequencer, committer, published)
}

fn submit(s: &Sequencer, r: Request) -> tokio::task::JoinHandle<Result<Committed, SequencerError>> {
    let s = s.clone();
    tokio::spawn(async move { s.submit(r).await })
}

type Pending = tokio::task::JoinHandle<Result<Committed, SequencerError>>;

/// Submits `n` policy writes named `prefix0`, `prefix1`, …
fn submit_many(s: &Sequencer, prefix: &str, n: usize) -> Vec<Pending> {
    (0..n).map(|i| submit(s, policy(&format!("{prefix}{i}")))).collect()
}

/// The seqs every request of `pending` was committed at, in order.
async fn committed_seqs(pending: Vec<Pending>) -> Vec<u64> {
    let mut seqs = Vec::new();
    for r in pending {
        seqs.extend(r.await.expect("task").expect("committed").seqs);
    }
    seqs.sort_unstable();
    seqs
}

/// Enough requests to start a batch while another is in flight.
const ENOUGH: usize = 64;

#[tokio::test]
async fn the_next_batch_is_decided_on_the_batches_in_flight() {
    let (sequencer, committer, published) = setup();
    let a = submit(&sequencer, policy("a"));
    committer.wait_started(1).await;
    // One request alone waits for the batch in flight: a round of its own is not worth it.
    let mut b = vec![submit(&sequencer, policy("b"))];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(committer.count(), 1, "a lone request does not start a second batch");
    // Enough of them start one, decided on the batch in flight, before it is durable.
    b.extend(submit_many(&sequencer, "b", ENOUGH - 1));
    committer.wait_started(2).await;
    assert_eq!(committer.entries(1), ENOUGH);
    assert_eq!(published.load().last_seq, 0, "nothing is published before it is durable");
    // Each batch comes with the state after it (a cluster leader adopts it for its frame).
    let (after_a, after_b) = (committer.folded(0), committer.folded(1));
    assert_eq!(after_a.last_seq, 1);
    assert!(after_a.policies.get("a").is_some() && after_a.policies.get("b0").is_none());
    assert_eq!(after_b.last_seq, 1 + ENOUGH as u64);
    assert!(after_b.policies.get("a").is_some() && after_b.policies.get("b0").is_some());

    committer.succeed(0, 1);
    let a = a.await.expect("task").expect("committed");
    assert_eq!(a.seqs, vec![1]);
    assert!(a.result.is_ok());
    assert!(published.load().policies.get("a").is_some());
    assert!(published.load().policies.get("b").is_none(), "b is published only once durable");

    committer.succeed(1, 2);
    let seqs = committed_seqs(b).await;
    let expected: Vec<u64> = (2..2 + ENOUGH as u64).collect();
    assert_eq!(seqs, expected, "the second batch was numbered after a, which was still in flight");
    let state = published.load();
    assert!(state.policies.get("a").is_some() && state.policies.get("b0").is_some());
    assert_eq!(state.last_seq, 1 + ENOUGH as u64);
}

#[tokio::test]
async fn a_failed_batch_drains_the_pipeline_and_deciding_restarts_from_the_published_state() {
    let (sequencer, committer, published) = setup();
    let a = submit(&sequencer, policy("a"));
    committer.wait_started(1).await;
    let b = submit_many(&sequencer, "b", ENOUGH);
    committer.wait_started(2).await;

    committer.fail(0);
    assert!(a.await.expect("task").is_err(), "the failed batch's request gets the error");
    // While the b batch (decided on a's state) is in flight, nothing new is decided, even
    // with enough requests waiting.
    let c = submit_many(&sequencer, "c", ENOUGH);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(committer.count(), 2, "no batch is started while the pipeline drains");

    committer.fail(1);
    for r in b {
        assert!(r.await.expect("task").is_err());
    }
    committer.wait_started(3).await;
    committer.succeed(2, 1);
    let seqs = committed_seqs(c).await;
    let expected: Vec<u64> = (1..1 + ENOUGH as u64).collect();
    assert_eq!(seqs, expected, "c was decided on the published state, not on the failed batches");
    let state = published.load();
    assert!(state.policies.get("a").is_none() && state.policies.get("b0").is_none());
    assert!(state.policies.get("c0").is_some());
}
