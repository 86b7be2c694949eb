//! The `sys/` endpoints that answer without a token and while sealed: `init`,
//! `seal-status`, `unseal`, `health`, `leader` — raw JSON, no envelope — and `seal`.

use std::sync::Arc;

use axum::http::Method;
use base64::Engine;
use serde_json::{Value, json};

use crate::core::{Core, CoreError, now_nanos};
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled};

/// Answers the unauthenticated endpoints; `None` for every other path.
pub async fn unauthenticated(core: &Arc<Core>, req: &VaultRequest) -> Option<Reply> {
    let path = req.path.as_str();
    let m = &req.method;
    Some(match path {
        "sys/init" if *m == Method::GET => {
            // A node joining a cluster counts as initialized, as in Vault: it unseals next.
            Reply::Raw(200, json!({ "initialized": core.shows_initialized() }))
        }
        "sys/init" if *m == Method::PUT || *m == Method::POST => init(core, req).await,
        "sys/seal-status" if *m == Method::GET => status(core).await,
        "sys/unseal" if *m == Method::PUT || *m == Method::POST => unseal(core, req).await,
        "sys/health" if *m == Method::GET || *m == Method::HEAD => health(core, req).await,
        "sys/leader" if *m == Method::GET => leader(core).await,
        "sys/storage/raft/join" => return crate::sys::raft::join(core, req).await,
        "sys/storage/raft/bootstrap/challenge" => return crate::sys::raft::bootstrap_challenge(core, req),
        "sys/init" | "sys/seal-status" | "sys/unseal" | "sys/health" | "sys/leader" => Reply::Error(405, Vec::new()),
        "sys/seal" if !(*m == Method::PUT || *m == Method::POST) => Reply::Error(405, Vec::new()),
        // Sealing a sealed server is a no-op success; unsealed, the request goes through
        // the token and sudo checks like any other.
        "sys/seal" if core.unsealed().await.is_none() && core.is_initialized() => Reply::NoContent,
        _ => return None,
    })
}

async fn status(core: &Core) -> Reply {
    let unsealed = core.unsealed().await.is_some();
    Reply::Raw(200, serde_json::to_value(core.seal_status(unsealed)).unwrap_or(Value::Null))
}

fn core_error(e: CoreError) -> Reply {
    match e {
        CoreError::Internal(m) => {
            tracing::error!(error = %m, "barrier operation failed");
            Reply::error(500, m)
        }
        // OpenBao answers 400 when its post-unseal setup cannot create a declared device.
        e @ CoreError::AuditConfig(_) => {
            tracing::error!(error = %e, "unseal refused");
            Reply::error(400, e.to_string())
        }
        CoreError::Ledger(e) => {
            tracing::error!(error = %e, "barrier operation failed in the ledger");
            Reply::error(500, e.to_string())
        }
        other => Reply::error(400, other.to_string()),
    }
}

async fn init(core: &Arc<Core>, req: &VaultRequest) -> Reply {
    let (shares, threshold) = match (count(req, "secret_shares"), count(req, "secret_threshold")) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if req.get("pgp_keys").is_some_and(|v| !v.is_null())
        || req.get("recovery_pgp_keys").is_some_and(|v| !v.is_null())
        || req.get("root_token_pgp_key").is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        return Reply::error(400, "PGP-encrypted key shares are not supported by this server");
    }
    if let Some(kind) = core.auto_seal_kind() {
        return init_auto(core, req, kind, shares, threshold).await;
    }
    let (shares, threshold) =
        (usize::try_from(shares).unwrap_or(usize::MAX), usize::try_from(threshold).unwrap_or(usize::MAX));
    match core.init(shares, threshold, None, false).await {
        Ok((keys, root_token, _)) => {
            let hex: Vec<String> = keys.iter().map(|k| hex::encode(&**k)).collect();
            let b64: Vec<String> =
                keys.iter().map(|k| base64::engine::general_purpose::STANDARD.encode(&**k)).collect();
            Reply::Raw(200, json!({ "keys": hex, "keys_base64": b64, "root_token": root_token }))
        }
        Err(e) => core_error(e),
    }
}

/// `sys/init` with an auto-unseal seal: recovery shares, then unseal through the key service
/// at once (as OpenBao does). `secret_shares`/`secret_threshold` must be absent or 0.
async fn init_auto(core: &Arc<Core>, req: &VaultRequest, kind: &str, shares: u64, threshold: u64) -> Reply {
    let given: Vec<&str> = [("secret_shares", shares), ("secret_threshold", threshold)]
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(name, _)| *name)
        .collect();
    if !given.is_empty() {
        return Reply::error(400, format!("parameters {} not applicable to seal type {kind}", given.join(",")));
    }
    let (rshares, rthreshold) = match (count(req, "recovery_shares"), count(req, "recovery_threshold")) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if rshares > 1 && rthreshold < 2 {
        return Reply::error(
            400,
            "invalid recovery configuration: threshold must be greater than one for multiple shares",
        );
    }
    let (rshares, rthreshold) =
        (usize::try_from(rshares).unwrap_or(usize::MAX), usize::try_from(rthreshold).unwrap_or(usize::MAX));
    if let Err(e) = barrier::shamir::check_config(rshares, rthreshold) {
        return Reply::error(
            400,
            e.to_string().replace("invalid seal configuration", "invalid recovery configuration"),
        );
    }
    match core.init(rshares, rthreshold, None, false).await {
        Ok((keys, root_token, _)) => {
            // Unseal now; if the key service fails in between, keep trying in the background.
            match core.auto_unseal().await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "auto-unseal after init failed; retrying in the background");
                    tokio::spawn(crate::seal::auto_unseal_with_retry(core.clone()));
                }
            }
            let hex: Vec<String> = keys.iter().map(|k| hex::encode(&**k)).collect();
            let b64: Vec<String> =
                keys.iter().map(|k| base64::engine::general_purpose::STANDARD.encode(&**k)).collect();
            Reply::Raw(
                200,
                json!({ "keys": [], "keys_base64": [], "recovery_keys": hex, "recovery_keys_base64": b64, "root_token": root_token }),
            )
        }
        Err(e) => core_error(e),
    }
}

async fn unseal(core: &Core, req: &VaultRequest) -> Reply {
    if !core.shows_initialized() {
        return Reply::error(400, "Vault is not initialized");
    }
    let reset = req.get("reset").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    let share = match req.get_str("key").filter(|_| !reset) {
        None if !reset => {
            return Reply::error(400, "'key' must be specified in request body as JSON, or 'reset' set to true");
        }
        None => None,
        Some(k) => match barrier::decode_share(k) {
            Some(bytes) => Some(bytes),
            None => return Reply::error(400, "'key' must be a valid hex or base64 string"),
        },
    };
    match core.unseal_step(share, reset).await {
        Ok(_) => status(core).await,
        Err(e) => core_error(e),
    }
}

/// `sys/leader`: `{"ha_enabled": false}` on one node; in a cluster, who leads (Vault's
/// shape, with the Raft indexes).
async fn leader(core: &Core) -> Reply {
    let Some(node) = core.cluster() else {
        return Reply::Raw(200, json!({ "ha_enabled": false }));
    };
    let s = node.status();
    let (api, cluster) =
        s.leader.as_ref().map(|(_, m)| (m.api_addr.clone(), m.cluster_addr.clone())).unwrap_or_default();
    Reply::Raw(
        200,
        json!({
            "ha_enabled": true,
            "is_self": s.is_leader && core.unsealed().await.is_some(),
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": api,
            "leader_cluster_address": if cluster.is_empty() { String::new() } else { format!("http://{cluster}") },
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
            "raft_committed_index": s.committed_index.unwrap_or(0),
            "raft_applied_index": s.applied_index.unwrap_or(0),
        }),
    )
}

async fn health(core: &Core, req: &VaultRequest) -> Reply {
    let initialized = core.shows_initialized();
    let unsealed = core.unsealed().await.is_some();
    let standby = !unsealed || core.cluster().is_some_and(|n| !n.is_leader());
    // A status code that cannot be read is refused, as Vault's `bad code value`.
    for (name, v) in &req.query {
        if name.ends_with("code") && v.parse::<u16>().map_or(true, |c| !(100..=599).contains(&c)) {
            return Reply::error(400, format!("bad code value: {name}={v:?}"));
        }
    }
    let code = |name: &str, default: u16| req.query.get(name).and_then(|v| v.parse::<u16>().ok()).unwrap_or(default);
    let standby_ok = req.query.get("standbyok").is_some_and(|v| matches!(v.as_str(), "" | "true" | "1"));
    let status = if !initialized {
        code("uninitcode", 501)
    } else if !unsealed {
        code("sealedcode", 503)
    } else if standby && !standby_ok {
        code("standbycode", 429)
    } else {
        code("activecode", 200)
    };
    let mut body = json!({
        "initialized": initialized,
        "sealed": !unsealed,
        "standby": standby,
        "replication_performance_mode": if unsealed { "disabled" } else { "unknown" },
        "replication_dr_mode": if unsealed { "disabled" } else { "unknown" },
        "server_time_utc": now_nanos() / 1_000_000_000,
        "version": crate::core::VERSION,
    });
    if unsealed {
        let s = core.seal_status(true);
        body["cluster_name"] = json!(s.cluster_name);
        body["cluster_id"] = json!(s.cluster_id);
    }
    if req.method == Method::HEAD {
        return Reply::Empty(status);
    }
    Reply::Raw(status, body)
}

/// `sys/seal` (sudo): records the seal, then drops every key.
pub async fn seal(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    // The access event and the seal record go in before the barrier closes.
    let access = ctx.access(migrations::Outcome::Allowed);
    let request = commands::Request {
        caller: Some(ctx.caller()),
        actor: ctx.actor(),
        request_id: crate::core::random_id(),
        access: Some(access),
        command: None,
    };
    ctx.unsealed.sequencer.submit(request).await.map_err(|e| Reply::error(503, e.to_string()))?;
    ctx.core().seal(ctx.actor()).await.map_err(core_error)?;
    Ok(Handled::Recorded(Reply::NoContent))
}

/// A share count of `sys/init`: a whole number, 0 when not given.
fn count(req: &VaultRequest, key: &str) -> Result<u64, Reply> {
    Ok(crate::http::fields::count(&req.data, key, &format!("{key} cannot be negative"))?.unwrap_or(0))
}
