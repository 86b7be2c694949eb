//! Rules of `auth/token`: policies a child may get, TTLs and their caps, renewal, and
//! revocation of whole subtrees (a token's cubbyhole is erased with it).

use std::collections::BTreeSet;

use migrations::{Event, RevocationReason, TokenCreated, TokenRenewed, TokensRevoked};
use projections::State;
use projections::kv::cubbyhole_mount;
use projections::token::Token;

use crate::decide::{Decided, Effect, event};
use crate::ids::{new_accessor, new_token_id};
use crate::{Env, Rejection, Reply, TokenParams};

const NANOS: u64 = 1_000_000_000;

pub(crate) fn create(
    state: &State,
    parent: Option<&Token>,
    p: &TokenParams,
    default_ttl: u64,
    max_ttl: u64,
    env: &dyn Env,
) -> Decided {
    let role = match &p.role {
        Some(name) => {
            Some(state.tokens.role(name).ok_or_else(|| Rejection::invalid(format!("unknown role {name}")))?.clone())
        }
        None => None,
    };
    let orphan = p.orphan || role.as_ref().is_some_and(|r| r.orphan);
    let no_default = p.no_default_policy || role.as_ref().is_some_and(|r| r.token_no_default_policy);
    let parent_policies: Vec<String> = parent.map(|t| t.policies.clone()).unwrap_or_default();
    let parent_is_root = parent.is_some_and(|t| t.is_root());
    let mut warnings = Vec::new();

    let policies: Vec<String> = match &p.policies {
        None => parent_policies.clone(),
        Some(requested) => {
            let mut set: BTreeSet<String> =
                requested.iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
            if !no_default {
                set.insert("default".into());
            }
            if parent.is_some() && !parent_is_root {
                let allowed: BTreeSet<&str> = parent_policies.iter().map(String::as_str).chain(["default"]).collect();
                if !set.iter().all(|p| allowed.contains(p.as_str())) {
                    return Err(Rejection::invalid("child policies must be subset of parent"));
                }
            }
            set.into_iter().collect()
        }
    };
    if let Some(r) = &role
        && !r.allowed_policies.is_empty()
    {
        let allowed: BTreeSet<&str> = r.allowed_policies.iter().map(String::as_str).chain(["default"]).collect();
        if !policies.iter().all(|p| allowed.contains(p.as_str())) {
            return Err(Rejection::invalid(format!(
                "token policies ({}) must be subset of the role's allowed policies ({}) or glob policies ([])",
                go_list(&policies),
                go_list(&r.allowed_policies)
            )));
        }
    }
    for name in &policies {
        if name != "root" && state.policies.get(name).is_none() {
            warnings.push(format!("Policy \"{name}\" does not exist"));
        }
    }
    let is_root = policies.iter().any(|p| p == "root");

    let period = p.period.or_else(|| role.as_ref().map(|r| r.token_period)).unwrap_or(0);
    let explicit_max = p.explicit_max_ttl.or_else(|| role.as_ref().map(|r| r.token_explicit_max_ttl)).unwrap_or(0);
    let mut ttl = if period > 0 {
        period
    } else {
        match p.ttl.or_else(|| role.as_ref().map(|r| r.token_ttl).filter(|&t| t > 0)) {
            Some(t) => t,
            None if is_root => 0,
            None => default_ttl,
        }
    };
    if ttl > max_ttl && max_ttl > 0 && period == 0 {
        ttl = max_ttl;
    }
    if explicit_max > 0 && (ttl == 0 || ttl > explicit_max) {
        ttl = explicit_max;
    }
    let renewable = p.renewable.unwrap_or_else(|| role.as_ref().is_none_or(|r| r.renewable)) && ttl > 0;

    let id = match &p.id {
        Some(id) => {
            if state.tokens.by_hash(&env.token_hash(id)).is_some() {
                return Err(Rejection::invalid("cannot create a token with a duplicate ID"));
            }
            warnings.push("Supplying a custom ID for the token uses the weaker SHA1 hashing instead of the more secure SHA2-256 HMAC for token obfuscation. SHA1 hashed tokens on the wire leads to less secure lookups.".into());
            id.clone()
        }
        None => new_token_id(env)?,
    };
    let accessor = new_accessor(env)?;
    let now = env.now();
    let display_name = match p.display_name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(n) if p.login => n.to_string(),
        Some(n) => format!(
            "token-{}",
            n.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "-")
        ),
        None => "token".into(),
    };
    let path = match (&p.role, role.as_ref().map(|r| r.path_suffix.as_str())) {
        (Some(name), Some(suffix)) if !suffix.is_empty() => format!("auth/token/create/{name}/{suffix}"),
        (Some(name), _) => format!("auth/token/create/{name}"),
        _ => p.path.clone(),
    };
    let created = TokenCreated {
        id_hash: env.token_hash(&id),
        accessor: accessor.clone(),
        parent: if orphan { None } else { parent.map(|t| t.accessor.clone()) },
        policies,
        meta: p.meta.clone(),
        display_name,
        path,
        num_uses: p.num_uses,
        ttl,
        explicit_max_ttl: explicit_max,
        period,
        renewable,
        role: p.role.clone().unwrap_or_default(),
        entity_id: p.entity_id.clone(),
        issue_time: now,
        expire_time: if ttl == 0 { 0 } else { now + ttl * NANOS },
        from_init: false,
        bound_cidrs: p.bound_cidrs.clone(),
    };
    Ok((vec![event(Event::TokenCreated(created))], Reply::TokenIssued { id, accessor, warnings }))
}

/// Go's `fmt` rendering of a string slice: `["a" "b"]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(" "))
}

pub(crate) fn renew(state: &State, accessor: &str, increment: Option<u64>, max_ttl: u64, env: &dyn Env) -> Decided {
    let t = state.tokens.by_accessor(accessor).ok_or_else(|| Rejection::invalid("token not found"))?;
    if !t.renewable {
        return Err(Rejection::invalid("lease is not renewable"));
    }
    let now = env.now();
    let wanted = if t.period > 0 { t.period } else { increment.unwrap_or(t.last_ttl) };
    let mut ttl = wanted;
    let mut warnings = Vec::new();
    // The hard limit: explicit_max_ttl, then the mount/system max, both from issue time.
    let mut limits = Vec::new();
    if t.explicit_max_ttl > 0 {
        limits.push(t.issue_time + t.explicit_max_ttl * NANOS);
    }
    if max_ttl > 0 && t.period == 0 {
        limits.push(t.issue_time + max_ttl * NANOS);
    }
    if let Some(limit) = limits.into_iter().min()
        && now + ttl * NANOS > limit
    {
        let left = limit.saturating_sub(now) / NANOS;
        warnings.push(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            crate::duration::format_go_duration(wanted),
            crate::duration::format_go_duration(left)
        ));
        ttl = left;
    }
    if ttl == 0 {
        // Nothing left to grant: the token is past its max TTL and expires now.
        return Ok((
            revoke_subtree(state, accessor, RevocationReason::Expired),
            Reply::TokenRenewed { accessor: accessor.to_string(), warnings },
        ));
    }
    let e = TokenRenewed { accessor: accessor.to_string(), ttl, expire_time: now + ttl * NANOS };
    Ok((vec![event(Event::TokenRenewed(e))], Reply::TokenRenewed { accessor: accessor.to_string(), warnings }))
}

pub(crate) fn revoke(state: &State, accessor: &str, orphan_children: bool) -> Decided {
    if state.tokens.by_accessor(accessor).is_none() {
        return Ok((Vec::new(), Reply::Revoked { found: false }));
    }
    let effects = if orphan_children {
        let mut effects = erase_cubbyholes(state, &[accessor.to_string()]);
        effects.push(event(Event::TokensRevoked(TokensRevoked {
            accessors: vec![accessor.to_string()],
            orphaned: state.tokens.children_of(accessor),
            reason: RevocationReason::Revoked,
        })));
        effects
    } else {
        revoke_subtree(state, accessor, RevocationReason::Revoked)
    };
    Ok((effects, Reply::Revoked { found: true }))
}

/// Revokes every token whose TTL ran out, with its descendants.
pub(crate) fn expire(state: &State, env: &dyn Env) -> Decided {
    let mut all: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for accessor in state.tokens.expired(env.now()) {
        for a in state.tokens.subtree(&accessor) {
            if seen.insert(a.clone()) {
                all.push(a);
            }
        }
    }
    if all.is_empty() {
        return Ok((Vec::new(), Reply::Done));
    }
    let mut effects = erase_cubbyholes(state, &all);
    effects.push(event(Event::TokensRevoked(TokensRevoked {
        accessors: all,
        orphaned: Vec::new(),
        reason: RevocationReason::Expired,
    })));
    Ok((effects, Reply::Done))
}

/// Revokes several tokens with their descendants, in one event.
pub(crate) fn revoke_subtrees(state: &State, roots: &[String], reason: RevocationReason) -> Vec<Effect> {
    let mut seen = BTreeSet::new();
    let accessors: Vec<String> =
        roots.iter().flat_map(|a| state.tokens.subtree(a)).filter(|a| seen.insert(a.clone())).collect();
    if accessors.is_empty() {
        return Vec::new();
    }
    let mut effects = erase_cubbyholes(state, &accessors);
    effects.push(event(Event::TokensRevoked(TokensRevoked { accessors, orphaned: Vec::new(), reason })));
    effects
}

/// The token, its descendants and their cubbyholes.
pub(crate) fn revoke_subtree(state: &State, accessor: &str, reason: RevocationReason) -> Vec<Effect> {
    let accessors = state.tokens.subtree(accessor);
    let mut effects = erase_cubbyholes(state, &accessors);
    effects.push(event(Event::TokensRevoked(TokensRevoked { accessors, orphaned: Vec::new(), reason })));
    effects
}

fn erase_cubbyholes(state: &State, accessors: &[String]) -> Vec<Effect> {
    accessors
        .iter()
        .flat_map(|a| state.kv.live_values(&cubbyhole_mount(a)))
        .map(|target| Effect::Erase { target, slots: vec![0] })
        .collect()
}
