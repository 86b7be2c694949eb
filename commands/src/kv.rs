//! Rules of KV v2 (versions, check-and-set, soft delete, destroy, metadata) and KV v1 /
//! cubbyhole. Destroying a version erases its payload: the PayloadErased event *is* the
//! destroy, so there is no window where the ledger says destroyed and the key survives.

use migrations::{
    Event, KvConfigWritten, KvMetadataDeleted, KvMetadataWritten, KvV1Deleted, KvV1Written, KvVersionsDeleted,
    KvVersionsUndeleted, KvWritten,
};
use projections::State;
use projections::kv::{KvSecret, kv_context, kv_v1_context};
use serde_json::{Map, Value};

use crate::decide::{Decided, Drafted, Effect, event};
use crate::{Command, Env, Rejection, Reply};

const NANOS: u64 = 1_000_000_000;

pub(crate) fn decide(state: &State, cmd: &Command, env: &dyn Env) -> Decided {
    match cmd {
        Command::KvPut { mount, path, data, cas } => put(state, mount, path, data.clone(), *cas, env),
        Command::KvPatch { mount, path, patch, cas } => {
            let s = state.kv.secret(mount, path).ok_or(Rejection::NotFound)?;
            let current = s
                .versions
                .get(&s.current)
                .filter(|v| !v.destroyed && !v.deleted_at(env.now()))
                .and_then(|v| v.value.as_ref())
                .ok_or(Rejection::NotFound)?;
            let plaintext = env.open(&current.sealed, &current.slot, &kv_context(mount, path, s.current))?;
            let mut data: Value = serde_json::from_slice(&plaintext)
                .map_err(|_| Rejection::Internal("stored secret is not JSON".into()))?;
            merge_patch(&mut data, &Value::Object(patch.clone()));
            let Value::Object(data) = data else {
                return Err(Rejection::Internal("patched secret is not an object".into()));
            };
            put(state, mount, path, data, *cas, env)
        }
        Command::KvDeleteLatest { mount, path } => {
            let now = env.now();
            let Some(s) = state.kv.secret(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            let deletable = s.versions.get(&s.current).is_some_and(|v| !v.destroyed && !v.deleted_at(now));
            Ok((if deletable { vec![deleted(mount, path, vec![s.current], now)] } else { Vec::new() }, Reply::Done))
        }
        Command::KvDeleteVersions { mount, path, versions } => {
            if versions.is_empty() {
                return Err(Rejection::invalid("No version number provided"));
            }
            let now = env.now();
            let Some(s) = state.kv.secret(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            let vs = select(s, versions, |v| !v.destroyed && !v.deleted_at(now));
            Ok((if vs.is_empty() { Vec::new() } else { vec![deleted(mount, path, vs, now)] }, Reply::Done))
        }
        Command::KvUndelete { mount, path, versions } => {
            if versions.is_empty() {
                return Err(Rejection::invalid("No version number provided"));
            }
            let Some(s) = state.kv.secret(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            let vs = select(s, versions, |v| !v.destroyed && v.deletion != 0);
            let e = KvVersionsUndeleted { mount: mount.clone(), path: path.clone(), versions: vs.clone() };
            Ok((if vs.is_empty() { Vec::new() } else { vec![event(Event::KvVersionsUndeleted(e))] }, Reply::Done))
        }
        Command::KvDestroy { mount, path, versions } => {
            if versions.is_empty() {
                return Err(Rejection::invalid("no version number provided"));
            }
            let Some(s) = state.kv.secret(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            let effects =
                versions.iter().filter_map(|v| s.versions.get(v)?.value.as_ref()).map(|val| erase(val.seq)).collect();
            Ok((effects, Reply::Done))
        }
        Command::KvMetadataPut { mount, path, update } => {
            // A lower max_versions takes effect at the next data write, as in Vault.
            let metadata =
                update.apply_to(state.kv.secret(mount, path).map(|s| s.metadata.clone()).unwrap_or_default());
            let e = KvMetadataWritten { mount: mount.clone(), path: path.clone(), metadata, time: env.now() };
            Ok((vec![event(Event::KvMetadataWritten(e))], Reply::Done))
        }
        Command::KvMetadataDelete { mount, path } => {
            let Some(s) = state.kv.secret(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            let mut effects: Vec<Effect> =
                s.versions.values().filter_map(|v| v.value.as_ref()).map(|v| erase(v.seq)).collect();
            effects
                .push(event(Event::KvMetadataDeleted(KvMetadataDeleted { mount: mount.clone(), path: path.clone() })));
            Ok((effects, Reply::Done))
        }
        Command::KvConfigPut { mount, max_versions, cas_required, delete_version_after } => {
            let c = state.kv.config(mount);
            let e = KvConfigWritten {
                mount: mount.clone(),
                max_versions: max_versions.unwrap_or(c.max_versions),
                cas_required: cas_required.unwrap_or(c.cas_required),
                delete_version_after: delete_version_after.unwrap_or(c.delete_version_after),
            };
            Ok((vec![event(Event::KvConfigWritten(e))], Reply::Done))
        }
        Command::KvV1Put { mount, path, data } => {
            if data.is_empty() {
                return Err(Rejection::invalid("missing data fields"));
            }
            let plaintext =
                serde_json::to_vec(&Value::Object(data.clone())).map_err(|e| Rejection::Internal(e.to_string()))?;
            let (value, slot) = env.seal(&plaintext, &kv_v1_context(mount, path), 0)?;
            // The value it replaces is erased: a v1 entry has no history to keep.
            let mut effects: Vec<Effect> = state.kv.v1(mount, path).map(|old| erase(old.seq)).into_iter().collect();
            effects.push(Effect::Event(Drafted {
                event: Event::KvV1Written(KvV1Written { mount: mount.clone(), path: path.clone(), value }),
                slots: vec![slot],
            }));
            Ok((effects, Reply::Done))
        }
        Command::KvV1Delete { mount, path } => {
            let Some(old) = state.kv.v1(mount, path) else { return Ok((Vec::new(), Reply::Done)) };
            Ok((
                vec![
                    erase(old.seq),
                    event(Event::KvV1Deleted(KvV1Deleted { mount: mount.clone(), path: path.clone() })),
                ],
                Reply::Done,
            ))
        }
        _ => Err(Rejection::Internal("not a kv command".into())),
    }
}

fn put(state: &State, mount: &str, path: &str, data: Map<String, Value>, cas: Option<u64>, env: &dyn Env) -> Decided {
    let s = state.kv.secret(mount, path);
    let config = state.kv.config(mount);
    let current = s.map(|s| s.current).unwrap_or(0);
    let cas_required = s.is_some_and(|s| s.metadata.cas_required) || config.cas_required;
    match cas {
        None if cas_required => return Err(Rejection::invalid("check-and-set parameter required for this call")),
        Some(c) if c != current => {
            return Err(Rejection::invalid("check-and-set parameter did not match the current version"));
        }
        _ => {}
    }
    let version = current + 1;
    let now = env.now();
    let delete_after =
        s.map(|s| s.metadata.delete_version_after).filter(|&d| d > 0).unwrap_or(config.delete_version_after);
    let delete_at = if delete_after > 0 { now + delete_after * NANOS } else { 0 };
    let plaintext = serde_json::to_vec(&Value::Object(data)).map_err(|e| Rejection::Internal(e.to_string()))?;
    let (value, slot) = env.seal(&plaintext, &kv_context(mount, path, version), 0)?;
    let mut effects = Vec::new();
    if let Some(s) = s
        && let Some(cutoff) = s.prune_cutoff(version, s.effective_max(&config))
    {
        effects.extend(s.versions.range(..=cutoff).filter_map(|(_, v)| v.value.as_ref()).map(|v| erase(v.seq)));
    }
    let written =
        KvWritten { mount: mount.to_string(), path: path.to_string(), version, value, created: now, delete_at };
    effects.push(Effect::Event(Drafted { event: Event::KvWritten(written), slots: vec![slot] }));
    Ok((effects, Reply::KvWritten { version, created: now, deletion: delete_at }))
}

fn select(s: &KvSecret, versions: &[u64], keep: impl Fn(&projections::kv::KvVersion) -> bool) -> Vec<u64> {
    let mut out: Vec<u64> = versions.iter().copied().filter(|v| s.versions.get(v).is_some_and(&keep)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn deleted(mount: &str, path: &str, versions: Vec<u64>, time: u64) -> Effect {
    event(Event::KvVersionsDeleted(KvVersionsDeleted {
        mount: mount.to_string(),
        path: path.to_string(),
        versions,
        time,
    }))
}

fn erase(seq: u64) -> Effect {
    Effect::Erase { target: seq, slots: vec![0] }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": 1}, "n": null}));
        assert_eq!(doc, json!({"a": {"b": 1}}));
    }
}
