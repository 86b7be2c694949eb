//! Tokens: by keyed hash of their id, by accessor, and their parent/child tree.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};
use migrations::{TokenCreated, TokenRenewed, TokenRole, TokensRevoked};

/// A live token (revoked tokens are removed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Token {
    pub id_hash: [u8; 32],
    pub accessor: String,
    pub parent: Option<String>,
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub path: String,
    /// Uses granted at creation (0: unlimited) and uses left.
    pub num_uses: u64,
    pub uses_left: u64,
    /// TTL at creation, and the TTL granted by the last renewal, in seconds.
    pub creation_ttl: u64,
    pub last_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub role: String,
    pub entity_id: String,
    /// ns since the Unix epoch; `expire_time` 0 means never.
    pub issue_time: u64,
    pub expire_time: u64,
    /// Time of the last renewal (ns), 0 if never renewed.
    pub last_renewal: u64,
    pub from_init: bool,
    /// CIDR blocks the token may be used from; empty: anywhere.
    pub bound_cidrs: Vec<String>,
}

impl Token {
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn orphan(&self) -> bool {
        self.parent.is_none()
    }

    /// True once `now` (ns) is past the expiry.
    pub fn expired(&self, now: u64) -> bool {
        self.expire_time != 0 && now >= self.expire_time
    }
}

/// A token that ended (revoked, expired or used up), as requests that still present it are
/// recorded: with its accessor, so forensics sees who tried a dead token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retired {
    pub accessor: String,
    pub display_name: String,
    pub entity_id: String,
    pub policies: Vec<String>,
    /// When it ended (ns, the revocation event's time).
    pub ended: u64,
}

/// How long an ended token is remembered (ns): a week. Older ones count as never seen (the
/// refusal counts still carry their keyed hash, which the ledger's `TokenCreated` events
/// can be matched against).
pub const RETIRED_FOR: u64 = 7 * 24 * 3600 * 1_000_000_000;
/// At most this many ended tokens are remembered; the oldest go first.
pub const RETIRED_MAX: usize = 1_000_000;

/// Keys of the persistent maps are `Arc<str>`: every insert copies the nodes on its path,
/// and a node copy clones its keys — an `Arc` clone is a counter bump, a `String` clone
/// is an allocation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Arc<Token>>,
    by_accessor: HashMap<Arc<str>, [u8; 32]>,
    children: HashMap<Arc<str>, OrdSet<Arc<str>>>,
    /// (expire time, accessor) of every token that expires, so finding the expired ones
    /// is a range, not a scan of every token.
    by_expiry: OrdSet<(u64, Arc<str>)>,
    roles: OrdMap<String, Arc<TokenRole>>,
    /// Tokens that ended within [`RETIRED_FOR`] (at most [`RETIRED_MAX`]), by keyed hash,
    /// and by end time for pruning. Folded from the revocation events only, so a replay
    /// remembers the same ones.
    retired: HashMap<[u8; 32], Arc<Retired>>,
    retired_by_end: OrdSet<(u64, [u8; 32])>,
}

impl Tokens {
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<Token>> {
        self.by_hash.get(hash)
    }

    /// A token that ended lately, by the keyed hash of its id.
    pub fn retired(&self, hash: &[u8; 32]) -> Option<&Arc<Retired>> {
        self.retired.get(hash)
    }

    pub fn by_accessor(&self, accessor: &str) -> Option<&Arc<Token>> {
        self.by_accessor.get(accessor).and_then(|h| self.by_hash.get(h))
    }

    /// Accessors of every live token.
    pub fn accessors(&self) -> impl Iterator<Item = &str> {
        self.by_accessor.keys().map(|k| &**k)
    }

    /// Accessors of the tokens made through paths under `prefix` ("auth/approle/"): what
    /// disabling an auth mount revokes. A scan: it is only for that rare operation.
    pub fn made_under(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> =
            self.by_hash.values().filter(|t| t.path.starts_with(prefix)).map(|t| t.accessor.clone()).collect();
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The token and all its descendants, parents before children.
    pub fn subtree(&self, accessor: &str) -> Vec<String> {
        let mut out = vec![accessor.to_string()];
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = self.children.get(out[i].as_str()) {
                out.extend(kids.iter().map(|k| k.to_string()));
            }
            i += 1;
        }
        out
    }

    /// Direct children of a token.
    pub fn children_of(&self, accessor: &str) -> Vec<String> {
        self.children.get(accessor).map(|k| k.iter().map(|a| a.to_string()).collect()).unwrap_or_default()
    }

    /// Live tokens whose expiry is at or before `now` (ns).
    pub fn expired(&self, now: u64) -> Vec<String> {
        self.by_expiry.iter().take_while(|(at, _)| *at <= now).map(|(_, a)| a.to_string()).collect()
    }

    pub fn role(&self, name: &str) -> Option<&Arc<TokenRole>> {
        self.roles.get(name)
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub(crate) fn created(&mut self, e: &TokenCreated) {
        let t = Token {
            id_hash: e.id_hash,
            accessor: e.accessor.clone(),
            parent: e.parent.clone(),
            policies: e.policies.clone(),
            meta: e.meta.clone(),
            display_name: e.display_name.clone(),
            path: e.path.clone(),
            num_uses: e.num_uses,
            uses_left: e.num_uses,
            creation_ttl: e.ttl,
            last_ttl: e.ttl,
            explicit_max_ttl: e.explicit_max_ttl,
            period: e.period,
            renewable: e.renewable,
            role: e.role.clone(),
            entity_id: e.entity_id.clone(),
            issue_time: e.issue_time,
            expire_time: e.expire_time,
            last_renewal: 0,
            from_init: e.from_init,
            bound_cidrs: e.bound_cidrs.clone(),
        };
        if let Some(p) = &t.parent {
            self.children.entry(Arc::from(p.as_str())).or_default().insert(Arc::from(t.accessor.as_str()));
        }
        let accessor: Arc<str> = Arc::from(t.accessor.as_str());
        if t.expire_time != 0 {
            self.by_expiry.insert((t.expire_time, accessor.clone()));
        }
        self.by_accessor.insert(accessor, t.id_hash);
        self.by_hash.insert(t.id_hash, Arc::new(t));
    }

    pub(crate) fn renewed(&mut self, e: &TokenRenewed) {
        if let Some(t) = self.by_accessor(&e.accessor) {
            let accessor: Arc<str> = Arc::from(e.accessor.as_str());
            self.by_expiry.remove(&(t.expire_time, accessor.clone()));
            self.by_expiry.insert((e.expire_time, accessor));
        }
        self.update(&e.accessor, |t| {
            t.last_ttl = e.ttl;
            t.expire_time = e.expire_time;
            t.last_renewal = e.expire_time.saturating_sub(e.ttl * 1_000_000_000);
        });
    }

    /// One use of a token with limited uses (nothing to do, and nothing copied, for the
    /// usual unlimited token).
    pub(crate) fn used(&mut self, accessor: &str) {
        if self.by_accessor(accessor).is_some_and(|t| t.num_uses > 0) {
            self.update(accessor, |t| t.uses_left = t.uses_left.saturating_sub(1));
        }
    }

    /// Tokens end at `time` (the event's): they leave the live maps for the retired ones.
    pub(crate) fn revoked(&mut self, e: &TokensRevoked, time: u64) {
        for child in &e.orphaned {
            self.update(child, |t| t.parent = None);
        }
        for accessor in &e.accessors {
            let Some(hash) = self.by_accessor.remove(accessor.as_str()) else { continue };
            if let Some(t) = self.by_hash.get(&hash) {
                self.by_expiry.remove(&(t.expire_time, Arc::from(accessor.as_str())));
            }
            if let Some(t) = self.by_hash.remove(&hash) {
                if let Some(p) = &t.parent
                    && let Some(kids) = self.children.get_mut(p.as_str())
                {
                    kids.remove(accessor.as_str());
                }
                self.retire(hash, &t, time);
            }
            self.children.remove(accessor.as_str());
        }
        self.forget_retired(time);
    }

    fn retire(&mut self, hash: [u8; 32], t: &Token, time: u64) {
        let retired = Retired {
            accessor: t.accessor.clone(),
            display_name: t.display_name.clone(),
            entity_id: t.entity_id.clone(),
            policies: t.policies.clone(),
            ended: time,
        };
        if let Some(old) = self.retired.insert(hash, Arc::new(retired)) {
            self.retired_by_end.remove(&(old.ended, hash));
        }
        self.retired_by_end.insert((time, hash));
    }

    /// Drops the retired tokens older than [`RETIRED_FOR`] at `time`, and the oldest beyond
    /// [`RETIRED_MAX`].
    fn forget_retired(&mut self, time: u64) {
        while let Some(&(ended, hash)) = self.retired_by_end.get_min() {
            if ended.saturating_add(RETIRED_FOR) >= time && self.retired_by_end.len() <= RETIRED_MAX {
                break;
            }
            self.retired_by_end.remove(&(ended, hash));
            self.retired.remove(&hash);
        }
    }

    pub(crate) fn role_written(&mut self, role: &TokenRole) {
        self.roles.insert(role.name.clone(), Arc::new(role.clone()));
    }

    pub(crate) fn role_deleted(&mut self, name: &str) {
        self.roles.remove(name);
    }

    fn update(&mut self, accessor: &str, f: impl FnOnce(&mut Token)) {
        let Some(hash) = self.by_accessor.get(accessor).copied() else { return };
        if let Some(t) = self.by_hash.get(&hash) {
            let mut t = (**t).clone();
            f(&mut t);
            self.by_hash.insert(hash, Arc::new(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(accessor: &str, expire_time: u64) -> TokenCreated {
        TokenCreated {
            id_hash: *fake_hash(accessor),
            accessor: accessor.into(),
            parent: None,
            policies: vec![],
            meta: BTreeMap::new(),
            display_name: "token".into(),
            path: "auth/token/create".into(),
            num_uses: 0,
            ttl: 10,
            explicit_max_ttl: 0,
            period: 0,
            renewable: true,
            role: String::new(),
            entity_id: String::new(),
            issue_time: 0,
            expire_time,
            from_init: false,
            bound_cidrs: Vec::new(),
        }
    }

    /// A distinct 32-byte stand-in for a keyed hash (the tests need no real key).
    fn fake_hash(s: &str) -> Box<[u8; 32]> {
        let mut h = [0u8; 32];
        for (i, b) in s.bytes().enumerate() {
            h[i % 32] ^= b;
        }
        Box::new(h)
    }

    #[test]
    fn the_expiry_index_follows_creation_renewal_and_revocation() {
        let mut t = Tokens::default();
        t.created(&created("a", 100));
        t.created(&created("b", 200));
        t.created(&created("never", 0));
        assert_eq!(t.expired(150), vec!["a".to_string()]);
        t.renewed(&TokenRenewed { accessor: "a".into(), ttl: 1, expire_time: 300 });
        assert!(t.expired(150).is_empty());
        assert_eq!(t.expired(250), vec!["b".to_string()]);
        t.revoked(
            &TokensRevoked {
                accessors: vec!["b".into()],
                orphaned: vec![],
                reason: migrations::RevocationReason::Revoked,
            },
            10,
        );
        assert_eq!(t.expired(u64::MAX), vec!["a".to_string()]);
    }

    fn revoke(t: &mut Tokens, accessor: &str, time: u64) {
        let e = TokensRevoked {
            accessors: vec![accessor.into()],
            orphaned: vec![],
            reason: migrations::RevocationReason::Revoked,
        };
        t.revoked(&e, time);
    }

    #[test]
    fn an_ended_token_is_remembered_by_its_hash_for_a_week() {
        let mut t = Tokens::default();
        t.created(&created("gone", 0));
        t.created(&created("later", 0));
        revoke(&mut t, "gone", 1_000);
        let hash = *fake_hash("gone");
        assert!(t.by_hash(&hash).is_none(), "no longer live");
        let r = t.retired(&hash).expect("remembered");
        assert_eq!((r.accessor.as_str(), r.ended), ("gone", 1_000));
        // A later revocation, within the week, keeps it; one past the week forgets it.
        revoke(&mut t, "later", 1_000 + RETIRED_FOR);
        assert!(t.retired(&hash).is_some());
        t.created(&created("last", 0));
        revoke(&mut t, "last", 1_001 + RETIRED_FOR);
        assert!(t.retired(&hash).is_none(), "forgotten after a week");
        assert!(t.retired(&fake_hash("later")).is_some());
    }
}
