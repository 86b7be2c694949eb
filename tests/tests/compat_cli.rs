//! The real `bao` CLI against the server, as an operator and an application team use it:
//! operator init/unseal/seal, login, KV v2, policies, limited tokens and the token tree.
//!
//! Every expectation was observed on OpenBao 2.7.2 (`CAIRN_COMPAT_TARGET=openbao`); the
//! default target is cairn, which must give the same answers.

use anyhow::{Context, Result, ensure};
use e2e::{ConfigServer, DevServer, Server, Shape, base64_decode, redact};
use serde_json::{Value, json};

/// The body of a 403 for a valid token that the ACL denies (go-multierror formatting).
const ACL_DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";
/// A token of the right shape that the server never issued.
const UNKNOWN_TOKEN: &str = "s.AAAAAAAAAAAAAAAAAAAAAAAA";

/// What `bao` prints on stderr for an API error (`api.ResponseError`), after its own
/// `context` prefix.
fn api_error(server: &Server, context: &str, method: &str, path: &str, code: u16, errors: &[&str]) -> String {
    let mut out = if context.is_empty() { String::new() } else { format!("{context}: ") };
    out.push_str(&format!(
        "Error making API request.\n\nURL: {method} {}/v1/{path}\nCode: {code}. Errors:\n\n",
        server.addr()
    ));
    for e in errors {
        out.push_str(&format!("* {e}\n"));
    }
    out
}

/// `bao ARGS` as the server's default token; must exit 0 and print JSON.
fn json_of(server: &Server, args: &[&str]) -> Result<Value> {
    server.bao(args)?.success()?.json()
}

/// The envelope as `bao -format=json` prints it, request id redacted.
fn cli_envelope(data: Value) -> Value {
    json!({"request_id": "<uuid>", "lease_id": "", "lease_duration": 0, "renewable": false, "data": data, "warnings": null})
}

/// A `kv put`/`kv patch` answer or a `kv get` metadata block of a live version.
fn live_version(version: u64) -> Value {
    json!({"created_time": "<time>", "custom_metadata": null, "deletion_time": "", "destroyed": false, "version": version})
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    ensure!(s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()), "not hex: {s:?}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex")).collect()
}

fn strings(v: &Value) -> Result<Vec<String>> {
    v.as_array()
        .with_context(|| format!("not an array: {v}"))?
        .iter()
        .map(|s| s.as_str().map(str::to_string).with_context(|| format!("not a string: {s}")))
        .collect()
}

/// `bao status -format=json` / `operator unseal -format=json` with the build-specific
/// fields (version, dates, storage name) and the cluster identity checked for shape only.
fn seal_status(mut v: Value) -> Result<Value> {
    redact(
        &mut v,
        &[
            ("/version", Shape::NonEmptyString),
            ("/commit_date", Shape::AnyString),
            ("/build_date", Shape::AnyString),
            ("/storage_type", Shape::NonEmptyString),
        ],
    )?;
    if v.get("cluster_name").is_some() {
        redact(&mut v, &[("/cluster_name", Shape::ClusterName), ("/cluster_id", Shape::Uuid)])?;
    }
    if v["nonce"] != "" {
        redact(&mut v, &[("/nonce", Shape::Uuid)])?;
    }
    Ok(v)
}

fn expected_seal_status(initialized: bool, sealed: bool, t: u64, n: u64, progress: u64) -> Value {
    let mut v = json!({
        "type": "shamir", "initialized": initialized, "sealed": sealed, "t": t, "n": n, "progress": progress,
        "nonce": if progress > 0 { "<uuid>" } else { "" },
        "version": "<non-empty string>", "commit_date": "<string>", "migration": false, "recovery_seal": false,
        "storage_type": "<non-empty string>", "build_date": "<string>", "ha_enabled": false,
    });
    if !sealed {
        v["cluster_name"] = json!("<cluster name>");
        v["cluster_id"] = json!("<uuid>");
    }
    v
}

/// The shares and root token of `bao operator init -key-shares=3 -key-threshold=2`.
struct Init {
    keys_b64: Vec<String>,
    keys_hex: Vec<String>,
    root: String,
}

fn operator_init(server: &Server) -> Result<Init> {
    let mut init = json_of(server, &["operator", "init", "-key-shares=3", "-key-threshold=2", "-format=json"])?;
    let keys_b64 = strings(&init["unseal_keys_b64"])?;
    let keys_hex = strings(&init["unseal_keys_hex"])?;
    let root = init["root_token"].as_str().unwrap_or_default().to_string();
    ensure!(keys_b64.len() == 3 && keys_hex.len() == 3, "expected 3 shares in each form: {init:#}");
    for (b64, hex) in keys_b64.iter().zip(&keys_hex) {
        let bytes = hex_decode(hex)?;
        ensure!(bytes.len() == 33, "a share is 32 bytes plus the x coordinate, got {} bytes: {hex}", bytes.len());
        ensure!(base64_decode(b64)? == bytes, "base64 share {b64} is not the same bytes as hex share {hex}");
    }
    ensure!(keys_hex[0] != keys_hex[1] && keys_hex[1] != keys_hex[2] && keys_hex[0] != keys_hex[2], "shares repeat");
    for i in 0..3 {
        init["unseal_keys_b64"][i] = json!("<share>");
        init["unseal_keys_hex"][i] = json!("<share>");
    }
    redact(&mut init, &[("/root_token", Shape::ServiceToken)])?;
    assert_eq!(
        init,
        json!({
            "unseal_keys_b64": ["<share>", "<share>", "<share>"],
            "unseal_keys_hex": ["<share>", "<share>", "<share>"],
            "unseal_shares": 3, "unseal_threshold": 2,
            "recovery_keys_b64": null, "recovery_keys_hex": null, "recovery_keys_shares": 0, "recovery_keys_threshold": 0,
            "root_token": "<service token>",
        })
    );
    Ok(Init { keys_b64, keys_hex, root })
}

#[test]
fn operator_init_gives_three_keys_and_two_of_them_unseal() -> Result<()> {
    let s = ConfigServer::start()?;

    // `bao status` exits 2 while sealed.
    let before = s.bao(&["status", "-format=json"])?.failure(2)?.json()?;
    assert_eq!(seal_status(before)?, expected_seal_status(false, true, 0, 0, 0));

    let init = operator_init(&s)?;
    let after_init = s.bao(&["status", "-format=json"])?.failure(2)?.json()?;
    assert_eq!(seal_status(after_init)?, expected_seal_status(true, true, 2, 3, 0));

    // First share: progress 1 of 2, and a nonce for this unseal attempt.
    let first = json_of(&s, &["operator", "unseal", "-format=json", &init.keys_b64[0]])?;
    let nonce = first["nonce"].clone();
    assert_eq!(seal_status(first)?, expected_seal_status(true, true, 2, 3, 1));

    // The same share again, hex this time, does not count twice.
    let again = json_of(&s, &["operator", "unseal", "-format=json", &init.keys_hex[0]])?;
    assert_eq!((&again["sealed"], &again["progress"], &again["nonce"]), (&json!(true), &json!(1), &nonce));

    // A second share unseals: progress back to 0, no nonce, a cluster identity.
    let second = json_of(&s, &["operator", "unseal", "-format=json", &init.keys_hex[1]])?;
    assert_eq!(seal_status(second)?, expected_seal_status(true, false, 2, 3, 0));
    let status = s.bao(&["status", "-format=json"])?.success()?.json()?;
    assert_eq!(seal_status(status)?, expected_seal_status(true, false, 2, 3, 0));

    // The init root token: an orphan root token that never expires, path auth/token/root.
    let mut me = s.bao_as(&init.root, &["token", "lookup", "-format=json"])?.success()?.json()?;
    assert_eq!(me["data"]["id"], json!(init.root));
    redact(
        &mut me,
        &[
            ("/request_id", Shape::Uuid),
            ("/data/accessor", Shape::Accessor),
            ("/data/creation_time", Shape::UnixSeconds),
            ("/data/id", Shape::ServiceToken),
        ],
    )?;
    assert_eq!(
        me,
        cli_envelope(json!({
            "accessor": "<accessor>", "creation_time": "<unix seconds>", "creation_ttl": 0, "display_name": "root",
            "entity_id": "", "expire_time": null, "explicit_max_ttl": 0, "id": "<service token>", "meta": null,
            "num_uses": 0, "orphan": true, "path": "auth/token/root", "policies": ["root"], "ttl": 0, "type": "service",
        }))
    );

    // A second init is refused.
    let twice = s.bao(&["operator", "init", "-key-shares=3", "-key-threshold=2"])?.failure(2)?;
    assert_eq!(
        twice.stderr,
        api_error(&s, "Error initializing", "PUT", "sys/init", 400, &["Vault is already initialized"])
    );
    Ok(())
}

#[test]
fn operator_seal_answers_503_vault_is_sealed_until_unsealed_again() -> Result<()> {
    let s = ConfigServer::start()?;
    let init = operator_init(&s)?;
    for key in &init.keys_b64[..2] {
        s.bao(&["operator", "unseal", key])?.success()?;
    }
    let root = init.root.as_str();
    let policy = "path \"secret/data/kept/*\" {\n  capabilities = [\"read\"]\n}\n";
    let file = s.write_file("kept.hcl", policy)?;
    s.bao_as(root, &["policy", "write", "kept", file.to_str().context("utf-8 path")?])?.success()?;

    // Sealing needs sudo on sys/seal.
    let limited = s.bao_as(root, &["token", "create", "-policy=kept", "-field=token"])?.success()?.stdout;
    let denied = s.bao_as(limited.trim(), &["operator", "seal"])?.failure(2)?;
    assert_eq!(denied.stderr, api_error(&s, "Error sealing", "PUT", "sys/seal", 403, &[ACL_DENIED]));

    let sealed = s.bao_as(root, &["operator", "seal"])?.success()?;
    assert_eq!(sealed.stdout, "Success! Vault is sealed.\n");
    let status = s.bao(&["status", "-format=json"])?.failure(2)?.json()?;
    assert_eq!(seal_status(status)?, expected_seal_status(true, true, 2, 3, 0));

    // Everything but the bootstrap endpoints answers 503, with a token or without.
    let read = s.bao_as(root, &["policy", "read", "kept"])?.failure(2)?;
    assert_eq!(
        read.stderr,
        api_error(&s, "Error reading policy named kept", "GET", "sys/policies/acl/kept", 503, &["Vault is sealed"])
    );
    let lookup = s.bao_as(root, &["token", "lookup"])?.failure(2)?;
    assert_eq!(
        lookup.stderr,
        api_error(&s, "Error looking up token", "GET", "auth/token/lookup-self", 503, &["Vault is sealed"])
    );
    for token in [Some(root), None] {
        let reply = s.http("GET", "/v1/sys/policies/acl/kept", token, None)?;
        assert_eq!((reply.status, reply.body.as_str()), (503, "{\"errors\":[\"Vault is sealed\"]}\n"));
    }
    let health = s.http("GET", "/v1/sys/health", None, None)?;
    assert_eq!(health.status, 503);
    let health = health.json()?;
    assert_eq!(
        (&health["initialized"], &health["sealed"], &health["standby"]),
        (&json!(true), &json!(true), &json!(true))
    );

    // Sealing a sealed server is fine.
    assert_eq!(s.bao_as(root, &["operator", "seal"])?.success()?.stdout, "Success! Vault is sealed.\n");

    // Two other shares unseal it again, and the policy written before is still there.
    let progress = json_of(&s, &["operator", "unseal", "-format=json", &init.keys_b64[2]])?;
    assert_eq!((&progress["sealed"], &progress["progress"]), (&json!(true), &json!(1)));
    let open = json_of(&s, &["operator", "unseal", "-format=json", &init.keys_hex[1]])?;
    assert_eq!(seal_status(open)?, expected_seal_status(true, false, 2, 3, 0));
    assert_eq!(s.bao_as(root, &["policy", "read", "kept"])?.success()?.stdout, policy);
    Ok(())
}

#[test]
fn login_stores_the_token_and_later_commands_use_it() -> Result<()> {
    let s = DevServer::start()?;
    let helper = s.home().join(".vault-token");

    // Without a token, the server says so.
    let anonymous = s.bao_without_token(&["token", "lookup"])?.failure(2)?;
    assert_eq!(
        anonymous.stderr,
        api_error(&s, "Error looking up token", "GET", "auth/token/lookup-self", 403, &["permission denied"])
    );

    let login = s.bao_without_token(&["login", "root"])?.success()?;
    assert!(login.stdout.starts_with("Success! You are now authenticated."), "{login}");
    assert!(login.stdout.contains("\ntoken                root\n"), "{login}");
    assert!(login.stdout.contains("\ntoken_policies       [\"root\"]\n"), "{login}");
    assert_eq!(std::fs::read_to_string(&helper)?, "root");
    let me = s.bao_without_token(&["token", "lookup", "-format=json"])?.success()?.json()?;
    assert_eq!((&me["data"]["id"], &me["data"]["policies"]), (&json!("root"), &json!(["root"])));

    // Log in as a narrower token: the CLI shows its auth block and keeps it.
    let token = s.bao(&["token", "create", "-policy=default", "-ttl=1h", "-field=token"])?.success()?.stdout;
    let mut auth = s.bao_without_token(&["login", "-format=json", &token])?.success()?.json()?;
    assert_eq!(auth["auth"]["client_token"], json!(token));
    redact(
        &mut auth,
        &[
            ("/auth/client_token", Shape::ServiceToken),
            ("/auth/accessor", Shape::Accessor),
            ("/auth/lease_duration", Shape::Within(3590, 3600)),
        ],
    )?;
    assert_eq!(
        auth,
        json!({
            "request_id": "", "lease_id": "", "lease_duration": 0, "renewable": false, "data": null, "warnings": null,
            "auth": {
                "client_token": "<service token>", "accessor": "<accessor>", "policies": ["default"],
                "token_policies": ["default"], "identity_policies": null, "metadata": null, "orphan": false,
                "entity_id": "", "lease_duration": "<integer in 3590..=3600>", "renewable": true, "mfa_requirement": null,
            },
        })
    );
    assert_eq!(std::fs::read_to_string(&helper)?, token);
    let me = s.bao_without_token(&["token", "lookup", "-format=json"])?.success()?.json()?;
    assert_eq!((&me["data"]["id"], &me["data"]["policies"]), (&json!(token), &json!(["default"])));

    // A token the server does not know is refused, and the stored one is kept.
    let bad = s.bao_without_token(&["login", UNKNOWN_TOKEN])?.failure(2)?;
    assert_eq!(
        bad.stderr,
        api_error(
            &s,
            "Error authenticating: error looking up token",
            "GET",
            "auth/token/lookup-self",
            403,
            &["permission denied"]
        )
    );
    assert_eq!(std::fs::read_to_string(&helper)?, token);
    Ok(())
}

#[test]
fn kv_put_patch_and_get_version_return_each_version_data() -> Result<()> {
    let s = DevServer::start()?;

    let mut put = json_of(&s, &["kv", "put", "-format=json", "secret/app", "user=alice", "pass=s3cret"])?;
    redact(&mut put, &[("/request_id", Shape::Uuid), ("/data/created_time", Shape::Time)])?;
    assert_eq!(put, cli_envelope(live_version(1)));
    let put2 = json_of(&s, &["kv", "put", "-format=json", "secret/app", "user=bob", "pass=hunter2"])?;
    assert_eq!(put2["data"]["version"], 2);
    let mut patch = json_of(&s, &["kv", "patch", "-format=json", "secret/app", "pass=patched"])?;
    redact(&mut patch, &[("/request_id", Shape::Uuid), ("/data/created_time", Shape::Time)])?;
    assert_eq!(patch, cli_envelope(live_version(3)));

    // The latest version carries the patch merged into version 2.
    let mut latest = json_of(&s, &["kv", "get", "-format=json", "secret/app"])?;
    redact(&mut latest, &[("/request_id", Shape::Uuid), ("/data/metadata/created_time", Shape::Time)])?;
    assert_eq!(latest, cli_envelope(json!({"data": {"pass": "patched", "user": "bob"}, "metadata": live_version(3)})));

    // Older versions stay readable with -version.
    let mut v1 = json_of(&s, &["kv", "get", "-format=json", "-version=1", "secret/app"])?;
    redact(&mut v1, &[("/request_id", Shape::Uuid), ("/data/metadata/created_time", Shape::Time)])?;
    assert_eq!(v1, cli_envelope(json!({"data": {"pass": "s3cret", "user": "alice"}, "metadata": live_version(1)})));
    assert_eq!(s.bao(&["kv", "get", "-version=2", "-field=pass", "secret/app"])?.success()?.stdout, "hunter2");
    assert_eq!(s.bao(&["kv", "get", "-field=pass", "secret/app"])?.success()?.stdout, "patched");

    // Check-and-set.
    let stale = s.bao(&["kv", "put", "-cas=0", "secret/app", "user=mallory"])?.failure(2)?;
    assert_eq!(
        stale.stderr,
        api_error(
            &s,
            "Error writing data to secret/data/app",
            "PUT",
            "secret/data/app",
            400,
            &["check-and-set parameter did not match the current version"]
        )
    );
    let cas = json_of(&s, &["kv", "put", "-format=json", "-cas=3", "secret/app", "user=carol"])?;
    assert_eq!(cas["data"]["version"], 4);
    let v4 = json_of(&s, &["kv", "get", "-format=json", "secret/app"])?;
    assert_eq!(v4["data"]["data"], json!({"user": "carol"}), "a put replaces the whole secret");

    // What does not exist.
    let missing_version = s.bao(&["kv", "get", "-version=99", "secret/app"])?.failure(2)?;
    assert_eq!(missing_version.stderr, "No value found at secret/data/app\n");
    let missing = s.bao(&["kv", "get", "secret/nowhere"])?.failure(2)?;
    assert_eq!(missing.stderr, "No value found at secret/data/nowhere\n");
    // A PATCH of a missing secret is a 404 with an empty body.
    let patch_missing = s.bao(&["kv", "patch", "secret/nowhere", "a=1"])?.failure(2)?;
    assert_eq!(
        patch_missing.stderr,
        format!(
            "Error writing data to secret/data/nowhere: Error making API request.\n\nURL: PATCH {}/v1/secret/data/nowhere\nCode: 404. Raw Message:\n\n\n",
            s.addr()
        )
    );
    Ok(())
}

#[test]
fn kv_metadata_and_list_show_versions_and_children() -> Result<()> {
    let s = DevServer::start()?;
    for args in [
        ["kv", "put", "secret/app", "v=1"],
        ["kv", "put", "secret/app", "v=2"],
        ["kv", "put", "secret/dir/child", "v=1"],
        ["kv", "put", "secret/dir/sub/leaf", "v=1"],
    ] {
        s.bao(&args)?.success()?;
    }

    let mut md = json_of(&s, &["kv", "metadata", "get", "-format=json", "secret/app"])?;
    let d = &md["data"];
    assert_eq!(d["created_time"], d["versions"]["1"]["created_time"], "created_time is version 1's");
    assert_eq!(d["updated_time"], d["versions"]["2"]["created_time"], "updated_time is the last write's");
    redact(
        &mut md,
        &[
            ("/request_id", Shape::Uuid),
            ("/data/created_time", Shape::Time),
            ("/data/updated_time", Shape::Time),
            ("/data/versions/1/created_time", Shape::Time),
            ("/data/versions/2/created_time", Shape::Time),
        ],
    )?;
    let live = json!({"created_time": "<time>", "deletion_time": "", "destroyed": false});
    assert_eq!(
        md,
        cli_envelope(json!({
            "cas_required": false, "created_time": "<time>", "current_metadata_version": 0, "current_version": 2,
            "custom_metadata": null, "delete_version_after": "0s", "max_versions": 0, "metadata_cas_required": false,
            "oldest_version": 0, "updated_time": "<time>", "versions": {"1": live, "2": live},
        }))
    );

    // Metadata writes: max versions and custom metadata, applied from the next write on.
    let put = s.bao(&["kv", "metadata", "put", "-max-versions=2", "-custom-metadata=owner=team-a", "secret/app"])?;
    assert_eq!(put.success()?.stdout, "Success! Data written to: secret/metadata/app\n");
    let v3 = json_of(&s, &["kv", "put", "-format=json", "secret/app", "v=3"])?;
    assert_eq!((&v3["data"]["version"], &v3["data"]["custom_metadata"]), (&json!(3), &json!({"owner": "team-a"})));
    let md = json_of(&s, &["kv", "metadata", "get", "-format=json", "secret/app"])?;
    let d = &md["data"];
    assert_eq!(
        (&d["current_version"], &d["oldest_version"], &d["max_versions"], &d["current_metadata_version"]),
        (&json!(3), &json!(2), &json!(2), &json!(1))
    );
    assert_eq!(d["custom_metadata"], json!({"owner": "team-a"}));
    let kept: Vec<&String> = d["versions"].as_object().context("versions")?.keys().collect();
    assert_eq!(kept, ["2", "3"], "version 1 was pruned by max_versions=2");
    let pruned = s.bao(&["kv", "get", "-version=1", "secret/app"])?.failure(2)?;
    assert_eq!(pruned.stderr, "No value found at secret/data/app\n");

    // Listing: immediate children, sorted, folders with a trailing slash.
    assert_eq!(json_of(&s, &["kv", "list", "-format=json", "secret/"])?, json!(["app", "dir/"]));
    assert_eq!(json_of(&s, &["kv", "list", "-format=json", "secret/dir"])?, json!(["child", "sub/"]));
    let empty = s.bao(&["kv", "list", "secret/nothing"])?.failure(2)?;
    assert_eq!(empty.stderr, "No value found at secret/metadata/nothing\n");

    // Deleting the metadata deletes the secret and its listing entry.
    let gone = s.bao(&["kv", "metadata", "delete", "secret/dir/child"])?.success()?;
    assert_eq!(gone.stdout, "Success! Data deleted (if it existed) at: secret/metadata/dir/child\n");
    assert_eq!(json_of(&s, &["kv", "list", "-format=json", "secret/dir"])?, json!(["sub/"]));
    let md_gone = s.bao(&["kv", "metadata", "get", "secret/dir/child"])?.failure(2)?;
    assert_eq!(md_gone.stderr, "No value found at secret/metadata/dir/child\n");
    let data_gone = s.bao(&["kv", "get", "secret/dir/child"])?.failure(2)?;
    assert_eq!(data_gone.stderr, "No value found at secret/data/dir/child\n");
    Ok(())
}

#[test]
fn kv_delete_undelete_destroy_and_rollback() -> Result<()> {
    let s = DevServer::start()?;
    for args in [
        ["kv", "put", "secret/app", "user=alice", "pass=one"],
        ["kv", "put", "secret/app", "user=bob", "pass=two"],
        ["kv", "put", "secret/app", "user=carol", "pass=three"],
    ] {
        s.bao(&args)?.success()?;
    }

    // Soft delete of the latest version: `kv get` still exits 0 and shows the metadata.
    let del = s.bao(&["kv", "delete", "secret/app"])?.success()?;
    assert_eq!(del.stdout, "Success! Data deleted (if it existed) at: secret/data/app\n");
    let mut deleted = json_of(&s, &["kv", "get", "-format=json", "secret/app"])?;
    redact(
        &mut deleted,
        &[
            ("/request_id", Shape::Uuid),
            ("/data/metadata/created_time", Shape::Time),
            ("/data/metadata/deletion_time", Shape::Time),
        ],
    )?;
    let deleted_meta = json!({"created_time": "<time>", "custom_metadata": null, "deletion_time": "<time>", "destroyed": false, "version": 3});
    assert_eq!(deleted, cli_envelope(json!({"data": null, "metadata": deleted_meta})));

    let undel = s.bao(&["kv", "undelete", "-versions=3", "secret/app"])?.success()?;
    assert_eq!(undel.stdout, "Success! Data written to: secret/undelete/app\n");
    let back = json_of(&s, &["kv", "get", "-format=json", "secret/app"])?;
    assert_eq!(back["data"]["data"], json!({"user": "carol", "pass": "three"}));
    assert_eq!(back["data"]["metadata"]["deletion_time"], "");

    // Destroy version 1: reading it shows `destroyed: true` and no data.
    let destroy = s.bao(&["kv", "destroy", "-versions=1", "secret/app"])?.success()?;
    assert_eq!(destroy.stdout, "Success! Data written to: secret/destroy/app\n");
    let mut v1 = json_of(&s, &["kv", "get", "-format=json", "-version=1", "secret/app"])?;
    redact(&mut v1, &[("/request_id", Shape::Uuid), ("/data/metadata/created_time", Shape::Time)])?;
    let destroyed_meta = json!({"created_time": "<time>", "custom_metadata": null, "deletion_time": "", "destroyed": true, "version": 1});
    assert_eq!(v1, cli_envelope(json!({"data": null, "metadata": destroyed_meta})));
    let text = s.bao(&["kv", "get", "-version=1", "secret/app"])?.success()?;
    assert!(text.stdout.contains("\ndestroyed          true\n"), "{text}");
    assert!(!text.stdout.contains("== Data =="), "a destroyed version has no data section\n{text}");
    let md = json_of(&s, &["kv", "metadata", "get", "-format=json", "secret/app"])?;
    assert_eq!(md["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(md["data"]["versions"]["1"]["deletion_time"], "");

    // Rollback to version 2 writes version 4 with version 2's data.
    let rolled = json_of(&s, &["kv", "rollback", "-format=json", "-version=2", "secret/app"])?;
    assert_eq!(rolled["data"]["version"], 4);
    let v2 = json_of(&s, &["kv", "get", "-format=json", "-version=2", "secret/app"])?;
    let v4 = json_of(&s, &["kv", "get", "-format=json", "secret/app"])?;
    assert_eq!(v4["data"]["data"], json!({"user": "bob", "pass": "two"}));
    assert_eq!(v4["data"]["data"], v2["data"]["data"]);
    assert_eq!(v4["data"]["metadata"]["version"], 4);

    // No rollback to a destroyed or deleted version.
    let to_destroyed = s.bao(&["kv", "rollback", "-version=1", "secret/app"])?.failure(2)?;
    assert_eq!(to_destroyed.stderr, "Cannot roll back to a version that has been destroyed\n");
    let del2 = s.bao(&["kv", "delete", "-versions=2", "secret/app"])?.success()?;
    assert_eq!(del2.stdout, "Success! Data deleted (if it existed) at: secret/data/app\n");
    let to_deleted = s.bao(&["kv", "rollback", "-version=2", "secret/app"])?.failure(2)?;
    assert_eq!(to_deleted.stderr, "Cannot roll back to a version that has been deleted\n");
    Ok(())
}

#[test]
fn policy_write_read_list_round_trip() -> Result<()> {
    let s = DevServer::start()?;
    assert_eq!(json_of(&s, &["policy", "list", "-format=json"])?, json!(["default", "root"]));

    let text =
        "# team A reads its secrets\npath \"secret/data/team-a/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n";
    let file = s.write_file("team-a.hcl", text)?;
    let file = file.to_str().context("utf-8 path")?;
    let write = s.bao(&["policy", "write", "team-a", file])?.success()?;
    assert_eq!(write.stdout, "Success! Uploaded policy: team-a\n");

    // Read back verbatim, comments included.
    assert_eq!(s.bao(&["policy", "read", "team-a"])?.success()?.stdout, text);
    assert_eq!(json_of(&s, &["policy", "read", "-format=json", "team-a"])?, json!({"policy": text}));

    // Names are lower-cased (by the CLI already, and by the server for other clients);
    // the list is sorted with root last.
    s.bao(&["policy", "write", "app-read", file])?.success()?;
    assert_eq!(s.bao(&["policy", "write", "Upper", file])?.success()?.stdout, "Success! Uploaded policy: upper\n");
    let body = json!({"policy": text}).to_string();
    let raw = s.http("PUT", "/v1/sys/policies/acl/MixedCase", Some("root"), Some(&body))?;
    assert_eq!((raw.status, raw.body.as_str()), (204, ""));
    assert_eq!(
        json_of(&s, &["policy", "list", "-format=json"])?,
        json!(["app-read", "default", "mixedcase", "team-a", "upper", "root"])
    );

    // An update replaces the text.
    let v2 = format!("{text}path \"secret/metadata/team-a/*\" {{\n  capabilities = [\"list\"]\n}}\n");
    let file2 = s.write_file("team-a-v2.hcl", &v2)?;
    s.bao(&["policy", "write", "team-a", file2.to_str().context("utf-8 path")?])?.success()?;
    assert_eq!(s.bao(&["policy", "read", "team-a"])?.success()?.stdout, v2);

    let missing = s.bao(&["policy", "read", "nope"])?.failure(2)?;
    assert_eq!(missing.stderr, "No policy named: nope\n");
    let bad = s.write_file("bad.hcl", "path \"secret/*\" {\n  capabilities = [\"reed\"]\n}\n")?;
    let rejected = s.bao(&["policy", "write", "bad", bad.to_str().context("utf-8 path")?])?.failure(2)?;
    assert_eq!(
        rejected.stderr,
        api_error(
            &s,
            "Error uploading policy",
            "PUT",
            "sys/policies/acl/bad",
            400,
            &["failed to parse policy: path \"secret/*\": path \"secret/*\": invalid capability \"reed\""]
        )
    );
    Ok(())
}

#[test]
fn limited_token_reads_its_own_path_and_is_denied_elsewhere() -> Result<()> {
    let s = DevServer::start()?;
    let policy = "path \"secret/data/team-a/*\" {\n  capabilities = [\"read\"]\n}\npath \"secret/metadata/team-a/*\" {\n  capabilities = [\"list\"]\n}\n";
    let file = s.write_file("team-a.hcl", policy)?;
    s.bao(&["policy", "write", "team-a", file.to_str().context("utf-8 path")?])?.success()?;
    s.bao(&["kv", "put", "secret/team-a/db", "password=hunter2"])?.success()?;
    s.bao(&["kv", "put", "secret/team-b/db", "password=other"])?.success()?;
    let token = s.bao(&["token", "create", "-policy=team-a", "-field=token"])?.success()?.stdout;
    let t = token.as_str();

    // Allowed: its own secrets, its own listing, its own token.
    let own = s.bao_as(t, &["kv", "get", "-format=json", "secret/team-a/db"])?.success()?.json()?;
    assert_eq!(own["data"]["data"], json!({"password": "hunter2"}));
    assert_eq!(s.bao_as(t, &["kv", "get", "-field=password", "secret/team-a/db"])?.success()?.stdout, "hunter2");
    assert_eq!(s.bao_as(t, &["kv", "list", "-format=json", "secret/team-a"])?.success()?.json()?, json!(["db"]));
    let me = s.bao_as(t, &["token", "lookup", "-format=json"])?.success()?.json()?;
    assert_eq!(me["data"]["policies"], json!(["default", "team-a"]));

    // Denied: another team's secret, writing, listing the mount, reading policies.
    let other = s.bao_as(t, &["kv", "get", "secret/team-b/db"])?.failure(2)?;
    assert_eq!(
        other.stderr,
        api_error(&s, "Error reading secret/data/team-b/db", "GET", "secret/data/team-b/db", 403, &[ACL_DENIED])
    );
    let write = s.bao_as(t, &["kv", "put", "secret/team-a/db", "password=x"])?.failure(2)?;
    assert_eq!(
        write.stderr,
        api_error(
            &s,
            "Error writing data to secret/data/team-a/db",
            "PUT",
            "secret/data/team-a/db",
            403,
            &[ACL_DENIED]
        )
    );
    let list = s.bao_as(t, &["kv", "list", "secret/"])?.failure(2)?;
    assert_eq!(
        list.stderr,
        api_error(&s, "Error listing secret/metadata", "GET", "secret/metadata?list=true", 403, &[ACL_DENIED])
    );
    let policies = s.bao_as(t, &["policy", "list"])?.failure(2)?;
    assert_eq!(
        policies.stderr,
        api_error(&s, "Error listing policies", "GET", "sys/policies/acl?list=true", 403, &[ACL_DENIED])
    );
    let raw = s.http("GET", "/v1/secret/data/team-b/db", Some(t), None)?;
    assert_eq!(
        (raw.status, raw.body.as_str()),
        (403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}\n")
    );
    // The other team's secret is untouched.
    assert_eq!(s.bao(&["kv", "get", "-field=password", "secret/team-b/db"])?.success()?.stdout, "other");

    // A token the server never issued is refused before any ACL (plain "permission denied").
    let unknown = s.bao_as(UNKNOWN_TOKEN, &["kv", "get", "secret/team-a/db"])?.failure(2)?;
    assert_eq!(
        unknown.stderr,
        api_error(&s, "", "GET", "sys/internal/ui/mounts/secret/team-a/db", 403, &["permission denied"])
    );
    let raw = s.http("GET", "/v1/secret/data/team-a/db", Some(UNKNOWN_TOKEN), None)?;
    assert_eq!((raw.status, raw.body.as_str()), (403, "{\"errors\":[\"permission denied\"]}\n"));
    Ok(())
}

#[test]
fn token_create_lookup_renew_and_revoke_cascades_to_children() -> Result<()> {
    let s = DevServer::start()?;
    let maker =
        s.write_file("maker.hcl", "path \"auth/token/create\" {\n  capabilities = [\"create\", \"update\"]\n}\n")?;
    s.bao(&["policy", "write", "token-maker", maker.to_str().context("utf-8 path")?])?.success()?;

    let mut created = json_of(&s, &["token", "create", "-format=json", "-policy=token-maker", "-ttl=1h"])?;
    let parent = created["auth"]["client_token"].as_str().unwrap_or_default().to_string();
    let accessor = created["auth"]["accessor"].as_str().unwrap_or_default().to_string();
    redact(
        &mut created,
        &[
            ("/request_id", Shape::Uuid),
            ("/auth/client_token", Shape::ServiceToken),
            ("/auth/accessor", Shape::Accessor),
        ],
    )?;
    assert_eq!(
        created,
        json!({
            "request_id": "<uuid>", "lease_id": "", "lease_duration": 0, "renewable": false, "data": null, "warnings": null,
            "auth": {
                "client_token": "<service token>", "accessor": "<accessor>", "policies": ["default", "token-maker"],
                "token_policies": ["default", "token-maker"], "identity_policies": null, "metadata": null,
                "orphan": false, "entity_id": "", "lease_duration": 3600, "renewable": true, "mfa_requirement": null,
            },
        })
    );

    // Lookup by token and by accessor.
    let mut looked = json_of(&s, &["token", "lookup", "-format=json", &parent])?;
    assert_eq!((&looked["data"]["id"], &looked["data"]["accessor"]), (&json!(parent), &json!(accessor)));
    redact(
        &mut looked,
        &[
            ("/request_id", Shape::Uuid),
            ("/data/accessor", Shape::Accessor),
            ("/data/creation_time", Shape::UnixSeconds),
            ("/data/expire_time", Shape::Time),
            ("/data/id", Shape::ServiceToken),
            ("/data/issue_time", Shape::Time),
            ("/data/ttl", Shape::Within(3590, 3600)),
        ],
    )?;
    let parent_data = json!({
        "accessor": "<accessor>", "creation_time": "<unix seconds>", "creation_ttl": 3600, "display_name": "token",
        "entity_id": "", "expire_time": "<time>", "explicit_max_ttl": 0, "id": "<service token>",
        "issue_time": "<time>", "meta": null, "num_uses": 0, "orphan": false, "path": "auth/token/create",
        "policies": ["default", "token-maker"], "renewable": true, "ttl": "<integer in 3590..=3600>", "type": "service",
    });
    assert_eq!(looked, cli_envelope(parent_data.clone()));
    let by_accessor = json_of(&s, &["token", "lookup", "-format=json", "-accessor", &accessor])?;
    assert_eq!((&by_accessor["data"]["id"], &by_accessor["data"]["accessor"]), (&json!(""), &json!(accessor)));

    // Renew: the increment counts from now; a renew without one reuses the last TTL.
    let renewed = json_of(&s, &["token", "renew", "-format=json", "-increment=2h", &parent])?;
    assert_eq!((&renewed["auth"]["client_token"], &renewed["auth"]["lease_duration"]), (&json!(parent), &json!(7200)));
    let again = json_of(&s, &["token", "renew", "-format=json", &parent])?;
    assert_eq!(again["auth"]["lease_duration"], 7200);
    let mut after = json_of(&s, &["token", "lookup", "-format=json", &parent])?;
    redact(
        &mut after,
        &[
            ("/request_id", Shape::Uuid),
            ("/data/accessor", Shape::Accessor),
            ("/data/creation_time", Shape::UnixSeconds),
            ("/data/expire_time", Shape::Time),
            ("/data/id", Shape::ServiceToken),
            ("/data/issue_time", Shape::Time),
            ("/data/last_renewal", Shape::Time),
            ("/data/last_renewal_time", Shape::UnixSeconds),
            ("/data/ttl", Shape::Within(7190, 7200)),
        ],
    )?;
    let mut renewed_data = parent_data;
    renewed_data["ttl"] = json!("<integer in 7190..=7200>");
    renewed_data["last_renewal"] = json!("<time>");
    renewed_data["last_renewal_time"] = json!("<unix seconds>");
    assert_eq!(after, cli_envelope(renewed_data), "creation_ttl stays 3600; the renewal is recorded");

    // A tree: parent -> child -> grandchild, and an unrelated sibling.
    let create = |as_token: &str, args: &[&str]| -> Result<String> {
        let mut all = vec!["token", "create", "-field=token"];
        all.extend_from_slice(args);
        Ok(s.bao_as(as_token, &all)?.success()?.stdout)
    };
    let child = create(&parent, &["-policy=token-maker", "-ttl=30m"])?;
    let grandchild = create(&child, &["-policy=default", "-ttl=10m"])?;
    let sibling = create("root", &["-policy=default"])?;
    let child_data = json_of(&s, &["token", "lookup", "-format=json", &child])?;
    assert_eq!(
        (&child_data["data"]["orphan"], &child_data["data"]["creation_ttl"], &child_data["data"]["policies"]),
        (&json!(false), &json!(1800), &json!(["default", "token-maker"]))
    );

    // Revoking the parent revokes its whole subtree.
    assert_eq!(s.bao(&["token", "revoke", &parent])?.success()?.stdout, "Success! Revoked token (if it existed)\n");
    for gone in [&parent, &child, &grandchild] {
        let by_root = s.bao(&["token", "lookup", gone])?.failure(2)?;
        assert_eq!(
            by_root.stderr,
            api_error(&s, "Error looking up token", "POST", "auth/token/lookup", 403, &["bad token"])
        );
        let by_itself = s.bao_as(gone, &["token", "lookup"])?.failure(2)?;
        assert_eq!(
            by_itself.stderr,
            api_error(&s, "Error looking up token", "GET", "auth/token/lookup-self", 403, &["permission denied"])
        );
    }
    let survivor = json_of(&s, &["token", "lookup", "-format=json", &sibling])?;
    assert_eq!(survivor["data"]["id"], json!(sibling));

    let renew_gone = s.bao(&["token", "renew", &parent])?.failure(2)?;
    assert_eq!(
        renew_gone.stderr,
        api_error(&s, "Error renewing token", "PUT", "auth/token/renew", 400, &["token not found"])
    );
    // Revoking again is not an error.
    assert_eq!(s.bao(&["token", "revoke", &parent])?.success()?.stdout, "Success! Revoked token (if it existed)\n");
    Ok(())
}
