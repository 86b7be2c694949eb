//! KV version 2 (openbao-api.md §4.1–4.5): `data/`, `delete/`, `undelete/`, `destroy/`,
//! `metadata/`, `subkeys/`, `config`.

use std::collections::BTreeMap;

use commands::sequencer::Committed;
use commands::{Command, KvMetadataUpdate, Reply as CmdReply};
use projections::kv::{KvSecret, KvVersion, kv_context};
use projections::mount::Mount;
use serde_json::{Map, Value, json};

use super::object_field;
use crate::core::now_nanos;
use crate::duration::{format_go_duration, parse_duration_value};
use crate::http::fields;
use crate::http::reply::{Envelope, Reply};
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};
use crate::sys::unsupported_operation;
use crate::time::{rfc3339, rfc3339_or_empty};

/// The paths of a KV v2 mount (`crate::routes`). Secret paths are taken as sent, a
/// trailing `/` included: `data/x/` is not `data/x`.
pub static ROUTES: Table = Table {
    name: "kv v2",
    routes: &[
        route("config"),
        route("data/{path:rest}"),
        route("delete/{path:rest}"),
        route("undelete/{path:rest}"),
        route("destroy/{path:rest}"),
        route("metadata/{path:rest?}"),
        route("subkeys/{path:rest}"),
    ],
    unmatched: |_| invalid_path(),
};

pub fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let (section, path) = rest.split_once('/').unwrap_or((rest, ""));
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    let uuid = mount.uuid.clone();
    let path = path.to_string();
    match (section, m) {
        ("config", "GET") if path.is_empty() => Ok(Handled::Read(Reply::data(config_data(ctx, &uuid)))),
        ("config", _) if write && path.is_empty() => config_write(ctx, uuid),
        ("data", _) if ctx.req.list => Err(unsupported_operation()),
        ("data", "GET") => read(ctx, &uuid, &path),
        ("data", _) if write => put(ctx, uuid, path),
        ("data", "PATCH") => patch(ctx, uuid, path),
        ("data", "DELETE") => Ok(Handled::write(Command::KvDeleteLatest { mount: uuid, path }, Reply::NoContent)),
        ("delete", _) if write => Ok(Handled::write(
            Command::KvDeleteVersions {
                mount: uuid,
                path,
                versions: fields::count_list("versions", ctx.req.get("versions"))?,
            },
            Reply::NoContent,
        )),
        ("undelete", _) if write => Ok(Handled::write(
            Command::KvUndelete {
                mount: uuid,
                path,
                versions: fields::count_list("versions", ctx.req.get("versions"))?,
            },
            Reply::NoContent,
        )),
        ("destroy", _) if write => Ok(Handled::write(
            Command::KvDestroy {
                mount: uuid,
                path,
                versions: fields::count_list("versions", ctx.req.get("versions"))?,
            },
            Reply::NoContent,
        )),
        ("metadata", _) if ctx.req.list => list(ctx, &uuid, &path),
        ("metadata", "GET") => {
            let s = ctx.state.kv.secret(&uuid, &path).ok_or_else(Reply::not_found)?;
            Ok(Handled::Read(Reply::data(metadata_data(s))))
        }
        ("metadata", _) if write => metadata_write(ctx, uuid, path, false),
        ("metadata", "PATCH") => metadata_write(ctx, uuid, path, true),
        ("metadata", "DELETE") => Ok(Handled::write(Command::KvMetadataDelete { mount: uuid, path }, Reply::NoContent)),
        ("subkeys", "GET") => subkeys(ctx, &uuid, &path),
        ("data" | "delete" | "undelete" | "destroy" | "metadata" | "subkeys" | "config", _) => {
            Err(unsupported_operation())
        }
        _ => Err(invalid_path()),
    }
}

/// OpenBao's answer to a path no KV v2 endpoint serves.
fn invalid_path() -> Reply {
    Reply::envelope(Envelope {
        status: 404,
        warnings: vec!["Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv get' for this operation.".into()],
        ..Envelope::default()
    })
}

/// The metadata block of one version, as reads and writes return it.
fn version_metadata(s: &KvSecret, version: u64, v: &KvVersion) -> Value {
    let custom = if s.metadata.custom_metadata.is_empty() { Value::Null } else { json!(s.metadata.custom_metadata) };
    json!({
        "created_time": rfc3339(v.created),
        "custom_metadata": custom,
        "deletion_time": rfc3339_or_empty(v.deletion),
        "destroyed": v.destroyed,
        "version": version,
    })
}

fn read(ctx: &Ctx<'_>, uuid: &str, path: &str) -> Result<Handled, Reply> {
    // A version below 1 is the current one; OpenBao reads a negative one as none (404).
    let wanted = match fields::query_int(&ctx.req.query, "version")? {
        None | Some(0) => None,
        Some(n) => Some(u64::try_from(n).map_err(|_| Reply::not_found())?),
    };
    let (data, metadata) = open_version(ctx, uuid, path, wanted, "data")?;
    Ok(Handled::Read(Reply::data(json!({ "data": data, "metadata": metadata }))))
}

/// The data of one version (the current one when `wanted` is `None`) and its metadata.
/// A deleted or destroyed version answers 404 with the metadata under `field: null`, as
/// Vault does, so clients can tell "deleted" from "never existed".
fn open_version(
    ctx: &Ctx<'_>,
    uuid: &str,
    path: &str,
    wanted: Option<u64>,
    field: &str,
) -> Result<(Value, Value), Reply> {
    let s = ctx.state.kv.secret(uuid, path).ok_or_else(Reply::not_found)?;
    let wanted = wanted.unwrap_or(s.current);
    let v = s.versions.get(&wanted).ok_or_else(Reply::not_found)?;
    let metadata = version_metadata(s, wanted, v);
    if v.destroyed || v.deleted_at(now_nanos()) {
        let mut data = json!({ "metadata": metadata });
        data[field] = Value::Null;
        return Err(Reply::envelope(Envelope { status: 404, data: Some(data), ..Envelope::default() }));
    }
    let value = v.value.as_ref().ok_or_else(Reply::not_found)?;
    let plain =
        commands::Env::open(ctx.unsealed.env.as_ref(), &value.sealed, &value.slot, &kv_context(uuid, path, wanted))
            .map_err(|e| Reply::error(500, e.to_string()))?;
    let data: Value = serde_json::from_slice(&plain).map_err(|_| Reply::error(500, "stored secret is not JSON"))?;
    Ok((data, metadata))
}

/// Unknown top-level keys of a write body, as Vault warns about them.
fn unknown_keys(data: &Map<String, Value>, known: &[&str]) -> Vec<String> {
    let unknown: Vec<&str> = data.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    if unknown.is_empty() {
        Vec::new()
    } else {
        vec![format!("Endpoint ignored these unrecognized parameters: [{}]", unknown.join(" "))]
    }
}

fn written_reply(c: &Committed, uuid: &str, path: &str, warnings: Vec<String>) -> Reply {
    let (Ok(CmdReply::KvWritten { version, .. }), Some(s)) = (&c.result, c.state.kv.secret(uuid, path)) else {
        return Reply::error(500, "unexpected reply to a KV write");
    };
    match s.versions.get(version) {
        Some(v) => Reply::data(version_metadata(s, *version, v)).with_warnings(warnings),
        None => Reply::error(500, "written version vanished"),
    }
}

/// `options.cas`: an integer, or the write is refused (a `cas` that cannot be read must
/// not turn into a write without its check). A negative one matches no version.
fn cas(ctx: &Ctx<'_>) -> Result<Option<u64>, Reply> {
    let Some(raw) = object_field(&ctx.req.data, "options")?.and_then(|o| o.get("cas")).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let cas = fields::int_value("cas", raw).map_err(|_| Reply::error(400, "error parsing check-and-set parameter"))?;
    u64::try_from(cas)
        .map(Some)
        .map_err(|_| Reply::error(400, "check-and-set parameter did not match the current version"))
}

fn put(ctx: &Ctx<'_>, uuid: String, path: String) -> Result<Handled, Reply> {
    let data = object_field(&ctx.req.data, "data")?.cloned().ok_or_else(|| Reply::error(400, "no data provided"))?;
    let cas = cas(ctx)?;
    let warnings = unknown_keys(&ctx.req.data, &["data", "options"]);
    let (u, p) = (uuid.clone(), path.clone());
    Ok(Handled::Write {
        command: Command::KvPut { mount: uuid, path, data, cas },
        render: Box::new(move |c| written_reply(c, &u, &p, warnings)),
    })
}

fn patch(ctx: &Ctx<'_>, uuid: String, path: String) -> Result<Handled, Reply> {
    let readable = ctx
        .state
        .kv
        .secret(&uuid, &path)
        .and_then(|s| s.versions.get(&s.current))
        .is_some_and(|v| !v.destroyed && !v.deleted_at(now_nanos()));
    if !readable {
        return Err(Reply::Empty(404));
    }
    let data = object_field(&ctx.req.data, "data")?.cloned().ok_or_else(|| Reply::error(400, "no data provided"))?;
    let cas = cas(ctx)?;
    let (u, p) = (uuid.clone(), path.clone());
    Ok(Handled::Write {
        command: Command::KvPatch { mount: uuid, path, patch: data, cas },
        render: Box::new(move |c| written_reply(c, &u, &p, Vec::new())),
    })
}

/// LIST `metadata/<folder>/`: the path of a LIST always ends with `/` (or is empty).
fn list(ctx: &Ctx<'_>, uuid: &str, folder: &str) -> Result<Handled, Reply> {
    let mut keys = ctx.state.kv.list(uuid, folder);
    if let Some(after) = ctx.req.query.get("after") {
        keys.retain(|k| k.as_str() > after.as_str());
    }
    if let Some(limit) =
        fields::query_int(&ctx.req.query, "limit")?.and_then(|l| usize::try_from(l).ok()).filter(|&l| l > 0)
    {
        keys.truncate(limit);
    }
    if keys.is_empty() {
        return Err(Reply::not_found());
    }
    Ok(Handled::Read(Reply::data(json!({ "keys": keys }))))
}

fn metadata_data(s: &KvSecret) -> Value {
    let versions: Map<String, Value> = s
        .versions
        .iter()
        .map(|(n, v)| (n.to_string(), json!({ "created_time": rfc3339(v.created), "deletion_time": rfc3339_or_empty(v.deletion), "destroyed": v.destroyed })))
        .collect();
    json!({
        "cas_required": s.metadata.cas_required,
        "created_time": rfc3339(s.created),
        "current_metadata_version": s.metadata_version,
        "current_version": s.current,
        "custom_metadata": if s.metadata.custom_metadata.is_empty() { Value::Null } else { json!(s.metadata.custom_metadata) },
        "delete_version_after": format_go_duration(s.metadata.delete_version_after),
        "max_versions": s.metadata.max_versions,
        "metadata_cas_required": false,
        "oldest_version": s.oldest,
        "updated_time": rfc3339(s.updated),
        "versions": versions,
    })
}

fn metadata_write(ctx: &Ctx<'_>, uuid: String, path: String, patch: bool) -> Result<Handled, Reply> {
    let d = &ctx.req.data;
    let custom = match d.get("custom_metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if v.is_null() {
                            None
                        } else {
                            Some(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        Some(_) => return Err(Reply::error(400, "custom_metadata must be a map of strings")),
    };
    let update = KvMetadataUpdate {
        max_versions: fields::count(d, "max_versions", "max_versions cannot be negative")?,
        cas_required: d
            .get("cas_required")
            .and_then(|v| v.as_bool().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
        delete_version_after: match d.get("delete_version_after") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_duration_value(v).map_err(|e| Reply::error(400, e.to_string()))?),
        },
        custom_metadata: custom,
        patch,
    };
    Ok(Handled::write(Command::KvMetadataPut { mount: uuid, path, update }, Reply::NoContent))
}

fn subkeys(ctx: &Ctx<'_>, uuid: &str, path: &str) -> Result<Handled, Reply> {
    let wanted = fields::query_int(&ctx.req.query, "version")?.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0);
    let depth = fields::query_int(&ctx.req.query, "depth")?.and_then(|d| usize::try_from(d).ok()).unwrap_or(0);
    let (data, metadata) = open_version(ctx, uuid, path, wanted, "subkeys")?;
    Ok(Handled::Read(Reply::data(json!({ "subkeys": keys_only(&data, depth, 1), "metadata": metadata }))))
}

/// The structure of a secret with every leaf replaced by null (arrays are leaves).
fn keys_only(v: &Value, depth: usize, level: usize) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    (k.clone(), if depth != 0 && level >= depth { Value::Null } else { keys_only(v, depth, level + 1) })
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn config_data(ctx: &Ctx<'_>, uuid: &str) -> Value {
    let c = ctx.state.kv.config(uuid);
    json!({
        "cas_required": c.cas_required,
        "delete_version_after": format_go_duration(c.delete_version_after),
        "max_versions": c.max_versions,
        "metadata_cas_required": false,
    })
}

fn config_write(ctx: &Ctx<'_>, uuid: String) -> Result<Handled, Reply> {
    let d = &ctx.req.data;
    let delete_version_after = match d.get("delete_version_after") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_duration_value(v).map_err(|e| Reply::error(400, e.to_string()))?),
    };
    let command = Command::KvConfigPut {
        mount: uuid,
        max_versions: fields::count(d, "max_versions", "max_versions cannot be negative")?,
        cas_required: d.get("cas_required").and_then(|v| v.as_bool()),
        delete_version_after,
    };
    Ok(Handled::write(command, Reply::NoContent))
}
