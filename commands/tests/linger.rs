//! A committer whose round is long (a cluster's) makes the next batch wait a moment for
//! the clients just answered: clients that wait for each answer then ride in one batch per
//! round, instead of splitting into a large and a small batch that each pay a round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use commands::sequencer::{CommitFuture, Committer, Folded, Sequencer, StartFuture};
use ledger::{Entry, Hash, Receipt};
use projections::State;

mod common;
use common::{TestEnv, policy_write as policy};

/// How long every commit takes.
const ROUND: Duration = Duration::from_millis(30);
/// How long client `c` takes between an answer and its next request: 0, 1 or 2 ms, as
/// answers reach real clients one by one and they come back one by one.
fn turnaround(c: usize) -> Duration {
    Duration::from_millis((c % 3) as u64)
}
const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 8;

/// Settles every commit after [`ROUND`], at the next seqs; records each batch's size.
struct SlowRound {
    lingers: bool,
    next_seq: AtomicU64,
    batches: Mutex<Vec<usize>>,
}

impl SlowRound {
    fn new(lingers: bool) -> SlowRound {
        SlowRound { lingers, next_seq: AtomicU64::new(1), batches: Mutex::new(Vec::new()) }
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().expect("batches lock").clone()
    }
}

impl Committer for SlowRound {
    fn start(&self, entries: Vec<Entry>, _folded: Folded) -> StartFuture<'_> {
        let n = entries.len() as u64;
        self.batches.lock().expect("batches lock").push(entries.len());
        let first = self.next_seq.fetch_add(n, Ordering::SeqCst);
        Box::pin(async move {
            let commit: CommitFuture<'_> = Box::pin(async move {
                tokio::time::sleep(ROUND).await;
                Ok((first..first + n).map(|seq| Receipt { seq, hash: Hash::ZERO, time: 0 }).collect())
            });
            Ok(commit)
        })
    }

    fn lingers(&self) -> bool {
        self.lingers
    }
}

/// Runs [`CLIENTS`] clients that each send [`REQUESTS_PER_CLIENT`] writes, one after the
/// other; returns the size of every batch (in requests: a policy write is one event).
async fn closed_loop(lingers: bool) -> Vec<usize> {
    let committer = Arc::new(SlowRound::new(lingers));
    let published = Arc::new(ArcSwap::from_pointee(State::default()));
    let sequencer = Sequencer::default();
    sequencer.run(committer.clone(), published, Arc::new(TestEnv::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let s = sequencer.clone();
            tokio::spawn(async move {
                for i in 0..REQUESTS_PER_CLIENT {
                    s.submit(policy(&format!("c{c}-{i}"))).await.expect("committed").result.expect("accepted");
                    tokio::time::sleep(turnaround(c)).await;
                }
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c).await.expect("clients finish in time").expect("client");
    }
    sequencer.stop();
    committer.batches()
}

#[tokio::test]
async fn clients_waiting_for_their_answers_ride_in_one_batch_per_round() {
    let batches = closed_loop(true).await;
    assert_eq!(batches.iter().sum::<usize>(), CLIENTS * REQUESTS_PER_CLIENT);
    // The first batch may start with the first client alone; from then on, every client
    // is back within the linger.
    let rounds = batches.len();
    assert!(rounds <= REQUESTS_PER_CLIENT + 2, "one round per request of each client, not more: {batches:?}");
    let full = batches.iter().filter(|&&n| n == CLIENTS).count();
    assert!(full >= REQUESTS_PER_CLIENT - 2, "batches of every client: {batches:?}");
}

#[tokio::test]
async fn without_the_linger_the_same_clients_split_into_large_and_small_batches() {
    // What the linger is for: the sequencer leaves with whoever came first.
    let batches = closed_loop(false).await;
    assert_eq!(batches.iter().sum::<usize>(), CLIENTS * REQUESTS_PER_CLIENT);
    assert!(batches.len() > REQUESTS_PER_CLIENT + 2, "the cohort split: {batches:?}");
    assert!(batches.iter().filter(|&&n| n < CLIENTS / 2).count() >= 2, "small batches: {batches:?}");
}

#[tokio::test]
async fn a_lone_request_after_a_batch_waits_at_most_the_linger() {
    let committer = Arc::new(SlowRound::new(true));
    let published = Arc::new(ArcSwap::from_pointee(State::default()));
    let sequencer = Sequencer::default();
    sequencer.run(committer.clone(), published, Arc::new(TestEnv::new()));
    // A batch of many, whose clients then go away.
    let many: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let s = sequencer.clone();
            tokio::spawn(async move { s.submit(policy(&format!("once{c}"))).await })
        })
        .collect();
    for m in many {
        m.await.expect("task").expect("committed").result.expect("accepted");
    }
    // One more request: it waits for clients that do not come, but only a bounded moment.
    let started = Instant::now();
    sequencer.submit(policy("lone")).await.expect("committed").result.expect("accepted");
    let took = started.elapsed();
    assert!(took < 2 * ROUND, "it did not wait a round for the clients gone: {took:?}");
    assert!(took >= ROUND, "it was committed in a round of its own: {took:?}");
    sequencer.stop();
}
