//! Proofs from a real ledger: every proof the prover gives verifies against the signed
//! checkpoints (JSON and note forms), across segment rolls and a key rotation, and sizes
//! outside the ledger are refused.

mod common;

use common::*;
use ledger::fs::FaultFs;
use ledger::proof::{
    TrustedTree, prove_consistency, prove_inclusion, verify_consistency_proof, verify_inclusion_proof,
};
use ledger::{Actor, Error};

#[test]
fn proofs_from_a_ledger_verify_against_its_checkpoints() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let l = create(dir.path(), small_options(FaultFs::new()));
    let trusted = [key_from(1).public(), key_from(2).public()];
    let first = l.durable().checkpoint.expect("genesis checkpoint");
    let mut saved = vec![first.to_saved(&l.id())];
    let mut notes = vec![l.checkpoint_note(&first).expect("signer").0];
    for i in 0..120 {
        rt.block_on(l.append(vec![draft(i)])).expect("append");
        if i == 60 {
            rt.block_on(l.rotate_key(key_from(2), Actor::system(), [0; 16])).expect("rotate");
        }
        if i % 17 == 0 {
            let cp = l.durable().checkpoint.expect("checkpoint");
            saved.push(cp.to_saved(&l.id()));
            notes.push(l.checkpoint_note(&cp).expect("signer").0);
        }
    }
    let trees: Vec<TrustedTree> =
        saved.iter().map(|s| TrustedTree::from_saved(s, &trusted).expect("checkpoint verifies")).collect();
    for (t, note) in trees.iter().zip(&notes) {
        assert_eq!(TrustedTree::from_note(note, &trusted).map(|n| (n.size(), n.root())), Ok((t.size(), t.root())));
    }
    // A note after the rotation is signed by the new key only.
    let last_note = notes.last().expect("note");
    assert!(TrustedTree::from_note(last_note, &trusted[..1]).is_err());

    for (i, old) in trees.iter().enumerate() {
        for new in &trees[i..] {
            let p = prove_consistency(&l, old.size(), new.size()).expect("prove");
            assert_eq!(verify_consistency_proof(old, new, &p), Ok(()), "{} -> {}", old.size(), new.size());
        }
        for seq in [1, old.size() / 2 + 1, old.size()] {
            let p = prove_inclusion(&l, seq, old.size()).expect("prove");
            let leaf = l.events(seq, seq).next().expect("event").expect("read").hash;
            let proven = verify_inclusion_proof(old, &p, Some(&leaf)).expect("verifies");
            assert_eq!(proven.seq, seq);
        }
    }
    let last = l.durable().last_seq;
    for (a, b) in [(0, 1), (1, 0), (1, last + 1), (2, 1), (u64::MAX, u64::MAX), (1, u64::MAX)] {
        assert!(matches!(prove_consistency(&l, a, b), Err(Error::Invalid(_))), "{a} -> {b}");
    }
    for (seq, size) in [(0, 1), (2, 1), (1, 0), (1, last + 1), (u64::MAX, u64::MAX), (u64::MAX, last)] {
        assert!(matches!(prove_inclusion(&l, seq, size), Err(Error::Invalid(_))), "{seq} in {size}");
    }
}
