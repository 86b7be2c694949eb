//! The events that create a barrier: wrapped keys, the built-in mounts, the root token.
//!
//! Key hierarchy (ARCHITECTURE.md): unseal key (only ever as Shamir shares, outside the
//! server) → root key → keyring terms, the ledger signing key and the keyed-hash key.
//! Every key below the unseal key is recorded here wrapped under the one above it, with
//! the contexts of `barrier`, which opens them.

use std::collections::BTreeMap;

use barrier::{HMAC_KEY_CONTEXT, KEYRING_CONTEXT, ROOT_KEY_CONTEXT, SIGNING_KEY_CONTEXT};
use ledger::seal::{random_key, wrap};
use migrations::{Event, Initialized, MountClass, MountConfig, MountEnabled, TokenCreated};
use zeroize::Zeroizing;

use crate::decide::Drafted;
use crate::ids::{mount_accessor, new_accessor, new_token_id, new_uuid};
use crate::{Env, Rejection};

/// Fresh keys for a new barrier.
pub struct InitKeys {
    pub unseal_key: Zeroizing<[u8; 32]>,
    pub root_key: Zeroizing<[u8; 32]>,
    pub keyring_key: Zeroizing<[u8; 32]>,
    pub signing_seed: Zeroizing<[u8; 32]>,
    pub hmac_key: Zeroizing<[u8; 32]>,
}

impl InitKeys {
    pub fn generate() -> Result<InitKeys, Rejection> {
        let k = || random_key().map_err(|e| Rejection::Internal(e.to_string()));
        Ok(InitKeys { unseal_key: k()?, root_key: k()?, keyring_key: k()?, signing_seed: k()?, hmac_key: k()? })
    }
}

fn wrapped(key: &[u8; 32], plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, Rejection> {
    wrap(key, plaintext, context).map_err(|e| Rejection::Internal(e.to_string()))
}

/// The events of `sys/init`: the Initialized record, the built-in mounts, and the root
/// token (returned in clear once, never stored). `root_token_id` fixes the root token
/// (dev mode's `-dev-root-token-id`); a dev root token looks like Vault's dev one.
pub fn initial_events(
    shares: u8,
    threshold: u8,
    keys: &InitKeys,
    root_token_id: Option<&str>,
    dev: bool,
    env: &dyn Env,
) -> Result<(Vec<Drafted>, String), Rejection> {
    let init = Initialized {
        secret_shares: shares,
        secret_threshold: threshold,
        wrapped_root_key: wrapped(&keys.unseal_key, &*keys.root_key, ROOT_KEY_CONTEXT)?,
        keyring_term: 1,
        wrapped_keyring_key: wrapped(&keys.root_key, &*keys.keyring_key, KEYRING_CONTEXT)?,
        wrapped_signing_key: wrapped(&keys.root_key, &*keys.signing_seed, SIGNING_KEY_CONTEXT)?,
        wrapped_hmac_key: wrapped(&keys.root_key, &*keys.hmac_key, HMAC_KEY_CONTEXT)?,
        cluster_id: new_uuid(env)?,
    };
    let mut events = vec![Drafted::plain(Event::Initialized(init))];
    for (path, class, kind, description, local) in [
        ("sys/", MountClass::Secret, "system", "system endpoints used for control, policy and debugging", false),
        ("cubbyhole/", MountClass::Secret, "cubbyhole", "per-token private secret storage", true),
        ("token/", MountClass::Auth, "token", "token based credentials", false),
    ] {
        let accessor = match class {
            MountClass::Secret => mount_accessor(env, kind)?,
            MountClass::Auth => mount_accessor(env, &format!("auth_{kind}"))?,
        };
        let config = MountConfig {
            token_type: if kind == "token" { "default-service".into() } else { String::new() },
            ..MountConfig::default()
        };
        events.push(Drafted::plain(Event::MountEnabled(MountEnabled {
            uuid: new_uuid(env)?,
            path: path.into(),
            class,
            kind: kind.into(),
            accessor,
            description: description.into(),
            options: BTreeMap::new(),
            config,
            local,
            seal_wrap: kind == "system",
        })));
    }
    let root_token = match root_token_id {
        Some(id) => id.to_string(),
        None => new_token_id(env)?,
    };
    events.push(Drafted::plain(Event::TokenCreated(TokenCreated {
        id_hash: env.token_hash(&root_token),
        accessor: new_accessor(env)?,
        parent: None,
        policies: vec!["root".into()],
        meta: BTreeMap::new(),
        display_name: if dev { "token".into() } else { "root".into() },
        path: if dev { "auth/token/create".into() } else { "auth/token/root".into() },
        num_uses: 0,
        ttl: 0,
        explicit_max_ttl: 0,
        period: 0,
        renewable: false,
        role: String::new(),
        entity_id: String::new(),
        issue_time: env.now(),
        expire_time: 0,
        from_init: !dev,
        bound_cidrs: Vec::new(),
    })));
    Ok((events, root_token))
}
