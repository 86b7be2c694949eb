//! Key/value secrets: KV v2 versions and metadata, KV v1 entries and cubbyholes.
//! Values stay sealed here; only the API layer opens them, with the keyring.

use std::collections::BTreeMap;
use std::ops::Bound;
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedValue {
    pub sealed: Sealed,
    pub slot: KeySlot,
    /// Seq of the event that wrote it (the target of its erasure).
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvVersion {
    /// ns since the Unix epoch.
    pub created: u64,
    /// Soft-delete time (ns), 0 when not deleted; may be in the future (delete_version_after).
    pub deletion: u64,
    pub destroyed: bool,
    /// `None` once destroyed (its payload erased). Shared: a write copies its secret's
    /// version map (the published state keeps the old one), and the ciphertexts need not
    /// be copied with it.
    pub value: Option<Arc<SealedValue>>,
}

impl KvVersion {
    /// True when a read at `now` must answer "deleted".
    pub fn deleted_at(&self, now: u64) -> bool {
        self.deletion != 0 && self.deletion <= now
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct KvConfig {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

/// Secrets are keyed by `mount \0 path` in one `Arc<str>`: it sorts like the pair (so a
/// prefix is a contiguous range), and cloning it — which every insert does for the keys of
/// the nodes it copies — is a counter bump, not an allocation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KvStore {
    secrets: OrdMap<Arc<str>, Arc<KvSecret>>,
    configs: OrdMap<String, KvConfig>,
    v1: OrdMap<Arc<str>, Arc<SealedValue>>,
    /// Event seq → the value it wrote, so an erasure finds what it destroyed.
    by_seq: HashMap<u64, ValueRef>,
}

/// Where a sealed value lives: a KV v2 version (`Some`) or a KV v1 / cubbyhole entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ValueRef {
    key: Arc<str>,
    version: Option<u64>,
}

fn key(mount: &str, path: &str) -> String {
    format!("{mount}\0{path}")
}

/// The entries of `map` whose key starts with `prefix`, in order.
fn with_prefix<'a, V>(
    map: &'a OrdMap<Arc<str>, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a Arc<str>, &'a V)> + 'a {
    map.range::<_, str>((Bound::Included(prefix), Bound::Unbounded)).take_while(move |(k, _)| k.starts_with(prefix))
}

impl KvStore {
    pub fn secret(&self, mount: &str, path: &str) -> Option<&Arc<KvSecret>> {
        self.secrets.get(key(mount, path).as_str())
    }

    pub fn config(&self, mount: &str) -> KvConfig {
        self.configs.get(mount).copied().unwrap_or_default()
    }

    pub fn v1(&self, mount: &str, path: &str) -> Option<&Arc<SealedValue>> {
        self.v1.get(key(mount, path).as_str())
    }

    /// Immediate children of `prefix` among KV v2 secrets of `mount` ("dir/" for folders).
    pub fn list(&self, mount: &str, prefix: &str) -> Vec<String> {
        let start = key(mount, prefix);
        children(with_prefix(&self.secrets, &start).map(|(k, _)| &k[start.len()..]))
    }

    /// Immediate children of `prefix` among KV v1 (or cubbyhole) entries of `mount`.
    pub fn list_v1(&self, mount: &str, prefix: &str) -> Vec<String> {
        let start = key(mount, prefix);
        children(with_prefix(&self.v1, &start).map(|(k, _)| &k[start.len()..]))
    }

    /// Every KV v2 secret as (mount key, path, secret), in key order (point-in-time reports).
    pub fn all_secrets(&self) -> impl Iterator<Item = (&str, &str, &Arc<KvSecret>)> {
        self.secrets.iter().filter_map(|(k, s)| k.split_once('\0').map(|(m, p)| (m, p, s)))
    }

    /// Every KV v1 and cubbyhole entry as (mount key, path, value), in key order.
    pub fn all_v1(&self) -> impl Iterator<Item = (&str, &str, &Arc<SealedValue>)> {
        self.v1.iter().filter_map(|(k, v)| k.split_once('\0').map(|(m, p)| (m, p, v)))
    }

    /// Seqs of every value still readable in `mount` (to erase when it goes away).
    pub fn live_values(&self, mount: &str) -> Vec<u64> {
        let start = key(mount, "");
        let v2 = with_prefix(&self.secrets, &start)
            .flat_map(|(_, s)| s.versions.values().filter_map(|v| v.value.as_ref().map(|x| x.seq)).collect::<Vec<_>>());
        let v1 = with_prefix(&self.v1, &start).map(|(_, v)| v.seq);
        v2.chain(v1).collect()
    }

    pub(crate) fn written(&mut self, e: &KvWritten, env: &Envelope) {
        let config = self.config(&e.mount);
        let path = key(&e.mount, &e.path);
        let key: Arc<str> = match self.secrets.get_key_value(path.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(path),
        };
        // In place when this state holds the only copy (a second write to the secret in the
        // same fold, or the erasure that follows a write): no clone of its versions.
        let s = Arc::make_mut(self.secrets.entry(key.clone()).or_default());
        if s.created == 0 {
            s.created = e.created;
        }
        s.updated = e.created;
        s.current = e.version;
        let value =
            env.slots.first().map(|slot| Arc::new(SealedValue { sealed: e.value.clone(), slot: *slot, seq: env.seq }));
        s.versions.insert(e.version, KvVersion { created: e.created, deletion: e.delete_at, destroyed: false, value });
        // Versions beyond max_versions are pruned (their payloads are erased by the same
        // commit, see commands::kv).
        let max = s.effective_max(&config);
        if let Some(cutoff) = s.prune_cutoff(e.version, max) {
            s.versions.retain(|v, _| *v > cutoff);
            s.oldest = cutoff + 1;
        }
        self.by_seq.insert(env.seq, ValueRef { key, version: Some(e.version) });
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
        let key: Arc<str> = Arc::from(key(&e.mount, &e.path));
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
        self.secrets.remove(key(&e.mount, &e.path).as_str());
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
            let key: Arc<str> = Arc::from(key(&e.mount, &e.path));
            self.v1.insert(key.clone(), Arc::new(SealedValue { sealed: e.value.clone(), slot: *slot, seq: env.seq }));
            self.by_seq.insert(env.seq, ValueRef { key, version: None });
        }
    }

    pub(crate) fn v1_deleted(&mut self, e: &KvV1Deleted) {
        self.v1.remove(key(&e.mount, &e.path).as_str());
    }

    /// The payload written at `seq` was erased: its version is destroyed for good.
    pub(crate) fn erased(&mut self, seq: u64) {
        let Some(r) = self.by_seq.remove(&seq) else { return };
        match r.version {
            Some(version) => self.update_key(&r.key, |s| {
                if let Some(v) = s.versions.get_mut(&version) {
                    v.destroyed = true;
                    v.value = None;
                }
            }),
            None => {
                if self.v1.get(&r.key).is_some_and(|v| v.seq == seq) {
                    self.v1.remove(&r.key);
                }
            }
        }
    }

    /// Forgets everything of a mount (disabled mount, revoked token's cubbyhole).
    pub(crate) fn drop_mount(&mut self, mount: &str) {
        let start = key(mount, "");
        let v2: Vec<Arc<str>> = with_prefix(&self.secrets, &start).map(|(k, _)| k.clone()).collect();
        for k in v2 {
            self.secrets.remove(&k);
        }
        let v1: Vec<Arc<str>> = with_prefix(&self.v1, &start).map(|(k, _)| k.clone()).collect();
        for k in v1 {
            self.v1.remove(&k);
        }
        self.configs.remove(mount);
    }

    fn update(&mut self, mount: &str, path: &str, f: impl FnOnce(&mut KvSecret)) {
        self.update_key(key(mount, path).as_str(), f);
    }

    fn update_key(&mut self, key: &str, f: impl FnOnce(&mut KvSecret)) {
        if let Some(s) = self.secrets.get_mut(key) {
            f(Arc::make_mut(s));
        }
    }
}

/// Immediate children from the ordered rest-of-keys under a prefix ("dir/" for folders).
fn children<'a>(rests: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rest in rests {
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
