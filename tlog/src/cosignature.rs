//! C2SP tlog-cosignature v1 with Ed25519 (c2sp.org/tlog-cosignature): a witness's timestamped
//! statement that, as of that time, this is the largest consistent tree it has seen for the log.
//!
//! - Key hash: `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4]` (signature type 0x04).
//! - Signed message: `cosignature/v1\ntime <unix seconds>\n` followed by the whole checkpoint
//!   body (extension lines included).
//! - Signature bytes in the note line: the timestamp as 8 bytes big-endian, then the 64-byte
//!   Ed25519 signature.
//!
//! The message does not name the cosigner, so one key must never serve two cosigner names.
//! Timestamps are passed in (this crate reads no clock) and may not exceed 2^63 - 1.

use certs::{PublicKey, SigningKey};

use crate::checkpoint::Checkpoint;
use crate::note::{self, NoteError, NoteSignature};

/// Signature type byte of a timestamped Ed25519 cosignature.
pub(crate) const TYPE_ED25519_COSIGNATURE: u8 = 0x04;

/// The largest timestamp the spec allows.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Why a cosignature was not made or not accepted, grouped by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The signature line is by another key (its name or key hash differ): not an error in a
    /// note, where such lines are ignored, but not this cosigner's statement either.
    #[error("signature is not by cosigner {name}")]
    OtherKey { name: String },

    /// Not 8 + 64 bytes, or a timestamp above 2^63 - 1.
    #[error("malformed cosignature: {0}")]
    Malformed(&'static str),

    /// The cosignature does not verify for this checkpoint and key.
    #[error("invalid cosignature by {name}")]
    BadSignature { name: String },

    /// Asked to cosign with a time the format cannot carry.
    #[error("timestamp {0} is above 2^63 - 1")]
    TimestampOutOfRange(u64),

    /// A key name or verifier key was refused.
    #[error(transparent)]
    Key(#[from] NoteError),
}

/// A witness's cosigning key under its cosigner name.
#[derive(Debug, Clone)]
pub struct CosignatureSigner {
    name: String,
    key_hash: [u8; 4],
    key: SigningKey,
}

impl CosignatureSigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self, CosignatureError> {
        let name = name.into();
        note::validate_key_name(&name)?;
        let key_hash = note::key_hash(&name, TYPE_ED25519_COSIGNATURE, &key.public_key());
        Ok(CosignatureSigner {
            name,
            key_hash,
            key,
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_hash: self.key_hash,
            public_key: self.key.public_key(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }
}

/// A trusted witness key: cosigner name, key hash and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_hash: [u8; 4],
    public_key: PublicKey,
}

impl CosignatureVerifier {
    pub fn new(name: impl Into<String>, public_key: PublicKey) -> Result<Self, CosignatureError> {
        let name = name.into();
        note::validate_key_name(&name)?;
        let key_hash = note::key_hash(&name, TYPE_ED25519_COSIGNATURE, &public_key);
        Ok(CosignatureVerifier {
            name,
            key_hash,
            public_key,
        })
    }

    /// Parses a verifier key with signature type 0x04:
    /// `<name>+<8 hex digits of key hash>+<base64(0x04 ‖ key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, CosignatureError> {
        let (name, key_hash, public_key) = note::decode_vkey(vkey, TYPE_ED25519_COSIGNATURE)?;
        Ok(CosignatureVerifier {
            name,
            key_hash,
            public_key,
        })
    }

    pub fn to_vkey(&self) -> String {
        note::encode_vkey(&self.name, TYPE_ED25519_COSIGNATURE, &self.public_key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

/// Cosigns `cp` at `time` (POSIX seconds, from the caller's clock).
pub fn cosign(
    cp: &Checkpoint,
    signer: &CosignatureSigner,
    time: u64,
) -> Result<NoteSignature, CosignatureError> {
    if time > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampOutOfRange(time));
    }
    let signature = signer.key.sign_note_text(&signed_message(cp, time));
    let mut bytes = Vec::with_capacity(8 + 64);
    bytes.extend_from_slice(&time.to_be_bytes());
    bytes.extend_from_slice(&signature);
    Ok(NoteSignature::new(
        signer.name.clone(),
        signer.key_hash,
        bytes,
    )?)
}

/// Verifies that `sig` is `verifier`'s cosignature of `cp`; returns its timestamp.
///
/// Whether the time is acceptable (not in the future, recent enough) is the caller's policy.
pub fn verify_cosignature(
    cp: &Checkpoint,
    sig: &NoteSignature,
    verifier: &CosignatureVerifier,
) -> Result<u64, CosignatureError> {
    if sig.name() != verifier.name || sig.key_hash() != verifier.key_hash {
        return Err(CosignatureError::OtherKey {
            name: verifier.name.clone(),
        });
    }
    let (time, signature) = sig
        .signature()
        .split_first_chunk::<8>()
        .filter(|(_, signature)| signature.len() == 64)
        .ok_or(CosignatureError::Malformed(
            "not an 8-byte timestamp and a 64-byte signature",
        ))?;
    let time = u64::from_be_bytes(*time);
    if time > MAX_TIMESTAMP {
        return Err(CosignatureError::Malformed("timestamp above 2^63 - 1"));
    }
    verifier
        .public_key
        .verify_note_text(&signed_message(cp, time), signature)
        .map_err(|_| CosignatureError::BadSignature {
            name: verifier.name.clone(),
        })?;
    Ok(time)
}

/// A cosigner whose cosignature verified, with the newest time it cosigned at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub cosigner: String,
    pub time: u64,
}

/// The trusted cosigners among a checkpoint note's signatures, by the note rules: lines that
/// match no trusted (name, key hash) are ignored (the log's own signature among them); a
/// matching line that does not verify fails the whole check; two trusted keys with the same
/// name and key hash are an error. Each cosigner is listed once, in order of first appearance.
/// How many are enough is the caller's policy.
pub fn verify_cosignatures(
    cp: &Checkpoint,
    signatures: &[NoteSignature],
    verifiers: &[CosignatureVerifier],
) -> Result<Vec<Cosigned>, CosignatureError> {
    let mut cosigned: Vec<Cosigned> = Vec::new();
    for sig in signatures {
        let mut matching = verifiers
            .iter()
            .filter(|v| v.name == sig.name() && v.key_hash == sig.key_hash());
        let Some(verifier) = matching.next() else {
            continue;
        };
        if matching.next().is_some() {
            return Err(NoteError::AmbiguousKey {
                name: verifier.name.clone(),
                key_hash: hex::encode(verifier.key_hash),
            }
            .into());
        }
        let time = verify_cosignature(cp, sig, verifier)?;
        match cosigned.iter_mut().find(|c| c.cosigner == verifier.name) {
            Some(seen) => seen.time = seen.time.max(time),
            None => cosigned.push(Cosigned {
                cosigner: verifier.name.clone(),
                time,
            }),
        }
    }
    Ok(cosigned)
}

/// `cosignature/v1\ntime <time>\n` ‖ checkpoint body.
fn signed_message(cp: &Checkpoint, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{}", cp.body()).into_bytes()
}
