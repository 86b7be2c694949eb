//! Logins through the auth methods: the credential's last checks (an AppRole secret id
//! is spent here, so two logins can never share its last use), the caller's entity and
//! alias (made at the first login), external group memberships, and an orphan token.

use std::collections::BTreeMap;

use migrations::{Entity, EntityAlias, EntityAliasWritten, EntityWritten, Event, ExternalGroupsSynced, SecretIdUsed};
use projections::State;
use projections::mount::Mount;

use crate::cidr;
use crate::decide::{Decided, Effect, event};
use crate::ids::new_uuid;
use crate::{Env, Login, LoginProof, Rejection, Reply, TokenParams, VerifiedLogin};

/// The answer to every AppRole credential problem: it never says which part was wrong.
const APPROLE_INVALID: &str = "invalid role or secret ID";

pub(crate) fn login(state: &State, l: &Login, env: &dyn Env) -> Decided {
    let mount = state.mounts.get(&l.mount).ok_or(Rejection::PermissionDenied)?.clone();
    let mut effects = Vec::new();
    let verified = match &l.proof {
        LoginProof::AppRole { role_id, secret_id_hash } => {
            approle(state, &mount, role_id, secret_id_hash.as_ref(), &l.remote_addr, env, &mut effects)?
        }
        LoginProof::Verified(v) => v.clone(),
    };
    if !verified.token.token_bound_cidrs.is_empty() && !cidr::allows(&verified.token.token_bound_cidrs, &l.remote_addr)
    {
        return Err(Rejection::PermissionDenied);
    }
    // A role or user configured with the root policy must not mint root tokens (Vault
    // refuses the same login): root comes only from init and root generation.
    if verified.token.token_policies.iter().any(|p| p == "root") {
        return Err(Rejection::invalid("auth methods cannot create root tokens"));
    }
    if matches!(verified.token.token_type.as_str(), "batch" | "default-batch") {
        return Err(Rejection::invalid("batch tokens are not supported by this server; use service tokens"));
    }
    let entity_id = entity_for(state, &mount, &verified, env, &mut effects)?;

    let t = &verified.token;
    let max_ttl = if t.token_max_ttl > 0 && (l.max_ttl == 0 || t.token_max_ttl < l.max_ttl) {
        t.token_max_ttl
    } else {
        l.max_ttl
    };
    let params = TokenParams {
        policies: Some(t.token_policies.clone()),
        no_default_policy: t.token_no_default_policy,
        meta: verified.meta.clone(),
        display_name: Some(display_name(&mount, &verified.display_name)),
        num_uses: t.token_num_uses,
        ttl: (t.token_ttl > 0).then_some(t.token_ttl),
        explicit_max_ttl: (t.token_explicit_max_ttl > 0).then_some(t.token_explicit_max_ttl),
        period: (t.token_period > 0).then_some(t.token_period),
        renewable: None,
        orphan: true,
        id: None,
        role: None,
        entity_id,
        path: l.path.clone(),
        bound_cidrs: t.token_bound_cidrs.clone(),
        login: true,
    };
    let (token_effects, reply) = crate::token::create(state, None, &params, l.default_ttl, max_ttl, env)?;
    effects.extend(token_effects);
    let Reply::TokenIssued { id, accessor, warnings } = reply else {
        return Err(Rejection::Internal("token creation answered something else".into()));
    };
    Ok((effects, Reply::LoggedIn { id, accessor, warnings }))
}

/// Vault's display name of a login token: the mount path, dashed, then the method's name
/// for the caller ("userpass-alice", "approle").
fn display_name(mount: &Mount, name: &str) -> String {
    let base = mount.path.trim_end_matches('/').replace('/', "-");
    if name.is_empty() { base } else { format!("{base}-{name}") }
}

fn approle(
    state: &State,
    mount: &Mount,
    role_id: &str,
    secret_id_hash: Option<&[u8; 32]>,
    remote_addr: &str,
    env: &dyn Env,
    effects: &mut Vec<Effect>,
) -> Result<VerifiedLogin, Rejection> {
    let invalid = || Rejection::invalid(APPROLE_INVALID);
    let m = state.auth.mount(&mount.uuid).ok_or_else(invalid)?;
    let role = m.approle_by_role_id(role_id).ok_or_else(invalid)?.clone();
    let mut meta = BTreeMap::new();
    let mut token = role.token.clone();
    if role.bind_secret_id {
        let hash = secret_id_hash.ok_or_else(|| Rejection::invalid("missing secret_id"))?;
        let s = m.secret_ids.get(hash).filter(|s| s.role == role.name && !s.expired(env.now())).ok_or_else(invalid)?;
        if !cidr::allows(&role.secret_id_bound_cidrs, remote_addr) || !cidr::allows(&s.cidr_list, remote_addr) {
            return Err(invalid());
        }
        if s.num_uses > 0 {
            effects.push(event(Event::SecretIdUsed(SecretIdUsed {
                mount: mount.uuid.clone(),
                role: role.name.clone(),
                accessor: s.accessor.clone(),
            })));
        }
        if !s.token_bound_cidrs.is_empty() {
            token.token_bound_cidrs = s.token_bound_cidrs.clone();
        }
        meta.extend(s.metadata.clone());
    } else if !cidr::allows(&role.secret_id_bound_cidrs, remote_addr) {
        return Err(invalid());
    }
    meta.insert("role_name".into(), role.name.clone());
    Ok(VerifiedLogin {
        alias_name: role.role_id.clone(),
        alias_metadata: BTreeMap::from([("role_name".to_string(), role.name.clone())]),
        token,
        meta,
        display_name: String::new(),
        groups: None,
    })
}

/// The entity the login belongs to: the one its alias points at, else a new entity with a
/// new alias. Group claims update its external group memberships.
fn entity_for(
    state: &State,
    mount: &Mount,
    v: &VerifiedLogin,
    env: &dyn Env,
    effects: &mut Vec<Effect>,
) -> Result<String, Rejection> {
    let now = env.now();
    let entity_id = match state.identity.alias_by_name(&mount.accessor, &v.alias_name) {
        Some(alias) => {
            let entity = state.identity.entity(&alias.canonical_id).ok_or(Rejection::PermissionDenied)?;
            if entity.disabled {
                return Err(Rejection::PermissionDenied);
            }
            if alias.metadata != v.alias_metadata {
                let mut a = (**alias).clone();
                a.metadata = v.alias_metadata.clone();
                effects.push(event(Event::EntityAliasWritten(EntityAliasWritten { alias: a, time: now })));
            }
            entity.id.clone()
        }
        None => {
            let id = new_uuid(env)?;
            let entity = Entity { id: id.clone(), name: format!("entity_{}", &id[..8]), ..Entity::default() };
            effects.push(event(Event::EntityWritten(EntityWritten { entity, time: now })));
            let alias = EntityAlias {
                id: new_uuid(env)?,
                canonical_id: id.clone(),
                mount_accessor: mount.accessor.clone(),
                name: v.alias_name.clone(),
                metadata: v.alias_metadata.clone(),
                custom_metadata: BTreeMap::new(),
            };
            effects.push(event(Event::EntityAliasWritten(EntityAliasWritten { alias, time: now })));
            id
        }
    };
    if let Some(names) = &v.groups {
        let mut ids: Vec<String> = names
            .iter()
            .filter_map(|n| state.identity.group_alias_by_name(&mount.accessor, n))
            .map(|a| a.canonical_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        if ids != state.identity.external_groups(&entity_id, &mount.accessor) {
            effects.push(event(Event::ExternalGroupsSynced(ExternalGroupsSynced {
                entity_id: entity_id.clone(),
                mount_accessor: mount.accessor.clone(),
                group_ids: ids,
            })));
        }
    }
    Ok(entity_id)
}
