//! Rules of `identity/`: unique names, aliases that point at live entities and auth
//! mounts (one alias per mount and entity), groups without cycles, group aliases only on
//! external groups.

use std::collections::BTreeSet;

use migrations::{
    EntityAliasDeleted, EntityAliasWritten, EntityDeleted, EntityWritten, Event, GroupAliasDeleted, GroupAliasWritten,
    GroupDeleted, GroupWritten,
};
use projections::State;

use crate::decide::{Decided, event};
use crate::ids::new_uuid;
use crate::{Env, IdentityCommand, Rejection, Reply};

pub(crate) fn decide(state: &State, cmd: &IdentityCommand, env: &dyn Env) -> Decided {
    let ids = &state.identity;
    let now = env.now();
    match cmd {
        IdentityCommand::WriteEntity(e) => {
            let mut e = e.clone();
            if e.id.is_empty() {
                e.id = new_uuid(env)?;
            } else if ids.entity(&e.id).is_none() {
                return Err(Rejection::invalid("entity not found"));
            }
            if e.name.is_empty() {
                e.name = format!("entity_{}", &e.id[..8.min(e.id.len())]);
            }
            if ids.entity_by_name(&e.name).is_some_and(|other| other.id != e.id) {
                return Err(Rejection::invalid("entity name is already in use"));
            }
            let reply = Reply::IdentityWritten { id: e.id.clone(), name: e.name.clone() };
            Ok((vec![event(Event::EntityWritten(EntityWritten { entity: e, time: now }))], reply))
        }
        IdentityCommand::DeleteEntity { id } => {
            if ids.entity(id).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((vec![event(Event::EntityDeleted(EntityDeleted { id: id.clone() }))], Reply::Done))
        }
        IdentityCommand::WriteAlias(a) => {
            let mut a = a.clone();
            if a.id.is_empty() {
                a.id = new_uuid(env)?;
            } else if ids.alias(&a.id).is_none() {
                return Err(Rejection::invalid("alias not found"));
            }
            if ids.entity(&a.canonical_id).is_none() {
                return Err(Rejection::invalid("invalid canonical ID"));
            }
            if !state.mounts.of_class(migrations::MountClass::Auth).any(|m| m.accessor == a.mount_accessor) {
                return Err(Rejection::invalid(format!("invalid mount accessor {:?}", a.mount_accessor)));
            }
            if ids.alias_by_name(&a.mount_accessor, &a.name).is_some_and(|other| other.id != a.id) {
                return Err(Rejection::invalid("alias with combination of mount accessor and name already exists"));
            }
            if ids.aliases_of(&a.canonical_id).iter().any(|o| o.id != a.id && o.mount_accessor == a.mount_accessor) {
                return Err(Rejection::invalid("alias already exists for requested entity and mount accessor"));
            }
            let reply = Reply::IdentityWritten { id: a.id.clone(), name: a.name.clone() };
            Ok((vec![event(Event::EntityAliasWritten(EntityAliasWritten { alias: a, time: now }))], reply))
        }
        IdentityCommand::DeleteAlias { id } => {
            if ids.alias(id).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((vec![event(Event::EntityAliasDeleted(EntityAliasDeleted { id: id.clone() }))], Reply::Done))
        }
        IdentityCommand::WriteGroup(g) => {
            let mut g = g.clone();
            if g.id.is_empty() {
                g.id = new_uuid(env)?;
            } else if ids.group(&g.id).is_none() {
                return Err(Rejection::invalid("group not found"));
            }
            if g.name.is_empty() {
                g.name = format!("group_{}", &g.id[..8.min(g.id.len())]);
            }
            if g.kind.is_empty() {
                g.kind = "internal".into();
            }
            if !matches!(g.kind.as_str(), "internal" | "external") {
                return Err(Rejection::invalid(format!("invalid group type {:?}", g.kind)));
            }
            if g.kind == "external" && !g.member_entity_ids.is_empty() {
                return Err(Rejection::invalid("member entities can't be set manually for external groups"));
            }
            if ids.group_by_name(&g.name).is_some_and(|other| other.id != g.id) {
                return Err(Rejection::invalid("group name is already in use"));
            }
            if let Some(missing) = g.member_entity_ids.iter().find(|e| ids.entity(e).is_none()) {
                return Err(Rejection::invalid(format!("entity {missing:?} does not exist")));
            }
            if let Some(missing) = g.member_group_ids.iter().find(|m| ids.group(m).is_none()) {
                return Err(Rejection::invalid(format!("group {missing:?} does not exist")));
            }
            if reaches(state, &g.member_group_ids, &g.id) {
                return Err(Rejection::invalid("member group IDs would create a cycle"));
            }
            let reply = Reply::IdentityWritten { id: g.id.clone(), name: g.name.clone() };
            Ok((vec![event(Event::GroupWritten(GroupWritten { group: g, time: now }))], reply))
        }
        IdentityCommand::DeleteGroup { id } => {
            if ids.group(id).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((vec![event(Event::GroupDeleted(GroupDeleted { id: id.clone() }))], Reply::Done))
        }
        IdentityCommand::WriteGroupAlias(a) => {
            let mut a = a.clone();
            if a.id.is_empty() {
                a.id = new_uuid(env)?;
            } else if ids.group_alias(&a.id).is_none() {
                return Err(Rejection::invalid("group alias not found"));
            }
            match ids.group(&a.canonical_id) {
                Some(g) if g.kind == "external" => {}
                Some(_) => return Err(Rejection::invalid("alias can't be set on an internal group")),
                None => return Err(Rejection::invalid("invalid canonical ID")),
            }
            if !state.mounts.of_class(migrations::MountClass::Auth).any(|m| m.accessor == a.mount_accessor) {
                return Err(Rejection::invalid(format!("invalid mount accessor {:?}", a.mount_accessor)));
            }
            if ids.group_alias_by_name(&a.mount_accessor, &a.name).is_some_and(|other| other.id != a.id) {
                return Err(Rejection::invalid("group alias already exists"));
            }
            let reply = Reply::IdentityWritten { id: a.id.clone(), name: a.name.clone() };
            Ok((vec![event(Event::GroupAliasWritten(GroupAliasWritten { alias: a }))], reply))
        }
        IdentityCommand::DeleteGroupAlias { id } => {
            if ids.group_alias(id).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((vec![event(Event::GroupAliasDeleted(GroupAliasDeleted { id: id.clone() }))], Reply::Done))
        }
    }
}

/// Whether `target` is among `start` or the member groups below them.
fn reaches(state: &State, start: &[String], target: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = start.to_vec();
    while let Some(id) = todo.pop() {
        if id == target {
            return true;
        }
        if seen.insert(id.clone())
            && let Some(g) = state.identity.group(&id)
        {
            todo.extend(g.member_group_ids.iter().cloned());
        }
    }
    false
}
