//! The lease runtime: revoking a lease's credential where it lives, recording what came of
//! it, and the scheduler that revokes leases once they are due.
//!
//! The order is always the same: the backend first (drop the database user), then the
//! ledger (`LeaseRevoked`). A crash in between leaves a live lease whose user is already
//! gone; the next attempt finds nothing to drop and records the revocation. A failed
//! attempt is recorded too (`LeaseRevocationFailed`, with the back-off), so lookup and
//! forensics see every try.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commands::sequencer::Committed;
use commands::{Command, Request};
use migrations::{LeaseEnd, LeaseSecret};
use projections::State;
use projections::lease::Lease;
use tokio::task::JoinSet;

use crate::core::{Core, Unsealed, now_nanos, random_id};

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
    if let Err(e) = system(unsealed, Command::RecordRevocationFailures { failures }).await {
        tracing::error!(error = %e, "could not record failed lease revocations");
    }
}

/// Submits a command as the system (no caller, no access event) and waits until durable.
pub async fn system(unsealed: &Unsealed, command: Command) -> Result<Committed, commands::sequencer::SequencerError> {
    let request = Request {
        caller: None,
        actor: ledger::Actor::system(),
        request_id: random_id(),
        access: None,
        command: Some(command),
    };
    unsealed.sequencer.submit(request).await
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
pub async fn scheduler(core: Arc<Core>) {
    // Leases being revoked right now (an API revoke may hold some too: dropping a user
    // twice is harmless, recording twice is filtered by the rules).
    let in_flight: Arc<Mutex<HashSet<Arc<str>>>> = Arc::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(unsealed) = core.unsealed().await else { continue };
        let state = core.state.load_full();
        let now = now_nanos();
        let due: Vec<Arc<Lease>> = {
            let Ok(mut busy) = in_flight.lock() else { return };
            let due: Vec<_> = state.leases.due(now, ROUND).into_iter().filter(|l| !busy.contains(&l.id)).collect();
            busy.extend(due.iter().map(|l| l.id.clone()));
            due
        };
        if due.is_empty() {
            crate::engines::database::runtime::rotate_due_static_roles(&unsealed, &core.state).await;
            continue;
        }
        let reasons: Vec<(String, LeaseEnd)> =
            due.iter().map(|l| (l.id.to_string(), end_reason(&state, l, now))).collect();
        let ids: Vec<Arc<str>> = due.iter().map(|l| l.id.clone()).collect();
        let attempts = revoke_in_backends(&unsealed, &state, due).await;
        record_revoked(&unsealed, &attempts.revoked, &reasons).await;
        record_failures(&unsealed, attempts.failed).await;
        if let Ok(mut busy) = in_flight.lock() {
            for id in ids {
                busy.remove(&id);
            }
        }
        crate::engines::database::runtime::rotate_due_static_roles(&unsealed, &core.state).await;
    }
}

/// Records revocations grouped by reason.
async fn record_revoked(unsealed: &Unsealed, revoked: &[String], reasons: &[(String, LeaseEnd)]) {
    let done: HashSet<&str> = revoked.iter().map(String::as_str).collect();
    for reason in [LeaseEnd::Expired, LeaseEnd::TokenRevoked, LeaseEnd::Revoked] {
        let lease_ids: Vec<String> = reasons
            .iter()
            .filter(|(id, r)| *r == reason && done.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        if lease_ids.is_empty() {
            continue;
        }
        if let Err(e) = system(unsealed, Command::RecordLeasesRevoked { lease_ids, reason }).await {
            tracing::error!(error = %e, "could not record revoked leases; they will be revoked again");
        }
    }
}
