//! `cairn replay who-can --path P --at T`: everyone who could perform an operation (read
//! by default) on P at T, with the rule that decided it — the pattern and the policies
//! that granted the capability:
//!
//! - every token live at T, and every entity: the ACL the server builds at each request
//!   (the token's policies plus its entity's and groups'), identity templates rendered for
//!   the entity, rules with a past `expiration` left out;
//! - every group whose policies (its own and those of the groups above it) grant, with
//!   its members;
//! - every login that would get a granting token at T (`logins.rs`): AppRole roles,
//!   userpass users, JWT and Kubernetes roles.
//!
//! Entities are named, with their aliases (auth mount and alias name). The list is sorted
//! by kind, then name and id, so two runs print the same bytes.

mod logins;

use std::collections::{BTreeMap, BTreeSet};

use projections::State;
use projections::policy::template;
use projections::policy::{Acl, Operation, Policy};
use serde::Serialize;

use crate::replay::Replayed;
use crate::time::rfc3339;

/// One way to the capability: who, and which rule of which policies let them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// `approle`, `entity`, `group`, `jwt`, `kubernetes`, `token` or `userpass`.
    pub kind: &'static str,
    /// Token accessor, entity or group id, or where a login is configured
    /// (`auth/userpass/users/alice`, `auth/approle/role/web`).
    pub id: String,
    /// Display name (token), name (entity, group), user or role name (login).
    pub name: String,
    /// The auth mount of a login (`auth/userpass/`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mount: String,
    /// The token's entity, or the entity a login lands on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntityRef>,
    /// The deciding pattern (`*` for root).
    pub pattern: String,
    /// The policies whose blocks for that pattern granted the capability.
    pub policies: Vec<String>,
    /// A login: the policies its token gets (`token_policies`, with `default` unless
    /// `token_no_default_policy`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_policies: Vec<String>,
    /// The policies the entity and its groups add (sorted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identity_policies: Vec<String>,
    /// A group: its member entities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EntityRef>,
    /// What else it takes (a secret id, a client address, bound claims, group aliases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

/// An entity as an analyst knows it: its name and the logins that land on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EntityRef {
    pub id: String,
    pub name: String,
    pub aliases: Vec<AliasRef>,
}

/// An alias: the auth mount (its API prefix, or its accessor if it is gone) and the name
/// that mount knows the caller by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AliasRef {
    pub mount: String,
    pub name: String,
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

/// The question, asked of the replayed state.
struct Question<'a> {
    state: &'a State,
    path: &'a str,
    op: Operation,
    /// The moment, ns and seconds since the Unix epoch.
    now: u64,
    now_secs: i64,
}

impl Question<'_> {
    /// The deciding pattern and granting policies if `names`, for `entity_id` ("" for
    /// none), allow the operation on the path.
    fn grant(&self, names: &BTreeSet<String>, entity_id: &str) -> Option<(String, Vec<String>)> {
        let acl = self.acl(names, entity_id);
        let d = acl.check(self.path.trim_start_matches('/'), self.op, &serde_json::Map::new());
        if !d.allowed {
            return None;
        }
        Some(if d.root {
            ("*".into(), vec!["root".into()])
        } else {
            (d.pattern.unwrap_or_default(), d.granting_policies)
        })
    }

    fn acl(&self, names: &BTreeSet<String>, entity_id: &str) -> Acl {
        if names.contains("root") {
            return Acl::root();
        }
        let s = self.state;
        let rendered: Vec<Policy> =
            names
                .iter()
                .filter_map(|n| s.policies.get(n))
                .map(|p| {
                    if p.templated { template::render(&p.parsed, &s.identity, entity_id) } else { (*p.parsed).clone() }
                })
                .collect();
        let refs: Vec<&Policy> = rendered.iter().collect();
        Acl::new_at(&refs, self.now_secs)
    }

    /// An entity with its name and aliases (`None` for an unknown id).
    fn entity(&self, id: &str) -> Option<EntityRef> {
        let identity = &self.state.identity;
        let e = identity.entity(id)?;
        let mut aliases: Vec<AliasRef> = identity
            .aliases_of(id)
            .iter()
            .map(|a| AliasRef { mount: self.auth_mount(&a.mount_accessor), name: a.name.clone() })
            .collect();
        aliases.sort();
        Some(EntityRef { id: id.to_string(), name: e.name.clone(), aliases })
    }

    /// The API prefix of the auth mount with this accessor (the accessor if none has it).
    fn auth_mount(&self, accessor: &str) -> String {
        self.state
            .mounts
            .of_class(migrations::MountClass::Auth)
            .find(|m| m.accessor == accessor)
            .map_or_else(|| accessor.to_string(), |m| m.api_prefix())
    }

    fn disabled(&self, entity_id: &str) -> bool {
        self.state.identity.entity(entity_id).is_some_and(|e| e.disabled)
    }
}

/// Everyone who could perform `op` on `path` in the replayed state, in a stable order.
pub fn who_can(r: &Replayed, path: &str, op: Operation) -> Vec<Grant> {
    let q = Question {
        state: &r.state,
        path,
        op,
        now: r.now,
        now_secs: i64::try_from(r.now / 1_000_000_000).unwrap_or(i64::MAX),
    };
    let mut out = tokens(&q);
    out.extend(entities(&q));
    out.extend(groups(&q));
    out.extend(logins::logins(&q));
    out.sort_by(|a, b| {
        (a.kind, &a.name, &a.id, &a.entity, &a.conditions).cmp(&(b.kind, &b.name, &b.id, &b.entity, &b.conditions))
    });
    out
}

fn blank(kind: &'static str, id: String, name: String, (pattern, policies): (String, Vec<String>)) -> Grant {
    Grant {
        kind,
        id,
        name,
        mount: String::new(),
        entity: None,
        pattern,
        policies,
        token_policies: Vec::new(),
        identity_policies: Vec::new(),
        members: Vec::new(),
        conditions: Vec::new(),
    }
}

fn tokens(q: &Question) -> Vec<Grant> {
    let s = q.state;
    let mut out = Vec::new();
    for accessor in s.tokens.accessors() {
        let Some(token) = s.tokens.by_accessor(accessor) else { continue };
        if token.expired(q.now) || (!token.entity_id.is_empty() && q.disabled(&token.entity_id)) {
            continue;
        }
        let identity = if token.entity_id.is_empty() { Vec::new() } else { s.identity.policies_of(&token.entity_id) };
        let names: BTreeSet<String> = token.policies.iter().chain(&identity).cloned().collect();
        if let Some(decided) = q.grant(&names, &token.entity_id) {
            let mut g = blank("token", token.accessor.clone(), token.display_name.clone(), decided);
            g.entity = q.entity(&token.entity_id);
            g.identity_policies = identity;
            if !token.bound_cidrs.is_empty() {
                g.conditions.push(format!("the token used from {}", token.bound_cidrs.join(", ")));
            }
            out.push(g);
        }
    }
    out
}

fn entities(q: &Question) -> Vec<Grant> {
    let s = q.state;
    let mut out = Vec::new();
    for id in s.identity.entity_ids() {
        if q.disabled(&id) {
            continue;
        }
        let identity = s.identity.policies_of(&id);
        let names: BTreeSet<String> = identity.iter().cloned().collect();
        if let (Some(decided), Some(entity)) = (q.grant(&names, &id), q.entity(&id)) {
            let mut g = blank("entity", id.clone(), entity.name.clone(), decided);
            g.entity = Some(entity);
            g.identity_policies = identity;
            out.push(g);
        }
    }
    out
}

/// Groups whose policies grant: every member gets the capability through them. An
/// external group's members come from logins whose group claims its aliases name.
fn groups(q: &Question) -> Vec<Grant> {
    let identity = &q.state.identity;
    let mut group_aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in identity.group_alias_ids() {
        if let Some(a) = identity.group_alias(&id) {
            let text = format!(
                "membership: a login at {} with \"{}\" in its groups claim",
                q.auth_mount(&a.mount_accessor),
                a.name
            );
            group_aliases.entry(a.canonical_id.clone()).or_default().push(text);
        }
    }
    let mut out = Vec::new();
    for id in identity.group_ids() {
        let Some(group) = identity.group(&id) else { continue };
        let policies = identity.group_policies(&id);
        let names: BTreeSet<String> = policies.iter().cloned().collect();
        let Some(decided) = q.grant(&names, "") else { continue };
        let mut g = blank("group", id.clone(), group.name.clone(), decided);
        g.identity_policies = policies;
        g.members = group.member_entity_ids.iter().filter_map(|e| q.entity(e)).collect();
        g.members.sort();
        g.conditions = group_aliases.remove(&id).unwrap_or_default();
        g.conditions.sort();
        out.push(g);
    }
    out
}

fn entity_text(e: &EntityRef) -> String {
    let aliases: Vec<String> = e.aliases.iter().map(|a| format!("{}{}", a.mount, a.name)).collect();
    if aliases.is_empty() { format!("{} ({})", e.name, e.id) } else { format!("{} ({})", e.name, aliases.join(", ")) }
}

/// The grants as text: one line each, then indented lines for the entity, the policies a
/// login or group confers, the members and the conditions.
pub fn to_text(grants: &[Grant], path: &str, r: &Replayed) -> String {
    let at = if r.time == 0 { String::new() } else { format!(" ({})", rfc3339(r.time)) };
    let mut out = format!("who could access {path} after seq {}{at}:\n", r.seq);
    if grants.is_empty() {
        out.push_str("  nobody\n");
    }
    for g in grants {
        out.push_str(&format!(
            "  {:<10} {}  {}  rule \"{}\" in [{}]\n",
            g.kind,
            g.name,
            g.id,
            g.pattern,
            g.policies.join(",")
        ));
        let mut more = Vec::new();
        if let Some(e) = &g.entity {
            more.push(format!("entity {}", entity_text(e)));
        }
        if !g.token_policies.is_empty() {
            more.push(format!("token policies [{}]", g.token_policies.join(",")));
        }
        if !g.identity_policies.is_empty() {
            more.push(format!("identity policies [{}]", g.identity_policies.join(",")));
        }
        for m in &g.members {
            more.push(format!("member {}", entity_text(m)));
        }
        for c in &g.conditions {
            more.push(format!("needs {c}"));
        }
        for line in more {
            out.push_str(&format!("             {line}\n"));
        }
    }
    out
}
