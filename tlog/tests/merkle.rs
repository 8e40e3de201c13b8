#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Merkle tree roots and proofs against a naive reference written directly from RFC 9162
//! §2.1 (MTH, PATH, SUBPROOF over the leaf data, hashing with sha2 itself), against published
//! RFC 6962 test vectors, and against tampering.
//! One file, because every case is checked against the same reference implementation above them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use tlog::merkle::{
    CompactRange, Hash, MemoryTree, MissingNode, NodeSource, ProofError, TreeError, append_nodes,
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion,
};

/// Roots and proofs are compared with the reference for every size up to this.
const MAX_SIZE: usize = 70;
/// Tampering is tried for every size up to this (debug-build SHA-256 is slow).
const TAMPER_MAX: usize = 40;

// ---------- the reference, straight from the RFC ----------

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH over the leaf data, memoized (MTH is a pure function of the range; the reference
/// would be too slow for the exhaustive tests otherwise).
struct Reference {
    d: Vec<Vec<u8>>,
    memo: RefCell<HashMap<(usize, usize), Hash>>,
}

impl Reference {
    fn new(d: Vec<Vec<u8>>) -> Self {
        Reference {
            d,
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// MTH(D[start:end]).
    fn mth(&self, start: usize, end: usize) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(start, end)) {
            return *h;
        }
        let h = match end - start {
            0 => sha(&[]),
            1 => sha(&[&[0], &self.d[start]]),
            n => {
                let k = k_of(n);
                sha(&[&[1], &self.mth(start, start + k), &self.mth(start + k, end)])
            }
        };
        self.memo.borrow_mut().insert((start, end), h);
        h
    }

    fn path(&self, m: usize, n: usize) -> Vec<(Hash, bool)> {
        ref_path(m, 0, n, &|a, b| self.mth(a, b))
    }

    fn proof(&self, m: usize, n: usize) -> Vec<(Hash, Part)> {
        ref_proof(m, n, &|a, b| self.mth(a, b))
    }
}

/// PATH(m, D[start:end]) (m relative to start); each element with whether the sibling is on
/// the right. `mth(a, b)` is MTH(D[a:b]).
fn ref_path(
    m: usize,
    start: usize,
    end: usize,
    mth: &dyn Fn(usize, usize) -> Hash,
) -> Vec<(Hash, bool)> {
    let n = end - start;
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = ref_path(m, start, start + k, mth);
        p.push((mth(start + k, end), true));
        p
    } else {
        let mut p = ref_path(m - k, start + k, end, mth);
        p.push((mth(start, start + k), false));
        p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// MTH(D[m]) sent because b was false: where both roots start.
    Seed,
    /// A sibling right of the old tree: only in the new root.
    Right,
    /// A sibling left of (and inside) the old tree: in both roots.
    Left,
}

/// SUBPROOF(m, D[start:end], b) (m relative to start); each element with its part in the
/// verification.
fn ref_subproof(
    m: usize,
    start: usize,
    end: usize,
    b: bool,
    mth: &dyn Fn(usize, usize) -> Hash,
) -> Vec<(Hash, Part)> {
    let n = end - start;
    if m == n {
        return if b {
            vec![]
        } else {
            vec![(mth(start, end), Part::Seed)]
        };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = ref_subproof(m, start, start + k, b, mth);
        p.push((mth(start + k, end), Part::Right));
        p
    } else {
        let mut p = ref_subproof(m - k, start + k, end, false, mth);
        p.push((mth(start, start + k), Part::Left));
        p
    }
}

/// PROOF(m, D[n]).
fn ref_proof(m: usize, n: usize, mth: &dyn Fn(usize, usize) -> Hash) -> Vec<(Hash, Part)> {
    if m == 0 || m == n {
        vec![]
    } else {
        ref_subproof(m, 0, n, true, mth)
    }
}

/// The turns of PATH / the parts of PROOF, without hashing anything.
fn path_turns(m: usize, n: usize) -> Vec<bool> {
    shape(&ref_path(m, 0, n, &|_, _| [0; 32]))
}

fn proof_parts(m: usize, n: usize) -> Vec<Part> {
    shape(&ref_proof(m, n, &|_, _| [0; 32]))
}

fn hashes<T: Copy>(p: &[(Hash, T)]) -> Vec<Hash> {
    p.iter().map(|(h, _)| *h).collect()
}

fn shape<T: Copy>(p: &[(Hash, T)]) -> Vec<T> {
    p.iter().map(|(_, s)| *s).collect()
}

fn data(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

fn tree_of(d: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for x in d {
        t.append(x);
    }
    t
}

fn flip(proof: &[Hash], i: usize, bit: usize) -> Vec<Hash> {
    let mut p = proof.to_vec();
    p[i][bit / 8 % 32] ^= 1 << (bit % 8);
    p
}

fn u(n: usize) -> u64 {
    n as u64
}

// ---------- hashing ----------

#[test]
fn hashes_follow_rfc6962() {
    assert_eq!(leaf_hash(b"abc"), sha(&[&[0], b"abc"]));
    assert_eq!(
        node_hash(&[1; 32], &[2; 32]),
        sha(&[&[1], &[1; 32], &[2; 32]])
    );
    assert_eq!(empty_root(), sha(&[]));
}

// ---------- against the reference ----------

#[test]
fn roots_match_reference_for_every_size() {
    let d = data(MAX_SIZE);
    let tree = tree_of(&d);
    let reference = Reference::new(d.clone());
    assert_eq!(root(&tree, 0).unwrap(), empty_root());
    for n in 1..=MAX_SIZE {
        assert_eq!(root(&tree, u(n)).unwrap(), reference.mth(0, n), "size {n}");
        assert_eq!(tree_of(&d[..n]).root(), reference.mth(0, n), "size {n}");
    }
}

#[test]
fn inclusion_proofs_match_reference_and_verify() {
    let d = data(MAX_SIZE);
    let tree = tree_of(&d);
    let reference = Reference::new(d.clone());
    for n in 1..=MAX_SIZE {
        let r = reference.mth(0, n);
        for (m, record) in d[..n].iter().enumerate() {
            let proof = inclusion_proof(&tree, u(m), u(n)).unwrap();
            assert_eq!(proof, hashes(&reference.path(m, n)), "PATH({m}, D[{n}])");
            verify_inclusion(&leaf_hash(record), u(m), u(n), &proof, &r).unwrap();
        }
    }
}

#[test]
fn consistency_proofs_match_reference_and_verify() {
    let d = data(MAX_SIZE);
    let tree = tree_of(&d);
    let reference = Reference::new(d);
    for n in 0..=MAX_SIZE {
        for m in 0..=n {
            let proof = consistency_proof(&tree, u(m), u(n)).unwrap();
            assert_eq!(proof, hashes(&reference.proof(m, n)), "PROOF({m}, D[{n}])");
            let (r1, r2) = (reference.mth(0, m), reference.mth(0, n));
            verify_consistency(u(m), u(n), &r1, &r2, &proof).unwrap();
        }
    }
}

// ---------- published vectors ----------

/// Leaf inputs, roots and proofs as published with the RFC 6962 implementations
/// (certificate-transparency / transparency-dev/merkle test data).
fn vector_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
    ]
    .into_iter()
    .chain(["606162636465666768696a6b6c6d6e6f"])
    .map(unhex)
    .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h(s: &str) -> Hash {
    unhex(s).try_into().unwrap()
}

#[test]
fn rfc6962_vector_roots_and_nodes() {
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let tree = tree_of(&vector_leaves());
    for (size, want) in roots.iter().enumerate() {
        assert_eq!(root(&tree, u(size)).unwrap(), h(want), "size {size}");
    }
    let nodes: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];
    for (level, row) in nodes.iter().enumerate() {
        for (index, want) in row.iter().enumerate() {
            assert_eq!(
                tree.node(level as u8, u(index)).unwrap(),
                h(want),
                "node ({level}, {index})"
            );
        }
    }
}

#[test]
fn rfc6962_vector_proofs() {
    let tree = tree_of(&vector_leaves());
    // (leaf index, tree size, proof)
    let inclusion: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let leaves = vector_leaves();
    for (index, size, want) in inclusion {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(inclusion_proof(&tree, index, size).unwrap(), want);
        let r = root(&tree, size).unwrap();
        verify_inclusion(&leaf_hash(&leaves[index as usize]), index, size, &want, &r).unwrap();
    }
    // (old size, new size, proof)
    let consistency: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, want) in consistency {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(consistency_proof(&tree, old, new).unwrap(), want);
        let (r1, r2) = (root(&tree, old).unwrap(), root(&tree, new).unwrap());
        verify_consistency(old, new, &r1, &r2, &want).unwrap();
    }
}

/// The seven-leaf example of the C2SP merkle-tree text, with its node labels.
#[test]
fn c2sp_seven_leaf_example() {
    let d = data(7);
    let tree = tree_of(&d);
    let [a, b, c, dd, e, f, g] = std::array::from_fn(|i| leaf_hash(&d[i]));
    let (hh, i, j) = (node_hash(&a, &b), node_hash(&c, &dd), node_hash(&e, &f));
    let (k, l) = (node_hash(&hh, &i), node_hash(&j, &g));
    assert_eq!(root(&tree, 7).unwrap(), node_hash(&k, &l));
    assert_eq!(inclusion_proof(&tree, 0, 7).unwrap(), [b, i, l]);
    assert_eq!(inclusion_proof(&tree, 3, 7).unwrap(), [c, hh, l]);
    assert_eq!(inclusion_proof(&tree, 4, 7).unwrap(), [f, g, k]);
    assert_eq!(inclusion_proof(&tree, 6, 7).unwrap(), [j, k]);
    assert_eq!(consistency_proof(&tree, 3, 7).unwrap(), [c, dd, hh, l]);
    assert_eq!(consistency_proof(&tree, 4, 7).unwrap(), [l]);
    assert_eq!(consistency_proof(&tree, 6, 7).unwrap(), [j, g, k]);
}

// ---------- tampering ----------

#[test]
fn inclusion_verification_rejects_tampering() {
    let d = data(TAMPER_MAX);
    let tree = tree_of(&d);
    let roots: Vec<Hash> = (0..=TAMPER_MAX).map(|n| tree_of(&d[..n]).root()).collect();
    for n in 1..=TAMPER_MAX {
        let r = roots[n];
        for (m, record) in d[..n].iter().enumerate() {
            let leaf = leaf_hash(record);
            let proof = inclusion_proof(&tree, u(m), u(n)).unwrap();
            let rejects = |leaf: &Hash, m: u64, n: u64, proof: &[Hash], r: &Hash| {
                verify_inclusion(leaf, m, n, proof, r).is_err()
            };
            for i in 0..proof.len() {
                assert!(rejects(&leaf, u(m), u(n), &flip(&proof, i, 37 * i + m), &r));
            }
            assert!(rejects(&leaf_hash(b"other"), u(m), u(n), &proof, &r));
            assert!(rejects(&leaf, u(m), u(n), &proof, &empty_root()));
            let wrong_length = |p: &[Hash]| {
                matches!(
                    verify_inclusion(&leaf, u(m), u(n), p, &r),
                    Err(ProofError::WrongLength { expected, got })
                        if expected == proof.len() && got == p.len()
                )
            };
            let mut longer = proof.clone();
            longer.push(r);
            assert!(wrong_length(&longer));
            let mut prefixed = vec![leaf];
            prefixed.extend_from_slice(&proof);
            assert!(wrong_length(&prefixed));
            if !proof.is_empty() {
                assert!(wrong_length(&proof[..proof.len() - 1]));
                assert!(wrong_length(&proof[1..]));
            }
            // Any other index in the same tree has another path (all of them for small trees).
            let others: Vec<usize> = if n <= 24 {
                (0..n).collect()
            } else {
                vec![0, m.saturating_sub(1), m + 1, m ^ 1, m ^ 2, n - 1]
            };
            for other in others.into_iter().filter(|&o| o != m && o < n) {
                assert!(
                    rejects(&leaf, u(other), u(n), &proof, &r),
                    "{m}->{other} of {n}"
                );
            }
            assert!(rejects(&leaf, u(n), u(n), &proof, &r));
            // Another size with the same root: accepted exactly when the PATH recursion takes
            // the same turns for that size (the signed size is what rules such claims out).
            let turns = path_turns(m, n);
            for other in [n + 1, n - 1, 2 * n, n / 2, n + 7].map(|o| o.min(TAMPER_MAX)) {
                if other <= m || other == n {
                    continue;
                }
                let same_turns = path_turns(m, other) == turns;
                assert_eq!(
                    verify_inclusion(&leaf, u(m), u(other), &proof, &r).is_ok(),
                    same_turns,
                    "leaf {m}: proof for size {n} checked as size {other}"
                );
                // With the other size's true root, only that size's own proof is accepted.
                assert!(rejects(&leaf, u(m), u(other), &proof, &roots[other]));
            }
        }
    }
}

#[test]
fn consistency_verification_rejects_tampering() {
    let d = data(TAMPER_MAX);
    let tree = tree_of(&d);
    let roots: Vec<Hash> = (0..=TAMPER_MAX).map(|n| tree_of(&d[..n]).root()).collect();
    for n in 2..=TAMPER_MAX {
        for m in 1..n {
            let (r1, r2) = (roots[m], roots[n]);
            let proof = consistency_proof(&tree, u(m), u(n)).unwrap();
            let rejects = |m: u64, n: u64, r1: &Hash, r2: &Hash, proof: &[Hash]| {
                verify_consistency(m, n, r1, r2, proof).is_err()
            };
            for i in 0..proof.len() {
                assert!(rejects(u(m), u(n), &r1, &r2, &flip(&proof, i, 41 * i + n)));
            }
            assert!(rejects(u(m), u(n), &r2, &r1, &proof), "swapped roots");
            assert!(rejects(u(m), u(n), &flip(&[r1], 0, 7)[0], &r2, &proof));
            assert!(rejects(u(m), u(n), &r1, &flip(&[r2], 0, 7)[0], &proof));
            let wrong_length = |p: &[Hash]| {
                matches!(
                    verify_consistency(u(m), u(n), &r1, &r2, p),
                    Err(ProofError::WrongLength { expected, got })
                        if expected == proof.len() && got == p.len()
                )
            };
            assert!(wrong_length(&[]), "empty proof");
            assert!(wrong_length(&proof[..proof.len() - 1]));
            assert!(wrong_length(&proof[1..]));
            for extra in [r1, r2, proof[0]] {
                let mut longer = proof.clone();
                longer.push(extra);
                assert!(wrong_length(&longer));
                let mut prefixed = vec![extra];
                prefixed.extend_from_slice(&proof);
                assert!(wrong_length(&prefixed));
            }
            // Other sizes with the same roots: accepted exactly when SUBPROOF has the same
            // shape for them; with their true roots, never (each pair has its own proof).
            let parts = proof_parts(m, n);
            for (om, on) in [
                (m + 1, n),
                (m - 1, n),
                (m ^ 2, n),
                (m, n + 1),
                (m, n - 1),
                (m, 2 * n),
                (m, n / 2),
            ] {
                let on = on.min(TAMPER_MAX);
                if om == 0 || om >= on || (om, on) == (m, n) {
                    continue;
                }
                // The shape includes whether the proof carries the seed (old size not a power
                // of two) or the verifier starts from the old root.
                let same_shape = proof_parts(om, on) == parts;
                assert_eq!(
                    verify_consistency(u(om), u(on), &r1, &r2, &proof).is_ok(),
                    same_shape,
                    "proof {m}->{n} checked as {om}->{on}"
                );
                assert!(rejects(u(om), u(on), &roots[om], &roots[on], &proof));
            }
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    // Equal sizes: empty proof and equal roots.
    verify_consistency(5, 5, &a, &a, &[]).unwrap();
    verify_consistency(0, 0, &a, &a, &[]).unwrap();
    assert_eq!(
        verify_consistency(5, 5, &a, &b, &[]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 0, &a, &b, &[]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(5, 5, &a, &a, &[a]),
        Err(ProofError::WrongLength {
            expected: 0,
            got: 1
        })
    );
    // From the empty tree: consistent with anything, with an empty proof only.
    verify_consistency(0, 9, &a, &b, &[]).unwrap();
    assert!(verify_consistency(0, 9, &a, &b, &[a]).is_err());
    // Backwards.
    assert_eq!(
        verify_consistency(3, 2, &a, &b, &[a]),
        Err(ProofError::SizesOutOfOrder {
            old_size: 3,
            new_size: 2
        })
    );
    // A non-trivial pair needs a proof.
    assert!(matches!(
        verify_consistency(1, 2, &a, &b, &[]),
        Err(ProofError::WrongLength { got: 0, .. })
    ));
}

#[test]
fn inclusion_edge_cases() {
    let a = leaf_hash(b"a");
    // A one-leaf tree: the leaf is the root, the proof is empty.
    verify_inclusion(&a, 0, 1, &[], &a).unwrap();
    assert_eq!(
        verify_inclusion(&a, 0, 1, &[], &empty_root()),
        Err(ProofError::RootMismatch)
    );
    for (index, size) in [(0, 0), (1, 1), (2, 1), (u64::MAX, u64::MAX)] {
        assert_eq!(
            verify_inclusion(&a, index, size, &[], &a),
            Err(ProofError::IndexOutOfRange { index, size })
        );
    }
    assert!(matches!(
        verify_inclusion(&a, 0, 2, &[], &a),
        Err(ProofError::WrongLength {
            expected: 1,
            got: 0
        })
    ));
}

// ---------- the storage model ----------

#[test]
fn generation_errors() {
    let tree = tree_of(&data(5));
    assert!(matches!(
        inclusion_proof(&tree, 5, 5),
        Err(TreeError::IndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(matches!(
        consistency_proof(&tree, 6, 5),
        Err(TreeError::SizesOutOfOrder {
            old_size: 6,
            new_size: 5
        })
    ));
    // Beyond what the store holds, the store's error comes through.
    assert!(matches!(
        root(&tree, 6),
        Err(TreeError::Source(MissingNode { level: 1, index: 2 }))
    ));
    assert!(matches!(
        inclusion_proof(&tree, 1, 8),
        Err(TreeError::Source(MissingNode { .. }))
    ));
    assert!(matches!(
        consistency_proof(&tree, 3, 9),
        Err(TreeError::Source(MissingNode { .. }))
    ));
}

/// A store that only has what append_nodes told it to persist.
#[derive(Default)]
struct MapStore {
    nodes: HashMap<(u8, u64), Hash>,
    size: u64,
}

impl NodeSource for MapStore {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[test]
fn append_nodes_creates_exactly_the_complete_subtrees() {
    let d = data(MAX_SIZE);
    let reference = Reference::new(d.clone());
    let mut store = MapStore::default();
    for (i, x) in d.iter().enumerate() {
        let new = append_nodes(store.size, leaf_hash(x), |level, index| {
            store.node(level, index)
        })
        .unwrap();
        assert_eq!(new[0], (0, u(i), leaf_hash(x)));
        assert_eq!(new.len(), 1 + (i + 1).trailing_zeros() as usize);
        for (level, index, hash) in new {
            let width = 1usize << level;
            let start = index as usize * width;
            // Complete: its last leaf is the one just appended.
            assert_eq!(start + width, i + 1);
            assert_eq!(hash, reference.mth(start, start + width));
            assert!(store.nodes.insert((level, index), hash).is_none());
        }
        store.size += 1;
        assert_eq!(root(&store, store.size).unwrap(), reference.mth(0, i + 1));
    }
    // Every complete subtree is stored, and nothing else.
    let complete: usize = (0..8).map(|level| MAX_SIZE >> level).sum();
    assert_eq!(store.nodes.len(), complete);
}

#[test]
fn append_nodes_passes_store_errors_through() {
    let err = append_nodes(3, [0; 32], |level, index| {
        Err::<Hash, _>(MissingNode { level, index })
    });
    assert_eq!(err, Err(MissingNode { level: 0, index: 2 }));
    // An even index has no left sibling to read.
    let ok = append_nodes(4, [0; 32], |_, _| Err::<Hash, ()>(())).unwrap();
    assert_eq!(ok, vec![(0, 4, [0; 32])]);
}

#[test]
fn compact_range_matches_the_tree() {
    let d = data(MAX_SIZE);
    let tree = tree_of(&d);
    let reference = Reference::new(d.clone());
    let mut range = CompactRange::new();
    assert_eq!(range.root(), empty_root());
    let mut store = MapStore::default();
    for (i, x) in d.iter().enumerate() {
        let nodes = range.append(leaf_hash(x));
        let expected = append_nodes(store.size, leaf_hash(x), |l, i| store.node(l, i)).unwrap();
        assert_eq!(nodes, expected);
        for (level, index, hash) in nodes {
            store.nodes.insert((level, index), hash);
        }
        store.size += 1;
        assert_eq!(range.size(), u(i + 1));
        assert_eq!(range.root(), reference.mth(0, i + 1));
        assert_eq!(
            CompactRange::from_source(&tree, u(i + 1)).unwrap(),
            range,
            "size {}",
            i + 1
        );
    }
}

/// Counts node reads.
struct Counting<'a> {
    tree: &'a MemoryTree,
    reads: Cell<usize>,
}

impl NodeSource for Counting<'_> {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.reads.set(self.reads.get() + 1);
        self.tree.node(level, index)
    }
}

#[test]
fn node_reads_are_logarithmic() {
    let tree = tree_of(&data(MAX_SIZE));
    let s = Counting {
        tree: &tree,
        reads: Cell::new(0),
    };
    let reads = |f: &dyn Fn()| {
        s.reads.set(0);
        f();
        s.reads.get()
    };
    for n in 1..=u(MAX_SIZE) {
        let bits = (64 - n.leading_zeros()) as usize;
        assert_eq!(
            reads(&|| {
                root(&s, n).unwrap();
            }),
            n.count_ones() as usize,
            "root({n})"
        );
        for m in 0..n {
            let r = reads(&|| {
                inclusion_proof(&s, m, n).unwrap();
            });
            assert!(r <= 2 * bits, "inclusion {m} of {n}: {r} reads");
        }
        for m in 0..=n {
            let r = reads(&|| {
                consistency_proof(&s, m, n).unwrap();
            });
            assert!(r <= 2 * bits + 1, "consistency {m}->{n}: {r} reads");
        }
    }
}
