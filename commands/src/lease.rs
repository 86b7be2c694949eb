//! Rules of leases: issue (the lease exists before its credential), renew (never past
//! the max TTL), and the recording of revocations and failed attempts with back-off.

use migrations::{Event, LeaseEnd, LeaseIssued, LeaseRenewed, LeaseRevocationFailed, LeaseRevoked, LeaseSecret};
use projections::State;
use projections::token::Token;

use crate::decide::{Decided, event};
use crate::ids::new_accessor;
use crate::{Env, Rejection, Reply};

const NANOS: u64 = 1_000_000_000;
/// Back-off of failed revocations: 1 s, doubling, at most 5 minutes.
const FIRST_RETRY_SECS: u64 = 1;
const MAX_RETRY_SECS: u64 = 300;

/// A lease to issue for a credential about to be created at `path` of `mount` (uuid).
pub(crate) struct Issue<'a> {
    pub path: &'a str,
    pub mount: &'a str,
    pub ttl: u64,
    pub max_ttl: u64,
    pub secret: &'a LeaseSecret,
}

/// Issues a lease (the request's token owns it).
pub(crate) fn issue(state: &State, token: Option<&Token>, req: Issue<'_>, env: &dyn Env) -> Decided {
    let Issue { path, mount, ttl, max_ttl, secret } = req;
    let token = token.ok_or(Rejection::PermissionDenied)?;
    if state.mounts.get(mount).is_none() {
        return Err(Rejection::invalid("no such mount"));
    }
    let now = env.now();
    let max_ttl = if max_ttl == 0 { ttl } else { max_ttl };
    let ttl = ttl.min(max_ttl);
    let lease_id = format!("{}/{}", path.trim_end_matches('/'), new_accessor(env)?);
    let e = LeaseIssued {
        lease_id: lease_id.clone(),
        path: path.to_string(),
        mount: mount.to_string(),
        issue_time: now,
        expire_time: now + ttl * NANOS,
        max_expire_time: now + max_ttl * NANOS,
        renewable: true,
        token: token.accessor.clone(),
        secret: secret.clone(),
    };
    Ok((vec![event(Event::LeaseIssued(e))], Reply::LeaseIssued { lease_id, ttl }))
}

/// Renews a lease: the new TTL counts from now, capped at the lease's max expiry.
pub(crate) fn renew(state: &State, lease_id: &str, increment: Option<u64>, default_ttl: u64, env: &dyn Env) -> Decided {
    let lease = state.leases.get(lease_id).ok_or_else(|| Rejection::invalid("lease not found"))?;
    if !lease.renewable || lease.revoke_requested {
        return Err(Rejection::invalid("lease is not renewable"));
    }
    let now = env.now();
    if now >= lease.max_expire_time || lease.expire_time >= lease.max_expire_time {
        return Err(Rejection::invalid("lease is at its max TTL and cannot be renewed further"));
    }
    let wanted = increment.unwrap_or(default_ttl);
    let mut expire = now + wanted * NANOS;
    let mut warnings = Vec::new();
    if expire > lease.max_expire_time {
        expire = lease.max_expire_time;
        warnings.push(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            crate::duration::format_go_duration(wanted),
            crate::duration::format_go_duration((expire - now) / NANOS)
        ));
    }
    let e = LeaseRenewed { lease_id: lease_id.to_string(), expire_time: expire, time: now };
    Ok((
        vec![event(Event::LeaseRenewed(e))],
        Reply::LeaseRenewed { lease_id: lease_id.to_string(), ttl: (expire - now) / NANOS, warnings },
    ))
}

/// Records that leases were revoked (their credentials are gone, or `Forced`).
pub(crate) fn revoked(state: &State, lease_ids: &[String], reason: LeaseEnd, env: &dyn Env) -> Decided {
    let now = env.now();
    let effects = lease_ids
        .iter()
        .filter(|id| state.leases.get(id).is_some())
        .map(|id| event(Event::LeaseRevoked(LeaseRevoked { lease_id: id.clone(), reason, time: now })))
        .collect();
    Ok((effects, Reply::Done))
}

/// Records failed revocation attempts and when to try each again (exponential back-off).
pub(crate) fn revocation_failed(state: &State, failures: &[(String, String)], env: &dyn Env) -> Decided {
    let now = env.now();
    let mut effects = Vec::new();
    for (lease_id, error) in failures {
        let Some(lease) = state.leases.get(lease_id) else { continue };
        let attempt = lease.attempts + 1;
        let delay = FIRST_RETRY_SECS.saturating_mul(1 << (attempt - 1).min(20)).min(MAX_RETRY_SECS);
        effects.push(event(Event::LeaseRevocationFailed(LeaseRevocationFailed {
            lease_id: lease_id.clone(),
            attempt,
            error: error.chars().take(1000).collect(),
            next_attempt: now + delay * NANOS,
            time: now,
        })));
    }
    Ok((effects, Reply::Done))
}
