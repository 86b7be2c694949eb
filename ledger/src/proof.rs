//! Inclusion and consistency proofs as JSON (FORMAT.md §12), and their verification tied to
//! signed checkpoints.
//!
//! A proof alone proves nothing: the tree size and root it is checked against must come
//! from a checkpoint whose signature was checked with a trusted key ([`TrustedTree`]), and
//! the leaf from the auditor. Every number and hash the proof repeats (sizes, roots, leaf,
//! ledger id, seq) must equal the trusted ones, or the proof is refused; the Merkle
//! verifiers are then given only the trusted values and the path.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{LedgerId, SavedCheckpoint};
use crate::error::Error;
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::merkle;
use crate::note::{self, NoteError};
use crate::store::Ledger;

/// Most hashes in a path: a tree of at most 2⁶⁴ leaves needs at most 64 (inclusion) and
/// 128 (consistency).
pub const MAX_PATH: usize = 128;

/// Why a proof or a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not a proof: {0}")]
    Malformed(String),
    #[error("not a checkpoint: {0}")]
    BadCheckpoint(String),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("the checkpoint's key {key_id} is not among the trusted keys")]
    UntrustedKey { key_id: String },
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
    #[error("tree size 0 is not a size of a ledger")]
    EmptyTree,
    #[error("the checkpoints belong to different ledgers ({old} and {new})")]
    DifferentLedgers { old: String, new: String },
    #[error("the proof is for ledger {proof}, the checkpoint for ledger {checkpoint}")]
    OtherLedger { proof: String, checkpoint: String },
    #[error("the proof is for tree size {proof}, the checkpoint has size {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("the proof goes from size {proof_first} to {proof_second}, the checkpoints from {old} to {new}")]
    SizesMismatch { proof_first: u64, proof_second: u64, old: u64, new: u64 },
    #[error("the old checkpoint (size {old}) is newer than the new one (size {new})")]
    OldIsNewer { old: u64, new: u64 },
    #[error("the proof's {which} root is not the checkpoint's")]
    RootMismatch { which: &'static str },
    #[error("the proof's leaf hash is not the one given")]
    LeafMismatch,
    #[error("no leaf hash: give one, or use a proof that carries leaf_hash")]
    NoLeaf,
    #[error("seq {seq} is not leaf index {leaf_index} + 1")]
    SeqMismatch { seq: u64, leaf_index: u64 },
    #[error("leaf index {leaf_index} is outside a tree of size {tree_size}")]
    IndexOutOfRange { leaf_index: u64, tree_size: u64 },
    #[error("the inclusion path does not lead to the checkpoint's root")]
    InclusionFails,
    #[error("the consistency path does not lead to both checkpoints' roots")]
    ConsistencyFails,
}

/// A tree head whose signature was checked with a trusted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedTree {
    ledger_id: LedgerId,
    size: u64,
    root: Hash,
    key: PublicKey,
}

impl TrustedTree {
    pub fn ledger_id(&self) -> LedgerId {
        self.ledger_id
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn root(&self) -> Hash {
        self.root
    }
    /// The trusted key that signed it.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Checks a saved checkpoint (JSON form, §8) with the trusted keys.
    pub fn from_saved(saved: &SavedCheckpoint, trusted: &[PublicKey]) -> Result<TrustedTree, ProofError> {
        let (ledger_id, cp) =
            saved.parse().ok_or_else(|| ProofError::BadCheckpoint("a field is not hex of the right length".into()))?;
        let key = trusted
            .iter()
            .find(|k| k.id() == cp.key_id)
            .ok_or_else(|| ProofError::UntrustedKey { key_id: cp.key_id.to_hex() })?;
        if !cp.verify(&ledger_id, key) {
            return Err(ProofError::BadSignature);
        }
        Ok(TrustedTree { ledger_id, size: cp.last_seq, root: cp.root, key: *key })
    }

    /// Checks a checkpoint note (§11) with the trusted keys.
    pub fn from_note(text: &str, trusted: &[PublicKey]) -> Result<TrustedTree, ProofError> {
        let (ledger_id, size, root, key) = note::parse(text)?.verify(trusted)?;
        Ok(TrustedTree { ledger_id, size, root, key })
    }

    /// Either form: text starting with `{` is the JSON form (a `data` envelope or the
    /// `sys/ledger/checkpoint` answer is unwrapped), anything else a note.
    pub fn from_text(text: &str, trusted: &[PublicKey]) -> Result<TrustedTree, ProofError> {
        if !text.trim_start().starts_with('{') {
            return TrustedTree::from_note(text, trusted);
        }
        let v: Value = serde_json::from_str(text).map_err(|e| ProofError::BadCheckpoint(e.to_string()))?;
        let v = unwrap_data(v);
        let saved: SavedCheckpoint = serde_json::from_value(v).map_err(|e| ProofError::BadCheckpoint(e.to_string()))?;
        TrustedTree::from_saved(&saved, trusted)
    }
}

/// The checkpoint a proof answer carries (`sys/ledger/proof/…` without a size, or
/// `cairn ledger show`), as text for [`TrustedTree::from_text`].
pub fn embedded_checkpoint(proof_text: &str) -> Option<String> {
    let v = unwrap_data(serde_json::from_str(proof_text).ok()?);
    v.get("checkpoint").filter(|c| c.is_object()).map(Value::to_string)
}

/// The `data` object of a Vault envelope, or the value itself.
fn unwrap_data(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.get("data").is_some_and(Value::is_object) => m.remove("data").unwrap_or_default(),
        other => other,
    }
}

/// `GET sys/ledger/proof/inclusion`: RFC 9162's fields, plus the leaf and root hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub inclusion_path: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
}

/// `GET sys/ledger/proof/consistency`: RFC 9162's fields, plus both roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_id: Option<String>,
    pub first: u64,
    pub second: u64,
    pub consistency_path: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_root: Option<String>,
}

impl InclusionProof {
    /// The proof of event `leaf_index + 1` (hash `leaf`) in the tree of `tree_size` with `root`.
    pub fn new(ledger_id: &LedgerId, leaf_index: u64, tree_size: u64, path: &[Hash], leaf: &Hash, root: &Hash) -> Self {
        InclusionProof {
            ledger_id: Some(hex::encode(ledger_id)),
            seq: leaf_index.checked_add(1),
            leaf_index,
            tree_size,
            inclusion_path: path.iter().map(Hash::to_hex).collect(),
            leaf_hash: Some(leaf.to_hex()),
            root_hash: Some(root.to_hex()),
        }
    }
}

impl ConsistencyProof {
    pub fn new(
        ledger_id: &LedgerId,
        first: u64,
        second: u64,
        path: &[Hash],
        first_root: &Hash,
        second_root: &Hash,
    ) -> Self {
        ConsistencyProof {
            ledger_id: Some(hex::encode(ledger_id)),
            first,
            second,
            consistency_path: path.iter().map(Hash::to_hex).collect(),
            first_root: Some(first_root.to_hex()),
            second_root: Some(second_root.to_hex()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

/// Parses a proof: the `data` object of the endpoint's answer, or the whole answer.
pub fn parse_proof(text: &str) -> Result<Proof, ProofError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ProofError::Malformed(e.to_string()))?;
    let mut v = unwrap_data(v);
    // `cairn ledger show --format json` holds the proof as `inclusion_proof`.
    if v.get("inclusion_proof").is_some_and(Value::is_object) {
        v = v["inclusion_proof"].take();
    }
    let has = |k: &str| v.get(k).is_some();
    let proof = match (has("inclusion_path"), has("consistency_path")) {
        (true, false) => Proof::Inclusion(serde_json::from_value(v).map_err(|e| ProofError::Malformed(e.to_string()))?),
        (false, true) => {
            Proof::Consistency(serde_json::from_value(v).map_err(|e| ProofError::Malformed(e.to_string()))?)
        }
        _ => return Err(ProofError::Malformed("exactly one of inclusion_path and consistency_path is needed".into())),
    };
    Ok(proof)
}

fn hash_field(what: &str, s: &str) -> Result<Hash, ProofError> {
    // Hash::from_hex takes upper case too; a proof has one spelling.
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ProofError::Malformed(format!("{what} is not 64 lower-case hex digits")));
    }
    Hash::from_hex(s).ok_or_else(|| ProofError::Malformed(format!("{what} is not 64 lower-case hex digits")))
}

fn path(hashes: &[String]) -> Result<Vec<Hash>, ProofError> {
    if hashes.len() > MAX_PATH {
        return Err(ProofError::Malformed(format!("a path of {} hashes is longer than any proof", hashes.len())));
    }
    hashes.iter().enumerate().map(|(i, h)| hash_field(&format!("path element {i}"), h)).collect()
}

fn same_ledger(proof: Option<&str>, tree: &TrustedTree) -> Result<(), ProofError> {
    let checkpoint = hex::encode(tree.ledger_id);
    match proof {
        Some(p) if p != checkpoint => Err(ProofError::OtherLedger { proof: p.to_string(), checkpoint }),
        _ => Ok(()),
    }
}

fn same_root(claimed: Option<&str>, tree: &TrustedTree, which: &'static str) -> Result<(), ProofError> {
    match claimed {
        Some(r) if hash_field(which, r)? != tree.root => Err(ProofError::RootMismatch { which }),
        _ => Ok(()),
    }
}

/// What a valid inclusion proof established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenInclusion {
    pub seq: u64,
    pub leaf: Hash,
    pub tree: TrustedTree,
}

/// Checks that event `leaf_index + 1`, whose hash is `leaf` (or the proof's `leaf_hash`
/// when `leaf` is `None`), is in the tree of `tree`.
pub fn verify_inclusion_proof(
    tree: &TrustedTree,
    proof: &InclusionProof,
    leaf: Option<&Hash>,
) -> Result<ProvenInclusion, ProofError> {
    same_ledger(proof.ledger_id.as_deref(), tree)?;
    if tree.size == 0 {
        return Err(ProofError::EmptyTree);
    }
    if proof.tree_size != tree.size {
        return Err(ProofError::SizeMismatch { proof: proof.tree_size, checkpoint: tree.size });
    }
    same_root(proof.root_hash.as_deref(), tree, "tree")?;
    let claimed = proof.leaf_hash.as_deref().map(|h| hash_field("leaf_hash", h)).transpose()?;
    let leaf = match (leaf, claimed) {
        (Some(given), Some(claimed)) if *given != claimed => return Err(ProofError::LeafMismatch),
        (Some(given), _) => *given,
        (None, Some(claimed)) => claimed,
        (None, None) => return Err(ProofError::NoLeaf),
    };
    if proof.leaf_index >= tree.size {
        return Err(ProofError::IndexOutOfRange { leaf_index: proof.leaf_index, tree_size: tree.size });
    }
    // leaf_index < size ≤ u64::MAX, so this cannot overflow.
    let seq = proof.leaf_index + 1;
    if let Some(s) = proof.seq
        && s != seq
    {
        return Err(ProofError::SeqMismatch { seq: s, leaf_index: proof.leaf_index });
    }
    let hashes = path(&proof.inclusion_path)?;
    if !merkle::verify_inclusion(&leaf, proof.leaf_index, tree.size, &hashes, &tree.root) {
        return Err(ProofError::InclusionFails);
    }
    Ok(ProvenInclusion { seq, leaf, tree: *tree })
}

/// Checks that the tree of `new` extends the tree of `old` (same ledger, nothing changed
/// in the first `old.size()` events).
pub fn verify_consistency_proof(
    old: &TrustedTree,
    new: &TrustedTree,
    proof: &ConsistencyProof,
) -> Result<(), ProofError> {
    if old.ledger_id != new.ledger_id {
        return Err(ProofError::DifferentLedgers { old: hex::encode(old.ledger_id), new: hex::encode(new.ledger_id) });
    }
    same_ledger(proof.ledger_id.as_deref(), new)?;
    if old.size == 0 || new.size == 0 {
        return Err(ProofError::EmptyTree);
    }
    if old.size > new.size {
        return Err(ProofError::OldIsNewer { old: old.size, new: new.size });
    }
    if proof.first != old.size || proof.second != new.size {
        return Err(ProofError::SizesMismatch {
            proof_first: proof.first,
            proof_second: proof.second,
            old: old.size,
            new: new.size,
        });
    }
    same_root(proof.first_root.as_deref(), old, "first")?;
    same_root(proof.second_root.as_deref(), new, "second")?;
    let hashes = path(&proof.consistency_path)?;
    if !merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &hashes) {
        return Err(ProofError::ConsistencyFails);
    }
    Ok(())
}

/// Event hashes `1..=end` of `ledger` as leaves, through the ranges asked; `ranges` must
/// end at or before `end`. One pass over the events (O(end) reads and hashes).
fn stream_ranges(ledger: &Ledger, end: u64, ranges: &[Range<u64>]) -> Result<Vec<Hash>, Error> {
    let mut failure = None;
    let mut expected = 1u64;
    let leaves = ledger.events(1, end).map_while(|r| match r {
        Ok(e) if e.event.seq == expected => {
            expected += 1;
            Some(e.hash)
        }
        Ok(e) => {
            failure = Some(Error::Corrupt { seq: expected, reason: format!("read seq {} instead", e.event.seq) });
            None
        }
        Err(e) => {
            failure = Some(e);
            None
        }
    });
    let hashes = merkle::range_hashes_streaming(leaves, ranges);
    if let Some(e) = failure {
        return Err(e);
    }
    hashes.ok_or(Error::Corrupt { seq: expected, reason: "durable events missing while proving".into() })
}

/// Checks a size asked of the prover against the durable ledger.
fn check_size(ledger: &Ledger, size: u64) -> Result<(), Error> {
    let last = ledger.durable().last_seq;
    if size == 0 || size > last {
        return Err(Error::Invalid(format!("tree size {size} is not a size of this ledger (1..={last})")));
    }
    Ok(())
}

/// The root computed while proving must be the one the ledger signed, when it signed that
/// size last; a mismatch means the disk changed under us, and no proof leaves.
fn check_root(ledger: &Ledger, size: u64, root: &Hash) -> Result<(), Error> {
    match ledger.durable().checkpoint {
        Some(cp) if cp.last_seq == size && cp.root != *root => {
            Err(Error::Corrupt { seq: size, reason: "computed root differs from the signed checkpoint".into() })
        }
        _ => Ok(()),
    }
}

/// Proves that event `seq` is in the tree of the first `tree_size` events. Reads every
/// event up to `tree_size`: call it off the async workers.
pub fn prove_inclusion(ledger: &Ledger, seq: u64, tree_size: u64) -> Result<InclusionProof, Error> {
    check_size(ledger, tree_size)?;
    if seq == 0 || seq > tree_size {
        return Err(Error::Invalid(format!("seq {seq} is not in a tree of size {tree_size}")));
    }
    let index = seq - 1;
    let mut ranges = merkle::inclusion_ranges(index, tree_size);
    let path_len = ranges.len();
    ranges.push(index..seq);
    ranges.push(0..tree_size);
    let hashes = stream_ranges(ledger, tree_size, &ranges)?;
    let (path, ends) = hashes.split_at(path_len.min(hashes.len()));
    let [leaf, root] = ends else {
        return Err(Error::Corrupt { seq, reason: "proof ranges came back incomplete".into() });
    };
    check_root(ledger, tree_size, root)?;
    Ok(InclusionProof::new(&ledger.id(), index, tree_size, path, leaf, root))
}

/// Proves that the tree of the first `second` events extends the tree of the first `first`.
pub fn prove_consistency(ledger: &Ledger, first: u64, second: u64) -> Result<ConsistencyProof, Error> {
    check_size(ledger, first)?;
    check_size(ledger, second)?;
    if first > second {
        return Err(Error::Invalid(format!("first ({first}) is larger than second ({second})")));
    }
    let mut ranges = merkle::consistency_ranges(first, second);
    let path_len = ranges.len();
    ranges.push(0..first);
    ranges.push(0..second);
    let hashes = stream_ranges(ledger, second, &ranges)?;
    let (path, ends) = hashes.split_at(path_len.min(hashes.len()));
    let [first_root, second_root] = ends else {
        return Err(Error::Corrupt { seq: second, reason: "proof ranges came back incomplete".into() });
    };
    check_root(ledger, second, second_root)?;
    Ok(ConsistencyProof::new(&ledger.id(), first, second, path, first_root, second_root))
}

#[cfg(test)]
impl TrustedTree {
    /// A tree trusted without a signature, for property tests of the proof checks.
    pub(crate) fn for_tests(ledger_id: LedgerId, size: u64, root: Hash, key: PublicKey) -> TrustedTree {
        TrustedTree { ledger_id, size, root, key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::LedgerKey;
    use crate::merkle::{consistency_ranges, inclusion_ranges, range_hashes, root_of_leaves};
    use proptest::prelude::*;

    const ID: LedgerId = [0x5a; 16];

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Hash(blake3::hash(&i.to_be_bytes()).into())).collect()
    }

    fn key() -> PublicKey {
        LedgerKey::from_seed(&[0x44; 32]).expect("valid").public()
    }

    fn tree(all: &[Hash], n: u64) -> TrustedTree {
        let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
        TrustedTree::for_tests(ID, n, root_of_leaves(&all[..n_usize]), key())
    }

    fn inclusion(all: &[Hash], i: u64, n: u64) -> InclusionProof {
        let path = range_hashes(all, &inclusion_ranges(i, n));
        let root = root_of_leaves(&all[..n as usize]);
        InclusionProof::new(&ID, i, n, &path, &all[i as usize], &root)
    }

    fn consistency(all: &[Hash], m: u64, n: u64) -> ConsistencyProof {
        let path = range_hashes(all, &consistency_ranges(m, n));
        ConsistencyProof::new(
            &ID,
            m,
            n,
            &path,
            &root_of_leaves(&all[..m as usize]),
            &root_of_leaves(&all[..n as usize]),
        )
    }

    fn flip(hex_hash: &str, bit: usize) -> String {
        let mut h = Hash::from_hex(hex_hash).unwrap_or_default();
        h.0[(bit / 8) % 32] ^= 1 << (bit % 8);
        h.to_hex()
    }

    /// Every way of changing a path: flip a bit of one element, drop one, add one, reorder.
    fn path_mutations(path: &[String], bit: usize, which: usize) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        if !path.is_empty() {
            let w = which % path.len();
            let mut p = path.to_vec();
            p[w] = flip(&p[w], bit);
            out.push(p);
            let mut p = path.to_vec();
            p.remove(w);
            out.push(p);
            let mut p = path.to_vec();
            p.insert(w, path[w].clone());
            out.push(p);
        }
        let mut p = path.to_vec();
        p.push(Hash([7; 32]).to_hex());
        out.push(p);
        let mut p = path.to_vec();
        p.insert(0, Hash([7; 32]).to_hex());
        out.push(p);
        if path.len() >= 2 {
            let (a, b) = (which % path.len(), (which / 7 + 1) % path.len());
            if path[a] != path[b] {
                let mut p = path.to_vec();
                p.swap(a, b);
                out.push(p);
            }
            let mut p = path.to_vec();
            p.reverse();
            if p != path {
                out.push(p);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn inclusion_proofs_verify_and_every_mutation_is_refused(
            n in 1u64..200, i_seed: u64, bit in 0usize..256, which: usize, delta in 1u64..1000,
        ) {
            let all = leaves(n + 1);
            let i = i_seed % n;
            let t = tree(&all, n);
            let good = inclusion(&all, i, n);
            let leaf = all[i as usize];
            prop_assert_eq!(verify_inclusion_proof(&t, &good, None).map(|p| p.seq), Ok(i + 1));
            prop_assert!(verify_inclusion_proof(&t, &good, Some(&leaf)).is_ok());
            let mut leaf_flipped = leaf;
            leaf_flipped.0[(bit / 8) % 32] ^= 1 << (bit % 8);
            // The auditor's leaf, not the proof's, is what is proven.
            prop_assert!(verify_inclusion_proof(&t, &good, Some(&leaf_flipped)).is_err());
            let without_leaf = InclusionProof { leaf_hash: None, ..good.clone() };
            prop_assert!(verify_inclusion_proof(&t, &without_leaf, Some(&leaf_flipped)).is_err());
            prop_assert!(verify_inclusion_proof(&t, &without_leaf, None).is_err());
            let mut refused = vec![
                InclusionProof { leaf_hash: Some(leaf_flipped.to_hex()), ..good.clone() },
                InclusionProof { leaf_index: i.wrapping_add(delta) % (n + delta), seq: None, ..good.clone() },
                InclusionProof { leaf_index: i ^ 1, seq: None, ..good.clone() },
                InclusionProof { seq: Some(i + 1 + delta), ..good.clone() },
                InclusionProof { tree_size: n + delta, ..good.clone() },
                InclusionProof { tree_size: n - 1, ..good.clone() },
                InclusionProof { root_hash: Some(flip(&t.root().to_hex(), bit)), ..good.clone() },
                InclusionProof { ledger_id: Some(hex::encode([0x5b; 16])), ..good.clone() },
            ];
            for p in path_mutations(&good.inclusion_path, bit, which) {
                refused.push(InclusionProof { inclusion_path: p, ..good.clone() });
            }
            for (k, bad) in refused.iter().enumerate() {
                prop_assert!(verify_inclusion_proof(&t, bad, None).is_err(), "mutation {} accepted: {:?}", k, bad);
            }
            // The same proof against another signed tree: one leaf more, or other roots.
            let bigger = tree(&all, n + 1);
            prop_assert!(verify_inclusion_proof(&bigger, &good, None).is_err());
            let other_root = TrustedTree::for_tests(ID, n, Hash([9; 32]), key());
            prop_assert!(verify_inclusion_proof(&other_root, &good, None).is_err());
            let other_ledger = TrustedTree::for_tests([0x5b; 16], n, t.root(), key());
            prop_assert!(verify_inclusion_proof(&other_ledger, &good, None).is_err());
        }

        #[test]
        fn consistency_proofs_verify_and_every_mutation_is_refused(
            n in 2u64..200, m_seed: u64, bit in 0usize..256, which: usize, delta in 1u64..1000,
        ) {
            let all = leaves(n + 1);
            let m = 1 + m_seed % (n - 1);
            let (old, new) = (tree(&all, m), tree(&all, n));
            let good = consistency(&all, m, n);
            prop_assert_eq!(verify_consistency_proof(&old, &new, &good), Ok(()));
            // Equal sizes: the empty proof, and only the same root.
            prop_assert_eq!(verify_consistency_proof(&new, &new, &consistency(&all, n, n)), Ok(()));
            prop_assert!(verify_consistency_proof(&new, &new, &good).is_err());
            // Swapped checkpoints or swapped sizes.
            prop_assert!(verify_consistency_proof(&new, &old, &good).is_err());
            let swapped = ConsistencyProof { first: n, second: m, first_root: good.second_root.clone(), second_root: good.first_root.clone(), ..good.clone() };
            prop_assert!(verify_consistency_proof(&new, &old, &swapped).is_err());
            prop_assert!(verify_consistency_proof(&old, &new, &swapped).is_err());
            let mut refused = vec![
                ConsistencyProof { first: m + delta, ..good.clone() },
                ConsistencyProof { first: m - 1, ..good.clone() },
                ConsistencyProof { second: n + delta, ..good.clone() },
                ConsistencyProof { second: n - 1, ..good.clone() },
                ConsistencyProof { first_root: Some(flip(&old.root().to_hex(), bit)), ..good.clone() },
                ConsistencyProof { second_root: Some(flip(&new.root().to_hex(), bit)), ..good.clone() },
                ConsistencyProof { first_root: good.second_root.clone(), second_root: good.first_root.clone(), ..good.clone() },
                ConsistencyProof { ledger_id: Some(hex::encode([0x5b; 16])), ..good.clone() },
            ];
            for p in path_mutations(&good.consistency_path, bit, which) {
                refused.push(ConsistencyProof { consistency_path: p, ..good.clone() });
            }
            for (k, bad) in refused.iter().enumerate() {
                prop_assert!(verify_consistency_proof(&old, &new, bad).is_err(), "mutation {} accepted: {:?}", k, bad);
            }
            // The same proof between other signed trees.
            let old_other = TrustedTree::for_tests(ID, m, flip_root(&old), key());
            let new_other = TrustedTree::for_tests(ID, n, flip_root(&new), key());
            let no_first = ConsistencyProof { first_root: None, ..good.clone() };
            let no_second = ConsistencyProof { second_root: None, ..good.clone() };
            prop_assert!(verify_consistency_proof(&old_other, &new, &no_first).is_err());
            prop_assert!(verify_consistency_proof(&old, &new_other, &no_second).is_err());
            prop_assert!(verify_consistency_proof(&old, &tree(&all, n + 1), &good).is_err());
            let foreign = TrustedTree::for_tests([0x5b; 16], m, old.root(), key());
            prop_assert!(verify_consistency_proof(&foreign, &new, &good).is_err());
        }

        #[test]
        fn verifiers_never_panic_on_arbitrary_input(
            index in prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            size in prop_oneof![Just(0u64), Just(1u64), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            old in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
            path in proptest::collection::vec(any::<[u8; 32]>(), 0..140),
            leaf: [u8; 32], root: [u8; 32], seq: Option<u64>,
        ) {
            let path: Vec<Hash> = path.into_iter().map(Hash).collect();
            let (leaf, root) = (Hash(leaf), Hash(root));
            // Random hashes never verify (except by a 2^-256 accident).
            prop_assert!(!crate::merkle::verify_inclusion(&leaf, index, size, &path, &root) || path.is_empty());
            let _ = crate::merkle::verify_consistency(old, size, &leaf, &root, &path);
            let _ = crate::merkle::verify_consistency(size, old, &leaf, &root, &path);
            let t_new = TrustedTree::for_tests(ID, size, root, key());
            let t_old = TrustedTree::for_tests(ID, old, leaf, key());
            let incl = InclusionProof::new(&ID, index, size, &path, &leaf, &root);
            let incl = InclusionProof { seq, ..incl };
            let _ = verify_inclusion_proof(&t_new, &incl, None);
            let _ = verify_inclusion_proof(&t_new, &incl, Some(&root));
            let cons = ConsistencyProof::new(&ID, old, size, &path, &leaf, &root);
            let _ = verify_consistency_proof(&t_old, &t_new, &cons);
            let _ = verify_consistency_proof(&t_new, &t_old, &cons);
            // And through JSON, as the offline tool reads it.
            for text in [serde_json::to_string(&incl).unwrap_or_default(), serde_json::to_string(&cons).unwrap_or_default()] {
                prop_assert!(parse_proof(&text).is_ok());
            }
        }
    }

    fn flip_root(t: &TrustedTree) -> Hash {
        let mut r = t.root();
        r.0[0] ^= 1;
        r
    }

    #[test]
    fn checkpoints_are_trusted_only_with_a_trusted_key() {
        let key = LedgerKey::from_seed(&[0x44; 32]).expect("valid");
        let other = LedgerKey::from_seed(&[0x45; 32]).expect("valid");
        let root = Hash([3; 32]);
        let cp = crate::Checkpoint::sign(&key, &ID, 5, Hash([2; 32]), root, 9);
        let saved = cp.to_saved(&ID);
        let t = TrustedTree::from_saved(&saved, &[other.public(), key.public()]).expect("trusted");
        assert_eq!((t.ledger_id(), t.size(), t.root(), t.key()), (ID, 5, root, key.public()));
        assert!(matches!(TrustedTree::from_saved(&saved, &[other.public()]), Err(ProofError::UntrustedKey { .. })));
        let forged = SavedCheckpoint { seq: 6, ..saved.clone() };
        assert_eq!(TrustedTree::from_saved(&forged, &[key.public()]), Err(ProofError::BadSignature));
        let moved = SavedCheckpoint { ledger_id: hex::encode([0x5b; 16]), ..saved.clone() };
        assert_eq!(TrustedTree::from_saved(&moved, &[key.public()]), Err(ProofError::BadSignature));
        // The JSON form, bare or in an envelope, and the note form.
        let json = serde_json::to_string(&saved).expect("json");
        assert_eq!(TrustedTree::from_text(&json, &[key.public()]), Ok(t));
        let envelope = format!("{{\"request_id\":\"x\",\"data\":{json}}}");
        assert_eq!(TrustedTree::from_text(&envelope, &[key.public()]), Ok(t));
        let note_text = crate::note::sign(&key, &ID, 5, &root);
        assert_eq!(TrustedTree::from_text(&note_text, &[key.public()]), Ok(t));
        assert!(TrustedTree::from_text(&note_text, &[other.public()]).is_err());
    }

    #[test]
    fn proofs_parse_from_the_answer_or_its_data() {
        let all = leaves(10);
        let p = inclusion(&all, 3, 10);
        let data = serde_json::to_value(&p).expect("json");
        let whole = serde_json::json!({"request_id": "r", "data": data}).to_string();
        assert_eq!(parse_proof(&whole), Ok(Proof::Inclusion(p.clone())));
        assert_eq!(parse_proof(&data.to_string()), Ok(Proof::Inclusion(p)));
        let c = consistency(&all, 3, 10);
        assert_eq!(parse_proof(&serde_json::to_string(&c).expect("json")), Ok(Proof::Consistency(c)));
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"inclusion_path":[],"consistency_path":[]}"#,
            r#"{"leaf_index":-1,"tree_size":1,"inclusion_path":[]}"#,
            r#"{"leaf_index":0,"tree_size":18446744073709551616,"inclusion_path":[]}"#,
            r#"{"leaf_index":0,"tree_size":1,"inclusion_path":"x"}"#,
        ] {
            assert!(parse_proof(bad).is_err(), "{bad}");
        }
        // Upper-case or short hashes are refused when checked.
        let t = tree(&all, 10);
        let mut upper = inclusion(&all, 3, 10);
        upper.inclusion_path[0] = upper.inclusion_path[0].to_uppercase();
        assert!(matches!(verify_inclusion_proof(&t, &upper, None), Err(ProofError::Malformed(_))));
        let long =
            InclusionProof { inclusion_path: vec![Hash([1; 32]).to_hex(); MAX_PATH + 1], ..inclusion(&all, 3, 10) };
        assert!(matches!(verify_inclusion_proof(&t, &long, None), Err(ProofError::Malformed(_))));
    }
}
