//! Identity templates in policy paths (`{{identity.entity.id}}` and friends), resolved
//! per entity: one policy then serves every workload's own path. A rule whose template
//! cannot be resolved (no entity, no such alias, metadata key or group) is left out, as
//! Vault does. A resolved value that contains `/`, `*` or `+` also leaves its rule out,
//! so a name can never widen a path (Vault's defaults of
//! `allow_slashes_in_identity_templates` and `allow_wildcards_in_identity_templates`).

use crate::identity::Identity;
use crate::policy::Policy;

/// The policy with every templated rule resolved for `entity_id`, or left out.
pub fn render(policy: &Policy, identity: &Identity, entity_id: &str) -> Policy {
    let mut out = Policy { name: policy.name.clone(), rules: Vec::with_capacity(policy.rules.len()) };
    for rule in &policy.rules {
        if !rule.pattern.contains("{{") {
            out.rules.push(rule.clone());
            continue;
        }
        if let Some(pattern) = render_pattern(&rule.pattern, identity, entity_id) {
            let mut r = rule.clone();
            r.pattern = pattern;
            out.rules.push(r);
        }
    }
    out
}

/// `pattern` with each `{{…}}` replaced; `None` when one cannot be.
pub fn render_pattern(pattern: &str, identity: &Identity, entity_id: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let value = resolve(after[..end].trim(), identity, entity_id)?;
        if value.is_empty() || value.contains(['/', '*', '+']) {
            return None;
        }
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

fn resolve(expr: &str, identity: &Identity, entity_id: &str) -> Option<String> {
    let entity = identity.entity(entity_id)?;
    let path = expr.strip_prefix("identity.")?;
    if let Some(e) = path.strip_prefix("entity.") {
        return match e {
            "id" => Some(entity.id.clone()),
            "name" => Some(entity.name.clone()),
            _ if e.starts_with("metadata.") => entity.metadata.get(&e["metadata.".len()..]).cloned(),
            _ => {
                // aliases.<mount accessor>.<field>
                let a = e.strip_prefix("aliases.")?;
                let (accessor, field) = a.split_once('.')?;
                let alias = identity.aliases_of(entity_id).into_iter().find(|al| al.mount_accessor == accessor)?;
                match field {
                    "id" => Some(alias.id.clone()),
                    "name" => Some(alias.name.clone()),
                    _ if field.starts_with("metadata.") => alias.metadata.get(&field["metadata.".len()..]).cloned(),
                    _ if field.starts_with("custom_metadata.") => {
                        alias.custom_metadata.get(&field["custom_metadata.".len()..]).cloned()
                    }
                    _ => None,
                }
            }
        };
    }
    let g = path.strip_prefix("groups.")?;
    let groups = identity.all_groups(entity_id);
    if let Some(rest) = g.strip_prefix("ids.") {
        let (id, field) = rest.rsplit_once('.')?;
        let group = groups.iter().find(|gr| gr.id == id)?;
        return (field == "name").then(|| group.name.clone());
    }
    if let Some(rest) = g.strip_prefix("names.") {
        let (name, field) = rest.rsplit_once('.')?;
        let group = groups.iter().find(|gr| gr.name == name)?;
        return (field == "id").then(|| group.id.clone());
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use migrations::{Entity, EntityAlias, Group};

    use super::*;
    use crate::policy::parse_policy;

    fn identity() -> Identity {
        let mut i = Identity::default();
        i.entity_written(&Entity {
            id: "e1".into(),
            name: "billing".into(),
            metadata: BTreeMap::from([("team".to_string(), "pay".to_string()), ("bad".to_string(), "a/b".to_string())]),
            ..Entity::default()
        });
        i.alias_written(&EntityAlias {
            id: "a1".into(),
            canonical_id: "e1".into(),
            mount_accessor: "auth_approle_1234".into(),
            name: "role-id-1".into(),
            ..EntityAlias::default()
        });
        i.group_written(&Group {
            id: "g1".into(),
            name: "ops".into(),
            kind: "internal".into(),
            member_entity_ids: vec!["e1".into()],
            ..Group::default()
        });
        i
    }

    #[test]
    fn templates_resolve_per_entity_and_unresolvable_rules_drop_out() {
        let text = r#"
            path "secret/data/{{identity.entity.name}}/*" { capabilities = ["read"] }
            path "secret/data/team/{{identity.entity.metadata.team}}" { capabilities = ["read"] }
            path "secret/data/alias/{{identity.entity.aliases.auth_approle_1234.name}}" { capabilities = ["read"] }
            path "secret/data/group/{{identity.groups.names.ops.id}}" { capabilities = ["read"] }
            path "secret/data/missing/{{identity.entity.metadata.nope}}" { capabilities = ["read"] }
            path "secret/data/slash/{{identity.entity.metadata.bad}}" { capabilities = ["read"] }
            path "secret/data/plain" { capabilities = ["read"] }
        "#;
        let p = parse_policy("t", text).expect("parse");
        assert!(p.is_templated());
        let r = render(&p, &identity(), "e1");
        let patterns: Vec<&str> = r.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(
            patterns,
            vec![
                "secret/data/billing/*",
                "secret/data/team/pay",
                "secret/data/alias/role-id-1",
                "secret/data/group/g1",
                "secret/data/plain"
            ]
        );
        // No entity: only the plain rule is left.
        let none = render(&p, &identity(), "unknown");
        assert_eq!(none.rules.len(), 1);
        assert_eq!(render_pattern("x/{{identity.entity.id", &identity(), "e1"), None);
    }
}
