//! Projection snapshots: a snapshot plus the events after it gives exactly the state of a
//! full replay, and a snapshot that does not fit (damaged, another format or catalogue,
//! another ledger, another chain head, past the end) is ignored, never trusted.

use std::path::Path;

use ledger::segments::{FrameScan, SEGMENTS_DIR};
use migrations::Envelope;
use projections::State;
use projections::replay::{rebuild, replay};
use projections::snapshot::{self, SnapshotMeta};

#[path = "../benches/support/synth.rs"]
mod synth;

/// The plain fold: decode every event and apply it (what startup did before).
fn plain_fold(dir: &Path) -> State {
    let mut state = State::default();
    for item in FrameScan::new(&dir.join(SEGMENTS_DIR)).expect("scan") {
        let (frame, _) = item.expect("frame");
        for fe in &frame.events {
            state.apply(&Envelope::decode(&fe.event, frame.slots_of(fe).to_vec()).expect("decode"));
        }
    }
    state
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn a_snapshot_plus_the_events_after_it_is_the_full_replay() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ledger");
    let snaps = tmp.path().join("snapshots");
    let l = synth::write_ledger(&dir, 30_000);
    let first = replay(&dir, &mut |_, _| {}).expect("replay");
    assert_eq!(first.state, plain_fold(&dir), "the fast fold is the plain fold");
    assert!(first.state.tokens.len() > 1000 && first.state.leases.len() > 100);
    let meta = first.meta().expect("meta");
    snapshot::write(&snaps, &first.state, &meta).expect("write");

    // Clear secrets never reach a snapshot: the state holds them sealed.
    let bytes = std::fs::read(snaps.join(snapshot::file_name(meta.last_seq))).expect("read");
    assert!(!bytes.windows(12).any(|w| w == b"secret value"), "a clear value is in the snapshot");

    // More events after the snapshot, of the kinds the fold changes most.
    let rt = rt();
    let mut more = Vec::new();
    for i in 0..3000u64 {
        more.push(synth::draft(&synth::access(i, i.is_multiple_of(7)), synth::actor(i), vec![]));
        if i.is_multiple_of(10) {
            more.push(synth::draft(&synth::token(5_000_000 + i, 3), synth::actor(i), vec![]));
        }
    }
    rt.block_on(l.commit(more)).expect("commit");
    let head = l.durable().last_seq;
    l.close().expect("close");

    let full = replay(&dir, &mut |_, _| {}).expect("full replay");
    let mut calls = 0;
    let from = rebuild(&dir, &snaps, &mut |_, _| calls += 1).expect("rebuild");
    assert_eq!(from.from_snapshot, Some(meta));
    assert_eq!(from.folded, head - meta.last_seq, "only the events after the snapshot are folded");
    assert_eq!(from.state, full.state);
    assert_eq!(from.state, plain_fold(&dir));
    assert_eq!(from.head, full.head);
    assert!(calls > 0, "progress is reported");

    // Round trip of the snapshot itself.
    let (read_meta, read_state) = snapshot::read(&snaps.join(snapshot::file_name(meta.last_seq))).expect("read");
    assert_eq!(read_meta, meta);
    assert_eq!(read_state, first.state);
}

/// The state after the `n`th event, and its snapshot metadata (plain fold).
fn fold_until(dir: &Path, n: usize) -> (SnapshotMeta, State) {
    let ledger_id = projections::replay::ledger_id(dir).expect("id").expect("a ledger");
    let mut state = State::default();
    let mut meta = SnapshotMeta { ledger_id, last_seq: 0, head: [0; 32] };
    let mut count = 0;
    for item in FrameScan::new(&dir.join(SEGMENTS_DIR)).expect("scan") {
        let (frame, _) = item.expect("frame");
        for fe in &frame.events {
            if count == n {
                return (meta, state);
            }
            state.apply(&Envelope::decode(&fe.event, frame.slots_of(fe).to_vec()).expect("decode"));
            meta.last_seq = fe.event.seq;
            meta.head = fe.hash.0;
            count += 1;
        }
    }
    (meta, state)
}

/// A ledger, its full replay, and a valid snapshot of it.
fn setup(events: u64) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, State, SnapshotMeta) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ledger");
    let snaps = tmp.path().join("snapshots");
    synth::write_ledger(&dir, events).close().expect("close");
    let r = replay(&dir, &mut |_, _| {}).expect("replay");
    let meta = r.meta().expect("meta");
    (tmp, dir, snaps, r.state, meta)
}

fn ignored(dir: &Path, snaps: &Path, full: &State) {
    let r = rebuild(dir, snaps, &mut |_, _| {}).expect("rebuild");
    assert_eq!(r.from_snapshot, None, "the snapshot must be ignored");
    assert_eq!(&r.state, full, "a full replay gives the right state");
}

#[test]
fn a_snapshot_of_another_chain_head_or_ledger_is_ignored() {
    let (_tmp, dir, snaps, full, meta) = setup(5_000);
    // Another hash for the same seq: the ledger was replaced or rewritten.
    let mut wrong = meta;
    wrong.head[0] ^= 1;
    snapshot::write(&snaps, &full, &wrong).expect("write");
    ignored(&dir, &snaps, &full);
    std::fs::remove_dir_all(&snaps).expect("rm");
    // Another ledger id.
    let mut other = meta;
    other.ledger_id[3] ^= 0x40;
    snapshot::write(&snaps, &full, &other).expect("write");
    ignored(&dir, &snaps, &full);
    std::fs::remove_dir_all(&snaps).expect("rm");
    // A seq past the end of the ledger (say, a ledger restored from an older backup).
    let mut state = full.clone();
    state.last_seq += 10;
    let past = SnapshotMeta { last_seq: state.last_seq, ..meta };
    snapshot::write(&snaps, &state, &past).expect("write");
    ignored(&dir, &snaps, &full);
}

#[test]
fn a_damaged_or_foreign_format_snapshot_is_ignored() {
    let (_tmp, dir, snaps, full, meta) = setup(5_000);
    let path = snapshot::write(&snaps, &full, &meta).expect("write");
    let good = std::fs::read(&path).expect("read");
    // One flipped bit anywhere: the checksum refuses it.
    for at in [0, 10, 60, 200, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x08;
        std::fs::write(&path, &bad).expect("write");
        assert!(snapshot::read(&path).is_err(), "flip at {at}");
        ignored(&dir, &snaps, &full);
    }
    // Another format number (with a valid checksum): refused too.
    let mut other = good[..good.len() - 32].to_vec();
    other[8..12].copy_from_slice(&(snapshot::FORMAT + 1).to_be_bytes());
    let sum = *blake3::hash(&other).as_bytes();
    other.extend_from_slice(&sum);
    std::fs::write(&path, &other).expect("write");
    assert!(matches!(snapshot::read(&path), Err(snapshot::SnapshotError::Format { .. })));
    ignored(&dir, &snaps, &full);
    // Another event catalogue.
    let mut other = good[..good.len() - 32].to_vec();
    other[12] ^= 1;
    let sum = *blake3::hash(&other).as_bytes();
    other.extend_from_slice(&sum);
    std::fs::write(&path, &other).expect("write");
    assert!(matches!(snapshot::read(&path), Err(snapshot::SnapshotError::Catalogue(_))));
    ignored(&dir, &snaps, &full);
}

#[test]
fn a_torn_write_never_becomes_the_snapshot_and_the_last_two_are_kept() {
    let (_tmp, dir, snaps, full, meta) = setup(5_000);
    let good = snapshot::encode(&full, &meta).expect("encode");
    std::fs::create_dir_all(&snaps).expect("mkdir");
    // A write that died before its rename: a temporary file, never read.
    std::fs::write(snaps.join(format!(".tmp-{}-1", meta.last_seq)), &good[..good.len() / 2]).expect("write");
    assert!(snapshot::list(&snaps).is_empty());
    ignored(&dir, &snaps, &full);
    // A torn file under the final name (a file system that lost the data but kept the
    // rename): refused by its checksum, and the older good one is used.
    let (m, older) = fold_until(&dir, 4000);
    snapshot::write(&snaps, &older, &m).expect("older");
    std::fs::write(snaps.join(snapshot::file_name(meta.last_seq)), &good[..good.len() - 100]).expect("torn");
    let r = rebuild(&dir, &snaps, &mut |_, _| {}).expect("rebuild");
    assert_eq!(r.from_snapshot, Some(m), "the older intact snapshot is used");
    assert_eq!(r.state, full);
    // Writing prunes: the two newest stay, leftover temporary files go.
    snapshot::write(&snaps, &full, &meta).expect("write");
    let names: Vec<String> =
        std::fs::read_dir(&snaps).expect("ls").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "{names:?}");
}
