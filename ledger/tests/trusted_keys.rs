//! Pinning a key (FORMAT.md §8 step 10) proves the ledger is the real one only if that
//! key signed something in it. A KeyRegistered event's proof of possession covers only
//! the ledger id and the key, so anyone can copy the real registration of a node's key
//! into a ledger of their own (same id, their own genesis key) and sign the rest
//! themselves: with the node's key pinned, that forgery must not verify.

mod common;

use std::path::Path;

use common::*;
use ledger::codec::Encoder;
use ledger::frame::{encode_frame, parse_frame, segment_header};
use ledger::merkle::Frontier;
use ledger::system::{KIND_GENESIS, KIND_KEY_REGISTERED, SystemEvent};
use ledger::verify::{VerifyOptions, verify_dir};
use ledger::{Actor, Checkpoint, Entry, Event, Hash, Ledger, LedgerKey, Options};

/// A frame of `events` (seqs and links already right), signed by `signer`.
fn frame(frontier: &mut Frontier, id: &[u8; 16], events: &[Event], signer: &LedgerKey) -> Vec<u8> {
    let mut body = Encoder::default();
    for ev in events {
        ev.encode_into(&mut body);
        frontier.push_event(&ev.hash());
    }
    let last = events.last().expect("events");
    Checkpoint::sign(signer, id, last.seq, last.hash(), frontier.root(), last.time).encode_into(&mut body);
    encode_frame(body.as_slice(), &[])
}

fn event(seq: u64, prev: Hash, kind: u16, body: Vec<u8>) -> Event {
    Event {
        seq,
        prev,
        time: 1_800_000_000_000_000_000 + seq,
        kind,
        kind_version: 1,
        request_id: [0; 16],
        actor: Actor::system(),
        slot_count: 0,
        body,
    }
}

fn write_ledger(dir: &Path, id: &[u8; 16], frames: &[Vec<u8>]) {
    let seg_dir = dir.join("segments");
    std::fs::create_dir_all(&seg_dir).expect("mkdir");
    let mut bytes = segment_header(id).to_vec();
    for f in frames {
        bytes.extend_from_slice(f);
    }
    std::fs::write(seg_dir.join("00000000000000000001.seg"), bytes).expect("write");
}

#[test]
fn a_copied_registration_does_not_make_a_forged_ledger_trusted() {
    let rt = runtime();
    let (a, b, forger) = (key_from(1), key_from(2), key_from(7));
    // The real ledger: genesis by A, A registers node key B, B signs the next frame.
    let real_dir = tempfile::tempdir().expect("tmp");
    let genesis = Ledger::genesis_frame(&a, &Options::default()).expect("genesis");
    let real = Ledger::create_replica(real_dir.path(), &genesis, Options::default()).expect("replica");
    let id = real.id();
    let reg = real.prepare(vec![Entry::register_key(&id, &b, actor(), [9; 16])], &a).expect("prepare");
    rt.block_on(real.append_frame(reg.frame.clone())).expect("append");
    let next = real.prepare(vec![Entry::Event(draft(1))], &b).expect("prepare");
    rt.block_on(real.append_frame(next.frame)).expect("append");
    let registration = parse_frame(&reg.frame).expect("parse").events[0].event.clone();
    assert_eq!(registration.kind, KIND_KEY_REGISTERED);
    drop(real);
    let pinned_b = VerifyOptions { trusted_keys: vec![b.public()], ..Default::default() };
    assert!(verify_dir(real_dir.path(), pinned_b).intact, "the real ledger verifies with B pinned");

    // The forgery: same id, the forger's genesis key, the registration copied byte for
    // byte (its proof still holds), every frame signed by the forger.
    let mut frontier = Frontier::new();
    let g = event(
        1,
        Hash::ZERO,
        KIND_GENESIS,
        SystemEvent::Genesis { ledger_id: id, key: forger.public().to_bytes() }.encode(),
    );
    let copied = Event { seq: 2, prev: g.hash(), time: g.time + 1, ..registration };
    let lie = event(3, copied.hash(), ledger::FIRST_APPLICATION_KIND, b"whatever the forger likes".to_vec());
    let frames = [
        frame(&mut frontier, &id, std::slice::from_ref(&g), &forger),
        frame(&mut frontier, &id, std::slice::from_ref(&copied), &forger),
        frame(&mut frontier, &id, std::slice::from_ref(&lie), &forger),
    ];
    let forged_dir = tempfile::tempdir().expect("tmp");
    write_ledger(forged_dir.path(), &id, &frames);
    let unpinned = verify_dir(forged_dir.path(), VerifyOptions::default());
    assert!(unpinned.intact, "without pins it is a ledger like any other: {unpinned:?}");
    let pinned_b = VerifyOptions { trusted_keys: vec![b.public()], ..Default::default() };
    let r = verify_dir(forged_dir.path(), pinned_b);
    assert!(!r.intact, "B never signed anything in the forgery: {r:?}");
    assert!(r.failure.expect("failure").reason.contains("trusted key"));
}
