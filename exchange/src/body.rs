//! A message body with its SHA-256, hashed once where the body arrives.
//!
//! The signed headers carry the body's SHA-256 (DESIGN §5.2). The security server hashes every
//! body it signs or verifies; handing that hash on with the body spares the message log hashing
//! it again, and the only way to make a [`HashedBody`] is to hash the bytes it holds.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedBody {
    bytes: Bytes,
    sha256: [u8; 32],
}

impl HashedBody {
    /// Hashes `bytes`.
    pub fn new(bytes: Bytes) -> HashedBody {
        let sha256 = Sha256::digest(&bytes).into();
        HashedBody { bytes, sha256 }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_of_the_bytes_held() {
        let body = HashedBody::new(Bytes::from_static(b"abc"));
        assert_eq!(
            hex::encode(body.sha256()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(body.into_bytes(), Bytes::from_static(b"abc"));
    }
}
