//! The frozen format-v1 ledger (`tests/fixtures/v1`, written once by
//! `examples/make_fixture.rs`) must verify, open and decrypt in every later version.

use std::path::Path;

use ledger::seal::{Keyring, SealError};
use ledger::verify::{VerifyOptions, verify_dir};
use ledger::{Ledger, LedgerKey, Options, Sealed};

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1"))
}

#[test]
fn v1_fixture_verifies_with_its_pinned_genesis_key() {
    let genesis = LedgerKey::from_seed(&[0xA1; 32]).expect("key").public();
    let r = verify_dir(fixture(), VerifyOptions { trusted_keys: vec![genesis], ..Default::default() });
    assert!(r.intact, "{r:?}");
    assert_eq!(r.events, 43);
    assert_eq!(r.keys.len(), 2);
    assert_eq!(r.erased_payloads, 1);
    assert_eq!(r.keys[0].retired_at, Some(20));
}

#[test]
fn v1_fixture_opens_appends_and_keeps_its_sealed_payloads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let segs = tmp.path().join("segments");
    std::fs::create_dir(&segs).expect("mkdir");
    for e in std::fs::read_dir(fixture().join("segments")).expect("ls") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, segs.join(p.file_name().expect("name"))).expect("copy");
    }
    let l =
        Ledger::open(tmp.path(), LedgerKey::from_seed(&[0xA2; 32]).expect("key"), Options::default()).expect("open v1");
    let mut keyring = Keyring::new();
    keyring.insert(1, &[0x5E; 32]);
    let sealed: Vec<_> = l.events(1, u64::MAX).map(|e| e.expect("read")).filter(|e| !e.slots.is_empty()).collect();
    assert_eq!(sealed.len(), 2);
    let open = |i: usize, ctx: &[u8]| {
        let body: Sealed = ledger::body::decode(&sealed[i].event.body).expect("body");
        keyring.open(&body, &sealed[i].slots[0], ctx).map(|p| p.to_vec())
    };
    assert_eq!(open(0, b"fixture/context"), Err(SealError::Erased));
    assert_eq!(open(1, b"fixture/kept").expect("open"), b"kept secret");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let draft = ledger::EventDraft {
        kind: 0x100,
        kind_version: 1,
        request_id: [0; 16],
        actor: ledger::Actor::system(),
        body: vec![1],
        slots: vec![],
    };
    assert_eq!(rt.block_on(l.append(vec![draft])).expect("append")[0].seq, 44);
}
