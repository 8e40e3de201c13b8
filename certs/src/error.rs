//! The crate's error type. Messages never contain secret key material.

use std::path::PathBuf;

/// Everything that can go wrong in `certs`, grouped by kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A secret file would have been overwritten; callers delete it first if they mean it.
    #[error("{}: already exists, refusing to overwrite", path.display())]
    Exists { path: PathBuf },

    /// A secret file is readable or writable by group or others.
    #[error("{}: mode {mode:04o} gives group or others access to a secret file; chmod 600 it", path.display())]
    Permissions { path: PathBuf, mode: u32 },

    /// A key, key id or its encoding is malformed.
    #[error("bad key format: {0}")]
    KeyFormat(String),

    /// A signature did not verify (or was not even the right length).
    #[error("signature verification failed")]
    Signature,

    /// A certificate could not be made, parsed or matched with its key.
    #[error("certificate: {0}")]
    Certificate(String),

    /// rustls refused a configuration (bad key, bad certificate chain, bad protocol set).
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// A hardware security module refused or failed (PKCS#11).
    #[error("hardware security module: {0}")]
    Module(String),

    /// The operating system's random number generator failed.
    #[error("random number generator: {0}")]
    Random(getrandom::Error),
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Certificate(e.to_string())
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Random(e)
    }
}
