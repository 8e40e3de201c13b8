//! Bodies at rest and the subject index key (DESIGN §6–7). Pure: keys come in as bytes.
//!
//! # Bodies
//!
//! A stored body value is one format byte and the rest:
//!
//! | byte 0 | rest |
//! |---|---|
//! | `0` | the body, plain (the log was written without a body key) |
//! | `1` | ChaCha20-Poly1305 ciphertext ‖ 16-byte tag, epoch 0 (written by earlier versions) |
//! | `2` | epoch (u32 BE) ‖ ChaCha20-Poly1305 ciphertext ‖ 16-byte tag |
//!
//! The AEAD key is not the configured body key itself but
//! `HMAC-SHA256(body key, "xroad-rs/msglog/body-key/v1\0" ‖ salt)`, where the salt is 32 random
//! bytes made when the database was created. The nonce is `epoch (u32 BE) ‖ leaf index (u64 BE)`
//! and the associated data the leaf index (u64 BE). The epoch counts the opens of the database
//! (from 1; stored in `meta`), so a nonce is never used twice even when an index is: a group
//! commit cut short by a crash was never acknowledged, and its indexes go to other records after
//! the restart, while its sealed bodies may still lie on the disk. The salt keeps nonces unique
//! when a database is recreated with the same key file. A body moved to another index does not
//! open.
//!
//! Whatever the format, a body read back must also hash to its record's `body_sha256`, so
//! a plain body altered in storage is caught as well.
//!
//! # Subjects
//!
//! The subject index is keyed by `HMAC-SHA256(subject key, data subject)`: lookups need the
//! server's secret; the raw identifier never goes into an index.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use sha2::{Digest as _, Sha256};

use crate::LogError;

/// A stored body value is `FORMAT_PLAIN ‖ body`.
pub(crate) const FORMAT_PLAIN: u8 = 0;
/// A stored body value is `FORMAT_CHACHA20_POLY1305 ‖ ciphertext ‖ tag` (epoch 0); read only.
pub(crate) const FORMAT_CHACHA20_POLY1305: u8 = 1;
/// A stored body value is `FORMAT_CHACHA20_POLY1305_EPOCH ‖ epoch ‖ ciphertext ‖ tag`.
pub(crate) const FORMAT_CHACHA20_POLY1305_EPOCH: u8 = 2;

const BODY_KEY_LABEL: &[u8] = b"xroad-rs/msglog/body-key/v1\0";
const KEY_CHECK_LABEL: &[u8] = b"xroad-rs/msglog/body-key-check/v1\0";

/// Why a stored body could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Empty value or an unknown format byte.
    Format,
    /// Encrypted, but the log was opened without a body key.
    NoKey,
    /// Authentication failed: altered ciphertext, wrong key, or moved to another index.
    Authentication,
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            OpenError::Format => "unknown storage format",
            OpenError::NoKey => "the body is encrypted and no body key is configured",
            OpenError::Authentication => "authenticated decryption failed",
        }
    }
}

/// How this log stores bodies: sealed under the derived key, or plain.
pub(crate) struct BodyCipher {
    key: Option<LessSafeKey>,
    /// The epoch of this open of the database; part of every nonce sealed now.
    epoch: u32,
}

impl std::fmt::Debug for BodyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCipher")
            .field("encrypting", &self.key.is_some())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl BodyCipher {
    /// `body_key` as configured (None: store plain), `salt` the database's, `epoch` this open's
    /// (at least 1, never used before with this salt).
    pub(crate) fn new(
        body_key: Option<&[u8; 32]>,
        salt: &[u8; 32],
        epoch: u32,
    ) -> Result<Self, LogError> {
        let key = match body_key {
            None => None,
            Some(k) => {
                let derived = hmac_sha256(k, &[BODY_KEY_LABEL, salt]);
                // 32 bytes is ChaCha20-Poly1305's key length: ring does not refuse it.
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, &derived)
                    .map_err(|_| LogError::corrupt("ring refused a 32-byte ChaCha20 key"))?;
                Some(LessSafeKey::new(unbound))
            }
        };
        Ok(BodyCipher { key, epoch })
    }

    /// The value to store for `body` at leaf `index`.
    #[cfg(test)]
    pub(crate) fn seal(&self, index: u64, body: &[u8]) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::new();
        self.seal_into(index, body, &mut out)?;
        Ok(out)
    }

    /// Appends the value to store for `body` at leaf `index` to `out` (a write-ahead frame being
    /// filled), encrypting it in place there.
    pub(crate) fn seal_into(
        &self,
        index: u64,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        let Some(key) = &self.key else {
            out.reserve(1 + body.len());
            out.push(FORMAT_PLAIN);
            out.extend_from_slice(body);
            return Ok(());
        };
        out.reserve(1 + 4 + body.len() + aead::MAX_TAG_LEN);
        out.push(FORMAT_CHACHA20_POLY1305_EPOCH);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(body);
        let index_bytes = index.to_be_bytes();
        // Sealing only fails for inputs above ChaCha20's 256 GiB limit.
        let tag = key
            .seal_in_place_separate_tag(
                nonce(self.epoch, index),
                Aad::from(index_bytes),
                &mut out[start..],
            )
            .map_err(|_| LogError::InvalidEntry("body too large to encrypt".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The body stored at leaf `index` as `stored`.
    pub(crate) fn open(&self, index: u64, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&format, rest) = stored.split_first().ok_or(OpenError::Format)?;
        match format {
            FORMAT_PLAIN => Ok(rest.to_vec()),
            FORMAT_CHACHA20_POLY1305 => self.open_sealed(0, index, rest),
            FORMAT_CHACHA20_POLY1305_EPOCH => {
                let (epoch, sealed) = rest.split_first_chunk::<4>().ok_or(OpenError::Format)?;
                self.open_sealed(u32::from_be_bytes(*epoch), index, sealed)
            }
            _ => Err(OpenError::Format),
        }
    }
}

impl BodyCipher {
    fn open_sealed(&self, epoch: u32, index: u64, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let key = self.key.as_ref().ok_or(OpenError::NoKey)?;
        let mut buf = sealed.to_vec();
        let plain_len = key
            .open_in_place(
                nonce(epoch, index),
                Aad::from(index.to_be_bytes()),
                &mut buf,
            )
            .map_err(|_| OpenError::Authentication)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// The value stored beside the salt to recognise the body key on the next open.
pub(crate) fn body_key_check(body_key: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(body_key, &[KEY_CHECK_LABEL, salt])
}

/// The subject index key of one data subject.
pub(crate) fn subject_hash(subject_key: &[u8; 32], subject: &str) -> [u8; 32] {
    hmac_sha256(subject_key, &[subject.as_bytes()])
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn nonce(epoch: u32, index: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[..4].copy_from_slice(&epoch.to_be_bytes());
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// 32 bytes from the operating system's random number generator.
pub(crate) fn random_32() -> Result<[u8; 32], LogError> {
    use ring::rand::SecureRandom as _;
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| LogError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_at_their_index_with_their_key() {
        let salt = [9; 32];
        let cipher = BodyCipher::new(Some(&[1; 32]), &salt, 3).unwrap();
        let sealed = cipher.seal(7, b"hello body").unwrap();
        assert_eq!(sealed[0], FORMAT_CHACHA20_POLY1305_EPOCH);
        assert_eq!(sealed[1..5], 3u32.to_be_bytes());
        assert_eq!(sealed.len(), 1 + 4 + 10 + 16);
        assert!(!sealed.windows(10).any(|w| w == b"hello body"));
        assert_eq!(cipher.open(7, &sealed).unwrap(), b"hello body");
        assert_eq!(cipher.open(8, &sealed), Err(OpenError::Authentication));
        // A later open (another epoch) reads it, with the epoch stored beside it.
        let later = BodyCipher::new(Some(&[1; 32]), &salt, 4).unwrap();
        assert_eq!(later.open(7, &sealed).unwrap(), b"hello body");
        let other_key = BodyCipher::new(Some(&[2; 32]), &salt, 3).unwrap();
        assert_eq!(other_key.open(7, &sealed), Err(OpenError::Authentication));
        let other_salt = BodyCipher::new(Some(&[1; 32]), &[8; 32], 3).unwrap();
        assert_eq!(other_salt.open(7, &sealed), Err(OpenError::Authentication));
        assert_eq!(
            BodyCipher::new(None, &salt, 3).unwrap().open(7, &sealed),
            Err(OpenError::NoKey)
        );
        assert_eq!(cipher.open(7, &sealed[..4]), Err(OpenError::Format));
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                cipher.open(7, &bad),
                Err(OpenError::Authentication),
                "byte {i}"
            );
        }
    }

    #[test]
    fn same_body_at_two_indexes_or_in_two_epochs_seals_differently() {
        let cipher = BodyCipher::new(Some(&[1; 32]), &[0; 32], 1).unwrap();
        let next_open = BodyCipher::new(Some(&[1; 32]), &[0; 32], 2).unwrap();
        let a = cipher.seal(1, b"same").unwrap();
        assert_ne!(a, cipher.seal(2, b"same").unwrap());
        // An index sealed again after a restart gets a fresh nonce: the keystreams differ.
        let b = next_open.seal(1, b"same").unwrap();
        assert_ne!(a[5..], b[5..]);
    }

    #[test]
    fn bodies_sealed_by_earlier_versions_still_open() {
        // Format 1: nonce 0x00000000 ‖ index, no epoch stored.
        let salt = [5; 32];
        let key = LessSafeKey::new(
            UnboundKey::new(
                &CHACHA20_POLY1305,
                &hmac_sha256(&[1; 32], &[BODY_KEY_LABEL, &salt]),
            )
            .unwrap(),
        );
        let mut stored = vec![FORMAT_CHACHA20_POLY1305];
        stored.extend_from_slice(b"old body");
        let tag = key
            .seal_in_place_separate_tag(
                nonce(0, 9),
                Aad::from(9u64.to_be_bytes()),
                &mut stored[1..],
            )
            .unwrap();
        stored.extend_from_slice(tag.as_ref());
        let cipher = BodyCipher::new(Some(&[1; 32]), &salt, 7).unwrap();
        assert_eq!(cipher.open(9, &stored).unwrap(), b"old body");
        assert_eq!(cipher.open(8, &stored), Err(OpenError::Authentication));
    }

    #[test]
    fn plain_bodies_carry_a_format_byte() {
        let cipher = BodyCipher::new(None, &[0; 32], 1).unwrap();
        let stored = cipher.seal(3, b"abc").unwrap();
        assert_eq!(stored, b"\0abc");
        assert_eq!(cipher.open(3, &stored).unwrap(), b"abc");
        assert_eq!(cipher.open(3, b""), Err(OpenError::Format));
        assert_eq!(cipher.open(3, b"\x07abc"), Err(OpenError::Format));
    }

    #[test]
    fn subject_hash_is_keyed() {
        let a = subject_hash(&[1; 32], "JP-123456789012");
        assert_eq!(a, subject_hash(&[1; 32], "JP-123456789012"));
        assert_ne!(a, subject_hash(&[2; 32], "JP-123456789012"));
        assert_ne!(a, subject_hash(&[1; 32], "JP-123456789013"));
    }
}
