//! The log's two secrets on disk: the body encryption key and the subject index key, each 32
//! raw random bytes in a file of mode 0600 (written and read through `certs`, which refuses a
//! file that group or others may read).
//!
//! Losing the body key makes the encrypted bodies unreadable (records and proofs stay); losing
//! the subject key makes the subject index unsearchable. Back both up with the database.

use std::path::Path;

use crate::LogError;
use crate::crypto::random_32;

/// Reads the 32-byte key at `path`, or creates it with fresh random bytes (mode 0600) if there
/// is no file yet.
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], LogError> {
    match read_key(path) {
        Err(LogError::KeyFile(certs::Error::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let key = random_32()?;
            match certs::write_secret_file(path, &key) {
                Ok(()) => Ok(key),
                // Another process created it between our read and our write: use theirs.
                Err(certs::Error::Exists { .. }) => read_key(path),
                Err(e) => Err(e.into()),
            }
        }
        other => other,
    }
}

fn read_key(path: &Path) -> Result<[u8; 32], LogError> {
    let bytes = certs::read_secret_file(path)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        LogError::KeyFile(certs::Error::KeyFormat(format!(
            "{}: a message log key is 32 bytes, this file has {}",
            path.display(),
            bytes.len()
        )))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn creates_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.key");
        let key = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key(&path).unwrap(), key);
        assert_ne!(key, [0; 32]);
        let other = load_or_create_key(&dir.path().join("subject.key")).unwrap();
        assert_ne!(other, key);
    }

    #[test]
    fn refuses_a_readable_or_short_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.key");
        load_or_create_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_key(&path),
            Err(LogError::KeyFile(certs::Error::Permissions { .. }))
        ));
        let short = dir.path().join("short.key");
        certs::write_secret_file(&short, &[1; 16]).unwrap();
        assert!(matches!(
            load_or_create_key(&short),
            Err(LogError::KeyFile(certs::Error::KeyFormat(_)))
        ));
    }
}
