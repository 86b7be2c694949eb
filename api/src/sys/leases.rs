//! `sys/leases/…` (openbao-api.md §2.9): lookup, list, renew, revoke, revoke-prefix,
//! revoke-force. Revocations are synchronous unless `sync=false`: the credential is gone
//! from its backend before the answer leaves.

use std::sync::Arc;

use commands::{Command, Reply as CmdReply};
use migrations::LeaseEnd;
use projections::lease::Lease;
use serde_json::{Value, json};

use crate::core::now_nanos;
use crate::duration::parse_duration_value;
use crate::http::reply::{Envelope, Reply};
use crate::http::{Ctx, Handled};
use crate::leases::{record_failures, revoke_in_backends};
use crate::sys::{unsupported, unsupported_operation};

const NANOS: u64 = 1_000_000_000;

pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    let write = matches!(ctx.req.method.as_str(), "PUT" | "POST");
    let (head, rest) = tail.split_once('/').unwrap_or((tail, ""));
    match head {
        "lookup" if ctx.req.list => list(ctx, rest),
        "lookup" if write && rest.is_empty() => lookup(ctx),
        "renew" if write => renew(ctx, rest).await,
        "revoke" if write => {
            let id = lease_id(ctx, rest);
            let leases = ctx.state.leases.get(&id).cloned().into_iter().collect();
            revoke(ctx, leases, LeaseEnd::Revoked).await
        }
        "revoke-prefix" | "revoke-force" if rest.is_empty() => Err(unsupported()),
        "revoke-prefix" if write => {
            let leases = leases_under_prefix(ctx, rest);
            revoke(ctx, leases, LeaseEnd::Prefix).await
        }
        "revoke-force" if write => {
            let leases = leases_under_prefix(ctx, rest);
            revoke(ctx, leases, LeaseEnd::Forced).await
        }
        "lookup" | "renew" | "revoke" | "revoke-prefix" | "revoke-force" => Err(unsupported_operation()),
        _ => Err(unsupported()),
    }
}

/// The lease id of a request: the body's `lease_id`, or the rest of the path.
fn lease_id(ctx: &Ctx<'_>, rest: &str) -> String {
    ctx.req.get_str("lease_id").filter(|s| !s.is_empty()).unwrap_or(rest).to_string()
}

/// The leases a revoke-prefix of `prefix` ends, as Vault picks them: the lease whose id is
/// exactly `prefix`, or else those under `prefix/` (so `database/creds/app` never reaches
/// the leases of a role `app2`).
fn leases_under_prefix(ctx: &Ctx<'_>, prefix: &str) -> Vec<Arc<Lease>> {
    if prefix.ends_with('/') {
        return ctx.state.leases.under(prefix);
    }
    match ctx.state.leases.get(prefix) {
        Some(lease) => vec![lease.clone()],
        None => ctx.state.leases.under(&format!("{prefix}/")),
    }
}

fn list(ctx: &Ctx<'_>, prefix: &str) -> Result<Handled, Reply> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
    let keys = ctx.state.leases.list(&prefix);
    if keys.is_empty() {
        return Err(Reply::not_found());
    }
    Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
}

fn lookup(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let id = lease_id(ctx, "");
    let lease = ctx.state.leases.get(&id).ok_or_else(|| Reply::error(400, "invalid lease"))?;
    Ok(Handled::Read(Reply::data(lookup_data(lease, now_nanos()))))
}

/// What lookup shows: Vault's fields, plus cairn's record of failed revocations.
fn lookup_data(l: &Lease, now: u64) -> Value {
    let mut data = json!({
        "id": &*l.id,
        "path": l.path,
        "issue_time": crate::time::rfc3339(l.issue_time),
        "expire_time": crate::time::rfc3339(l.expire_time),
        "last_renewal": if l.last_renewal > 0 { Value::String(crate::time::rfc3339(l.last_renewal)) } else { Value::Null },
        "renewable": l.renewable && !l.revoke_requested,
        "ttl": l.expire_time.saturating_sub(now) / NANOS,
    });
    if l.attempts > 0
        && let Some(map) = data.as_object_mut()
    {
        map.insert("revocation_attempts".into(), json!(l.attempts));
        map.insert("last_revocation_error".into(), json!(l.last_error));
        map.insert("next_revocation_attempt".into(), json!(crate::time::rfc3339(l.next_attempt)));
    }
    data
}

async fn renew(ctx: &Ctx<'_>, rest: &str) -> Result<Handled, Reply> {
    let id = lease_id(ctx, rest);
    if id.starts_with("auth/") {
        return Err(Reply::error(400, "tokens cannot be renewed through this endpoint"));
    }
    let lease = ctx.state.leases.get(&id).cloned().ok_or_else(|| Reply::error(400, "lease not found"))?;
    let increment = match ctx.req.get("increment") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_duration_value(v).map_err(|e| Reply::error(400, format!("invalid increment: {e}")))?)
            .filter(|&i| i > 0),
    };
    if !lease.renewable || lease.revoke_requested {
        return Err(Reply::error(400, "lease is not renewable"));
    }
    crate::engines::database::runtime::renew_lease_user(ctx.unsealed, &ctx.state, &lease)
        .await
        .map_err(|e| Reply::error(400, format!("failed to renew the database user: {e}")))?;
    let default_ttl = crate::engines::database::runtime::lease_default_ttl(ctx, &lease);
    Ok(Handled::Write {
        command: Command::RenewLease { lease_id: id, increment, default_ttl },
        render: Box::new(|c| match &c.result {
            Ok(CmdReply::LeaseRenewed { lease_id, ttl, warnings }) => Reply::envelope(Envelope {
                status: 200,
                lease_id: lease_id.clone(),
                renewable: true,
                lease_duration: *ttl,
                warnings: warnings.clone(),
                ..Envelope::default()
            }),
            _ => Reply::NoContent,
        }),
    })
}

/// Revokes leases in their backends, then records what was revoked (with this request's
/// access event) and what failed (retried by the scheduler with back-off).
async fn revoke(ctx: &Ctx<'_>, leases: Vec<Arc<Lease>>, reason: LeaseEnd) -> Result<Handled, Reply> {
    let sync = ctx.req.get("sync").is_none_or(|v| !matches!(v, Value::Bool(false)) && v.as_str() != Some("false"));
    if leases.is_empty() {
        return Ok(Handled::Read(if sync { Reply::NoContent } else { Reply::Empty(202) }));
    }
    if !sync {
        // The revocation runs in the background; failures are recorded and retried like
        // any other, so the lease still goes.
        let (unsealed, state) = (ctx.unsealed.clone(), ctx.state.clone());
        tokio::spawn(async move {
            let ids: Vec<String> = leases.iter().map(|l| l.id.to_string()).collect();
            let attempts = revoke_in_backends(&unsealed, &state, leases).await;
            record_failures(&unsealed, attempts.failed).await;
            let revoked: Vec<String> = ids.into_iter().filter(|id| attempts.revoked.contains(id)).collect();
            if !revoked.is_empty()
                && let Err(e) =
                    unsealed.submit_as_system(Command::RecordLeasesRevoked { lease_ids: revoked, reason }).await
            {
                tracing::error!(error = %e, "could not record revoked leases");
            }
        });
        let reply = Reply::Empty(202);
        ctx.finish(None, &reply).await?;
        return Ok(Handled::Recorded(reply));
    }
    let attempts = revoke_in_backends(ctx.unsealed, &ctx.state, leases).await;
    let (lease_ids, reply) = if reason == LeaseEnd::Forced {
        // Forced: gone from cairn whatever the backend said (the errors are in the log).
        for (id, e) in &attempts.failed {
            tracing::warn!(lease_id = %id, error = %e, "revoke-force: backend revocation failed; dropping the lease anyway");
        }
        let all = attempts.revoked.into_iter().chain(attempts.failed.into_iter().map(|(id, _)| id)).collect();
        (all, Reply::NoContent)
    } else if let Some((id, e)) = attempts.failed.first() {
        let msg = format!("failed to revoke lease: lease_id={id}: {e} (it will be retried)");
        let reply = Reply::error(400, msg);
        record_failures(ctx.unsealed, attempts.failed).await;
        (attempts.revoked, reply)
    } else {
        (attempts.revoked, Reply::NoContent)
    };
    let committed = ctx.finish(Some(Command::RecordLeasesRevoked { lease_ids, reason }), &reply).await?;
    committed.result.map_err(crate::http::rejection_reply)?;
    Ok(Handled::Recorded(reply))
}

/// Revokes every lease under `prefix` now, as a step of this request (a mount going away).
/// A failure is recorded (and retried later) and answers 400: the caller must not go on.
pub async fn revoke_under(ctx: &Ctx<'_>, prefix: &str, reason: LeaseEnd) -> Result<(), Reply> {
    let leases = ctx.state.leases.under(prefix);
    if leases.is_empty() {
        return Ok(());
    }
    let attempts = revoke_in_backends(ctx.unsealed, &ctx.state, leases).await;
    if !attempts.revoked.is_empty() {
        ctx.commit_step(Command::RecordLeasesRevoked { lease_ids: attempts.revoked, reason }).await?;
    }
    if let Some((id, e)) = attempts.failed.first() {
        let msg = format!("failed to revoke {prefix:?}: lease_id={id}: {e} (it will be retried)");
        record_failures(ctx.unsealed, attempts.failed).await;
        return Err(Reply::error(400, msg));
    }
    Ok(())
}
