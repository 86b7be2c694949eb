//! Key/value secrets: KV v2 versions and metadata, KV v1 entries and cubbyholes.
//! Values stay sealed here; only the API layer opens them, with the keyring.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{HashMap, OrdMap};
use ledger::{KeySlot, Sealed};
use migrations::{
    Envelope, KvConfigWritten, KvMetadata, KvMetadataDeleted, KvMetadataWritten, KvV1Deleted, KvV1Written,
    KvVersionsDeleted, KvVersionsUndeleted, KvWritten,
};

/// The store key of a token's cubbyhole ("cubbyhole/" + accessor).
pub fn cubbyhole_mount(accessor: &str) -> String {
    format!("cubbyhole/{accessor}")
}

/// The encryption context (AES-GCM associated data) of a KV v2 version.
pub fn kv_context(mount: &str, path: &str, version: u64) -> Vec<u8> {
    format!("kv2\0{mount}\0{path}\0{version}").into_bytes()
}

/// The encryption context of a KV v1 or cubbyhole entry written at `seq`'s event.
pub fn kv_v1_context(mount: &str, path: &str) -> Vec<u8> {
    format!("kv1\0{mount}\0{path}").into_bytes()
}

/// A sealed value and the key slot that opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub sealed: Sealed,
    pub slot: KeySlot,
    /// Seq of the event that wrote it (the target of its erasure).
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvVersion {
    /// ns since the Unix epoch.
    pub created: u64,
    /// Soft-delete time (ns), 0 when not deleted; may be in the future (delete_version_after).
    pub deletion: u64,
    pub destroyed: bool,
    /// `None` once destroyed (its payload erased).
    pub value: Option<SealedValue>,
}

impl KvVersion {
    /// True when a read at `now` must answer "deleted".
    pub fn deleted_at(&self, now: u64) -> bool {
        self.deletion != 0 && self.deletion <= now
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvSecret {
    pub versions: BTreeMap<u64, KvVersion>,
    pub current: u64,
    /// Versions up to `oldest - 1` were pruned by max_versions (0: nothing pruned yet).
    pub oldest: u64,
    pub metadata: KvMetadata,
    pub metadata_version: u64,
    pub created: u64,
    pub updated: u64,
}

/// Versions kept per secret when neither its metadata nor the mount config says.
pub const DEFAULT_MAX_VERSIONS: u64 = 10;

impl KvSecret {
    /// What a write of `version` prunes under `max` (0 = default): versions up to the
    /// returned cutoff, and `oldest` becomes cutoff + 1 (Vault's rule: checked on data
    /// writes only, `cutoff = version - max`, applied when `cutoff >= oldest`).
    pub fn prune_cutoff(&self, version: u64, max: u64) -> Option<u64> {
        let max = if max == 0 { DEFAULT_MAX_VERSIONS } else { max };
        let cutoff = version.checked_sub(max)?;
        (cutoff >= self.oldest).then_some(cutoff)
    }

    /// The max_versions in force: the secret's, else the mount's, else the default.
    pub fn effective_max(&self, config: &KvConfig) -> u64 {
        if self.metadata.max_versions > 0 { self.metadata.max_versions } else { config.max_versions }
    }
}

/// Mount-wide KV v2 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvConfig {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

#[derive(Debug, Clone, Default)]
pub struct KvStore {
    secrets: OrdMap<(String, String), Arc<KvSecret>>,
    configs: OrdMap<String, KvConfig>,
    v1: OrdMap<(String, String), Arc<SealedValue>>,
    /// Event seq → the value it wrote, so an erasure finds what it destroyed.
    by_seq: HashMap<u64, ValueRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueRef {
    V2 { mount: String, path: String, version: u64 },
    V1 { mount: String, path: String },
}

impl KvStore {
    pub fn secret(&self, mount: &str, path: &str) -> Option<&Arc<KvSecret>> {
        self.secrets.get(&(mount.to_string(), path.to_string()))
    }

    pub fn config(&self, mount: &str) -> KvConfig {
        self.configs.get(mount).copied().unwrap_or_default()
    }

    pub fn v1(&self, mount: &str, path: &str) -> Option<&Arc<SealedValue>> {
        self.v1.get(&(mount.to_string(), path.to_string()))
    }

    /// Immediate children of `prefix` among KV v2 secrets of `mount` ("dir/" for folders).
    pub fn list(&self, mount: &str, prefix: &str) -> Vec<String> {
        children(self.secrets.range((mount.to_string(), prefix.to_string())..).map(|((m, p), _)| (m, p)), mount, prefix)
    }

    /// Immediate children of `prefix` among KV v1 (or cubbyhole) entries of `mount`.
    pub fn list_v1(&self, mount: &str, prefix: &str) -> Vec<String> {
        children(self.v1.range((mount.to_string(), prefix.to_string())..).map(|((m, p), _)| (m, p)), mount, prefix)
    }

    /// Seqs of every value still readable in `mount` (to erase when it goes away).
    pub fn live_values(&self, mount: &str) -> Vec<u64> {
        let v2 =
            self.secrets.range((mount.to_string(), String::new())..).take_while(|((m, _), _)| m == mount).flat_map(
                |(_, s)| s.versions.values().filter_map(|v| v.value.as_ref().map(|x| x.seq)).collect::<Vec<_>>(),
            );
        let v1 = self
            .v1
            .range((mount.to_string(), String::new())..)
            .take_while(|((m, _), _)| m == mount)
            .map(|(_, v)| v.seq);
        v2.chain(v1).collect()
    }

    pub(crate) fn written(&mut self, e: &KvWritten, env: &Envelope) {
        let key = (e.mount.clone(), e.path.clone());
        let mut s = self.secrets.get(&key).map(|s| (**s).clone()).unwrap_or_default();
        if s.created == 0 {
            s.created = e.created;
        }
        s.updated = e.created;
        s.current = e.version;
        let value = env.slots.first().map(|slot| SealedValue { sealed: e.value.clone(), slot: *slot, seq: env.seq });
        s.versions.insert(e.version, KvVersion { created: e.created, deletion: e.delete_at, destroyed: false, value });
        // Versions beyond max_versions are pruned (their payloads are erased by the same
        // commit, see commands::kv).
        let max = s.effective_max(&self.config(&e.mount));
        if let Some(cutoff) = s.prune_cutoff(e.version, max) {
            s.versions.retain(|v, _| *v > cutoff);
            s.oldest = cutoff + 1;
        }
        self.by_seq.insert(env.seq, ValueRef::V2 { mount: e.mount.clone(), path: e.path.clone(), version: e.version });
        self.secrets.insert(key, Arc::new(s));
    }

    pub(crate) fn versions_deleted(&mut self, e: &KvVersionsDeleted) {
        let time = e.time;
        self.update(&e.mount, &e.path, |s| {
            for v in &e.versions {
                if let Some(ver) = s.versions.get_mut(v)
                    && !ver.destroyed
                    && !ver.deleted_at(time)
                {
                    ver.deletion = time;
                }
            }
        });
    }

    pub(crate) fn versions_undeleted(&mut self, e: &KvVersionsUndeleted) {
        self.update(&e.mount, &e.path, |s| {
            for v in &e.versions {
                if let Some(ver) = s.versions.get_mut(v)
                    && !ver.destroyed
                {
                    ver.deletion = 0;
                }
            }
        });
    }

    pub(crate) fn metadata_written(&mut self, e: &KvMetadataWritten) {
        let time = e.time;
        let key = (e.mount.clone(), e.path.clone());
        let mut s = self.secrets.get(&key).map(|s| (**s).clone()).unwrap_or_default();
        if s.created == 0 {
            s.created = time;
        }
        s.updated = time;
        s.metadata = e.metadata.clone();
        s.metadata_version += 1;
        self.secrets.insert(key, Arc::new(s));
    }

    pub(crate) fn metadata_deleted(&mut self, e: &KvMetadataDeleted) {
        self.secrets.remove(&(e.mount.clone(), e.path.clone()));
    }

    pub(crate) fn config_written(&mut self, e: &KvConfigWritten) {
        self.configs.insert(
            e.mount.clone(),
            KvConfig {
                max_versions: e.max_versions,
                cas_required: e.cas_required,
                delete_version_after: e.delete_version_after,
            },
        );
    }

    pub(crate) fn v1_written(&mut self, e: &KvV1Written, env: &Envelope) {
        if let Some(slot) = env.slots.first() {
            self.v1.insert(
                (e.mount.clone(), e.path.clone()),
                Arc::new(SealedValue { sealed: e.value.clone(), slot: *slot, seq: env.seq }),
            );
            self.by_seq.insert(env.seq, ValueRef::V1 { mount: e.mount.clone(), path: e.path.clone() });
        }
    }

    pub(crate) fn v1_deleted(&mut self, e: &KvV1Deleted) {
        self.v1.remove(&(e.mount.clone(), e.path.clone()));
    }

    /// The payload written at `seq` was erased: its version is destroyed for good.
    pub(crate) fn erased(&mut self, seq: u64) {
        match self.by_seq.remove(&seq) {
            Some(ValueRef::V2 { mount, path, version }) => self.update(&mount, &path, |s| {
                if let Some(v) = s.versions.get_mut(&version) {
                    v.destroyed = true;
                    v.value = None;
                }
            }),
            Some(ValueRef::V1 { mount, path }) => {
                let key = (mount, path);
                if self.v1.get(&key).is_some_and(|v| v.seq == seq) {
                    self.v1.remove(&key);
                }
            }
            None => {}
        }
    }

    /// Forgets everything of a mount (disabled mount, revoked token's cubbyhole).
    pub(crate) fn drop_mount(&mut self, mount: &str) {
        let v2: Vec<_> = self
            .secrets
            .range((mount.to_string(), String::new())..)
            .take_while(|((m, _), _)| m == mount)
            .map(|(k, _)| k.clone())
            .collect();
        for k in v2 {
            self.secrets.remove(&k);
        }
        let v1: Vec<_> = self
            .v1
            .range((mount.to_string(), String::new())..)
            .take_while(|((m, _), _)| m == mount)
            .map(|(k, _)| k.clone())
            .collect();
        for k in v1 {
            self.v1.remove(&k);
        }
        self.configs.remove(mount);
    }

    fn update(&mut self, mount: &str, path: &str, f: impl FnOnce(&mut KvSecret)) {
        let key = (mount.to_string(), path.to_string());
        if let Some(s) = self.secrets.get(&key) {
            let mut s = (**s).clone();
            f(&mut s);
            self.secrets.insert(key, Arc::new(s));
        }
    }
}

/// Immediate children of `prefix` from an ordered walk starting at (mount, prefix).
fn children<'a>(entries: impl Iterator<Item = (&'a String, &'a String)>, mount: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (m, p) in entries {
        if m != mount || !p.starts_with(prefix) {
            break;
        }
        let rest = &p[prefix.len()..];
        let child = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if !child.is_empty() && out.last().map(String::as_str) != Some(child) {
            out.push(child.to_string());
        }
    }
    out
}
