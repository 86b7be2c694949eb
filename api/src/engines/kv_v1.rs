//! KV version 1 and the per-token cubbyhole (openbao-api.md §4.6, §4.7): one value per
//! path, no history. `store` names the value space: the mount's uuid, or the cubbyhole of
//! the calling token.

use commands::Command;
use projections::kv::kv_v1_context;
use projections::mount::Mount;
use serde_json::{Value, json};

use crate::duration::parse_duration_value;
use crate::http::reply::{Envelope, Reply};
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};
use crate::sys::unsupported_operation;

/// The paths of a KV v1 mount and of the cubbyhole (`crate::routes`): any path, as sent.
pub static ROUTES: Table = Table { name: "kv v1", routes: &[route("{path:rest?}")], unmatched: |_| Reply::not_found() };

pub fn handle(ctx: &Ctx<'_>, mount: &Mount, store: &str, rest: &str) -> Result<Handled, Reply> {
    let path = rest.to_string();
    let store = store.to_string();
    match ctx.req.method.as_str() {
        _ if ctx.req.list => {
            // The path of a LIST is the folder: it ends with `/`, or is empty.
            let keys = ctx.state.kv.list_v1(&store, &path);
            if keys.is_empty() {
                return Err(Reply::not_found());
            }
            Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
        }
        "GET" => {
            if path.is_empty() {
                return Err(Reply::not_found());
            }
            let v = ctx.state.kv.v1(&store, &path).ok_or_else(Reply::not_found)?;
            let plain =
                commands::Env::open(ctx.unsealed.env.as_ref(), &v.sealed, &v.slot, &kv_v1_context(&store, &path))
                    .map_err(|e| Reply::error(500, e.to_string()))?;
            let data: Value =
                serde_json::from_slice(&plain).map_err(|_| Reply::error(500, "stored secret is not JSON"))?;
            let lease_duration = if mount.kind == "cubbyhole" { 0 } else { lease_for(ctx, mount, &data) };
            Ok(Handled::Read(Reply::envelope(Envelope {
                status: 200,
                data: Some(data),
                lease_duration,
                ..Envelope::default()
            })))
        }
        "POST" | "PUT" => {
            if path.is_empty() {
                return Err(unsupported_operation());
            }
            Ok(Handled::write(Command::KvV1Put { mount: store, path, data: ctx.req.data.clone() }, Reply::NoContent))
        }
        "DELETE" => Ok(Handled::write(Command::KvV1Delete { mount: store, path }, Reply::NoContent)),
        _ => Err(unsupported_operation()),
    }
}

/// KV v1 reads report a lease duration: the secret's own `ttl` key, else the mount's
/// default TTL, else the server's.
fn lease_for(ctx: &Ctx<'_>, mount: &Mount, data: &Value) -> u64 {
    if let Some(ttl) = data.get("ttl").and_then(|v| parse_duration_value(v).ok()) {
        return ttl;
    }
    if mount.config.default_lease_ttl > 0 {
        mount.config.default_lease_ttl
    } else {
        ctx.core().settings.default_lease_ttl
    }
}
