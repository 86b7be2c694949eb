//! Golden vectors: the exact bytes FORMAT.md quotes. If one of these changes, the on-disk
//! format changed — that needs a new format version, not an edited vector.

use ledger::checkpoint::Checkpoint;
use ledger::codec::Encoder;
use ledger::hash::{empty_root, event_hash, node_hash, node_key};
use ledger::merkle::Frontier;
use ledger::{Actor, Event, Hash, KeyId, LedgerKey};

fn sample_event() -> Event {
    Event {
        seq: 2,
        prev: Hash([0x11; 32]),
        time: 1_700_000_000_000_000_000,
        kind: 0x0100,
        kind_version: 1,
        request_id: [0x22; 16],
        actor: Actor {
            accessor: "acc".into(),
            entity_id: Some([0x33; 16]),
            display_name: "token".into(),
            remote_addr: "127.0.0.1".into(),
        },
        slot_count: 0,
        body: b"hello".to_vec(),
    }
}

#[test]
fn event_encoding_and_hash() {
    let ev = sample_event();
    assert_eq!(
        hex::encode(ev.encode()),
        concat!(
            "01",                                                               // tag
            "0000000000000002",                                                 // seq
            "1111111111111111111111111111111111111111111111111111111111111111", // prev
            "17979cfe362a0000",                                                 // time
            "0100",
            "0001",                               // kind, version
            "22222222222222222222222222222222",   // request id
            "03616363",                           // accessor "acc"
            "1033333333333333333333333333333333", // entity id
            "05746f6b656e",                       // display name "token"
            "093132372e302e302e31",               // remote addr "127.0.0.1"
            "00",                                 // slot count
            "0000000568656c6c6f",                 // body "hello"
        )
    );
    assert_eq!(ev.hash().to_hex(), "384502a2a4a3647c827b37c77601b29cfad1cc479ea42708e04afc2c488be0ef");
}

#[test]
fn merkle_nodes_and_roots() {
    assert_eq!(hex::encode(node_key()), "37ef6ab65ec0679da97b9f983275a05f853cb814dce2cd600d6699946d0a4c2d");
    assert_eq!(empty_root().to_hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    let (a, b, c) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
    assert_eq!(node_hash(&a, &b).to_hex(), "0547d60a23edbe356ef1f513719df2fcd9cb85988eed356201d26b22ef76ff14");
    let mut f = Frontier::new();
    for h in [a, b, c] {
        f.push_event(&h);
    }
    // Three leaves: node(node(a, b), c).
    assert_eq!(f.root(), node_hash(&node_hash(&a, &b), &c));
    assert_eq!(f.root().to_hex(), "2b7e98f97fa30bc76085a5a1ecf2406233bfd74bbacba5e493f4371190c75e6c");
    assert_eq!(event_hash(b"").to_hex(), "6477664cb96399f224660ac9910f4448921da887ad92f57620c0bfa412ee2524");
}

#[test]
fn keys_and_checkpoint_signature() {
    let key = LedgerKey::from_seed(&[0x44; 32]).expect("key");
    assert_eq!(
        hex::encode(key.public().to_bytes()),
        "d759793bbc13a2819a827c76adb6fba8a49aee007f49f2d0992d99b825ad2c48"
    );
    assert_eq!(key.id(), KeyId::of(&key.public().to_bytes()));
    assert_eq!(key.id().to_hex(), "2acd1d2f2a5febf2");
    let cp = Checkpoint::sign(&key, &[0x55; 16], 2, Hash([0x66; 32]), Hash([0x77; 32]), 1_700_000_000_000_000_001);
    let msg = Checkpoint::signed_message(&[0x55; 16], 2, &cp.head, &cp.root, cp.time, &cp.key_id);
    assert_eq!(
        hex::encode(&msg),
        "636169726e2e636865636b706f696e742e7631005555555555555555555555555555555500000000000000026666666666666666666666666666666666666666666666666666666666666666777777777777777777777777777777777777777777777777777777777777777717979cfe362a00012acd1d2f2a5febf2"
    );
    // ed25519 signatures are deterministic: the same key and message give these bytes.
    assert_eq!(
        hex::encode(cp.signature),
        "5f55e9c39dc0b2d43d81fc54eb65ddf34cdd8758ad4bab4800a64c0a6fba1932d64d65f98992697f0d6f01c04a1b78d2c76ee41ad1e015000418a8f2f2a4100e"
    );
    let mut e = Encoder::default();
    cp.encode_into(&mut e);
    assert_eq!(e.len(), 153);
}
