//! What the attacker saw: `cairn replay --at T --unseal-key-file F…` opens the value every
//! KV path held at T with the unseal key shares, as an incident responder runs it on a
//! stopped server's data directory. Values destroyed before T say when; values live at T
//! but erased since say that they can no longer be recovered; what was written after T is
//! not shown; wrong keys and too few shares print nothing and exit 2.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use e2e::{ConfigServer, DevServer, Options, Server, Target, cairn, random_alnum, stdout};
use serde_json::{Value, json};

/// `method /v1/path` with `token`, which must succeed; its JSON answer (or null).
fn call(s: &Server, token: &str, method: &str, path: &str, body: Value) -> Result<Value> {
    let body = if body.is_null() { None } else { Some(body.to_string()) };
    let reply = s.http(method, &format!("/v1/{path}"), Some(token), body.as_deref())?;
    ensure!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    if reply.body.trim().is_empty() { Ok(Value::Null) } else { reply.json() }
}

/// The current time as RFC 3339, with a pause on each side so that no event before or
/// after it shares its commit time.
fn moment() -> Result<String> {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let text = replay::time::rfc3339(u64::try_from(now.as_nanos())?);
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(text)
}

/// `cairn replay --data-dir DIR --at AT` with one `--unseal-key-file` per file, and `extra`.
fn replay_with_keys(dir: &Path, at: &str, files: &[PathBuf], extra: &[&str]) -> Result<Output> {
    let mut args = vec!["replay".to_string(), "--data-dir".into(), dir.display().to_string(), "--at".into(), at.into()];
    for f in files {
        args.extend(["--unseal-key-file".to_string(), f.display().to_string()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    cairn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn succeeded(out: &Output) -> Result<String> {
    ensure!(out.status.success(), "cairn failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(stdout(out))
}

fn write_key(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn values_at_a_moment_open_with_three_of_five_shares() -> Result<()> {
    let mut s = ConfigServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })?;
    let init = s.http("PUT", "/v1/sys/init", None, Some(r#"{"secret_shares":5,"secret_threshold":3}"#))?;
    ensure!(init.status == 200, "init: {} {}", init.status, init.body);
    let init = init.json()?;
    let root = init["root_token"].as_str().context("root_token")?.to_owned();
    let hex_keys: Vec<String> = serde_json::from_value(init["keys"].clone())?;
    let b64_keys: Vec<String> = serde_json::from_value(init["keys_base64"].clone())?;
    for key in &b64_keys[1..4] {
        call(&s, &root, "PUT", "sys/unseal", json!({ "key": key }))?;
    }
    let secret = |tag: &str| -> Result<String> { Ok(format!("{tag}-{}", random_alnum(20)?)) };
    let (first, second, third) = (secret("first")?, secret("second")?, secret("third")?);
    let (burned, other, kept, replaced, cubby) =
        (secret("burned")?, secret("other")?, secret("kept")?, secret("replaced")?, secret("cubby")?);
    let (later, replacement) = (secret("later")?, secret("replacement")?);

    call(&s, &root, "POST", "sys/mounts/secret", json!({"type": "kv", "options": {"version": "2"}}))?;
    call(&s, &root, "POST", "sys/mounts/kv1", json!({"type": "kv", "options": {"version": "1"}}))?;
    for value in [&first, &second] {
        call(&s, &root, "POST", "secret/data/app", json!({"data": {"password": value}}))?;
    }
    // A keyring rotation: v3 is sealed under the second term, v1 and v2 under the first,
    // and the server still opens both.
    call(&s, &root, "PUT", "sys/rotate", Value::Null)?;
    call(&s, &root, "POST", "secret/data/app", json!({"data": {"password": third}}))?;
    for (version, value) in [(1, &first), (3, &third)] {
        let read = call(&s, &root, "GET", &format!("secret/data/app?version={version}"), Value::Null)?;
        ensure!(read["data"]["data"]["password"] == json!(value), "v{version} after the rotation: {read}");
    }
    call(&s, &root, "POST", "secret/delete/app", json!({"versions": [3]}))?;
    call(&s, &root, "POST", "secret/data/burned", json!({"data": {"v": burned}}))?;
    call(&s, &root, "PUT", "secret/destroy/burned", json!({"versions": [1]}))?;
    call(&s, &root, "POST", "secret/metadata/pruned", json!({"max_versions": 2}))?;
    for n in 1..=3 {
        call(&s, &root, "POST", "secret/data/pruned", json!({"data": {"n": n}}))?;
    }
    call(&s, &root, "POST", "secret/data/other", json!({"data": {"v": other}}))?;
    call(&s, &root, "PUT", "kv1/kept", json!({"v": kept}))?;
    call(&s, &root, "PUT", "kv1/replaced", json!({"v": replaced}))?;
    call(&s, &root, "PUT", "cubbyhole/note", json!({"note": cubby}))?;
    let t = moment()?;

    // After T: v1 of secret/app destroyed, secret/other deleted with its metadata, a KV v1
    // entry overwritten (each erases a payload live at T), and a new secret.
    call(&s, &root, "PUT", "secret/destroy/app", json!({"versions": [1]}))?;
    call(&s, &root, "DELETE", "secret/metadata/other", Value::Null)?;
    call(&s, &root, "PUT", "kv1/replaced", json!({"v": replacement}))?;
    call(&s, &root, "POST", "secret/data/later", json!({"data": {"v": later}}))?;
    s.stop(std::time::Duration::from_secs(5))?;
    let data = s.data_dir().to_path_buf();

    // Three shares, each as an operator saves it: hex, base64, and the line init prints.
    let keys = tempfile::tempdir()?;
    let files = vec![
        write_key(keys.path(), "a", &format!("{}\n", hex_keys[0]))?,
        write_key(keys.path(), "b", &b64_keys[2])?,
        write_key(keys.path(), "c", &format!("Unseal Key 5: {}\n", b64_keys[4]))?,
    ];
    let out = succeeded(&replay_with_keys(&data, &t, &files, &["--format", "json"])?)?;
    let report: Value = serde_json::from_str(&out).context("JSON report")?;
    let at_seq = report["seq"].as_u64().context("seq")?;
    let values = &report["values"];
    let app = &values["secret/app"]["versions"];
    ensure!(app["2"] == json!({"state": "value", "value": {"password": second}}), "v2: {}", app);
    ensure!(app["3"] == json!({"state": "value", "value": {"password": third}, "deleted": true}), "v3: {}", app);
    ensure!(app["1"]["state"] == "erased_after", "v1 was live at T and destroyed after it: {}", app);
    ensure!(app["1"]["erased_at_seq"].as_u64().is_some_and(|n| n > at_seq), "the later destroy's seq: {}", app);
    let burned_v1 = &values["secret/burned"]["versions"]["1"];
    ensure!(burned_v1["state"] == "destroyed", "{burned_v1}");
    ensure!(burned_v1["erased_at_seq"].as_u64().is_some_and(|n| n <= at_seq), "destroyed before T: {burned_v1}");
    let pruned = &values["secret/pruned"]["versions"];
    ensure!(pruned["1"]["state"] == "destroyed", "pruned by max_versions before T: {pruned}");
    ensure!(pruned["1"]["erased_at_seq"].as_u64().is_some_and(|n| n <= at_seq), "{pruned}");
    ensure!(pruned["3"] == json!({"state": "value", "value": {"n": 3}}), "{pruned}");
    ensure!(values["secret/other"]["versions"]["1"]["state"] == "erased_after", "metadata deleted after T: {values}");
    let kept_row = json!({"kv_version": 1, "value": {"state": "value", "value": {"v": kept}}});
    ensure!(values["kv1/kept"] == kept_row, "{values}");
    ensure!(values["kv1/replaced"]["value"]["state"] == "erased_after", "overwritten after T: {values}");
    let cubbyholes: Vec<&Value> = values
        .as_object()
        .context("values")?
        .iter()
        .filter(|(k, _)| k.starts_with("cubbyhole/") && k.ends_with("/note"))
        .map(|(_, v)| &v["value"]["value"])
        .collect();
    ensure!(cubbyholes == [&json!({"note": cubby})], "the root token's cubbyhole: {values}");
    ensure!(values.get("secret/later").is_none(), "written after T: {values}");
    for absent in [&first, &burned, &later, &replacement] {
        ensure!(!out.contains(absent.as_str()), "a value not readable at T is shown");
    }
    // The report itself is the one without keys, plus the values.
    ensure!(report["kv"]["secret/app"]["current_version"] == 3, "{}", report["kv"]);

    let text = succeeded(&replay_with_keys(&data, &t, &files, &[])?)?;
    ensure!(text.contains(&second) && text.contains(&kept), "{text}");
    ensure!(text.contains("erased after T (seq ") && text.contains("can no longer be recovered"), "{text}");
    ensure!(text.contains("destroyed at seq "), "{text}");
    ensure!(!text.contains(&later) && !text.contains(&first), "{text}");

    // Without keys, no value.
    let plain = succeeded(&replay_with_keys(&data, &t, &[], &["--format", "json"])?)?;
    ensure!(!plain.contains(&second) && !plain.contains("\"values\""), "a report without keys shows no value");

    // Too few shares, and wrong ones: exit 2, nothing on stdout, no value on stderr.
    let refused = |out: Output, why: &str| -> Result<()> {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status.code());
        ensure!(out.stdout.is_empty(), "printed something: {}", stdout(&out));
        ensure!(err.contains(why), "{err}");
        for v in [&second, &third, &kept] {
            ensure!(!err.contains(v.as_str()), "a value in the error");
        }
        Ok(())
    };
    refused(replay_with_keys(&data, &t, &files[..2], &[])?, "2 key shares given, 3 needed")?;
    let forged: Vec<PathBuf> = (1u8..=3)
        .map(|x| {
            let mut share = vec![x];
            share.extend(random_alnum(32)?.bytes());
            write_key(keys.path(), &format!("forged{x}"), &base64::engine::general_purpose::STANDARD.encode(share))
        })
        .collect::<Result<_>>()?;
    refused(replay_with_keys(&data, &t, &forged, &[])?, "do not open this ledger's root key")?;
    let other_barrier = write_key(keys.path(), "dev", &base64::engine::general_purpose::STANDARD.encode([7u8; 32]))?;
    refused(replay_with_keys(&data, &t, &[other_barrier], &[])?, "do not open this ledger's root key")?;
    let garbage = write_key(keys.path(), "garbage", "not a key at all!\n")?;
    refused(replay_with_keys(&data, &t, &[garbage], &[])?, "not an unseal key share")?;
    Ok(())
}

#[test]
fn a_dev_servers_unseal_key_opens_its_values() -> Result<()> {
    let mut s = DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })?;
    let value = format!("dev-{}", random_alnum(20)?);
    call(&s, "root", "POST", "secret/data/dev", json!({"data": {"v": value}}))?;
    let banner = s.log();
    s.stop(std::time::Duration::from_secs(5))?;
    // The line the dev banner prints, saved as it is.
    let line = banner.lines().find(|l| l.starts_with("Unseal Key: ")).context("the dev banner's unseal key")?;
    let keys = tempfile::tempdir()?;
    let file = write_key(keys.path(), "dev-key", line)?;
    let out = succeeded(&replay_with_keys(s.data_dir(), "end", &[file], &["--format", "json"])?)?;
    let report: Value = serde_json::from_str(&out)?;
    ensure!(report["values"]["secret/dev"]["versions"]["1"]["value"] == json!({"v": value}), "{}", report["values"]);
    Ok(())
}
