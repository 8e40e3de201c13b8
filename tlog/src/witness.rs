//! The witness's decision (c2sp.org/tlog-witness `add-checkpoint`, carried over gRPC here):
//! given what it last cosigned for a log, may it cosign this new checkpoint?
//!
//! The caller does, in this order:
//! 1. look up the log by the checkpoint's origin (unknown origin: refuse; the spec's 404) and
//!    verify the log's signature with [`crate::checkpoint::open_checkpoint`] (no valid
//!    signature: refuse; the spec's 403);
//! 2. atomically with 4., read the stored [`WitnessState`] for that origin and call
//!    [`check_update`];
//! 3. on a refusal, answer with it; the witness MAY keep the request as evidence of log
//!    misbehaviour, but never cosigns;
//! 4. on success, persist the returned state, *then* cosign
//!    ([`crate::cosignature::cosign`]) and answer. Check and persist must be one atomic step,
//!    or two concurrent requests can roll the stored state back (see the spec).
//!
//! | refusal | spec (HTTP) | what the log does |
//! |---|---|---|
//! | [`WitnessRefusal::Conflict`] | 409 with the known size | retry with a proof from `known_size` |
//! | [`WitnessRefusal::RolledBack`] | 400 (old size above checkpoint size) | nothing: its history shrank |
//! | [`WitnessRefusal::Inconsistent`] | 422 | nothing: the proof or the tree is wrong |
//! | [`WitnessRefusal::Fork`] | 409 (same size, other root) | nothing: two histories were signed |
//! | [`WitnessRefusal::OriginMismatch`] | (caller bug) | — |
//!
//! One deliberate difference in order: the spec checks "old size ≤ checkpoint size" (400)
//! before "old size = known size" (409). Here the known size is compared first, so a log
//! always learns where the witness stands; a request whose old size is the known size but
//! above the checkpoint size is a rollback.

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash};

/// What a witness last cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessState {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl WitnessState {
    /// The state a cosignature of `cp` leaves behind.
    pub fn from_checkpoint(cp: &Checkpoint) -> Self {
        WitnessState {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: *cp.root(),
        }
    }
}

/// Why a witness will not cosign a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// The log's claimed old size is not the size the witness last cosigned: the log must
    /// send a consistency proof from `known_size` (0 if the witness never cosigned this log).
    #[error("old size {claimed} is not the witness's size {known_size}")]
    Conflict { known_size: u64, claimed: u64 },

    /// The checkpoint is smaller than one the witness already cosigned.
    #[error("checkpoint size {new_size} is below the cosigned size {known_size}")]
    RolledBack { known_size: u64, new_size: u64 },

    /// The consistency proof from the cosigned tree to this one does not verify (or a proof
    /// was sent where none is needed).
    #[error("consistency proof from size {known_size} to {new_size} does not verify")]
    Inconsistent { known_size: u64, new_size: u64 },

    /// Same size as the cosigned checkpoint, different root: the log signed two histories.
    #[error("checkpoint of size {size} has another root than the cosigned one")]
    Fork { size: u64 },

    /// The stored state belongs to another log (the caller looked up the wrong state).
    #[error("witness state for {known:?} used for a checkpoint of {got:?}")]
    OriginMismatch { known: String, got: String },
}

/// Decides whether to cosign `new`, whose log signature the caller has already verified,
/// given `previous` (what the witness last cosigned for this origin, `None` if never),
/// the log's claimed old size and a consistency proof from that size.
///
/// On success returns the state to persist before cosigning. A checkpoint equal to the
/// cosigned one (same size and root, empty proof) is accepted again, so retries are harmless.
pub fn check_update(
    previous: Option<&WitnessState>,
    old_size_claimed: u64,
    new: &Checkpoint,
    consistency_proof: &[Hash],
) -> Result<WitnessState, WitnessRefusal> {
    let (known_size, known_root) = match previous {
        Some(state) => {
            if state.origin != new.origin() {
                return Err(WitnessRefusal::OriginMismatch {
                    known: state.origin.clone(),
                    got: new.origin().to_owned(),
                });
            }
            (state.size, state.root)
        }
        None => (0, merkle::empty_root()),
    };
    if old_size_claimed != known_size {
        return Err(WitnessRefusal::Conflict {
            known_size,
            claimed: old_size_claimed,
        });
    }
    if new.size() < known_size {
        return Err(WitnessRefusal::RolledBack {
            known_size,
            new_size: new.size(),
        });
    }
    if known_size > 0 && new.size() == known_size && *new.root() != known_root {
        return Err(WitnessRefusal::Fork { size: known_size });
    }
    // From size 0 the old root is the empty tree's; verify_consistency then needs an empty
    // proof, and the empty tree's root if the new tree is empty too.
    let known_root = if known_size == 0 {
        merkle::empty_root()
    } else {
        known_root
    };
    merkle::verify_consistency(
        known_size,
        new.size(),
        &known_root,
        new.root(),
        consistency_proof,
    )
    .map_err(|_| WitnessRefusal::Inconsistent {
        known_size,
        new_size: new.size(),
    })?;
    Ok(WitnessState::from_checkpoint(new))
}
