//! Forensics as an incident responder reads it: `cairn ledger query` rows name what each
//! event acted on (the tokens created by logins and revoked, the KV versions written,
//! deleted and destroyed, what an erasure erased), carry the event hash the signed tree
//! proves, filter by kind, print JSON lines with RFC 3339 times, and say who made a
//! request with a revoked or an expired token — the same rows offline and online.
//! `cairn replay who-can` lists the logins that could get a granting token (userpass
//! users, AppRole roles), entities by name and alias, and groups, in a stable order.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use e2e::{DevServer, Options, Server, Target, cairn, random_alnum, stdout};
use serde_json::{Value, json};

fn cairn_dev() -> Result<DevServer> {
    DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })
}

/// `cairn ARGS`, which must succeed; its stdout.
fn run(args: &[&str]) -> Result<String> {
    let out = cairn(args)?;
    ensure!(
        out.status.success(),
        "cairn {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout(&out))
}

/// `cairn ARGS --format jsonl`: one JSON object per line, every one parsed.
fn run_jsonl(args: &[&str]) -> Result<Vec<Value>> {
    let mut all = args.to_vec();
    all.extend(["--format", "jsonl"]);
    let text = run(&all)?;
    text.lines().map(|line| serde_json::from_str(line).with_context(|| format!("not a JSON object: {line}"))).collect()
}

fn call(s: &Server, token: &str, method: &str, path: &str, body: Value) -> Result<Value> {
    let body = if body.is_null() { None } else { Some(body.to_string()) };
    let token = if token.is_empty() { None } else { Some(token) };
    let reply = s.http(method, &format!("/v1/{path}"), token, body.as_deref())?;
    ensure!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    if reply.body.trim().is_empty() { Ok(Value::Null) } else { reply.json() }
}

fn accessor(reply: &Value) -> Result<String> {
    reply["auth"]["accessor"].as_str().map(str::to_owned).with_context(|| format!("no accessor in {reply}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("not UTF-8: {}", p.display()))
}

/// Every time in a row is an RFC 3339 string (no nanosecond integer jq would round).
fn check_times(rows: &[Value]) -> Result<()> {
    for r in rows {
        let t = text(r, "time");
        ensure!(replay::time::parse_rfc3339(t).is_some(), "time {t:?} is not RFC 3339: {r}");
        ensure!(r["hash"].as_str().is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())), "{r}");
    }
    Ok(())
}

#[test]
fn query_rows_name_tokens_versions_erasures_and_dead_tokens_online_and_offline() -> Result<()> {
    let s = cairn_dev()?;
    let root = "root";
    let password = format!("pw-{}", random_alnum(20)?);
    let values: Vec<String> = (1..=3).map(|v| format!("v{v}-{}", random_alnum(20).unwrap_or_default())).collect();
    call(
        &s,
        root,
        "PUT",
        "sys/policies/acl/reader",
        json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"}),
    )?;

    // Tokens: one made directly, one by a userpass login, one by an AppRole login.
    let direct = call(&s, root, "POST", "auth/token/create", json!({"policies": ["reader"]}))?;
    let (direct_token, direct_accessor) = (text(&direct["auth"], "client_token").to_owned(), accessor(&direct)?);
    call(&s, root, "POST", "sys/auth/userpass", json!({"type": "userpass"}))?;
    call(&s, root, "POST", "auth/userpass/users/alice", json!({"password": password, "token_policies": ["reader"]}))?;
    let alice = call(&s, "", "POST", "auth/userpass/login/alice", json!({"password": password}))?;
    let alice_accessor = accessor(&alice)?;
    call(&s, root, "POST", "sys/auth/approle", json!({"type": "approle"}))?;
    call(&s, root, "POST", "auth/approle/role/web", json!({"token_policies": ["reader"]}))?;
    let role_id =
        text(&call(&s, root, "GET", "auth/approle/role/web/role-id", Value::Null)?["data"], "role_id").to_owned();
    let secret_id =
        text(&call(&s, root, "POST", "auth/approle/role/web/secret-id", Value::Null)?["data"], "secret_id").to_owned();
    let web = call(&s, "", "POST", "auth/approle/login", json!({"role_id": role_id, "secret_id": secret_id}))?;
    let web_accessor = accessor(&web)?;

    // Three versions of a secret; version 2 deleted, version 1 destroyed.
    for v in &values {
        call(&s, root, "POST", "secret/data/app/db", json!({"data": {"password": v}}))?;
    }
    call(&s, root, "POST", "secret/delete/app/db", json!({"versions": [2]}))?;
    call(&s, root, "POST", "secret/destroy/app/db", json!({"versions": [1]}))?;

    // The direct token is revoked, then used; a short-lived one is used after it expired.
    call(&s, root, "POST", "auth/token/revoke-accessor", json!({"accessor": direct_accessor}))?;
    let refused = s.http("GET", "/v1/secret/data/app/db", Some(&direct_token), None)?;
    ensure!(refused.status == 403, "a revoked token: {} {}", refused.status, refused.body);
    let brief = call(&s, root, "POST", "auth/token/create", json!({"policies": ["reader"], "ttl": "1s"}))?;
    let (brief_token, brief_accessor) = (text(&brief["auth"], "client_token").to_owned(), accessor(&brief)?);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let refused = s.http("GET", "/v1/secret/data/app/db", Some(&brief_token), None)?;
    ensure!(refused.status == 403, "an expired token: {} {}", refused.status, refused.body);

    // The bundle, and every row of it offline.
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("incident.bundle");
    let bundle_arg = path_str(&bundle)?;
    let address = s.addr();
    run(&["ledger", "export", "--address", &address, "--token", root, "--out", bundle_arg])?;
    let offline = run_jsonl(&["ledger", "query", "--bundle", bundle_arg])?;
    check_times(&offline)?;
    let text_of_rows = serde_json::to_string(&offline)?;
    for secret in values.iter().chain([&password, &direct_token, &brief_token, &secret_id]) {
        ensure!(!text_of_rows.contains(secret.as_str()), "a row shows a secret");
    }
    let rows_of = |kind: &str| -> Vec<&Value> { offline.iter().filter(|r| r["kind"] == kind).collect() };

    // Who got which token: each TokenCreated names its accessor, with its request's path.
    let created: Vec<(String, String)> = rows_of("TokenCreated")
        .iter()
        .map(|r| (text(r, "path").to_owned(), r["target"]["accessors"][0].as_str().unwrap_or("").to_owned()))
        .collect();
    for expected in [
        ("auth/token/create", &direct_accessor),
        ("auth/userpass/login/alice", &alice_accessor),
        ("auth/approle/login", &web_accessor),
        ("auth/token/create", &brief_accessor),
    ] {
        ensure!(created.iter().any(|(p, a)| p == expected.0 && a == expected.1), "{expected:?} in {created:?}");
    }
    let revoked: Vec<&Value> = rows_of("TokensRevoked");
    ensure!(
        revoked
            .iter()
            .any(|r| r["path"] == "auth/token/revoke-accessor" && r["target"]["accessors"] == json!([direct_accessor])),
        "{revoked:?}"
    );

    // The versions: written 1, 2, 3; version 2 deleted; version 1 destroyed by an erasure
    // that names the event it erased.
    let kv = |r: &Value| (text(&r["target"], "mount").to_owned(), text(&r["target"], "path").to_owned());
    let written: Vec<&Value> =
        rows_of("KvWritten").into_iter().filter(|r| kv(r) == ("secret/".into(), "app/db".into())).collect();
    let versions: Vec<Value> = written.iter().map(|r| r["target"]["versions"].clone()).collect();
    ensure!(versions == [json!([1]), json!([2]), json!([3])], "{versions:?}");
    let deleted = rows_of("KvVersionsDeleted");
    ensure!(deleted.len() == 1 && deleted[0]["target"]["versions"] == json!([2]), "{deleted:?}");
    let erasures: Vec<&Value> =
        rows_of("PayloadErased").into_iter().filter(|r| r["path"] == "secret/destroy/app/db").collect();
    ensure!(erasures.len() == 1, "{erasures:?}");
    let erasure = erasures[0];
    let t = &erasure["target"];
    ensure!(t["erased_seq"] == written[0]["seq"] && t["erased_kind"] == "KvWritten", "{erasure}");
    ensure!(kv(erasure) == ("secret/".into(), "app/db".into()) && t["versions"] == json!([1]), "{erasure}");

    // A request with a revoked token, and one with an expired token, name their actor.
    for dead in [&direct_accessor, &brief_accessor] {
        let used: Vec<&Value> =
            offline.iter().filter(|r| r["actor"] == dead.as_str() && r["kind"] == "access").collect();
        ensure!(
            used.iter().any(|r| r["path"] == "secret/data/app/db" && r["outcome"] == "denied"),
            "the refused request of {dead}: {used:?}"
        );
    }

    // The kind filter, offline: only those kinds, case as printed or not.
    let filtered = run_jsonl(&["ledger", "query", "--bundle", bundle_arg, "--kind", "payloaderased,TokensRevoked"])?;
    let kinds: std::collections::BTreeSet<&str> = filtered.iter().map(|r| text(r, "kind")).collect();
    ensure!(kinds == ["PayloadErased", "TokensRevoked"].into(), "{kinds:?}");
    let expected: Vec<&Value> =
        offline.iter().filter(|r| r["kind"] == "PayloadErased" || r["kind"] == "TokensRevoked").collect();
    ensure!(filtered.iter().eq(expected.iter().copied()), "the filter drops nothing it should keep");
    let requests =
        run_jsonl(&["ledger", "query", "--bundle", bundle_arg, "--kind", "access", "--actor", &alice_accessor])?;
    ensure!(requests.is_empty(), "alice made no request with her token: {requests:?}");

    // Online: the same rows for the same events (the ledger went on after the export).
    let online = run_jsonl(&["ledger", "query", "--address", &address, "--token", root])?;
    check_times(&online)?;
    ensure!(online.len() > offline.len() && online[..offline.len()] == offline[..], "online rows differ from offline");
    let online_kinds = run_jsonl(&[
        "ledger",
        "query",
        "--address",
        &address,
        "--token",
        root,
        "--kind",
        "PayloadErased",
        "--kind",
        "TokensRevoked",
    ])?;
    ensure!(online_kinds[..filtered.len()] == filtered[..], "{online_kinds:?}");
    let table = run(&["ledger", "query", "--bundle", bundle_arg, "--kind", "PayloadErased"])?;
    ensure!(table.contains(&format!("erased seq {} KvWritten secret/app/db v1", written[0]["seq"])), "{table}");

    // The row's hash is the event's: the inclusion proof of that seq, checked offline
    // against the signed checkpoint and the pinned key, proves it.
    let seq = erasure["seq"].as_u64().context("seq")?;
    let hash = text(erasure, "hash");
    let checkpoint = call(&s, root, "GET", "sys/ledger/checkpoint", Value::Null)?;
    let size = checkpoint["data"]["tree_size"].as_u64().context("tree_size")?;
    let proof = call(&s, root, "GET", &format!("sys/ledger/proof/inclusion?seq={seq}&tree_size={size}"), Value::Null)?;
    ensure!(proof["data"]["leaf_hash"] == hash, "{proof} vs {hash}");
    let keys = call(&s, root, "GET", "sys/ledger/keys", Value::Null)?;
    let pins: Vec<&str> =
        keys["data"]["keys"].as_array().context("keys")?.iter().filter_map(|k| k["public_key"].as_str()).collect();
    let (proof_file, cp_file, pins_file) =
        (dir.path().join("proof.json"), dir.path().join("checkpoint.json"), dir.path().join("pins.txt"));
    std::fs::write(&proof_file, proof.to_string())?;
    std::fs::write(&cp_file, checkpoint.to_string())?;
    std::fs::write(&pins_file, pins.join("\n") + "\n")?;
    let verify = |leaf: &str| -> Result<(Option<i32>, String)> {
        let out = cairn(&[
            "ledger",
            "verify-proof",
            "--proof",
            path_str(&proof_file)?,
            "--checkpoint",
            path_str(&cp_file)?,
            "--trusted-key",
            path_str(&pins_file)?,
            "--leaf-hash",
            leaf,
            "--seq",
            &seq.to_string(),
        ])?;
        Ok((out.status.code(), stdout(&out)))
    };
    let (code, said) = verify(hash)?;
    ensure!(code == Some(0) && said.contains(hash), "{code:?} {said}");
    let (code, said) = verify(text(written[0], "hash"))?;
    ensure!(code == Some(1), "another event's hash is refused: {code:?} {said}");
    Ok(())
}

/// `cairn replay who-can` on a data dir, as JSON.
fn who_can(data: &str, path: &str) -> Result<Vec<Value>> {
    let text = run(&["replay", "who-can", "--data-dir", data, "--path", path, "--format", "json"])?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    v.as_array().cloned().context("a list")
}

#[test]
fn who_can_names_the_logins_entities_and_groups_that_could_read() -> Result<()> {
    let mut s = cairn_dev()?;
    let root = "root";
    call(
        &s,
        root,
        "PUT",
        "sys/policies/acl/reader",
        json!({"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}),
    )?;
    call(
        &s,
        root,
        "PUT",
        "sys/policies/acl/other",
        json!({"policy": "path \"secret/data/other\" { capabilities = [\"read\"] }"}),
    )?;
    call(&s, root, "POST", "sys/auth/userpass", json!({"type": "userpass"}))?;
    let userpass = text(&call(&s, root, "GET", "sys/auth", Value::Null)?["data"]["userpass/"], "accessor").to_owned();
    for (user, policies) in
        [("alice", json!(["reader"])), ("bob", json!(["other"])), ("carol", json!([])), ("dave", json!([]))]
    {
        call(
            &s,
            root,
            "POST",
            &format!("auth/userpass/users/{user}"),
            json!({"password": "pw", "token_policies": policies}),
        )?;
    }
    call(&s, root, "POST", "sys/auth/approle", json!({"type": "approle"}))?;
    call(
        &s,
        root,
        "POST",
        "auth/approle/role/web",
        json!({"token_policies": ["reader"], "secret_id_bound_cidrs": ["10.0.0.0/8"]}),
    )?;
    call(&s, root, "POST", "auth/approle/role/batch", json!({"token_policies": ["other"]}))?;

    // Alice logged in once: her entity, renamed, carries her alias.
    let login = call(&s, "", "POST", "auth/userpass/login/alice", json!({"password": "pw"}))?;
    let alice_entity = text(&login["auth"], "entity_id").to_owned();
    call(&s, root, "POST", &format!("identity/entity/id/{alice_entity}"), json!({"name": "alice-smith"}))?;
    // Carol's user confers nothing that reads, her entity does; dave's entity would, but
    // it is disabled.
    for (name, disabled) in [("carol", false), ("dave", true)] {
        let e = call(
            &s,
            root,
            "POST",
            "identity/entity",
            json!({"name": name, "policies": ["reader"], "disabled": disabled}),
        )?;
        let id = text(&e["data"], "id").to_owned();
        call(
            &s,
            root,
            "POST",
            "identity/entity-alias",
            json!({"name": name, "canonical_id": id, "mount_accessor": userpass}),
        )?;
    }
    // A group that reads, with a member who cannot on his own.
    let bob = call(&s, "", "POST", "auth/userpass/login/bob", json!({"password": "pw"}))?;
    let bob_entity = text(&bob["auth"], "entity_id").to_owned();
    call(
        &s,
        root,
        "POST",
        "identity/group",
        json!({"name": "ops", "policies": ["reader"], "member_entity_ids": [bob_entity]}),
    )?;
    s.stop(std::time::Duration::from_secs(5))?;
    let data = path_str(s.data_dir())?.to_owned();

    let grants = who_can(&data, "secret/data/app")?;
    let find = |kind: &str, name: &str| -> Vec<&Value> {
        grants.iter().filter(|g| g["kind"] == kind && g["name"] == name).collect()
    };
    let alias = |name: &str| json!([{"mount": "auth/userpass/", "name": name}]);

    let alice = find("userpass", "alice");
    ensure!(alice.len() == 1, "{grants:#?}");
    let a = alice[0];
    ensure!(a["mount"] == "auth/userpass/" && a["id"] == "auth/userpass/users/alice", "{a}");
    ensure!(a["token_policies"] == json!(["default", "reader"]) && a["policies"] == json!(["reader"]), "{a}");
    ensure!(a["entity"]["name"] == "alice-smith" && a["entity"]["aliases"] == alias("alice"), "{a}");
    let web = find("approle", "web");
    ensure!(
        web.len() == 1
            && web[0]["mount"] == "auth/approle/"
            && web[0]["token_policies"] == json!(["default", "reader"]),
        "{web:?}"
    );
    let conditions = web[0]["conditions"].to_string();
    ensure!(conditions.contains("a secret id (0 live then)"), "{conditions}");
    ensure!(conditions.contains("10.0.0.0/8"), "{conditions}");
    let carol = find("userpass", "carol");
    ensure!(carol.len() == 1, "carol logs in to her entity, which reads: {grants:#?}");
    ensure!(
        carol[0]["identity_policies"] == json!(["reader"]) && carol[0]["entity"]["aliases"] == alias("carol"),
        "{:?}",
        carol
    );
    ensure!(find("entity", "carol").len() == 1, "carol's entity itself: {grants:#?}");
    // bob reads only through his group: the group is listed with him, his user is too.
    let ops = find("group", "ops");
    ensure!(ops.len() == 1 && ops[0]["members"][0]["id"] == bob_entity.as_str(), "{ops:?}");
    ensure!(ops[0]["members"][0]["aliases"] == alias("bob"), "{ops:?}");
    ensure!(
        find("userpass", "bob").first().is_some_and(|g| g["identity_policies"] == json!(["reader"])),
        "{grants:#?}"
    );
    // Never someone who could not read: the approle role without a granting policy, a
    // disabled entity and the user who lands on it.
    ensure!(
        find("approle", "batch").is_empty() && find("userpass", "dave").is_empty() && find("entity", "dave").is_empty(),
        "{grants:#?}"
    );
    // Alice's token names her entity by name and alias, not a bare id.
    let token = grants
        .iter()
        .find(|g| g["kind"] == "token" && g["id"] == login["auth"]["accessor"])
        .context("alice's token")?;
    ensure!(token["entity"]["name"] == "alice-smith" && token["entity"]["aliases"] == alias("alice"), "{token}");

    // Sorted by kind, then name; two runs print the same bytes, in both formats.
    let order: Vec<(String, String)> =
        grants.iter().map(|g| (text(g, "kind").to_owned(), text(g, "name").to_owned())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    ensure!(order == sorted, "{order:?}");
    for format in ["text", "json"] {
        let args = ["replay", "who-can", "--data-dir", &data, "--path", "secret/data/app", "--format", format];
        ensure!(run(&args)? == run(&args)?, "two {format} runs differ");
    }
    let text_out = run(&["replay", "who-can", "--data-dir", &data, "--path", "secret/data/app"])?;
    ensure!(
        text_out.contains("userpass   alice  auth/userpass/users/alice")
            && text_out.contains("entity alice-smith (auth/userpass/alice)"),
        "{text_out}"
    );
    Ok(())
}
