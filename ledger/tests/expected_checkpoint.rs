//! `--expect-checkpoint` takes every form cairn hands a checkpoint out in: the saved JSON
//! (time as a string, or as the number older tools wrote), the `sys/ledger/checkpoint`
//! answer, and the C2SP note alone. Each pins the history and catches a truncation.

mod common;

use common::*;
use ledger::verify::{ExpectedCheckpoint, VerifyOptions, verify_dir};
use serde_json::json;

#[test]
fn every_form_of_a_saved_checkpoint_pins_the_ledger() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), small_options(ledger::fs::FaultFs::new()));
    // Enough events to fill a few small segments before the checkpoint.
    for i in 0..300 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    let cp = l.durable().checkpoint.expect("checkpoint");
    let saved = cp.to_saved(&l.id());
    let (note, _) = l.checkpoint_note(&cp).expect("note");
    for i in 300..310 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    // The same checkpoint signed by a key the ledger never had.
    let stranger = ledger::note::sign(&key_from(9), &l.id(), cp.last_seq, &cp.root);
    drop(l);

    let as_json = serde_json::to_value(&saved).expect("json");
    assert!(as_json["time"].is_string(), "time is written as a string: {as_json}");
    let mut numeric = as_json.clone();
    numeric["time"] = json!(saved.time);
    let mut api = as_json.clone();
    api["note"] = json!(note);
    api["tree_size"] = json!(cp.last_seq);
    let forms = [as_json.to_string(), numeric.to_string(), json!({"data": api}).to_string(), note.clone()];
    for text in &forms {
        let expect = ExpectedCheckpoint::from_text(text).expect("parses");
        let r = verify_dir(dir.path(), VerifyOptions { expect: Some(expect), ..Default::default() });
        assert!(r.intact, "{text}: {r:?}");
        assert_eq!(r.expected_checkpoint.as_deref(), Some(format!("matched at seq {}", cp.last_seq).as_str()));
    }
    let r = verify_dir(
        dir.path(),
        VerifyOptions { expect: Some(ExpectedCheckpoint::from_text(&stranger).expect("parses")), ..Default::default() },
    );
    assert!(!r.intact && r.failure.expect("failure").reason.contains("not signed by any of the ledger's keys"));
    assert!(ExpectedCheckpoint::from_text("not a checkpoint").is_err());
    assert!(ExpectedCheckpoint::from_text(r#"{"seq": 1}"#).is_err());

    // Cut the ledger before the checkpoint: every form says truncated.
    let segs = dir.path().join("segments");
    let mut names: Vec<_> = std::fs::read_dir(&segs).expect("ls").map(|e| e.expect("entry").path()).collect();
    names.sort();
    for path in names.iter().skip(1) {
        std::fs::remove_file(path).expect("rm");
    }
    for text in &forms {
        let expect = ExpectedCheckpoint::from_text(text).expect("parses");
        let r = verify_dir(dir.path(), VerifyOptions { expect: Some(expect), ..Default::default() });
        assert!(r.last_seq < cp.last_seq, "the cut leaves less than the checkpoint");
        assert!(r.failure.expect("failure").reason.contains("truncated"), "{text}");
    }
}
