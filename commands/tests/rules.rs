//! Given/when/then tests of the write rules: a state built from events, a request, and
//! the events, erasures and reply it must produce. No disk, no network, no clock.

use std::collections::BTreeMap;

use commands::sealing::{InitKeys, initial_events};
use commands::sequencer::fold;
use commands::{
    Caller, Command, DbCommand, Effect, Env, KvMetadataUpdate, Rejection, Reply, Request, Secret, TokenParams, decide,
};
use migrations::{Access, Event, Outcome as AccessOutcome};
use projections::State;
use serde_json::json;

mod common;
use common::{SEC, TestEnv};

/// A world: a state, an env, and the next seq.
struct World {
    state: State,
    env: TestEnv,
    next_seq: u64,
}

impl World {
    /// An initialized barrier with a dev root token "root" and a KV v2 mount "kv".
    fn new() -> World {
        let env = TestEnv::new();
        let keys = InitKeys::generate().expect("keys");
        let (events, _) = initial_events(1, 1, &keys, Some("root"), true, &env).expect("init");
        let mut w = World { state: State::default(), env, next_seq: 1 };
        let effects: Vec<Effect> = events.into_iter().map(Effect::Event).collect();
        w.next_seq = fold(&mut w.state, &effects, w.next_seq, w.env.now(), &ledger::Actor::system(), [0; 16]);
        w.ok(
            "root",
            Command::EnableMount {
                path: "kv/".into(),
                class: migrations::MountClass::Secret,
                kind: "kv".into(),
                description: String::new(),
                options: BTreeMap::from([("version".into(), "2".into())]),
                config: Default::default(),
                local: false,
                seal_wrap: false,
            },
        );
        w
    }

    fn caller(&self, token: &str) -> Caller {
        let id_hash = self.env.token_hash(token);
        let accessor = self.state.tokens.by_hash(&id_hash).map(|t| t.accessor.clone()).unwrap_or_default();
        Caller { accessor, id_hash }
    }

    /// Decides a request by `token` and folds its effects in; returns the outcome.
    fn when(&mut self, token: &str, command: Command) -> commands::Outcome {
        let caller = self.caller(token);
        let access = Access {
            operation: "update".into(),
            path: "x".into(),
            mount_accessor: String::new(),
            outcome: AccessOutcome::Allowed,
            policies: vec![],
            request_hmac: BTreeMap::new(),
            response_hmac: BTreeMap::new(),
            used_token: false,
        };
        let req = Request {
            caller: Some(caller.clone()),
            actor: ledger::Actor { accessor: caller.accessor, ..Default::default() },
            request_id: [1; 16],
            access: Some(access),
            command: Some(command),
        };
        let out = decide(&self.state, &req, &self.env);
        self.next_seq = fold(&mut self.state, &out.effects, self.next_seq, self.env.now(), &req.actor, req.request_id);
        out
    }

    fn ok(&mut self, token: &str, command: Command) -> Reply {
        let out = self.when(token, command);
        out.result.expect("accepted")
    }

    fn kv_uuid(&self) -> String {
        self.state.mounts.at_prefix("kv/").expect("kv mount").uuid.clone()
    }

    fn put(&mut self, path: &str, data: serde_json::Value, cas: Option<u64>) -> Result<Reply, Rejection> {
        let mount = self.kv_uuid();
        self.when(
            "root",
            Command::KvPut { mount, path: path.into(), data: data.as_object().cloned().unwrap_or_default(), cas },
        )
        .result
    }

    fn read(&self, path: &str, version: u64) -> Option<serde_json::Value> {
        let s = self.state.kv.secret(&self.kv_uuid(), path)?;
        let v = s.versions.get(&version)?.value.as_ref()?;
        let plain =
            self.env.open(&v.sealed, &v.slot, &projections::kv::kv_context(&self.kv_uuid(), path, version)).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    fn token(&mut self, parent: &str, params: TokenParams) -> Result<(String, String), Rejection> {
        match self.when(parent, Command::CreateToken { params, max_ttl: 768 * 3600, default_ttl: 768 * 3600 }).result? {
            Reply::TokenIssued { id, accessor, .. } => Ok((id, accessor)),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

fn erasures(out: &commands::Outcome) -> Vec<u64> {
    out.effects.iter().filter_map(|e| if let Effect::Erase { target, .. } = e { Some(*target) } else { None }).collect()
}

fn events(out: &commands::Outcome) -> Vec<&'static str> {
    out.effects.iter().filter_map(|e| if let Effect::Event(d) = e { Some(d.event.name()) } else { None }).collect()
}

#[test]
fn kv_versions_count_up_and_check_and_set_guards_them() {
    let mut w = World::new();
    assert!(matches!(w.put("app", json!({"user": "alice"}), None), Ok(Reply::KvWritten { version: 1, .. })));
    assert_eq!(
        w.put("app", json!({"user": "bob"}), Some(0)),
        Err(Rejection::Invalid("check-and-set parameter did not match the current version".into()))
    );
    assert!(matches!(w.put("app", json!({"user": "bob"}), Some(1)), Ok(Reply::KvWritten { version: 2, .. })));
    assert_eq!(w.read("app", 1), Some(json!({"user": "alice"})));
    assert_eq!(w.read("app", 2), Some(json!({"user": "bob"})));
    let mount = w.kv_uuid();
    w.ok(
        "root",
        Command::KvMetadataPut {
            mount,
            path: "app".into(),
            update: KvMetadataUpdate { cas_required: Some(true), ..Default::default() },
        },
    );
    assert_eq!(
        w.put("app", json!({"user": "eve"}), None),
        Err(Rejection::Invalid("check-and-set parameter required for this call".into()))
    );
}

#[test]
fn a_refused_write_still_records_its_access_and_changes_nothing_else() {
    let mut w = World::new();
    w.put("app", json!({"a": 1}), None).expect("write");
    let before = w.state.kv.secret(&w.kv_uuid(), "app").cloned();
    let mount = w.kv_uuid();
    let out = w.when(
        "root",
        Command::KvPut {
            mount,
            path: "app".into(),
            data: json!({"a": 2}).as_object().cloned().unwrap_or_default(),
            cas: Some(7),
        },
    );
    assert!(out.result.is_err());
    assert_eq!(events(&out), vec!["Access"]);
    let Some(Effect::Event(d)) = out.effects.last() else { panic!("no access event") };
    let Event::Access(a) = &d.event else { panic!("not an access event") };
    assert_eq!(a.outcome, AccessOutcome::Failed(400));
    assert_eq!(w.state.kv.secret(&w.kv_uuid(), "app").cloned(), before);
}

#[test]
fn patch_merges_and_null_removes_keys() {
    let mut w = World::new();
    w.put("app", json!({"user": "alice", "pass": "old"}), None).expect("write");
    let mount = w.kv_uuid();
    let patch = json!({"pass": "new", "user": null}).as_object().cloned().unwrap_or_default();
    w.ok("root", Command::KvPatch { mount: mount.clone(), path: "app".into(), patch: patch.clone(), cas: None });
    assert_eq!(w.read("app", 2), Some(json!({"pass": "new"})));
    assert_eq!(
        w.when("root", Command::KvPatch { mount, path: "missing".into(), patch, cas: None }).result,
        Err(Rejection::NotFound)
    );
}

#[test]
fn soft_delete_and_undelete_keep_the_payload_but_destroy_erases_it() {
    let mut w = World::new();
    w.put("app", json!({"v": 1}), None).expect("write");
    w.put("app", json!({"v": 2}), None).expect("write");
    let mount = w.kv_uuid();
    w.ok("root", Command::KvDeleteLatest { mount: mount.clone(), path: "app".into() });
    let s = w.state.kv.secret(&mount, "app").expect("secret").clone();
    assert!(s.versions[&2].deletion > 0 && s.versions[&2].value.is_some());
    w.ok("root", Command::KvUndelete { mount: mount.clone(), path: "app".into(), versions: vec![2] });
    assert_eq!(w.state.kv.secret(&mount, "app").expect("secret").versions[&2].deletion, 0);
    let v1_seq = s.versions[&1].value.as_ref().expect("value").seq;
    let out = w.when("root", Command::KvDestroy { mount: mount.clone(), path: "app".into(), versions: vec![1, 9] });
    assert_eq!(erasures(&out), vec![v1_seq]);
    let v1 = &w.state.kv.secret(&mount, "app").expect("secret").versions[&1];
    assert!(v1.destroyed && v1.value.is_none());
    assert_eq!(
        w.when("root", Command::KvDestroy { mount, path: "app".into(), versions: vec![] }).result,
        Err(Rejection::Invalid("no version number provided".into()))
    );
}

#[test]
fn versions_beyond_max_versions_are_pruned_and_erased() {
    let mut w = World::new();
    let mount = w.kv_uuid();
    w.ok(
        "root",
        Command::KvMetadataPut {
            mount: mount.clone(),
            path: "app".into(),
            update: KvMetadataUpdate { max_versions: Some(2), ..Default::default() },
        },
    );
    w.put("app", json!({"v": 1}), None).expect("write");
    w.put("app", json!({"v": 2}), None).expect("write");
    // Vault's rule: writing v2 under max 2 gives cutoff 0, so nothing is pruned yet but
    // oldest_version becomes 1.
    assert_eq!(w.state.kv.secret(&mount, "app").expect("s").oldest, 1);
    let v1_seq = w.state.kv.secret(&mount, "app").expect("s").versions[&1].value.as_ref().expect("v").seq;
    let out = w.when(
        "root",
        Command::KvPut {
            mount: mount.clone(),
            path: "app".into(),
            data: json!({"v": 3}).as_object().cloned().unwrap_or_default(),
            cas: None,
        },
    );
    assert_eq!(erasures(&out), vec![v1_seq]);
    let s = w.state.kv.secret(&mount, "app").expect("secret");
    assert_eq!(s.versions.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.oldest, 2);
    // Lowering max_versions prunes nothing until the next data write.
    w.ok(
        "root",
        Command::KvMetadataPut {
            mount: mount.clone(),
            path: "app".into(),
            update: KvMetadataUpdate { max_versions: Some(1), ..Default::default() },
        },
    );
    assert_eq!(w.state.kv.secret(&mount, "app").expect("secret").versions.len(), 2);
}

#[test]
fn deleting_all_metadata_erases_every_version() {
    let mut w = World::new();
    w.put("app", json!({"v": 1}), None).expect("write");
    w.put("app", json!({"v": 2}), None).expect("write");
    let mount = w.kv_uuid();
    let out = w.when("root", Command::KvMetadataDelete { mount: mount.clone(), path: "app".into() });
    assert_eq!(erasures(&out).len(), 2);
    assert!(w.state.kv.secret(&mount, "app").is_none());
}

#[test]
fn child_tokens_get_at_most_their_parents_policies() {
    let mut w = World::new();
    let (parent, _) = w
        .token(
            "root",
            TokenParams { policies: Some(vec!["app".into()]), path: "auth/token/create".into(), ..Default::default() },
        )
        .expect("token");
    let t = w.state.tokens.by_hash(&w.env.token_hash(&parent)).expect("live").clone();
    assert_eq!(t.policies, vec!["app", "default"]);
    assert_eq!(t.creation_ttl, 768 * 3600);
    assert_eq!(
        w.token(&parent, TokenParams { policies: Some(vec!["admin".into()]), ..Default::default() }),
        Err(Rejection::Invalid("child policies must be subset of parent".into()))
    );
    let (child, _) = w.token(&parent, TokenParams::default()).expect("inherits");
    assert_eq!(w.state.tokens.by_hash(&w.env.token_hash(&child)).expect("live").policies, vec!["app", "default"]);
    let (root_child, _) = w.token("root", TokenParams::default()).expect("root child");
    let rc = w.state.tokens.by_hash(&w.env.token_hash(&root_child)).expect("live");
    assert_eq!((rc.policies.clone(), rc.expire_time, rc.renewable), (vec!["root".to_string()], 0, false));
}

#[test]
fn revoking_a_parent_revokes_its_subtree_unless_orphaning() {
    let mut w = World::new();
    let (a, a_acc) = w.token("root", TokenParams { policies: Some(vec![]), ..Default::default() }).expect("a");
    let (b, _) = w.token(&a, TokenParams::default()).expect("b");
    let (c, c_acc) = w.token(&b, TokenParams::default()).expect("c");
    let (_, orphan_acc) = w.token(&a, TokenParams { orphan: true, ..Default::default() }).expect("orphan");
    assert_eq!(
        w.ok("root", Command::RevokeToken { accessor: a_acc, orphan_children: false }),
        Reply::Revoked { found: true }
    );
    for t in [&a, &b, &c] {
        assert!(w.state.tokens.by_hash(&w.env.token_hash(t)).is_none());
    }
    assert!(w.state.tokens.by_accessor(&orphan_acc).is_some());
    assert_eq!(
        w.ok("root", Command::RevokeToken { accessor: c_acc, orphan_children: false }),
        Reply::Revoked { found: false }
    );

    let (p, p_acc) = w.token("root", TokenParams { policies: Some(vec![]), ..Default::default() }).expect("p");
    let (kid, _) = w.token(&p, TokenParams::default()).expect("kid");
    w.ok("root", Command::RevokeToken { accessor: p_acc, orphan_children: true });
    let kid = w.state.tokens.by_hash(&w.env.token_hash(&kid)).expect("kid survives");
    assert!(kid.orphan());
}

#[test]
fn renewal_counts_from_now_and_is_capped_by_explicit_max_ttl() {
    let mut w = World::new();
    let (_, acc) = w
        .token(
            "root",
            TokenParams { policies: Some(vec![]), ttl: Some(3600), explicit_max_ttl: Some(7200), ..Default::default() },
        )
        .expect("token");
    w.env.advance(1000);
    w.ok("root", Command::RenewToken { accessor: acc.clone(), increment: Some(600), max_ttl: 768 * 3600 });
    let t = w.state.tokens.by_accessor(&acc).expect("live").clone();
    assert_eq!((t.last_ttl, t.expire_time), (600, w.env.now() + 600 * SEC));
    // An empty renewal reuses the last granted TTL.
    w.ok("root", Command::RenewToken { accessor: acc.clone(), increment: None, max_ttl: 768 * 3600 });
    assert_eq!(w.state.tokens.by_accessor(&acc).expect("live").last_ttl, 600);
    let Reply::TokenRenewed { warnings, .. } =
        w.ok("root", Command::RenewToken { accessor: acc.clone(), increment: Some(7200), max_ttl: 768 * 3600 })
    else {
        panic!("renewal")
    };
    assert_eq!(
        warnings,
        vec![
            "TTL of \"2h0m0s\" exceeded the effective max_ttl of \"1h43m20s\"; TTL value is capped accordingly"
                .to_string()
        ]
    );
    assert_eq!(w.state.tokens.by_accessor(&acc).expect("live").expire_time, 1_000 * SEC + 7200 * SEC);
}

#[test]
fn expired_tokens_are_revoked_with_their_children_by_an_event() {
    let mut w = World::new();
    let (p, p_acc) =
        w.token("root", TokenParams { policies: Some(vec![]), ttl: Some(60), ..Default::default() }).expect("p");
    let (_, kid_acc) = w.token(&p, TokenParams { ttl: Some(3600), ..Default::default() }).expect("kid");
    w.env.advance(61);
    let out = w.when("root", Command::ExpireTokens);
    assert_eq!(events(&out), vec!["TokensRevoked", "Access"]);
    assert!(w.state.tokens.by_accessor(&p_acc).is_none() && w.state.tokens.by_accessor(&kid_acc).is_none());
}

#[test]
fn a_token_with_limited_uses_is_revoked_by_its_last_use() {
    let mut w = World::new();
    let (t, acc) =
        w.token("root", TokenParams { policies: Some(vec![]), num_uses: 2, ..Default::default() }).expect("t");
    let mount = w.kv_uuid();
    let out = w.when(
        &t,
        Command::KvConfigPut {
            mount: mount.clone(),
            max_versions: None,
            cas_required: None,
            delete_version_after: None,
        },
    );
    assert_eq!(events(&out), vec!["KvConfigWritten", "Access"]);
    assert_eq!(w.state.tokens.by_accessor(&acc).expect("live").uses_left, 1);
    let out = w.when(
        &t,
        Command::KvConfigPut {
            mount: mount.clone(),
            max_versions: None,
            cas_required: None,
            delete_version_after: None,
        },
    );
    assert_eq!(events(&out), vec!["KvConfigWritten", "Access", "TokensRevoked"]);
    let out =
        w.when(&t, Command::KvConfigPut { mount, max_versions: None, cas_required: None, delete_version_after: None });
    assert_eq!(out.result, Err(Rejection::PermissionDenied));
}

#[test]
fn a_revoked_tokens_cubbyhole_is_erased_with_it() {
    let mut w = World::new();
    let (t, acc) = w.token("root", TokenParams { policies: Some(vec![]), ..Default::default() }).expect("t");
    let mount = projections::kv::cubbyhole_mount(&acc);
    w.ok(
        &t,
        Command::KvV1Put {
            mount: mount.clone(),
            path: "note".into(),
            data: json!({"k": "v"}).as_object().cloned().unwrap_or_default(),
        },
    );
    let seq = w.state.kv.v1(&mount, "note").expect("stored").seq;
    let out = w.when("root", Command::RevokeToken { accessor: acc, orphan_children: false });
    assert_eq!(erasures(&out), vec![seq]);
    assert!(w.state.kv.v1(&mount, "note").is_none());
}

#[test]
fn mounts_cannot_nest_or_take_reserved_paths() {
    let mut w = World::new();
    let enable = |path: &str, kind: &str| Command::EnableMount {
        path: path.into(),
        class: migrations::MountClass::Secret,
        kind: kind.into(),
        description: String::new(),
        options: BTreeMap::new(),
        config: Default::default(),
        local: false,
        seal_wrap: false,
    };
    assert_eq!(
        w.when("root", enable("kv/inner/", "kv")).result,
        Err(Rejection::Invalid("path is already in use at kv/".into()))
    );
    assert_eq!(
        w.when("root", enable("sys/x/", "kv")).result,
        Err(Rejection::Invalid("cannot mount under sys/".into()))
    );
    assert_eq!(
        w.when("root", enable("other/", "nonexistent-type")).result,
        Err(Rejection::Invalid("plugin not found in the catalog: nonexistent-type".into()))
    );
    assert_eq!(
        w.when("root", Command::DisableMount { prefix: "sys/".into() }).result,
        Err(Rejection::Invalid("cannot unmount \"sys/\"".into()))
    );
    assert_eq!(w.ok("root", Command::DisableMount { prefix: "nope/".into() }), Reply::Done);
    for bad in ["team/../evil/", "a//b/", "./", "../", "/", "a/./", "tab\t/"] {
        let out = w.when("root", enable(bad, "kv"));
        assert!(
            matches!(&out.result, Err(Rejection::Invalid(m)) if m.starts_with("invalid mount path")),
            "{bad:?}: {:?}",
            out.result
        );
        assert!(w.state.mounts.at_prefix(bad).is_none(), "{bad:?} was mounted");
    }
    w.ok("root", enable("team/a.b/", "kv"));
}

#[test]
fn disabling_a_mount_erases_its_secrets() {
    let mut w = World::new();
    w.put("a", json!({"x": 1}), None).expect("write");
    w.put("b/c", json!({"x": 2}), None).expect("write");
    let out = w.when("root", Command::DisableMount { prefix: "kv/".into() });
    assert_eq!(erasures(&out).len(), 2);
    assert!(w.state.mounts.at_prefix("kv/").is_none());
}

#[test]
fn policies_root_is_untouchable_and_default_cannot_go() {
    let mut w = World::new();
    assert_eq!(
        w.when(
            "root",
            Command::WritePolicy {
                name: "root".into(),
                text: "path \"x\" { capabilities = [\"read\"] }".into(),
                cas: None
            }
        )
        .result,
        Err(Rejection::Invalid("cannot update \"root\" policy".into()))
    );
    assert_eq!(
        w.when("root", Command::DeletePolicy { name: "default".into() }).result,
        Err(Rejection::Invalid("cannot delete default policy".into()))
    );
    assert!(matches!(
        w.when(
            "root",
            Command::WritePolicy {
                name: "bad".into(),
                text: "path \"x\" { capabilities = [\"fly\"] }".into(),
                cas: None
            }
        )
        .result,
        Err(Rejection::Invalid(_))
    ));
    w.ok(
        "root",
        Command::WritePolicy {
            name: "app".into(),
            text: "path \"kv/data/app\" { capabilities = [\"read\"] }".into(),
            cas: None,
        },
    );
    assert!(w.state.policies.get("app").is_some());
}

fn db_secret(user: &str) -> migrations::LeaseSecret {
    migrations::LeaseSecret::Database { config: "pg".into(), role: "ro".into(), username: user.into() }
}

fn issue_lease(w: &mut World, token: &str, ttl: u64, max_ttl: u64) -> String {
    let mount = w.kv_uuid();
    match w
        .ok(token, Command::IssueLease { path: "kv/creds/ro".into(), mount, ttl, max_ttl, secret: db_secret("v-user") })
    {
        Reply::LeaseIssued { lease_id, ttl: granted } => {
            assert_eq!(granted, ttl.min(max_ttl));
            lease_id
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_lease_is_renewed_from_now_up_to_its_max_ttl_and_no_further() {
    let mut w = World::new();
    let id = issue_lease(&mut w, "root", 60, 300);
    assert!(id.starts_with("kv/creds/ro/") && id.len() == "kv/creds/ro/".len() + 24);
    let l = w.state.leases.get(&id).expect("lease").clone();
    assert_eq!((l.expire_time - l.issue_time) / SEC, 60);
    w.env.advance(30);
    let Reply::LeaseRenewed { ttl, warnings, .. } =
        w.ok("root", Command::RenewLease { lease_id: id.clone(), increment: Some(120), default_ttl: 60 })
    else {
        panic!("renewal")
    };
    assert_eq!((ttl, warnings.len()), (120, 0));
    let Reply::LeaseRenewed { ttl, warnings, .. } =
        w.ok("root", Command::RenewLease { lease_id: id.clone(), increment: Some(1000), default_ttl: 60 })
    else {
        panic!("renewal")
    };
    assert_eq!(ttl, 270, "capped at issue + max_ttl");
    assert_eq!(warnings.len(), 1);
    let refused =
        w.when("root", Command::RenewLease { lease_id: id.clone(), increment: Some(10), default_ttl: 60 }).result;
    assert_eq!(refused, Err(Rejection::Invalid("lease is at its max TTL and cannot be renewed further".into())));
    assert_eq!(
        w.when("root", Command::RenewLease { lease_id: "nope".into(), increment: None, default_ttl: 60 }).result,
        Err(Rejection::Invalid("lease not found".into()))
    );
}

#[test]
fn failed_revocations_back_off_and_the_lease_stays_until_revoked() {
    let mut w = World::new();
    let id = issue_lease(&mut w, "root", 60, 60);
    for (attempt, delay) in [(1u32, 1u64), (2, 2), (3, 4)] {
        w.ok("root", Command::RecordRevocationFailures { failures: vec![(id.clone(), "connection refused".into())] });
        let l = w.state.leases.get(&id).expect("still there").clone();
        assert_eq!((l.attempts, l.next_attempt), (attempt, w.env.now() + delay * SEC));
        assert_eq!(l.last_error.as_deref(), Some("connection refused"));
    }
    w.ok("root", Command::RecordLeasesRevoked { lease_ids: vec![id.clone()], reason: migrations::LeaseEnd::Expired });
    assert!(w.state.leases.get(&id).is_none());
}

#[test]
fn revoking_a_token_makes_its_leases_due_at_once() {
    let mut w = World::new();
    let (t, acc) = w.token("root", TokenParams { policies: Some(vec![]), ..Default::default() }).expect("token");
    let id = issue_lease(&mut w, &t, 3600, 3600);
    let other = issue_lease(&mut w, "root", 3600, 3600);
    assert!(w.state.leases.due(w.env.now(), 10).is_empty());
    w.ok("root", Command::RevokeToken { accessor: acc, orphan_children: false });
    let due: Vec<String> = w.state.leases.due(w.env.now(), 10).iter().map(|l| l.id.to_string()).collect();
    assert_eq!(due, vec![id]);
    assert!(!due.contains(&other));
}

fn enable_database(w: &mut World) -> String {
    w.ok(
        "root",
        Command::EnableMount {
            path: "database/".into(),
            class: migrations::MountClass::Secret,
            kind: "database".into(),
            description: String::new(),
            options: BTreeMap::new(),
            config: Default::default(),
            local: false,
            seal_wrap: false,
        },
    );
    w.state.mounts.at_prefix("database/").expect("database mount").uuid.clone()
}

fn open_root_password(w: &World, mount: &str) -> String {
    let c = w.state.databases.connection(mount, "pg").expect("connection");
    let p = c.password.as_ref().expect("password");
    let plain =
        w.env.open(&p.sealed, &p.slot, &projections::database::root_password_context(mount, "pg")).expect("opens");
    String::from_utf8(plain.to_vec()).expect("utf-8")
}

#[test]
fn a_connection_password_is_sealed_kept_on_update_and_erased_when_replaced() {
    let mut w = World::new();
    let mount = enable_database(&mut w);
    let config = migrations::DbConnectionConfig {
        plugin_name: "postgresql-database-plugin".into(),
        connection_url: "postgres://{{username}}:{{password}}@127.0.0.1/postgres".into(),
        username: "postgres".into(),
        ..Default::default()
    };
    let write = |password: Option<&str>| {
        Command::Database(DbCommand::WriteConnection {
            mount: mount.clone(),
            name: "pg".into(),
            config: config.clone(),
            password: password.map(Secret::new),
        })
    };
    let refused = w.when("root", write(None)).result;
    assert_eq!(refused, Err(Rejection::Invalid("password is required for a new connection".into())));
    let first = w.when("root", write(Some("hunter2")));
    assert!(first.result.is_ok());
    let Some(Effect::Event(d)) = first.effects.first() else { panic!("an event") };
    assert!(!format!("{:?}", d.event).contains("hunter2"), "the password is sealed in the event");
    assert!(!format!("{:?}", write(Some("hunter2"))).contains("hunter2"), "commands never print a password");
    let first_seq = w.state.databases.connection(&mount, "pg").and_then(|c| c.password.clone()).expect("pw").seq;
    assert_eq!(open_root_password(&w, &mount), "hunter2");
    let keep = w.when("root", write(None));
    assert!(erasures(&keep).is_empty(), "no password given: the old one stays");
    assert_eq!(open_root_password(&w, &mount), "hunter2");
    let replace = w.when("root", write(Some("correct horse")));
    assert_eq!(erasures(&replace), vec![first_seq]);
    assert_eq!(open_root_password(&w, &mount), "correct horse");
}

#[test]
fn a_rotated_root_password_is_staged_first_and_live_only_once_confirmed() {
    let mut w = World::new();
    let mount = enable_database(&mut w);
    w.ok(
        "root",
        Command::Database(DbCommand::WriteConnection {
            mount: mount.clone(),
            name: "pg".into(),
            config: Default::default(),
            password: Some(Secret::new("old")),
        }),
    );
    let stage = |p: &str| {
        Command::Database(DbCommand::StageRootPassword {
            mount: mount.clone(),
            name: "pg".into(),
            password: Secret::new(p),
        })
    };
    w.ok("root", stage("new-1"));
    assert_eq!(open_root_password(&w, &mount), "old", "staged is not live");
    let staged_seq =
        w.state.databases.connection(&mount, "pg").and_then(|c| c.staged_password.clone()).expect("staged").seq;
    // A second attempt replaces (and erases) the first staged password.
    let again = w.when("root", stage("new-2"));
    assert_eq!(erasures(&again), vec![staged_seq]);
    let confirm = Command::Database(DbCommand::ConfirmRootPassword { mount: mount.clone(), name: "pg".into() });
    let done = w.when("root", confirm.clone());
    assert_eq!(erasures(&done).len(), 1, "the old root password is erased");
    assert_eq!(open_root_password(&w, &mount), "new-2");
    assert_eq!(w.when("root", confirm).result, Err(Rejection::Invalid("no root rotation in progress".into())));
}

#[test]
fn database_writes_need_a_database_mount_and_roles_keep_their_kind() {
    let mut w = World::new();
    let kv = w.kv_uuid();
    let role = Command::Database(DbCommand::WriteRole { mount: kv, name: "ro".into(), role: Default::default() });
    assert_eq!(w.when("root", role).result, Err(Rejection::Invalid("no database mount".into())));
    let mount = enable_database(&mut w);
    let static_role = migrations::DbStaticRole {
        db_name: "pg".into(),
        username: "app".into(),
        rotation_period: 3600,
        ..Default::default()
    };
    w.ok(
        "root",
        Command::Database(DbCommand::WriteStaticRole {
            mount: mount.clone(),
            name: "app".into(),
            role: static_role.clone(),
        }),
    );
    let dynamic =
        Command::Database(DbCommand::WriteRole { mount: mount.clone(), name: "app".into(), role: Default::default() });
    assert!(w.when("root", dynamic).result.is_err(), "a name is static or dynamic, not both");
    let renamed = migrations::DbStaticRole { username: "other".into(), ..static_role };
    let out =
        w.when("root", Command::Database(DbCommand::WriteStaticRole { mount, name: "app".into(), role: renamed }));
    assert_eq!(out.result, Err(Rejection::Invalid("cannot update static role username or db_name".into())));
}

#[test]
fn a_mount_with_live_leases_cannot_be_disabled() {
    let mut w = World::new();
    let id = issue_lease(&mut w, "root", 60, 60);
    let refused = w.when("root", Command::DisableMount { prefix: "kv/".into() }).result;
    assert_eq!(refused, Err(Rejection::Invalid("cannot unmount \"kv/\": 1 leases are still live".into())));
    assert!(w.state.mounts.at_prefix("kv/").is_some());
    w.ok("root", Command::RecordLeasesRevoked { lease_ids: vec![id], reason: migrations::LeaseEnd::MountDisabled });
    w.ok("root", Command::DisableMount { prefix: "kv/".into() });
    assert!(w.state.mounts.at_prefix("kv/").is_none());
}

/// Enables an AppRole mount with role `web` (two uses per secret id); its uuid and role id.
fn approle_world() -> (World, String, String) {
    let mut w = World::new();
    w.ok(
        "root",
        Command::EnableMount {
            path: "approle/".into(),
            class: migrations::MountClass::Auth,
            kind: "approle".into(),
            description: String::new(),
            options: BTreeMap::new(),
            config: Default::default(),
            local: false,
            seal_wrap: false,
        },
    );
    let mount = w.state.mounts.at_prefix("auth/approle/").expect("mount").uuid.clone();
    let role = migrations::AppRole {
        name: "web".into(),
        role_id: "role-1".into(),
        bind_secret_id: true,
        secret_id_num_uses: 2,
        token: migrations::TokenSettings { token_policies: vec!["app".into()], ..Default::default() },
        ..Default::default()
    };
    w.ok("root", Command::Auth(commands::AuthCommand::WriteAppRole { mount: mount.clone(), role }));
    (w, mount, "role-1".into())
}

/// An anonymous login request (no caller token).
fn login(w: &mut World, mount: &str, role_id: &str, secret_id: &str) -> commands::Outcome {
    let hash = commands::secret_id_hash(&w.env, mount, secret_id);
    let command = Command::Login(Box::new(commands::Login {
        mount: mount.into(),
        proof: commands::LoginProof::AppRole { role_id: role_id.into(), secret_id_hash: Some(hash) },
        remote_addr: "127.0.0.1".into(),
        default_ttl: 600,
        max_ttl: 3600,
        path: "auth/approle/login".into(),
    }));
    let req = Request {
        caller: None,
        actor: ledger::Actor::default(),
        request_id: [2; 16],
        access: None,
        command: Some(command),
    };
    let out = decide(&w.state, &req, &w.env);
    w.next_seq = fold(&mut w.state, &out.effects, w.next_seq, w.env.now(), &req.actor, req.request_id);
    out
}

#[test]
fn a_login_never_mints_a_root_token() {
    // Given a role whose token policies name root (an operator's mistake, or an attacker's
    // write), when a workload logs in with it, then the login is refused and makes nothing.
    let (mut w, mount, role_id) = approle_world();
    let role = migrations::AppRole {
        name: "web".into(),
        role_id: role_id.clone(),
        bind_secret_id: false,
        secret_id_bound_cidrs: vec!["127.0.0.1/32".into()],
        token: migrations::TokenSettings {
            token_policies: vec!["default".into(), "root".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    w.ok("root", Command::Auth(commands::AuthCommand::WriteAppRole { mount: mount.clone(), role }));
    let tokens_before = w.state.tokens.accessors().count();
    let out = login(&mut w, &mount, &role_id, "");
    assert_eq!(out.result, Err(Rejection::Invalid("auth methods cannot create root tokens".into())));
    assert_eq!(w.state.tokens.accessors().count(), tokens_before);
    assert!(w.state.identity.entity_ids().is_empty(), "no entity is made for a refused login");
}

#[test]
fn an_approle_login_spends_a_secret_id_use_and_makes_the_entity_once() {
    let (mut w, mount, role_id) = approle_world();
    let Reply::SecretIdIssued { secret_id, .. } = w.ok(
        "root",
        Command::Auth(commands::AuthCommand::IssueSecretId {
            mount: mount.clone(),
            role: "web".into(),
            custom: None,
            metadata: BTreeMap::from([("env".into(), "dev".into())]),
            cidr_list: vec![],
            token_bound_cidrs: vec![],
            num_uses: None,
            ttl: None,
        }),
    ) else {
        panic!("no secret id")
    };
    // The secret id is only its keyed hash in the state (and so in the ledger).
    let m = w.state.auth.mount(&mount).expect("mount");
    assert!(m.secret_ids.contains_key(&commands::secret_id_hash(&w.env, &mount, &secret_id)));

    let first = login(&mut w, &mount, &role_id, &secret_id);
    assert_eq!(events(&first), vec!["SecretIdUsed", "EntityWritten", "EntityAliasWritten", "TokenCreated"]);
    let Ok(Reply::LoggedIn { accessor, .. }) = &first.result else { panic!("{:?}", first.result) };
    let t = w.state.tokens.by_accessor(accessor).expect("token").clone();
    assert!(t.orphan() && t.policies == vec!["app", "default"] && t.creation_ttl == 600);
    assert_eq!(t.meta, BTreeMap::from([("env".into(), "dev".into()), ("role_name".into(), "web".into())]));

    // The second login reuses the entity and spends the last use; the third is refused.
    let second = login(&mut w, &mount, &role_id, &secret_id);
    assert_eq!(events(&second), vec!["SecretIdUsed", "TokenCreated"]);
    let Ok(Reply::LoggedIn { accessor: a2, .. }) = &second.result else { panic!("{:?}", second.result) };
    assert_eq!(w.state.tokens.by_accessor(a2).expect("token").entity_id, t.entity_id);
    let third = login(&mut w, &mount, &role_id, &secret_id);
    assert_eq!(third.result, Err(Rejection::Invalid("invalid role or secret ID".into())));
    assert!(third.effects.is_empty(), "a refused login changes nothing");
    assert_eq!(
        login(&mut w, &mount, "other", &secret_id).result,
        Err(Rejection::Invalid("invalid role or secret ID".into()))
    );
}

#[test]
fn a_wrapped_response_is_erased_when_unwrapped_and_the_token_is_single_use() {
    let mut w = World::new();
    let Reply::Wrapped { token, accessor, .. } = w.ok(
        "root",
        Command::Wrap {
            response: Secret::new(r#"{"data":{"k":"v"}}"#),
            ttl: 60,
            creation_path: "kv/data/x".into(),
            wrapped_accessor: String::new(),
        },
    ) else {
        panic!("not wrapped")
    };
    let store = projections::kv::cubbyhole_mount(&accessor);
    let stored = w.state.kv.v1(&store, commands::RESPONSE_PATH).expect("response kept").seq;
    let t = w.state.tokens.by_accessor(&accessor).expect("wrapping token");
    assert_eq!((t.num_uses, t.policies.clone(), t.creation_ttl), (1, vec![commands::WRAPPING_POLICY.to_string()], 60));

    // Unwrapped with its own token: one revocation (not two), and the response erased.
    let out = w.when(&token, Command::Unwrap { accessor: accessor.clone() });
    assert_eq!(events(&out), vec!["TokensRevoked", "Access"]);
    assert!(out.effects.iter().any(|e| matches!(e, Effect::Erase { target, .. } if *target == stored)));
    assert!(w.state.tokens.by_accessor(&accessor).is_none());
    assert_eq!(w.when(&token, Command::Unwrap { accessor }).result, Err(Rejection::PermissionDenied));
}

fn enable_audit(path: &str, kind: &str, options: &[(&str, &str)]) -> Command {
    Command::EnableAudit {
        path: path.into(),
        kind: kind.into(),
        description: String::new(),
        options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        local: false,
        from_config: false,
    }
}

#[test]
fn an_audit_device_gets_a_sealed_salt_one_path_each_and_loses_its_salt_on_disable() {
    let mut w = World::new();
    let out = w.when("root", enable_audit("file", "file", &[("file_path", "/tmp/a.log")]));
    assert_eq!(out.result, Ok(Reply::Done));
    assert_eq!(events(&out), vec!["AuditDeviceEnabled", "Access"]);
    let dev = w.state.audit.get("file/").expect("enabled").clone();
    let salt = dev.salt.clone().expect("salt");
    let opened = w.env.open(&salt.sealed, &salt.slot, &commands::audit::salt_context("file/")).expect("the salt opens");
    assert_eq!(opened.len(), 32);
    assert_eq!(dev.enabled_seq, salt.seq);

    let again = w.when("root", enable_audit("file/", "file", &[("file_path", "/tmp/b.log")]));
    assert_eq!(again.result, Err(Rejection::Invalid("path already in use".into())));
    assert_eq!(events(&again), vec!["Access"]);

    let off = w.when("root", Command::DisableAudit { path: "file".into(), from_config: false });
    assert_eq!(erasures(&off), vec![salt.seq]);
    assert_eq!(events(&off), vec!["AuditDeviceDisabled", "Access"]);
    assert!(w.state.audit.is_empty());
    // Disabling an unknown device is not an error (as in Vault) and changes nothing.
    let none = w.when("root", Command::DisableAudit { path: "nope".into(), from_config: false });
    assert_eq!((&none.result, events(&none)), (&Ok(Reply::Done), vec!["Access"]));
}

#[test]
fn audit_device_options_are_checked_and_log_raw_is_refused() {
    let mut w = World::new();
    for (kind, opts, message) in [
        ("nosuch", vec![], "unknown backend type: \"nosuch\""),
        ("file", vec![], "file_path is required"),
        ("file", vec![("file_path", "/x"), ("mode", "abc")], "strconv.ParseUint: parsing \"abc\": invalid syntax"),
        (
            "file",
            vec![("file_path", "/x"), ("hmac_accessor", "maybe")],
            "strconv.ParseBool: parsing \"maybe\": invalid syntax",
        ),
        ("file", vec![("file_path", "/x"), ("format", "xml")], "unknown format type \"xml\" (cairn writes json only)"),
        ("socket", vec![], "address is required"),
        (
            "socket",
            vec![("address", "127.0.0.1:9"), ("socket_type", "unix")],
            "unsupported socket_type: unix (tcp or udp)",
        ),
        (
            "socket",
            vec![("address", "127.0.0.1:9"), ("write_timeout", "soon")],
            "unable to parse 'write_timeout': soon",
        ),
    ] {
        let out = w.when("root", enable_audit("dev", kind, &opts));
        assert_eq!(out.result, Err(Rejection::Invalid(message.into())), "{kind} {opts:?}");
    }
    let raw = w.when("root", enable_audit("raw", "file", &[("file_path", "/x"), ("log_raw", "true")]));
    assert!(matches!(raw.result, Err(Rejection::Invalid(m)) if m.starts_with("log_raw is not supported")));
    assert!(w.state.audit.is_empty());
    let ok = w.when("root", enable_audit("sock", "socket", &[("address", "127.0.0.1:9"), ("write_timeout", "500ms")]));
    assert_eq!(ok.result, Ok(Reply::Done));
}

#[test]
fn a_file_device_may_not_point_anywhere_the_server_can_write() {
    let mut w = World::new();
    for (opts, message) in [
        (
            vec![("file_path", "audit.log")],
            "file_path must be an absolute path (or \"stdout\" or \"discard\"): \"audit.log\"",
        ),
        (
            vec![("file_path", "/tmp/x/../../../tmp/pwned")],
            "file_path may not contain \".\" or \"..\" segments: \"/tmp/x/../../../tmp/pwned\"",
        ),
        (vec![("file_path", "/var/./log/a")], "file_path may not contain \".\" or \"..\" segments: \"/var/./log/a\""),
        (
            vec![("file_path", "/proc/self/fd/1")],
            "file_path may not be under /proc, /sys or /dev (use \"stdout\" or \"discard\"): \"/proc/self/fd/1\"",
        ),
        (
            vec![("file_path", "//dev/null")],
            "file_path may not be under /proc, /sys or /dev (use \"stdout\" or \"discard\"): \"//dev/null\"",
        ),
        (
            vec![("file_path", "/sys/kernel/x")],
            "file_path may not be under /proc, /sys or /dev (use \"stdout\" or \"discard\"): \"/sys/kernel/x\"",
        ),
        (vec![("file_path", "/var/log/")], "file_path must name a file, not a directory: \"/var/log/\""),
        (vec![("file_path", "/var/log/a\nb")], "file_path may not contain control characters"),
        (
            vec![("file_path", "/var/log/a"), ("mode", "0777")],
            "audit file mode 0777 is wider than 0600: only the server's user may read or write an audit log",
        ),
        (
            vec![("file_path", "/var/log/a"), ("mode", "0640")],
            "audit file mode 0640 is wider than 0600: only the server's user may read or write an audit log",
        ),
        (
            vec![("file_path", "/var/log/a"), ("mode", "4600")],
            "audit file mode 4600 is wider than 0600: only the server's user may read or write an audit log",
        ),
        (vec![("file_path", "/var/log/a"), ("prefix", "#!/bin/sh\n")], "prefix may not contain control characters"),
        (vec![("address", "127.0.0.1:9"), ("prefix", "a\tb")], "prefix may not contain control characters"),
    ] {
        let kind = if opts[0].0 == "address" { "socket" } else { "file" };
        let out = w.when("root", enable_audit("f", kind, &opts));
        assert_eq!(out.result, Err(Rejection::Invalid(message.into())), "{opts:?}");
        assert_eq!(events(&out), vec!["Access"], "a refused device is not enabled");
    }
    for (i, opts) in [
        vec![("file_path", "/var/log/cairn/audit.log"), ("mode", "0600")],
        vec![("file_path", "/var/log/cairn/audit2.log"), ("mode", "0400"), ("prefix", "cairn: ")],
        vec![("file_path", "/var/log/cairn/audit3.log"), ("mode", "0000")],
        vec![("file_path", "STDOUT")],
        vec![("file_path", "discard")],
    ]
    .into_iter()
    .enumerate()
    {
        let out = w.when("root", enable_audit(&format!("ok{i}"), "file", &opts));
        assert_eq!(out.result, Ok(Reply::Done), "{opts:?}");
    }
    // The mode a file is created with never exceeds 0600, even for a device enabled
    // before the rule (replayed from an older ledger).
    let mode = |m: &str| commands::audit::file_mode(&[("mode".to_string(), m.to_string())].into_iter().collect());
    assert_eq!(
        (mode("0777"), mode("0644"), mode("0400"), mode("0000"), mode("x")),
        (0o600, 0o600, 0o400, 0o600, 0o600)
    );
}

#[test]
fn a_device_from_the_configuration_is_disabled_only_by_the_configuration() {
    let mut w = World::new();
    let mut declared = enable_audit("declared", "file", &[("file_path", "/var/log/cairn/audit.log")]);
    if let Command::EnableAudit { from_config, .. } = &mut declared {
        *from_config = true;
    }
    assert_eq!(w.when("root", declared).result, Ok(Reply::Done));
    assert!(w.state.audit.get("declared/").is_some_and(|d| d.from_config));
    assert_eq!(w.when("root", enable_audit("api", "socket", &[("address", "127.0.0.1:9")])).result, Ok(Reply::Done));
    assert!(w.state.audit.get("api/").is_some_and(|d| !d.from_config));

    // OpenBao's answer to `DELETE sys/audit/declared`.
    let refused = w.when("root", Command::DisableAudit { path: "declared".into(), from_config: false });
    assert_eq!(refused.result, Err(Rejection::Invalid("cannot disable configuration-managed audit device".into())));
    assert_eq!(events(&refused), vec!["Access"]);
    // The configuration never disables a device the API enabled.
    let kept = w.when("root", Command::DisableAudit { path: "api".into(), from_config: true });
    assert_eq!((&kept.result, events(&kept)), (&Ok(Reply::Done), vec!["Access"]));
    assert!(w.state.audit.get("api/").is_some());

    let off = w.when("root", Command::DisableAudit { path: "declared".into(), from_config: true });
    assert_eq!(events(&off), vec!["AuditDeviceDisabled", "Access"]);
    assert_eq!(erasures(&off).len(), 1, "its salt is erased");
    assert!(w.state.audit.get("declared/").is_none());
    let api_off = w.when("root", Command::DisableAudit { path: "api".into(), from_config: false });
    assert_eq!(events(&api_off), vec!["AuditDeviceDisabled", "Access"]);
}
