//! `who_can` on a folded state, for the logins the end-to-end tests cannot reach without
//! an identity provider: JWT roles (their own policies, an external group claimed
//! through a group alias), Kubernetes roles (a known service account the role binds, one
//! it does not), a method without its config, and a user whose login would be refused.

use std::collections::BTreeMap;

use ledger::seal::SLOT_LEN;
use ledger::{Actor, KeySlot, Sealed};
use migrations::{
    Body, Entity, EntityAlias, EntityAliasWritten, EntityWritten, Envelope, Event, Group, GroupAlias,
    GroupAliasWritten, GroupWritten, JwtConfig, JwtConfigWritten, JwtRole, JwtRoleWritten, KubernetesConfig,
    KubernetesConfigWritten, KubernetesRole, KubernetesRoleWritten, MountClass, MountConfig, MountEnabled,
    PolicyWritten, TokenSettings, UserpassUserWritten,
};
use projections::State;
use projections::policy::Operation;
use replay::replay::Replayed;
use replay::who_can::{Grant, who_can};

fn fold(events: Vec<Event>) -> Replayed {
    let mut state = State::default();
    for (i, event) in events.into_iter().enumerate() {
        let seq = u64::try_from(i).unwrap_or(0) + 1;
        let slots = if matches!(event, Event::UserpassUserWritten(_)) { vec![KeySlot([0; SLOT_LEN])] } else { vec![] };
        state.apply(&Envelope {
            seq,
            time: seq * 1_000_000_000,
            actor: Actor::default(),
            request_id: [0; 16],
            body: Body::App(event),
            slots,
        });
    }
    let seq = state.last_seq;
    Replayed { state, seq, time: seq * 1_000_000_000, now: seq * 1_000_000_000, first_seq: 1 }
}

fn mount(uuid: &str, path: &str, kind: &str) -> Event {
    Event::MountEnabled(MountEnabled {
        uuid: uuid.into(),
        path: path.into(),
        class: MountClass::Auth,
        kind: kind.into(),
        accessor: format!("auth_{uuid}"),
        description: String::new(),
        options: BTreeMap::new(),
        config: MountConfig::default(),
        local: false,
        seal_wrap: false,
    })
}

fn policies(names: &[&str]) -> TokenSettings {
    TokenSettings { token_policies: names.iter().map(|n| n.to_string()).collect(), ..TokenSettings::default() }
}

fn entity(id: &str, name: &str, policies: &[&str]) -> Event {
    let policies = policies.iter().map(|p| p.to_string()).collect();
    Event::EntityWritten(EntityWritten {
        entity: Entity { id: id.into(), name: name.into(), policies, ..Entity::default() },
        time: 0,
    })
}

fn service_account(alias: &str, entity: &str, name: &str, namespace: &str) -> Event {
    let metadata = BTreeMap::from([
        ("service_account_name".to_string(), name.to_string()),
        ("service_account_namespace".to_string(), namespace.to_string()),
    ]);
    Event::EntityAliasWritten(EntityAliasWritten {
        alias: EntityAlias {
            id: format!("alias-{alias}"),
            canonical_id: entity.into(),
            mount_accessor: "auth_k8s".into(),
            name: alias.into(),
            metadata,
            custom_metadata: BTreeMap::new(),
        },
        time: 0,
    })
}

fn world() -> Replayed {
    let read = "path \"secret/data/app\" { capabilities = [\"read\"] }";
    fold(vec![
        Event::PolicyWritten(PolicyWritten { name: "reader".into(), text: read.into(), time: 0 }),
        Event::PolicyWritten(PolicyWritten { name: "team".into(), text: read.into(), time: 0 }),
        mount("up", "userpass/", "userpass"),
        Event::UserpassUserWritten(UserpassUserWritten {
            mount: "up".into(),
            name: "alice".into(),
            password_hash: Some(Sealed { slot: 0, nonce: [0; 12], ciphertext: vec![0; 32] }),
            token: policies(&["reader"]),
            time: 0,
        }),
        mount("jwt", "jwt/", "jwt"),
        Event::JwtConfigWritten(JwtConfigWritten { mount: "jwt".into(), config: JwtConfig::default() }),
        Event::JwtRoleWritten(JwtRoleWritten {
            mount: "jwt".into(),
            role: JwtRole {
                name: "open".into(),
                bound_audiences: vec!["ci".into()],
                token: policies(&["reader"]),
                ..JwtRole::default()
            },
        }),
        Event::JwtRoleWritten(JwtRoleWritten {
            mount: "jwt".into(),
            role: JwtRole { name: "grouped".into(), groups_claim: "groups".into(), ..JwtRole::default() },
        }),
        Event::JwtRoleWritten(JwtRoleWritten {
            mount: "jwt".into(),
            role: JwtRole { name: "rooted".into(), token: policies(&["root"]), ..JwtRole::default() },
        }),
        Event::GroupWritten(GroupWritten {
            group: Group {
                id: "g-deploy".into(),
                name: "deployers".into(),
                kind: "external".into(),
                policies: vec!["team".into()],
                ..Group::default()
            },
            time: 0,
        }),
        Event::GroupAliasWritten(GroupAliasWritten {
            alias: GroupAlias {
                id: "ga-1".into(),
                name: "deploy".into(),
                mount_accessor: "auth_jwt".into(),
                canonical_id: "g-deploy".into(),
            },
        }),
        // A JWT mount without its config: no login can succeed there.
        mount("jwt2", "jwt2/", "jwt"),
        Event::JwtRoleWritten(JwtRoleWritten {
            mount: "jwt2".into(),
            role: JwtRole { name: "unconfigured".into(), token: policies(&["reader"]), ..JwtRole::default() },
        }),
        mount("k8s", "kubernetes/", "kubernetes"),
        Event::KubernetesConfigWritten(KubernetesConfigWritten {
            mount: "k8s".into(),
            config: KubernetesConfig::default(),
            token_reviewer_jwt: None,
        }),
        Event::KubernetesRoleWritten(KubernetesRoleWritten {
            mount: "k8s".into(),
            role: KubernetesRole {
                name: "apps".into(),
                bound_service_account_names: vec!["web-*".into()],
                bound_service_account_namespaces: vec!["prod".into()],
                ..KubernetesRole::default()
            },
        }),
        entity("e-web", "web-workload", &["reader"]),
        service_account("uid-web", "e-web", "web-1", "prod"),
        entity("e-db", "db-workload", &["reader"]),
        service_account("uid-db", "e-db", "db-1", "prod"),
    ])
}

fn rows<'a>(grants: &'a [Grant], kind: &str, name: &str) -> Vec<&'a Grant> {
    grants.iter().filter(|g| g.kind == kind && g.name == name).collect()
}

#[test]
fn jwt_and_kubernetes_roles_are_listed_with_what_makes_them_grant() {
    let r = world();
    let grants = who_can(&r, "secret/data/app", Operation::Read);

    let open = rows(&grants, "jwt", "open");
    assert_eq!(open.len(), 1, "{grants:#?}");
    assert_eq!((open[0].mount.as_str(), open[0].id.as_str()), ("auth/jwt/", "auth/jwt/role/open"));
    assert_eq!(open[0].token_policies, ["default", "reader"]);
    assert!(open[0].entity.is_none() && open[0].conditions.iter().any(|c| c == "aud in [ci]"), "{:?}", open[0]);

    let grouped = rows(&grants, "jwt", "grouped");
    assert_eq!(grouped.len(), 1, "{grants:#?}");
    assert_eq!(grouped[0].identity_policies, ["team"]);
    assert!(grouped[0].conditions.iter().any(|c| c == "\"deploy\" in the groups claim"), "{:?}", grouped[0]);
    let group = rows(&grants, "group", "deployers");
    assert_eq!(group.len(), 1);
    assert_eq!(group[0].conditions, ["membership: a login at auth/jwt/ with \"deploy\" in its groups claim"]);

    // The role binds web-* in prod: the web workload's known alias, not the db one.
    let apps = rows(&grants, "kubernetes", "apps");
    assert_eq!(apps.len(), 1, "{grants:#?}");
    let e = apps[0].entity.as_ref().expect("the known service account's entity");
    assert_eq!(e.name, "web-workload");
    assert_eq!((e.aliases[0].mount.as_str(), e.aliases[0].name.as_str()), ("auth/kubernetes/", "uid-web"));
    assert_eq!(apps[0].identity_policies, ["reader"]);

    assert_eq!(rows(&grants, "userpass", "alice").len(), 1);
    // Logins that cannot succeed: root from a login, a method without its config.
    assert!(rows(&grants, "jwt", "rooted").is_empty() && rows(&grants, "jwt", "unconfigured").is_empty());
    // Nothing reads `secret/data/other`.
    assert!(who_can(&r, "secret/data/other", Operation::Read).is_empty());

    let keys: Vec<(&str, &str)> = grants.iter().map(|g| (g.kind, g.name.as_str())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}
