//! Fuzz target: arbitrary bytes as a proof JSON and a checkpoint (JSON or signed note),
//! checked by the same functions as `cairn ledger verify-proof`. Nothing may panic, and a
//! proof that verifies must match the signed tree it was checked against.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ledger::proof::{Proof, TrustedTree, parse_proof, verify_consistency_proof, verify_inclusion_proof};
use ledger::{Hash, LedgerKey, note};

fuzz_target!(|data: &[u8]| {
    // Layout: proof text, 0xFF, checkpoint text, 0xFF, old checkpoint text.
    let mut parts = data.split(|&b| b == 0xFF);
    let proof_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let cp_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let old_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let Some(key) = LedgerKey::from_seed(&[0x44; 32]) else { return };
    let trusted = [key.public()];
    let proof = parse_proof(&proof_text);
    let tree = TrustedTree::from_text(&cp_text, &trusted);
    let old = TrustedTree::from_text(&old_text, &trusted);
    // Signed trees the fuzzer cannot forge: take sizes and roots from the proof itself and
    // sign them, so the Merkle checks are reached with attacker-chosen sizes.
    let signed = |size: u64, root: Option<&str>| {
        let root = root.and_then(Hash::from_hex).unwrap_or_default();
        let text = note::sign(&key, &[0x55; 16], size, &root);
        TrustedTree::from_note(&text, &trusted).ok()
    };
    match proof {
        Ok(Proof::Inclusion(p)) => {
            if let Ok(t) = &tree {
                let _ = verify_inclusion_proof(t, &p, None);
            }
            if let Some(t) = signed(p.tree_size, p.root_hash.as_deref()) {
                if let Ok(proven) = verify_inclusion_proof(&t, &p, None) {
                    assert_eq!(proven.tree.size(), p.tree_size);
                    assert_eq!(Some(proven.seq), p.leaf_index.checked_add(1));
                }
            }
        }
        Ok(Proof::Consistency(p)) => {
            if let (Ok(o), Ok(n)) = (&old, &tree) {
                let _ = verify_consistency_proof(o, n, &p);
            }
            if let (Some(o), Some(n)) = (signed(p.first, p.first_root.as_deref()), signed(p.second, p.second_root.as_deref())) {
                if verify_consistency_proof(&o, &n, &p).is_ok() {
                    assert!(p.first <= p.second && p.first >= 1);
                }
            }
        }
        Err(_) => {}
    }
});
