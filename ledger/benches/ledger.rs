//! Ledger benchmarks: durable append under 1, 16 and 256 concurrent appenders (events of
//! ~300 bytes, every append waits for its `fdatasync`), offline verification throughput,
//! and bytes on disk per event.
//!
//! Run: `cargo bench -p cairn-ledger --bench ledger` (set `CAIRN_BENCH_DIR` to put the
//! ledgers on another disk; the default is the system temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledger::verify::{VerifyOptions, verify_dir};
use ledger::{Actor, EventDraft, Ledger, LedgerKey, Options};

fn draft(i: u64) -> EventDraft {
    let mut body = format!("bench event {i} ").into_bytes();
    body.resize(300, b'x');
    EventDraft {
        kind: 0x100,
        kind_version: 1,
        request_id: [3; 16],
        actor: Actor {
            accessor: "aBcDeFgHiJkLmNoPqRsTuVwX".into(),
            entity_id: Some([9; 16]),
            display_name: "approle".into(),
            remote_addr: "10.0.0.7".into(),
        },
        body,
        slots: Vec::new(),
    }
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("CAIRN_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("bench dir"),
        None => tempfile::tempdir().expect("tmp"),
    }
}

fn key() -> LedgerKey {
    LedgerKey::from_seed(&[1; 32]).expect("key")
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("durable_append");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    for appenders in [1u64, 16, 256] {
        let dir = tempdir();
        let l = Arc::new(Ledger::create(dir.path(), key(), Options::default()).expect("create"));
        group.throughput(Throughput::Elements(appenders));
        group.bench_function(format!("{appenders}_appenders"), |b| {
            // One iteration = one durable append by every appender, all at once.
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|t| {
                            let l = l.clone();
                            tokio::spawn(async move {
                                for i in 0..iters {
                                    l.append(vec![draft(t * 1_000_000 + i)]).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                    start.elapsed()
                })
            });
        });
        report_disk_use(dir.path(), &l);
    }
    group.finish();
}

/// Prints bytes on disk per event beyond its 300-byte body (envelope, frame, checkpoint share).
fn report_disk_use(dir: &std::path::Path, l: &Ledger) {
    let events = l.durable().last_seq;
    let bytes: u64 = std::fs::read_dir(dir.join("segments"))
        .expect("ls")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    let per_event = bytes as f64 / events as f64 - 300.0;
    eprintln!("disk: {events} events, {bytes} bytes, {per_event:.1} bytes/event beyond the body");
}

/// A ledger of `events` events written in batches of `batch`.
fn build(events: u64, batch: u64) -> tempfile::TempDir {
    let dir = tempdir();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let l = Ledger::create(dir.path(), key(), Options::default()).expect("create");
    rt.block_on(async {
        let mut i = 0;
        while i < events {
            let n = batch.min(events - i);
            l.append((i..i + n).map(draft).collect()).await.expect("append");
            i += n;
        }
    });
    drop(l);
    dir
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (events, batch) in [(200_000u64, 256u64), (20_000, 1)] {
        let dir = build(events, batch);
        group.throughput(Throughput::Elements(events + 1));
        group.bench_function(format!("batches_of_{batch}"), |b| {
            b.iter(|| {
                let r = verify_dir(dir.path(), VerifyOptions::default());
                assert!(r.intact);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
