//! Sealed cookies: what the portal hands a browser to keep (a session, a login in progress),
//! encrypted and authenticated so that it can be neither read nor changed nor moved to another
//! purpose. The key is the only state, so any portal instance holding the same key file serves
//! any session (several instances behind one load balancer).
//!
//! A sealed value is `base64url(nonce ‖ ChaCha20-Poly1305(key, nonce, payload, aad = purpose))`
//! with a random 96-bit nonce: a value sealed for one purpose (a login in progress) does not
//! open as another (a session).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Bytes of a key.
const KEY_LEN: usize = 32;

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: a session key file holds exactly 32 bytes")]
    Length(String),
    #[error("{path} can be read by others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("no randomness: {0}")]
    Random(String),
}

/// Seals and opens values with one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(bytes)
}

impl Sealer {
    fn from_key(bytes: &[u8; KEY_LEN]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| SealError::Random("not a ChaCha20-Poly1305 key".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// A key made now, known to this process only.
    pub fn ephemeral() -> Result<Self, SealError> {
        Self::from_key(&random::<KEY_LEN>()?)
    }

    /// The key in `path`, made there (mode 0600) when the file does not exist. A file that
    /// others can read is refused. Instances starting together agree on one key: a new key is
    /// written whole to a file of its own and linked into place only if none is there yet.
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |source| SealError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            let fresh = random::<KEY_LEN>()?;
            let tmp = path.with_extension(format!("new-{}", hex::encode(random::<8>()?)));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            file.write_all(&fresh).map_err(io)?;
            file.sync_all().map_err(io)?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => return Self::from_key(&fresh),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SealError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Length(path.display().to_string()))?;
        Self::from_key(&key)
    }

    /// `payload` sealed for `purpose`, as cookie-safe text.
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> Result<String, SealError> {
        let nonce = random::<NONCE_LEN>()?;
        let mut sealed = payload.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError::Random("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(B64.encode(out))
    }

    /// The payload of a value sealed for `purpose` with this key; `None` for anything else
    /// (forged, altered, another purpose, another key, not base64).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut rest)
            .ok()?;
        Some(opened.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_purpose_and_key() {
        let sealer = Sealer::ephemeral().unwrap();
        let sealed = sealer.seal("session", b"resident 1").unwrap();
        assert!(!sealed.contains("resident"));
        assert_eq!(sealer.open("session", &sealed).unwrap(), b"resident 1");
        assert_eq!(sealer.open("login", &sealed), None);
        assert_eq!(Sealer::ephemeral().unwrap().open("session", &sealed), None);
        // Any changed character: refused.
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let altered: String = chars.into_iter().collect();
        assert_eq!(sealer.open("session", &altered), None);
        for junk in ["", "!!!", "AAAA"] {
            assert_eq!(sealer.open("session", junk), None);
        }
        // Two seals of one payload differ (random nonces).
        assert_ne!(
            sealer.seal("session", b"x").unwrap(),
            sealer.seal("session", b"x").unwrap()
        );
    }

    #[test]
    fn instances_sharing_a_key_file_open_each_others_values_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.key");
        let first = Sealer::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Sealer::from_file(&path).unwrap();
        let sealed = first.seal("session", b"shared").unwrap();
        assert_eq!(second.open("session", &sealed).unwrap(), b"shared");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Sealer::from_file(&path),
            Err(SealError::Permissions { .. })
        ));
        let short = dir.path().join("short.key");
        std::fs::write(&short, b"short").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Sealer::from_file(&short),
            Err(SealError::Length(_))
        ));
    }
}
