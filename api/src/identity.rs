//! `identity/`: entities, entity aliases, groups, group aliases, and lookups. Logins make
//! entities and aliases by themselves; operators name them, give them policies and put
//! them in groups here.

use std::collections::BTreeMap;

use commands::sequencer::Committed;
use commands::{Command, IdentityCommand, Reply as CmdReply};
use migrations::{Entity, EntityAlias, Group, GroupAlias};
use projections::State;
use serde_json::{Map, Value, json};

use crate::auth::keys_reply;
use crate::engines::{bool_value, string_list};
use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};

/// The paths of `identity/` (`crate::routes`). Names may hold `/`; ids are Vault names.
pub static ROUTES: Table = Table {
    name: "identity",
    routes: &[
        route("entity"),
        route("entity/id/?"),
        route("entity/id/{id}"),
        route("entity/name/?"),
        route("entity/name/{name:rest}"),
        route("entity-alias"),
        route("entity-alias/id/?"),
        route("entity-alias/id/{id}"),
        route("group"),
        route("group/id/?"),
        route("group/id/{id}"),
        route("group/name/?"),
        route("group/name/{name:rest}"),
        route("group-alias"),
        route("group-alias/id/?"),
        route("group-alias/id/{id}"),
        route("lookup/entity"),
        route("lookup/group"),
    ],
    unmatched: crate::auth::no_route,
};

pub fn handle(ctx: &Ctx<'_>, rest: &str) -> Result<Handled, Reply> {
    let (kind, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    let ids = &ctx.state.identity;
    match (kind, tail) {
        // The path of a LIST ends with `/`.
        ("entity" | "group", "id/" | "name/") if ctx.req.list => {
            let all: Vec<(String, String)> = if kind == "entity" {
                ids.entity_ids().into_iter().filter_map(|id| ids.entity(&id).map(|e| (id, e.name.clone()))).collect()
            } else {
                ids.group_ids().into_iter().filter_map(|id| ids.group(&id).map(|g| (id, g.name.clone()))).collect()
            };
            let keys = all.iter().map(|(id, name)| if tail == "id/" { id.clone() } else { name.clone() }).collect();
            keys_reply(keys)
        }
        ("entity-alias" | "group-alias", "id/") if ctx.req.list => {
            keys_reply(if kind == "entity-alias" { ids.alias_ids() } else { ids.group_alias_ids() })
        }
        ("entity", "") if write => write_entity(ctx, None),
        ("group", "") if write => write_group(ctx, None),
        ("entity-alias", "") if write => write_alias(ctx, None),
        ("group-alias", "") if write => write_group_alias(ctx, None),
        ("lookup", "entity") if write => {
            let found = lookup_entity(ctx);
            Ok(Handled::Read(found.map_or(Reply::NoContent, |id| Reply::data(entity_data(&ctx.state, &id)))))
        }
        ("lookup", "group") if write => {
            let found = lookup_group(ctx);
            Ok(Handled::Read(found.map_or(Reply::NoContent, |id| Reply::data(group_data(&ctx.state, &id)))))
        }
        (_, t) if t.starts_with("id/") || t.starts_with("name/") => {
            let (by, key) = t.split_once('/').unwrap_or((t, ""));
            item(ctx, kind, by == "name", key)
        }
        _ => Err(crate::auth::no_route(ctx.req.path.as_str())),
    }
}

/// `identity/<kind>/id/<id>` and `identity/<kind>/name/<name>`: read, update, delete.
fn item(ctx: &Ctx<'_>, kind: &str, by_name: bool, key: &str) -> Result<Handled, Reply> {
    let ids = &ctx.state.identity;
    let id = match (kind, by_name) {
        ("entity", true) => ids.entity_by_name(key).map(|e| e.id.clone()),
        ("group", true) => ids.group_by_name(key).map(|g| g.id.clone()),
        ("entity", false) => ids.entity(key).map(|e| e.id.clone()),
        ("group", false) => ids.group(key).map(|g| g.id.clone()),
        ("entity-alias", false) => ids.alias(key).map(|a| a.id.clone()),
        ("group-alias", false) => ids.group_alias(key).map(|a| a.id.clone()),
        _ => return Err(crate::auth::no_route(ctx.req.path.as_str())),
    };
    match ctx.req.method.as_str() {
        "GET" => {
            let id = id.ok_or_else(Reply::not_found)?;
            let data = match kind {
                "entity" => entity_data(&ctx.state, &id),
                "group" => group_data(&ctx.state, &id),
                "entity-alias" => ids.alias(&id).map(|a| alias_data(a)).unwrap_or(Value::Null),
                _ => ids.group_alias(&id).map(|a| group_alias_data(a)).unwrap_or(Value::Null),
            };
            Ok(Handled::Read(Reply::data(data)))
        }
        // Writing by name creates the entity or group when it does not exist; writing by
        // an id nobody has is refused with OpenBao's words (it used to make a new entity).
        "POST" | "PUT" => match (kind, id) {
            ("entity", id @ Some(_)) => write_entity(ctx, id),
            ("entity", None) if by_name => write_entity(ctx, Some(format!("name:{key}"))),
            ("entity", None) => Err(Reply::error(400, "entity not found from id")),
            ("group", id @ Some(_)) => write_group(ctx, id),
            ("group", None) if by_name => write_group(ctx, Some(format!("name:{key}"))),
            ("group", None) => Err(Reply::error(400, "invalid group ID")),
            ("entity-alias", Some(id)) => write_alias(ctx, Some(id)),
            ("entity-alias", None) => Err(Reply::error(400, "invalid alias ID provided")),
            (_, Some(id)) => write_group_alias(ctx, Some(id)),
            (_, None) => Err(Reply::error(400, "invalid group alias ID")),
        },
        "DELETE" => {
            let Some(id) = id else { return Ok(Handled::Read(Reply::NoContent)) };
            let cmd = match kind {
                "entity" => IdentityCommand::DeleteEntity { id },
                "group" => IdentityCommand::DeleteGroup { id },
                "entity-alias" => IdentityCommand::DeleteAlias { id },
                _ => IdentityCommand::DeleteGroupAlias { id },
            };
            Ok(Handled::write(Command::Identity(cmd), Reply::NoContent))
        }
        _ => Err(crate::sys::unsupported_operation()),
    }
}

fn strings(ctx: &Ctx<'_>, key: &str) -> Option<Vec<String>> {
    string_list(ctx.req.get(key))
}

fn string_map(ctx: &Ctx<'_>, key: &str) -> Result<Option<BTreeMap<String, String>>, Reply> {
    match ctx.req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect(),
        )),
        Some(_) => Err(Reply::error(400, format!("{key} must be a map of strings"))),
    }
}

/// `existing`: the id being updated, or `name:<name>` for a write by a name not yet taken.
fn write_entity(ctx: &Ctx<'_>, existing: Option<String>) -> Result<Handled, Reply> {
    let (mut e, created) = match existing.as_deref() {
        Some(n) if n.starts_with("name:") => (Entity { name: n["name:".len()..].into(), ..Entity::default() }, true),
        Some(id) => (ctx.state.identity.entity(id).map(|e| (**e).clone()).ok_or_else(Reply::not_found)?, false),
        None => match ctx.req.get_str("id").and_then(|id| ctx.state.identity.entity(id)) {
            Some(e) => ((**e).clone(), false),
            None => (Entity::default(), true),
        },
    };
    if let Some(n) = ctx.req.get_str("name").filter(|n| !n.is_empty()) {
        e.name = n.into();
    }
    if let Some(p) = strings(ctx, "policies") {
        e.policies = normalise_policies(p);
    }
    if let Some(m) = string_map(ctx, "metadata")? {
        e.metadata = m;
    }
    if let Some(d) = bool_value(ctx.req.get("disabled")) {
        e.disabled = d;
    }
    written(Command::Identity(IdentityCommand::WriteEntity(e)), created)
}

fn write_group(ctx: &Ctx<'_>, existing: Option<String>) -> Result<Handled, Reply> {
    let (mut g, created) = match existing.as_deref() {
        Some(n) if n.starts_with("name:") => (Group { name: n["name:".len()..].into(), ..Group::default() }, true),
        Some(id) => (ctx.state.identity.group(id).map(|g| (**g).clone()).ok_or_else(Reply::not_found)?, false),
        None => match ctx.req.get_str("id").and_then(|id| ctx.state.identity.group(id)) {
            Some(g) => ((**g).clone(), false),
            None => (Group::default(), true),
        },
    };
    if let Some(n) = ctx.req.get_str("name").filter(|n| !n.is_empty()) {
        g.name = n.into();
    }
    if let Some(t) = ctx.req.get_str("type").filter(|t| !t.is_empty()) {
        if !created && t != g.kind {
            return Err(Reply::error(400, "group type cannot be changed"));
        }
        g.kind = t.into();
    }
    if let Some(p) = strings(ctx, "policies") {
        g.policies = normalise_policies(p);
    }
    if let Some(m) = strings(ctx, "member_entity_ids") {
        g.member_entity_ids = m;
    }
    if let Some(m) = strings(ctx, "member_group_ids") {
        g.member_group_ids = m;
    }
    if let Some(m) = string_map(ctx, "metadata")? {
        g.metadata = m;
    }
    written(Command::Identity(IdentityCommand::WriteGroup(g)), created)
}

fn write_alias(ctx: &Ctx<'_>, existing: Option<String>) -> Result<Handled, Reply> {
    let existing = existing.or_else(|| ctx.req.get_str("id").filter(|i| !i.is_empty()).map(str::to_string));
    let (mut a, created) = match existing {
        Some(id) => (ctx.state.identity.alias(&id).map(|a| (**a).clone()).ok_or_else(Reply::not_found)?, false),
        None => (EntityAlias::default(), true),
    };
    for (key, field) in
        [("name", &mut a.name), ("canonical_id", &mut a.canonical_id), ("mount_accessor", &mut a.mount_accessor)]
    {
        if let Some(v) = ctx.req.get_str(key).filter(|v| !v.is_empty()) {
            *field = v.into();
        }
    }
    if let Some(m) = string_map(ctx, "custom_metadata")? {
        a.custom_metadata = m;
    }
    if a.name.is_empty() || a.mount_accessor.is_empty() {
        return Err(Reply::error(400, "missing alias name or mount_accessor"));
    }
    alias_written(Command::Identity(IdentityCommand::WriteAlias(a)), created)
}

fn write_group_alias(ctx: &Ctx<'_>, existing: Option<String>) -> Result<Handled, Reply> {
    let existing = existing.or_else(|| ctx.req.get_str("id").filter(|i| !i.is_empty()).map(str::to_string));
    let (mut a, created) = match existing {
        Some(id) => (ctx.state.identity.group_alias(&id).map(|a| (**a).clone()).ok_or_else(Reply::not_found)?, false),
        None => (GroupAlias::default(), true),
    };
    for (key, field) in
        [("name", &mut a.name), ("canonical_id", &mut a.canonical_id), ("mount_accessor", &mut a.mount_accessor)]
    {
        if let Some(v) = ctx.req.get_str(key).filter(|v| !v.is_empty()) {
            *field = v.into();
        }
    }
    if a.name.is_empty() || a.mount_accessor.is_empty() {
        return Err(Reply::error(400, "missing alias name or mount_accessor"));
    }
    alias_written(Command::Identity(IdentityCommand::WriteGroupAlias(a)), created)
}

fn normalise_policies(p: Vec<String>) -> Vec<String> {
    let mut p: Vec<String> = p.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
    p.sort();
    p.dedup();
    p
}

/// Creation answers `{id, name}`; an update answers 204 (Vault's shapes).
fn written(command: Command, created: bool) -> Result<Handled, Reply> {
    if !created {
        return Ok(Handled::write(command, Reply::NoContent));
    }
    Ok(Handled::Write {
        command,
        render: Box::new(|c: &Committed| match &c.result {
            Ok(CmdReply::IdentityWritten { id, name }) => Reply::data(json!({ "id": id, "name": name })),
            _ => Reply::error(500, "unexpected reply to an identity write"),
        }),
    })
}

fn alias_written(command: Command, created: bool) -> Result<Handled, Reply> {
    if !created {
        return Ok(Handled::write(command, Reply::NoContent));
    }
    Ok(Handled::Write {
        command,
        render: Box::new(|c: &Committed| match (&c.result, &c.state) {
            (Ok(CmdReply::IdentityWritten { id, .. }), state) => {
                let canonical = state
                    .identity
                    .alias(id)
                    .map(|a| a.canonical_id.clone())
                    .or_else(|| state.identity.group_alias(id).map(|a| a.canonical_id.clone()))
                    .unwrap_or_default();
                Reply::data(json!({ "id": id, "canonical_id": canonical }))
            }
            _ => Reply::error(500, "unexpected reply to an identity write"),
        }),
    })
}

fn lookup_entity(ctx: &Ctx<'_>) -> Option<String> {
    let ids = &ctx.state.identity;
    let get = |k: &str| ctx.req.get_str(k).filter(|v| !v.is_empty());
    if let Some(id) = get("id") {
        return ids.entity(id).map(|e| e.id.clone());
    }
    if let Some(name) = get("name") {
        return ids.entity_by_name(name).map(|e| e.id.clone());
    }
    if let Some(alias) = get("alias_id") {
        return ids.alias(alias).map(|a| a.canonical_id.clone());
    }
    match (get("alias_name"), get("alias_mount_accessor")) {
        (Some(n), Some(m)) => ids.alias_by_name(m, n).map(|a| a.canonical_id.clone()),
        _ => None,
    }
}

fn lookup_group(ctx: &Ctx<'_>) -> Option<String> {
    let ids = &ctx.state.identity;
    let get = |k: &str| ctx.req.get_str(k).filter(|v| !v.is_empty());
    if let Some(id) = get("id") {
        return ids.group(id).map(|g| g.id.clone());
    }
    if let Some(name) = get("name") {
        return ids.group_by_name(name).map(|g| g.id.clone());
    }
    if let Some(alias) = get("alias_id") {
        return ids.group_alias(alias).map(|a| a.canonical_id.clone());
    }
    match (get("alias_name"), get("alias_mount_accessor")) {
        (Some(n), Some(m)) => ids.group_alias_by_name(m, n).map(|a| a.canonical_id.clone()),
        _ => None,
    }
}

fn alias_data(a: &EntityAlias) -> Value {
    json!({
        "canonical_id": a.canonical_id,
        "custom_metadata": a.custom_metadata,
        "id": a.id,
        "metadata": a.metadata,
        "mount_accessor": a.mount_accessor,
        "name": a.name,
        "namespace_id": "root",
    })
}

fn group_alias_data(a: &GroupAlias) -> Value {
    json!({
        "canonical_id": a.canonical_id,
        "id": a.id,
        "mount_accessor": a.mount_accessor,
        "name": a.name,
        "namespace_id": "root",
    })
}

fn entity_data(state: &State, id: &str) -> Value {
    let ids = &state.identity;
    let Some(e) = ids.entity(id) else { return Value::Null };
    let aliases: Vec<Value> = ids
        .aliases_of(id)
        .iter()
        .map(|a| {
            let mut v = alias_data(a);
            if let Some(m) =
                state.mounts.of_class(migrations::MountClass::Auth).find(|m| m.accessor == a.mount_accessor)
            {
                v["mount_path"] = json!(m.api_prefix());
                v["mount_type"] = json!(m.kind);
            }
            v
        })
        .collect();
    let direct: Vec<String> = ids.direct_groups(id).into_iter().collect();
    let all: Vec<String> = ids.all_groups(id).iter().map(|g| g.id.clone()).collect();
    let inherited: Vec<&String> = all.iter().filter(|g| !direct.contains(g)).collect();
    let mut d = Map::new();
    d.insert("aliases".into(), json!(aliases));
    d.insert("direct_group_ids".into(), json!(direct));
    d.insert("disabled".into(), json!(e.disabled));
    d.insert("group_ids".into(), json!(all));
    d.insert("id".into(), json!(e.id));
    d.insert("inherited_group_ids".into(), json!(inherited));
    d.insert("merged_entity_ids".into(), Value::Null);
    d.insert("metadata".into(), json!(e.metadata));
    d.insert("name".into(), json!(e.name));
    d.insert("namespace_id".into(), json!("root"));
    d.insert("policies".into(), json!(e.policies));
    Value::Object(d)
}

fn group_data(state: &State, id: &str) -> Value {
    let ids = &state.identity;
    let Some(g) = ids.group(id) else { return Value::Null };
    let alias = ids
        .group_alias_ids()
        .into_iter()
        .filter_map(|a| ids.group_alias(&a).cloned())
        .find(|a| a.canonical_id == g.id)
        .map(|a| group_alias_data(&a))
        .unwrap_or(json!({}));
    json!({
        "alias": alias,
        "id": g.id,
        "member_entity_ids": g.member_entity_ids,
        "member_group_ids": g.member_group_ids,
        "metadata": g.metadata,
        "name": g.name,
        "namespace_id": "root",
        "policies": g.policies,
        "type": g.kind,
    })
}
