//! The logins that would get a granting token at T: AppRole roles, userpass users, JWT and
//! Kubernetes roles of every auth mount enabled then.
//!
//! A login's token gets the role's or user's `token_policies` (trimmed, lowercased, with
//! `default` unless `token_no_default_policy`, as `commands::token::create` makes them),
//! plus the policies of the entity its alias lands on and of that entity's groups:
//!
//! - a userpass user or an AppRole role has one alias (the user name, the role id): its
//!   entity if a login made it already, else a new entity without policies;
//! - a JWT or Kubernetes role admits many callers: if its own policies grant, one row says
//!   so for any caller it admits; otherwise each known caller whose entity's policies make
//!   the difference has a row (JWT: aliases whose last login was through the role;
//!   Kubernetes: aliases of service accounts the role binds), and for a JWT role with a
//!   groups claim, each group alias of its mount whose group's policies do.
//!
//! Logins that cannot succeed are left out: a user without a password, a role that
//! confers `root` or batch tokens (refused by every login), an entity that is disabled, a
//! JWT or Kubernetes mount without its config. What a login still requires is a
//! condition: a secret id, client addresses, bound audiences, subject, claims or service
//! accounts, token CIDRs and use counts.

use std::collections::BTreeSet;
use std::sync::Arc;

use migrations::{EntityAlias, TokenSettings};
use projections::auth::{AuthMount, k8s_name_bound, k8s_namespace_bound};
use projections::mount::Mount;

use super::{Grant, Question, blank};

/// One way to log in.
struct Login<'a> {
    kind: &'static str,
    mount: &'a Mount,
    name: String,
    /// Where it is configured (`users/alice`, `role/web`), under the mount.
    config_path: String,
    token: &'a TokenSettings,
    callers: Callers,
    conditions: Vec<String>,
}

/// Who logs in through it.
enum Callers {
    /// One alias name: its entity, or a new one.
    One(String),
    /// Anyone the role admits; the known aliases it admits; group aliases claims may name.
    Many { known: Vec<Arc<EntityAlias>>, group_aliases: Vec<(String, String)> },
}

/// Every login of every auth mount whose token could perform the operation.
pub(super) fn logins(q: &Question) -> Vec<Grant> {
    let mut out = Vec::new();
    for mount in q.state.mounts.of_class(migrations::MountClass::Auth) {
        let Some(methods) = q.state.auth.mount(&mount.uuid) else { continue };
        let candidates = match mount.kind.as_str() {
            "userpass" => userpass(mount, methods),
            "approle" => approle(q, mount, methods),
            "jwt" => jwt(q, mount, methods),
            "kubernetes" => kubernetes(q, mount, methods),
            _ => Vec::new(),
        };
        out.extend(candidates.into_iter().flat_map(|login| grants(q, login)));
    }
    out
}

fn userpass<'a>(mount: &'a Mount, m: &'a AuthMount) -> Vec<Login<'a>> {
    m.users
        .iter()
        .filter(|(_, user)| user.password_hash.is_some())
        .map(|(name, user)| Login {
            kind: "userpass",
            mount,
            name: name.clone(),
            config_path: format!("users/{name}"),
            token: &user.token,
            callers: Callers::One(name.clone()),
            conditions: vec!["the user's password".into()],
        })
        .collect()
}

fn approle<'a>(q: &Question, mount: &'a Mount, m: &'a AuthMount) -> Vec<Login<'a>> {
    m.approles
        .values()
        .map(|role| {
            let mut conditions = Vec::new();
            if role.bind_secret_id {
                let live = m
                    .secret_id_accessors(&role.name)
                    .iter()
                    .filter_map(|a| m.secret_id_by_accessor(&role.name, a))
                    .filter(|s| !s.expired(q.now))
                    .count();
                conditions.push(format!("the role id and a secret id ({live} live then)"));
            } else {
                conditions.push("the role id alone".into());
            }
            if !role.secret_id_bound_cidrs.is_empty() {
                conditions.push(format!("a login from {}", role.secret_id_bound_cidrs.join(", ")));
            }
            Login {
                kind: "approle",
                mount,
                name: role.name.clone(),
                config_path: format!("role/{}", role.name),
                token: &role.token,
                callers: Callers::One(role.role_id.clone()),
                conditions,
            }
        })
        .collect()
}

fn jwt<'a>(q: &Question, mount: &'a Mount, m: &'a AuthMount) -> Vec<Login<'a>> {
    if m.jwt_config.is_none() {
        return Vec::new();
    }
    let identity = &q.state.identity;
    m.jwt_roles
        .values()
        .map(|role| {
            let mut conditions = vec!["a JWT the mount's keys verify".to_string()];
            if !role.bound_audiences.is_empty() {
                conditions.push(format!("aud in [{}]", role.bound_audiences.join(", ")));
            }
            if !role.bound_subject.is_empty() {
                conditions.push(format!("sub = {}", role.bound_subject));
            }
            for (claim, values) in &role.bound_claims {
                conditions.push(format!("{claim} in [{}] ({})", values.join(", "), role.bound_claims_type));
            }
            let known = known_aliases(q, mount, |a| a.metadata.get("role") == Some(&role.name));
            let group_aliases = if role.groups_claim.is_empty() {
                Vec::new()
            } else {
                identity
                    .group_alias_ids()
                    .iter()
                    .filter_map(|id| identity.group_alias(id))
                    .filter(|a| a.mount_accessor == mount.accessor)
                    .map(|a| (a.name.clone(), a.canonical_id.clone()))
                    .collect()
            };
            Login {
                kind: "jwt",
                mount,
                name: role.name.clone(),
                config_path: format!("role/{}", role.name),
                token: &role.token,
                callers: Callers::Many { known, group_aliases },
                conditions,
            }
        })
        .collect()
}

fn kubernetes<'a>(q: &Question, mount: &'a Mount, m: &'a AuthMount) -> Vec<Login<'a>> {
    if m.k8s_config.is_none() {
        return Vec::new();
    }
    m.k8s_roles
        .values()
        .map(|role| {
            let conditions = vec![format!(
                "a service account named [{}] in namespaces [{}]",
                role.bound_service_account_names.join(", "),
                role.bound_service_account_namespaces.join(", ")
            )];
            let known = known_aliases(q, mount, |a| {
                let field = |k: &str| a.metadata.get(k).map_or("", String::as_str);
                k8s_name_bound(role, field("service_account_name"))
                    && k8s_namespace_bound(role, field("service_account_namespace"))
            });
            Login {
                kind: "kubernetes",
                mount,
                name: role.name.clone(),
                config_path: format!("role/{}", role.name),
                token: &role.token,
                callers: Callers::Many { known, group_aliases: Vec::new() },
                conditions,
            }
        })
        .collect()
}

/// The aliases of `mount` that `admits` picks, in id order.
fn known_aliases(q: &Question, mount: &Mount, admits: impl Fn(&EntityAlias) -> bool) -> Vec<Arc<EntityAlias>> {
    let identity = &q.state.identity;
    identity
        .alias_ids()
        .iter()
        .filter_map(|id| identity.alias(id))
        .filter(|a| a.mount_accessor == mount.accessor && admits(a))
        .cloned()
        .collect()
}

/// The policies a login's token gets, `None` if no login can get a token from `t`.
fn token_policies(t: &TokenSettings) -> Option<Vec<String>> {
    if matches!(t.token_type.as_str(), "batch" | "default-batch") {
        return None;
    }
    let mut set: BTreeSet<String> =
        t.token_policies.iter().map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()).collect();
    if set.contains("root") {
        return None;
    }
    if !t.token_no_default_policy {
        set.insert("default".into());
    }
    Some(set.into_iter().collect())
}

/// The rows of one login: one per way its token gets the capability.
fn grants(q: &Question, login: Login) -> Vec<Grant> {
    let Some(own) = token_policies(login.token) else { return Vec::new() };
    let mut conditions = login.conditions.clone();
    if !login.token.token_bound_cidrs.is_empty() {
        conditions.push(format!("the token used from {}", login.token.token_bound_cidrs.join(", ")));
    }
    if login.token.token_num_uses > 0 {
        conditions.push(format!("at most {} uses of the token", login.token.token_num_uses));
    }
    let row = |entity_id: &str, extra: Vec<String>, condition: Option<String>| -> Option<Grant> {
        let names: BTreeSet<String> = own.iter().chain(&extra).cloned().collect();
        let decided = q.grant(&names, entity_id)?;
        let mut g = blank(
            login.kind,
            format!("{}{}", login.mount.api_prefix(), login.config_path),
            login.name.clone(),
            decided,
        );
        g.mount = login.mount.api_prefix();
        g.entity = q.entity(entity_id);
        g.token_policies = own.clone();
        g.identity_policies = extra;
        g.conditions = conditions.iter().cloned().chain(condition).collect();
        Some(g)
    };
    let identity = &q.state.identity;
    match &login.callers {
        Callers::One(alias_name) => match identity.alias_by_name(&login.mount.accessor, alias_name) {
            Some(alias) if q.disabled(&alias.canonical_id) => Vec::new(),
            Some(alias) => {
                row(&alias.canonical_id, identity.policies_of(&alias.canonical_id), None).into_iter().collect()
            }
            None => row("", Vec::new(), None).into_iter().collect(),
        },
        Callers::Many { known, group_aliases } => {
            if let Some(g) = row("", Vec::new(), None) {
                return vec![g];
            }
            let by_entity = known
                .iter()
                .filter(|a| !q.disabled(&a.canonical_id))
                .filter_map(|a| row(&a.canonical_id, identity.policies_of(&a.canonical_id), None));
            let by_group = group_aliases.iter().filter_map(|(name, group)| {
                let condition = format!("\"{name}\" in the groups claim");
                row("", identity.group_policies(group), Some(condition))
            });
            by_entity.chain(by_group).collect()
        }
    }
}
