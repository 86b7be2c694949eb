//! Response wrapping: `X-Vault-Wrap-TTL` on any request, and `sys/wrapping/wrap`,
//! `unwrap`, `rewrap`, `lookup`. The wrapped answer lives sealed in the cubbyhole of a
//! single-use token with the `response-wrapping` policy; unwrapping ends the token and
//! erases the answer from the ledger.

use std::sync::Arc;

use commands::sequencer::Committed;
use commands::{Command, Env, RESPONSE_PATH, Reply as CmdReply, Request, Secret, WRAPPING_POLICY};
use migrations::Outcome as AccessOutcome;
use projections::State;
use projections::kv::{cubbyhole_mount, kv_v1_context};
use projections::token::Token;
use serde_json::{Value, json};

use crate::core::Unsealed;
use crate::http::reply::{Envelope, Reply, envelope_json};
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled, record_anonymous, rejection_reply};

/// The refusal for a wrapping token that is not (or no longer) valid.
const INVALID: &str = "wrapping token is not valid or does not exist";

/// Wraps a successful answer that carries data or auth; anything else goes out as is
/// (a 204 has nothing to wrap, an error is never wrapped).
pub async fn wrap_reply(unsealed: &Unsealed, req: &VaultRequest, reply: Reply, ttl: u64) -> Result<Reply, Reply> {
    let Reply::Envelope(e) = &reply else { return Ok(reply) };
    if e.status >= 300 || (e.data.is_none() && e.auth.is_none()) || e.wrap_info.is_some() {
        return Ok(reply);
    }
    let wrapped_accessor = e
        .auth
        .as_ref()
        .and_then(|a| a.get("accessor"))
        .or_else(|| e.data.as_ref().and_then(|d| d.get("secret_id_accessor")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Reply::Envelope(e) = reply else { return Err(Reply::error(500, "wrap: not an envelope")) };
    let body = envelope_json(*e, "");
    let creation_path = req.path.as_str().to_string();
    let command = Command::Wrap {
        response: Secret::new(body.to_string()),
        ttl,
        creation_path: creation_path.clone(),
        wrapped_accessor: wrapped_accessor.clone(),
    };
    let request = Request {
        caller: None,
        actor: crate::http::actor_of(None, req),
        request_id: crate::http::request_id_bytes(&req.id),
        access: None,
        command: Some(command),
    };
    let committed = unsealed.sequencer.submit(request).await.map_err(crate::http::unavailable)?;
    let Ok(CmdReply::Wrapped { token, accessor, creation_time }) = committed.result else {
        return Err(committed.result.err().map_or_else(|| Reply::error(500, "wrap failed"), rejection_reply));
    };
    let mut info = json!({
        "token": token,
        "accessor": accessor,
        "ttl": ttl,
        "creation_time": crate::time::rfc3339(creation_time),
        "creation_path": creation_path,
    });
    if !wrapped_accessor.is_empty() {
        info["wrapped_accessor"] = json!(wrapped_accessor);
    }
    Ok(Reply::envelope(Envelope { status: 200, wrap_info: Some(info), ..Envelope::default() }))
}

/// The wrapping token a request names: `token` in the body, else the request's own.
fn target(ctx: &Ctx<'_>) -> Result<Arc<Token>, Reply> {
    let t = match ctx.req.get_str("token").filter(|s| !s.is_empty()) {
        Some(id) => ctx.state.tokens.by_hash(&ctx.unsealed.env.token_hash(id)).cloned(),
        None => Some(ctx.token.clone()),
    };
    t.filter(|t| t.policies.iter().any(|p| p == WRAPPING_POLICY) && !t.expired(crate::core::now_nanos()))
        .ok_or_else(|| Reply::error(400, INVALID))
}

/// The wrapped answer, opened.
fn response(ctx: &Ctx<'_>, t: &Token) -> Result<Value, Reply> {
    let store = cubbyhole_mount(&t.accessor);
    let v = ctx.state.kv.v1(&store, RESPONSE_PATH).ok_or_else(|| Reply::error(400, INVALID))?;
    let plain = ctx
        .unsealed
        .env
        .open(&v.sealed, &v.slot, &kv_v1_context(&store, RESPONSE_PATH))
        .map_err(|_| Reply::error(500, "cannot open the wrapped response"))?;
    serde_json::from_slice(&plain).map_err(|_| Reply::error(500, "the wrapped response is not JSON"))
}

pub fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    if !matches!(ctx.req.method.as_str(), "POST" | "PUT") {
        return Err(super::unsupported_operation());
    }
    match tail {
        "wrap" => {
            if ctx.req.wrap_ttl.is_none() {
                return Err(Reply::error(400, "endpoint requires response wrapping to be used"));
            }
            Ok(Handled::Read(Reply::data(Value::Object(ctx.req.data.clone()))))
        }
        "unwrap" => {
            let t = target(ctx)?;
            let mut answer = response(ctx, &t)?;
            answer["request_id"] = json!(ctx.req.id);
            Ok(Handled::Write {
                command: Command::Unwrap { accessor: t.accessor.clone() },
                render: Box::new(move |_: &Committed| Reply::Raw(200, answer)),
            })
        }
        "rewrap" => {
            let t = target(ctx)?;
            let ttl = t.creation_ttl;
            let path = t.path.clone();
            let wrapped = t.meta.get("wrapped_accessor").cloned().unwrap_or_default();
            Ok(Handled::Write {
                command: Command::Rewrap { accessor: t.accessor.clone() },
                render: Box::new(move |c: &Committed| match &c.result {
                    Ok(CmdReply::Wrapped { token, accessor, creation_time }) => {
                        let mut info = json!({
                            "token": token,
                            "accessor": accessor,
                            "ttl": ttl,
                            "creation_time": crate::time::rfc3339(*creation_time),
                            "creation_path": path,
                        });
                        if !wrapped.is_empty() {
                            info["wrapped_accessor"] = json!(wrapped);
                        }
                        Reply::envelope(Envelope { status: 200, wrap_info: Some(info), ..Envelope::default() })
                    }
                    _ => Reply::error(500, "unexpected reply to rewrap"),
                }),
            })
        }
        "lookup" => Err(Reply::error(500, "sys/wrapping/lookup is answered before the token check")),
        _ => Err(super::unsupported()),
    }
}

/// An unwrap with a wrapping token that is used up, expired or unknown: recorded, and
/// refused with 400.
pub async fn invalid(unsealed: &Arc<Unsealed>, req: &VaultRequest, state: &Arc<State>) -> Result<Reply, Reply> {
    record_anonymous(unsealed, req, state, AccessOutcome::Failed(400), None).await?;
    Err(Reply::error(400, INVALID))
}

/// `sys/wrapping/lookup`: unauthenticated, the wrapping token in the body.
pub async fn lookup(unsealed: &Arc<Unsealed>, req: &VaultRequest, state: &Arc<State>) -> Result<Reply, Reply> {
    let found = req
        .get_str("token")
        .filter(|s| !s.is_empty())
        .and_then(|id| state.tokens.by_hash(&unsealed.env.token_hash(id)))
        .filter(|t| t.policies.iter().any(|p| p == WRAPPING_POLICY) && !t.expired(crate::core::now_nanos()))
        .cloned();
    let outcome = if found.is_some() { AccessOutcome::Allowed } else { AccessOutcome::Failed(400) };
    record_anonymous(unsealed, req, state, outcome, None).await?;
    let t = found.ok_or_else(|| Reply::error(400, INVALID))?;
    Ok(Reply::data(json!({
        "creation_path": t.path,
        "creation_time": crate::time::rfc3339(t.issue_time),
        "creation_ttl": t.creation_ttl,
    })))
}
