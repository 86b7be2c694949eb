//! Leases: by id (prefix listing and revoke-prefix), by when they are due for
//! revocation (the scheduler reads a range, never scans), and by the token that owns them.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use migrations::{LeaseIssued, LeaseRenewed, LeaseRevocationFailed, LeaseSecret};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub id: Arc<str>,
    pub path: String,
    pub mount: String,
    /// ns since the Unix epoch.
    pub issue_time: u64,
    pub expire_time: u64,
    pub max_expire_time: u64,
    /// Time of the last renewal (ns), 0 if never renewed.
    pub last_renewal: u64,
    pub renewable: bool,
    pub token: Arc<str>,
    pub secret: LeaseSecret,
    /// Its token was revoked: revoke now, whatever the TTL says.
    pub revoke_requested: bool,
    /// Failed revocation attempts so far, the last error, and when to try again (ns).
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: u64,
}

impl Lease {
    /// When the lease is due for (another attempt at) revocation.
    pub fn due(&self) -> u64 {
        let base = if self.revoke_requested { 0 } else { self.expire_time };
        base.max(self.next_attempt)
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Leases {
    by_id: OrdMap<Arc<str>, Arc<Lease>>,
    by_due: OrdSet<(u64, Arc<str>)>,
    /// `(token accessor, lease id)`: one ordered set, not a set per token (a token with
    /// one lease would otherwise cost a whole tree node).
    by_token: OrdSet<(Arc<str>, Arc<str>)>,
}

impl Leases {
    pub fn get(&self, id: &str) -> Option<&Arc<Lease>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every lease whose id starts with `prefix`.
    pub fn under(&self, prefix: &str) -> Vec<Arc<Lease>> {
        self.by_id
            .range::<_, str>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Immediate children of `prefix` among lease ids ("dir/" for deeper levels), as
    /// `LIST sys/leases/lookup/<prefix>` answers.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in self.under(prefix) {
            let rest = &l.id[prefix.len()..];
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

    /// Leases due for revocation at `now` (ns), soonest first, at most `limit`.
    pub fn due(&self, now: u64, limit: usize) -> Vec<Arc<Lease>> {
        self.by_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, id)| self.by_id.get(id).cloned())
            .collect()
    }

    /// Leases owned by a token.
    pub fn of_token(&self, accessor: &str) -> Vec<Arc<str>> {
        let from: (Arc<str>, Arc<str>) = (Arc::from(accessor), Arc::from(""));
        self.by_token.range(from..).take_while(|(token, _)| &**token == accessor).map(|(_, id)| id.clone()).collect()
    }

    pub(crate) fn issued(&mut self, e: &LeaseIssued) {
        let id: Arc<str> = Arc::from(e.lease_id.as_str());
        let token: Arc<str> = Arc::from(e.token.as_str());
        let lease = Lease {
            id: id.clone(),
            path: e.path.clone(),
            mount: e.mount.clone(),
            issue_time: e.issue_time,
            expire_time: e.expire_time,
            max_expire_time: e.max_expire_time,
            last_renewal: 0,
            renewable: e.renewable,
            token: token.clone(),
            secret: e.secret.clone(),
            revoke_requested: false,
            attempts: 0,
            last_error: None,
            next_attempt: 0,
        };
        self.by_token.insert((token, id.clone()));
        self.put(lease);
    }

    pub(crate) fn renewed(&mut self, e: &LeaseRenewed) {
        self.update(&e.lease_id, |l| {
            l.expire_time = e.expire_time;
            l.last_renewal = e.time;
        });
    }

    pub(crate) fn revocation_failed(&mut self, e: &LeaseRevocationFailed) {
        self.update(&e.lease_id, |l| {
            l.attempts = e.attempt;
            l.last_error = Some(e.error.clone());
            l.next_attempt = e.next_attempt;
            // Someone wanted it gone (expiry, its token, an operator): retry whatever the TTL.
            l.revoke_requested = true;
        });
    }

    pub(crate) fn revoked(&mut self, id: &str) {
        let Some(lease) = self.by_id.remove(id) else { return };
        self.by_due.remove(&(lease.due(), lease.id.clone()));
        self.by_token.remove(&(lease.token.clone(), lease.id.clone()));
    }

    /// The tokens are gone: their leases are due now.
    pub(crate) fn tokens_revoked(&mut self, accessors: &[String]) {
        for a in accessors {
            for id in self.of_token(a) {
                self.update(&id, |l| l.revoke_requested = true);
            }
        }
    }

    fn put(&mut self, lease: Lease) {
        self.by_due.insert((lease.due(), lease.id.clone()));
        self.by_id.insert(lease.id.clone(), Arc::new(lease));
    }

    fn update(&mut self, id: &str, f: impl FnOnce(&mut Lease)) {
        let Some(old) = self.by_id.get(id).cloned() else { return };
        self.by_due.remove(&(old.due(), old.id.clone()));
        let mut lease = (*old).clone();
        f(&mut lease);
        self.put(lease);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(id: &str, token: &str, expire: u64) -> LeaseIssued {
        LeaseIssued {
            lease_id: id.into(),
            path: "database/creds/ro".into(),
            mount: "m".into(),
            issue_time: 0,
            expire_time: expire,
            max_expire_time: expire * 2,
            renewable: true,
            token: token.into(),
            secret: LeaseSecret::Database { config: "pg".into(), role: "ro".into(), username: format!("v-{id}") },
        }
    }

    #[test]
    fn due_follows_expiry_failures_and_token_revocation() {
        let mut ls = Leases::default();
        ls.issued(&issued("database/creds/ro/a", "t1", 100));
        ls.issued(&issued("database/creds/ro/b", "t2", 200));
        ls.issued(&issued("database/creds/rw/c", "t1", 300));
        assert_eq!(ls.due(150, 10).iter().map(|l| &*l.id).collect::<Vec<_>>(), vec!["database/creds/ro/a"]);
        ls.revocation_failed(&LeaseRevocationFailed {
            lease_id: "database/creds/ro/a".into(),
            attempt: 1,
            error: "down".into(),
            next_attempt: 250,
            time: 150,
        });
        assert!(ls.due(150, 10).is_empty());
        assert_eq!(ls.due(260, 10).len(), 2);
        ls.tokens_revoked(&["t1".to_string()]);
        // c's token is gone: due now. a keeps its back-off.
        assert_eq!(ls.due(0, 10).iter().map(|l| &*l.id).collect::<Vec<_>>(), vec!["database/creds/rw/c"]);
        assert_eq!(ls.list("database/creds/"), vec!["ro/", "rw/"]);
        assert_eq!(ls.list("database/creds/ro/"), vec!["a", "b"]);
        ls.revoked("database/creds/ro/a");
        assert_eq!(ls.under("database/creds/ro/").len(), 1);
        assert_eq!(ls.of_token("t1").len(), 1);
        ls.renewed(&LeaseRenewed { lease_id: "database/creds/ro/b".into(), expire_time: 500, time: 10 });
        assert!(ls.due(260, 10).iter().all(|l| &*l.id != "database/creds/ro/b"));
    }
}
