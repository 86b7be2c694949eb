//! `sys/storage/raft/…`, Vault's shapes: `join` (unauthenticated, on the joining node),
//! `bootstrap/challenge` (unauthenticated, on a member: the seal material a joining node
//! needs, see [`crate::cluster::join`]),
//! `configuration` (the peers, as `bao operator raft list-peers` reads them),
//! `remove-peer`, and `snapshot` (save with GET; restore with POST, also
//! `snapshot-force`). On a single node (`storage "sled"`) every path is 404, as OpenBao
//! answers on storage without raft.
//!
//! **Snapshots** are the ledger itself: [`SNAPSHOT_MAGIC`], then every durable frame as
//! stored. A snapshot is restored only into a new cluster (not initialized): its frames
//! are proposed one by one, so each is checked (chain, Merkle root, signature) and
//! replicated like any other, and the cluster's ledger becomes the snapshot's, byte for
//! byte. Restoring over an initialized cluster is refused: its ledger is append-only and
//! is never replaced. The restored cluster is unsealed with the snapshot's keys.

use serde_json::json;

use crate::cluster::Node;
use crate::core::Core;
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled};

/// `sys/storage/raft/join`, answered without a token: the node asks `leader_api_addr` to
/// add it (Vault's body; `retry` makes it keep trying in the background).
pub async fn join(core: &Core, req: &VaultRequest) -> Option<Reply> {
    if req.path.as_str() != "sys/storage/raft/join" {
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
    // A member whose ledger holds the cluster's initialization has nothing to join. One
    // without it (stopped between being added and receiving the ledger) fetches the seal
    // material again, so that its unseal can complete the join.
    if node.cluster.is_initialized() && core.is_initialized() {
        return Some(Reply::Raw(200, json!({ "joined": true })));
    }
    // Vault's `leader_ca_cert`: the CA certificates the leader's API is checked against.
    let ca = req.get_str("leader_ca_cert").unwrap_or_default().to_owned();
    if !ca.trim().is_empty()
        && let Err(e) = crate::auth::jwt_verify::http::client(&ca, false)
    {
        return Some(Reply::error(400, format!("leader_ca_cert: {e}")));
    }
    // A join can meet a membership change already under way (another node joining): it
    // is tried again for a while before the answer. With `retry`, it goes on in the
    // background after that, as Vault's does.
    let retry = req.get("retry").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    let mut last = String::new();
    for _ in 0..JOIN_ATTEMPTS {
        // Joined, or waiting for this node's unseal to complete (Vault answers `true` too).
        match node.join(leader, &ca).await {
            Ok(_) => return Some(Reply::Raw(200, json!({ "joined": true }))),
            Err(e) => last = e,
        }
        if node.cluster.is_initialized() && core.is_initialized() {
            return Some(Reply::Raw(200, json!({ "joined": true })));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if !retry {
        return Some(Reply::error(500, format!("failed to join raft cluster: {last}")));
    }
    tracing::info!(error = %last, "join failed; retrying in the background");
    let (node, leader, ca) = (node.clone(), leader.to_owned(), ca);
    tokio::spawn(async move {
        for _ in 0..120 {
            if node.cluster.is_initialized() || node.join(&leader, &ca).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Some(Reply::Raw(200, json!({ "joined": false })))
}

/// `sys/storage/raft/bootstrap/challenge`, answered without a token by any member: the
/// cluster's seal material, which opens only with its unseal keys or key service.
pub fn bootstrap_challenge(core: &Core, req: &VaultRequest) -> Option<Reply> {
    if !matches!(req.method.as_str(), "PUT" | "POST") {
        return Some(Reply::Error(405, Vec::new()));
    }
    if core.cluster().is_none() {
        return Some(Reply::error(404, "unsupported path"));
    }
    match crate::cluster::join::challenge(&core.state.load().seal) {
        Some(answer) => Some(Reply::Raw(200, answer)),
        None => Some(Reply::error(400, "this node is not initialized: it cannot admit another")),
    }
}

/// Tries of a join request before it answers.
const JOIN_ATTEMPTS: usize = 10;

/// The first bytes of a snapshot file, with its format number.
pub const SNAPSHOT_MAGIC: &[u8; 12] = b"CAIRNSNP\0\0\0\x01";

/// `POST sys/storage/raft/snapshot[-force]` with the snapshot as the raw body, answered
/// before the body is read as JSON. Into a new cluster only (see the module docs), so it
/// needs no token, as `sys/init` does not.
pub async fn restore(core: &Core, method: &str, path: &str, body: &[u8]) -> Option<Reply> {
    if !matches!(path, "sys/storage/raft/snapshot" | "sys/storage/raft/snapshot-force")
        || !matches!(method, "POST" | "PUT")
    {
        return None;
    }
    let node = core.cluster()?;
    if core.is_initialized() || node.applier.ledger().is_some() || node.pending_join().is_some() {
        return Some(Reply::error(
            400,
            "cairn restores a snapshot only into a new cluster (not initialized): a cluster's ledger is append-only and is never replaced",
        ));
    }
    let Some(frames) = body.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
        return Some(Reply::error(400, "not a cairn snapshot (bad magic or format)"));
    };
    let frames = match ledger::replica::split_frames(frames) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => return Some(Reply::error(400, "the snapshot holds no frames")),
        Err(e) => return Some(Reply::error(400, format!("bad snapshot: {e}"))),
    };
    match node.restore(&frames).await {
        Ok(last_seq) => {
            tracing::info!(events = last_seq, "snapshot restored; unseal with the snapshot's keys");
            Some(Reply::NoContent)
        }
        Err(e) => Some(Reply::error(400, format!("cannot restore the snapshot: {e}"))),
    }
}

/// The authenticated `sys/storage/raft/*` paths.
pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    let Some(node) = ctx.core().cluster() else {
        return Err(Reply::error(404, "unsupported path"));
    };
    let method = ctx.req.method.as_str();
    match tail {
        "configuration" if method == "GET" => Ok(Handled::Read(Reply::data(configuration(node)))),
        "snapshot" if method == "GET" => snapshot(node).await,
        "remove-peer" if matches!(method, "PUT" | "POST") => remove_peer(ctx, node).await,
        "configuration" | "remove-peer" | "snapshot" => Err(super::unsupported_operation()),
        "snapshot-force" => Err(Reply::error(
            400,
            "cairn restores a snapshot only into a new cluster (not initialized): a cluster's ledger is append-only and is never replaced",
        )),
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

/// `GET sys/storage/raft/snapshot`: every durable frame of this node's ledger.
async fn snapshot(node: &Node) -> Result<Handled, Reply> {
    let ledger = node.applier.ledger().ok_or_else(|| Reply::error(500, "no ledger yet"))?;
    let frames = tokio::task::spawn_blocking(move || ledger.durable_frames())
        .await
        .map_err(|e| Reply::error(500, format!("snapshot stopped: {e}")))?
        .map_err(|e| Reply::error(500, format!("cannot read the ledger: {e}")))?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + frames.len());
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&frames);
    Ok(Handled::Read(Reply::Bytes(200, "application/octet-stream", bytes)))
}
