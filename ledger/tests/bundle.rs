//! Bundles cut from the middle of a ledger verify on their own, keys included.

mod common;

use common::*;
use ledger::Options;
use ledger::bundle::{export, verify_bundle};
use ledger::verify::{VerifyOptions, verify_dir};

/// 1 genesis, 30 events, a key rotation (its own frame), 30 more events.
fn build(dir: &std::path::Path) -> u64 {
    let rt = runtime();
    let l = create(dir, small_options(ledger::fs::FaultFs::new()));
    for i in 0..30 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    let rot = rt.block_on(l.rotate_key(key_from(2), actor(), [0; 16])).expect("rotate").seq;
    for i in 30..60 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    rot
}

#[test]
fn partial_bundles_prove_their_start_and_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let rot = build(dir.path());
    assert_eq!(rot, 32);
    let full = verify_dir(dir.path(), VerifyOptions::default());
    assert!(full.intact, "{full:?}");

    for (from, to) in [(10, 20), (33, 40), (32, 32), (50, 200), (1, 5)] {
        let out = dir.path().join(format!("b-{from}-{to}.bundle"));
        let s = export(dir.path(), &out, Some(from), Some(to)).expect("export");
        assert!(s.first_seq <= from && s.last_seq >= to.min(full.last_seq), "{s:?}");
        let r = verify_bundle(&out, VerifyOptions { trusted_keys: vec![key_from(1).public()], ..Default::default() });
        assert!(r.intact, "bundle {from}..{to}: {r:?}");
        assert_eq!(r.first_seq, s.first_seq);
        assert_eq!(r.last_seq, s.last_seq);
        assert_eq!(r.keys.len(), if s.last_seq >= rot { 2 } else { 1 });
    }
    // The bundle right after the rotation frame: its anchor is signed by the old key and
    // its first frame by the new one.
    let out = dir.path().join("after-rotation.bundle");
    let s = export(dir.path(), &out, Some(rot + 1), None).expect("export");
    assert_eq!(s.first_seq, rot + 1);
    assert!(verify_bundle(&out, VerifyOptions::default()).intact);

    // Damaging the proven start state is caught.
    let mut bytes = std::fs::read(&out).expect("read");
    bytes[40] ^= 1; // inside the start head hash
    std::fs::write(&out, &bytes).expect("write");
    let r = verify_bundle(&out, VerifyOptions::default());
    assert!(!r.intact);
}

#[test]
fn export_of_an_empty_range_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = create(dir.path(), Options::default());
    drop(l);
    assert!(export(dir.path(), &dir.path().join("x"), Some(5), None).is_err());
    assert!(export(dir.path(), &dir.path().join("x"), Some(5), Some(2)).is_err());
}

/// A key retired long ago signs nothing more: an anchor re-signed with it (what a thief of
/// an old key could make) is refused, although the old key is in the bundle's key events.
#[test]
fn an_anchor_signed_by_a_key_retired_earlier_is_refused() {
    use ledger::checkpoint::Checkpoint;
    use ledger::codec::{Decoder, Encoder};
    let dir = tempfile::tempdir().expect("tmp");
    let rot = build(dir.path());
    let out = dir.path().join("late.bundle");
    let s = export(dir.path(), &out, Some(rot + 10), None).expect("export");
    assert!(verify_bundle(&out, VerifyOptions::default()).intact);
    let mut bytes = std::fs::read(&out).expect("read");
    // magic 8, format 4, ledger id 16, start seq 8, head 32, last time 8, size 8, count 4.
    let count = u32::from_be_bytes(bytes[84..88].try_into().expect("4 bytes")) as usize;
    let at = 88 + 32 * count;
    let anchor = Checkpoint::decode(&mut Decoder::new(&bytes[at..at + 153])).expect("anchor");
    assert_eq!(anchor.last_seq, s.first_seq - 1);
    let id: [u8; 16] = bytes[12..28].try_into().expect("16 bytes");
    let forged = Checkpoint::sign(&key_from(1), &id, anchor.last_seq, anchor.head, anchor.root, anchor.time);
    let mut e = Encoder::default();
    forged.encode_into(&mut e);
    bytes[at..at + 153].copy_from_slice(e.as_slice());
    std::fs::write(&out, &bytes).expect("write");
    let r = verify_bundle(&out, VerifyOptions::default());
    assert!(!r.intact, "{r:?}");
    assert!(r.failure.expect("failure").reason.contains("signature"));
}
