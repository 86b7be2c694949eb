//! Proofs as an auditor uses them: save yesterday's signed checkpoint from
//! `sys/ledger/checkpoint`, let the server write more, fetch a consistency proof and an
//! inclusion proof, and check them offline with `cairn ledger verify-proof` and the pinned
//! keys. Altered paths, swapped sizes, proofs for other sizes and checkpoints of another
//! ledger are refused. The endpoints need sudo, and refuse bad numbers with 400.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use e2e::{DevServer, Options, Server, Target, cairn, stdout};
use ledger::segments::FrameScan;
use serde_json::{Value, json};

fn cairn_dev() -> Result<DevServer> {
    DevServer::start_with(Options { target: Some(Target::Cairn), ..Options::default() })
}

/// `GET path` as `token`; the answer must have `status`.
fn get(s: &Server, path: &str, token: &str, status: u16) -> Result<Value> {
    let r = s.http("GET", &format!("/v1/{path}"), Some(token), None)?;
    ensure!(r.status == status, "GET {path}: expected {status}, got {} {}", r.status, r.body);
    r.json()
}

fn write_some(s: &Server, n: usize) -> Result<()> {
    for i in 0..n {
        let body = json!({"data": {"n": i}}).to_string();
        let r = s.http("PUT", "/v1/secret/data/audited", Some("root"), Some(&body))?;
        ensure!(r.status == 200, "write: {} {}", r.status, r.body);
    }
    Ok(())
}

/// The hex hash with its first digit changed.
fn flip_first_digit(h: &str) -> String {
    match h.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", h.get(1..).unwrap_or_default()),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("not UTF-8: {}", p.display()))
}

/// `cairn ledger verify-proof ARGS`: exit code and stdout.
fn verify_proof(args: &[&str]) -> Result<(Option<i32>, String)> {
    let mut all = vec!["ledger", "verify-proof"];
    all.extend_from_slice(args);
    let out = cairn(&all)?;
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code(), text))
}

fn consistency_args<'a>(proof: &'a str, old: &'a str, new: &'a str, pins: &'a str) -> Vec<&'a str> {
    vec!["--proof", proof, "--old-checkpoint", old, "--checkpoint", new, "--trusted-key", pins]
}

fn expect_valid(args: &[&str]) -> Result<String> {
    let (code, text) = verify_proof(args)?;
    ensure!(code == Some(0) && text.starts_with("valid: "), "verify-proof {args:?} should accept: {code:?} {text}");
    Ok(text)
}

fn expect_refused(args: &[&str], reason: &str) -> Result<()> {
    let (code, text) = verify_proof(args)?;
    ensure!(code == Some(1), "verify-proof {args:?} should refuse (exit 1): {code:?} {text}");
    ensure!(text.contains("REFUSED") && text.contains(reason), "refusal should say {reason:?}: {text}");
    Ok(())
}

/// The hash of event `seq`, read from the segment files as an auditor holding a copy would.
fn event_hash(data_dir: &Path, seq: u64) -> Result<String> {
    let seg_dir = data_dir.join("ledger").join("segments");
    for item in FrameScan::new(&seg_dir).with_context(|| format!("open {}", seg_dir.display()))? {
        let (frame, _) = item.context("read a frame")?;
        if let Some(fe) = frame.events.iter().find(|fe| fe.event.seq == seq) {
            return Ok(fe.hash.to_hex());
        }
    }
    anyhow::bail!("no event {seq} in {}", seg_dir.display())
}

fn pinned_keys(servers: &[&Server], file: &Path) -> Result<PathBuf> {
    let mut lines = Vec::new();
    for s in servers {
        let keys = get(s, "sys/ledger/keys", "root", 200)?;
        for k in keys["data"]["keys"].as_array().context("keys")? {
            lines.push(k["public_key"].as_str().context("public_key")?.to_string());
        }
    }
    std::fs::write(file, lines.join("\n") + "\n")?;
    Ok(file.to_path_buf())
}

#[test]
fn an_auditor_checks_consistency_and_inclusion_offline() -> Result<()> {
    let s = cairn_dev()?;
    let other = cairn_dev()?;
    let dir = tempfile::tempdir()?;
    let file = |name: &str| dir.path().join(name);
    let save = |name: &str, v: &Value| -> Result<PathBuf> {
        let p = file(name);
        std::fs::write(&p, v.to_string())?;
        Ok(p)
    };
    let pins = pinned_keys(&[&s], &file("pins.txt"))?;
    let pins = path_str(&pins)?.to_string();

    // Yesterday: the auditor saves the checkpoint (whole answer) and its note.
    let yesterday = get(&s, "sys/ledger/checkpoint", "root", 200)?;
    let old_size = yesterday["data"]["seq"].as_u64().context("seq")?;
    assert_eq!(yesterday["data"]["tree_size"], json!(old_size), "{yesterday:#}");
    let note = yesterday["data"]["note"].as_str().context("note")?;
    let lines: Vec<&str> = note.lines().collect();
    let ledger_id = yesterday["data"]["ledger_id"].as_str().context("ledger_id")?;
    assert_eq!(lines.first().copied(), Some(format!("cairn.ledger/{ledger_id}").as_str()), "{note}");
    assert_eq!(lines.get(1).copied(), Some(old_size.to_string().as_str()), "{note}");
    assert!(lines.get(4).is_some_and(|l| l.starts_with("\u{2014} cairn.ledger/")), "{note}");
    let old_json = save("yesterday.json", &yesterday)?;
    let old_note = file("yesterday.note");
    std::fs::write(&old_note, note)?;

    // More events are written; today's checkpoint.
    write_some(&s, 25)?;
    let today = get(&s, "sys/ledger/checkpoint", "root", 200)?;
    let new_size = today["data"]["seq"].as_u64().context("seq")?;
    ensure!(new_size > old_size + 25, "{old_size} -> {new_size}");
    let new_json = save("today.json", &today["data"])?;
    let new_note = file("today.note");
    std::fs::write(&new_note, today["data"]["note"].as_str().context("note")?)?;

    let proof = get(&s, &format!("sys/ledger/proof/consistency?first={old_size}&second={new_size}"), "root", 200)?;
    let d = &proof["data"];
    assert_eq!((d["first"].as_u64(), d["second"].as_u64()), (Some(old_size), Some(new_size)), "{proof:#}");
    assert_eq!(d["first_root"], yesterday["data"]["root"]);
    assert_eq!(d["second_root"], today["data"]["root"]);
    let proof_file = save("consistency.json", &proof)?;
    let (p, o, n) = (path_str(&proof_file)?, path_str(&old_json)?, path_str(&new_json)?);
    let line = expect_valid(&consistency_args(p, o, n, &pins))?;
    assert!(
        line.contains(&format!("tree size {new_size}")) && line.contains(&format!("tree size {old_size}")),
        "{line}"
    );
    // The notes work as checkpoints too, and the bare data object as the proof.
    let data_only = save("consistency-data.json", d)?;
    expect_valid(&consistency_args(path_str(&data_only)?, path_str(&old_note)?, path_str(&new_note)?, &pins))?;

    // Refusals. Sizes swapped (checkpoints, or the proof's numbers):
    expect_refused(&consistency_args(p, n, o, &pins), "newer than the new one")?;
    let mut swapped = d.clone();
    swapped["first"] = json!(new_size);
    swapped["second"] = json!(old_size);
    let swapped = save("swapped.json", &swapped)?;
    expect_refused(&consistency_args(path_str(&swapped)?, o, n, &pins), "the proof goes from size")?;
    // Any altered hash of the path:
    let path_len = d["consistency_path"].as_array().context("consistency_path")?.len();
    ensure!(path_len > 0, "a proof between different sizes has a path: {proof:#}");
    for i in 0..path_len {
        let mut altered = d.clone();
        let h = altered["consistency_path"][i].as_str().context("hash")?.to_string();
        altered["consistency_path"][i] = json!(flip_first_digit(&h));
        let f = save(&format!("altered-{i}.json"), &altered)?;
        expect_refused(&consistency_args(path_str(&f)?, o, n, &pins), "does not lead to both")?;
    }
    // A proof for other sizes than the checkpoints':
    let shorter =
        get(&s, &format!("sys/ledger/proof/consistency?first={}&second={new_size}", old_size + 1), "root", 200)?;
    let shorter = save("other-sizes.json", &shorter)?;
    expect_refused(&consistency_args(path_str(&shorter)?, o, n, &pins), "the proof goes from size")?;
    // An old checkpoint of another ledger (whose key the auditor also pins):
    let both_pins = pinned_keys(&[&s, &other], &file("both-pins.txt"))?;
    let foreign = save("foreign.json", &get(&other, "sys/ledger/checkpoint", "root", 200)?)?;
    expect_refused(&consistency_args(p, path_str(&foreign)?, n, path_str(&both_pins)?), "different ledgers")?;
    // …and without its key pinned, its signature is not trusted.
    expect_refused(&consistency_args(p, path_str(&foreign)?, n, &pins), "not among the trusted keys")?;

    // Inclusion of an event written after yesterday, in today's tree.
    let seq = old_size + 3;
    let leaf = event_hash(s.data_dir(), seq)?;
    let incl = get(&s, &format!("sys/ledger/proof/inclusion?seq={seq}&tree_size={new_size}"), "root", 200)?;
    let di = &incl["data"];
    assert_eq!((di["leaf_index"].as_u64(), di["tree_size"].as_u64()), (Some(seq - 1), Some(new_size)), "{incl:#}");
    assert_eq!(di["leaf_hash"], json!(leaf));
    assert_eq!(di["root_hash"], today["data"]["root"]);
    let incl_file = save("inclusion.json", &incl)?;
    let ip = path_str(&incl_file)?;
    let base = ["--proof", ip, "--checkpoint", n, "--trusted-key", pins.as_str()];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let args = with(&["--leaf-hash", &leaf, "--seq", &seq.to_string()]);
    let line = expect_valid(&strs(&args))?;
    assert!(line.contains(&format!("event {seq} with hash {leaf}")), "{line}");
    expect_valid(&base)?;
    let note_args = ["--proof", ip, "--checkpoint", path_str(&new_note)?, "--trusted-key", pins.as_str()];
    expect_valid(&note_args)?;
    let other_leaf = event_hash(s.data_dir(), seq + 1)?;
    let args = with(&["--leaf-hash", &other_leaf]);
    expect_refused(&strs(&args), "leaf hash is not the one given")?;
    let args = with(&["--seq", &(seq + 1).to_string()]);
    expect_refused(&strs(&args), "not seq")?;
    // Against yesterday's checkpoint (another size), and with an altered path.
    expect_refused(&["--proof", ip, "--checkpoint", o, "--trusted-key", pins.as_str()], "tree size")?;
    let mut altered = di.clone();
    let h = altered["inclusion_path"][0].as_str().context("hash")?.to_string();
    altered["inclusion_path"][0] = json!(flip_first_digit(&h));
    let f = save("altered-inclusion.json", &altered)?;
    expect_refused(&["--proof", path_str(&f)?, "--checkpoint", n, "--trusted-key", pins.as_str()], "inclusion path")?;
    Ok(())
}

#[test]
fn the_endpoints_need_sudo_and_refuse_bad_numbers() -> Result<()> {
    let s = cairn_dev()?;
    let policy = json!({"policy": "path \"sys/ledger/*\" { capabilities = [\"read\"] }"}).to_string();
    let r = s.http("PUT", "/v1/sys/policies/acl/ledger-reader", Some("root"), Some(&policy))?;
    ensure!(r.status == 204, "policy: {} {}", r.status, r.body);
    let r = s.http("POST", "/v1/auth/token/create", Some("root"), Some(r#"{"policies":["ledger-reader"]}"#))?;
    let token = r.json()?["auth"]["client_token"].as_str().context("client_token")?.to_string();
    for path in ["sys/ledger/checkpoint", "sys/ledger/proof/inclusion?seq=1", "sys/ledger/proof/consistency?first=1"] {
        let v = get(&s, path, &token, 403)?;
        assert!(v["errors"].is_array(), "{v}");
    }
    // The keys stay readable without sudo.
    get(&s, "sys/ledger/keys", &token, 200)?;

    let last = get(&s, "sys/ledger/checkpoint", "root", 200)?["data"]["seq"].as_u64().context("seq")?;
    for bad in [
        "proof/inclusion".to_string(),
        "proof/inclusion?seq=0".into(),
        "proof/inclusion?seq=abc".into(),
        "proof/inclusion?seq=-1".into(),
        "proof/inclusion?seq=1&tree_size=0".into(),
        "proof/inclusion?seq=18446744073709551616".into(),
        "proof/inclusion?seq=1&tree_size=18446744073709551615".into(),
        format!("proof/inclusion?seq={}&tree_size={last}", last + 1),
        format!("proof/inclusion?seq={last}&tree_size=1"),
        "proof/consistency".into(),
        "proof/consistency?first=0&second=1".into(),
        "proof/consistency?first=2&second=1".into(),
        "proof/consistency?first=1&second=99999999999999999999".into(),
        "proof/consistency?first=1&second=18446744073709551615".into(),
        "proof/consistency?first=18446744073709551615".into(),
        "proof/consistency?first=1&second=1.5".into(),
    ] {
        let v = get(&s, &format!("sys/ledger/{bad}"), "root", 400)?;
        let errors = v["errors"].as_array().with_context(|| format!("{bad}: {v}"))?;
        ensure!(errors.len() == 1 && errors[0].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {v}");
    }
    // Edge sizes that are valid: the genesis alone, and equal sizes.
    let one = get(&s, "sys/ledger/proof/inclusion?seq=1&tree_size=1", "root", 200)?;
    assert_eq!(one["data"]["inclusion_path"], json!([]), "{one:#}");
    let same = get(&s, "sys/ledger/proof/consistency?first=2&second=2", "root", 200)?;
    assert_eq!(same["data"]["consistency_path"], json!([]), "{same:#}");
    let r = s.http("POST", "/v1/sys/ledger/checkpoint", Some("root"), Some("{}"))?;
    assert_eq!(r.status, 405, "{}", r.body);
    // The server is still fine.
    get(&s, "sys/ledger/checkpoint", "root", 200)?;
    Ok(())
}

/// The moving size: a proof asked for without one carries the checkpoint it was computed
/// against, so it checks on its own; `cairn ledger show` prints an event with its hash and
/// its proof; and `--expect-checkpoint` takes the API answer or the note alone.
#[test]
fn proofs_carry_their_checkpoint_and_show_prints_an_event_with_its_proof() -> Result<()> {
    let mut s = cairn_dev()?;
    write_some(&s, 5)?;
    let dir = tempfile::tempdir()?;
    let pins = pinned_keys(&[&s], &dir.path().join("pins"))?;
    let pins = path_str(&pins)?;

    // Inclusion of seq 3 against the latest checkpoint, whatever it is by now.
    let answer = get(&s, "sys/ledger/proof/inclusion?seq=3", "root", 200)?;
    let carried = &answer["data"]["checkpoint"];
    ensure!(carried["tree_size"] == answer["data"]["tree_size"], "{answer}");
    ensure!(carried["time"].is_string() && carried["note"].is_string(), "{answer}");
    let proof = dir.path().join("inclusion.json");
    std::fs::write(&proof, answer.to_string())?;
    let line = expect_valid(&["--proof", path_str(&proof)?, "--trusted-key", pins])?;
    ensure!(line.contains("event 3 "), "{line}");
    // An explicit size carries none, and then needs --checkpoint.
    let sized = get(&s, "sys/ledger/proof/inclusion?seq=3&tree_size=4", "root", 200)?;
    ensure!(sized["data"].get("checkpoint").is_none(), "{sized}");
    std::fs::write(&proof, sized.to_string())?;
    expect_refused(&["--proof", path_str(&proof)?, "--trusted-key", pins], "carries no checkpoint")?;

    // The API answer and its note alone, as --expect-checkpoint.
    let api = get(&s, "sys/ledger/checkpoint", "root", 200)?;
    let api_file = dir.path().join("api.json");
    std::fs::write(&api_file, api.to_string())?;
    let note_file = dir.path().join("note.txt");
    std::fs::write(&note_file, api["data"]["note"].as_str().context("note")?)?;
    write_some(&s, 3)?;
    s.stop(std::time::Duration::from_secs(10))?;
    let data = path_str(s.data_dir())?.to_owned();
    for file in [&api_file, &note_file] {
        let out = cairn(&["ledger", "verify", "--data-dir", &data, "--expect-checkpoint", path_str(file)?])?;
        let text = stdout(&out);
        ensure!(out.status.success() && text.contains("expected checkpoint: matched"), "{text}");
    }

    // ledger show: the event, its hash (the same the segments hold) and a proof that checks.
    let shown = cairn(&["ledger", "show", "3", "--data-dir", &data, "--format", "json"])?;
    ensure!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let v: Value = serde_json::from_str(&stdout(&shown))?;
    ensure!(v["seq"] == 3 && v["hash"] == event_hash(s.data_dir(), 3)?, "{v}");
    ensure!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    let show_file = dir.path().join("show.json");
    std::fs::write(&show_file, v.to_string())?;
    let line = expect_valid(&["--proof", path_str(&show_file)?, "--trusted-key", pins, "--seq", "3"])?;
    ensure!(line.contains(v["hash"].as_str().unwrap_or("?")), "{line}");
    let text = stdout(&cairn(&["ledger", "show", "3", "--data-dir", &data])?);
    ensure!(text.starts_with("seq 3 ") && text.contains("hash"), "{text}");
    let missing = cairn(&["ledger", "show", "100000", "--data-dir", &data])?;
    ensure!(missing.status.code() == Some(2), "{missing:?}");
    Ok(())
}
