//! One test per tamper class: each must be caught, at the seq where it happened.
//! Tampering is done the way a careful attacker would: frames are rewritten with fresh
//! checksums, so only the hash chain, the Merkle roots and the signatures can catch it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ledger::bundle::{export, verify_bundle};
use ledger::checkpoint::Checkpoint;
use ledger::codec::Encoder;
use ledger::frame::{SEGMENT_HEADER_LEN, encode_frame, parse_frame};
use ledger::verify::{Report, Verdict, VerifyOptions, verify_dir};
use ledger::{Event, Hash, KeySlot, LedgerKey, Options, SavedCheckpoint};

/// A frame taken apart: events, checkpoint, key slots.
struct Parts {
    events: Vec<Event>,
    checkpoint: Checkpoint,
    slots: Vec<KeySlot>,
}

fn segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<_> =
        std::fs::read_dir(dir.join("segments")).expect("ls").map(|e| e.expect("entry").path()).collect();
    segs.sort();
    assert_eq!(segs.len(), 1, "tamper tests use a single segment");
    segs.remove(0)
}

fn read_frames(path: &Path) -> Vec<Parts> {
    let bytes = std::fs::read(path).expect("read");
    let mut pos = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while pos < bytes.len() {
        let f = parse_frame(&bytes[pos..]).expect("intact before tampering");
        pos += f.len;
        out.push(Parts {
            events: f.events.iter().map(|e| e.event.clone()).collect(),
            checkpoint: f.checkpoint,
            slots: f.slots,
        });
    }
    out
}

fn write_frames(path: &Path, frames: &[Parts]) {
    let bytes = std::fs::read(path).expect("read");
    let mut out = bytes[..SEGMENT_HEADER_LEN].to_vec();
    for f in frames {
        let mut e = Encoder::default();
        for ev in &f.events {
            ev.encode_into(&mut e);
        }
        f.checkpoint.encode_into(&mut e);
        out.extend_from_slice(&encode_frame(e.as_slice(), &f.slots));
    }
    std::fs::write(path, out).expect("write");
}

/// A ledger of 1 genesis + 30 events: frames of one event each, then one frame of ten.
fn build(dir: &Path) {
    let rt = runtime();
    let l = create(dir, Options::default());
    for i in 0..20 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    rt.block_on(l.append((20..30).map(draft).collect())).expect("append");
    drop(l);
    assert!(verify_dir(dir, VerifyOptions::default()).intact);
}

fn failure_seq(r: &Report) -> u64 {
    assert!(!r.intact, "tampering went unnoticed: {r:?}");
    r.failure.as_ref().expect("a failure").seq
}

/// Index of the frame holding `seq`.
fn frame_of(frames: &[Parts], seq: u64) -> usize {
    frames.iter().position(|f| f.events.iter().any(|e| e.seq == seq)).expect("seq present")
}

#[test]
fn flipped_byte_in_an_event_is_caught_at_that_event() {
    for seq in [5u64, 12, 25, 31] {
        let dir = tempfile::tempdir().expect("tmp");
        build(dir.path());
        let saved = verify_dir(dir.path(), VerifyOptions::default()).last_checkpoint.expect("checkpoint");
        let seg = segment(dir.path());
        // Raw flip inside the body, checksum left as it is.
        let mut bytes = std::fs::read(&seg).expect("read");
        let needle = format!("event {} ", seq - 2).into_bytes();
        let at = bytes.windows(needle.len()).position(|w| w == needle.as_slice()).expect("body") + needle.len() + 3;
        bytes[at] ^= 0x20;
        std::fs::write(&seg, &bytes).expect("write");
        let r = verify_dir(dir.path(), VerifyOptions::default());
        if seq <= 21 {
            assert_eq!(failure_seq(&r), seq, "{r:?}");
            continue;
        }
        // In the last frame, a checksum that no longer matches is what a write torn by a
        // crash leaves, and recovery would cut that frame (FORMAT.md §7): never intact, but
        // a torn tail, not a broken rule...
        assert_eq!(r.verdict, Verdict::TornTail, "{r:?}");
        assert_eq!(r.torn_tail.as_ref().map(|t| t.after_seq), Some(21), "{r:?}");
        // ...unless a checkpoint saved earlier covers it: then it is history that changed.
        let pinned = verify_dir(dir.path(), VerifyOptions { expect: Some(saved.into()), ..VerifyOptions::default() });
        assert_eq!(pinned.verdict, Verdict::Broken, "{pinned:?}");
        assert!(pinned.failure.expect("failure").reason.contains("truncated"));
    }
    // Same with a rewritten frame (valid checksum): the chain alone must point at it.
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 26);
    let ev = frames[i].events.iter_mut().find(|e| e.seq == 26).expect("event");
    ev.body[10] ^= 1;
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), 26);
}

#[test]
fn deleted_event_is_caught_at_its_seq() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 9);
    frames.remove(i);
    write_frames(&seg, &frames);
    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert_eq!(failure_seq(&r), 9);
    assert!(r.failure.expect("failure").reason.contains("missing"));

    // Inside a multi-event frame.
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 27);
    frames[i].events.retain(|e| e.seq != 27);
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), 27);
}

#[test]
fn swapped_events_are_caught_at_the_first_of_them() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 24);
    let a = frames[i].events.iter().position(|e| e.seq == 24).expect("24");
    frames[i].events.swap(a, a + 1);
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), 24);

    // Two whole frames swapped.
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 7);
    frames.swap(i, i + 1);
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), 7);
}

#[test]
fn event_appended_without_the_key_is_caught() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let last = frames.last().expect("frames");
    let prev_event = last.events.last().expect("event");
    let forged =
        Event { seq: prev_event.seq + 1, prev: last.checkpoint.head, time: prev_event.time + 1, ..prev_event.clone() };
    // The forger can compute the chain and the Merkle root, but signs with their own key.
    let mut frontier = ledger::merkle::Frontier::new();
    for f in &frames {
        for e in &f.events {
            frontier.push_event(&e.hash());
        }
    }
    frontier.push_event(&forged.hash());
    let id = hex::decode(verify_dir(dir.path(), VerifyOptions::default()).ledger_id.expect("id")).expect("hex");
    let ledger_id: [u8; 16] = id.try_into().expect("16 bytes");
    let mallory = LedgerKey::generate().expect("rng");
    let cp = Checkpoint::sign(&mallory, &ledger_id, forged.seq, forged.hash(), frontier.root(), forged.time);
    frames.push(Parts { events: vec![forged.clone()], checkpoint: cp, slots: vec![] });
    write_frames(&seg, &frames);
    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert_eq!(failure_seq(&r), forged.seq);
    assert!(r.failure.expect("failure").reason.contains("not by the ledger's current key"));

    // Claiming the real key id does not help: the signature does not verify.
    let last = frames.last_mut().expect("frames");
    last.checkpoint.key_id = key_from(1).id();
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), forged.seq);
}

#[test]
fn forged_checkpoint_signature_is_caught_at_its_frame() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 12);
    frames[i].checkpoint.signature[3] ^= 1;
    write_frames(&seg, &frames);
    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert_eq!(failure_seq(&r), 12);
    assert!(r.failure.expect("failure").reason.contains("signature"));

    // A checkpoint whose Merkle root was replaced (and re-signed by nobody) is caught too.
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let seg = segment(dir.path());
    let mut frames = read_frames(&seg);
    let i = frame_of(&frames, 13);
    frames[i].checkpoint.root = Hash([9; 32]);
    write_frames(&seg, &frames);
    assert_eq!(failure_seq(&verify_dir(dir.path(), VerifyOptions::default())), 13);
}

#[test]
fn truncated_tail_is_caught_with_an_expected_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let saved: SavedCheckpoint = verify_dir(dir.path(), VerifyOptions::default()).last_checkpoint.expect("checkpoint");
    assert_eq!(saved.seq, 31);
    let seg = segment(dir.path());
    let untouched = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(untouched.path().join("segments")).expect("mkdir");
    std::fs::copy(&seg, untouched.path().join("segments").join(seg.file_name().expect("name"))).expect("copy");
    let mut frames = read_frames(&seg);
    frames.truncate(frames.len() - 3);
    write_frames(&seg, &frames);
    // On its own, a ledger cut at a frame boundary looks whole...
    let alone = verify_dir(dir.path(), VerifyOptions::default());
    assert!(alone.intact);
    // ...but not against a checkpoint the auditor saved earlier.
    let r = verify_dir(dir.path(), VerifyOptions { expect: Some(saved.clone().into()), ..Default::default() });
    let seq = failure_seq(&r);
    assert_eq!(seq, alone.last_seq + 1);
    assert!(r.failure.expect("failure").reason.contains("truncated"));

    // The untouched copy contains the saved checkpoint.
    let ok = verify_dir(untouched.path(), VerifyOptions { expect: Some(saved.into()), ..Default::default() });
    assert!(ok.intact, "{ok:?}");
    assert_eq!(ok.expected_checkpoint.as_deref(), Some("matched at seq 31"));
}

#[test]
fn bundle_edited_after_export_is_caught() {
    let dir = tempfile::tempdir().expect("tmp");
    build(dir.path());
    let out = dir.path().join("ledger.bundle");
    let summary = export(dir.path(), &out, None, None).expect("export");
    assert_eq!((summary.first_seq, summary.last_seq), (1, 31));
    let r = verify_bundle(&out, VerifyOptions::default());
    assert!(r.intact, "{r:?}");
    assert_eq!(r.events, 31);

    let original = std::fs::read(&out).expect("read");
    let mut edited = original.clone();
    let needle = b"event 14 ";
    let at = edited.windows(needle.len()).position(|w| w == needle).expect("body") + 20;
    edited[at] ^= 1;
    std::fs::write(&out, &edited).expect("write");
    assert_eq!(failure_seq(&verify_bundle(&out, VerifyOptions::default())), 16);

    // Cutting the last frame out of the bundle is caught by its trailer.
    let mut cut = original.clone();
    let trailer = cut.split_off(cut.len() - 24);
    let frames_only = &cut[36..];
    let mut pos = 0;
    let mut starts = Vec::new();
    while pos < frames_only.len() {
        starts.push(pos);
        pos += parse_frame(&frames_only[pos..]).expect("frame").len;
    }
    cut.truncate(36 + starts.last().copied().expect("frames"));
    cut.extend_from_slice(&trailer);
    std::fs::write(&out, &cut).expect("write");
    assert!(!verify_bundle(&out, VerifyOptions::default()).intact);
}
