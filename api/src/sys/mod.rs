//! The `sys/` backend: barrier, mounts, policies, capabilities, keys, ledger proofs.

pub mod audit;
pub mod capabilities;
pub mod keys;
pub mod leases;
pub mod ledger_query;
pub mod mounts;
pub mod policies;
pub mod proofs;
pub mod raft;
pub mod seal;
pub mod wrapping;

use projections::policy::Operation;

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};

/// The paths `sys/` serves (`crate::routes`): the barrier, mounts, policies, leases,
/// wrapping, audit devices, keys, the ledger's proofs and queries, the cluster.
pub static ROUTES: Table = Table {
    name: "sys",
    routes: &[
        route("init"),
        route("seal-status"),
        route("unseal"),
        route("seal"),
        route("health"),
        route("leader"),
        route("storage/raft/join"),
        route("storage/raft/bootstrap/challenge"),
        route("storage/raft/configuration"),
        route("storage/raft/remove-peer"),
        route("storage/raft/snapshot"),
        route("storage/raft/snapshot-force"),
        route("mounts"),
        route("mounts/{path:rest:trim}/tune"),
        route("mounts/{path:rest:trim}"),
        route("auth"),
        route("auth/{path:rest:trim}/tune"),
        route("auth/{path:rest:trim}"),
        route("policies/acl/?"),
        // Policy names are lowercased and trimmed of white space, as Vault's policy store
        // does: the ACL sees the name the handler writes.
        route("policies/acl/{name:rest:trim:space:lower}"),
        route("policy/?"),
        route("policy/{name:rest:trim:space:lower}"),
        route("capabilities"),
        route("capabilities-self"),
        route("capabilities-accessor"),
        route("leases/lookup/{prefix:rest?}"),
        route("leases/lookup"),
        route("leases/renew"),
        route("leases/renew/{lease_id:rest}"),
        route("leases/revoke"),
        route("leases/revoke/{lease_id:rest}"),
        route("leases/revoke-prefix/{prefix:rest}"),
        route("leases/revoke-force/{prefix:rest}"),
        route("wrapping/wrap"),
        route("wrapping/unwrap"),
        route("wrapping/rewrap"),
        route("wrapping/lookup"),
        route("audit"),
        route("audit/{path:rest:trim}"),
        route("audit-hash/{path:rest:trim}"),
        route("key-status"),
        route("rotate"),
        route("rotate/keyring"),
        route("ledger/keys"),
        route("ledger/query"),
        route("ledger/export"),
        route("ledger/checkpoint"),
        route("ledger/proof/inclusion"),
        route("ledger/proof/consistency"),
        route("internal/ui/mounts"),
        route("internal/ui/mounts/{path:rest}"),
    ],
    unmatched: |_| unsupported(),
};

/// Paths whose use needs `sudo` besides the operation's capability (on the canonical path:
/// a LIST's ends with `/`, a mount path has none).
pub fn needs_sudo(path: &str, op: Operation) -> bool {
    let p = path;
    p == "sys/seal"
        || p == "sys/rotate"
        || p.starts_with("sys/rotate/")
        || (p.starts_with("sys/auth/") && op != Operation::Read)
        || p == "auth/token/create-orphan"
        || p == "auth/token/revoke-orphan"
        || (p == "auth/token/accessors/" && op == Operation::List)
        || p.starts_with("sys/ledger/") && p != "sys/ledger/keys"
        || p == "sys/storage/raft/snapshot"
        || p.starts_with("sys/leases/revoke-prefix")
        || p.starts_with("sys/leases/revoke-force")
        || (p.starts_with("sys/leases/lookup") && op == Operation::List)
        || p == "sys/audit"
        || p.starts_with("sys/audit/")
        || p.starts_with("sys/audit-hash/")
}

/// Paths that any valid token may call; their handler checks access itself (the `bao kv`
/// preflight answers only about mounts the token can use).
pub fn self_authorizing(path: &str) -> bool {
    path == "sys/internal/ui/mounts" || path.starts_with("sys/internal/ui/mounts/")
}

/// Routes a `sys/` request.
pub async fn handle(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let path = ctx.req.path.as_str();
    let rest = path.strip_prefix("sys/").unwrap_or("");
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match head {
        "seal" => seal::seal(ctx).await,
        "mounts" => mounts::handle(ctx, migrations::MountClass::Secret, tail).await,
        "auth" => mounts::handle(ctx, migrations::MountClass::Auth, tail).await,
        "policies" => match tail.strip_prefix("acl/").or_else(|| (tail == "acl").then_some("")) {
            Some(name) => policies::handle(ctx, name, false),
            None => Err(unsupported()),
        },
        "policy" => policies::handle(ctx, tail, true),
        "capabilities" | "capabilities-self" | "capabilities-accessor" => capabilities::handle(ctx, head),
        "leases" => leases::handle(ctx, tail).await,
        "wrapping" => wrapping::handle(ctx, tail),
        "audit" => audit::handle(ctx, tail).await,
        "audit-hash" => audit::hash(ctx, tail),
        "key-status" => keys::key_status(ctx),
        "rotate" if tail.is_empty() || tail == "keyring" => keys::rotate(ctx).await,
        "ledger" if tail == "keys" => keys::ledger_keys(ctx),
        "ledger" if tail == "query" || tail == "export" => ledger_query::handle(ctx, tail).await,
        "ledger" if proofs::routes(tail) => proofs::handle(ctx, tail).await,
        "storage" => match tail.strip_prefix("raft/") {
            Some(t) => raft::handle(ctx, t).await,
            None => Err(unsupported()),
        },
        "internal" => match tail.strip_prefix("ui/mounts") {
            Some(p) => mounts::ui_mounts(ctx, p.trim_start_matches('/')),
            None => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

pub fn unsupported() -> Reply {
    Reply::error(404, "1 error occurred:\n\t* unsupported path\n\n")
}

pub fn unsupported_operation() -> Reply {
    Reply::error(405, "1 error occurred:\n\t* unsupported operation\n\n")
}
