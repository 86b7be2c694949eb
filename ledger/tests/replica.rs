//! Replicas: frames a leader builds with `prepare` are appended byte for byte by every
//! replica; a frame that does not continue the chain is refused by all of them alike; a
//! frame handed again is recognised; erasures reach every copy; each replica verifies.

mod common;

use common::*;
use ledger::fs::FaultFs;
use ledger::seal::{Keyring, SealError, random_key};
use ledger::verify::{VerifyOptions, verify_dir};
use ledger::{Applied, Entry, Ledger, Options};

fn segment_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

fn now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(since.as_nanos()).expect("time fits")
}

/// A replica in `dir` of a new ledger whose genesis `key` signs.
fn new_replica(dir: &std::path::Path, key: &ledger::LedgerKey, opts: Options) -> Ledger {
    let genesis = Ledger::genesis_frame(key, &opts).expect("genesis");
    Ledger::create_replica(dir, &genesis, opts).expect("replica")
}

fn written(a: Applied) -> Vec<u64> {
    match a {
        Applied::Written(events) => events.iter().map(|e| e.event.seq).collect(),
        other => panic!("expected the frame to be written, got {other:?}"),
    }
}

#[test]
fn replicas_append_the_leaders_frames_byte_for_byte() {
    let rt = runtime();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let key = key_from(1);
    let genesis = Ledger::genesis_frame(&key, &Options::default()).expect("genesis");
    let replicas: Vec<Ledger> = dirs
        .iter()
        .map(|d| Ledger::create_replica(d.path(), &genesis, small_options(FaultFs::new())).expect("replica"))
        .collect();
    let mut keyring = Keyring::new();
    keyring.insert(1, &random_key().expect("rng"));
    let (sealed, slot) = keyring.seal(b"secret", b"ctx", 0).expect("seal");

    // The leader (replica 0) builds; every replica appends, in the same order.
    let mut target = 0;
    for i in 0..40u64 {
        let mut d = draft(i);
        if i == 5 {
            d.body = ledger::body::encode(&sealed).expect("encode");
            d.slots = vec![slot];
        }
        let mut entries = vec![Entry::Event(d), Entry::Event(draft(1000 + i))];
        if i == 30 {
            entries.push(Entry::Erase { target, slots: vec![0], actor: actor(), request_id: [0; 16] });
        }
        let prepared = replicas[0].prepare(entries, &key).expect("prepare");
        if i == 5 {
            target = prepared.receipts[0].seq;
        }
        for r in &replicas {
            let seqs = written(rt.block_on(r.append_frame(prepared.frame.clone())).expect("append"));
            assert_eq!(seqs, prepared.receipts.iter().map(|r| r.seq).collect::<Vec<_>>());
        }
    }
    let last = replicas[0].durable().last_seq;
    assert_eq!(last, 1 + 40 * 2 + 1);
    // A snapshot (every durable frame) rebuilds a fresh replica, and catches up a lagging one.
    let snapshot = replicas[0].durable_frames().expect("snapshot");
    let frames = ledger::replica::split_frames(&snapshot).expect("split");
    let fresh_dir = tempfile::tempdir().expect("tmp");
    let fresh = Ledger::create_replica(fresh_dir.path(), frames[0], Options::default()).expect("from snapshot");
    for f in &frames {
        let outcome = rt.block_on(fresh.append_frame(f.to_vec())).expect("append");
        assert!(matches!(outcome, Applied::Written(_) | Applied::AlreadyHeld), "{outcome:?}");
    }
    assert_eq!(fresh.durable().head, replicas[0].durable().head);
    assert!(ledger::replica::split_frames(&snapshot[..snapshot.len() - 1]).is_err());
    for r in &replicas {
        assert_eq!(r.durable(), replicas[0].durable());
        let stored = r.events(target, target).next().expect("one").expect("read");
        assert_eq!(keyring.open(&sealed, &stored.slots[0], b"ctx"), Err(SealError::Erased), "erased on every copy");
    }
    drop(replicas);
    let first = segment_bytes(dirs[0].path());
    assert!(first.len() > 1, "the small segment limit rolled segments");
    for d in &dirs[1..] {
        assert_eq!(segment_bytes(d.path()), first, "every replica holds the same bytes");
    }
    for d in &dirs {
        let report = verify_dir(d.path(), VerifyOptions { trusted_keys: vec![key.public()], ..Default::default() });
        assert!(report.intact && report.last_seq == last && report.erased_payloads == 1, "{report:?}");
    }
    // A reopened replica carries on where it stopped.
    let again = Ledger::open_replica(dirs[1].path(), small_options(FaultFs::new())).expect("reopen");
    assert_eq!(again.durable().last_seq, last);
    let p = again.prepare(vec![Entry::Event(draft(7))], &key).expect("prepare");
    assert_eq!(written(rt.block_on(again.append_frame(p.frame)).expect("append")), vec![last + 1]);
}

#[test]
fn stale_duplicate_and_forged_frames_change_nothing() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let key = key_from(1);
    let genesis = Ledger::genesis_frame(&key, &Options::default()).expect("genesis");
    let l = Ledger::create_replica(dir.path(), &genesis, Options::default()).expect("replica");

    let a = l.prepare(vec![Entry::Event(draft(1))], &key).expect("prepare");
    // Built on the same head: only the first of the two can continue the chain.
    let stale = l.prepare(vec![Entry::Event(draft(2)), Entry::Event(draft(3))], &key).expect("prepare");
    written(rt.block_on(l.append_frame(a.frame.clone())).expect("append"));
    let durable = l.durable();

    // Handed again (a replay after a crash): recognised, nothing written.
    assert_eq!(rt.block_on(l.append_frame(a.frame.clone())).expect("append"), Applied::AlreadyHeld);
    assert_eq!(rt.block_on(l.append_frame(genesis.clone())).expect("append"), Applied::AlreadyHeld);
    // A stale leader's frame overlaps what is held: refused.
    assert!(matches!(rt.block_on(l.append_frame(stale.frame)).expect("append"), Applied::Refused(_)));
    // Signed by a key the ledger never registered: refused.
    let (forged, after) = l.prepare_on(None, vec![Entry::Event(draft(4))], &key_from(9), now()).expect("prepare");
    assert!(after.is_none(), "the leader knows beforehand that the frame will be refused");
    let refused = rt.block_on(l.append_frame(forged.frame)).expect("append");
    assert!(matches!(&refused, Applied::Refused(r) if r.contains("key")), "{refused:?}");
    // Garbage and a frame with a flipped byte: refused.
    assert!(matches!(rt.block_on(l.append_frame(vec![1, 2, 3])).expect("append"), Applied::Refused(_)));
    let mut flipped = l.prepare(vec![Entry::Event(draft(5))], &key).expect("prepare").frame;
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert!(matches!(rt.block_on(l.append_frame(flipped)).expect("append"), Applied::Refused(_)));
    assert_eq!(l.durable(), durable, "nothing refused was written");

    // A replica refuses to build frames by itself.
    assert!(rt.block_on(l.append(vec![draft(6)])).is_err());
    drop(l);
    assert!(verify_dir(dir.path(), VerifyOptions::default()).intact);
}

#[test]
fn a_frame_prepared_at_a_time_has_that_time_and_never_goes_back() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let key = key_from(1);
    let l = new_replica(dir.path(), &key, Options::default());
    let t = now() + 5_000_000_000;

    let a = l.prepare_at(vec![Entry::Event(draft(1)), Entry::Event(draft(2))], &key, t).expect("prepare");
    assert!(a.receipts.iter().all(|r| r.time == t), "every event of the frame has the time asked for");
    written(rt.block_on(l.append_frame(a.frame)).expect("append"));
    // Earlier than the last frame: the frame keeps the ledger's time order.
    let b = l.prepare_at(vec![Entry::Event(draft(3))], &key, t - 1).expect("prepare");
    assert_eq!(b.receipts[0].time, t);
    let (c, _) = l.prepare_on(None, vec![Entry::Event(draft(4))], &key, t - 2).expect("prepare");
    assert_eq!(c.receipts[0].time, t);
    written(rt.block_on(l.append_frame(b.frame)).expect("append"));
    let stored: Vec<u64> = l.events(1, u64::MAX).map(|e| e.expect("event").event.time).collect();
    assert_eq!(&stored[1..], &[t, t, t], "the times are those stored");
    drop(l);
    assert!(verify_dir(dir.path(), VerifyOptions::default()).intact);
}

#[test]
fn a_leader_builds_frames_on_those_still_in_flight() {
    let rt = runtime();
    let key = key_from(1);
    let genesis = Ledger::genesis_frame(&key, &Options::default()).expect("genesis");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let leader = Ledger::create_replica(dirs[0].path(), &genesis, Options::default()).expect("replica");
    let follower = Ledger::create_replica(dirs[1].path(), &genesis, Options::default()).expect("replica");

    // Three frames prepared before any is appended, each on the chain of the one before.
    let (a, after_a) = leader.prepare_on(None, vec![Entry::Event(draft(1))], &key, now()).expect("prepare");
    let (b, after_b) = leader
        .prepare_on(after_a.as_deref(), vec![Entry::Event(draft(2)), Entry::Event(draft(3))], &key, now())
        .expect("b");
    let (c, after_c) = leader.prepare_on(after_b.as_deref(), vec![Entry::Event(draft(4))], &key, now()).expect("c");
    assert_eq!(b.receipts.first().map(|r| r.seq), a.receipts.last().map(|r| r.seq + 1));
    assert_eq!(c.receipts.first().map(|r| r.seq), b.receipts.last().map(|r| r.seq + 1));
    for l in [&leader, &follower] {
        for p in [&a, &b, &c] {
            let seqs: Vec<u64> = p.receipts.iter().map(|r| r.seq).collect();
            assert_eq!(written(rt.block_on(l.append_frame(p.frame.clone())).expect("append")), seqs);
        }
        assert_eq!(l.durable().last_seq, c.receipts[0].seq);
    }
    // The chain a frame predicted is the one appending it made.
    let predicted = after_c.as_deref().expect("c continues the chain");
    let durable = leader.durable();
    assert_eq!((predicted.last_seq(), predicted.head), (durable.last_seq, durable.head));
    assert_eq!(predicted.last_checkpoint, durable.checkpoint);
    assert_eq!(segment_bytes(dirs[0].path()), segment_bytes(dirs[1].path()));

    // A frame built on one that never landed does not continue the chain: refused.
    let (_lost, after_lost) = leader.prepare_on(None, vec![Entry::Event(draft(6))], &key, now()).expect("lost");
    let (orphan, _) =
        leader.prepare_on(after_lost.as_deref(), vec![Entry::Event(draft(7))], &key, now()).expect("orphan");
    let durable = leader.durable();
    assert!(matches!(rt.block_on(leader.append_frame(orphan.frame)).expect("append"), Applied::Refused(_)));
    assert_eq!(leader.durable(), durable);
    // With nothing in flight the next frame is built on the durable head again.
    let (next, _) = leader.prepare_on(None, vec![Entry::Event(draft(8))], &key, now()).expect("next");
    assert_eq!(written(rt.block_on(leader.append_frame(next.frame)).expect("append")), vec![durable.last_seq + 1]);
    drop((leader, follower));
    for d in &dirs {
        assert!(verify_dir(d.path(), VerifyOptions::default()).intact);
    }
}

/// With deferred syncs (a cluster node's ledger) a frame is answered once written and synced
/// right after: a failed sync is reported by `sync`, stops the ledger, and leaves
/// `synced_seq` at the last frame that is on disk for sure. Frames keep rolling segments.
#[test]
fn deferred_syncs_answer_frames_written_and_report_what_is_on_disk() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let fs = FaultFs::new();
    let key = key_from(1);
    let opts = ledger::Options { defer_frame_sync: true, ..small_options(fs.clone()) };
    let l = new_replica(dir.path(), &key, opts);

    // Enough frames to roll segments (16 KiB each): each frame is synced before the next.
    for i in 0..60 {
        let p = l.prepare(vec![Entry::Event(draft(i))], &key).expect("prepare");
        let syncs = fs.syncs();
        written(rt.block_on(l.append_frame(p.frame)).expect("append"));
        rt.block_on(l.sync()).expect("sync");
        assert_eq!(l.synced_seq(), l.durable().last_seq, "synced once sync returns");
        assert!(fs.syncs() > syncs, "the frame was synced");
    }
    // Room for the next frame in the active segment, so that its sync is the frame's own.
    let mut i = 60;
    while l.durable().segment_len + 4096 > 16 << 10 {
        let p = l.prepare(vec![Entry::Event(draft(i))], &key).expect("prepare");
        written(rt.block_on(l.append_frame(p.frame)).expect("append"));
        i += 1;
    }
    rt.block_on(l.sync()).expect("sync");
    let on_disk = l.synced_seq();

    // The next sync fails: the frame was answered all the same (the Raft log holds it), the
    // failure stops the ledger, and synced_seq does not claim the frame.
    fs.fail_sync(0, ledger::fs::Fault::Eio);
    let p = l.prepare(vec![Entry::Event(draft(100))], &key).expect("prepare");
    let last = written(rt.block_on(l.append_frame(p.frame)).expect("answered before its sync"));
    assert!(rt.block_on(l.sync()).is_err(), "the failed sync is reported");
    assert_eq!(l.synced_seq(), on_disk);
    assert!(last[0] > on_disk);
    let p = l.prepare(vec![Entry::Event(draft(101))], &key);
    assert!(p.is_err() || rt.block_on(l.append_frame(p.expect("prepared").frame)).is_err(), "the ledger stopped");
    drop(l);
    fs.clear();

    // Reopened, it holds every frame that reached the disk and verifies.
    let again = Ledger::open_replica(dir.path(), small_options(FaultFs::new())).expect("reopen");
    assert!(again.durable().last_seq >= on_disk);
    drop(again);
    assert!(verify_dir(dir.path(), VerifyOptions::default()).intact);
}
