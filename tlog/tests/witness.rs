#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The witness's decision: first contact, growth, conflicts, rollbacks, bad proofs, forks.

use tlog::checkpoint::Checkpoint;
use tlog::merkle::{Hash, MemoryTree, consistency_proof, empty_root, leaf_hash, root};
use tlog::witness::{WitnessRefusal, WitnessState, check_update};

const ORIGIN: &str = "JP/MUN/131016/ss1";

fn log(records: usize) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..records {
        t.append(format!("record {i}").as_bytes());
    }
    t
}

/// The same log with record `at` replaced: another history.
fn forked_log(records: usize, at: usize) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..records {
        if i == at {
            t.append(b"rewritten");
        } else {
            t.append(format!("record {i}").as_bytes());
        }
    }
    t
}

fn cp(tree: &MemoryTree, size: u64) -> Checkpoint {
    Checkpoint::new(ORIGIN, size, root(tree, size).unwrap()).unwrap()
}

fn state(tree: &MemoryTree, size: u64) -> WitnessState {
    WitnessState::from_checkpoint(&cp(tree, size))
}

fn proof(tree: &MemoryTree, old: u64, new: u64) -> Vec<Hash> {
    consistency_proof(tree, old, new).unwrap()
}

#[test]
fn first_contact_needs_old_size_zero_and_no_proof() {
    let t = log(10);
    let new = cp(&t, 10);
    assert_eq!(check_update(None, 0, &new, &[]), Ok(state(&t, 10)));
    assert_eq!(
        check_update(None, 4, &new, &proof(&t, 4, 10)),
        Err(WitnessRefusal::Conflict {
            known_size: 0,
            claimed: 4
        })
    );
    assert!(matches!(
        check_update(None, 0, &new, &[leaf_hash(b"x")]),
        Err(WitnessRefusal::Inconsistent { .. })
    ));
}

#[test]
fn growth_with_a_valid_proof_is_accepted() {
    let t = log(40);
    let mut known = check_update(None, 0, &cp(&t, 1), &[]).unwrap();
    for size in 2..=40 {
        let next = check_update(
            Some(&known),
            known.size,
            &cp(&t, size),
            &proof(&t, known.size, size),
        );
        known = next.unwrap();
        assert_eq!(known, state(&t, size));
    }
    // Bigger steps too.
    let mut known = state(&t, 3);
    for size in [7, 8, 21, 40] {
        known = check_update(
            Some(&known),
            known.size,
            &cp(&t, size),
            &proof(&t, known.size, size),
        )
        .unwrap();
    }
    assert_eq!(known.size, 40);
}

#[test]
fn the_claimed_old_size_must_be_the_witness_size() {
    let t = log(20);
    let known = state(&t, 8);
    for claimed in [0, 5, 9, 20, 25] {
        let p = if claimed <= 20 && claimed > 0 {
            proof(&t, claimed, 20)
        } else {
            vec![]
        };
        assert_eq!(
            check_update(Some(&known), claimed, &cp(&t, 20), &p),
            Err(WitnessRefusal::Conflict {
                known_size: 8,
                claimed
            })
        );
    }
    // Retrying from the witness's size succeeds.
    check_update(Some(&known), 8, &cp(&t, 20), &proof(&t, 8, 20)).unwrap();
}

#[test]
fn a_smaller_checkpoint_is_a_rollback() {
    let t = log(20);
    let known = state(&t, 12);
    for size in [0, 1, 11] {
        assert_eq!(
            check_update(Some(&known), 12, &cp(&t, size), &[]),
            Err(WitnessRefusal::RolledBack {
                known_size: 12,
                new_size: size
            })
        );
    }
}

#[test]
fn a_bad_proof_is_refused() {
    let t = log(20);
    let known = state(&t, 8);
    let new = cp(&t, 20);
    let good = proof(&t, 8, 20);
    let refused = |p: &[Hash]| {
        assert_eq!(
            check_update(Some(&known), 8, &new, p),
            Err(WitnessRefusal::Inconsistent {
                known_size: 8,
                new_size: 20
            })
        );
    };
    refused(&[]);
    refused(&good[..good.len() - 1]);
    refused(&[good.as_slice(), &[leaf_hash(b"x")]].concat());
    for i in 0..good.len() {
        let mut p = good.clone();
        p[i][0] ^= 1;
        refused(&p);
    }
    // A proof for other sizes of the same log.
    refused(&proof(&t, 7, 20));
    refused(&proof(&t, 8, 19));
}

#[test]
fn a_rewritten_history_is_caught() {
    let honest = log(30);
    for at in [0, 5, 15] {
        let forged = forked_log(30, at);
        // The witness cosigned the honest log at 16; the forged log cannot continue from it.
        let known = state(&honest, 16);
        for size in [17, 24, 30] {
            let attempt = check_update(
                Some(&known),
                16,
                &cp(&forged, size),
                &proof(&forged, 16, size),
            );
            assert!(
                matches!(attempt, Err(WitnessRefusal::Inconsistent { .. })),
                "rewrite at {at}, size {size}: {attempt:?}"
            );
            // Nor with the honest proof.
            let attempt = check_update(
                Some(&known),
                16,
                &cp(&forged, size),
                &proof(&honest, 16, size),
            );
            assert!(matches!(attempt, Err(WitnessRefusal::Inconsistent { .. })));
        }
    }
    // A rewrite after the cosigned size is just the future: not detectable, and fine.
    let later = forked_log(30, 20);
    check_update(
        Some(&state(&honest, 16)),
        16,
        &cp(&later, 30),
        &proof(&later, 16, 30),
    )
    .unwrap();
}

#[test]
fn same_size_with_another_root_is_a_fork() {
    let honest = log(10);
    let forged = forked_log(10, 3);
    let known = state(&honest, 10);
    assert_eq!(
        check_update(Some(&known), 10, &cp(&forged, 10), &[]),
        Err(WitnessRefusal::Fork { size: 10 })
    );
}

#[test]
fn the_same_checkpoint_again_is_accepted() {
    let t = log(10);
    let known = state(&t, 10);
    assert_eq!(
        check_update(Some(&known), 10, &cp(&t, 10), &[]),
        Ok(known.clone())
    );
    // With a (needless) proof it is not.
    assert!(matches!(
        check_update(Some(&known), 10, &cp(&t, 10), &[leaf_hash(b"x")]),
        Err(WitnessRefusal::Inconsistent { .. })
    ));
}

#[test]
fn empty_logs() {
    let empty = Checkpoint::new(ORIGIN, 0, empty_root()).unwrap();
    let known = check_update(None, 0, &empty, &[]).unwrap();
    assert_eq!(known.size, 0);
    assert_eq!(
        check_update(Some(&known), 0, &empty, &[]),
        Ok(known.clone())
    );
    // An empty tree has exactly one root.
    let wrong = Checkpoint::new(ORIGIN, 0, leaf_hash(b"x")).unwrap();
    for previous in [None, Some(&known)] {
        assert!(matches!(
            check_update(previous, 0, &wrong, &[]),
            Err(WitnessRefusal::Inconsistent { .. })
        ));
    }
    // From an empty tree, any growth is consistent, without a proof.
    let t = log(5);
    assert_eq!(
        check_update(Some(&known), 0, &cp(&t, 5), &[]),
        Ok(state(&t, 5))
    );
    // At size 0 the stored root is not looked at: the empty tree has only one.
    let odd = WitnessState {
        root: leaf_hash(b"x"),
        ..known.clone()
    };
    assert_eq!(check_update(Some(&odd), 0, &empty, &[]), Ok(known));
}

#[test]
fn state_of_another_log_is_refused() {
    let t = log(5);
    let other = WitnessState {
        origin: "JP/MUN/131016/ss2".into(),
        ..state(&t, 3)
    };
    assert_eq!(
        check_update(Some(&other), 3, &cp(&t, 5), &proof(&t, 3, 5)),
        Err(WitnessRefusal::OriginMismatch {
            known: "JP/MUN/131016/ss2".into(),
            got: ORIGIN.into()
        })
    );
}
