//! The ACL policies stored by name, with their parsed form. `root` and `default` are
//! built in: `root` is never stored; `default` starts with Vault's text and may be
//! rewritten (not deleted).

use std::sync::Arc;

use imbl::OrdMap;
use migrations::PolicyWritten;

use crate::policy::{DEFAULT_POLICY, Policy, parse_policy};

/// A stored policy: its text as written and its parsed rules. Snapshots hold the text
/// only; the rules are parsed again when a snapshot is read (the same way `written` does).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "PolicyRecord", into = "PolicyRecord")]
pub struct StoredPolicy {
    pub text: String,
    pub parsed: Arc<Policy>,
    /// Number of writes so far (check-and-set compares against it).
    pub version: u64,
    /// Time of the last write, ns since the Unix epoch (0 for the built-in text).
    pub modified: u64,
    /// Some rule holds an identity template: the policy is resolved per entity.
    pub templated: bool,
}

/// A stored policy as a snapshot holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyRecord {
    name: String,
    text: String,
    version: u64,
    modified: u64,
}

impl From<StoredPolicy> for PolicyRecord {
    fn from(p: StoredPolicy) -> Self {
        PolicyRecord { name: p.parsed.name.clone(), text: p.text, version: p.version, modified: p.modified }
    }
}

impl From<PolicyRecord> for StoredPolicy {
    fn from(r: PolicyRecord) -> Self {
        let parsed = parse_policy(&r.name, &r.text).unwrap_or(Policy { name: r.name.clone(), rules: Vec::new() });
        StoredPolicy {
            templated: parsed.is_templated(),
            parsed: Arc::new(parsed),
            text: r.text,
            version: r.version,
            modified: r.modified,
        }
    }
}

/// Two stored policies are equal when their text and history are (the rules follow from
/// the text).
impl PartialEq for StoredPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.version == other.version
            && self.modified == other.modified
            && self.templated == other.templated
            && self.parsed.name == other.parsed.name
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Policies {
    by_name: OrdMap<String, StoredPolicy>,
    /// Bumped on every change, so compiled ACLs can be cached until the next one.
    generation: u64,
}

impl Default for Policies {
    fn default() -> Self {
        let mut by_name = OrdMap::new();
        if let Ok(parsed) = parse_policy("default", DEFAULT_POLICY) {
            by_name.insert(
                "default".to_string(),
                StoredPolicy {
                    text: DEFAULT_POLICY.to_string(),
                    templated: parsed.is_templated(),
                    parsed: Arc::new(parsed),
                    version: 1,
                    modified: 0,
                },
            );
        }
        Policies { by_name, generation: 0 }
    }
}

impl Policies {
    pub fn get(&self, name: &str) -> Option<&StoredPolicy> {
        self.by_name.get(name)
    }

    /// Policy names in order (without `root`).
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn written(&mut self, e: &PolicyWritten) {
        self.generation += 1;
        // Text was validated before the event was written; a text that no longer parses
        // (a parser change) keeps the name but grants nothing.
        let parsed = parse_policy(&e.name, &e.text).unwrap_or(Policy { name: e.name.clone(), rules: Vec::new() });
        let version = self.by_name.get(&e.name).map(|p| p.version).unwrap_or(0) + 1;
        self.by_name.insert(
            e.name.clone(),
            StoredPolicy {
                text: e.text.clone(),
                templated: parsed.is_templated(),
                parsed: Arc::new(parsed),
                version,
                modified: e.time,
            },
        );
    }

    pub(crate) fn deleted(&mut self, name: &str) {
        self.generation += 1;
        self.by_name.remove(name);
    }
}
