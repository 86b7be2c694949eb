//! `cairn ledger …` as an auditor uses it, on a ledger written by the ledger library.

use std::path::Path;

use e2e::{cairn, stdout};
use ledger::{Actor, EventDraft, Ledger, LedgerKey, Options};

fn write_ledger(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let key = LedgerKey::from_seed(&[5; 32]).expect("key");
    let l = Ledger::create(dir, key, Options::default()).expect("create");
    let draft = |i: u64| EventDraft {
        kind: 0x100,
        kind_version: 1,
        request_id: [0; 16],
        actor: Actor::system(),
        body: format!("event number {i}").into_bytes(),
        slots: vec![],
    };
    rt.block_on(async {
        for i in 0..40 {
            l.append(vec![draft(i)]).await.expect("append");
        }
        l.rotate_key(LedgerKey::from_seed(&[6; 32]).expect("key"), Actor::system(), [0; 16]).await.expect("rotate");
        for i in 40..60 {
            l.append(vec![draft(i)]).await.expect("append");
        }
    });
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn auditor_pins_keys_saves_checkpoints_verifies_and_catches_tampering() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    write_ledger(&dir);

    let out = cairn(&["ledger", "verify", "--data-dir", path(&dir)]).expect("run");
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(": intact"));
    assert!(stdout(&out).contains("1..=62 (62 events"));

    // Pin the keys and save today's checkpoint.
    let keys = cairn(&["ledger", "public-key", "--data-dir", path(&dir)]).expect("run");
    assert!(keys.status.success());
    let keys_text = stdout(&keys);
    assert_eq!(keys_text.lines().count(), 2, "{keys_text}");
    assert!(keys_text.lines().next().is_some_and(|l| l.starts_with("ed25519:") && l.contains("retired_at=42")));
    let key_file = tmp.path().join("keys.txt");
    std::fs::write(&key_file, &keys_text).expect("write");
    let cp = cairn(&["ledger", "checkpoint", "--data-dir", path(&dir)]).expect("run");
    assert!(cp.status.success());
    let cp_file = tmp.path().join("checkpoint.json");
    std::fs::write(&cp_file, stdout(&cp)).expect("write");
    let saved: serde_json::Value = serde_json::from_str(&stdout(&cp)).expect("json");
    assert_eq!(saved["seq"], 62);

    let json = cairn(&[
        "ledger",
        "verify",
        "--data-dir",
        path(&dir),
        "--trusted-key",
        path(&key_file),
        "--expect-checkpoint",
        path(&cp_file),
        "--format",
        "json",
    ])
    .expect("run");
    assert!(json.status.success(), "{}", stdout(&json));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(report["intact"], true);
    assert_eq!(report["expected_checkpoint"], "matched at seq 62");

    // A bundle verifies on its own, with the same pins.
    let bundle = tmp.path().join("ledger.bundle");
    let exp =
        cairn(&["ledger", "export", "--data-dir", path(&dir), "--out", path(&bundle), "--from", "30", "--to", "50"])
            .expect("run");
    assert!(exp.status.success(), "{}", String::from_utf8_lossy(&exp.stderr));
    let vb = cairn(&["ledger", "verify", "--bundle", path(&bundle), "--trusted-key", path(&key_file)]).expect("run");
    assert!(vb.status.success(), "{}", stdout(&vb));

    // A stranger's key is not trusted.
    let stranger = tmp.path().join("stranger.txt");
    std::fs::write(&stranger, format!("{}\n", LedgerKey::from_seed(&[9; 32]).expect("key").public().to_text()))
        .expect("write");
    let untrusted =
        cairn(&["ledger", "verify", "--data-dir", path(&dir), "--trusted-key", path(&stranger)]).expect("run");
    assert_eq!(untrusted.status.code(), Some(1));

    // Flip one byte of event 20's body: exit 1, and the report names seq 20.
    let seg = std::fs::read_dir(dir.join("segments")).expect("ls").next().expect("segment").expect("entry").path();
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes.windows(15).position(|w| w == b"event number 18").expect("body") + 14;
    bytes[at] = b'9';
    std::fs::write(&seg, &bytes).expect("write");
    let bad = cairn(&["ledger", "verify", "--data-dir", path(&dir)]).expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("BROKEN at seq 20"), "{}", stdout(&bad));

    // Bad arguments are an error of their own (exit 2), not a verdict.
    let missing = cairn(&["ledger", "verify", "--data-dir", path(&tmp.path().join("nope"))]).expect("run");
    assert_eq!(missing.status.code(), Some(1));
    let bad_key = cairn(&["ledger", "verify", "--data-dir", path(&dir), "--trusted-key", path(&cp_file)]).expect("run");
    assert_eq!(bad_key.status.code(), Some(2));
}

/// The ledger's only segment file.
fn only_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> =
        std::fs::read_dir(dir.join("segments")).expect("ls").map(|e| e.expect("entry").path()).collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.remove(0)
}

fn verify_json(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = cairn(&["ledger", "verify", "--data-dir", path(dir), "--format", "json"]).expect("run");
    let report = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    (out.status.code(), report)
}

#[test]
fn a_torn_tail_has_its_own_verdict_and_exit_code_and_tampering_keeps_its_own() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    write_ledger(&dir);
    let seg = only_segment(&dir);
    let good = std::fs::read(&seg).expect("read");

    // The ways a crash leaves the end of the last segment: the last frame cut in the middle,
    // half a frame written after it, or bytes that are no frame at all.
    let mut half_written = good.clone();
    half_written.extend_from_slice(&good[good.len() - 300..good.len() - 120]);
    let cases: [(&str, Vec<u8>, u64); 3] = [
        ("the last frame cut short", good[..good.len() - 50].to_vec(), 61),
        ("half a frame appended", half_written, 62),
        ("garbage appended", [good.as_slice(), b"CLF1\0\0\0garbage"].concat(), 62),
    ];
    for (what, bytes, after) in cases {
        std::fs::write(&seg, &bytes).expect("write");
        let out = cairn(&["ledger", "verify", "--data-dir", path(&dir)]).expect("run");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(3), "{what}: {text}");
        assert!(text.contains(&format!("TORN TAIL after seq {after}")), "{what}: {text}");
        assert!(text.contains("an unfinished write that was never acknowledged"), "{what}: {text}");
        assert!(text.contains("everything before it verifies; restart the server to cut it"), "{what}: {text}");
        assert!(text.contains(&format!("verified before the torn tail: 1..={after}")), "{what}: {text}");
        assert!(!text.contains("BROKEN"), "{what}: {text}");

        let (code, report) = verify_json(&dir);
        assert_eq!(code, Some(3), "{what}");
        assert_eq!(report["verdict"], "torn_tail", "{what}: {report:#}");
        assert_eq!(report["intact"], false, "{what}");
        assert_eq!(report["failure"], serde_json::Value::Null, "{what}");
        assert_eq!(report["torn_tail"]["after_seq"], after, "{what}: {report:#}");
        assert_eq!(report["last_seq"], after, "{what}");
        let torn_bytes = bytes.len() as u64 - report["torn_tail"]["offset"].as_u64().expect("offset");
        assert_eq!(report["torn_tail"]["bytes"], torn_bytes, "{what}: {report:#}");
        // Tools that need a whole ledger say why they refuse.
        let keys = cairn(&["ledger", "public-key", "--data-dir", path(&dir)]).expect("run");
        assert_eq!(keys.status.code(), Some(2), "{what}");
        assert!(String::from_utf8_lossy(&keys.stderr).contains("torn tail after seq"), "{what}");
    }

    // Opening the ledger (what a server start does) cuts the tail; then it is intact.
    let key = LedgerKey::from_seed(&[6; 32]).expect("key");
    drop(Ledger::open(&dir, key, Options::default()).expect("open cuts the torn tail"));
    let (code, report) = verify_json(&dir);
    assert_eq!((code, &report["verdict"]), (Some(0), &serde_json::json!("intact")), "{report:#}");

    // A flipped byte in a middle frame is tampering: BROKEN, exit 1, even with a torn tail too.
    let mut tampered = good.clone();
    let at = tampered.windows(15).position(|w| w == b"event number 18").expect("body") + 14;
    tampered[at] = b'9';
    for (what, bytes) in
        [("flipped byte", tampered.clone()), ("flipped byte and a torn tail", tampered[..tampered.len() - 50].to_vec())]
    {
        std::fs::write(&seg, &bytes).expect("write");
        let out = cairn(&["ledger", "verify", "--data-dir", path(&dir)]).expect("run");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(stdout(&out).contains("BROKEN at seq 20"), "{what}: {}", stdout(&out));
        assert!(!stdout(&out).contains("TORN"), "{what}: {}", stdout(&out));
        let (code, report) = verify_json(&dir);
        assert_eq!(code, Some(1), "{what}");
        assert_eq!(report["verdict"], "broken", "{what}: {report:#}");
        assert_eq!(report["failure"]["seq"], 20, "{what}");
        assert_eq!(report["torn_tail"], serde_json::Value::Null, "{what}");
    }

    // Damage before the end is not a torn tail, even when it looks like one: a frame cut
    // short with intact frames after it.
    let mut holed = good.clone();
    let second_frame =
        holed.windows(4).enumerate().filter(|(_, w)| *w == b"CLF1").nth(1).map(|(i, _)| i).expect("frame");
    holed.drain(second_frame + 20..second_frame + 40);
    std::fs::write(&seg, &holed).expect("write");
    let (code, report) = verify_json(&dir);
    assert_eq!((code, &report["verdict"]), (Some(1), &serde_json::json!("broken")), "{report:#}");
}
