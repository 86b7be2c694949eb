//! Helpers shared by the ledger's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ledger::fs::FaultFs;
use ledger::{Actor, EventDraft, Ledger, LedgerKey, Options};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub fn actor() -> Actor {
    Actor {
        accessor: "hmac-accessor-0000000000".into(),
        entity_id: Some([7; 16]),
        display_name: "token".into(),
        remote_addr: "127.0.0.1".into(),
    }
}

/// An application event with a ~300-byte body.
pub fn draft(i: u64) -> EventDraft {
    let mut body = format!("event {i} ").into_bytes();
    body.resize(300, b'x');
    EventDraft { kind: 0x0100, kind_version: 1, request_id: [1; 16], actor: actor(), body, slots: Vec::new() }
}

/// Small limits so segment rolls and batch splits happen in every test.
pub fn small_options(fs: FaultFs) -> Options {
    Options { fs: Arc::new(fs), segment_max_bytes: 16 << 10, max_batch_events: 64, ..Options::default() }
}

pub fn key_from(seed: u8) -> LedgerKey {
    LedgerKey::from_seed(&[seed; 32]).expect("valid key")
}

pub fn create(dir: &Path, opts: Options) -> Ledger {
    Ledger::create(dir, key_from(1), opts).expect("create ledger")
}

pub fn open(dir: &Path, opts: Options) -> Ledger {
    Ledger::open(dir, key_from(1), opts).expect("open ledger")
}

/// Seqs of every event readable from the ledger, in order.
pub fn all_seqs(l: &Ledger) -> Vec<u64> {
    l.events(1, u64::MAX).map(|e| e.expect("read").event.seq).collect()
}

/// The verdict of the second, Python implementation (`tools/verify_ledger.py`) on a ledger
/// directory: intact, and the first bad seq.
pub fn python_verdict(dir: &Path) -> (bool, Option<u64>) {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_ledger.py"))
        .arg(dir)
        .arg("--json")
        .output()
        .expect("python3 runs (scripts/test installs blake3 and cryptography)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python verifier output is JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (v["intact"] == true, v["first_bad_seq"].as_u64())
}
