//! Response wrapping: a response is sealed into the cubbyhole of a new token that may be
//! used once, only on `sys/wrapping/*`, until its TTL runs out. Unwrapping ends the token,
//! and with it the cubbyhole: the ledger keeps that a response was wrapped and read, and
//! erases the response itself.

use migrations::{Event, KvV1Written, TokenCreated};
use projections::State;
use projections::kv::{cubbyhole_mount, kv_v1_context};

use crate::decide::{Decided, Drafted, Effect, event};
use crate::ids::{new_accessor, new_token_id};
use crate::{Env, Rejection, Reply, Secret};

/// The one policy of a wrapping token.
pub const WRAPPING_POLICY: &str = "response-wrapping";
/// Where in its cubbyhole a wrapping token keeps the response.
pub const RESPONSE_PATH: &str = "response";

const NANOS: u64 = 1_000_000_000;

pub(crate) fn wrap(
    state: &State,
    response: &Secret,
    ttl: u64,
    creation_path: &str,
    wrapped_accessor: &str,
    env: &dyn Env,
) -> Decided {
    if ttl == 0 {
        return Err(Rejection::invalid("invalid wrap TTL"));
    }
    let id = new_token_id(env)?;
    let id_hash = env.token_hash(&id);
    if state.tokens.by_hash(&id_hash).is_some() {
        return Err(Rejection::Internal("token id collision".into()));
    }
    let accessor = new_accessor(env)?;
    let now = env.now();
    let mut meta = std::collections::BTreeMap::new();
    if !wrapped_accessor.is_empty() {
        meta.insert("wrapped_accessor".to_string(), wrapped_accessor.to_string());
    }
    let created = TokenCreated {
        id_hash,
        accessor: accessor.clone(),
        parent: None,
        policies: vec![WRAPPING_POLICY.to_string()],
        meta,
        display_name: WRAPPING_POLICY.to_string(),
        path: creation_path.to_string(),
        num_uses: 1,
        ttl,
        explicit_max_ttl: 0,
        period: 0,
        renewable: false,
        role: String::new(),
        entity_id: String::new(),
        issue_time: now,
        expire_time: now + ttl * NANOS,
        from_init: false,
        bound_cidrs: Vec::new(),
    };
    let store = cubbyhole_mount(&accessor);
    let (value, slot) = env.seal(response.expose().as_bytes(), &kv_v1_context(&store, RESPONSE_PATH), 0)?;
    let stored = KvV1Written { mount: store, path: RESPONSE_PATH.to_string(), value };
    let effects = vec![
        event(Event::TokenCreated(created)),
        Effect::Event(Drafted { event: Event::KvV1Written(stored), slots: vec![slot] }),
    ];
    Ok((effects, Reply::Wrapped { token: id, accessor, creation_time: now }))
}

/// A live wrapping token, or the refusal Vault gives.
fn wrapping_token<'s>(state: &'s State, accessor: &str) -> Result<&'s projections::token::Token, Rejection> {
    let t = state.tokens.by_accessor(accessor).ok_or(Rejection::PermissionDenied)?;
    if t.policies.iter().all(|p| p != WRAPPING_POLICY) {
        return Err(Rejection::invalid("token is not a valid response-wrapping token"));
    }
    Ok(t)
}

pub(crate) fn rewrap(state: &State, accessor: &str, env: &dyn Env) -> Decided {
    let t = wrapping_token(state, accessor)?;
    let store = cubbyhole_mount(accessor);
    let v = state.kv.v1(&store, RESPONSE_PATH).ok_or_else(|| Rejection::invalid("no wrapped response found"))?;
    let plain = env.open(&v.sealed, &v.slot, &kv_v1_context(&store, RESPONSE_PATH))?;
    let text = std::str::from_utf8(&plain).map_err(|_| Rejection::Internal("wrapped response is not text".into()))?;
    let wrapped_accessor = t.meta.get("wrapped_accessor").cloned().unwrap_or_default();
    let (mut effects, reply) = wrap(state, &Secret::new(text), t.creation_ttl, &t.path, &wrapped_accessor, env)?;
    effects.extend(crate::token::revoke_subtree(state, accessor, migrations::RevocationReason::Revoked));
    Ok((effects, reply))
}

/// Ends a wrapping token (its cubbyhole, the response, is erased with it).
pub(crate) fn unwrap(state: &State, accessor: &str) -> Decided {
    wrapping_token(state, accessor)?;
    Ok((crate::token::revoke_subtree(state, accessor, migrations::RevocationReason::UsesExhausted), Reply::Done))
}
