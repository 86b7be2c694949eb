//! Auto-unseal with Vault's transit seal, against a real OpenBao as the key service.
//!
//! A real OpenBao dev server holds the transit key (`transit/keys/autounseal`) and a token
//! whose policy can only encrypt and decrypt with it. cairn is configured with
//! `seal "transit" { … }`, initialized with `bao operator init -recovery-shares=3
//! -recovery-threshold=2`, and must then unseal itself with no human, at init and at every
//! start. With the key service down it stays sealed, and two recovery shares unseal it
//! (cairn's documented deviation: Vault's recovery keys cannot unseal).
//!
//! The init and seal-status shapes were recorded from OpenBao 2.x configured the same way;
//! `init_and_status_answer_like_openbao` checks both servers give them.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, DevServer, Options, Server, Target, files_containing, random_alnum};
use serde_json::{Value, json};

const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How long a server may take to unseal itself once the key service answers.
const UNSEAL_WITHIN: Duration = Duration::from_secs(30);

/// A real OpenBao dev server with the transit engine, the key `autounseal`, and a token that
/// may only encrypt and decrypt with it.
struct KeyService {
    server: DevServer,
    token: String,
}

fn key_service() -> Result<KeyService> {
    let server = DevServer::start_with(Options { target: Some(Target::OpenBao), ..Options::default() })?;
    server.bao(&["secrets", "enable", "transit"])?.success()?;
    server.bao(&["write", "-f", "transit/keys/autounseal"])?.success()?;
    let policy = server.write_file(
        "autounseal.hcl",
        "path \"transit/encrypt/autounseal\" {\n  capabilities = [\"update\"]\n}\n\
         path \"transit/decrypt/autounseal\" {\n  capabilities = [\"update\"]\n}\n",
    )?;
    let policy = policy.to_string_lossy().into_owned();
    server.bao(&["policy", "write", "autounseal", &policy])?.success()?;
    // A token no file could hold by chance: the test looks for it in logs and the ledger.
    let token = format!("transit-{}", random_alnum(24)?);
    let id = format!("-id={token}");
    server.bao(&["token", "create", &id, "-policy=autounseal", "-orphan", "-period=24h"])?.success()?;
    Ok(KeyService { server, token })
}

fn seal_stanza(service: &KeyService) -> String {
    format!(
        "seal \"transit\" {{\n  address    = \"{}\"\n  token      = \"{}\"\n  key_name   = \"autounseal\"\n  mount_path = \"transit/\"\n}}\n",
        service.server.addr(),
        service.token
    )
}

fn start(target: Target, service: &KeyService) -> Result<ConfigServer> {
    ConfigServer::start_with(Options { target: Some(target), config: seal_stanza(service), ..Options::default() })
}

fn seal_status(s: &Server) -> Result<Value> {
    let r = s.http("GET", "/v1/sys/seal-status", None, None)?;
    ensure!(r.status == 200, "seal-status: {} {}", r.status, r.body);
    r.json()
}

/// Waits (at most `within`) until `sys/seal-status` says `sealed == sealed`.
fn wait_sealed(s: &Server, sealed: bool, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let status = seal_status(s)?;
        if status["sealed"] == json!(sealed) {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!("still sealed={} after {within:?}: {status}\n--- server output ---\n{}", !sealed, s.log());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `bao operator init` with recovery shares: the root token and the recovery shares (base64).
fn init(s: &Server) -> Result<(String, Vec<String>)> {
    let run = s.bao(&["operator", "init", "-recovery-shares=3", "-recovery-threshold=2", "-format=json"])?.success()?;
    let out = run.json()?;
    let root = out["root_token"].as_str().context("root_token")?.to_string();
    let shares: Vec<String> = out["recovery_keys_b64"]
        .as_array()
        .context("recovery_keys_b64")?
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    ensure!(shares.len() == 3, "three recovery shares: {out}");
    ensure!(out["unseal_keys_b64"] == json!([]), "no unseal keys with an auto-unseal seal: {out}");
    Ok((root, shares))
}

#[test]
fn init_and_status_answer_like_openbao() -> Result<()> {
    let service = key_service()?;
    for target in [Target::OpenBao, Target::Cairn] {
        let name = target.name();
        let s = start(target, &service)?;
        let before = seal_status(&s)?;
        for (field, want) in [
            ("type", json!("transit")),
            ("initialized", json!(false)),
            ("sealed", json!(true)),
            ("recovery_seal", json!(true)),
            ("recovery_seal_type", json!("shamir")),
            ("t", json!(0)),
            ("n", json!(0)),
        ] {
            ensure!(before[field] == want, "{name}: seal-status {field} before init: {before}");
        }
        // secret_shares/secret_threshold do not apply to an auto-unseal seal.
        for (body, message) in [
            (
                r#"{"secret_shares":5,"secret_threshold":3,"recovery_shares":3,"recovery_threshold":2}"#,
                "parameters secret_shares,secret_threshold not applicable to seal type transit",
            ),
            (
                r#"{"secret_shares":1,"recovery_shares":3,"recovery_threshold":2}"#,
                "parameters secret_shares not applicable to seal type transit",
            ),
        ] {
            let r = s.http("PUT", "/v1/sys/init", None, Some(body))?;
            ensure!(r.status == 400, "{name}: {body} answered {} {}", r.status, r.body);
            ensure!(r.json()?["errors"] == json!([message]), "{name}: {body} answered {}", r.body);
        }
        ensure!(seal_status(&s)?["initialized"] == json!(false), "{name}: a refused init changed nothing");
        let r = s.http(
            "PUT",
            "/v1/sys/init",
            None,
            Some(r#"{"secret_shares":0,"secret_threshold":0,"recovery_shares":3,"recovery_threshold":2}"#),
        )?;
        ensure!(r.status == 200, "{name}: init answered {} {}", r.status, r.body);
        let out = r.json()?;
        let mut keys: Vec<&str> = out.as_object().context("an object")?.keys().map(String::as_str).collect();
        keys.sort_unstable();
        ensure!(
            keys == ["keys", "keys_base64", "recovery_keys", "recovery_keys_base64", "root_token"],
            "{name}: init answer fields: {out}"
        );
        ensure!(out["keys"] == json!([]) && out["keys_base64"] == json!([]), "{name}: {out}");
        ensure!(out["recovery_keys"].as_array().map(Vec::len) == Some(3), "{name}: {out}");
        // Unsealed by the key service, with no unseal call.
        let after = wait_sealed(&s, false, UNSEAL_WITHIN)?;
        for (field, want) in
            [("type", json!("transit")), ("recovery_seal", json!(true)), ("t", json!(2)), ("n", json!(3))]
        {
            ensure!(after[field] == want, "{name}: seal-status {field} after init: {after}");
        }
        // sys/unseal on an auto-unsealed server answers the (unsealed) status.
        let key = out["recovery_keys_base64"][0].as_str().context("a recovery key")?;
        let r = s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": key }).to_string()))?;
        ensure!(
            r.status == 200 && r.json()?["sealed"] == json!(false),
            "{name}: unseal answered {} {}",
            r.status,
            r.body
        );
    }
    Ok(())
}

#[test]
fn auto_unseal_at_init_and_restart_and_recovery_shares_when_the_key_service_is_down() -> Result<()> {
    let mut service = key_service()?;
    let mut cairn = start(Target::Cairn, &service)?;
    let (root, recovery) = init(&cairn)?;
    let status = wait_sealed(&cairn, false, UNSEAL_WITHIN)?;
    ensure!(status["type"] == json!("transit") && status["t"] == json!(2) && status["n"] == json!(3), "{status}");

    let value = random_alnum(20)?;
    cairn.bao_as(&root, &["secrets", "enable", "-path=secret", "kv-v2"])?.success()?;
    cairn.bao_as(&root, &["kv", "put", "secret/app", &format!("password={value}")])?.success()?;

    // A restart unseals itself through the key service.
    cairn.stop(STOP_WITHIN)?;
    cairn.start_again()?;
    wait_sealed(&cairn, false, UNSEAL_WITHIN)?;
    let read = cairn.bao_as(&root, &["kv", "get", "-field=password", "secret/app"])?.success()?;
    ensure!(read.stdout.trim() == value, "after an auto-unsealed restart: {read}");

    // sys/seal seals it, and it stays sealed (as OpenBao: until a restart or recovery shares).
    cairn.bao_as(&root, &["operator", "seal"])?.success()?;
    thread::sleep(Duration::from_secs(2));
    ensure!(seal_status(&cairn)?["sealed"] == json!(true), "a sealed server stays sealed");
    cairn.bao(&["operator", "unseal", &recovery[0]])?.success()?;
    cairn.bao(&["operator", "unseal", &recovery[1]])?.success()?;
    wait_sealed(&cairn, false, Duration::from_secs(5))?;

    // The key service goes away: a restart stays sealed, retrying in the background.
    service.server.stop(STOP_WITHIN)?;
    cairn.stop(STOP_WITHIN)?;
    cairn.start_again()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cairn.log().contains("auto-unseal failed") {
        ensure!(Instant::now() < deadline, "no auto-unseal failure logged\n{}", cairn.log());
        thread::sleep(Duration::from_millis(100));
    }
    ensure!(seal_status(&cairn)?["sealed"] == json!(true), "sealed while the key service is down");
    let denied = cairn.bao_as(&root, &["kv", "get", "secret/app"])?;
    ensure!(denied.code != Some(0), "a sealed server serves nothing: {denied}");

    // Two recovery shares unseal it.
    let first = cairn.bao(&["operator", "unseal", "-format=json", &recovery[2]])?.success()?.json()?;
    ensure!(first["sealed"] == json!(true) && first["progress"] == json!(1), "one share: {first}");
    let second = cairn.bao(&["operator", "unseal", "-format=json", &recovery[0]])?.success()?.json()?;
    ensure!(second["sealed"] == json!(false), "two shares: {second}");
    let read = cairn.bao_as(&root, &["kv", "get", "-field=password", "secret/app"])?.success()?;
    ensure!(read.stdout.trim() == value, "after a recovery unseal: {read}");

    // The transit token reaches neither the log nor the ledger.
    cairn.stop(STOP_WITHIN)?;
    ensure!(!cairn.log().contains(&service.token), "the transit token is in the log");
    let holding = files_containing(cairn.data_dir(), service.token.as_bytes())?;
    ensure!(holding.is_empty(), "the transit token is in {holding:?}");
    Ok(())
}

#[test]
fn a_wrong_token_is_refused_at_init_and_the_server_stays_uninitialized() -> Result<()> {
    let service = key_service()?;
    let wrong = KeyService { token: format!("transit-{}", random_alnum(24)?), ..service };
    let cairn = start(Target::Cairn, &wrong)?;
    let r = cairn.http("PUT", "/v1/sys/init", None, Some(r#"{"recovery_shares":1,"recovery_threshold":1}"#))?;
    ensure!(r.status == 500, "init with a refused token: {} {}", r.status, r.body);
    ensure!(r.body.contains("permission denied"), "the key service's error is shown: {}", r.body);
    ensure!(!r.body.contains(&wrong.token) && !cairn.log().contains(&wrong.token), "the token is never shown");
    ensure!(seal_status(&cairn)?["initialized"] == json!(false), "nothing was initialized");
    Ok(())
}

/// A three-node cluster with a transit seal: every node unseals itself (a joined node as
/// soon as the replicated ledger holds the initialisation), and a node killed and started
/// again rejoins unsealed, with no human.
#[test]
fn a_cluster_with_a_transit_seal_restarts_without_humans() -> Result<()> {
    let service = key_service()?;
    let raft_node = |id: &str, join: Option<&str>| {
        ConfigServer::start_with(Options {
            target: Some(Target::Cairn),
            config: seal_stanza(&service),
            raft: Some(e2e::Raft {
                node_id: id.into(),
                retry_join: join.map(|a| vec![a.to_owned()]).unwrap_or_default(),
                pipeline_depth: None,
                leader_ca_cert_file: None,
            }),
            ..Options::default()
        })
    };
    let first = raft_node("node1", None)?;
    let (root, _recovery) = init(&first)?;
    wait_sealed(&first, false, UNSEAL_WITHIN)?;
    let mut nodes = vec![first];
    for id in ["node2", "node3"] {
        let n = raft_node(id, Some(&nodes[0].addr()))?;
        nodes.push(n);
    }
    for n in &nodes[1..] {
        wait_sealed(n, false, Duration::from_secs(60))?;
    }
    let enable = nodes[0].http(
        "POST",
        "/v1/sys/mounts/secret",
        Some(&root),
        Some(r#"{"type":"kv","options":{"version":"2"}}"#),
    )?;
    ensure!(enable.status == 204, "enable: {} {}", enable.status, enable.body);
    let write = nodes[2].http("PUT", "/v1/secret/data/app", Some(&root), Some(r#"{"data":{"v":"1"}}"#))?;
    ensure!(write.status == 200, "write: {} {}", write.status, write.body);
    // Kill one node (whichever), start it again: it unseals itself and serves.
    nodes[1].kill()?;
    nodes[1].start_again()?;
    wait_sealed(&nodes[1], false, UNSEAL_WITHIN)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = nodes[1].http("GET", "/v1/secret/data/app", Some(&root), None)?;
        if r.status == 200 {
            assert_eq!(r.json()?["data"]["data"]["v"], "1");
            break;
        }
        ensure!(Instant::now() < deadline, "the restarted node did not serve: {} {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in &mut nodes {
        n.stop(STOP_WITHIN)?;
    }
    Ok(())
}
