//! Auth methods' state per mount: AppRole roles and secret ids, userpass users, JWT and
//! Kubernetes configs and roles.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};
use migrations::{
    AppRole, Envelope, JwtConfig, JwtRole, KubernetesConfig, KubernetesConfigWritten, KubernetesRole, SecretIdIssued,
    SecretIdsDestroyed, TokenSettings, UserpassUserWritten,
};

use crate::kv::SealedValue;

/// Encryption context of a userpass password hash.
pub fn userpass_hash_context(mount: &str, name: &str) -> Vec<u8> {
    format!("userpass\0{mount}\0{name}").into_bytes()
}

/// Encryption context of a Kubernetes token reviewer JWT.
pub fn reviewer_jwt_context(mount: &str) -> Vec<u8> {
    format!("k8s-reviewer\0{mount}").into_bytes()
}

/// Vault's glob (`ryanuber/go-glob`): `*` matches any run of characters, nothing else is
/// special.
pub fn glob_match(pattern: &str, subject: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == subject;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = subject.strip_prefix(first) else { return false };
    let mut middle: Vec<&str> = parts.collect();
    let last = middle.pop().unwrap_or_default();
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether a Kubernetes role binds a service account of this name (OpenBao: `*` alone
/// admits any name, else one of the globs must match).
pub fn k8s_name_bound(role: &KubernetesRole, name: &str) -> bool {
    let names = &role.bound_service_account_names;
    (names.len() == 1 && names.first().is_some_and(|n| n == "*")) || names.iter().any(|n| glob_match(n, name))
}

/// Whether a Kubernetes role binds service accounts of this namespace (OpenBao: a first
/// entry `*` admits any namespace, else one of the globs must match).
pub fn k8s_namespace_bound(role: &KubernetesRole, namespace: &str) -> bool {
    let namespaces = &role.bound_service_account_namespaces;
    namespaces.first().is_some_and(|n| n == "*") || namespaces.iter().any(|n| glob_match(n, namespace))
}

/// A live secret id of an AppRole role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretId {
    pub role: String,
    pub id_hash: [u8; 32],
    pub accessor: String,
    pub metadata: BTreeMap<String, String>,
    pub cidr_list: Vec<String>,
    pub token_bound_cidrs: Vec<String>,
    /// Uses granted (0: unlimited) and uses left.
    pub num_uses: u64,
    pub uses_left: u64,
    pub ttl: u64,
    pub creation_time: u64,
    pub expiration_time: u64,
    /// ns of the last change (issue or use).
    pub last_updated: u64,
}

impl SecretId {
    pub fn expired(&self, now: u64) -> bool {
        self.expiration_time != 0 && now >= self.expiration_time
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserpassUser {
    pub password_hash: Option<SealedValue>,
    pub token: TokenSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct K8sConfig {
    pub config: KubernetesConfig,
    pub token_reviewer_jwt: Option<SealedValue>,
}

/// One auth mount's state (only the parts of its method are used).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthMount {
    pub approles: OrdMap<String, Arc<AppRole>>,
    /// role_id → role name.
    pub role_ids: HashMap<String, String>,
    /// keyed hash of the secret id → secret id.
    pub secret_ids: HashMap<[u8; 32], Arc<SecretId>>,
    /// (role, accessor) → keyed hash.
    pub secret_id_accessors: OrdMap<(String, String), [u8; 32]>,
    pub users: OrdMap<String, Arc<UserpassUser>>,
    pub jwt_config: Option<Arc<JwtConfig>>,
    pub jwt_roles: OrdMap<String, Arc<JwtRole>>,
    pub k8s_config: Option<Arc<K8sConfig>>,
    pub k8s_roles: OrdMap<String, Arc<KubernetesRole>>,
}

impl AuthMount {
    pub fn approle_by_role_id(&self, role_id: &str) -> Option<&Arc<AppRole>> {
        self.role_ids.get(role_id).and_then(|name| self.approles.get(name))
    }

    /// Accessors of a role's secret ids, in order.
    pub fn secret_id_accessors(&self, role: &str) -> Vec<String> {
        let from = (role.to_string(), String::new());
        self.secret_id_accessors
            .range(from..)
            .take_while(|((r, _), _)| r == role)
            .map(|((_, a), _)| a.clone())
            .collect()
    }

    pub fn secret_id_by_accessor(&self, role: &str, accessor: &str) -> Option<&Arc<SecretId>> {
        let hash = self.secret_id_accessors.get(&(role.to_string(), accessor.to_string()))?;
        self.secret_ids.get(hash)
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthMethods {
    mounts: HashMap<String, AuthMount>,
    /// (expiration time, mount, role, accessor) of secret ids that expire.
    secret_id_expiry: OrdSet<(u64, String, String, String)>,
}

fn sealed(e: &Envelope, value: &ledger::Sealed) -> Option<SealedValue> {
    e.slots.first().map(|slot| SealedValue { sealed: value.clone(), slot: *slot, seq: e.seq })
}

impl AuthMethods {
    pub fn mount(&self, uuid: &str) -> Option<&AuthMount> {
        self.mounts.get(uuid)
    }

    /// `(mount, role, accessor)` of secret ids expired at `now` (ns), at most `limit`.
    pub fn expired_secret_ids(&self, now: u64, limit: usize) -> Vec<(String, String, String)> {
        self.secret_id_expiry
            .iter()
            .take_while(|(t, ..)| *t <= now)
            .take(limit)
            .map(|(_, m, r, a)| (m.clone(), r.clone(), a.clone()))
            .collect()
    }

    /// Seqs of every sealed value of a mount (to erase when it is disabled).
    pub fn live_values(&self, mount: &str) -> Vec<u64> {
        let Some(m) = self.mounts.get(mount) else { return Vec::new() };
        let users = m.users.values().filter_map(|u| u.password_hash.as_ref().map(|v| v.seq));
        let reviewer = m.k8s_config.iter().filter_map(|c| c.token_reviewer_jwt.as_ref().map(|v| v.seq));
        users.chain(reviewer).collect()
    }

    pub(crate) fn drop_mount(&mut self, uuid: &str) {
        if let Some(m) = self.mounts.remove(uuid) {
            for s in m.secret_ids.values() {
                self.secret_id_expiry.remove(&(
                    s.expiration_time,
                    uuid.to_string(),
                    s.role.clone(),
                    s.accessor.clone(),
                ));
            }
        }
    }

    pub(crate) fn approle_written(&mut self, mount: &str, role: &AppRole) {
        let m = self.mounts.entry(mount.to_string()).or_default();
        if let Some(old) = m.approles.get(&role.name) {
            m.role_ids.remove(&old.role_id);
        }
        m.role_ids.insert(role.role_id.clone(), role.name.clone());
        m.approles.insert(role.name.clone(), Arc::new(role.clone()));
    }

    pub(crate) fn approle_deleted(&mut self, mount: &str, name: &str) {
        let accessors = match self.mounts.get(mount) {
            Some(m) => m.secret_id_accessors(name),
            None => return,
        };
        self.secret_ids_gone(mount, name, &accessors);
        if let Some(m) = self.mounts.get_mut(mount)
            && let Some(old) = m.approles.remove(name)
        {
            m.role_ids.remove(&old.role_id);
        }
    }

    pub(crate) fn secret_id_issued(&mut self, e: &SecretIdIssued) {
        let s = SecretId {
            role: e.role.clone(),
            id_hash: e.id_hash,
            accessor: e.accessor.clone(),
            metadata: e.metadata.clone(),
            cidr_list: e.cidr_list.clone(),
            token_bound_cidrs: e.token_bound_cidrs.clone(),
            num_uses: e.num_uses,
            uses_left: e.num_uses,
            ttl: e.ttl,
            creation_time: e.creation_time,
            expiration_time: e.expiration_time,
            last_updated: e.creation_time,
        };
        if s.expiration_time != 0 {
            self.secret_id_expiry.insert((s.expiration_time, e.mount.clone(), e.role.clone(), e.accessor.clone()));
        }
        let m = self.mounts.entry(e.mount.clone()).or_default();
        m.secret_id_accessors.insert((e.role.clone(), e.accessor.clone()), e.id_hash);
        m.secret_ids.insert(e.id_hash, Arc::new(s));
    }

    /// One use spent; the last one removes the secret id.
    pub(crate) fn secret_id_used(&mut self, mount: &str, role: &str, accessor: &str, time: u64) {
        let Some(m) = self.mounts.get_mut(mount) else { return };
        let Some(hash) = m.secret_id_accessors.get(&(role.to_string(), accessor.to_string())).copied() else {
            return;
        };
        let Some(s) = m.secret_ids.get(&hash).cloned() else { return };
        if s.num_uses == 0 {
            return;
        }
        if s.uses_left <= 1 {
            self.secret_ids_gone(mount, role, &[accessor.to_string()]);
            return;
        }
        let mut s = (*s).clone();
        s.uses_left -= 1;
        s.last_updated = time;
        m.secret_ids.insert(hash, Arc::new(s));
    }

    pub(crate) fn secret_ids_destroyed(&mut self, e: &SecretIdsDestroyed) {
        self.secret_ids_gone(&e.mount, &e.role, &e.accessors);
    }

    fn secret_ids_gone(&mut self, mount: &str, role: &str, accessors: &[String]) {
        let Some(m) = self.mounts.get_mut(mount) else { return };
        for accessor in accessors {
            let Some(hash) = m.secret_id_accessors.remove(&(role.to_string(), accessor.clone())) else { continue };
            if let Some(s) = m.secret_ids.remove(&hash) {
                self.secret_id_expiry.remove(&(
                    s.expiration_time,
                    mount.to_string(),
                    role.to_string(),
                    accessor.clone(),
                ));
            }
        }
    }

    pub(crate) fn user_written(&mut self, e: &UserpassUserWritten, env: &Envelope) {
        let m = self.mounts.entry(e.mount.clone()).or_default();
        let password_hash = match &e.password_hash {
            Some(p) => sealed(env, p),
            None => m.users.get(&e.name).and_then(|u| u.password_hash.clone()),
        };
        m.users.insert(e.name.clone(), Arc::new(UserpassUser { password_hash, token: e.token.clone() }));
    }

    pub(crate) fn user_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.users.remove(name);
        }
    }

    pub(crate) fn jwt_config_written(&mut self, mount: &str, config: &JwtConfig) {
        self.mounts.entry(mount.to_string()).or_default().jwt_config = Some(Arc::new(config.clone()));
    }

    pub(crate) fn jwt_role_written(&mut self, mount: &str, role: &JwtRole) {
        self.mounts.entry(mount.to_string()).or_default().jwt_roles.insert(role.name.clone(), Arc::new(role.clone()));
    }

    pub(crate) fn jwt_role_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.jwt_roles.remove(name);
        }
    }

    pub(crate) fn k8s_config_written(&mut self, e: &KubernetesConfigWritten, env: &Envelope) {
        let m = self.mounts.entry(e.mount.clone()).or_default();
        let token_reviewer_jwt = e.token_reviewer_jwt.as_ref().and_then(|j| sealed(env, j));
        m.k8s_config = Some(Arc::new(K8sConfig { config: e.config.clone(), token_reviewer_jwt }));
    }

    pub(crate) fn k8s_role_written(&mut self, mount: &str, role: &KubernetesRole) {
        self.mounts.entry(mount.to_string()).or_default().k8s_roles.insert(role.name.clone(), Arc::new(role.clone()));
    }

    pub(crate) fn k8s_role_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.k8s_roles.remove(name);
        }
    }
}
