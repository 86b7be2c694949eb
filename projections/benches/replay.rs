//! Replay and snapshot benchmark (plain harness).
//!
//! `cargo bench -p cairn-projections --bench replay` writes a synthetic ledger of
//! `CAIRN_REPLAY_EVENTS` events (default 1,000,000; mostly access events, see
//! `support/synth.rs`) in a temp dir (`CAIRN_BENCH_DIR` to choose the disk), then measures:
//! the plain fold (`Envelope::decode` + `State::apply` of every event, as startup did),
//! `projections::replay::replay`, writing and reading a snapshot, a restart from the
//! snapshot with 1% of the events after it, and `Ledger::open` of the closed ledger.
//! `-- --keep DIR` writes the ledger into DIR/ledger and keeps it; with `--generate-only`
//! it then only times `Ledger::open` and stops (bench/restart.sh uses that).

use std::time::Instant;

use ledger::segments::{FrameScan, SEGMENTS_DIR};
use migrations::Envelope;
use projections::State;
use projections::replay::{rebuild, replay};
use projections::snapshot;

#[path = "support/synth.rs"]
mod synth;

fn rate(n: u64, secs: f64) -> String {
    format!("{:.0} events/s", n as f64 / secs)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = std::env::var("CAIRN_REPLAY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let keep = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    let tmp = match std::env::var_os("CAIRN_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("bench dir"),
        None => tempfile::tempdir().expect("tmp"),
    };
    let data = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let dir = data.join("ledger");
    let snaps = data.join(snapshot::SNAPSHOTS_DIR);

    let t = Instant::now();
    let last = if dir.exists() {
        // A ledger kept by an earlier `--keep` run: reuse it.
        replay(&dir, &mut |_, _| {}).expect("replay").state.last_seq
    } else {
        let l = synth::write_ledger(&dir, n);
        let last = l.durable().last_seq;
        l.close().expect("close");
        last
    };
    let secs = t.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(dir.join(SEGMENTS_DIR))
        .expect("ls")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("ledger: {last} events, {} MB, written in {secs:.1} s", bytes / 1_000_000);
    if args.iter().any(|a| a == "--generate-only") {
        let t = Instant::now();
        let l = ledger::Ledger::open(&dir, ledger::LedgerKey::from_seed(&[1; 32]).expect("key"), Default::default())
            .expect("open");
        println!("Ledger::open after a clean close: {:.3} s", t.elapsed().as_secs_f64());
        l.close().expect("close");
        return;
    }

    // The fold as startup did it before: decode every event, apply it.
    let t = Instant::now();
    let mut plain = State::default();
    for item in FrameScan::new(&dir.join(SEGMENTS_DIR)).expect("scan") {
        let (frame, _) = item.expect("frame");
        for fe in &frame.events {
            let env = Envelope::decode(&fe.event, frame.slots_of(fe).to_vec()).expect("decode");
            plain.apply(&env);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("plain fold (decode + apply every event): {secs:.2} s, {}", rate(last, secs));

    for round in 1..=3 {
        let t = Instant::now();
        let r = replay(&dir, &mut |_, _| {}).expect("replay");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(r.state, plain, "the fast fold gives the plain fold's state");
        println!("replay::replay round {round}: {secs:.2} s, {}", rate(r.folded, secs));
    }

    let full = replay(&dir, &mut |_, _| {}).expect("replay");
    let meta = full.meta().expect("meta");
    let t = Instant::now();
    let path = snapshot::write(&snaps, &full.state, &meta).expect("write snapshot");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("snapshot write: {:.3} s, {} KB", t.elapsed().as_secs_f64(), size / 1000);
    let t = Instant::now();
    let (_, read) = snapshot::read(&path).expect("read snapshot");
    println!("snapshot read + check: {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(read, full.state, "the snapshot gives the replayed state");

    let t = Instant::now();
    let from = rebuild(&dir, &snaps, &mut |_, _| {}).expect("rebuild");
    println!(
        "restart from the snapshot at the head (load + check head): {:.3} s, {} events folded",
        t.elapsed().as_secs_f64(),
        from.folded
    );
    assert_eq!(from.state, full.state);

    let t = Instant::now();
    let l = ledger::Ledger::open(&dir, ledger::LedgerKey::from_seed(&[1; 32]).expect("key"), Default::default())
        .expect("open");
    println!("Ledger::open after a clean close: {:.3} s", t.elapsed().as_secs_f64());
    l.close().expect("close");
    if keep.is_some() {
        println!("kept in {}", data.display());
    }
}
