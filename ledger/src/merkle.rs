//! The Merkle tree over event hashes, in the shape of RFC 9162 §2.1.
//!
//! The writer and the verifier only ever need the root of the tree so far, which a
//! [`Frontier`] keeps in O(log n) memory. Proofs (inclusion, consistency) are built from
//! the list of subtree ranges RFC 9162 names, so a prover can compute them in one
//! streaming pass over the leaves; the verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2
//! step by step and must be given every hash explicitly (nothing is trusted from the
//! prover but the path).

use std::ops::Range;

use crate::hash::{Hash, empty_root, node_hash};

/// The roots of the perfect subtrees that make up a tree of `size` leaves, left to right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its parts (as stored in a bundle header); `None` when the
    /// number of nodes does not match the binary decomposition of `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == nodes.len()).then_some(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends the leaf for one event (the leaf is the event hash itself).
    pub fn push_event(&mut self, event: &Hash) {
        self.push_leaf(*event);
    }

    /// Appends a leaf.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // A perfect subtree of the same height sits to our left: merge them.
            let left = self.nodes.pop().unwrap_or_default();
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// MTH of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The leaf ranges whose subtree hashes form the inclusion proof of `index` in a tree of
/// `size` leaves (RFC 9162 §2.1.3.1, PATH), in proof order.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    if index >= size {
        return out;
    }
    let (mut lo, mut hi, mut m) = (0u64, size, index);
    let mut reversed = Vec::new();
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < k {
            reversed.push(lo + k..hi);
            hi = lo + k;
        } else {
            reversed.push(lo..lo + k);
            lo += k;
            m -= k;
        }
    }
    // PATH appends the sibling after the recursive call, so the deepest comes first.
    out.extend(reversed.into_iter().rev());
    out
}

/// The leaf ranges of the consistency proof from a tree of `old` leaves to one of `new`
/// leaves (RFC 9162 §2.1.4.1, SUBPROOF), in proof order. Empty when old is 0 or equals new.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<Range<u64>> {
    if old == 0 || old >= new {
        return Vec::new();
    }
    let mut reversed = Vec::new();
    let (mut lo, mut hi, mut m, mut whole) = (0u64, new, old, true);
    loop {
        if m == hi - lo {
            if !whole {
                reversed.push(lo..hi);
            }
            break;
        }
        let k = split_point(hi - lo);
        if m <= k {
            reversed.push(lo + k..hi);
            hi = lo + k;
        } else {
            reversed.push(lo..lo + k);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    reversed.into_iter().rev().collect()
}

/// MTH over a slice of leaf hashes.
pub fn root_of_leaves(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for leaf in leaves {
        f.push_leaf(*leaf);
    }
    f.root()
}

/// Computes the hashes of `ranges` (disjoint, any order) from the full list of leaf hashes.
pub fn range_hashes(leaves: &[Hash], ranges: &[Range<u64>]) -> Vec<Hash> {
    ranges
        .iter()
        .map(|r| {
            let lo = usize::try_from(r.start).unwrap_or(usize::MAX);
            let hi = usize::try_from(r.end).unwrap_or(usize::MAX);
            root_of_leaves(leaves.get(lo..hi).unwrap_or(&[]))
        })
        .collect()
}

/// Computes the hashes of `ranges` (they may overlap) in one pass over a stream of leaf
/// hashes numbered from 0. `None` if the stream ends before the last range does.
pub fn range_hashes_streaming(leaves: impl IntoIterator<Item = Hash>, ranges: &[Range<u64>]) -> Option<Vec<Hash>> {
    let end = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut frontiers: Vec<Frontier> = vec![Frontier::new(); ranges.len()];
    let mut active: Vec<usize> = Vec::new();
    let mut next_to_open = 0;
    let mut pos = 0u64;
    for leaf in leaves.into_iter() {
        if pos >= end {
            break;
        }
        while next_to_open < order.len() && ranges[order[next_to_open]].start <= pos {
            active.push(order[next_to_open]);
            next_to_open += 1;
        }
        active.retain(|&i| ranges[i].end > pos);
        for &i in &active {
            frontiers[i].push_leaf(leaf);
        }
        pos += 1;
    }
    (pos >= end).then(|| frontiers.iter().map(Frontier::root).collect())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2). As in RFC 9162, `size` and `root` must
/// come from the same signed checkpoint: a path alone does not pin the tree size.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Checks a consistency proof between a tree of `old` leaves with root `old_root` and a
/// tree of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2). The empty tree is
/// consistent with every tree; equal sizes need an empty proof and equal roots.
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Hash(blake3::hash(&i.to_be_bytes()).into())).collect()
    }

    /// MTH straight from the RFC's recursive definition, as the oracle.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = usize::try_from(split_point(n as u64)).unwrap_or(0);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_recursive_definition() {
        let all = leaves(70);
        for n in 0..=70usize {
            assert_eq!(root_of_leaves(&all[..n]), mth(&all[..n]), "size {n}");
        }
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_up_to_40_leaves() {
        let all = leaves(40);
        for n in 1..=40u64 {
            let root = root_of_leaves(&all[..n as usize]);
            for i in 0..n {
                let proof = range_hashes(&all, &inclusion_ranges(i, n));
                assert!(verify_inclusion(&all[i as usize], i, n, &proof, &root), "incl {i}/{n}");
                // The same proof must not prove a neighbouring leaf or another size.
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(!verify_inclusion(&all[other as usize], i, n, &proof, &root));
                }
            }
            for m in 1..=n {
                let old_root = root_of_leaves(&all[..m as usize]);
                let proof = range_hashes(&all, &consistency_ranges(m, n));
                assert!(verify_consistency(m, n, &old_root, &root, &proof), "cons {m}->{n}");
                if m < n {
                    assert!(!verify_consistency(m, n, &root, &old_root, &proof));
                }
            }
        }
    }

    #[test]
    fn streaming_range_hashes_equal_in_memory_ones() {
        let all = leaves(100);
        let mut ranges = consistency_ranges(37, 100);
        // Proofs for several leaves overlap; one pass must serve them all.
        ranges.extend(inclusion_ranges(3, 90));
        ranges.extend(inclusion_ranges(64, 90));
        let streamed = range_hashes_streaming(all.iter().copied(), &ranges);
        assert_eq!(streamed, Some(range_hashes(&all, &ranges)));
        assert_eq!(range_hashes_streaming(all[..50].iter().copied(), &ranges), None);
    }

    proptest! {
        #[test]
        fn tampered_proofs_are_rejected(n in 2u64..300, i_seed: u64, flip in 0usize..32, which: usize) {
            let all = leaves(n);
            let i = i_seed % n;
            let root = root_of_leaves(&all);
            let mut proof = range_hashes(&all, &inclusion_ranges(i, n));
            prop_assert!(verify_inclusion(&all[i as usize], i, n, &proof, &root));
            if !proof.is_empty() {
                let w = which % proof.len();
                proof[w].0[flip] ^= 1;
                prop_assert!(!verify_inclusion(&all[i as usize], i, n, &proof, &root));
                proof[w].0[flip] ^= 1;
            }
            // Extra or missing path elements never verify.
            let mut longer = proof.clone();
            longer.push(root);
            prop_assert!(!verify_inclusion(&all[i as usize], i, n, &longer, &root));
            if !proof.is_empty() {
                prop_assert!(!verify_inclusion(&all[i as usize], i, n, &proof[1..], &root));
            }
            // The proof must not carry over to another tree (a root of one more leaf).
            let bigger = root_of_leaves(&leaves(n + 1));
            prop_assert!(!verify_inclusion(&all[i as usize], i, n + 1, &proof, &bigger));
        }

        #[test]
        fn tampered_consistency_proofs_are_rejected(n in 2u64..300, m_seed: u64, flip in 0usize..32, which: usize) {
            let all = leaves(n);
            let m = 1 + m_seed % (n - 1);
            let (old_root, new_root) = (root_of_leaves(&all[..m as usize]), root_of_leaves(&all));
            let mut proof = range_hashes(&all, &consistency_ranges(m, n));
            prop_assert!(verify_consistency(m, n, &old_root, &new_root, &proof));
            let w = which % proof.len();
            proof[w].0[flip] ^= 1;
            prop_assert!(!verify_consistency(m, n, &old_root, &new_root, &proof));
            proof[w].0[flip] ^= 1;
            let other_root = root_of_leaves(&leaves(n + 1));
            prop_assert!(!verify_consistency(m, n + 1, &old_root, &other_root, &proof));
        }
    }
}
