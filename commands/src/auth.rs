//! Rules of the auth methods' configuration: AppRole roles and secret ids, userpass
//! users, JWT and Kubernetes configs and roles. Logins are in `login.rs`.

use migrations::{
    AppRoleDeleted, AppRoleWritten, Event, JwtConfigWritten, JwtRoleDeleted, JwtRoleWritten, KubernetesConfigWritten,
    KubernetesRoleDeleted, KubernetesRoleWritten, SecretIdEnd, SecretIdIssued, SecretIdsDestroyed, UserpassUserDeleted,
    UserpassUserWritten,
};
use projections::State;
use projections::auth::{reviewer_jwt_context, userpass_hash_context};

use crate::decide::{Decided, Drafted, Effect, event};
use crate::ids::new_uuid;
use crate::{AuthCommand, Env, Rejection, Reply};

const NANOS: u64 = 1_000_000_000;

/// The domain of secret id hashes; the data is `<mount uuid> NUL <secret id>`.
pub const SECRET_ID_DOMAIN: &str = "approle-secret-id";

/// The keyed hash a secret id is known by.
pub fn secret_id_hash(env: &dyn Env, mount: &str, secret_id: &str) -> [u8; 32] {
    env.keyed_hash(SECRET_ID_DOMAIN, format!("{mount}\0{secret_id}").as_bytes())
}

pub(crate) fn decide(state: &State, cmd: &AuthCommand, env: &dyn Env) -> Decided {
    use AuthCommand::*;
    let mount_of = |uuid: &str| state.mounts.get(uuid).ok_or_else(|| Rejection::invalid("no auth mount here"));
    match cmd {
        WriteAppRole { mount, role } => {
            mount_of(mount)?;
            if let Some(m) = state.auth.mount(mount)
                && let Some(other) = m.approle_by_role_id(&role.role_id)
                && other.name != role.name
            {
                return Err(Rejection::invalid("role_id already in use"));
            }
            let e = AppRoleWritten { mount: mount.clone(), role: role.clone() };
            Ok((vec![event(Event::AppRoleWritten(e))], Reply::Done))
        }
        DeleteAppRole { mount, name } => {
            if state.auth.mount(mount).and_then(|m| m.approles.get(name)).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((
                vec![event(Event::AppRoleDeleted(AppRoleDeleted { mount: mount.clone(), name: name.clone() }))],
                Reply::Done,
            ))
        }
        IssueSecretId { mount, role, custom, metadata, cidr_list, token_bound_cidrs, num_uses, ttl } => {
            let r = state
                .auth
                .mount(mount)
                .and_then(|m| m.approles.get(role))
                .ok_or_else(|| Rejection::invalid(format!("role \"{role}\" does not exist")))?;
            let secret_id = match custom {
                Some(s) => s.expose().to_string(),
                None => new_uuid(env)?,
            };
            let id_hash = secret_id_hash(env, mount, &secret_id);
            if state.auth.mount(mount).is_some_and(|m| m.secret_ids.contains_key(&id_hash)) {
                return Err(Rejection::invalid("secret_id is already registered"));
            }
            // A secret id may narrow its role's limits, never widen them (Vault's rule).
            let num_uses = match (num_uses, r.secret_id_num_uses) {
                (Some(n), 0) => *n,
                (Some(n), max) if *n > 0 && *n <= max => *n,
                (Some(_), max) => {
                    return Err(Rejection::invalid(format!(
                        "num_uses cannot be higher than the role's secret_id_num_uses ({max})"
                    )));
                }
                (None, max) => max,
            };
            let ttl = match (ttl, r.secret_id_ttl) {
                (Some(t), 0) => *t,
                (Some(t), max) if *t > 0 && *t <= max => *t,
                (Some(_), max) => {
                    return Err(Rejection::invalid(format!(
                        "ttl cannot be longer than the role's secret_id_ttl ({max})"
                    )));
                }
                (None, max) => max,
            };
            if !r.secret_id_bound_cidrs.is_empty()
                && !cidr_list.iter().all(|c| r.secret_id_bound_cidrs.iter().any(|b| subset(c, b)))
            {
                return Err(Rejection::invalid(
                    "failed to verify the CIDR restrictions set on the secret ID: cidr_list must be a subset of the role's secret_id_bound_cidrs",
                ));
            }
            let now = env.now();
            let accessor = new_uuid(env)?;
            let e = SecretIdIssued {
                mount: mount.clone(),
                role: role.clone(),
                id_hash,
                accessor: accessor.clone(),
                metadata: metadata.clone(),
                cidr_list: cidr_list.clone(),
                token_bound_cidrs: token_bound_cidrs.clone(),
                num_uses,
                ttl,
                creation_time: now,
                expiration_time: if ttl == 0 { 0 } else { now + ttl * NANOS },
                custom: custom.is_some(),
            };
            Ok((vec![event(Event::SecretIdIssued(e))], Reply::SecretIdIssued { secret_id, accessor, num_uses, ttl }))
        }
        DestroySecretIds { mount, role, accessors, reason } => {
            let Some(m) = state.auth.mount(mount) else { return Ok((Vec::new(), Reply::Done)) };
            let live: Vec<String> =
                accessors.iter().filter(|a| m.secret_id_by_accessor(role, a).is_some()).cloned().collect();
            if live.is_empty() {
                return Ok((Vec::new(), Reply::Done));
            }
            let e = SecretIdsDestroyed { mount: mount.clone(), role: role.clone(), accessors: live, reason: *reason };
            Ok((vec![event(Event::SecretIdsDestroyed(e))], Reply::Done))
        }
        ExpireSecretIds => {
            let mut effects = Vec::new();
            let mut grouped: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
            for (mount, role, accessor) in state.auth.expired_secret_ids(env.now(), 4096) {
                grouped.entry((mount, role)).or_default().push(accessor);
            }
            for ((mount, role), accessors) in grouped {
                let e = SecretIdsDestroyed { mount, role, accessors, reason: SecretIdEnd::Expired };
                effects.push(event(Event::SecretIdsDestroyed(e)));
            }
            Ok((effects, Reply::Done))
        }
        WriteUser { mount, name, password_hash, token } => {
            mount_of(mount)?;
            let old = state.auth.mount(mount).and_then(|m| m.users.get(name)).cloned();
            if old.is_none() && password_hash.is_none() {
                return Err(Rejection::invalid("missing password"));
            }
            let mut effects = Vec::new();
            let (sealed, slots) = match password_hash {
                Some(h) => {
                    let (sealed, slot) = env.seal(h.expose().as_bytes(), &userpass_hash_context(mount, name), 0)?;
                    // The old hash goes: a replaced password cannot be tried against it any more.
                    if let Some(v) = old.as_ref().and_then(|u| u.password_hash.as_ref()) {
                        effects.push(Effect::Erase { target: v.seq, slots: vec![0] });
                    }
                    (Some(sealed), vec![slot])
                }
                None => (None, Vec::new()),
            };
            let e = UserpassUserWritten {
                mount: mount.clone(),
                name: name.clone(),
                password_hash: sealed,
                token: token.clone(),
                time: env.now(),
            };
            effects.insert(0, Effect::Event(Drafted { event: Event::UserpassUserWritten(e), slots }));
            Ok((effects, Reply::Done))
        }
        DeleteUser { mount, name } => {
            let Some(user) = state.auth.mount(mount).and_then(|m| m.users.get(name)) else {
                return Ok((Vec::new(), Reply::Done));
            };
            let mut effects: Vec<Effect> =
                user.password_hash.iter().map(|v| Effect::Erase { target: v.seq, slots: vec![0] }).collect();
            effects.push(event(Event::UserpassUserDeleted(UserpassUserDeleted {
                mount: mount.clone(),
                name: name.clone(),
            })));
            Ok((effects, Reply::Done))
        }
        WriteJwtConfig { mount, config } => {
            mount_of(mount)?;
            Ok((
                vec![event(Event::JwtConfigWritten(JwtConfigWritten { mount: mount.clone(), config: config.clone() }))],
                Reply::Done,
            ))
        }
        WriteJwtRole { mount, role } => {
            mount_of(mount)?;
            Ok((
                vec![event(Event::JwtRoleWritten(JwtRoleWritten { mount: mount.clone(), role: role.clone() }))],
                Reply::Done,
            ))
        }
        DeleteJwtRole { mount, name } => {
            if state.auth.mount(mount).and_then(|m| m.jwt_roles.get(name)).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            Ok((
                vec![event(Event::JwtRoleDeleted(JwtRoleDeleted { mount: mount.clone(), name: name.clone() }))],
                Reply::Done,
            ))
        }
        WriteK8sConfig { mount, config, reviewer_jwt } => {
            mount_of(mount)?;
            let mut effects = Vec::new();
            let (sealed, slots) = match reviewer_jwt {
                Some(j) => {
                    let (sealed, slot) = env.seal(j.expose().as_bytes(), &reviewer_jwt_context(mount), 0)?;
                    (Some(sealed), vec![slot])
                }
                None => (None, Vec::new()),
            };
            if let Some(v) =
                state.auth.mount(mount).and_then(|m| m.k8s_config.as_ref()).and_then(|c| c.token_reviewer_jwt.as_ref())
            {
                effects.push(Effect::Erase { target: v.seq, slots: vec![0] });
            }
            let e =
                KubernetesConfigWritten { mount: mount.clone(), config: config.clone(), token_reviewer_jwt: sealed };
            effects.insert(0, Effect::Event(Drafted { event: Event::KubernetesConfigWritten(e), slots }));
            Ok((effects, Reply::Done))
        }
        WriteK8sRole { mount, role } => {
            mount_of(mount)?;
            Ok((
                vec![event(Event::KubernetesRoleWritten(KubernetesRoleWritten {
                    mount: mount.clone(),
                    role: role.clone(),
                }))],
                Reply::Done,
            ))
        }
        DeleteK8sRole { mount, name } => {
            if state.auth.mount(mount).and_then(|m| m.k8s_roles.get(name)).is_none() {
                return Ok((Vec::new(), Reply::Done));
            }
            let e = KubernetesRoleDeleted { mount: mount.clone(), name: name.clone() };
            Ok((vec![event(Event::KubernetesRoleDeleted(e))], Reply::Done))
        }
    }
}

/// Whether the block `inner` lies inside the block `outer` (both normalised).
fn subset(inner: &str, outer: &str) -> bool {
    let parse =
        |s: &str| s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from));
    match (parse(inner), parse(outer)) {
        (Some(i), Some(o)) => o.contains(&i),
        _ => false,
    }
}
