//! Partial reads survive later erasures (FORMAT.md §8.1): a replay up to T, or a bundle cut
//! before a `kv destroy`, verifies although the slots of its events were zeroed afterwards;
//! a ledger cut before its erase events says it was truncated.

mod common;

use std::ops::ControlFlow;
use std::path::Path;

use common::*;
use ledger::bundle::{BUNDLE_LATER, export, verify_bundle};
use ledger::fs::FaultFs;
use ledger::seal::{Keyring, random_key};
use ledger::verify::{Report, VerifyOptions, verify_dir};

/// Where things are in the ledger `build` writes.
struct Built {
    /// The event whose only key slot is erased later.
    sealed: u64,
    /// Last seq before the rotation and the erasure (the moment of interest).
    moment: u64,
    /// The key rotation after the moment.
    rotation: u64,
    /// The erase event.
    erase: u64,
    last: u64,
}

/// Genesis, 10 events, one sealed event, 10 events, then (after the moment) a key
/// rotation, 10 events, the erasure of the sealed event's slot, 10 events.
fn build(dir: &Path) -> Built {
    let rt = runtime();
    let mut keyring = Keyring::new();
    keyring.insert(1, &random_key().expect("rng"));
    let l = create(dir, small_options(FaultFs::new()));
    for i in 0..10 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    let (sealed_body, slot) = keyring.seal(b"hunter2", b"kv/app/1", 0).expect("seal");
    let mut d = draft(100);
    d.body = ledger::body::encode(&sealed_body).expect("encode");
    d.slots = vec![slot];
    let sealed = rt.block_on(l.append(vec![d])).expect("append")[0].seq;
    let mut moment = 0;
    for i in 10..20 {
        moment = rt.block_on(l.append(vec![draft(i)])).expect("append")[0].seq;
    }
    let rotation = rt.block_on(l.rotate_key(key_from(2), actor(), [0; 16])).expect("rotate").seq;
    for i in 20..30 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    let erase = rt.block_on(l.erase(sealed, vec![0], actor(), [1; 16])).expect("erase").seq;
    let mut last = 0;
    for i in 30..40 {
        last = rt.block_on(l.append(vec![draft(i)])).expect("append")[0].seq;
    }
    l.close().expect("close");
    Built { sealed, moment, rotation, erase, last }
}

/// Verifies `dir` as a reader that stops after the frame holding `until`.
fn read_until(dir: &Path, until: u64) -> (Report, u64) {
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let seen = read.clone();
    let on_frame = Box::new(move |f: &ledger::frame::Frame| {
        seen.set(f.last_seq());
        if f.last_seq() >= until { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    let report = verify_dir(dir, VerifyOptions { on_frame: Some(on_frame), ..Default::default() });
    (report, read.get())
}

#[test]
fn a_read_up_to_a_moment_verifies_whatever_was_erased_later() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = build(dir.path());
    assert!(b.sealed < b.moment && b.moment < b.rotation && b.rotation < b.erase && b.erase < b.last);

    let (r, handed_on) = read_until(dir.path(), b.moment);
    assert!(r.intact, "{r:?}");
    assert_eq!(handed_on, b.moment, "the reader got exactly its range");
    assert_eq!(r.last_seq, b.moment, "the report is about the range");
    assert_eq!(r.erased_payloads, 1);
    assert_eq!(r.keys.len(), 1, "keys as of the range");
    assert_eq!(r.later_erasures_proven_to, Some(b.erase), "read on only as far as the erase event");

    // Nothing erased in the range: the reader stops at once.
    let (r, _) = read_until(dir.path(), b.sealed - 1);
    assert!(r.intact && r.last_seq == b.sealed - 1 && r.later_erasures_proven_to.is_none(), "{r:?}");

    // The whole ledger, as before.
    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert!(r.intact && r.last_seq == b.last && r.erased_payloads == 1, "{r:?}");
    assert_eq!(r.later_erasures_proven_to, None);
}

#[test]
fn a_ledger_cut_before_its_erase_event_says_it_was_truncated() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = build(dir.path());
    // Cut whole segment files after the moment: the slot stays zeroed, its erase event is gone.
    let mut cut_after = 0;
    for entry in std::fs::read_dir(dir.path().join("segments")).expect("ls") {
        let path = entry.expect("entry").path();
        let first: u64 = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("name");
        if first > b.moment {
            std::fs::remove_file(&path).expect("rm");
        } else {
            cut_after = cut_after.max(first);
        }
    }
    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert!(!r.intact, "{r:?}");
    let f = r.failure.expect("failure");
    assert_eq!(f.seq, b.sealed, "{f:?}");
    assert!(f.reason.contains(&format!("truncated after seq {}", r.last_seq)), "{f:?}");
    assert!(r.last_seq >= cut_after && r.last_seq < b.erase);

    // The same ledger read only up to the sealed event's frame: still the truncation.
    let (r, _) = read_until(dir.path(), b.sealed);
    assert!(!r.intact && r.failure.expect("failure").reason.contains("truncated"));
}

fn trusted() -> VerifyOptions {
    VerifyOptions { trusted_keys: vec![key_from(1).public()], ..Default::default() }
}

#[test]
fn a_bundle_cut_before_an_erasure_carries_its_proof() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = build(dir.path());
    for (from, to) in [(1, b.moment), (b.sealed, b.sealed), (b.sealed - 3, b.moment), (b.sealed, b.erase - 2)] {
        let out = dir.path().join(format!("b-{from}-{to}.bundle"));
        let s = export(dir.path(), &out, Some(from), Some(to)).expect("export");
        assert!(s.last_seq < b.erase, "{s:?}");
        let r = verify_bundle(&out, trusted());
        assert!(r.intact, "bundle {from}..={to}: {r:?}");
        assert_eq!((r.first_seq, r.last_seq), (s.first_seq, s.last_seq));
        assert_eq!(r.erased_payloads, 1);
        assert_eq!(r.later_erasures_proven_to, Some(b.last), "proven against the ledger's last checkpoint");
        // A reader of the bundle that stops early still verifies.
        let stop = Box::new(|_: &ledger::frame::Frame| ControlFlow::Break(()));
        let r = verify_bundle(&out, VerifyOptions { on_frame: Some(stop), ..trusted() });
        assert!(r.intact, "bundle {from}..={to}, first frame only: {r:?}");
    }
    // Bundles with nothing erased later carry no such section.
    let out = dir.path().join("before.bundle");
    export(dir.path(), &out, Some(2), Some(b.sealed - 1)).expect("export");
    let bytes = std::fs::read(&out).expect("read");
    assert!(!bytes.windows(8).any(|w| w == BUNDLE_LATER));
    assert!(verify_bundle(&out, trusted()).intact);
}

#[test]
fn tampering_with_the_later_erasures_is_caught() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = build(dir.path());
    let out = dir.path().join("b.bundle");
    let s = export(dir.path(), &out, Some(b.sealed - 2), Some(b.moment)).expect("export");
    let good = std::fs::read(&out).expect("read");
    let at = good.windows(8).position(|w| w == BUNDLE_LATER).expect("later erasures section");
    let trailer = good.len() - 24;
    let verdict = |bytes: &[u8]| {
        std::fs::write(&out, bytes).expect("write");
        verify_bundle(&out, trusted())
    };
    assert!(verdict(&good).intact);

    // Every byte of the section matters: the later checkpoint, the consistency proof, the
    // key events (rotation) and the erase event with their proofs.
    let mut broken = 0;
    for pos in at + 8..trailer {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x40;
        let r = verdict(&bytes);
        assert!(!r.intact, "flipping byte {} of the section went unnoticed", pos - at);
        broken += 1;
    }
    assert!(broken > 300);

    // Without the section, the zeroed slot is unexplained: reported as a truncation.
    let mut bytes = good[..at].to_vec();
    bytes.extend_from_slice(&good[trailer..]);
    let r = verdict(&bytes);
    let f = r.failure.expect("failure");
    assert_eq!(f.seq, b.sealed);
    assert!(f.reason.contains(&format!("truncated after seq {}", s.last_seq)), "{f:?}");
}
