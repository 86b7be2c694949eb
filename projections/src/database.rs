//! The `database` engine's state per mount: connections (with their sealed root password
//! and any staged one), roles, and static roles (with their sealed current password).

use std::sync::Arc;

use imbl::{HashMap, OrdMap};
use migrations::{
    DbConnectionConfig, DbConnectionWritten, DbRole, DbRootPasswordStaged, DbStaticPasswordStaged, DbStaticRole,
    DbStaticRotationFailed, Envelope,
};

use crate::kv::SealedValue;

/// Encryption context of a connection's root password.
pub fn root_password_context(mount: &str, name: &str) -> Vec<u8> {
    format!("db-root\0{mount}\0{name}").into_bytes()
}

/// Encryption context of a static role's password.
pub fn static_password_context(mount: &str, name: &str) -> Vec<u8> {
    format!("db-static\0{mount}\0{name}").into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DbConnection {
    pub config: DbConnectionConfig,
    pub password: Option<SealedValue>,
    /// A rotate-root whose outcome is not recorded yet: the database may hold this one.
    pub staged_password: Option<SealedValue>,
    /// Seq of the last event that changed the connection (its version, for pools).
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DbStatic {
    pub role: DbStaticRole,
    pub password: Option<SealedValue>,
    pub staged_password: Option<SealedValue>,
    /// ns since the epoch; 0 before the first rotation.
    pub last_rotation: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: u64,
}

impl DbStatic {
    /// When the next rotation (or retry) is due (ns).
    pub fn due(&self) -> u64 {
        if self.staged_password.is_some() || self.password.is_none() {
            return self.next_attempt;
        }
        (self.last_rotation + self.role.rotation_period.saturating_mul(1_000_000_000)).max(self.next_attempt)
    }
}

/// One `database` mount.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DbMount {
    pub connections: OrdMap<String, Arc<DbConnection>>,
    pub roles: OrdMap<String, Arc<DbRole>>,
    pub statics: OrdMap<String, Arc<DbStatic>>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Databases {
    mounts: HashMap<String, DbMount>,
}

fn sealed(e: &Envelope, value: &ledger::Sealed) -> Option<SealedValue> {
    e.slots.first().map(|slot| SealedValue { sealed: value.clone(), slot: *slot, seq: e.seq })
}

impl Databases {
    pub fn mount(&self, uuid: &str) -> Option<&DbMount> {
        self.mounts.get(uuid)
    }

    pub fn connection(&self, mount: &str, name: &str) -> Option<&Arc<DbConnection>> {
        self.mounts.get(mount)?.connections.get(name)
    }

    pub fn role(&self, mount: &str, name: &str) -> Option<&Arc<DbRole>> {
        self.mounts.get(mount)?.roles.get(name)
    }

    pub fn static_role(&self, mount: &str, name: &str) -> Option<&Arc<DbStatic>> {
        self.mounts.get(mount)?.statics.get(name)
    }

    /// Every static role of every mount, as `(mount, name, role)`.
    pub fn all_statics(&self) -> Vec<(String, String, Arc<DbStatic>)> {
        let mut out = Vec::new();
        for (mount, m) in self.mounts.iter() {
            for (name, s) in m.statics.iter() {
                out.push((mount.clone(), name.clone(), s.clone()));
            }
        }
        out
    }

    /// Seqs of every sealed password of a mount (to erase when it is disabled).
    pub fn live_values(&self, mount: &str) -> Vec<u64> {
        let Some(m) = self.mounts.get(mount) else { return Vec::new() };
        let connections = m.connections.values().flat_map(|c| [&c.password, &c.staged_password]);
        let statics = m.statics.values().flat_map(|s| [&s.password, &s.staged_password]);
        connections.chain(statics).flatten().map(|v| v.seq).collect()
    }

    pub(crate) fn drop_mount(&mut self, uuid: &str) {
        self.mounts.remove(uuid);
    }

    pub(crate) fn connection_written(&mut self, e: &DbConnectionWritten, env: &Envelope) {
        let m = self.mounts.entry(e.mount.clone()).or_default();
        let old = m.connections.get(&e.name).cloned();
        let password = match &e.password {
            Some(p) => sealed(env, p),
            None => old.as_ref().and_then(|o| o.password.clone()),
        };
        // An operator-given password supersedes a rotation that never finished.
        let staged_password = if e.password.is_some() { None } else { old.and_then(|o| o.staged_password.clone()) };
        let c = DbConnection { config: e.config.clone(), password, staged_password, seq: env.seq };
        m.connections.insert(e.name.clone(), Arc::new(c));
    }

    pub(crate) fn connection_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.connections.remove(name);
        }
    }

    pub(crate) fn root_staged(&mut self, e: &DbRootPasswordStaged, env: &Envelope) {
        self.update_connection(&e.mount, &e.name, env.seq, |c| c.staged_password = sealed(env, &e.password));
    }

    pub(crate) fn root_rotated(&mut self, mount: &str, name: &str, seq: u64) {
        self.update_connection(mount, name, seq, |c| {
            if let Some(p) = c.staged_password.take() {
                c.password = Some(p);
            }
        });
    }

    pub(crate) fn role_written(&mut self, mount: &str, name: &str, role: &DbRole) {
        self.mounts.entry(mount.to_string()).or_default().roles.insert(name.to_string(), Arc::new(role.clone()));
    }

    pub(crate) fn role_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.roles.remove(name);
        }
    }

    pub(crate) fn static_written(&mut self, mount: &str, name: &str, role: &DbStaticRole) {
        let m = self.mounts.entry(mount.to_string()).or_default();
        let s = match m.statics.get(name) {
            Some(old) => DbStatic { role: role.clone(), ..(**old).clone() },
            None => DbStatic {
                role: role.clone(),
                password: None,
                staged_password: None,
                last_rotation: 0,
                attempts: 0,
                last_error: None,
                next_attempt: 0,
            },
        };
        m.statics.insert(name.to_string(), Arc::new(s));
    }

    pub(crate) fn static_deleted(&mut self, mount: &str, name: &str) {
        if let Some(m) = self.mounts.get_mut(mount) {
            m.statics.remove(name);
        }
    }

    pub(crate) fn static_staged(&mut self, e: &DbStaticPasswordStaged, env: &Envelope) {
        self.update_static(&e.mount, &e.name, |s| s.staged_password = sealed(env, &e.password));
    }

    pub(crate) fn static_rotated(&mut self, mount: &str, name: &str, time: u64) {
        self.update_static(mount, name, |s| {
            if let Some(p) = s.staged_password.take() {
                s.password = Some(p);
                s.last_rotation = time;
                s.attempts = 0;
                s.last_error = None;
                s.next_attempt = 0;
            }
        });
    }

    pub(crate) fn static_failed(&mut self, e: &DbStaticRotationFailed) {
        self.update_static(&e.mount, &e.name, |s| {
            s.attempts = e.attempt;
            s.last_error = Some(e.error.clone());
            s.next_attempt = e.next_attempt;
        });
    }

    fn update_connection(&mut self, mount: &str, name: &str, seq: u64, f: impl FnOnce(&mut DbConnection)) {
        let Some(m) = self.mounts.get_mut(mount) else { return };
        let Some(old) = m.connections.get(name) else { return };
        let mut c = (**old).clone();
        f(&mut c);
        c.seq = seq;
        m.connections.insert(name.to_string(), Arc::new(c));
    }

    fn update_static(&mut self, mount: &str, name: &str, f: impl FnOnce(&mut DbStatic)) {
        let Some(m) = self.mounts.get_mut(mount) else { return };
        let Some(old) = m.statics.get(name) else { return };
        let mut s = (**old).clone();
        f(&mut s);
        m.statics.insert(name.to_string(), Arc::new(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrations::{Body, DbRootRotated, DbStaticPasswordRotated, Event};

    fn env(seq: u64, event: Event) -> Envelope {
        Envelope {
            seq,
            time: seq * 10,
            actor: ledger::Actor::system(),
            request_id: [0; 16],
            body: Body::App(event),
            slots: vec![ledger::KeySlot([0; ledger::seal::SLOT_LEN])],
        }
    }

    fn sealed_bytes(b: u8) -> ledger::Sealed {
        ledger::Sealed { slot: 0, nonce: [b; 12], ciphertext: vec![b; 20] }
    }

    #[test]
    fn a_staged_password_replaces_the_live_one_only_when_confirmed() {
        let mut state = crate::State::default();
        let written = DbConnectionWritten {
            mount: "m".into(),
            name: "pg".into(),
            config: DbConnectionConfig { plugin_name: "postgresql-database-plugin".into(), ..Default::default() },
            password: Some(sealed_bytes(1)),
            time: 1,
        };
        state.apply(&env(1, Event::DbConnectionWritten(written.clone())));
        let staged = DbRootPasswordStaged { mount: "m".into(), name: "pg".into(), password: sealed_bytes(2), time: 2 };
        state.apply(&env(2, Event::DbRootPasswordStaged(staged)));
        let c = state.databases.connection("m", "pg").expect("connection");
        assert_eq!(c.password.as_ref().map(|p| p.seq), Some(1), "not confirmed yet: the old one is live");
        assert_eq!(c.staged_password.as_ref().map(|p| p.seq), Some(2));
        // Rewriting the settings without a password keeps both.
        state.apply(&env(3, Event::DbConnectionWritten(DbConnectionWritten { password: None, ..written })));
        state.apply(&env(4, Event::DbRootRotated(DbRootRotated { mount: "m".into(), name: "pg".into(), time: 4 })));
        let c = state.databases.connection("m", "pg").expect("connection");
        assert_eq!(c.password.as_ref().map(|p| p.seq), Some(2));
        assert!(c.staged_password.is_none());
        assert_eq!(c.seq, 4);
    }

    #[test]
    fn static_roles_are_due_after_their_period_or_their_retry() {
        let mut state = crate::State::default();
        let role =
            DbStaticRole { db_name: "pg".into(), username: "app".into(), rotation_period: 60, ..Default::default() };
        state.apply(&env(
            1,
            Event::DbStaticRoleWritten(migrations::DbStaticRoleWritten { mount: "m".into(), name: "app".into(), role }),
        ));
        let staged =
            DbStaticPasswordStaged { mount: "m".into(), name: "app".into(), password: sealed_bytes(3), time: 2 };
        state.apply(&env(2, Event::DbStaticPasswordStaged(staged)));
        let s = state.databases.static_role("m", "app").expect("role");
        assert_eq!(s.due(), 0, "a staged password is due at once");
        state.apply(&env(
            3,
            Event::DbStaticRotationFailed(DbStaticRotationFailed {
                mount: "m".into(),
                name: "app".into(),
                attempt: 1,
                error: "down".into(),
                next_attempt: 500,
                time: 3,
            }),
        ));
        assert_eq!(state.databases.static_role("m", "app").map(|s| s.due()), Some(500));
        state.apply(&env(
            4,
            Event::DbStaticPasswordRotated(DbStaticPasswordRotated {
                mount: "m".into(),
                name: "app".into(),
                time: 1_000,
            }),
        ));
        let s = state.databases.static_role("m", "app").expect("role");
        assert_eq!(s.password.as_ref().map(|p| p.seq), Some(2));
        assert_eq!(s.due(), 1_000 + 60_000_000_000);
        assert_eq!(s.attempts, 0);
    }
}
