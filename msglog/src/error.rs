//! The errors of the message log, grouped by kind. Every one of them fails the exchange whose
//! record could not be written (DESIGN §6: fail closed); only [`LogError::is_retryable`] ones may
//! succeed on a second try.

use std::path::PathBuf;
use std::sync::Arc;

/// Why the message log could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    // --- storage: the database or the file system failed -----------------------------------
    /// The database file is held by another process (or another `MessageLog` in this one).
    #[error("the message log database is open elsewhere (is another security server running?)")]
    InUse,

    /// redb failed: disk full, I/O error, or damage redb detected itself.
    #[error("message log database: {0}")]
    Database(#[from] redb::Error),

    /// A file beside the database (key file, archive file) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A key file could not be read or created (wrong mode, wrong length, ...).
    #[error("key file: {0}")]
    KeyFile(#[from] certs::Error),

    /// The operating system's random number generator failed (creating a key or the salt).
    #[error("the operating system's random number generator failed")]
    Random,

    /// The group commit that held this entry failed; nothing of that batch was written.
    #[error("the group commit failed, nothing of the batch was written: {0}")]
    BatchFailed(Arc<LogError>),

    /// The writer thread is gone (the log is shutting down, or the writer panicked).
    #[error("the message log writer has stopped")]
    Closed,

    // --- integrity: what is stored is not what was written --------------------------------
    /// Stored data does not decode or contradicts itself.
    #[error("the message log is damaged: {0}")]
    Corrupt(String),

    /// A stored body failed authenticated decryption or does not match its record's hash.
    #[error("the stored body of record {index} is damaged or was altered: {reason}")]
    BodyIntegrity { index: u64, reason: &'static str },

    /// An archive file is missing, altered, or does not link to its predecessor.
    #[error("archive {}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },

    /// The body key is not the one the log's bodies were encrypted with.
    #[error(
        "the body encryption key does not match the one this message log was written with \
         (wrong messagelog-body.key?)"
    )]
    WrongBodyKey,

    // --- the caller asked for something impossible ----------------------------------------
    /// An entry to append is inconsistent (body hash, `body_stored` flag, ...).
    #[error("invalid log entry: {0}")]
    InvalidEntry(String),

    /// An index or tree size beyond the log.
    #[error("{what} {value} is beyond the log's size {size}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        size: u64,
    },

    /// A checkpoint to store does not describe this log.
    #[error("checkpoint refused: {0}")]
    InvalidCheckpoint(String),

    /// Another configuration is already stored under this serial.
    #[error("a different configuration is already stored under serial {0}")]
    ConfigurationConflict(u64),
}

impl LogError {
    /// Whether trying again may succeed (a storage failure may be transient; damage and caller
    /// errors are not).
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Database(_) | LogError::Io { .. } | LogError::InUse => true,
            LogError::BatchFailed(inner) => inner.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { path, source }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> LogError {
        LogError::Corrupt(what.into())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self {
                LogError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<redb::DatabaseError> for LogError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LogError::InUse,
            e => LogError::Database(e.into()),
        }
    }
}

/// Why evidence could not be exported, or was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    // --- export ----------------------------------------------------------------------------
    /// The log failed while reading records, proofs or configurations.
    #[error(transparent)]
    Log(#[from] LogError),

    /// Nothing to export, or an index the log does not have.
    #[error("cannot export: {0}")]
    Request(String),

    /// No stored checkpoint covers the records yet.
    #[error(
        "record {last_index} is not yet checkpointed (latest checkpoint size: {latest}); \
         retry in a second"
    )]
    NotYetCheckpointed { last_index: u64, latest: u64 },

    /// The log holds no configuration in force at the records' times.
    #[error("the message log holds no global configuration to put into the evidence")]
    NoConfiguration,

    // --- verification -----------------------------------------------------------------------
    /// The bundle does not decode as an evidence bundle of a version this verifier knows.
    #[error("not an evidence bundle: {0}")]
    Malformed(String),

    /// The bundle decoded but at least one check failed; the report says which.
    #[error("evidence rejected: {}", .0.failure_summary())]
    Rejected(Box<crate::evidence::Report>),
}
