//! Rules of the `database` engine: connections and their sealed root passwords, roles,
//! static roles, and the stage-then-confirm protocol of every password cairn sets in a
//! database (the staged password is in the ledger before the database sees it).

use migrations::{
    DbConnectionDeleted, DbConnectionWritten, DbRoleDeleted, DbRoleWritten, DbRootPasswordStaged, DbRootRotated,
    DbStaticPasswordRotated, DbStaticPasswordStaged, DbStaticRoleDeleted, DbStaticRoleWritten, DbStaticRotationFailed,
    Event,
};
use projections::State;
use projections::database::{root_password_context, static_password_context};
use projections::kv::SealedValue;

use crate::decide::{Decided, Drafted, Effect, event};
use crate::request::DbCommand;
use crate::{Env, Rejection, Reply};

const NANOS: u64 = 1_000_000_000;
/// Back-off of failed static rotations: 1 s, doubling, at most 5 minutes.
const MAX_RETRY_SECS: u64 = 300;

pub(crate) fn decide(state: &State, cmd: &DbCommand, env: &dyn Env) -> Decided {
    let mount = cmd.mount();
    match state.mounts.get(mount) {
        Some(m) if m.kind == "database" => {}
        _ => return Err(Rejection::invalid("no database mount")),
    }
    let dbs = &state.databases;
    let now = env.now();
    match cmd {
        DbCommand::WriteConnection { mount, name, config, password } => {
            let old = dbs.connection(mount, name);
            let mut effects = Vec::new();
            let mut slots = Vec::new();
            let sealed = match password {
                Some(p) => {
                    let (sealed, slot) = env.seal(p.expose().as_bytes(), &root_password_context(mount, name), 0)?;
                    slots.push(slot);
                    // The passwords it replaces (live and staged) are erased.
                    if let Some(old) = old {
                        effects.extend(erase_all([&old.password, &old.staged_password]));
                    }
                    Some(sealed)
                }
                None if old.is_none_or(|c| c.password.is_none()) => {
                    return Err(Rejection::invalid("password is required for a new connection"));
                }
                None => None,
            };
            let e = DbConnectionWritten {
                mount: mount.clone(),
                name: name.clone(),
                config: config.clone(),
                password: sealed,
                time: now,
            };
            effects.push(Effect::Event(Drafted { event: Event::DbConnectionWritten(e), slots }));
            Ok((effects, Reply::Done))
        }
        DbCommand::DeleteConnection { mount, name } => {
            let Some(old) = dbs.connection(mount, name) else { return Ok((Vec::new(), Reply::Done)) };
            let mut effects = erase_all([&old.password, &old.staged_password]);
            effects.push(event(Event::DbConnectionDeleted(DbConnectionDeleted {
                mount: mount.clone(),
                name: name.clone(),
            })));
            Ok((effects, Reply::Done))
        }
        DbCommand::StageRootPassword { mount, name, password } => {
            let c = dbs.connection(mount, name).ok_or_else(|| Rejection::invalid("no connection by that name"))?;
            let mut effects = erase_all([&c.staged_password]);
            let (sealed, slot) = env.seal(password.expose().as_bytes(), &root_password_context(mount, name), 0)?;
            let e = DbRootPasswordStaged { mount: mount.clone(), name: name.clone(), password: sealed, time: now };
            effects.push(Effect::Event(Drafted { event: Event::DbRootPasswordStaged(e), slots: vec![slot] }));
            Ok((effects, Reply::Done))
        }
        DbCommand::ConfirmRootPassword { mount, name } => {
            let c = dbs.connection(mount, name).ok_or_else(|| Rejection::invalid("no connection by that name"))?;
            if c.staged_password.is_none() {
                return Err(Rejection::invalid("no root rotation in progress"));
            }
            let mut effects = erase_all([&c.password]);
            effects.push(event(Event::DbRootRotated(DbRootRotated {
                mount: mount.clone(),
                name: name.clone(),
                time: now,
            })));
            Ok((effects, Reply::Done))
        }
        DbCommand::WriteRole { mount, name, role } => {
            if dbs.static_role(mount, name).is_some() {
                return Err(Rejection::invalid(format!("Role {name:?} of type \"static\" already exists")));
            }
            let e = DbRoleWritten { mount: mount.clone(), name: name.clone(), role: role.clone() };
            Ok((vec![event(Event::DbRoleWritten(e))], Reply::Done))
        }
        DbCommand::DeleteRole { mount, name } => {
            if dbs.role(mount, name).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            let e = DbRoleDeleted { mount: mount.clone(), name: name.clone() };
            Ok((vec![event(Event::DbRoleDeleted(e))], Reply::Done))
        }
        DbCommand::WriteStaticRole { mount, name, role } => {
            if dbs.role(mount, name).is_some() {
                return Err(Rejection::invalid(format!("Role {name:?} of type \"dynamic\" already exists")));
            }
            if let Some(old) = dbs.static_role(mount, name)
                && (old.role.username != role.username || old.role.db_name != role.db_name)
            {
                return Err(Rejection::invalid("cannot update static role username or db_name"));
            }
            let e = DbStaticRoleWritten { mount: mount.clone(), name: name.clone(), role: role.clone() };
            Ok((vec![event(Event::DbStaticRoleWritten(e))], Reply::Done))
        }
        DbCommand::DeleteStaticRole { mount, name } => {
            let Some(old) = dbs.static_role(mount, name) else { return Ok((Vec::new(), Reply::Done)) };
            let mut effects = erase_all([&old.password, &old.staged_password]);
            let e = DbStaticRoleDeleted { mount: mount.clone(), name: name.clone() };
            effects.push(event(Event::DbStaticRoleDeleted(e)));
            Ok((effects, Reply::Done))
        }
        DbCommand::StageStaticPassword { mount, name, password } => {
            let s = dbs.static_role(mount, name).ok_or_else(|| Rejection::invalid("no static role by that name"))?;
            let mut effects = erase_all([&s.staged_password]);
            let (sealed, slot) = env.seal(password.expose().as_bytes(), &static_password_context(mount, name), 0)?;
            let e = DbStaticPasswordStaged { mount: mount.clone(), name: name.clone(), password: sealed, time: now };
            effects.push(Effect::Event(Drafted { event: Event::DbStaticPasswordStaged(e), slots: vec![slot] }));
            Ok((effects, Reply::Done))
        }
        DbCommand::ConfirmStaticPassword { mount, name } => {
            let s = dbs.static_role(mount, name).ok_or_else(|| Rejection::invalid("no static role by that name"))?;
            if s.staged_password.is_none() {
                return Err(Rejection::invalid("no rotation in progress"));
            }
            let mut effects = erase_all([&s.password]);
            let e = DbStaticPasswordRotated { mount: mount.clone(), name: name.clone(), time: now };
            effects.push(event(Event::DbStaticPasswordRotated(e)));
            Ok((effects, Reply::Done))
        }
        DbCommand::RecordStaticRotationFailure { mount, name, error } => {
            let Some(s) = dbs.static_role(mount, name) else { return Ok((Vec::new(), Reply::Done)) };
            let attempt = s.attempts + 1;
            let delay = (1u64 << (attempt - 1).min(20)).min(MAX_RETRY_SECS);
            let e = DbStaticRotationFailed {
                mount: mount.clone(),
                name: name.clone(),
                attempt,
                error: error.chars().take(1000).collect(),
                next_attempt: now + delay * NANOS,
                time: now,
            };
            Ok((vec![event(Event::DbStaticRotationFailed(e))], Reply::Done))
        }
    }
}

/// Erasures of whichever of these sealed values exist.
fn erase_all<const N: usize>(values: [&Option<SealedValue>; N]) -> Vec<Effect> {
    values.into_iter().flatten().map(|v| Effect::Erase { target: v.seq, slots: vec![0] }).collect()
}
