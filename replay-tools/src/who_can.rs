//! `cairn replay who-can --path P --at T`: every token live at T, and every entity, whose
//! ACL allowed an operation (read by default) on P, with the rule that decided it — the
//! pattern and the policies that granted the capability. The ACL is built the way the
//! server builds it at each request: the token's policies plus its entity's and groups',
//! identity templates rendered for the entity, rules with a past `expiration` left out.

use std::collections::BTreeSet;

use projections::State;
use projections::policy::template;
use projections::policy::{Acl, Operation, Policy};
use serde::Serialize;

use crate::replay::Replayed;

/// One grant: who, and which rule of which policies let them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// `token` or `entity`.
    pub kind: &'static str,
    /// Token accessor or entity id.
    pub id: String,
    /// Display name (token) or name (entity).
    pub name: String,
    /// The token's entity, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub entity_id: String,
    /// The deciding pattern (`*` for root).
    pub pattern: String,
    /// The policies whose blocks for that pattern granted the capability.
    pub policies: Vec<String>,
}

/// Parses `--op` (read by default).
pub fn parse_operation(text: &str) -> Option<Operation> {
    Some(match text.to_ascii_lowercase().as_str() {
        "read" => Operation::Read,
        "create" => Operation::Create,
        "update" => Operation::Update,
        "patch" => Operation::Patch,
        "delete" => Operation::Delete,
        "list" => Operation::List,
        "scan" => Operation::Scan,
        _ => return None,
    })
}

/// The ACL of a set of policy names for an entity ("" for none), at `now_secs`.
fn acl(state: &State, names: &BTreeSet<String>, entity_id: &str, now_secs: i64) -> Acl {
    if names.contains("root") {
        return Acl::root();
    }
    let rendered: Vec<Policy> = names
        .iter()
        .filter_map(|n| state.policies.get(n))
        .map(
            |p| if p.templated { template::render(&p.parsed, &state.identity, entity_id) } else { (*p.parsed).clone() },
        )
        .collect();
    let refs: Vec<&Policy> = rendered.iter().collect();
    Acl::new_at(&refs, now_secs)
}

fn grant(acl: &Acl, path: &str, op: Operation) -> Option<(String, Vec<String>)> {
    let d = acl.check(path.trim_start_matches('/'), op, &serde_json::Map::new());
    if !d.allowed {
        return None;
    }
    Some(if d.root { ("*".into(), vec!["root".into()]) } else { (d.pattern.unwrap_or_default(), d.granting_policies) })
}

/// Everyone who could perform `op` on `path` in the replayed state.
pub fn who_can(r: &Replayed, path: &str, op: Operation) -> Vec<Grant> {
    let s = &r.state;
    let now_secs = i64::try_from(r.now / 1_000_000_000).unwrap_or(i64::MAX);
    let disabled = |entity_id: &str| s.identity.entity(entity_id).is_some_and(|e| e.disabled);
    let mut out = Vec::new();
    for accessor in s.tokens.accessors() {
        let Some(token) = s.tokens.by_accessor(accessor) else { continue };
        if token.expired(r.now) || (!token.entity_id.is_empty() && disabled(&token.entity_id)) {
            continue;
        }
        let mut names: BTreeSet<String> = token.policies.iter().cloned().collect();
        if !token.entity_id.is_empty() {
            names.extend(s.identity.policies_of(&token.entity_id));
        }
        if let Some((pattern, policies)) = grant(&acl(s, &names, &token.entity_id, now_secs), path, op) {
            out.push(Grant {
                kind: "token",
                id: token.accessor.clone(),
                name: token.display_name.clone(),
                entity_id: token.entity_id.clone(),
                pattern,
                policies,
            });
        }
    }
    for id in s.identity.entity_ids() {
        let Some(entity) = s.identity.entity(&id) else { continue };
        if entity.disabled {
            continue;
        }
        let names: BTreeSet<String> = s.identity.policies_of(&id).into_iter().collect();
        if let Some((pattern, policies)) = grant(&acl(s, &names, &id, now_secs), path, op) {
            out.push(Grant {
                kind: "entity",
                id: id.clone(),
                name: entity.name.clone(),
                entity_id: String::new(),
                pattern,
                policies,
            });
        }
    }
    out
}

pub fn to_text(grants: &[Grant], path: &str, r: &Replayed) -> String {
    let mut out = format!("who could access {path} after seq {}:\n", r.seq);
    if grants.is_empty() {
        out.push_str("  nobody\n");
    }
    for g in grants {
        let entity = if g.entity_id.is_empty() { String::new() } else { format!(" entity={}", g.entity_id) };
        out.push_str(&format!(
            "  {:<6} {}  {}{entity}  rule \"{}\" in [{}]\n",
            g.kind,
            g.id,
            g.name,
            g.pattern,
            g.policies.join(",")
        ));
    }
    out
}
