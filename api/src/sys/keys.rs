//! `sys/key-status`, `sys/rotate` (a new keyring term, recorded by event) and
//! `sys/ledger/keys` (the ledger's public checkpoint keys, to pin for offline checks).

use serde_json::json;

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

pub fn key_status(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let term = ctx.state.seal.active_term();
    let installed = ctx
        .state
        .seal
        .keyring
        .get(&term)
        .map(|t| t.installed)
        .filter(|&t| t > 0)
        .unwrap_or_else(|| ctx.state.mounts.at_prefix("sys/").map(|m| m.enabled_at).unwrap_or(0));
    let encryptions = ctx.unsealed.env.keyring().wrap_count(term);
    Ok(Handled::Read(Reply::data_with_copy(json!({
        "term": term,
        "install_time": crate::time::rfc3339(installed),
        "encryptions": encryptions,
    }))))
}

pub async fn rotate(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    if !matches!(ctx.req.method.as_str(), "PUT" | "POST") {
        return Err(super::unsupported_operation());
    }
    let access = ctx.access(migrations::Outcome::Allowed);
    let committed = ctx
        .core()
        .rotate_keyring(ctx.unsealed, ctx.caller(), ctx.actor(), access)
        .await
        .map_err(|e| Reply::error(500, e.to_string()))?;
    committed.result.map_err(crate::http::rejection_reply)?;
    Ok(Handled::Recorded(Reply::NoContent))
}

pub fn ledger_keys(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let ledger = &ctx.unsealed.ledger;
    let keys: Vec<_> = ledger
        .keys()
        .iter()
        .map(|k| {
            json!({
                "key_id": k.key.id().to_hex(),
                "public_key": k.key.to_text(),
                "registered_at": k.registered_at,
                "retired_at": k.retired_at,
            })
        })
        .collect();
    let durable = ledger.durable();
    let checkpoint = durable.checkpoint.map(|c| c.to_saved(&ledger.id()));
    Ok(Handled::Read(Reply::data(json!({
        "ledger_id": hex::encode(ledger.id()),
        "keys": keys,
        "checkpoint": checkpoint,
    }))))
}
