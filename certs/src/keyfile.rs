//! Files: atomic writes, and secret files that only their owner may read.
//!
//! This and [`crate::CertificateAuthority::load`]/[`save`](crate::CertificateAuthority::save)
//! are the only places in the crate that touch the file system.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::{Error, SigningKey, Zeroizing};

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// Writes the key as PKCS#8 PEM to `path` with mode 0600, atomically.
/// Refuses to overwrite an existing file ([`Error::Exists`]); delete it first if you mean it.
pub fn save_secret_key(path: &Path, key: &SigningKey) -> Result<(), Error> {
    let pem = key.to_pkcs8_pem()?;
    write_secret_file(path, pem.as_bytes())
}

/// Reads a key file written by [`save_secret_key`]; refuses one that group or others
/// can read or write ([`Error::Permissions`]), like ssh does.
pub fn load_secret_key(path: &Path) -> Result<SigningKey, Error> {
    let bytes = read_secret_file(path)?;
    let pem = std::str::from_utf8(&bytes)
        .map_err(|_| Error::KeyFormat(format!("{}: not a PEM file", path.display())))?;
    SigningKey::from_pkcs8_pem(pem)
}

/// Writes secret bytes to `path` with mode 0600, atomically; refuses to overwrite.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    write_atomic(path, contents, SECRET_MODE, Replace::Never)
}

/// Reads a secret file, refusing one that group or others can read or write.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    // Checked on the open handle, so the file cannot be swapped between check and read.
    let meta = file.metadata().map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    // Sized up front so the buffer never reallocates and leaves secret copies behind.
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Writes a public file (mode 0644) atomically, replacing any existing one:
/// readers see the old contents or the new, never a torn file.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    write_atomic(path, contents, PUBLIC_MODE, Replace::Allowed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Allowed,
    Never,
}

/// Temp file in the same directory (created with its final mode, so a secret is never
/// readable by others even for a moment), fsync, then move into place and fsync the
/// directory so the new name survives a crash.
fn write_atomic(path: &Path, contents: &[u8], mode: u32, replace: Replace) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if replace == Replace::Never && fs::symlink_metadata(path).is_ok() {
        return Err(Error::Exists {
            path: path.to_owned(),
        });
    }

    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{:016x}", u64::from_le_bytes(suffix)));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // The umask may have removed bits from `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        match replace {
            Replace::Allowed => fs::rename(&tmp, path).map_err(io(path)),
            // link(2) fails if `path` exists, closing the race with the check above.
            Replace::Never => fs::hard_link(&tmp, path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    Error::Io {
                        path: path.to_owned(),
                        source,
                    }
                }
            }),
        }
    })();
    // After a rename the temp name is already gone; after a link or a failure it must go.
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn files_in(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn save_secret_key_writes_mode_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign.key");
        let key = SigningKey::from_seed([5; 32]);
        save_secret_key(&path, &key).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(files_in(dir.path()), vec!["sign.key".to_owned()]);
        let loaded = load_secret_key(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
    }

    #[test]
    fn save_secret_key_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign.key");
        save_secret_key(&path, &SigningKey::from_seed([1; 32])).unwrap();
        let err = save_secret_key(&path, &SigningKey::from_seed([2; 32])).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err}");
        let kept = load_secret_key(&path).unwrap();
        assert_eq!(
            kept.public_key(),
            SigningKey::from_seed([1; 32]).public_key()
        );
    }

    #[test]
    fn write_secret_file_writes_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_secret_file(&path, b"s3cret").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(read_secret_file(&path).unwrap().as_slice(), b"s3cret");
        assert!(matches!(
            write_secret_file(&path, b"other"),
            Err(Error::Exists { .. })
        ));
    }

    #[test]
    fn load_secret_key_refuses_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign.key");
        save_secret_key(&path, &SigningKey::from_seed([1; 32])).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            match load_secret_key(&path) {
                Err(Error::Permissions { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: expected Permissions error, got {other:?}"),
            }
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        load_secret_key(&path).unwrap();
    }

    #[test]
    fn read_secret_file_refuses_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_secret_file(&path),
            Err(Error::Permissions { mode: 0o640, .. })
        ));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        match load_secret_key(&path) {
            Err(Error::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Io error, got {other:?}"),
        }
    }

    #[test]
    fn write_file_atomic_writes_0644_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf.json");
        write_file_atomic(&path, b"one").unwrap();
        assert_eq!(mode_of(&path), 0o644);
        write_file_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o644);
        assert_eq!(files_in(dir.path()), vec!["conf.json".to_owned()]);
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/file");
        assert!(matches!(
            write_file_atomic(&path, b"x"),
            Err(Error::Io { .. })
        ));
    }
}
