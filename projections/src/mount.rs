//! The mount table: which engine serves which path prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use migrations::{MountClass, MountConfig, MountEnabled, MountTuned};

/// One mounted secrets engine or auth method.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub uuid: String,
    /// Path with trailing slash, relative to its class root ("secret/", or "token/" for
    /// the auth method at "auth/token/").
    pub path: String,
    pub class: MountClass,
    pub kind: String,
    pub accessor: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub config: MountConfig,
    pub local: bool,
    pub seal_wrap: bool,
    /// When it was enabled, ns since the Unix epoch.
    pub enabled_at: u64,
}

impl Mount {
    /// The API path prefix this mount serves ("secret/" or "auth/token/").
    pub fn api_prefix(&self) -> String {
        match self.class {
            MountClass::Secret => self.path.clone(),
            MountClass::Auth => format!("auth/{}", self.path),
        }
    }

    /// KV version of a "kv" mount (1 unless `options.version` says 2).
    pub fn kv_version(&self) -> u8 {
        if self.options.get("version").map(String::as_str) == Some("2") { 2 } else { 1 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mounts {
    by_uuid: OrdMap<String, Arc<Mount>>,
    /// API prefix ("secret/", "auth/token/") → uuid.
    by_prefix: OrdMap<String, String>,
    /// uuid → API prefix of every mount ever enabled, disabled ones included: events name
    /// mounts by uuid, uuids are never reused and a mount never moves, so this names the
    /// mount of any past event.
    ever: OrdMap<String, String>,
}

impl Mounts {
    pub fn get(&self, uuid: &str) -> Option<&Arc<Mount>> {
        self.by_uuid.get(uuid)
    }

    /// The mount serving `api_path` (longest prefix), and the rest of the path after it.
    pub fn route<'p>(&self, api_path: &'p str) -> Option<(&Arc<Mount>, &'p str)> {
        // The whole path names a mount without its slash ("secret" for "secret/"): looked up
        // among the keys that start with it, so no key is built (every request comes here;
        // the other candidates are slices of the path).
        if !api_path.ends_with('/')
            && let Some((_, uuid)) = self
                .by_prefix
                .range::<_, str>((std::ops::Bound::Included(api_path), std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(api_path))
                .find(|(k, _)| k.len() == api_path.len() + 1 && k.ends_with('/'))
        {
            return self.by_uuid.get(uuid).map(|m| (m, ""));
        }
        // Then each '/' ends a possible mount path, the longest first.
        let mut end = api_path.len();
        while let Some(slash) = api_path[..end].rfind('/') {
            let candidate = &api_path[..=slash];
            if let Some(uuid) = self.by_prefix.get(candidate) {
                return self.by_uuid.get(uuid).map(|m| (m, &api_path[slash + 1..]));
            }
            end = slash;
        }
        None
    }

    /// The mount at exactly this API prefix ("secret/", "auth/userpass/").
    pub fn at_prefix(&self, prefix: &str) -> Option<&Arc<Mount>> {
        self.by_prefix.get(prefix).and_then(|u| self.by_uuid.get(u))
    }

    /// A mount whose prefix contains or is contained in `prefix` (nested mounts are refused).
    pub fn conflicting(&self, prefix: &str) -> Option<&Arc<Mount>> {
        self.by_prefix
            .iter()
            .find(|(p, _)| p.starts_with(prefix) || prefix.starts_with(p.as_str()))
            .and_then(|(_, u)| self.by_uuid.get(u))
    }

    /// The API prefix of the mount with this uuid, even if it was disabled since.
    pub fn prefix_ever(&self, uuid: &str) -> Option<&str> {
        self.ever.get(uuid).map(String::as_str)
    }

    /// Mounts of one class, ordered by path.
    pub fn of_class(&self, class: MountClass) -> impl Iterator<Item = &Arc<Mount>> {
        self.by_uuid.values().filter(move |m| m.class == class)
    }

    pub(crate) fn enabled(&mut self, e: &MountEnabled, time: u64) {
        let m = Mount {
            uuid: e.uuid.clone(),
            path: e.path.clone(),
            class: e.class,
            kind: e.kind.clone(),
            accessor: e.accessor.clone(),
            description: e.description.clone(),
            options: e.options.clone(),
            config: e.config.clone(),
            local: e.local,
            seal_wrap: e.seal_wrap,
            enabled_at: time,
        };
        self.by_prefix.insert(m.api_prefix(), m.uuid.clone());
        self.ever.insert(m.uuid.clone(), m.api_prefix());
        self.by_uuid.insert(m.uuid.clone(), Arc::new(m));
    }

    pub(crate) fn tuned(&mut self, e: &MountTuned) {
        if let Some(m) = self.by_uuid.get(&e.uuid) {
            let mut m = (**m).clone();
            if let Some(d) = &e.description {
                m.description = d.clone();
            }
            m.config = e.config.clone();
            m.options = e.options.clone();
            self.by_uuid.insert(m.uuid.clone(), Arc::new(m));
        }
    }

    pub(crate) fn disabled(&mut self, uuid: &str) -> Option<Arc<Mount>> {
        let m = self.by_uuid.remove(uuid)?;
        self.by_prefix.remove(&m.api_prefix());
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enable(ms: &mut Mounts, path: &str, class: MountClass) {
        ms.enabled(
            &MountEnabled {
                uuid: format!("u-{path}"),
                path: path.into(),
                class,
                kind: "kv".into(),
                accessor: format!("kv_{path}"),
                description: String::new(),
                options: BTreeMap::new(),
                config: MountConfig::default(),
                local: false,
                seal_wrap: false,
            },
            0,
        );
    }

    #[test]
    fn routes_by_longest_prefix() {
        let mut ms = Mounts::default();
        enable(&mut ms, "secret/", MountClass::Secret);
        enable(&mut ms, "team/a/", MountClass::Secret);
        enable(&mut ms, "token/", MountClass::Auth);
        let (m, rest) = ms.route("secret/data/app").expect("routed");
        assert_eq!((m.path.as_str(), rest), ("secret/", "data/app"));
        let (m, rest) = ms.route("team/a/x").expect("routed");
        assert_eq!((m.path.as_str(), rest), ("team/a/", "x"));
        assert_eq!(ms.route("secret").map(|(m, r)| (m.path.clone(), r)), Some(("secret/".into(), "")));
        assert!(ms.route("team/b/x").is_none());
        let (m, rest) = ms.route("auth/token/create").expect("routed");
        assert_eq!((m.kind.as_str(), rest), ("kv", "create"));
        assert!(ms.conflicting("team/").is_some());
        assert!(ms.conflicting("team/a/b/").is_some());
        assert!(ms.conflicting("other/").is_none());
        // A mount whose name sorts between `secret` and `secret/` does not hide `secret/`.
        enable(&mut ms, "secret-x/", MountClass::Secret);
        enable(&mut ms, "secret.y/", MountClass::Secret);
        assert_eq!(ms.route("secret").map(|(m, r)| (m.path.clone(), r)), Some(("secret/".into(), "")));
        assert_eq!(ms.route("secret-x").map(|(m, r)| (m.path.clone(), r)), Some(("secret-x/".into(), "")));
        let (m, rest) = ms.route("secret/").expect("routed");
        assert_eq!((m.path.as_str(), rest), ("secret/", ""));
        assert!(ms.route("secre").is_none() && ms.route("").is_none() && ms.route("/").is_none());
        // A disabled mount keeps its name for the events that came before.
        ms.disabled("u-team/a/");
        assert!(ms.get("u-team/a/").is_none());
        assert_eq!(ms.prefix_ever("u-team/a/"), Some("team/a/"));
        assert_eq!(ms.prefix_ever("u-token/"), Some("auth/token/"));
        assert_eq!(ms.prefix_ever("u-nowhere/"), None);
    }
}
