//! # Layout
//!
//! The message log of a security server (DESIGN §6–7): every request and response it passes on,
//! durable before it is passed on, in an RFC 6962 Merkle tree whose checkpoints peers cosign,
//! with offline-verifiable evidence.
//!
//! - [`store`]: [`MessageLog`]: open, group-committed [`MessageLog::append`], roots and proofs,
//!   records with their (decrypted) bodies, the message-id, time and subject indexes.
//! - `writer` (private): the group-commit thread (many appends, one write-ahead frame, one
//!   fsync) and the indexer thread that applies them to the database in large transactions.
//! - `wal` (private): the write-ahead log's frames and segment files, and recovery at open.
//! - `disk` (private): opening the database file; a simulated full disk for tests.
//! - [`history`]: checkpoints and their cosignatures, witness state of other servers' logs, our
//!   witnesses' progress, the history of signed global configurations.
//! - [`archive_file`]: the archive file format; reading one file back, checked.
//! - [`backup`]: a consistent copy of the running log ([`MessageLog::snapshot`]), and
//!   [`backup::relocate_archives`] for a restore elsewhere.
//! - [`archive`]: retention: hash-linked archive files, reading archived records back, chain checks.
//! - [`evidence`]: [`evidence::export`] of records as an `EvidenceBundle`, and the offline
//!   [`evidence::verify`]; [`report`] is what verification found.
//! - `crypto` (private): bodies at rest (ChaCha20-Poly1305) and the subject index HMAC. Pure.
//! - [`keys`]: the key files of both ([`load_or_create_key`]).
//! - `tables` (private): the redb tables (listed there and in `docs/evidence.md`).
//! - [`error`]: [`LogError`] and [`EvidenceError`], grouped by kind.
//!
//! Pure parts (crypto, the archive format, evidence verification, the report) do no I/O; the
//! store, the writer and the archive files do.

#![forbid(unsafe_code)]
// Tests unwrap freely; the library build (also checked by clippy) may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
pub mod archive_file;
pub mod backup;
mod crypto;
mod disk;
pub mod error;
pub mod evidence;
pub mod history;
pub mod keys;
pub mod report;
pub mod store;
mod tables;
mod wal;
mod writer;

pub use archive::{ArchiveFile, ArchiveReport, ArchiveVerification, verify_archive_chain};
pub use error::{EvidenceError, LogError};
pub use evidence::{VerifyOptions, export, verify, verify_trusting, verify_with};
pub use keys::load_or_create_key;
pub use report::Report;
pub use store::{Entry, LogOptions, LogStats, MessageLog, Pending, StoredRecord};
/// The tlog crate, whose types ([`tlog::WitnessState`], [`tlog::Hash`], notes) this API uses.
pub use tlog;

/// Entry points for the fuzz targets (`fuzz-targets`, feature `fuzzing`): the parsers of the
/// files the log reads back from disk, which are otherwise private to it.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// A write-ahead segment as recovery reads it: its frames, their entries as the indexer
    /// takes them, and, past a damaged frame, the search for an intact one.
    pub fn wal_segment(bytes: &[u8]) {
        let (frames, tail) = crate::wal::parse_frames(bytes);
        for frame in frames {
            let owned = crate::wal::OwnedFrame {
                first: frame.first,
                bytes: frame.bytes.to_vec(),
                segment: 0,
                offset: frame.offset as u64,
            };
            let entries = owned.entries().expect("a frame that parsed parses again");
            assert_eq!(entries.len(), frame.entries.len());
            assert_eq!(owned.count(), frame.entries.len() as u64);
        }
        if let crate::wal::Tail::Broken { offset, .. } = tail {
            let _ = crate::wal::intact_frame_after(bytes, offset);
        }
    }

    /// An archive file as it is read back: every entry it lists can be fetched.
    pub fn archive_file(bytes: &[u8]) {
        if let Ok(archive) = crate::archive_file::ParsedArchive::parse(bytes.to_vec()) {
            let indexes: Vec<u64> = archive.iter().map(|(index, _)| index).collect();
            for index in indexes {
                assert!(archive.get(index).is_some(), "entry {index} is listed");
            }
        }
    }
}
