//! Rules of `sys/mounts` and `sys/auth`: which engines exist, no nested mounts, built-in
//! mounts stay, and a disabled mount takes its secrets with it (payloads erased).

use migrations::{Event, MountClass, MountDisabled, MountEnabled, MountTuned};
use projections::State;

use crate::decide::{Decided, Effect, event};
use crate::ids::{mount_accessor, new_uuid};
use crate::{Command, Env, Rejection, Reply};

/// Secrets engines an operator can mount (`sys/`, `cubbyhole/` and the token auth method
/// exist from init on).
pub const SECRET_KINDS: &[&str] = &["kv", "database"];
/// Auth methods an operator can mount.
pub const AUTH_KINDS: &[&str] = &["approle", "jwt", "kubernetes", "userpass"];
/// Prefixes secrets engines may not be mounted under.
const RESERVED: &[&str] = &["sys/", "auth/", "identity/", "cubbyhole/"];
/// Mounts that exist from init on and cannot be moved or disabled.
const BUILT_IN: &[&str] = &["sys/", "cubbyhole/", "auth/token/"];

pub(crate) fn decide(state: &State, cmd: &Command, env: &dyn Env) -> Decided {
    match cmd {
        Command::EnableMount { path, class, kind, description, options, config, local, seal_wrap } => {
            check_path(path)?;
            let prefix = api_prefix(path, *class);
            let known = match class {
                MountClass::Secret => SECRET_KINDS,
                MountClass::Auth => AUTH_KINDS,
            };
            if !known.contains(&kind.as_str()) {
                return Err(Rejection::invalid(format!("plugin not found in the catalog: {kind}")));
            }
            if let Some(reserved) = RESERVED.iter().find(|r| *class == MountClass::Secret && prefix.starts_with(*r)) {
                return Err(Rejection::invalid(format!("cannot mount under {reserved}")));
            }
            if let Some(m) = state.mounts.conflicting(&prefix) {
                return Err(Rejection::invalid(format!("path is already in use at {}", m.api_prefix())));
            }
            let uuid = new_uuid(env)?;
            let acc_prefix = match class {
                MountClass::Secret => kind.clone(),
                MountClass::Auth => format!("auth_{kind}"),
            };
            let accessor = mount_accessor(env, &acc_prefix)?;
            let e = MountEnabled {
                uuid: uuid.clone(),
                path: path.clone(),
                class: *class,
                kind: kind.clone(),
                accessor: accessor.clone(),
                description: description.clone(),
                options: options.clone(),
                config: config.clone(),
                local: *local,
                seal_wrap: *seal_wrap,
            };
            Ok((vec![event(Event::MountEnabled(e))], Reply::MountEnabled { uuid, accessor }))
        }
        Command::TuneMount { prefix, description, config, options } => {
            let m =
                state.mounts.at_prefix(prefix).ok_or_else(|| Rejection::invalid(format!("no mount at {prefix}")))?;
            let e = MountTuned {
                uuid: m.uuid.clone(),
                description: description.clone(),
                config: config.clone(),
                options: options.clone(),
            };
            Ok((vec![event(Event::MountTuned(e))], Reply::Done))
        }
        Command::DisableMount { prefix } => {
            if BUILT_IN.contains(&prefix.as_str()) {
                return Err(Rejection::invalid(format!("cannot unmount \"{prefix}\"")));
            }
            let Some(m) = state.mounts.at_prefix(prefix) else {
                return Ok((Vec::new(), Reply::Done));
            };
            let live = state.leases.under(prefix).len();
            if live > 0 {
                // The API revokes them first; a lease issued meanwhile keeps the mount.
                return Err(Rejection::invalid(format!("cannot unmount {prefix:?}: {live} leases are still live")));
            }
            let mut effects: Vec<Effect> = state
                .kv
                .live_values(&m.uuid)
                .into_iter()
                .chain(state.databases.live_values(&m.uuid))
                .chain(state.auth.live_values(&m.uuid))
                .map(|target| Effect::Erase { target, slots: vec![0] })
                .collect();
            if m.class == MountClass::Auth {
                // An auth method takes the tokens it issued with it, as in Vault.
                let issued = state.tokens.made_under(prefix);
                effects.extend(crate::token::revoke_subtrees(state, &issued, migrations::RevocationReason::Revoked));
            }
            effects.push(event(Event::MountDisabled(MountDisabled { uuid: m.uuid.clone() })));
            Ok((effects, Reply::Done))
        }
        _ => Err(Rejection::Internal("not a mount command".into())),
    }
}

/// A mount path is one or more non-empty segments, none of them `.` or `..`, ending in `/`
/// (the API adds it): `team/../evil/` would be a mount that no clean URL reaches, and that
/// the ACL could only name in a form Vault never sends.
fn check_path(path: &str) -> Result<(), Rejection> {
    let segments = path.strip_suffix('/').unwrap_or(path);
    if segments.is_empty() || segments.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(Rejection::invalid(format!(
            "invalid mount path {path:?}: empty, \".\" and \"..\" segments are not allowed"
        )));
    }
    if path.chars().any(char::is_control) {
        return Err(Rejection::invalid("invalid mount path: control characters are not allowed"));
    }
    Ok(())
}

fn api_prefix(path: &str, class: MountClass) -> String {
    match class {
        MountClass::Secret => path.to_string(),
        MountClass::Auth => format!("auth/{path}"),
    }
}
