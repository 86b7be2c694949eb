//! Per-node checkpoint keys: a `KeyRegistered` event adds a key that may sign checkpoints
//! (from the next frame on) without retiring any. In a cluster each node signs the frames
//! it builds as leader with its own key; replicas, the offline verifier, bundles and the
//! independent Python verifier (written from FORMAT.md) must all accept exactly the frames
//! signed by an active key, and refuse the rest at the same seq.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ledger::bundle::{export, verify_bundle};
use ledger::codec::Encoder;
use ledger::frame::{encode_frame, parse_frame};
use ledger::merkle::Frontier;
use ledger::system::{KIND_KEY_REGISTERED, SystemEvent};
use ledger::verify::{Report, VerifyOptions, verify_dir};
use ledger::{Applied, Checkpoint, Entry, Error, Event, Ledger, LedgerKey, Options};

fn written(a: Applied) -> Vec<u64> {
    match a {
        Applied::Written(events) => events.iter().map(|e| e.event.seq).collect(),
        other => panic!("expected the frame to be written, got {other:?}"),
    }
}

fn refused(a: Applied) -> String {
    match a {
        Applied::Refused(reason) => reason,
        other => panic!("expected the frame to be refused, got {other:?}"),
    }
}

/// Builds, and appends to every replica, the frame of `entries` signed by `key`.
fn commit_on(rt: &tokio::runtime::Runtime, replicas: &[Ledger], entries: Vec<Entry>, key: &LedgerKey) -> Vec<u64> {
    let prepared = replicas[0].prepare(entries, key).expect("prepare");
    let mut seqs = Vec::new();
    for r in replicas {
        seqs = written(rt.block_on(r.append_frame(prepared.frame.clone())).expect("append"));
    }
    seqs
}

/// A frame holding `events` (seqs and links already right) after the durable end of
/// `ledger`, its checkpoint signed by `signer`: what a leader holding any key could send.
fn forge_frame(ledger: &Ledger, events: &[Event], signer: &LedgerKey) -> Vec<u8> {
    let mut frontier = Frontier::new();
    for e in ledger.events(1, u64::MAX) {
        frontier.push_event(&e.expect("read").hash);
    }
    let mut body = Encoder::default();
    for ev in events {
        ev.encode_into(&mut body);
        frontier.push_event(&ev.hash());
    }
    let last = events.last().expect("events");
    let cp = Checkpoint::sign(signer, &ledger.id(), last.seq, last.hash(), frontier.root(), last.time);
    cp.encode_into(&mut body);
    encode_frame(body.as_slice(), &[])
}

/// The events of a frame `leader` prepares (and nobody appends) from `entries`.
fn prepared_events(leader: &Ledger, entries: Vec<Entry>, key: &LedgerKey) -> Vec<Event> {
    let prepared = leader.prepare(entries, key).expect("prepare");
    parse_frame(&prepared.frame).expect("parse").events.into_iter().map(|fe| fe.event).collect()
}

/// One application event right after the durable end of `ledger`.
fn next_event(ledger: &Ledger, i: u64) -> Vec<Event> {
    prepared_events(ledger, vec![Entry::Event(draft(i))], &key_a())
}

fn key_a() -> LedgerKey {
    key_from(1)
}

fn key_b() -> LedgerKey {
    key_from(2)
}

fn key_c() -> LedgerKey {
    key_from(3)
}

fn register(ledger: &Ledger, key: &LedgerKey) -> Entry {
    Entry::register_key(&ledger.id(), key, actor(), [9; 16])
}

fn verdict(r: &Report) -> (bool, Option<u64>) {
    (r.intact, r.failure.as_ref().map(|f| f.seq))
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

fn key_ids(r: &Report) -> Vec<(String, u64, Option<u64>)> {
    r.keys.iter().map(|k| (k.key_id.clone(), k.registered_at, k.retired_at)).collect()
}

/// Two replicas of a ledger whose genesis is signed by A.
fn cluster(dirs: &[tempfile::TempDir]) -> Vec<Ledger> {
    let genesis = Ledger::genesis_frame(&key_a(), &Options::default()).expect("genesis");
    dirs.iter().map(|d| Ledger::create_replica(d.path(), &genesis, Options::default()).expect("replica")).collect()
}

#[test]
fn a_replica_ledger_signed_by_registered_node_keys_verifies_in_both_verifiers() {
    let rt = runtime();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let replicas = cluster(&dirs);
    let (a, b, c) = (key_a(), key_b(), key_c());

    // B cannot lead before it is registered.
    let early = replicas[0].prepare(vec![Entry::Event(draft(0))], &b).expect("prepare");
    let reason = refused(rt.block_on(replicas[0].append_frame(early.frame)).expect("append"));
    assert!(reason.contains("not by the ledger's current key"), "{reason}");
    // A registers B (frame 2..=3, signed by A); B may sign from the next frame on.
    let reg = commit_on(&rt, &replicas, vec![register(&replicas[0], &b), Entry::Event(draft(1))], &a);
    assert_eq!(reg, vec![2, 3]);
    for i in 0..3 {
        commit_on(&rt, &replicas, vec![Entry::Event(draft(10 + i))], &b);
    }
    for i in 0..2 {
        commit_on(&rt, &replicas, vec![Entry::Event(draft(20 + i))], &a);
    }
    commit_on(&rt, &replicas, vec![Entry::Event(draft(30)), Entry::Event(draft(31))], &b);
    let last = replicas[0].durable().last_seq;
    assert_eq!(last, 10);

    // C was never registered: a frame it signed is refused by every replica, which stay
    // unchanged.
    let forged = replicas[0].prepare(vec![Entry::Event(draft(40))], &c).expect("prepare").frame;
    for r in &replicas {
        let reason = refused(rt.block_on(r.append_frame(forged.clone())).expect("append"));
        assert!(reason.contains(&format!("signed by key {}", c.id())), "{reason}");
        assert!(reason.contains("not by any of the ledger's active keys"), "{reason}");
        assert!(reason.contains("never registered"), "{reason}");
        assert_eq!(r.durable().last_seq, last);
    }
    // The same events signed by B are written.
    let good = forge_frame(&replicas[0], &next_event(&replicas[0], 40), &b);
    for r in &replicas {
        assert_eq!(written(rt.block_on(r.append_frame(good.clone())).expect("append")), vec![last + 1]);
    }
    let keys_of = |l: &Ledger| l.keys().iter().map(|k| (k.key.id(), k.registered_at, k.retired_at)).collect::<Vec<_>>();
    assert_eq!(keys_of(&replicas[0]), vec![(a.id(), 1, None), (b.id(), 2, None)]);
    assert_eq!(keys_of(&replicas[1]), keys_of(&replicas[0]));
    for r in replicas {
        r.close().expect("close");
    }

    // Offline: both verifiers accept it; the report names both keys.
    let dir = dirs[0].path();
    let report = verify_dir(dir, VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    assert_eq!(
        key_ids(&report),
        vec![(a.id().to_hex(), 1, None), (b.id().to_hex(), 2, None)],
        "every key with where it was registered"
    );
    assert_eq!(python_verdict(dir), (true, None));
    // Pinning either node key is enough; pinning a stranger's is not.
    for (trusted, intact) in [(b.public(), true), (a.public(), true), (c.public(), false)] {
        let r = verify_dir(dir, VerifyOptions { trusted_keys: vec![trusted], ..Default::default() });
        assert_eq!(r.intact, intact, "{r:?}");
    }

    // A bundle starting after the registration carries it in its header (with its proof),
    // so B's checkpoints verify there too.
    let out = dirs[1].path().join("after-registration.bundle");
    let s = export(dir, &out, Some(5), None).expect("export");
    assert!(s.first_seq > 3, "{s:?}");
    let r = verify_bundle(&out, VerifyOptions { trusted_keys: vec![a.public()], ..Default::default() });
    assert!(r.intact, "{r:?}");
    assert_eq!(key_ids(&r), key_ids(&report));

    // The C-signed frame put on disk behind the replicas' back: both verifiers fail at its
    // first seq.
    let forged_dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(forged_dir.path().join("segments")).expect("mkdir");
    let seg = last_segment(dir);
    let copy = forged_dir.path().join("segments").join(seg.file_name().expect("name"));
    std::fs::copy(&seg, &copy).expect("copy");
    let reopened = Ledger::open_replica(dir, Options::default()).expect("open replica");
    let forged = forge_frame(&reopened, &prepared_events(&reopened, vec![Entry::Event(draft(50))], &a), &c);
    reopened.close().expect("close");
    let mut bytes = std::fs::read(&copy).expect("read");
    bytes.extend_from_slice(&forged);
    std::fs::write(&copy, bytes).expect("write");
    let r = verify_dir(forged_dir.path(), VerifyOptions::default());
    assert_eq!(verdict(&r), (false, Some(last + 2)), "{r:?}");
    assert!(r.failure.as_ref().is_some_and(|f| f.reason.contains("never registered")), "{r:?}");
    assert_eq!(python_verdict(forged_dir.path()), (false, Some(last + 2)));
}

#[test]
fn a_registered_key_signs_only_from_the_next_frame() {
    let rt = runtime();
    let dirs: Vec<_> = (0..1).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let replicas = cluster(&dirs);
    // A frame that registers B cannot itself be signed by B.
    let events = prepared_events(&replicas[0], vec![register(&replicas[0], &key_b())], &key_a());
    let forged = forge_frame(&replicas[0], &events, &key_b());
    let reason = refused(rt.block_on(replicas[0].append_frame(forged)).expect("append"));
    assert!(reason.contains("not by the ledger's current key"), "{reason}");
    assert!(reason.contains("registered in this frame"), "{reason}");
    // Signed by A it is written, and B signs the next one.
    let ok = forge_frame(&replicas[0], &events, &key_a());
    assert_eq!(written(rt.block_on(replicas[0].append_frame(ok)).expect("append")), vec![2]);
    commit_on(&rt, &replicas, vec![Entry::Event(draft(1))], &key_b());
}

#[test]
fn a_tampered_proof_of_possession_is_refused() {
    let rt = runtime();
    let dirs: Vec<_> = (0..1).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let replicas = cluster(&dirs);
    let l = &replicas[0];
    let Entry::RegisterKey { key, proof, .. } = register(l, &key_b()) else { unreachable!("a registration") };

    // The leader refuses to build it: a flipped proof bit, a proof for another ledger, a
    // proof by another key, a weak key.
    let mut flipped = proof;
    flipped[7] ^= 1;
    let other_ledger = Entry::register_key(&[0xEE; 16], &key_b(), actor(), [0; 16]);
    let Entry::RegisterKey { proof: other_proof, .. } = register(l, &key_c()) else { unreachable!("a registration") };
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for bad in [
        Entry::RegisterKey { key, proof: flipped, actor: actor(), request_id: [0; 16] },
        other_ledger,
        Entry::RegisterKey { key, proof: other_proof, actor: actor(), request_id: [0; 16] },
        Entry::RegisterKey { key: identity, proof, actor: actor(), request_id: [0; 16] },
    ] {
        match l.prepare(vec![bad], &key_a()) {
            Err(Error::Invalid(m)) => assert!(m.contains("proof of possession"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    // A frame holding a registration with a bad proof, correctly chained and signed by A,
    // is refused by the replica at the registration's seq.
    let mut events = prepared_events(l, vec![register(l, &key_b())], &key_a());
    events[0].body = SystemEvent::KeyRegistered { key, proof: flipped }.encode();
    let forged = forge_frame(l, &events, &key_a());
    let reason = refused(rt.block_on(l.append_frame(forged)).expect("append"));
    assert!(reason.starts_with("seq 2:") && reason.contains("proof of possession is invalid"), "{reason}");
    assert_eq!(l.keys().len(), 1);
}

#[test]
fn a_key_registered_twice_is_refused() {
    let rt = runtime();
    let dirs: Vec<_> = (0..1).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let replicas = cluster(&dirs);
    let l = &replicas[0];
    commit_on(&rt, &replicas, vec![register(l, &key_b())], &key_a());

    // The leader refuses: already registered, or twice in one commit.
    match l.prepare(vec![register(l, &key_b())], &key_a()) {
        Err(Error::Invalid(m)) => assert!(m.contains("already registered (at seq 2)"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match l.prepare(vec![register(l, &key_c()), register(l, &key_c())], &key_a()) {
        Err(Error::Invalid(m)) => assert!(m.contains("twice"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Genesis counts as a registration too.
    assert!(matches!(l.prepare(vec![register(l, &key_a())], &key_b()), Err(Error::Invalid(_))));

    // A frame that registers B again (valid proof, signed by B) is refused at that event.
    let mut events = prepared_events(l, vec![Entry::Event(draft(1))], &key_a());
    events[0].kind = KIND_KEY_REGISTERED;
    events[0].body = SystemEvent::registration(&l.id(), &key_b()).encode();
    let forged = forge_frame(l, &events, &key_b());
    let reason = refused(rt.block_on(l.append_frame(forged)).expect("append"));
    assert!(reason.contains("seq 3:") && reason.contains("registered twice (first at seq 2)"), "{reason}");

    // Two registrations of C in one frame: the second is the violation.
    let mut events = prepared_events(l, vec![register(l, &key_c()), Entry::Event(draft(2))], &key_a());
    events[1].kind = KIND_KEY_REGISTERED;
    events[1].body = SystemEvent::registration(&l.id(), &key_c()).encode();
    events[1].prev = events[0].hash();
    let forged = forge_frame(l, &events, &key_a());
    let reason = refused(rt.block_on(l.append_frame(forged)).expect("append"));
    assert!(reason.contains("seq 4:") && reason.contains("registered twice (first at seq 3)"), "{reason}");
    assert_eq!(l.durable().last_seq, 2);
}

#[test]
fn one_of_several_active_keys_rotates_and_the_others_stay_active() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b, d, e) = (key_a(), key_b(), key_from(4), key_from(5));
    let l = Ledger::create(dir.path(), key_a(), Options::default()).expect("create");
    // A single node registers a second key through commit (checked like prepare).
    let bad = Entry::RegisterKey { key: b.public().to_bytes(), proof: [0; 64], actor: actor(), request_id: [0; 16] };
    assert!(matches!(rt.block_on(l.commit(vec![bad])), Err(Error::Invalid(_))));
    let reg = rt.block_on(l.commit(vec![register(&l, &b), Entry::Event(draft(1))])).expect("register");
    assert_eq!(reg[0].seq, 2);
    // Rotating to a key that is already active is refused; rotating A to D retires A only.
    assert!(matches!(rt.block_on(l.rotate_key(key_b(), actor(), [0; 16])), Err(Error::Invalid(_))));
    let rot = rt.block_on(l.rotate_key(key_from(4), actor(), [0; 16])).expect("rotate").seq;
    assert_eq!(rot, 4);
    rt.block_on(l.append(vec![draft(2)])).expect("append signed by D");
    let records = |l: &Ledger| l.keys().iter().map(|k| (k.key.id(), k.registered_at, k.retired_at)).collect::<Vec<_>>();
    assert_eq!(records(&l), vec![(a.id(), 1, Some(4)), (b.id(), 2, None), (d.id(), 4, None)]);
    l.close().expect("close");

    // A retired key no longer opens the ledger; any active one does.
    match Ledger::open(dir.path(), key_a(), Options::default()) {
        Err(Error::WrongKey { expected }) => assert_eq!(expected, d.id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let l = Ledger::open(dir.path(), key_b(), Options::default()).expect("open with B");
    rt.block_on(l.append(vec![draft(3)])).expect("append signed by B");
    let rot2 = rt.block_on(l.rotate_key(key_from(5), actor(), [0; 16])).expect("rotate B").seq;
    rt.block_on(l.append(vec![draft(4)])).expect("append signed by E");
    let expected = vec![(a.id(), 1, Some(4)), (b.id(), 2, Some(rot2)), (d.id(), 4, None), (e.id(), rot2, None)];
    assert_eq!(records(&l), expected);
    l.close().expect("close");
    // Reopening (which re-checks every frame) gives the same keys.
    let l = Ledger::open(dir.path(), key_from(4), Options::default()).expect("open with D");
    assert_eq!(records(&l), expected);
    rt.block_on(l.append(vec![draft(5)])).expect("append signed by D");
    l.close().expect("close");

    let r = verify_dir(dir.path(), VerifyOptions::default());
    assert!(r.intact, "{r:?}");
    let want: Vec<_> = expected.iter().map(|(id, at, ret)| (id.to_hex(), *at, *ret)).collect();
    assert_eq!(key_ids(&r), want);
    assert_eq!(python_verdict(dir.path()), (true, None));
    // A bundle after both rotations still proves its start (the anchor is signed by D).
    let out = dir.path().join("late.bundle");
    export(dir.path(), &out, Some(rot2 + 1), None).expect("export");
    let br = verify_bundle(&out, VerifyOptions::default());
    assert!(br.intact, "{br:?}");
    assert_eq!(key_ids(&br), want);
}

#[test]
fn a_replica_refuses_frames_of_a_retired_key() {
    let rt = runtime();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let replicas = cluster(&dirs);
    let l = &replicas[0];
    commit_on(&rt, &replicas, vec![register(l, &key_b())], &key_a());
    // B retires A (a rotation may be signed by any active key).
    let rotation = SystemEvent::rotation(&l.id(), key_a().id(), &key_from(6)).encode();
    let mut events = prepared_events(l, vec![Entry::Event(draft(1))], &key_b());
    events[0].kind = ledger::system::KIND_KEY_ROTATION;
    events[0].body = rotation;
    let frame = forge_frame(l, &events, &key_b());
    for r in &replicas {
        assert_eq!(written(rt.block_on(r.append_frame(frame.clone())).expect("append")), vec![3]);
    }
    let late = l.prepare(vec![Entry::Event(draft(2))], &key_a()).expect("prepare").frame;
    for r in &replicas {
        let reason = refused(rt.block_on(r.append_frame(late.clone())).expect("append"));
        assert!(reason.contains("retired at seq 3"), "{reason}");
    }
    commit_on(&rt, &replicas, vec![Entry::Event(draft(3))], &key_from(6));
    commit_on(&rt, &replicas, vec![Entry::Event(draft(4))], &key_b());
    for r in replicas {
        r.close().expect("close");
    }
    assert!(verify_dir(dirs[0].path(), VerifyOptions::default()).intact);
    assert_eq!(python_verdict(dirs[1].path()), (true, None));
}
