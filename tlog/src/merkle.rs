//! RFC 6962 Merkle tree hashing, inclusion and consistency proofs (RFC 9162 §2.1), for an
//! append-only log whose nodes are stored elsewhere.
//!
//! # Storage model
//!
//! A store keeps the hash of every *complete* subtree: node `(level, index)` covers the leaves
//! `[index·2^level, (index+1)·2^level)`; level 0 holds the leaf hashes. Such a node never
//! changes once its last leaf is appended, so the store only ever inserts. [`append_nodes`]
//! says which nodes one append creates; [`root`], [`inclusion_proof`] and
//! [`consistency_proof`] read nodes through [`NodeSource`] and hash the parts of a tree that
//! are not complete subtrees (the right edge of a tree whose size is not a power of two) on the
//! fly, O(log n) node reads each.
//!
//! A tree of any size is the RFC's recursive split: for `n > 1` leaves, `k` is the largest
//! power of two below `n`, the left subtree holds the first `k` leaves (always complete) and
//! the right subtree the rest.

use sha2::{Digest as _, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the complete-subtree hashes of a log are kept (see the module documentation).
pub trait NodeSource {
    type Error;

    /// The hash of the complete subtree `(level, index)`, covering leaves
    /// `[index·2^level, (index+1)·2^level)`. Only asked for nodes inside the tree size the
    /// caller passed to [`root`] or the proof functions.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or a proof could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// The caller asked about a leaf the tree does not have.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },

    /// A consistency proof from a larger tree to a smaller one was asked for.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },

    /// The node store failed (or lacks a node it should have).
    #[error("reading a tree node: {0}")]
    Source(#[source] E),
}

/// Why a proof did not verify. Every variant means: do not trust the claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },

    /// The old tree is larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },

    /// The proof does not have the number of hashes these sizes call for.
    #[error("proof has {got} hashes, {expected} expected for these tree sizes")]
    WrongLength { expected: usize, got: usize },

    /// The proof does not lead to the given root (or roots).
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// A node a [`MemoryTree`] does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no stored node at level {level}, index {index}")]
pub struct MissingNode {
    pub level: u8,
    pub index: u64,
}

/// The complete nodes created by appending leaf number `size_before` (whose hash is `leaf`):
/// the leaf itself at level 0, then each parent that the append completes, lowest first.
///
/// `get(level, index)` reads an existing node; it is asked only for the left siblings on the
/// way up, which are complete nodes the store already holds. A store persists the returned
/// nodes in the same transaction as the leaf.
pub fn append_nodes<E>(
    size_before: u64,
    leaf: Hash,
    mut get: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<(u8, u64, Hash)>, E> {
    let mut nodes = vec![(0, size_before, leaf)];
    let (mut level, mut index, mut hash) = (0u8, size_before, leaf);
    // An odd index is a right child: its left sibling is complete, so the parent now is too.
    while index & 1 == 1 {
        let left = get(level, index - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        nodes.push((level, index, hash));
    }
    Ok(nodes)
}

/// The root of the first `size` leaves, from at most one stored node per set bit of `size`.
pub fn root<S: NodeSource>(s: &S, size: u64) -> Result<Hash, TreeError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(s, 0, size).map_err(TreeError::Source)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves: RFC 9162 §2.1.3.1
/// `PATH(index, D[0:size])`, nearest sibling first.
pub fn inclusion_proof<S: NodeSource>(
    s: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(s, index, 0, size, &mut proof).map_err(TreeError::Source)?;
    Ok(proof)
}

/// The consistency proof from the tree of `old_size` leaves to the tree of `new_size`:
/// RFC 9162 §2.1.4.1 `PROOF(old_size, D[0:new_size]) = SUBPROOF(old_size, D[0:new_size], true)`.
/// Empty when `old_size` is 0 or equal to `new_size`.
pub fn consistency_proof<S: NodeSource>(
    s: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if old_size > new_size {
        return Err(TreeError::SizesOutOfOrder { old_size, new_size });
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    subproof(s, old_size, 0, new_size, true, &mut proof).map_err(TreeError::Source)?;
    Ok(proof)
}

/// Checks that `leaf` (a leaf hash) is leaf number `index` of the tree of `size` leaves whose
/// root is `root`, by RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let wrong_length = || ProofError::WrongLength {
        expected: inclusion_proof_len(index, size),
        got: proof.len(),
    };
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`, by RFC 9162 §2.1.4.2.
///
/// Edge cases (as the C2SP merkle-tree text states them): equal sizes need an empty proof and
/// equal roots; an old size of 0 is consistent with anything, with an empty proof (its root is
/// not looked at); otherwise an empty proof fails.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    let trivial = old_size == 0 || old_size == new_size;
    let wrong_length = || ProofError::WrongLength {
        expected: if trivial {
            0
        } else {
            consistency_proof_len(old_size, new_size)
        },
        got: proof.len(),
    };
    if trivial {
        if !proof.is_empty() {
            return Err(wrong_length());
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }

    // When the old tree is a complete subtree, the proof leaves out its root.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return Err(wrong_length()),
        }
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The frontier of a tree: the roots of its maximal complete subtrees ("peaks"), one per set
/// bit of the size, largest first. Enough to append and to compute the root without reading
/// the store: what a log keeps in memory between group commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    // Invariant: peaks.len() == size.count_ones(); peaks[i] is the node at the i-th highest
    // set bit of size.
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the first `size` leaves of a stored tree: one node read per set bit.
    pub fn from_source<S: NodeSource>(s: &S, size: u64) -> Result<Self, TreeError<S::Error>> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        for level in (0..64u8).rev() {
            if (size >> level) & 1 == 1 {
                // The peak at this level ends just before the lower peaks start.
                let index = (size >> level) - 1;
                peaks.push(s.node(level, index).map_err(TreeError::Source)?);
            }
        }
        Ok(CompactRange { size, peaks })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree root.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |acc, peak| node_hash(peak, &acc))
    }

    /// Appends a leaf hash; returns the new complete nodes, as [`append_nodes`] does.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let mut nodes = vec![(0, self.size, leaf)];
        let (mut level, mut index, mut hash) = (0u8, self.size, leaf);
        // The trailing one bits of the size are the lowest peaks: each merges with the new node.
        let merging = self.size.trailing_ones() as usize;
        let keep = self.peaks.len().saturating_sub(merging);
        for left in self.peaks.drain(keep..).rev() {
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            nodes.push((level, index, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
        nodes
    }
}

/// A whole tree in memory, every complete node kept: for tests and offline verification tools.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    // levels[l][i] is node (l, i).
    levels: Vec<Vec<Hash>>,
    frontier: CompactRange,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root at the current size.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf by its data; returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(data))
    }

    /// Appends a leaf by its hash; returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        for (level, _, hash) in self.frontier.append(leaf) {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            // Nodes complete left to right, so each new node is the next one of its level.
            self.levels[level].push(hash);
        }
        index
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// The largest power of two strictly below `n` (for `n >= 2`): the RFC's split point.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) for `start < end`, reading complete aligned subtrees from the store and
/// hashing the rest by the RFC's recursion.
fn range_hash<S: NodeSource>(s: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return s.node(level, start >> level);
    }
    let k = split(n);
    let left = range_hash(s, start, start + k)?;
    let right = range_hash(s, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// PATH(m, D[start:end]) with `m` an absolute leaf index inside the range.
fn path<S: NodeSource>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < start + k {
        path(s, m, start, start + k, out)?;
        out.push(range_hash(s, start + k, end)?);
    } else {
        path(s, m, start + k, end, out)?;
        out.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// SUBPROOF(m, D[start:end], b) with `m` the absolute old size, `start < m <= end`.
fn subproof<S: NodeSource>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == end {
        if !b {
            out.push(range_hash(s, start, end)?);
        }
        return Ok(());
    }
    let k = split(end - start);
    if m <= start + k {
        subproof(s, m, start, start + k, b, out)?;
        out.push(range_hash(s, start + k, end)?);
    } else {
        subproof(s, m, start + k, end, false, out)?;
        out.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// The length of PATH(index, D[0:size]), following its recursion over sizes only.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut m, mut n, mut len) = (index, size, 0);
    while n > 1 {
        let k = split(n);
        if m < k {
            n = k;
        } else {
            m -= k;
            n -= k;
        }
        len += 1;
    }
    len
}

/// The length of SUBPROOF(old, D[0:new], true) for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let (mut m, mut n, mut b, mut len) = (old, new, true, 0);
    while m != n {
        let k = split(n);
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            b = false;
        }
        len += 1;
    }
    if b { len } else { len + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_largest_power_of_two_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(split(9), 8);
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn proof_lengths_match_generated_proofs() {
        let mut tree = MemoryTree::new();
        for size in 1..=40u64 {
            tree.append(&size.to_be_bytes());
            for index in 0..size {
                let proof = inclusion_proof(&tree, index, size).unwrap();
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
            }
            for old in 1..size {
                let proof = consistency_proof(&tree, old, size).unwrap();
                assert_eq!(proof.len(), consistency_proof_len(old, size));
            }
        }
    }

    #[test]
    fn range_hash_splits_unaligned_ranges() {
        let mut tree = MemoryTree::new();
        for i in 0..8u8 {
            tree.append(&[i]);
        }
        let leaf = |i: u8| leaf_hash(&[i]);
        // [1, 3) has two leaves but is not the stored node (1, 0) = [0, 2).
        assert_eq!(
            range_hash(&tree, 1, 3).unwrap(),
            node_hash(&leaf(1), &leaf(2))
        );
        assert_eq!(
            range_hash(&tree, 2, 6).unwrap(),
            node_hash(
                &node_hash(&leaf(2), &leaf(3)),
                &node_hash(&leaf(4), &leaf(5))
            )
        );
        assert_eq!(range_hash(&tree, 4, 8).unwrap(), tree.node(2, 1).unwrap());
    }

    #[test]
    fn append_at_the_last_index_does_not_overflow() {
        let nodes = append_nodes(u64::MAX, [7; 32], |_, _| Ok::<_, ()>([1; 32])).unwrap();
        // u64::MAX has 64 trailing ones: the leaf and 64 parents, up to the node over 2^64 leaves.
        assert_eq!(nodes.len(), 65);
        assert_eq!(nodes.last().map(|n| (n.0, n.1)), Some((64, 0)));
    }
}
