//! The lease runtime: revoking a lease's credential where it lives, recording what came of
//! it, and the scheduler that revokes leases once they are due.
//!
//! The order is always the same: the backend first (drop the database user), then the
//! ledger (`LeaseRevoked`). A crash in between leaves a live lease whose user is already
//! gone; the next attempt finds nothing to drop and records the revocation. A failed
//! attempt is recorded too (`LeaseRevocationFailed`, with the back-off), so lookup and
//! forensics see every try.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use commands::Command;
use migrations::{LeaseEnd, LeaseSecret};
use projections::State;
use projections::lease::Lease;
use tokio::task::JoinSet;

use crate::core::{Core, Unsealed, now_nanos};

/// Backend revocations run at once, at most.
const CONCURRENCY: usize = 32;
/// Leases the scheduler takes per round, at most.
const ROUND: usize = 4096;
/// How often the scheduler looks for due leases.
const TICK: Duration = Duration::from_millis(100);

/// Revokes a lease's credential in its backend. The error is safe to show and to record
/// (database errors come redacted).
pub async fn revoke_credential(unsealed: &Unsealed, state: &State, lease: &Lease) -> Result<(), String> {
    match &lease.secret {
        LeaseSecret::Database { .. } => {
            crate::engines::database::runtime::revoke_lease_user(unsealed, state, lease).await
        }
    }
}

/// What came of revoking a set of leases in their backends.
#[derive(Debug, Default)]
pub struct Attempts {
    pub revoked: Vec<String>,
    /// `(lease id, error)`.
    pub failed: Vec<(String, String)>,
}

/// Revokes the leases' credentials, [`CONCURRENCY`] at a time.
pub async fn revoke_in_backends(unsealed: &Arc<Unsealed>, state: &Arc<State>, leases: Vec<Arc<Lease>>) -> Attempts {
    let mut out = Attempts::default();
    let mut running = JoinSet::new();
    let mut queue = leases.into_iter();
    loop {
        while running.len() < CONCURRENCY {
            let Some(lease) = queue.next() else { break };
            let (unsealed, state) = (unsealed.clone(), state.clone());
            running.spawn(async move {
                let result = revoke_credential(&unsealed, &state, &lease).await;
                (lease.id.to_string(), result)
            });
        }
        match running.join_next().await {
            Some(Ok((id, Ok(())))) => out.revoked.push(id),
            Some(Ok((id, Err(e)))) => out.failed.push((id, e)),
            Some(Err(e)) => tracing::error!(error = %e, "a lease revocation task failed"),
            None => break,
        }
    }
    out
}

/// Records failed attempts (their back-off) as the system.
pub async fn record_failures(unsealed: &Unsealed, failures: Vec<(String, String)>) {
    if failures.is_empty() {
        return;
    }
    for (id, error) in &failures {
        tracing::warn!(lease_id = %id, error = %error, "lease revocation failed; will retry");
    }
    if let Err(e) = unsealed.submit_as_system(Command::RecordRevocationFailures { failures }).await {
        tracing::error!(error = %e, "could not record failed lease revocations");
    }
}

/// Why the scheduler ends a lease.
fn end_reason(state: &State, lease: &Lease, now: u64) -> LeaseEnd {
    if lease.expire_time <= now {
        LeaseEnd::Expired
    } else if state.tokens.by_accessor(&lease.token).is_none() {
        LeaseEnd::TokenRevoked
    } else {
        LeaseEnd::Revoked
    }
}

/// Revokes due leases until the server stops: expired ones, those of revoked tokens, and
/// retries after failures. Runs whenever the server is unsealed, so leases that expired
/// while it was down or sealed are revoked right after unseal.
///
/// Up to [`CONCURRENCY`] revocations run at once; a new one starts as soon as one ends,
/// from a queue of due leases refilled every tick. What ended is recorded every tick, in
/// one command per reason, so one slow revocation never holds back the others' records.
pub async fn scheduler(core: Arc<Core>) {
    let mut work = Revocations::default();
    let mut rotations: Option<tokio::task::JoinHandle<()>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(joined) = work.running.join_next_with_id(), if !work.running.is_empty() => {
                work.finished(joined);
                if let Some(unsealed) = core.unsealed().await {
                    work.start_queued(&unsealed, &core.state.load_full());
                }
                continue;
            }
        }
        let Some(unsealed) = core.unsealed().await else { continue };
        if !unsealed.sequencer.is_running() {
            continue; // a cluster standby: the leader revokes
        }
        work.record(&unsealed).await;
        let state = core.state.load_full();
        work.queue_due(&state, now_nanos());
        work.start_queued(&unsealed, &state);
        if rotations.as_ref().is_none_or(|r| r.is_finished()) {
            let (unsealed, state) = (unsealed.clone(), core.state.clone());
            rotations = Some(tokio::spawn(async move {
                crate::engines::database::runtime::rotate_due_static_roles(&unsealed, &state).await;
            }));
        }
    }
}

/// What a revocation task returns: the lease, why it ends, and how its revocation went.
type Outcome = (Arc<str>, LeaseEnd, Result<(), String>);

/// The scheduler's revocations: queued, running, and ended but not yet recorded.
#[derive(Default)]
struct Revocations {
    /// Due leases waiting for a free slot.
    queue: std::collections::VecDeque<Arc<Lease>>,
    running: JoinSet<Outcome>,
    /// Which lease each running task revokes (a task that panics reports only its id).
    tasks: std::collections::HashMap<tokio::task::Id, Arc<str>>,
    /// Every lease queued, running or ended-but-unrecorded: never picked twice.
    busy: HashSet<Arc<str>>,
    revoked: Vec<(Arc<str>, LeaseEnd)>,
    failed: Vec<(Arc<str>, String)>,
    /// Ended by a panicked task: free to be picked again once the tick records the rest.
    lost: Vec<Arc<str>>,
}

impl Revocations {
    /// Queues the due leases that are not already in hand, up to [`ROUND`] in the queue.
    fn queue_due(&mut self, state: &State, now: u64) {
        let room = ROUND.saturating_sub(self.queue.len());
        if room == 0 {
            return;
        }
        for lease in state.leases.due(now, room + self.busy.len()) {
            if self.queue.len() >= ROUND {
                break;
            }
            if self.busy.insert(lease.id.clone()) {
                self.queue.push_back(lease);
            }
        }
    }

    /// Starts queued revocations while there are free slots. A lease queued a while ago is
    /// checked against the state of now: renewed or already revoked since, it is dropped.
    fn start_queued(&mut self, unsealed: &Arc<Unsealed>, state: &Arc<State>) {
        let now = now_nanos();
        while self.running.len() < CONCURRENCY {
            let Some(queued) = self.queue.pop_front() else { break };
            let lease = match state.leases.get(&queued.id) {
                Some(current) if current.due() <= now => current.clone(),
                _ => {
                    self.busy.remove(&queued.id);
                    continue;
                }
            };
            let reason = end_reason(state, &lease, now);
            let (unsealed, state) = (unsealed.clone(), state.clone());
            let id = lease.id.clone();
            let handle = self.running.spawn(async move {
                let result = revoke_credential(&unsealed, &state, &lease).await;
                (lease.id.clone(), reason, result)
            });
            self.tasks.insert(handle.id(), id);
        }
    }

    fn finished(&mut self, joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        match joined {
            Ok((task, (id, reason, result))) => {
                self.tasks.remove(&task);
                match result {
                    Ok(()) => self.revoked.push((id, reason)),
                    Err(e) => self.failed.push((id, e)),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a lease revocation task failed");
                if let Some(id) = self.tasks.remove(&e.id()) {
                    self.lost.push(id);
                }
            }
        }
    }

    /// Records what ended since the last tick; those leases may be picked again (a failed
    /// one once its back-off is over, as the projection says).
    async fn record(&mut self, unsealed: &Unsealed) {
        let revoked = std::mem::take(&mut self.revoked);
        let failed = std::mem::take(&mut self.failed);
        let lost = std::mem::take(&mut self.lost);
        record_revoked(unsealed, &revoked).await;
        let failures = failed.iter().map(|(id, e)| (id.to_string(), e.clone())).collect();
        record_failures(unsealed, failures).await;
        for id in revoked.iter().map(|(id, _)| id).chain(failed.iter().map(|(id, _)| id)).chain(&lost) {
            self.busy.remove(id);
        }
    }
}

/// Records revocations, one command per reason.
async fn record_revoked(unsealed: &Unsealed, revoked: &[(Arc<str>, LeaseEnd)]) {
    for reason in [LeaseEnd::Expired, LeaseEnd::TokenRevoked, LeaseEnd::Revoked] {
        let lease_ids: Vec<String> =
            revoked.iter().filter(|(_, r)| *r == reason).map(|(id, _)| id.to_string()).collect();
        if lease_ids.is_empty() {
            continue;
        }
        if let Err(e) = unsealed.submit_as_system(Command::RecordLeasesRevoked { lease_ids, reason }).await {
            tracing::error!(error = %e, "could not record revoked leases; they will be revoked again");
        }
    }
}
