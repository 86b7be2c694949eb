//! Writes the frozen format-v1 fixture ledger: `cargo run -p cairn-ledger --example
//! make_fixture -- DIR`. The committed copy under `ledger/tests/fixtures/v1` was made
//! once and must never be regenerated: tests verify it forever, so any change to the
//! format that breaks old ledgers fails CI.
use std::sync::Arc;

use ledger::fs::StdFs;
use ledger::seal::Keyring;
use ledger::{Actor, EventDraft, Ledger, LedgerKey, Options};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: make_fixture DIR"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let opts = Options { fs: Arc::new(StdFs), segment_max_bytes: 4096, ..Options::default() };
    let l = Ledger::create(&dir, LedgerKey::from_seed(&[0xA1; 32]).expect("key"), opts).expect("create");
    let mut keyring = Keyring::new();
    keyring.insert(1, &[0x5E; 32]);
    let actor = Actor {
        accessor: "fixture-accessor".into(),
        entity_id: Some([0xE1; 16]),
        display_name: "fixture".into(),
        remote_addr: "192.0.2.1".into(),
    };
    let draft = |i: u64| EventDraft {
        kind: 0x0100,
        kind_version: 1,
        request_id: [i as u8; 16],
        actor: actor.clone(),
        body: format!("fixture event {i}").into_bytes(),
        slots: vec![],
    };
    rt.block_on(async {
        for i in 0..10 {
            l.append(vec![draft(i)]).await.expect("append");
        }
        l.append((10..15).map(draft).collect()).await.expect("append batch");
        let (sealed, slot) = keyring.seal(b"fixture secret", b"fixture/context", 0).expect("seal");
        let mut d = draft(15);
        d.body = ledger::body::encode(&sealed).expect("encode");
        d.slots = vec![slot];
        let sealed_seq = l.append(vec![d]).await.expect("append sealed")[0].seq;
        let (sealed2, slot2) = keyring.seal(b"kept secret", b"fixture/kept", 0).expect("seal");
        let mut d = draft(16);
        d.body = ledger::body::encode(&sealed2).expect("encode");
        d.slots = vec![slot2];
        l.append(vec![d]).await.expect("append sealed");
        l.erase(sealed_seq, vec![0], actor.clone(), [0xEE; 16]).await.expect("erase");
        l.rotate_key(LedgerKey::from_seed(&[0xA2; 32]).expect("key"), actor.clone(), [0xAA; 16]).await.expect("rotate");
        for i in 17..40 {
            l.append(vec![draft(i)]).await.expect("append");
        }
    });
    let d = l.durable();
    println!("fixture written: {} events", d.last_seq);
}
