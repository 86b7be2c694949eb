//! `sys/storage/raft/…`, Vault's shapes: `join` (unauthenticated, on the joining node),
//! `configuration` (the peers, as `bao operator raft list-peers` reads them) and
//! `remove-peer`. On a single node (`storage "sled"`) every path is 404, as OpenBao
//! answers on storage without raft.

use serde_json::json;

use crate::cluster::Node;
use crate::core::Core;
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled};

/// `sys/storage/raft/join`, answered without a token: the node asks `leader_api_addr` to
/// add it (Vault's body; `retry` makes it keep trying in the background).
pub async fn join(core: &Core, req: &VaultRequest) -> Option<Reply> {
    if req.path.trim_end_matches('/') != "sys/storage/raft/join" {
        return None;
    }
    if !matches!(req.method.as_str(), "PUT" | "POST") {
        return Some(Reply::Error(405, Vec::new()));
    }
    let Some(node) = core.cluster() else {
        return Some(Reply::error(404, "unsupported path"));
    };
    let Some(leader) = req.get_str("leader_api_addr").filter(|s| !s.is_empty()) else {
        return Some(Reply::error(400, "leader_api_addr is required"));
    };
    if node.cluster.is_initialized() {
        return Some(Reply::Raw(200, json!({ "joined": true })));
    }
    // A join can meet a membership change already under way (another node joining): it
    // is tried again for a while before the answer. With `retry`, it goes on in the
    // background after that, as Vault's does.
    let retry = req.get("retry").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    let mut last = String::new();
    for _ in 0..JOIN_ATTEMPTS {
        match node.join(leader).await {
            Ok(()) => return Some(Reply::Raw(200, json!({ "joined": true }))),
            Err(e) => last = e,
        }
        if node.cluster.is_initialized() {
            return Some(Reply::Raw(200, json!({ "joined": true })));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if !retry {
        return Some(Reply::error(500, format!("failed to join raft cluster: {last}")));
    }
    tracing::info!(error = %last, "join failed; retrying in the background");
    let (node, leader) = (node.clone(), leader.to_owned());
    tokio::spawn(async move {
        for _ in 0..120 {
            if node.cluster.is_initialized() || node.join(&leader).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Some(Reply::Raw(200, json!({ "joined": false })))
}

/// Tries of a join request before it answers.
const JOIN_ATTEMPTS: usize = 10;

/// The authenticated `sys/storage/raft/*` paths.
pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    let Some(node) = ctx.core().cluster() else {
        return Err(Reply::error(404, "unsupported path"));
    };
    let method = ctx.req.method.as_str();
    match tail {
        "configuration" if method == "GET" => Ok(Handled::Read(Reply::data(configuration(node)))),
        "remove-peer" if matches!(method, "PUT" | "POST") => remove_peer(ctx, node).await,
        "configuration" | "remove-peer" => Err(super::unsupported_operation()),
        _ => Err(super::unsupported()),
    }
}

/// Vault's `{"config": {"servers": […], "index": N}}`.
pub fn configuration(node: &Node) -> serde_json::Value {
    let status = node.status();
    let leader = status.leader.as_ref().map(|(id, _)| id.clone());
    let servers: Vec<_> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "node_id": m.id,
                "address": m.member.cluster_addr,
                "leader": leader.as_deref() == Some(m.id.as_str()),
                "protocol_version": "3",
                "voter": m.voter,
            })
        })
        .collect();
    json!({ "config": { "servers": servers, "index": status.committed_index.unwrap_or(0) } })
}

async fn remove_peer(ctx: &Ctx<'_>, node: &Node) -> Result<Handled, Reply> {
    let id = ctx
        .req
        .get_str("server_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Reply::error(400, "no server id provided"))?;
    if !node.status().members.iter().any(|m| m.id == id) {
        return Err(Reply::error(400, format!("server {id} is not a member of the cluster")));
    }
    node.cluster.remove(id).await.map_err(|e| Reply::error(500, format!("failed to remove peer: {e}")))?;
    tracing::info!(peer = %id, "removed from the cluster");
    Ok(Handled::Read(Reply::NoContent))
}
