//! The ledger as its callers use it: append, read back, erase, rotate keys, survive faults.

mod common;

use common::*;
use ledger::fs::{Fault, FaultFs};
use ledger::seal::{Keyring, SealError, random_key};
use ledger::verify::{Verdict, VerifyOptions, verify_dir};
use ledger::{Error, Ledger, Options};

#[test]
fn appends_are_durable_ordered_and_readable_after_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let fs = FaultFs::new();
    let rt = runtime();
    let l = create(dir.path(), small_options(fs.clone()));
    let receipts = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..200 {
            out.extend(l.append(vec![draft(i)]).await.expect("append"));
        }
        out
    });
    // Genesis is seq 1; appends follow without gaps.
    assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), (2..=201).collect::<Vec<_>>());
    assert_eq!(l.durable().last_seq, 201);
    let segments_before = std::fs::read_dir(dir.path().join("segments")).expect("ls").count();
    assert!(segments_before > 3, "small segments must roll: {segments_before}");
    l.close().expect("close");

    let l = open(dir.path(), small_options(FaultFs::new()));
    assert_eq!(all_seqs(&l), (1..=201).collect::<Vec<_>>());
    let ev = l.events(57, 57).next().expect("one").expect("read");
    assert_eq!(ev.hash, receipts[55].hash);
    assert!(ev.event.body.starts_with(b"event 55 "));
    assert_eq!(ev.event.actor, actor());
    // Appends continue the same chain after reopening.
    let r = rt.block_on(l.append(vec![draft(999)])).expect("append");
    assert_eq!(r[0].seq, 202);
    drop(l);
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.events, 202);
}

#[test]
fn concurrent_appends_share_batches_one_fdatasync_each() {
    let dir = tempfile::tempdir().expect("tmp");
    let fs = FaultFs::new();
    let rt = runtime();
    let l =
        std::sync::Arc::new(create(dir.path(), Options { fs: std::sync::Arc::new(fs.clone()), ..Options::default() }));
    let syncs_before = fs.syncs();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    l.append(vec![draft(t * 100 + i)]).await.expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let syncs = fs.syncs() - syncs_before;
    assert_eq!(l.durable().last_seq, 1 + 64 * 20);
    // 1280 appends; group commit must have shared flushes among them.
    assert!(syncs < 640, "{syncs} fdatasyncs for 1280 appends");
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.checkpoints, syncs + 1, "one checkpoint per flushed batch");
}

#[test]
fn multi_event_appends_land_in_one_frame_and_time_queries_work() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1_000));
    let clock_now = now.clone();
    let opts = Options {
        clock: std::sync::Arc::new(move || clock_now.load(std::sync::atomic::Ordering::SeqCst)),
        ..Options::default()
    };
    let l = create(dir.path(), opts);
    for t in [2_000u64, 3_000, 4_000] {
        now.store(t, std::sync::atomic::Ordering::SeqCst);
        let r = rt.block_on(l.append(vec![draft(t), draft(t + 1)])).expect("append");
        assert_eq!(r[0].time, t);
        assert_eq!(r[1].seq, r[0].seq + 1);
    }
    // The clock going backwards never makes event times go backwards.
    now.store(500, std::sync::atomic::Ordering::SeqCst);
    let r = rt.block_on(l.append(vec![draft(1)])).expect("append");
    assert_eq!(r[0].time, 4_000);
    let in_window: Vec<u64> = l.events_between(2_500, 3_500).map(|e| e.expect("read").event.seq).collect();
    assert_eq!(in_window, vec![4, 5]);
    let from: Vec<u64> = l.events_between(3_000, u64::MAX).map(|e| e.expect("read").event.seq).collect();
    assert_eq!(from, vec![4, 5, 6, 7, 8]);
}

#[test]
fn invalid_requests_are_refused_without_writing() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), Options::default());
    let mut reserved = draft(1);
    reserved.kind = 3;
    assert!(matches!(rt.block_on(l.append(vec![reserved])), Err(Error::Invalid(_))));
    let mut long = draft(1);
    long.actor.display_name = "x".repeat(300);
    assert!(matches!(rt.block_on(l.append(vec![long])), Err(Error::Invalid(_))));
    assert!(matches!(rt.block_on(l.append(vec![])), Err(Error::Invalid(_))));
    assert!(matches!(rt.block_on(l.erase(99, vec![0], actor(), [0; 16])), Err(Error::Invalid(_))));
    assert_eq!(l.durable().last_seq, 1);
    drop(l);
    assert!(matches!(Ledger::create(dir.path(), key_from(1), Options::default()), Err(Error::AlreadyExists(_))));
}

#[test]
fn erased_payload_is_gone_while_the_chain_still_verifies() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let mut keyring = Keyring::new();
    keyring.insert(1, &random_key().expect("rng"));
    let l = create(dir.path(), small_options(FaultFs::new()));
    let (sealed, slot) = keyring.seal(b"correct horse battery staple", b"kv/app/1", 0).expect("seal");
    let mut d = draft(1);
    d.body = ledger::body::encode(&sealed).expect("encode");
    d.slots = vec![slot];
    let seq = rt.block_on(l.append(vec![d])).expect("append")[0].seq;
    for i in 0..20 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    let stored = l.events(seq, seq).next().expect("one").expect("read");
    let back: ledger::Sealed = ledger::body::decode(&stored.event.body).expect("decode");
    assert_eq!(&*keyring.open(&back, &stored.slots[0], b"kv/app/1").expect("open"), b"correct horse battery staple");
    assert_eq!(l.wraps().get(&1), Some(&1));

    let erase = rt.block_on(l.erase(seq, vec![0], actor(), [2; 16])).expect("erase");
    assert!(erase.seq > seq);
    let stored = l.events(seq, seq).next().expect("one").expect("read");
    assert_eq!(keyring.open(&back, &stored.slots[0], b"kv/app/1"), Err(SealError::Erased));
    assert_eq!(stored.hash, l.events(seq, seq).next().expect("one").expect("read").hash);
    drop(l);

    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.erased_payloads, 1);
    assert_eq!(report.pending_erasures, 0);
    // Erasing a slot by hand, without an erase event, is reported.
    let l = open(dir.path(), small_options(FaultFs::new()));
    let mut d = draft(2);
    let (_, slot) = keyring.seal(b"other", b"kv/app/2", 0).expect("seal");
    d.slots = vec![slot];
    let seq2 = rt.block_on(l.append(vec![d])).expect("append")[0].seq;
    rt.block_on(l.append(vec![draft(3)])).expect("append");
    drop(l);
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    let pos = find_slot(&bytes, &slot.0).expect("slot on disk");
    bytes[pos..pos + slot.0.len()].fill(0);
    std::fs::write(&seg, &bytes).expect("write");
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(!report.intact);
    assert_eq!(report.failure.expect("failure").seq, seq2);
}

#[test]
fn erasing_the_events_of_one_frame_one_by_one_zeroes_exactly_their_slots() {
    // The second and later erasures find the frame's slot layout in the writer's cache.
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let mut keyring = Keyring::new();
    keyring.insert(1, &random_key().expect("rng"));
    let l = create(dir.path(), small_options(FaultFs::new()));
    let contexts: Vec<Vec<u8>> = (0..4).map(|i| format!("kv/app/{i}").into_bytes()).collect();
    let mut drafts = Vec::new();
    let mut sealed = Vec::new();
    for (i, ctx) in contexts.iter().enumerate() {
        let mut d = draft(i as u64);
        // Events with one and with two slots, so slot bases differ from event positions.
        let slots: Vec<_> = (0..(1 + i % 2))
            .map(|s| keyring.seal(format!("secret {i}.{s}").as_bytes(), ctx, s as u8).expect("seal"))
            .collect();
        d.body = ledger::body::encode(&slots[0].0).expect("encode");
        d.slots = slots.iter().map(|(_, slot)| *slot).collect();
        sealed.push(slots.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
        drafts.push(d);
    }
    let seqs: Vec<u64> = rt.block_on(l.append(drafts)).expect("append").iter().map(|r| r.seq).collect();
    let opens = |l: &Ledger, i: usize| -> Vec<bool> {
        let stored = l.events(seqs[i], seqs[i]).next().expect("one").expect("read");
        sealed[i].iter().zip(&stored.slots).map(|(s, slot)| keyring.open(s, slot, &contexts[i]).is_ok()).collect()
    };
    for erased in [2usize, 0, 3] {
        let slots: Vec<u8> = (0..sealed[erased].len() as u8).collect();
        rt.block_on(l.erase(seqs[erased], slots, actor(), [erased as u8; 16])).expect("erase");
        assert!(opens(&l, erased).iter().all(|ok| !ok), "event {erased} is erased");
    }
    assert!(opens(&l, 1).iter().all(|ok| *ok), "the event not erased still opens");
    drop(l);
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    let erased_slots: usize = [2usize, 0, 3].iter().map(|&e| sealed[e].len()).sum();
    assert_eq!(report.erased_payloads, erased_slots as u64);
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

fn find_slot(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn key_rotation_is_signed_by_the_old_key_and_enforced_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), small_options(FaultFs::new()));
    rt.block_on(l.append(vec![draft(1)])).expect("append");
    let rot = rt.block_on(l.rotate_key(key_from(2), actor(), [3; 16])).expect("rotate");
    rt.block_on(l.append(vec![draft(2)])).expect("append");
    let keys = l.keys();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].retired_at, Some(rot.seq));
    assert_eq!(keys[1].key, key_from(2).public());
    drop(l);
    match Ledger::open(dir.path(), key_from(1), Options::default()) {
        Err(Error::WrongKey { expected }) => assert_eq!(expected, key_from(2).id()),
        other => panic!("opening with the retired key must fail: {other:?}"),
    }
    let l = Ledger::open(dir.path(), key_from(2), Options::default()).expect("open with new key");
    rt.block_on(l.append(vec![draft(3)])).expect("append");
    drop(l);
    let report =
        verify_dir(dir.path(), VerifyOptions { trusted_keys: vec![key_from(1).public()], ..Default::default() });
    assert!(report.intact, "{report:?}");
    assert_eq!(report.keys.len(), 2);
    let untrusted =
        verify_dir(dir.path(), VerifyOptions { trusted_keys: vec![key_from(9).public()], ..Default::default() });
    assert!(!untrusted.intact);
}

#[test]
fn disk_full_refuses_the_batch_and_the_ledger_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let fs = FaultFs::new();
    let rt = runtime();
    let l = create(dir.path(), small_options(fs.clone()));
    rt.block_on(l.append(vec![draft(1)])).expect("append");
    fs.fail_write(0, Fault::NoSpace);
    assert_eq!(rt.block_on(l.append(vec![draft(2)])), Err(Error::Full));
    assert_eq!(l.durable().last_seq, 2);
    // A torn write is rolled back the same way: nothing half-written stays behind.
    fs.fail_write(0, Fault::Torn { keep: 100 });
    assert!(matches!(rt.block_on(l.append(vec![draft(3)])), Err(Error::Io { .. })));
    let r = rt.block_on(l.append(vec![draft(4)])).expect("space is back");
    assert_eq!(r[0].seq, 3, "refused batches leave no gap");
    drop(l);
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.last_seq, 3);
}

#[test]
fn failed_fdatasync_stops_writes_until_reopen_and_keeps_acknowledged_events() {
    let dir = tempfile::tempdir().expect("tmp");
    let fs = FaultFs::new();
    let rt = runtime();
    let l = create(dir.path(), small_options(fs.clone()));
    rt.block_on(l.append(vec![draft(1)])).expect("append");
    fs.fail_sync(0, Fault::Eio);
    assert!(matches!(rt.block_on(l.append(vec![draft(2)])), Err(Error::Io { .. })));
    assert!(matches!(rt.block_on(l.append(vec![draft(3)])), Err(Error::Failed(_))));
    assert!(l.failure().is_some());
    drop(l);
    let l = open(dir.path(), small_options(FaultFs::new()));
    // Seq 2 was acknowledged; the batch whose flush failed may or may not have survived.
    let seqs = all_seqs(&l);
    assert!(seqs.starts_with(&[1, 2]));
    let next = rt.block_on(l.append(vec![draft(4)])).expect("append after reopen")[0].seq;
    assert_eq!(next, *seqs.last().expect("seqs") + 1);
}

#[test]
fn torn_tail_is_cut_on_open_but_corruption_before_the_tail_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), Options::default());
    for i in 0..10 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    drop(l);
    let seg = last_segment(dir.path());
    let good = std::fs::read(&seg).expect("read");
    // A half-written frame at the end: what a crash during a batch write leaves.
    let mut torn = good.clone();
    let frame_start = good.len() - 500;
    torn.extend_from_slice(&good[frame_start..frame_start + 200]);
    std::fs::write(&seg, &torn).expect("write");
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(!report.intact, "the offline verifier reports a torn tail");
    assert_eq!(report.verdict, Verdict::TornTail, "{report:?}");
    assert!(report.failure.is_none(), "{report:?}");
    let tail = report.torn_tail.as_ref().expect("torn tail");
    assert_eq!((tail.after_seq, tail.offset, tail.bytes), (11, good.len() as u64, 200), "{report:?}");
    assert_eq!(report.last_seq, 11);
    let l = open(dir.path(), Options::default());
    assert_eq!(l.durable().last_seq, 11);
    drop(l);
    assert_eq!(std::fs::read(&seg).expect("read"), good, "the torn tail was cut exactly");
    assert!(verify_dir(dir.path(), VerifyOptions::default()).intact);

    // A damaged frame followed by intact frames is not a torn tail. (Open re-checks the
    // frames written since the index last saved its state; without an index, all of them.)
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&seg, &bad).expect("write");
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Broken, "{report:?}");
    assert!(report.torn_tail.is_none());
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    match Ledger::open(dir.path(), key_from(1), Options::default()) {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn deleted_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), small_options(FaultFs::new()));
    for i in 0..100 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
    }
    drop(l);
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    let l = open(dir.path(), small_options(FaultFs::new()));
    assert_eq!(all_seqs(&l), (1..=101).collect::<Vec<_>>());
    assert_eq!(l.events(50, 52).count(), 3);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let _l = create(dir.path(), Options::default());
    assert!(matches!(Ledger::open(dir.path(), key_from(1), Options::default()), Err(Error::Invalid(_))));
}

#[test]
fn commit_appends_and_erases_in_one_frame_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let mut keyring = Keyring::new();
    keyring.insert(1, &random_key().expect("rng"));
    let l = create(dir.path(), Options::default());
    let (sealed, slot) = keyring.seal(b"v1", b"ctx", 0).expect("seal");
    let mut d = draft(1);
    d.body = ledger::body::encode(&sealed).expect("encode");
    d.slots = vec![slot];
    let target = rt.block_on(l.append(vec![d])).expect("append")[0].seq;
    // An invalid erasure refuses the whole commit.
    let erase = |slot: u8| ledger::Entry::Erase { target, slots: vec![slot], actor: actor(), request_id: [0; 16] };
    assert!(rt.block_on(l.commit(vec![ledger::Entry::Event(draft(2)), erase(5)])).is_err());
    assert_eq!(l.durable().last_seq, target);
    let r = rt.block_on(l.commit(vec![ledger::Entry::Event(draft(3)), erase(0)])).expect("commit");
    assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![target + 1, target + 2]);
    let stored = l.events(target, target).next().expect("one").expect("read");
    assert_eq!(keyring.open(&sealed, &stored.slots[0], b"ctx"), Err(SealError::Erased));
    drop(l);
    let report = verify_dir(dir.path(), VerifyOptions::default());
    assert!(report.intact && report.erased_payloads == 1, "{report:?}");
}
