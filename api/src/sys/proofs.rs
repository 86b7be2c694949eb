//! `sys/ledger/checkpoint` (the latest signed checkpoint, with its C2SP signed note) and
//! `sys/ledger/proof/{inclusion,consistency}` (RFC 9162 proofs between sizes of the
//! ledger). All need sudo (`sys::needs_sudo`). Proofs read the ledger from seq 1 up to the
//! larger size, so they run on a blocking thread (ARCHITECTURE.md, "Proofs").

use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

/// The `sys/ledger/<tail>` paths this module serves.
pub fn routes(tail: &str) -> bool {
    matches!(tail, "checkpoint" | "proof/inclusion" | "proof/consistency")
}

/// Serves `sys/ledger/<tail>` for a tail [`routes`] accepts.
pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    if ctx.req.method.as_str() != "GET" {
        return Err(super::unsupported_operation());
    }
    match tail {
        "checkpoint" => checkpoint(ctx),
        "proof/inclusion" => inclusion(ctx).await,
        "proof/consistency" => consistency(ctx).await,
        _ => Err(super::unsupported()),
    }
}

fn checkpoint(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let ledger = &ctx.unsealed.ledger;
    let cp = ledger.durable().checkpoint.ok_or_else(|| Reply::error(500, "the ledger has no checkpoint yet"))?;
    Ok(Handled::Read(Reply::data(checkpoint_json(ctx, &cp)?)))
}

/// A checkpoint as `sys/ledger/checkpoint` gives it: the saved form, the tree size, and the
/// C2SP signed note with its verifier key.
fn checkpoint_json(ctx: &Ctx<'_>, cp: &ledger::Checkpoint) -> Result<Value, Reply> {
    let ledger = &ctx.unsealed.ledger;
    let saved = cp.to_saved(&ledger.id());
    let (note, key) =
        ledger.checkpoint_note(cp).ok_or_else(|| Reply::error(503, "this node cannot sign checkpoint notes yet"))?;
    let mut data = serde_json::to_value(&saved).map_err(|e| Reply::error(500, e.to_string()))?;
    if let Value::Object(m) = &mut data {
        m.insert("tree_size".into(), json!(cp.last_seq));
        m.insert("note".into(), json!(note));
        m.insert("note_verifier_key".into(), json!(ledger::note::verifier_key(&ledger.id(), &key)));
    }
    Ok(data)
}

/// The size a proof is about when the request names none: the latest signed checkpoint's,
/// which the answer then carries (`checkpoint`), so the proof can be checked without a
/// second request racing the ledger's growth.
fn latest(ctx: &Ctx<'_>) -> Result<ledger::Checkpoint, Reply> {
    ctx.unsealed.ledger.durable().checkpoint.ok_or_else(|| Reply::error(500, "the ledger has no checkpoint yet"))
}

/// A proof answer, with the checkpoint it is against when that was defaulted.
fn proof_answer(
    ctx: &Ctx<'_>,
    proof: impl serde::Serialize,
    against: Option<ledger::Checkpoint>,
) -> Result<Handled, Reply> {
    let mut data = serde_json::to_value(&proof).map_err(|e| Reply::error(500, e.to_string()))?;
    if let (Some(cp), Value::Object(m)) = (against, &mut data) {
        m.insert("checkpoint".into(), checkpoint_json(ctx, &cp)?);
    }
    Ok(Handled::Read(Reply::data(data)))
}

/// A size or seq parameter: a decimal u64 (string or JSON number). Missing is `None`.
fn number(ctx: &Ctx<'_>, name: &str) -> Result<Option<u64>, Reply> {
    let bad = || Reply::error(400, format!("{name} must be a whole number from 1 to the ledger's last seq"));
    match ctx.req.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(Some).map_err(|_| bad())
        }
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn required(ctx: &Ctx<'_>, name: &str) -> Result<u64, Reply> {
    number(ctx, name)?.ok_or_else(|| Reply::error(400, format!("missing {name}")))
}

/// Runs a prover on a blocking thread; refusals of the asked sizes are 400s.
async fn prove<T, F>(ctx: &Ctx<'_>, f: F) -> Result<T, Reply>
where
    T: Send + 'static,
    F: FnOnce(&ledger::Ledger) -> Result<T, ledger::Error> + Send + 'static,
{
    let ledger = Arc::clone(&ctx.unsealed.ledger);
    match tokio::task::spawn_blocking(move || f(&ledger)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(ledger::Error::Invalid(m))) => Err(Reply::error(400, m)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot compute a ledger proof");
            Err(Reply::error(500, "cannot read the ledger to compute the proof"))
        }
        Err(e) => {
            tracing::error!(error = %e, "ledger proof task failed");
            Err(Reply::error(500, "internal error"))
        }
    }
}

async fn inclusion(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let seq = required(ctx, "seq")?;
    let (size, against) = match number(ctx, "tree_size")? {
        Some(n) => (n, None),
        None => latest(ctx).map(|cp| (cp.last_seq, Some(cp)))?,
    };
    let proof = prove(ctx, move |l| ledger::proof::prove_inclusion(l, seq, size)).await?;
    proof_answer(ctx, proof, against)
}

async fn consistency(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let first = required(ctx, "first")?;
    let (second, against) = match number(ctx, "second")? {
        Some(n) => (n, None),
        None => latest(ctx).map(|cp| (cp.last_seq, Some(cp)))?,
    };
    let proof = prove(ctx, move |l| ledger::proof::prove_consistency(l, first, second)).await?;
    proof_answer(ctx, proof, against)
}
