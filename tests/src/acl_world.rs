//! The world of the ACL path tests (`tests/tests/acl_paths.rs`): objects a limited token
//! is to be kept from, made the same way on cairn and on a real OpenBao; the path by which
//! each route of cairn's path tables reaches one of them; the variants of a path an
//! attacker tries; and what "the object changed" and "the object was read" mean.
//!
//! An object's state is what root reads of it ([`Probe`]s, with the fields that move by
//! themselves, such as a countdown `ttl`, left out). Its marker is a string only its state
//! holds: an answer that carries it has read the object.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::process::HttpReply;
use crate::server::Server;

/// A root request that reads part of an object's state.
#[derive(Debug, Clone)]
pub struct Probe {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
    /// Keep only the status (an answer that differs every time, such as a login's).
    pub status_only: bool,
}

/// Something the tests keep a limited token from.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: &'static str,
    pub probes: Vec<Probe>,
    /// Strings only this object's state holds.
    pub markers: &'static [&'static str],
}

/// How one route of a path table is exercised in the world.
#[derive(Debug, Clone)]
pub struct Binding {
    pub table: &'static str,
    pub pattern: &'static str,
    /// The canonical path (after `/v1/`) this route takes here.
    pub target: String,
    /// The object the route reaches; `None` for an action whose effects only the ledger
    /// shows (a token made, a wrapping).
    pub object: Option<&'static str>,
    /// A body that does the route's work when the ACL lets it.
    pub body: Value,
    /// Answered without a token: the ACL is not asked, there is nothing to bypass.
    pub unauthenticated: bool,
}

/// One route's binding, with `{name}` placeholders for ids the world makes.
struct Spec {
    table: &'static str,
    pattern: &'static str,
    target: &'static str,
    object: Option<&'static str>,
    body: &'static str,
}

const fn spec(
    table: &'static str,
    pattern: &'static str,
    target: &'static str,
    object: Option<&'static str>,
    body: &'static str,
) -> Spec {
    Spec { table, pattern, target, object, body }
}

/// Routes answered before any token is looked at.
const UNAUTHENTICATED: &[(&str, &str)] = &[
    ("sys", "init"),
    ("sys", "seal-status"),
    ("sys", "unseal"),
    ("sys", "health"),
    ("sys", "leader"),
    ("sys", "storage/raft/join"),
    ("sys", "storage/raft/bootstrap/challenge"),
    ("sys", "wrapping/lookup"),
    ("approle", "login"),
    ("userpass", "login/{username:lower}"),
    ("jwt", "login"),
    ("kubernetes", "login"),
];

const E: &str = "{}";
const POLICY_BODY: &str =
    r#"{"policy":"path \"*\" { capabilities = [\"create\",\"read\",\"update\",\"delete\",\"list\",\"sudo\"] }"}"#;

/// Every route of every table, bound to the world. `acl_paths.rs` checks that no route of
/// `api::routes::TABLES` is missing here: a new backend's routes are attacked as soon as
/// they are bound.
const SPECS: &[Spec] = &[
    // sys/
    spec("sys", "seal", "sys/seal", Some("barrier"), E),
    spec("sys", "storage/raft/configuration", "sys/storage/raft/configuration", None, E),
    spec("sys", "storage/raft/remove-peer", "sys/storage/raft/remove-peer", None, r#"{"server_id":"victim"}"#),
    spec("sys", "storage/raft/snapshot", "sys/storage/raft/snapshot", None, E),
    spec("sys", "storage/raft/snapshot-force", "sys/storage/raft/snapshot-force", None, E),
    spec("sys", "mounts", "sys/mounts", None, E),
    spec(
        "sys",
        "mounts/{path:rest:trim}/tune",
        "sys/mounts/victimkv/tune",
        Some("mount"),
        r#"{"description":"attacker","default_lease_ttl":"1m"}"#,
    ),
    spec(
        "sys",
        "mounts/{path:rest:trim}",
        "sys/mounts/victimkv",
        Some("mount"),
        r#"{"type":"kv","description":"attacker"}"#,
    ),
    spec("sys", "auth", "sys/auth", None, E),
    spec(
        "sys",
        "auth/{path:rest:trim}/tune",
        "sys/auth/victimup/tune",
        Some("auth-mount"),
        r#"{"description":"attacker"}"#,
    ),
    spec(
        "sys",
        "auth/{path:rest:trim}",
        "sys/auth/victimup",
        Some("auth-mount"),
        r#"{"type":"userpass","description":"attacker"}"#,
    ),
    spec("sys", "policies/acl/?", "sys/policies/acl", None, E),
    spec("sys", "policies/acl/{name:rest:trim:space:lower}", "sys/policies/acl/victim", Some("policy"), POLICY_BODY),
    spec("sys", "policy/?", "sys/policy", None, E),
    spec("sys", "policy/{name:rest:trim:space:lower}", "sys/policy/victim", Some("policy"), POLICY_BODY),
    spec(
        "sys",
        "capabilities",
        "sys/capabilities",
        None,
        r#"{"token":"{victim_token}","paths":["secret/data/team/victim"]}"#,
    ),
    spec("sys", "capabilities-self", "sys/capabilities-self", None, r#"{"paths":["secret/data/team/victim"]}"#),
    spec(
        "sys",
        "capabilities-accessor",
        "sys/capabilities-accessor",
        None,
        r#"{"accessor":"{victim_accessor}","paths":["secret/data/team/victim"]}"#,
    ),
    spec("sys", "leases/lookup/{prefix:rest?}", "sys/leases/lookup/database/creds/victim", Some("lease"), E),
    spec("sys", "leases/lookup", "sys/leases/lookup", Some("lease"), r#"{"lease_id":"{lease_id}"}"#),
    spec("sys", "leases/renew", "sys/leases/renew", Some("lease"), r#"{"lease_id":"{lease_id}","increment":"2h"}"#),
    spec("sys", "leases/renew/{lease_id:rest}", "sys/leases/renew/{lease_id}", Some("lease"), r#"{"increment":"2h"}"#),
    spec("sys", "leases/revoke", "sys/leases/revoke", Some("lease"), r#"{"lease_id":"{lease_id}"}"#),
    spec("sys", "leases/revoke/{lease_id:rest}", "sys/leases/revoke/{lease_id}", Some("lease"), E),
    spec(
        "sys",
        "leases/revoke-prefix/{prefix:rest}",
        "sys/leases/revoke-prefix/database/creds/victim",
        Some("lease"),
        E,
    ),
    spec("sys", "leases/revoke-force/{prefix:rest}", "sys/leases/revoke-force/database/creds/victim", Some("lease"), E),
    spec("sys", "wrapping/wrap", "sys/wrapping/wrap", None, r#"{"a":"b"}"#),
    spec("sys", "wrapping/unwrap", "sys/wrapping/unwrap", Some("wrapped"), r#"{"token":"{wrapping_token}"}"#),
    spec("sys", "wrapping/rewrap", "sys/wrapping/rewrap", Some("wrapped"), r#"{"token":"{wrapping_token}"}"#),
    spec("sys", "audit", "sys/audit", None, E),
    spec(
        "sys",
        "audit/{path:rest:trim}",
        "sys/audit/victimaudit",
        None,
        r#"{"type":"file","options":{"file_path":"discard"}}"#,
    ),
    spec("sys", "audit-hash/{path:rest:trim}", "sys/audit-hash/victimaudit", None, r#"{"input":"x"}"#),
    spec("sys", "key-status", "sys/key-status", None, E),
    spec("sys", "rotate", "sys/rotate", Some("keyring"), E),
    spec("sys", "rotate/keyring", "sys/rotate/keyring", Some("keyring"), E),
    spec("sys", "ledger/keys", "sys/ledger/keys", None, E),
    spec("sys", "ledger/query", "sys/ledger/query", None, E),
    spec("sys", "ledger/export", "sys/ledger/export", None, E),
    spec("sys", "ledger/checkpoint", "sys/ledger/checkpoint", None, E),
    spec("sys", "ledger/proof/inclusion", "sys/ledger/proof/inclusion", None, E),
    spec("sys", "ledger/proof/consistency", "sys/ledger/proof/consistency", None, E),
    spec("sys", "internal/ui/mounts", "sys/internal/ui/mounts", None, E),
    spec("sys", "internal/ui/mounts/{path:rest}", "sys/internal/ui/mounts/secret/team/victim", None, E),
    // auth/token/
    spec("token", "create", "auth/token/create", None, r#"{"policies":["default"]}"#),
    spec("token", "create-orphan", "auth/token/create-orphan", None, r#"{"policies":["default"]}"#),
    spec("token", "create/{role_name}", "auth/token/create/victim", None, E),
    spec("token", "lookup", "auth/token/lookup", Some("victim-token"), r#"{"token":"{victim_token}"}"#),
    spec("token", "lookup-self", "auth/token/lookup-self", None, E),
    spec(
        "token",
        "lookup-accessor",
        "auth/token/lookup-accessor",
        Some("victim-token"),
        r#"{"accessor":"{victim_accessor}"}"#,
    ),
    spec("token", "renew", "auth/token/renew", Some("victim-token"), r#"{"token":"{victim_token}","increment":"2h"}"#),
    spec("token", "renew-self", "auth/token/renew-self", None, E),
    spec(
        "token",
        "renew-accessor",
        "auth/token/renew-accessor",
        Some("victim-token"),
        r#"{"accessor":"{victim_accessor}","increment":"2h"}"#,
    ),
    spec("token", "revoke", "auth/token/revoke", Some("victim-token"), r#"{"token":"{victim_token}"}"#),
    spec("token", "revoke-self", "auth/token/revoke-self", None, E),
    spec("token", "revoke-orphan", "auth/token/revoke-orphan", Some("victim-token"), r#"{"token":"{victim_token}"}"#),
    spec(
        "token",
        "revoke-accessor",
        "auth/token/revoke-accessor",
        Some("victim-token"),
        r#"{"accessor":"{victim_accessor}"}"#,
    ),
    spec("token", "accessors/?", "auth/token/accessors", None, E),
    spec("token", "roles/?", "auth/token/roles", None, E),
    spec(
        "token",
        "roles/{role_name}",
        "auth/token/roles/victim",
        Some("token-role"),
        r#"{"allowed_policies":"attacker"}"#,
    ),
    spec("token", "tidy", "auth/token/tidy", None, E),
    // identity/
    spec("identity", "entity", "identity/entity", Some("entity"), r#"{"name":"victim","policies":"attacker"}"#),
    spec("identity", "entity/id/?", "identity/entity/id", None, E),
    spec("identity", "entity/id/{id}", "identity/entity/id/{entity_id}", Some("entity"), r#"{"policies":"attacker"}"#),
    spec("identity", "entity/name/?", "identity/entity/name", None, E),
    spec(
        "identity",
        "entity/name/{name:rest}",
        "identity/entity/name/victim",
        Some("entity"),
        r#"{"policies":"attacker"}"#,
    ),
    spec(
        "identity",
        "entity-alias",
        "identity/entity-alias",
        Some("entity-alias"),
        r#"{"name":"victimalias","canonical_id":"{entity_id}","mount_accessor":"{userpass_accessor}"}"#,
    ),
    spec("identity", "entity-alias/id/?", "identity/entity-alias/id", None, E),
    spec(
        "identity",
        "entity-alias/id/{id}",
        "identity/entity-alias/id/{alias_id}",
        Some("entity-alias"),
        r#"{"name":"attacker","canonical_id":"{entity_id}","mount_accessor":"{userpass_accessor}"}"#,
    ),
    spec("identity", "group", "identity/group", Some("group"), r#"{"name":"victim","policies":"attacker"}"#),
    spec("identity", "group/id/?", "identity/group/id", None, E),
    spec("identity", "group/id/{id}", "identity/group/id/{group_id}", Some("group"), r#"{"policies":"attacker"}"#),
    spec("identity", "group/name/?", "identity/group/name", None, E),
    spec(
        "identity",
        "group/name/{name:rest}",
        "identity/group/name/victim",
        Some("group"),
        r#"{"policies":"attacker"}"#,
    ),
    spec(
        "identity",
        "group-alias",
        "identity/group-alias",
        Some("group-alias"),
        r#"{"name":"victimga","mount_accessor":"{jwt_accessor}","canonical_id":"{ext_group_id}"}"#,
    ),
    spec("identity", "group-alias/id/?", "identity/group-alias/id", None, E),
    spec(
        "identity",
        "group-alias/id/{id}",
        "identity/group-alias/id/{group_alias_id}",
        Some("group-alias"),
        r#"{"name":"attacker","mount_accessor":"{jwt_accessor}","canonical_id":"{ext_group_id}"}"#,
    ),
    spec("identity", "lookup/entity", "identity/lookup/entity", Some("entity"), r#"{"name":"victim"}"#),
    spec("identity", "lookup/group", "identity/lookup/group", Some("group"), r#"{"name":"victim"}"#),
    // KV v2 at secret/
    spec("kv v2", "config", "secret/config", Some("kv2-config"), r#"{"max_versions":2}"#),
    spec("kv v2", "data/{path:rest}", "secret/data/team/victim", Some("kv2-secret"), r#"{"data":{"v":"attacker"}}"#),
    spec("kv v2", "delete/{path:rest}", "secret/delete/team/victim", Some("kv2-secret"), r#"{"versions":[1]}"#),
    spec("kv v2", "undelete/{path:rest}", "secret/undelete/team/victim", Some("kv2-secret"), r#"{"versions":[1]}"#),
    spec("kv v2", "destroy/{path:rest}", "secret/destroy/team/victim", Some("kv2-secret"), r#"{"versions":[1]}"#),
    spec(
        "kv v2",
        "metadata/{path:rest?}",
        "secret/metadata/team/victim",
        Some("kv2-secret"),
        r#"{"custom_metadata":{"m":"attacker"}}"#,
    ),
    spec("kv v2", "subkeys/{path:rest}", "secret/subkeys/team/victim", Some("kv2-secret"), E),
    // KV v1 at kv1/
    spec("kv v1", "{path:rest?}", "kv1/team/victim", Some("kv1-secret"), r#"{"v":"attacker"}"#),
    // database/
    spec("database", "config/?", "database/config", None, E),
    spec(
        "database",
        "config/{name}",
        "database/config/victim",
        Some("db-config"),
        r#"{"plugin_name":"postgresql-database-plugin","connection_url":"postgresql://{{username}}:{{password}}@127.0.0.1:1/attacker","username":"attacker","password":"attacker","verify_connection":false,"allowed_roles":"*"}"#,
    ),
    spec("database", "roles/?", "database/roles", None, E),
    spec(
        "database",
        "roles/{name}",
        "database/roles/victim",
        Some("db-role"),
        r#"{"db_name":"victim","creation_statements":"SELECT 1;"}"#,
    ),
    spec("database", "static-roles/?", "database/static-roles", None, E),
    spec(
        "database",
        "static-roles/{name}",
        "database/static-roles/victim",
        Some("db-static"),
        r#"{"db_name":"victim","username":"attacker","rotation_period":"1h"}"#,
    ),
    spec("database", "creds/{name}", "database/creds/victim", None, E),
    spec("database", "static-creds/{name}", "database/static-creds/victim", Some("db-static"), E),
    spec("database", "reset/{name}", "database/reset/victim", None, E),
    spec("database", "rotate-root/{name}", "database/rotate-root/victim", None, E),
    spec("database", "rotate-role/{name}", "database/rotate-role/victim", Some("db-static"), E),
    // auth/approle/
    spec("approle", "role/?", "auth/approle/role", None, E),
    spec(
        "approle",
        "role/{role_name}",
        "auth/approle/role/victim",
        Some("approle"),
        r#"{"token_policies":"attacker"}"#,
    ),
    spec(
        "approle",
        "role/{role_name}/role-id",
        "auth/approle/role/victim/role-id",
        Some("approle"),
        r#"{"role_id":"attacker"}"#,
    ),
    spec("approle", "role/{role_name}/secret-id/?", "auth/approle/role/victim/secret-id", Some("approle"), E),
    spec(
        "approle",
        "role/{role_name}/custom-secret-id",
        "auth/approle/role/victim/custom-secret-id",
        Some("approle"),
        r#"{"secret_id":"attacker-secret-id"}"#,
    ),
    spec(
        "approle",
        "role/{role_name}/secret-id/lookup",
        "auth/approle/role/victim/secret-id/lookup",
        Some("approle"),
        r#"{"secret_id":"{secret_id}"}"#,
    ),
    spec(
        "approle",
        "role/{role_name}/secret-id/destroy",
        "auth/approle/role/victim/secret-id/destroy",
        Some("approle"),
        r#"{"secret_id":"{secret_id}"}"#,
    ),
    spec(
        "approle",
        "role/{role_name}/secret-id-accessor/lookup",
        "auth/approle/role/victim/secret-id-accessor/lookup",
        Some("approle"),
        r#"{"secret_id_accessor":"{secret_id_accessor}"}"#,
    ),
    spec(
        "approle",
        "role/{role_name}/secret-id-accessor/destroy",
        "auth/approle/role/victim/secret-id-accessor/destroy",
        Some("approle"),
        r#"{"secret_id_accessor":"{secret_id_accessor}"}"#,
    ),
    spec("approle", "tidy/secret-id", "auth/approle/tidy/secret-id", None, E),
    // auth/userpass/
    spec("userpass", "users/?", "auth/userpass/users", None, E),
    spec(
        "userpass",
        "users/{username:lower}",
        "auth/userpass/users/victim",
        Some("user"),
        r#"{"password":"attacker","token_policies":"attacker"}"#,
    ),
    spec(
        "userpass",
        "users/{username:lower}/password",
        "auth/userpass/users/victim/password",
        Some("user"),
        r#"{"password":"attacker"}"#,
    ),
    spec(
        "userpass",
        "users/{username:lower}/policies",
        "auth/userpass/users/victim/policies",
        Some("user"),
        r#"{"token_policies":"attacker"}"#,
    ),
    // auth/jwt/ and auth/kubernetes/
    spec(
        "jwt",
        "config",
        "auth/jwt/config",
        Some("jwt-config"),
        r#"{"bound_issuer":"attacker","jwt_validation_pubkeys":["{jwt_pem}"]}"#,
    ),
    spec("jwt", "role/?", "auth/jwt/role", None, E),
    spec(
        "jwt",
        "role/{name}",
        "auth/jwt/role/victim",
        Some("jwt-role"),
        r#"{"role_type":"jwt","user_claim":"sub","bound_audiences":"attacker"}"#,
    ),
    spec(
        "kubernetes",
        "config",
        "auth/kubernetes/config",
        Some("k8s-config"),
        r#"{"kubernetes_host":"https://attacker.invalid:6443","disable_local_ca_jwt":true,"kubernetes_ca_cert":"{ca_pem}"}"#,
    ),
    spec("kubernetes", "role/?", "auth/kubernetes/role", None, E),
    spec(
        "kubernetes",
        "role/{name}",
        "auth/kubernetes/role/victim",
        Some("k8s-role"),
        r#"{"bound_service_account_names":"attacker","bound_service_account_namespaces":"attacker"}"#,
    ),
];

/// The world on one server: its objects, every route's binding, the ids it made.
pub struct World {
    pub objects: Vec<Object>,
    pub bindings: Vec<Binding>,
    vars: BTreeMap<&'static str, String>,
}

/// A root request with a JSON body; the answer must have one of `ok` statuses.
fn root(s: &Server, method: &str, path: &str, body: Option<Value>, ok: &[u16]) -> Result<HttpReply> {
    let text = body.map(|b| b.to_string());
    let r = s.http(method, &format!("/v1/{path}"), Some("root"), text.as_deref())?;
    ensure!(ok.contains(&r.status), "setup {method} {path}: {} {}", r.status, r.body);
    Ok(r)
}

fn field(r: &HttpReply, pointer: &str) -> Result<String> {
    r.json()?
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("{pointer} in {}", r.body))
}

fn probe(method: &'static str, path: impl Into<String>) -> Probe {
    Probe { method, path: path.into(), body: None, status_only: false }
}

impl World {
    /// Makes the world on a dev server (root token `root`, KV v2 at `secret/`).
    /// `pg_user` is a PostgreSQL role with CREATEROLE the database engine connects as.
    pub fn build(s: &Server, pg_user: &str, jwt_pem: &str, ca_pem: &str) -> Result<World> {
        for (path, kind, extra) in [
            ("sys/mounts/kv1", "kv", json!({"options": {"version": "1"}})),
            ("sys/mounts/database", "database", json!({})),
            ("sys/auth/approle", "approle", json!({})),
            ("sys/auth/userpass", "userpass", json!({})),
            ("sys/auth/jwt", "jwt", json!({})),
            ("sys/auth/kubernetes", "kubernetes", json!({})),
        ] {
            let mut body = json!({"type": kind});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            root(s, "POST", path, Some(body), &[200, 204])?;
        }
        let auth = root(s, "GET", "sys/auth", None, &[200])?.json()?;
        let accessor = |m: &str| auth["data"][m]["accessor"].as_str().map(str::to_string).context("mount accessor");
        let mut vars = BTreeMap::new();
        vars.insert("userpass_accessor", accessor("userpass/")?);
        vars.insert("jwt_accessor", accessor("jwt/")?);
        vars.insert("pg_user", pg_user.to_string());
        vars.insert("jwt_pem", jwt_pem.replace('\n', "\\n"));
        vars.insert("ca_pem", ca_pem.replace('\n', "\\n"));
        vars.insert("ca_pem_raw", ca_pem.to_string());
        let mut world = World { objects: Vec::new(), bindings: Vec::new(), vars };
        world.restore(s, jwt_pem)?;
        Ok(world)
    }

    /// Puts every object back as `build` made it (markers included), making again what is
    /// gone, and binds the routes to the ids it has now.
    pub fn restore(&mut self, s: &Server, jwt_pem: &str) -> Result<()> {
        let v = |w: &World, k: &str| w.vars.get(k).cloned().unwrap_or_default();
        root(s, "POST", "sys/mounts/victimkv", Some(json!({"type": "kv", "description": "mk-m0unt"})), &[204, 400])?;
        root(
            s,
            "POST",
            "sys/mounts/victimkv/tune",
            Some(json!({"description": "mk-m0unt", "default_lease_ttl": "0"})),
            &[204],
        )?;
        root(s, "POST", "sys/auth/victimup", Some(json!({"type": "userpass", "description": "mk-4uth"})), &[204, 400])?;
        root(s, "POST", "sys/auth/victimup/tune", Some(json!({"description": "mk-4uth"})), &[204])?;
        let policy = r#"path "mk-p0licy/*" { capabilities = ["read"] }"#;
        root(s, "POST", "sys/policies/acl/victim", Some(json!({"policy": policy})), &[204])?;
        root(s, "POST", "secret/config", Some(json!({"max_versions": 5, "cas_required": false})), &[200, 204])?;
        root(s, "POST", "secret/data/team/victim", Some(json!({"data": {"v": "mk-kv2s3cret"}})), &[200])?;
        root(s, "POST", "secret/metadata/team/victim", Some(json!({"custom_metadata": {"m": "mk-kv2m3ta"}})), &[204])?;
        root(s, "POST", "kv1/team/victim", Some(json!({"v": "mk-kv1s3cret"})), &[204])?;
        root(
            s,
            "POST",
            "auth/userpass/users/victim",
            Some(json!({"password": "victim-pw", "token_policies": "mk-u5er"})),
            &[204],
        )?;
        root(
            s,
            "POST",
            "auth/approle/role/victim",
            Some(json!({"token_policies": "mk-appr0le", "bind_secret_id": true, "role_id": "victim-role-id"})),
            &[204],
        )?;
        let lookup = s.http(
            "POST",
            "/v1/auth/approle/role/victim/secret-id/lookup",
            Some("root"),
            Some(&json!({"secret_id": v(self, "secret_id")}).to_string()),
        )?;
        if lookup.status != 200 {
            let r = root(s, "POST", "auth/approle/role/victim/secret-id", Some(json!({})), &[200])?;
            self.vars.insert("secret_id", field(&r, "/data/secret_id")?);
            self.vars.insert("secret_id_accessor", field(&r, "/data/secret_id_accessor")?);
        }
        root(
            s,
            "POST",
            "auth/jwt/config",
            Some(json!({"jwt_validation_pubkeys": [jwt_pem], "bound_issuer": "mk-jwtc0nf"})),
            &[204],
        )?;
        root(
            s,
            "POST",
            "auth/jwt/role/victim",
            Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": "mk-jwtr0le"})),
            &[204],
        )?;
        let k8s = json!({"kubernetes_host": "https://mk-k8sc0nf.invalid:6443", "disable_local_ca_jwt": true, "kubernetes_ca_cert": v(self, "ca_pem_raw")});
        root(s, "POST", "auth/kubernetes/config", Some(k8s), &[204])?;
        root(
            s,
            "POST",
            "auth/kubernetes/role/victim",
            Some(json!({"bound_service_account_names": "mk-k8sr0le", "bound_service_account_namespaces": "default"})),
            &[204],
        )?;
        root(s, "POST", "auth/token/roles/victim", Some(json!({"allowed_policies": "mk-t0kr0le"})), &[204])?;
        // A live token of root's, and a wrapped answer nobody unwrapped yet.
        let alive = s.http(
            "POST",
            "/v1/auth/token/lookup-accessor",
            Some("root"),
            Some(&json!({"accessor": v(self, "victim_accessor")}).to_string()),
        )?;
        if alive.status != 200 {
            let r = root(
                s,
                "POST",
                "auth/token/create",
                Some(json!({"policies": ["default"], "display_name": "mk-t0ken", "ttl": "1h"})),
                &[200],
            )?;
            self.vars.insert("victim_token", field(&r, "/auth/client_token")?);
            self.vars.insert("victim_accessor", field(&r, "/auth/accessor")?);
        }
        let wrapped = s.http(
            "POST",
            "/v1/sys/wrapping/lookup",
            None,
            Some(&json!({"token": v(self, "wrapping_token")}).to_string()),
        )?;
        if wrapped.status != 200 {
            let r = s.http_with(
                "POST",
                "/v1/sys/wrapping/wrap",
                &[("X-Vault-Token", "root"), ("X-Vault-Wrap-TTL", "1h")],
                br#"{"mk":"mk-wr4pped"}"#,
            )?;
            ensure!(r.status == 200, "wrap: {} {}", r.status, r.body);
            self.vars.insert("wrapping_token", field(&r, "/wrap_info/token")?);
        }
        // Identity: an entity with an alias, a group, an external group with an alias.
        root(
            s,
            "POST",
            "identity/entity/name/victim",
            Some(json!({"metadata": {"mk": "mk-3ntity"}, "policies": []})),
            &[200, 204],
        )?;
        self.vars
            .insert("entity_id", field(&root(s, "GET", "identity/entity/name/victim", None, &[200])?, "/data/id")?);
        let alias =
            s.http("GET", &format!("/v1/identity/entity-alias/id/{}", v(self, "alias_id")), Some("root"), None)?;
        if alias.status != 200 || v(self, "alias_id").is_empty() {
            let body = json!({"name": "victimalias", "canonical_id": v(self, "entity_id"), "mount_accessor": v(self, "userpass_accessor")});
            let r = root(s, "POST", "identity/entity-alias", Some(body), &[200])?;
            self.vars.insert("alias_id", field(&r, "/data/id")?);
        }
        root(
            s,
            "POST",
            "identity/group/name/victim",
            Some(json!({"metadata": {"mk": "mk-gr0up"}, "policies": []})),
            &[200, 204],
        )?;
        self.vars.insert("group_id", field(&root(s, "GET", "identity/group/name/victim", None, &[200])?, "/data/id")?);
        root(s, "POST", "identity/group/name/victimext", Some(json!({"type": "external"})), &[200, 204])?;
        self.vars.insert(
            "ext_group_id",
            field(&root(s, "GET", "identity/group/name/victimext", None, &[200])?, "/data/id")?,
        );
        let galias =
            s.http("GET", &format!("/v1/identity/group-alias/id/{}", v(self, "group_alias_id")), Some("root"), None)?;
        if galias.status != 200 || v(self, "group_alias_id").is_empty() {
            let body = json!({"name": "victimga", "mount_accessor": v(self, "jwt_accessor"), "canonical_id": v(self, "ext_group_id")});
            let r = root(s, "POST", "identity/group-alias", Some(body), &[200])?;
            self.vars.insert("group_alias_id", field(&r, "/data/id")?);
        }
        // The database engine: a connection to the local PostgreSQL as a role of the
        // test's own, a role, and one live lease.
        let url = "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable";
        let config = json!({
            "plugin_name": "postgresql-database-plugin", "connection_url": url, "username": v(self, "pg_user"),
            "password": "victim-pw", "allowed_roles": "victim,mkdbc0nf", "verify_connection": false,
        });
        root(s, "POST", "database/config/victim", Some(config), &[200, 204])?;
        let create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; COMMENT ON ROLE \"{{name}}\" IS 'mk-dbr0le';";
        root(
            s,
            "POST",
            "database/roles/victim",
            Some(json!({"db_name": "victim", "creation_statements": create, "default_ttl": "1h", "max_ttl": "24h"})),
            &[204],
        )?;
        let lease = s.http(
            "PUT",
            "/v1/sys/leases/lookup",
            Some("root"),
            Some(&json!({"lease_id": v(self, "lease_id")}).to_string()),
        )?;
        if lease.status != 200 {
            let r = root(s, "GET", "database/creds/victim", None, &[200])?;
            self.vars.insert("lease_id", r.json()?["lease_id"].as_str().context("lease_id")?.to_string());
        }
        self.objects = self.objects_now();
        self.bindings = self.bind()?;
        Ok(())
    }

    fn objects_now(&self) -> Vec<Object> {
        let v = |k: &str| self.vars.get(k).cloned().unwrap_or_default();
        let body_probe = |method: &'static str, path: &str, body: Value| Probe {
            method,
            path: path.into(),
            body: Some(body),
            status_only: false,
        };
        vec![
            Object { name: "barrier", probes: vec![probe("GET", "sys/seal-status")], markers: &[] },
            Object { name: "mount", probes: vec![probe("GET", "sys/mounts/victimkv/tune")], markers: &["mk-m0unt"] },
            Object { name: "auth-mount", probes: vec![probe("GET", "sys/auth/victimup/tune")], markers: &["mk-4uth"] },
            Object { name: "policy", probes: vec![probe("GET", "sys/policies/acl/victim")], markers: &["mk-p0licy"] },
            Object {
                name: "lease",
                probes: vec![body_probe("PUT", "sys/leases/lookup", json!({"lease_id": v("lease_id")}))],
                markers: &[],
            },
            Object {
                name: "wrapped",
                probes: vec![Probe {
                    method: "POST",
                    path: "sys/wrapping/lookup".into(),
                    body: Some(json!({"token": v("wrapping_token")})),
                    status_only: false,
                }],
                markers: &["mk-wr4pped"],
            },
            Object { name: "keyring", probes: vec![probe("GET", "sys/key-status")], markers: &[] },
            Object {
                name: "victim-token",
                probes: vec![body_probe(
                    "POST",
                    "auth/token/lookup-accessor",
                    json!({"accessor": v("victim_accessor")}),
                )],
                markers: &["mk-t0ken"],
            },
            Object {
                name: "token-role",
                probes: vec![probe("GET", "auth/token/roles/victim")],
                markers: &["mk-t0kr0le"],
            },
            Object {
                name: "entity",
                probes: vec![probe("GET", format!("identity/entity/id/{}", v("entity_id")))],
                markers: &["mk-3ntity"],
            },
            Object {
                name: "entity-alias",
                probes: vec![probe("GET", format!("identity/entity-alias/id/{}", v("alias_id")))],
                markers: &[],
            },
            Object {
                name: "group",
                probes: vec![probe("GET", format!("identity/group/id/{}", v("group_id")))],
                markers: &["mk-gr0up"],
            },
            Object {
                name: "group-alias",
                probes: vec![probe("GET", format!("identity/group-alias/id/{}", v("group_alias_id")))],
                markers: &[],
            },
            Object { name: "kv2-config", probes: vec![probe("GET", "secret/config")], markers: &[] },
            Object {
                name: "kv2-secret",
                probes: vec![probe("GET", "secret/data/team/victim"), probe("GET", "secret/metadata/team/victim")],
                markers: &["mk-kv2s3cret", "mk-kv2m3ta"],
            },
            Object { name: "kv1-secret", probes: vec![probe("GET", "kv1/team/victim")], markers: &["mk-kv1s3cret"] },
            Object { name: "db-config", probes: vec![probe("GET", "database/config/victim")], markers: &["mkdbc0nf"] },
            Object { name: "db-role", probes: vec![probe("GET", "database/roles/victim")], markers: &["mk-dbr0le"] },
            Object { name: "db-static", probes: vec![probe("GET", "database/static-roles/victim")], markers: &[] },
            Object {
                name: "approle",
                probes: vec![
                    probe("GET", "auth/approle/role/victim"),
                    probe("GET", "auth/approle/role/victim/role-id"),
                    probe("LIST", "auth/approle/role/victim/secret-id"),
                ],
                markers: &["mk-appr0le"],
            },
            Object {
                name: "user",
                probes: vec![
                    probe("GET", "auth/userpass/users/victim"),
                    Probe {
                        method: "POST",
                        path: "auth/userpass/login/victim".into(),
                        body: Some(json!({"password": "victim-pw"})),
                        status_only: true,
                    },
                ],
                markers: &["mk-u5er"],
            },
            Object { name: "jwt-config", probes: vec![probe("GET", "auth/jwt/config")], markers: &["mk-jwtc0nf"] },
            Object { name: "jwt-role", probes: vec![probe("GET", "auth/jwt/role/victim")], markers: &["mk-jwtr0le"] },
            Object {
                name: "k8s-config",
                probes: vec![probe("GET", "auth/kubernetes/config")],
                markers: &["mk-k8sc0nf"],
            },
            Object {
                name: "k8s-role",
                probes: vec![probe("GET", "auth/kubernetes/role/victim")],
                markers: &["mk-k8sr0le"],
            },
        ]
    }

    fn bind(&self) -> Result<Vec<Binding>> {
        let fill = |t: &str| -> String {
            let mut out = t.to_string();
            for (k, v) in &self.vars {
                out = out.replace(&format!("{{{k}}}"), v);
            }
            out
        };
        let mut bindings: Vec<Binding> = UNAUTHENTICATED
            .iter()
            .map(|(table, pattern)| Binding {
                table,
                pattern,
                target: String::new(),
                object: None,
                body: json!({}),
                unauthenticated: true,
            })
            .collect();
        for s in SPECS {
            let body: Value = serde_json::from_str(&fill(s.body)).with_context(|| format!("body of {}", s.pattern))?;
            if let Some(o) = s.object {
                ensure!(self.objects.iter().any(|x| x.name == o), "{}: no object {o}", s.pattern);
            }
            bindings.push(Binding {
                table: s.table,
                pattern: s.pattern,
                target: fill(s.target),
                object: s.object,
                body,
                unauthenticated: false,
            });
        }
        Ok(bindings)
    }

    pub fn object(&self, name: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// The targets of every route that reaches `object`.
    pub fn targets_of(&self, object: &str) -> Vec<&str> {
        self.bindings.iter().filter(|b| b.object == Some(object)).map(|b| b.target.as_str()).collect()
    }

    /// The object's state as root reads it now.
    pub fn observe(&self, s: &Server, object: &Object) -> Result<Vec<Value>> {
        object
            .probes
            .iter()
            .map(|p| {
                let body = p.body.as_ref().map(Value::to_string);
                let token = if p.path.starts_with("sys/wrapping/lookup") || p.path.contains("/login/") {
                    None
                } else {
                    Some("root")
                };
                let r = s.http(p.method, &format!("/v1/{}", p.path), token, body.as_deref())?;
                if p.status_only {
                    return Ok(json!(r.status));
                }
                let mut v = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
                strip_moving_fields(&mut v);
                Ok(json!([r.status, v]))
            })
            .collect()
    }
}

/// Fields that change by themselves between two reads of an unchanged object.
fn strip_moving_fields(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["request_id", "ttl", "server_time_utc", "lease_duration"] {
                m.remove(k);
            }
            m.values_mut().for_each(strip_moving_fields);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_moving_fields),
        _ => {}
    }
}

/// A way of writing a path: the canonical path in, the request line's path out.
pub type Variant = fn(&str) -> Option<String>;

/// The ways an attacker writes one path: each turns a canonical path (after `/v1/`) into
/// the raw path of a request line. `None`: the variant does not apply to that path.
pub const VARIANTS: &[(&str, Variant)] = &[
    ("as is", |t| Some(format!("/v1/{t}"))),
    ("trailing slash", |t| Some(format!("/v1/{t}/"))),
    ("escaped trailing slash", |t| Some(format!("/v1/{t}%2F"))),
    ("double slash", |t| t.rfind('/').map(|i| format!("/v1/{}//{}", &t[..i], &t[i + 1..]))),
    ("dot segment", |t| t.rfind('/').map(|i| format!("/v1/{}/./{}", &t[..i], &t[i + 1..]))),
    ("dot-dot segment", |t| t.rfind('/').map(|i| format!("/v1/{}/x/../{}", &t[..i], &t[i + 1..]))),
    ("escaped dot-dot", |t| t.rfind('/').map(|i| format!("/v1/{}/x/%2e%2e/{}", &t[..i], &t[i + 1..]))),
    ("escaped slash", |t| t.rfind('/').map(|i| format!("/v1/{}%2F{}", &t[..i], &t[i + 1..]))),
    ("escaped letter", |t| escape_last_letter(t)),
    ("double escape", |t| escape_last_letter(t).map(|p| p.replacen('%', "%25", 1))),
    ("upper case", |t| last_segment(t).map(|(head, last)| format!("/v1/{head}{}", last.to_uppercase()))),
    ("capitalised", |t| {
        last_segment(t).map(|(head, last)| {
            let mut c = last.chars();
            let first: String = c.next().map(|f| f.to_uppercase().collect()).unwrap_or_default();
            format!("/v1/{head}{first}{}", c.as_str())
        })
    }),
    ("dotless i", |t| look_alike(t, 'i', "%C4%B1")),
    ("kelvin sign", |t| look_alike(t, 'k', "%E2%84%AA")),
    ("long s", |t| look_alike(t, 's', "%C5%BF")),
    ("cyrillic a", |t| look_alike(t, 'a', "%D0%B0")),
    ("fullwidth letter", |t| {
        last_segment(t).and_then(|(head, last)| {
            let c = last.chars().next().filter(char::is_ascii_lowercase)?;
            let wide = char::from_u32(0xFF41 + (c as u32 - 'a' as u32))?;
            Some(format!("/v1/{head}{}{}", escape(&wide.to_string()), &last[1..]))
        })
    }),
    ("combining accent", |t| Some(format!("/v1/{t}%CC%81"))),
    ("zero-width space", |t| Some(format!("/v1/{t}%E2%80%8B"))),
    ("trailing space", |t| Some(format!("/v1/{t}%20"))),
    ("nul", |t| Some(format!("/v1/{t}%00"))),
    ("trailing dot segment", |t| Some(format!("/v1/{t}/."))),
];

fn last_segment(t: &str) -> Option<(&str, &str)> {
    let i = t.rfind('/')?;
    Some((&t[..=i], &t[i + 1..])).filter(|(_, last)| !last.is_empty())
}

fn escape(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn escape_last_letter(t: &str) -> Option<String> {
    let i = t.rfind(|c: char| c.is_ascii_alphabetic())?;
    Some(format!("/v1/{}%{:02X}{}", &t[..i], t.as_bytes()[i], &t[i + 1..]))
}

fn look_alike(t: &str, letter: char, escaped: &str) -> Option<String> {
    let (head, last) = last_segment(t)?;
    let i = last.find(letter)?;
    Some(format!("/v1/{head}{}{escaped}{}", &last[..i], &last[i + letter.len_utf8()..]))
}

/// The HTTP methods of an attack, with the ACL operations each may need.
pub const METHODS: &[(&str, &[&str])] = &[
    ("GET", &["read"]),
    ("LIST", &["list"]),
    ("POST", &["create", "update"]),
    ("PUT", &["create", "update"]),
    ("PATCH", &["patch"]),
    ("DELETE", &["delete"]),
];

/// Sends one attack: `raw` is the request line's path; a PATCH is a merge patch.
pub fn attack(s: &Server, token: &str, method: &str, raw: &str, body: &Value) -> Result<HttpReply> {
    let mut headers = vec![("X-Vault-Token", token)];
    if method == "PATCH" {
        headers.push(("Content-Type", "application/merge-patch+json"));
    }
    let body = if matches!(method, "POST" | "PUT" | "PATCH") { body.to_string() } else { String::new() };
    s.http_with(method, raw, &headers, body.as_bytes())
}

/// A token made for one trial.
pub struct TrialToken {
    pub token: String,
    pub accessor: String,
    /// The ledger's last seq once it was made (cairn's `X-Vault-Index`; 0 elsewhere).
    pub seq: u64,
}

/// A token with exactly `policy` (no default policy), for one trial.
pub fn token_with(s: &Server, name: &str, policy: &str) -> Result<TrialToken> {
    root(s, "POST", &format!("sys/policies/acl/{name}"), Some(json!({"policy": policy})), &[204])?;
    let r = root(
        s,
        "POST",
        "auth/token/create",
        Some(json!({"policies": [name], "no_default_policy": true, "ttl": "30m"})),
        &[200],
    )?;
    Ok(TrialToken {
        token: field(&r, "/auth/client_token")?,
        accessor: field(&r, "/auth/accessor")?,
        seq: index_seq(&r),
    })
}

/// The seq of cairn's `X-Vault-Index` header (`v1:<ledger id>:<seq>:0:<hmac>`, base64).
fn index_seq(r: &HttpReply) -> u64 {
    r.header("x-vault-index")
        .and_then(|h| crate::shape::base64_decode(h).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.split(':').nth(2).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// What `sys/capabilities` says `token` may do on each path, as root asks it.
pub fn capabilities(s: &Server, token: &str, paths: &[&str]) -> Result<BTreeMap<String, Vec<String>>> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let r = root(s, "POST", "sys/capabilities", Some(json!({"token": token, "paths": paths})), &[200])?;
    let data = r.json()?["data"].clone();
    let mut out = BTreeMap::new();
    for p in paths {
        let caps = data[*p].as_array().with_context(|| format!("capabilities of {p}: {data}"))?;
        out.insert((*p).to_string(), caps.iter().filter_map(|c| c.as_str().map(str::to_string)).collect());
    }
    Ok(out)
}

/// Whether `caps` (one path's capabilities) allow one of `ops`.
pub fn allows(caps: &[String], ops: &[&str]) -> bool {
    !caps.iter().any(|c| c == "deny")
        && (caps.iter().any(|c| c == "root") || ops.iter().any(|op| caps.iter().any(|c| c == op)))
}

/// Fails unless every route of `tables` (table name, patterns) is bound in the world.
pub fn check_coverage(tables: &[(&str, Vec<&str>)]) -> Result<()> {
    let bound = |table: &str, pattern: &str| {
        SPECS.iter().any(|s| s.table == table && s.pattern == pattern)
            || UNAUTHENTICATED.iter().any(|(t, p)| *t == table && *p == pattern)
    };
    let missing: Vec<String> = tables
        .iter()
        .flat_map(|(table, patterns)| {
            patterns.iter().filter(|p| !bound(table, p)).map(move |p| format!("{table}: {p}"))
        })
        .collect();
    ensure!(
        missing.is_empty(),
        "routes with no binding in tests/src/acl_world.rs (bind them so they are attacked): {missing:#?}"
    );
    let stale: Vec<String> = SPECS
        .iter()
        .map(|s| (s.table, s.pattern))
        .chain(UNAUTHENTICATED.iter().copied())
        .filter(|(t, p)| !tables.iter().any(|(table, patterns)| table == t && patterns.contains(p)))
        .map(|(t, p)| format!("{t}: {p}"))
        .collect();
    if !stale.is_empty() {
        bail!("bindings of routes no table has any more: {stale:#?}");
    }
    Ok(())
}
