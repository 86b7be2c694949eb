//! The server and its ledger, as an operator and an auditor check them: a restart replays
//! the ledger to the same state; a destroyed value is gone from the disk (and never was on
//! it in clear); every request is an access event naming the token's accessor; a full disk
//! refuses requests instead of losing them; and the ledger verifies offline against the
//! key the server published, and fails on one flipped byte.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::ledger::{Stored, read_ledger};
use e2e::process::run_bounded;
use e2e::{DevServer, HttpReply, Options, Server, Target, cairn, count_files, files_containing, random_alnum, stdout};
use ledger::seal::SlotState;
use ledger::system::SystemEvent;
use migrations::{Access, Body, Envelope, Event, KvWritten, Outcome, RefusalsCounted};
use serde_json::{Value, json};

/// How long the server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A token of the right shape that the server never issued.
const UNKNOWN_TOKEN: &str = "s.AAAAAAAAAAAAAAAAAAAAAAAA";

/// A cairn dev server (these tests read cairn's data directory, so never OpenBao).
fn cairn_dev(data_dir: Option<PathBuf>) -> Result<DevServer> {
    DevServer::start_with(Options { target: Some(Target::Cairn), data_dir, ..Options::default() })
}

/// SIGTERM, as an operator stops the server: it must exit 0 within [`STOP_TIMEOUT`].
fn stop(s: &mut Server) -> Result<()> {
    let status = s.stop(STOP_TIMEOUT)?;
    ensure!(status.success(), "SIGTERM should end the server with exit code 0, got {status}\n--- log ---\n{}", s.log());
    Ok(())
}

fn access_events(events: &[Stored]) -> Vec<(&Envelope, &Access)> {
    events
        .iter()
        .filter_map(|e| match &e.env.body {
            Body::App(Event::Access(a)) => Some((&e.env, a)),
            _ => None,
        })
        .collect()
}

fn kv_written<'a>(events: &'a [Stored], path: &str, version: u64) -> Result<(&'a Stored, &'a KvWritten)> {
    events
        .iter()
        .find_map(|e| match &e.env.body {
            Body::App(Event::KvWritten(w)) if w.path == path && w.version == version => Some((e, w)),
            _ => None,
        })
        .with_context(|| format!("no KvWritten event for {path} version {version} in the ledger"))
}

/// The 16 bytes of a UUID in its text form.
fn uuid_bytes(text: &str) -> Result<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    ensure!(hex.len() == 32, "not a UUID: {text:?}");
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).with_context(|| format!("not a UUID: {text:?}"))?;
    }
    Ok(out)
}

/// `cairn ledger verify ARGS --format json`: exit code and report.
fn verify_json(args: &[&str]) -> Result<(Option<i32>, Value)> {
    let mut all = vec!["ledger", "verify"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = cairn(&all)?;
    let report = serde_json::from_str(&stdout(&out)).with_context(|| {
        format!(
            "cairn {} printed no JSON report\n--- stdout ---\n{}\n--- stderr ---\n{}",
            all.join(" "),
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), report))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("not UTF-8: {}", p.display()))
}

/// Fails naming every file under `dir` that holds `needle` (what it is: `what`).
fn assert_nowhere(dir: &Path, needle: &str, what: &str) -> Result<()> {
    let found = files_containing(dir, needle.as_bytes())?;
    ensure!(found.is_empty(), "{what} ({needle:?}) is in clear in {found:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Restart
// ---------------------------------------------------------------------------------------

/// Runs `bao ARGS` (must succeed) and returns its JSON output with the request id, which
/// differs per request, checked and removed.
fn answer(s: &Server, token: Option<&str>, args: &[&str]) -> Result<Value> {
    let run = match token {
        Some(t) => s.bao_as(t, args)?,
        None => s.bao(args)?,
    };
    let mut v = run.success()?.json()?;
    if let Some(id) = v.get("request_id") {
        ensure!(id.as_str().is_some_and(|i| i.len() == 36), "request_id should be a UUID: {v:#}");
        v["request_id"] = json!("<request id>");
    }
    Ok(v)
}

/// Removes a token lookup's `ttl` (it counts down between two lookups) and returns it.
fn take_ttl(v: &mut Value) -> Result<i64> {
    let ttl = v["data"]["ttl"].as_i64().with_context(|| format!("no integer data.ttl in {v:#}"))?;
    v["data"]["ttl"] = json!("<ttl>");
    Ok(ttl)
}

/// What users and operators read back about everything `a_restart_…` wrote.
struct Answers {
    named: Vec<(String, Value)>,
    /// TTLs of the limited token and its child.
    ttls: [i64; 2],
}

fn read_answers(s: &Server, limited: &str, child: &str) -> Result<Answers> {
    let mut named = Vec::new();
    let mut add = |name: &str, v: Value| named.push((name.to_string(), v));
    add("kv get secret/app", answer(s, None, &["kv", "get", "-format=json", "secret/app"])?);
    for v in 1..=4 {
        let version = format!("-version={v}");
        // Version 1 is destroyed and version 2 deleted: `kv get` exits 2 with metadata only,
        // so read those through the API directly.
        let path = format!("secret/data/app?version={v}");
        let raw = s.http("GET", &format!("/v1/{path}"), Some("root"), None)?;
        let mut body = raw.json()?;
        if body.get("request_id").is_some() {
            body["request_id"] = json!("<request id>");
        }
        add(&format!("GET {path} ({})", raw.status), body);
        if v > 2 {
            add(&format!("kv get {version}"), answer(s, None, &["kv", "get", "-format=json", &version, "secret/app"])?);
        }
    }
    add("kv metadata get secret/app", answer(s, None, &["kv", "metadata", "get", "-format=json", "secret/app"])?);
    add("kv get secret/team/db", answer(s, None, &["kv", "get", "-format=json", "secret/team/db"])?);
    add("kv list secret/", answer(s, None, &["kv", "list", "-format=json", "secret/"])?);
    add("kv get legacy/config", answer(s, None, &["kv", "get", "-format=json", "legacy/config"])?);
    add("secrets list", answer(s, None, &["secrets", "list", "-format=json"])?);
    let policy = s.bao(&["policy", "read", "limited"])?.success()?.stdout;
    add("policy read limited", json!(policy));
    add("policy list", answer(s, None, &["policy", "list", "-format=json"])?);
    add("token lookup (root)", answer(s, None, &["token", "lookup", "-format=json"])?);
    let mut limited_lookup = answer(s, None, &["token", "lookup", "-format=json", limited])?;
    let mut child_lookup = answer(s, None, &["token", "lookup", "-format=json", child])?;
    let ttls = [take_ttl(&mut limited_lookup)?, take_ttl(&mut child_lookup)?];
    add("token lookup limited", limited_lookup);
    add("token lookup child", child_lookup);
    for (who, token) in [("limited", limited), ("child", child)] {
        for path in ["secret/data/app", "secret/data/team/db", "secret/metadata/app", "auth/token/create", "sys/seal"] {
            let caps = s.bao_as(token, &["token", "capabilities", "-format=json", path])?.success()?.json()?;
            add(&format!("capabilities-self of {who} on {path}"), caps);
        }
    }
    add("kv get secret/app as limited", answer(s, Some(limited), &["kv", "get", "-format=json", "secret/app"])?);
    add("read cubbyhole/note as limited", answer(s, Some(limited), &["read", "-format=json", "cubbyhole/note"])?);
    Ok(Answers { named, ttls })
}

#[test]
fn a_restart_replays_the_ledger_to_the_same_state() -> Result<()> {
    let mut s = cairn_dev(None)?;

    // KV v2: four versions of secret/app, version 2 soft-deleted, version 1 destroyed,
    // custom metadata; a second secret.
    for (i, pass) in ["one", "two", "three", "four"].iter().enumerate() {
        s.bao(&["kv", "put", "secret/app", &format!("pass={pass}"), &format!("n={i}")])?.success()?;
    }
    s.bao(&["kv", "metadata", "put", "-max-versions=7", "-custom-metadata=owner=team-a", "secret/app"])?.success()?;
    s.bao(&["kv", "delete", "-versions=2", "secret/app"])?.success()?;
    s.bao(&["kv", "destroy", "-versions=1", "secret/app"])?.success()?;
    s.bao(&["kv", "put", "secret/team/db", "password=hunter2"])?.success()?;
    // KV v1 at a mount of our own.
    s.bao(&["secrets", "enable", "-path=legacy", "-version=1", "kv"])?.success()?;
    s.bao(&["kv", "put", "legacy/config", "url=postgres://db", "user=app"])?.success()?;
    // A policy, a token limited to it, a child of that token, and a cubbyhole value.
    let policy = "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n\
                  path \"secret/metadata/*\" {\n  capabilities = [\"list\"]\n}\n\
                  path \"auth/token/create\" {\n  capabilities = [\"create\", \"update\"]\n}\n";
    let file = s.write_file("limited.hcl", policy)?;
    s.bao(&["policy", "write", "limited", path_str(&file)?])?.success()?;
    let limited = s.bao(&["token", "create", "-policy=limited", "-ttl=2h", "-field=token"])?.success()?.stdout;
    let child =
        s.bao_as(&limited, &["token", "create", "-policy=limited", "-ttl=1h", "-field=token"])?.success()?.stdout;
    s.bao_as(&limited, &["write", "cubbyhole/note", "text=only for me"])?.success()?;

    let before = read_answers(&s, &limited, &child)?;
    // The answers are about what was written (a check of the test itself).
    let find = |a: &Answers, name: &str| a.named.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let latest = find(&before, "kv get secret/app").context("answer")?;
    assert_eq!(latest["data"]["data"], json!({"pass": "four", "n": "3"}));
    let meta = find(&before, "kv metadata get secret/app").context("answer")?;
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], json!(true));
    assert_ne!(meta["data"]["versions"]["2"]["deletion_time"], json!(""));
    assert_eq!(meta["data"]["custom_metadata"], json!({"owner": "team-a"}));
    let cubby = find(&before, "read cubbyhole/note as limited").context("answer")?;
    assert_eq!(cubby["data"], json!({"text": "only for me"}));

    stop(&mut s)?;
    // A clean stop leaves a projection snapshot of the state; the next start folds only
    // the events after it (see the "state rebuilt" log line).
    let snaps = s.data_dir().join("snapshots");
    let names: Vec<String> = std::fs::read_dir(&snaps)
        .with_context(|| format!("no snapshot folder after a clean stop\n{}", s.log()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    ensure!(names.iter().any(|n| n.starts_with("state-") && n.ends_with(".snap")), "no snapshot: {names:?}");
    let log_before = s.log().len();
    s.start_again()?;
    // The dev server unsealed itself with the key it keeps in its data directory.
    s.bao(&["status"])?.success()?;
    let restart_log = s.log().get(log_before..).unwrap_or_default().to_string();
    let rebuilt = restart_log.lines().find(|l| l.contains("state rebuilt from the ledger")).unwrap_or_default();
    ensure!(!rebuilt.contains("snapshot=0"), "the restart did not start from the snapshot: {restart_log}");

    let after = read_answers(&s, &limited, &child)?;
    for ((name, b), (name_after, a)) in before.named.iter().zip(&after.named) {
        assert_eq!(name, name_after);
        assert_eq!(a, b, "after a restart, `{name}` answers differently");
    }
    assert_eq!(before.named.len(), after.named.len());
    for (i, who) in ["limited", "child"].iter().enumerate() {
        let (b, a) = (before.ttls[i], after.ttls[i]);
        assert!(0 < a && a <= b, "ttl of the {who} token: {b} before the restart, {a} after");
    }

    // A damaged snapshot is ignored: the next start replays the whole ledger.
    stop(&mut s)?;
    for e in std::fs::read_dir(&snaps)?.filter_map(|e| e.ok()) {
        let mut bytes = std::fs::read(e.path())?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        std::fs::write(e.path(), bytes)?;
    }
    s.start_again()?;
    s.bao(&["status"])?.success()?;
    let again = read_answers(&s, &limited, &child)?;
    for ((name, b), (_, a)) in before.named.iter().zip(&again.named) {
        assert_eq!(a, b, "after a restart with a damaged snapshot, `{name}` answers differently");
    }

    // The replayed state is the one new requests build on.
    let put = s.bao(&["kv", "put", "-format=json", "secret/app", "pass=five"])?.success()?.json()?;
    assert_eq!(put["data"]["version"], json!(5), "the restarted server numbers versions from the replayed state");
    let stale = s.bao(&["kv", "put", "-cas=4", "secret/app", "pass=six"])?.failure(2)?;
    assert!(stale.stderr.contains("check-and-set parameter did not match the current version"), "{stale}");
    assert_eq!(s.bao_as(&child, &["kv", "get", "-field=pass", "secret/app"])?.success()?.stdout, "five");
    let denied = s.bao_as(&child, &["kv", "get", "secret/team/db"])?.failure(2)?;
    assert!(denied.stderr.contains("Code: 403"), "{denied}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Destroy
// ---------------------------------------------------------------------------------------

#[test]
fn a_destroyed_version_is_unrecoverable_and_never_was_on_disk_in_clear() -> Result<()> {
    let mut s = cairn_dev(None)?;
    let data = s.data_dir().to_path_buf();
    let doomed = random_alnum(40)?;
    let kept = random_alnum(40)?;
    s.bao(&["kv", "put", "secret/doomed", &format!("password={doomed}")])?.success()?;
    s.bao(&["kv", "put", "secret/doomed", &format!("password={kept}")])?.success()?;
    let root_accessor = s.bao(&["token", "lookup", "-format=json"])?.success()?.json()?["data"]["accessor"]
        .as_str()
        .context("accessor")?
        .to_string();

    // The server holds the value and answers it...
    let v1 = s.bao(&["kv", "get", "-version=1", "-field=password", "secret/doomed"])?.success()?;
    assert_eq!(v1.stdout, doomed);
    // ...yet no file of the data directory holds it in clear, even before the destroy:
    // values are sealed before they reach the disk.
    ensure!(count_files(&data)? >= 2, "the data directory {} holds almost nothing", data.display());
    assert_nowhere(&data, &doomed, "version 1's value, before the destroy")?;
    assert_nowhere(&data, &kept, "version 2's value")?;

    let destroy = s.bao(&["kv", "destroy", "-versions=1", "secret/doomed"])?.success()?;
    assert_eq!(destroy.stdout, "Success! Data written to: secret/destroy/doomed\n");
    let gone = s.bao(&["kv", "get", "-format=json", "-version=1", "secret/doomed"])?.success()?.json()?;
    assert_eq!((&gone["data"]["data"], &gone["data"]["metadata"]["destroyed"]), (&Value::Null, &json!(true)));
    let still = s.bao(&["kv", "get", "-field=password", "secret/doomed"])?.success()?;
    assert_eq!(still.stdout, kept, "destroying version 1 keeps version 2");
    stop(&mut s)?;

    assert_nowhere(&data, &doomed, "the destroyed value, after the destroy")?;
    assert!(!s.log().contains(&doomed), "the server log holds the destroyed value");

    // Offline, with the ledger library: version 1's key slot is zeroed, version 2's is not,
    // and a PayloadErased event made by the root token names version 1's event.
    let events = read_ledger(&data)?;
    let (e1, w1) = kv_written(&events, "doomed", 1)?;
    let (e2, w2) = kv_written(&events, "doomed", 2)?;
    assert_eq!(
        e1.slots.get(usize::from(w1.value.slot)),
        Some(&SlotState::Erased),
        "the key slot of the destroyed version (event {})",
        e1.env.seq
    );
    assert_eq!(
        e2.slots.get(usize::from(w2.value.slot)),
        Some(&SlotState::Intact),
        "the key slot of the kept version (event {})",
        e2.env.seq
    );
    let erasures: Vec<(&Envelope, u64, &Vec<u8>)> = events
        .iter()
        .filter_map(|e| match &e.env.body {
            Body::System(SystemEvent::PayloadErased { target, slots }) => Some((&e.env, *target, slots)),
            _ => None,
        })
        .collect();
    let erasure = erasures
        .iter()
        .find(|(_, target, slots)| *target == e1.env.seq && slots.contains(&w1.value.slot))
        .with_context(|| format!("no PayloadErased event names event {}: {erasures:?}", e1.env.seq))?;
    assert!(erasure.0.seq > e1.env.seq);
    assert_eq!(erasure.0.actor.accessor, root_accessor, "the erasure is attributed to the root token's accessor");
    assert!(
        erasures.iter().all(|(_, target, _)| *target != e2.env.seq),
        "nothing erases the kept version (event {})",
        e2.env.seq
    );

    // The offline verifier accepts the ledger and counts the erased payload.
    let (code, report) = verify_json(&["--data-dir", path_str(&data)?])?;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["intact"], json!(true), "{report:#}");
    let erased = report["erased_payloads"].as_u64().context("erased_payloads")?;
    assert_eq!(erased, erasures.len() as u64, "{report:#}");
    let text = cairn(&["ledger", "verify", "--data-dir", path_str(&data)?])?;
    assert!(text.status.success(), "{}", stdout(&text));
    assert!(stdout(&text).contains(&format!("erased payloads: {erased} ")), "{}", stdout(&text));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Every request is in the ledger
// ---------------------------------------------------------------------------------------

/// What the ledger must say about one request.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    operation: String,
    path: String,
    outcome: Outcome,
    accessor: String,
    policies: Vec<String>,
}

/// Requests made for `every_request_…`, each with the access event it must leave.
struct Session<'a> {
    s: &'a Server,
    expected: Vec<Expected>,
}

impl Session<'_> {
    /// One request; `status` is the answer it must get; the ledger must then hold `op` on
    /// the path with `outcome`, by `who` = (accessor, policies).
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        status: u16,
        op: &str,
        outcome: Outcome,
        who: &(String, Vec<String>),
    ) -> Result<HttpReply> {
        let body = body.map(Value::to_string);
        let reply = self.s.http(method, &format!("/v1/{path}"), token, body.as_deref())?;
        ensure!(reply.status == status, "{method} {path}: expected {status}, got {} {}", reply.status, reply.body);
        let mut path = path.split('?').next().unwrap_or(path).to_string();
        // The ledger records the canonical path: a LIST is on the folder, `…/`.
        if method == "LIST" && !path.ends_with('/') {
            path.push('/');
        }
        self.expected.push(Expected {
            operation: op.into(),
            path,
            outcome,
            accessor: who.0.clone(),
            policies: who.1.clone(),
        });
        Ok(reply)
    }
}

#[test]
fn every_request_is_an_access_event_by_accessor_and_no_token_or_value_is_in_clear() -> Result<()> {
    let mut s = cairn_dev(None)?;
    let secret1 = random_alnum(32)?;
    let secret2 = random_alnum(32)?;
    let secret3 = random_alnum(32)?;
    let cubby = random_alnum(32)?;
    let data = s.data_dir().to_path_buf();

    let mut x = Session { s: &s, expected: Vec::new() };
    let mut root = (String::new(), vec!["root".to_string()]);
    let me = x.request("GET", "auth/token/lookup-self", Some("root"), None, 200, "read", Outcome::Allowed, &root)?;
    root.0 = me.json()?["data"]["accessor"].as_str().context("root accessor")?.to_string();
    x.expected[0].accessor = root.0.clone();

    let policy = json!({"policy": "path \"secret/data/shared/*\" {\n  capabilities = [\"read\"]\n}\n"});
    x.request("PUT", "sys/policies/acl/reader", Some("root"), Some(&policy), 204, "update", Outcome::Allowed, &root)?;
    let created = x.request(
        "POST",
        "auth/token/create",
        Some("root"),
        Some(&json!({"policies": ["reader"], "ttl": "1h"})),
        200,
        "update",
        Outcome::Allowed,
        &root,
    )?;
    let created = created.json()?;
    let reader_token = created["auth"]["client_token"].as_str().context("client_token")?.to_string();
    let reader = (
        created["auth"]["accessor"].as_str().context("accessor")?.to_string(),
        vec!["default".into(), "reader".into()],
    );
    let rt = Some(reader_token.as_str());

    let put1 = json!({"data": {"password": secret1}});
    x.request("PUT", "secret/data/shared/db", Some("root"), Some(&put1), 200, "create", Outcome::Allowed, &root)?;
    // Allowed read by the limited token: its answer carries the request id the ledger keeps.
    let read = x.request("GET", "secret/data/shared/db", rt, None, 200, "read", Outcome::Allowed, &reader)?;
    let read = read.json()?;
    assert_eq!(read["data"]["data"]["password"], json!(secret1));
    let read_request_id = read["request_id"].as_str().context("request_id")?.to_string();
    // Denied by the ACL: another path, and a write.
    x.request("GET", "secret/data/private/db", rt, None, 403, "read", Outcome::Denied, &reader)?;
    let put2 = json!({"data": {"password": secret2}});
    x.request("PUT", "secret/data/shared/db", rt, Some(&put2), 403, "update", Outcome::Denied, &reader)?;
    // Denied before any ACL: a token the server never issued, and no token at all. These
    // are counted, not recorded one by one (a flood of them must not flood the ledger):
    // one `RefusalsCounted` event says so below.
    for token in [Some(UNKNOWN_TOKEN), None] {
        let r = s.http("GET", "/v1/secret/data/shared/db", token, None)?;
        ensure!(r.status == 403, "{token:?}: {} {}", r.status, r.body);
    }
    // Allowed by the ACL, refused by the engine: a check-and-set mismatch (400).
    let cas = json!({"options": {"cas": 0}, "data": {"password": secret2}});
    x.request("PUT", "secret/data/shared/db", Some("root"), Some(&cas), 400, "update", Outcome::Failed(400), &root)?;
    let put3 = json!({"options": {"cas": 1}, "data": {"password": secret3}});
    x.request("PUT", "secret/data/shared/db", Some("root"), Some(&put3), 200, "update", Outcome::Allowed, &root)?;
    // Nothing there (404), and no mount at all (404).
    x.request("GET", "secret/data/nowhere", Some("root"), None, 404, "read", Outcome::Failed(404), &root)?;
    x.request("GET", "nomount/thing", Some("root"), None, 404, "read", Outcome::Failed(404), &root)?;
    x.request("LIST", "secret/metadata/shared", Some("root"), None, 200, "list", Outcome::Allowed, &root)?;
    let note = json!({"note": cubby});
    x.request("POST", "cubbyhole/mine", rt, Some(&note), 204, "create", Outcome::Allowed, &reader)?;
    x.request("GET", "cubbyhole/mine", rt, None, 200, "read", Outcome::Allowed, &reader)?;
    x.request("DELETE", "secret/data/shared/db", Some("root"), None, 204, "delete", Outcome::Allowed, &root)?;
    let versions = json!({"versions": [1]});
    x.request(
        "PUT",
        "secret/destroy/shared/db",
        Some("root"),
        Some(&versions),
        204,
        "update",
        Outcome::Allowed,
        &root,
    )?;
    // A token that existed and was revoked: its request is an access event of its own,
    // with the accessor and policies it had (forensics needs to know who tried it).
    let gone = s.http("POST", "/v1/auth/token/create", Some("root"), Some(r#"{"policies":["reader"],"ttl":"1h"}"#))?;
    x.expected.push(Expected {
        operation: "update".into(),
        path: "auth/token/create".into(),
        outcome: Outcome::Allowed,
        accessor: root.0.clone(),
        policies: root.1.clone(),
    });
    let gone = gone.json()?;
    let gone_token = gone["auth"]["client_token"].as_str().context("client_token")?.to_string();
    let gone_who = (
        gone["auth"]["accessor"].as_str().context("accessor")?.to_string(),
        vec!["default".to_string(), "reader".to_string()],
    );
    x.request("POST", "auth/token/revoke-self", Some(&gone_token), None, 204, "update", Outcome::Allowed, &gone_who)?;
    x.request("GET", "secret/data/shared/db", Some(&gone_token), None, 403, "read", Outcome::Denied, &gone_who)?;
    // A token in a request body (and in the answer): hashed like any other field.
    let lookup = json!({"token": reader_token});
    let looked =
        x.request("POST", "auth/token/lookup", Some("root"), Some(&lookup), 200, "update", Outcome::Allowed, &root)?;
    assert_eq!(looked.json()?["data"]["id"], json!(reader_token));
    let expected = x.expected;
    stop(&mut s)?;

    let events = read_ledger(&data)?;
    let accesses = access_events(&events);
    let seen: Vec<Expected> = accesses
        .iter()
        .map(|(env, a)| Expected {
            operation: a.operation.clone(),
            path: a.path.clone(),
            outcome: a.outcome,
            accessor: env.actor.accessor.clone(),
            policies: a.policies.clone(),
        })
        .collect();
    // Exactly the requests made, in order: none missing, none invented.
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(seen.get(i), Some(want), "access event {i} of {}; all of them: {seen:#?}", expected.len());
    }
    assert_eq!(seen.len(), expected.len(), "more access events than requests: {seen:#?}");

    for (env, a) in &accesses {
        // The actor is the accessor, never the token itself.
        for token in [reader_token.as_str(), UNKNOWN_TOKEN] {
            assert!(!env.actor.accessor.contains(token) && !env.actor.display_name.contains(token), "{env:?}");
        }
        assert_eq!(env.actor.remote_addr, "127.0.0.1", "{env:?}");
        // Request and response fields are keyed hashes, not values.
        for (k, h) in a.request_hmac.iter().chain(&a.response_hmac) {
            assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()), "field {k} of {a:?} is not a hash");
        }
    }
    let (write_env, write) = accesses[3];
    assert_eq!((write.path.as_str(), write.outcome), ("secret/data/shared/db", Outcome::Allowed));
    assert!(write.request_hmac.contains_key("data"), "the write's request fields are hashed: {write:?}");
    assert!(write_env.seq > 0);
    let (read_env, read_access) = accesses[4];
    assert!(read_access.response_hmac.contains_key("data"), "the read's response fields are hashed: {read_access:?}");
    assert_eq!(read_env.request_id, uuid_bytes(&read_request_id)?, "the ledger keeps the request id the reply gave");

    // The two refusals before authentication, counted in one event: who, how often,
    // where, and the keyed hash of the one token presented (never the token).
    let counted: Vec<&RefusalsCounted> = events
        .iter()
        .filter_map(|e| match &e.env.body {
            Body::App(Event::RefusalsCounted(c)) => Some(c),
            _ => None,
        })
        .collect();
    ensure!(counted.len() == 1, "one count of refusals: {counted:#?}");
    let source = counted[0].sources.first().context("a source")?;
    assert_eq!((source.remote_addr.as_str(), source.refused, source.rate_limited), ("127.0.0.1", 2, 0));
    assert_eq!(source.paths, vec![("secret/data/shared/db".to_string(), 2)]);
    assert_eq!(source.token_hashes.len(), 1, "{source:?}");

    let (_, lookup) = accesses.last().context("no access events")?;
    assert_eq!(lookup.path, "auth/token/lookup");
    assert!(lookup.request_hmac.contains_key("token"), "the token in the body is hashed: {lookup:?}");
    assert!(lookup.response_hmac.contains_key("id"), "the token in the answer is hashed: {lookup:?}");

    // No token id and no secret value is anywhere on disk in clear.
    let reader_random = reader_token.strip_prefix("s.").unwrap_or(&reader_token).to_string();
    for (needle, what) in [
        (reader_token.as_str(), "the limited token"),
        (reader_random.as_str(), "the random part of the limited token"),
        (UNKNOWN_TOKEN, "the unknown token sent in a request"),
        (secret1.as_str(), "version 1's value (destroyed)"),
        (secret2.as_str(), "the value of a denied write and of a refused check-and-set"),
        (secret3.as_str(), "version 2's value"),
        (cubby.as_str(), "the cubbyhole value"),
    ] {
        assert_nowhere(&data, needle, what)?;
        assert!(!s.log().contains(needle), "the server log holds {what}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Fail closed when the ledger cannot write
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    // Last: removed once unmounted.
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs> {
        let parent = tempfile::Builder::new().prefix("cairn-tmpfs-").tempdir()?;
        let path = parent.path().join("data");
        std::fs::create_dir(&path)?;
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path_str(&path)?]);
        let run = run_bounded(cmd, Duration::from_secs(30))?;
        if run.code != Some(0) {
            bail!("this test needs to mount a small tmpfs (run it as root): mount failed\n{run}");
        }
        Ok(Tmpfs { path, _parent: parent })
    }

    /// Free bytes, as `df` reports them.
    fn free(&self) -> Result<u64> {
        let mut cmd = Command::new("df");
        cmd.args(["--output=avail", "-B1", path_str(&self.path)?]);
        let run = run_bounded(cmd, Duration::from_secs(30))?.success()?;
        run.stdout.lines().nth(1).and_then(|l| l.trim().parse().ok()).with_context(|| format!("df output: {run}"))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.path.display().to_string();
        for args in [vec!["umount", path.as_str()], vec!["umount", "-l", path.as_str()]] {
            let mut cmd = Command::new(args[0]);
            cmd.args(&args[1..]);
            if run_bounded(cmd, Duration::from_secs(30)).is_ok_and(|r| r.code == Some(0)) {
                return;
            }
        }
        eprintln!("could not unmount the tmpfs at {path}");
    }
}

/// The server on a tmpfs: on drop (even after a failed assertion), the server is killed
/// first, then the tmpfs unmounted.
struct OnTmpfs {
    server: Option<DevServer>,
    tmpfs: Tmpfs,
}

impl Drop for OnTmpfs {
    fn drop(&mut self) {
        drop(self.server.take());
        // `tmpfs` is dropped (unmounted) after this.
    }
}

impl OnTmpfs {
    fn server(&mut self) -> Result<&mut DevServer> {
        self.server.as_mut().context("the server is gone")
    }
}

fn kv_put(s: &Server, path: &str, value: &str) -> Result<HttpReply> {
    let body = json!({"data": {"value": value}}).to_string();
    s.http("PUT", &format!("/v1/secret/data/{path}"), Some("root"), Some(&body))
}

#[test]
fn a_full_disk_refuses_requests_with_503_and_loses_nothing_acknowledged() -> Result<()> {
    let tmpfs = Tmpfs::mount("24m")?;
    let data = tmpfs.path.clone();
    let mut env = OnTmpfs { server: None, tmpfs };
    env.server = Some(cairn_dev(Some(data.clone()))?);
    let s = env.server()?;

    let before = random_alnum(24)?;
    let put = kv_put(s, "before", &before)?;
    assert_eq!(put.status, 200, "{}", put.body);

    // Fill the disk to 1 MiB of free space with a file of our own.
    let filler = data.join("filler");
    let free = env.tmpfs.free()?;
    ensure!(free > 2 << 20, "only {free} bytes free on the tmpfs after start-up");
    std::fs::write(&filler, vec![0xA5u8; usize::try_from(free - (1 << 20))?]).context("write the filler")?;
    let s = env.server()?;

    // Writes of 128 KiB values until one is refused (bounded: 1 MiB cannot take 64 of them).
    let big = "x".repeat(128 << 10);
    let mut accepted = Vec::new();
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..64 {
        ensure!(Instant::now() < deadline, "still writing after 60 s");
        let value = format!("{}-{big}", random_alnum(24)?);
        let reply = kv_put(s, &format!("fill-{i}"), &value)?;
        match reply.status {
            200 => accepted.push((i, value)),
            503 => {
                let body = reply.json()?;
                assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "a 503 says why: {}", reply.body);
                refused = Some((i, value));
                break;
            }
            other => bail!("write {i} on a nearly full disk answered {other}: {}", reply.body),
        }
    }
    let (refused_i, refused_value) = refused.context("no write was refused although the disk is full")?;
    eprintln!("disk full: {} writes of 128 KiB accepted, write {refused_i} refused with 503", accepted.len());
    assert!(s.is_running()?, "the server must keep running on a full disk");

    // Now fill the last bytes too: nothing more fits.
    let filler2 = data.join("filler-last");
    fill_until_enospc(&filler2)?;

    // While the disk is full: the refused write is not readable, and earlier data is
    // either read back exactly or refused with 503. A read needs its access event: every
    // read answered 200 must be in the ledger (checked below, by request id).
    let refused_path = format!("/v1/secret/data/fill-{refused_i}");
    let r = s.http("GET", &refused_path, Some("root"), None)?;
    assert!(
        matches!(r.status, 404 | 503) && !r.body.contains(&refused_value[..24]),
        "GET {refused_path} of the refused write while the disk is full: {} {}",
        r.status,
        r.body
    );
    let mut answered = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let early = s.http("GET", "/v1/secret/data/before", Some("root"), None)?;
        statuses.push(early.status);
        match early.status {
            200 => {
                let body = early.json()?;
                assert_eq!(body["data"]["data"]["value"], json!(before));
                answered.push(body["request_id"].as_str().context("request_id")?.to_string());
            }
            503 => {}
            other => bail!("read of earlier data while the disk is full answered {other}: {}", early.body),
        }
    }
    eprintln!(
        "while the disk is full: GET {refused_path} answered {}; 20 reads of earlier data answered {statuses:?}",
        r.status
    );
    assert!(s.is_running()?, "the server must keep running on a full disk");

    // Free the space: writes work again at once, and the refused write never happened.
    std::fs::remove_file(&filler).context("remove the filler")?;
    std::fs::remove_file(&filler2).context("remove the last filler")?;
    let after = random_alnum(24)?;
    let put = kv_put(s, "after", &after)?;
    assert_eq!(put.status, 200, "the first write after space was freed: {}", put.body);
    let r = s.http("GET", &refused_path, Some("root"), None)?;
    assert_eq!((r.status, r.body.as_str()), (404, "{\"errors\":[]}\n"), "the refused write after space was freed");
    let r = s.http("GET", &format!("/v1/secret/metadata/fill-{refused_i}"), Some("root"), None)?;
    assert_eq!(r.status, 404, "the refused write left metadata behind: {}", r.body);
    for (path, value) in [("before".to_string(), &before), ("after".to_string(), &after)]
        .into_iter()
        .chain(accepted.iter().map(|(i, v)| (format!("fill-{i}"), v)))
    {
        let r = s.http("GET", &format!("/v1/secret/data/{path}"), Some("root"), None)?;
        assert_eq!(r.status, 200, "GET secret/data/{path}: {}", r.body);
        assert_eq!(r.json()?["data"]["data"]["value"], json!(value), "secret/{path}");
    }

    // A clean stop, and the ledger it leaves verifies.
    stop(s)?;
    let (code, report) = verify_json(&["--data-dir", path_str(&data)?])?;
    assert_eq!((code, &report["intact"]), (Some(0), &json!(true)), "{report:#}");
    // The refused write is not in the ledger; every read answered while full is.
    let events = read_ledger(&data)?;
    assert!(kv_written(&events, &format!("fill-{refused_i}"), 1).is_err(), "the refused write is in the ledger");
    let ids: Vec<[u8; 16]> = access_events(&events).iter().map(|(e, _)| e.request_id).collect();
    for id in &answered {
        assert!(ids.contains(&uuid_bytes(id)?), "read {id} was answered 200 on a full disk with no access event");
    }
    Ok(())
}

/// Writes zeros to a new file at `path` until the file system is full (ENOSPC).
fn fill_until_enospc(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).context("create the last filler")?;
    let chunk = vec![0u8; 4096];
    // At most 64 MiB: the tmpfs is smaller than that.
    for _ in 0..(64 << 20) / chunk.len() {
        match f.write(&chunk) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => return Ok(()),
            Err(e) => return Err(e).context("write the last filler"),
        }
    }
    bail!("wrote 64 MiB to {} without filling the disk", path.display())
}

// ---------------------------------------------------------------------------------------
// 5. Verify and pin
// ---------------------------------------------------------------------------------------

#[test]
fn the_ledger_verifies_offline_against_the_published_key_and_one_flipped_byte_breaks_it() -> Result<()> {
    let mut s = cairn_dev(None)?;
    let data = s.data_dir().to_path_buf();
    let marker = format!("audit-marker-{}", random_alnum(16)?);
    let mut requests = 0u64;
    let mut call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>, status: u16| -> Result<()> {
        let body = body.map(|b| b.to_string());
        let r = s.http(method, path, token, body.as_deref())?;
        ensure!(r.status == status, "{method} {path}: expected {status}, got {} {}", r.status, r.body);
        requests += 1;
        Ok(())
    };
    call("PUT", "/v1/secret/data/app", Some("root"), Some(json!({"data": {"k": "v1"}})), 200)?;
    call("PUT", "/v1/secret/data/app", Some("root"), Some(json!({"data": {"k": "v2"}})), 200)?;
    call("GET", "/v1/secret/data/app", Some("root"), None, 200)?;
    call("GET", &format!("/v1/secret/data/{marker}"), Some("root"), None, 404)?;
    call("GET", "/v1/secret/data/app", Some(UNKNOWN_TOKEN), None, 403)?;
    call("PUT", "/v1/secret/data/app", Some("root"), Some(json!({"options": {"cas": 0}, "data": {}})), 400)?;
    call("DELETE", "/v1/secret/data/app", Some("root"), None, 204)?;
    call("LIST", "/v1/secret/metadata", Some("root"), None, 200)?;

    // The auditor pins the key the server publishes, and saves its checkpoint.
    let keys = s.http("GET", "/v1/sys/ledger/keys", Some("root"), None)?;
    requests += 1;
    assert_eq!(keys.status, 200, "{}", keys.body);
    let keys = keys.json()?;
    let published: Vec<String> = keys["data"]["keys"]
        .as_array()
        .with_context(|| format!("no data.keys in {keys:#}"))?
        .iter()
        .map(|k| k["public_key"].as_str().map(str::to_string).with_context(|| format!("public_key of {k}")))
        .collect::<Result<_>>()?;
    ensure!(!published.is_empty() && published.iter().all(|k| k.starts_with("ed25519:")), "keys: {keys:#}");
    let key_ids: Vec<&str> =
        keys["data"]["keys"].as_array().into_iter().flatten().filter_map(|k| k["key_id"].as_str()).collect();
    let pins = s.write_file("pinned-keys.txt", &format!("{}\n", published.join("\n")))?;
    let checkpoint = s.write_file("checkpoint.json", &keys["data"]["checkpoint"].to_string())?;
    stop(&mut s)?;

    let (code, report) = verify_json(&[
        "--data-dir",
        path_str(&data)?,
        "--trusted-key",
        path_str(&pins)?,
        "--expect-checkpoint",
        path_str(&checkpoint)?,
    ])?;
    assert_eq!((code, &report["intact"]), (Some(0), &json!(true)), "{report:#}");
    let events = report["events"].as_u64().context("events")?;
    assert!(events >= requests, "{events} events for {requests} requests: {report:#}");
    assert!(report["trusted_key"].as_str().is_some_and(|k| key_ids.contains(&k)), "the pinned key matched: {report:#}");
    assert!(report["expected_checkpoint"].as_str().is_some_and(|c| c.starts_with("matched")), "{report:#}");
    // The offline tool lists the same keys the server published.
    let offline = cairn(&["ledger", "public-key", "--data-dir", path_str(&data)?])?;
    assert!(offline.status.success());
    let offline_keys: Vec<String> =
        stdout(&offline).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    assert_eq!(offline_keys, published);

    // Flip one byte of the marker read's access event (the path is stored in clear).
    let marked = read_ledger(&data)?;
    let seq = access_events(&marked)
        .iter()
        .find(|(_, a)| a.path.ends_with(&marker))
        .map(|(e, _)| e.seq)
        .context("no access event for the marker path")?;
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(data.join("ledger").join("segments"))? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker.as_bytes()) {
            hits.push((path, bytes, at));
        }
    }
    ensure!(hits.len() == 1, "the marker should be in exactly one segment: {:?}", hits.len());
    let (segment, mut bytes, at) = hits.remove(0);
    bytes[at + 3] ^= 0x01;
    std::fs::write(&segment, &bytes)?;

    let (code, report) = verify_json(&["--data-dir", path_str(&data)?, "--trusted-key", path_str(&pins)?])?;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["intact"], json!(false), "{report:#}");
    assert_eq!(report["failure"]["seq"], json!(seq), "the report names the tampered event: {report:#}");
    Ok(())
}
