//! Tamper evidence for the message log (DESIGN.md §6): the log is an RFC 6962 Merkle tree;
//! each server signs checkpoints of it as C2SP signed notes, and peer servers acting as
//! witnesses cosign a checkpoint only after checking it is consistent with the last one they
//! cosigned, so a server cannot rewrite or fork its history unnoticed.
//!
//! Pure: no I/O, no clock (times are passed in). Storage and transport live in the callers.
//!
//! # Layout
//! - [`merkle`]: RFC 6962 hashing; roots, inclusion and consistency proofs over stored
//!   complete subtrees ([`NodeSource`]); their verification (RFC 9162 §2.1); [`MemoryTree`].
//! - [`note`]: C2SP signed notes: parsing, rendering, Ed25519 note keys, verifier keys.
//! - [`checkpoint`]: C2SP tlog-checkpoint: the signed tree head, origin = security server id.
//! - [`cosignature`]: C2SP tlog-cosignature v1 (Ed25519, timestamped): a witness's statement.
//! - [`witness`]: the witness's decision on a new checkpoint (C2SP tlog-witness semantics).

#![forbid(unsafe_code)]
// Tests unwrap freely; the library build (also checked by clippy) may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, log_key_name, open_checkpoint, sign_checkpoint};
pub use cosignature::{
    CosignatureError, CosignatureSigner, CosignatureVerifier, Cosigned, cosign, verify_cosignature,
    verify_cosignatures,
};
pub use merkle::{
    CompactRange, Hash, MemoryTree, MissingNode, NodeSource, ProofError, TreeError, append_nodes,
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion,
};
pub use note::{Note, NoteError, NoteSignature, NoteSigner, NoteVerifier, VerifiedSigners};
pub use witness::{WitnessRefusal, WitnessState, check_update};
