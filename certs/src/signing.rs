//! Ed25519 keys, key ids and domain-separated signatures.
//!
//! Every signature covers `b"xroad-rs/v1/" + domain name + b"\0" + message`, so a
//! signature made for one purpose (say, a request header) never verifies for another
//! (say, the global configuration).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use sha2::{Digest as _, Sha256};

use crate::pkcs11::ModuleKey;
use crate::{Error, Zeroizing};

const SIGNATURE_PREFIX: &[u8] = b"xroad-rs/v1/";

/// What a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    GlobalConfiguration,
    EnrollmentRequest,
    /// A security server's request for a renewed TLS certificate.
    RenewalRequest,
    /// A security server's request to list a new member signing key.
    KeyRequest,
    /// The registry's announcement of its next configuration-signing keys.
    SigningKeySet,
    RequestHeader,
    ResponseHeader,
    Checkpoint,
    /// A purpose outside this list. The name must not contain NUL (it ends the name in the
    /// signed bytes) and must not repeat one of the names above.
    Other(&'static str),
}

impl Domain {
    /// The name that goes into the signed bytes.
    pub fn name(self) -> &'static str {
        match self {
            Domain::GlobalConfiguration => "global-configuration",
            Domain::EnrollmentRequest => "enrollment-request",
            Domain::RenewalRequest => "renewal-request",
            Domain::KeyRequest => "key-request",
            Domain::SigningKeySet => "signing-key-set",
            Domain::RequestHeader => "request-header",
            Domain::ResponseHeader => "response-header",
            Domain::Checkpoint => "checkpoint",
            Domain::Other(name) => name,
        }
    }

    /// The bytes actually signed; `None` for a name that would make the
    /// separation ambiguous.
    fn signed_bytes(self, message: &[u8]) -> Option<Vec<u8>> {
        let name = self.name().as_bytes();
        if name.contains(&0) {
            return None;
        }
        let mut bytes = Vec::with_capacity(SIGNATURE_PREFIX.len() + name.len() + 1 + message.len());
        bytes.extend_from_slice(SIGNATURE_PREFIX);
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(message);
        Some(bytes)
    }
}

/// An Ed25519 secret key: in memory (wiped on drop), or inside a hardware security module
/// ([`crate::pkcs11`]), where it signs and never leaves. `Debug` shows only the key id (and the
/// module key's label).
#[derive(Clone)]
pub struct SigningKey(Repr);

// As large as the soft key alone was; boxing the common case to shrink the rare one buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Repr {
    Soft(ed25519_dalek::SigningKey),
    Module(Arc<ModuleKey>),
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::soft(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from a fixed seed, for tests and fixtures.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::soft(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn soft(key: ed25519_dalek::SigningKey) -> Self {
        SigningKey(Repr::Soft(key))
    }

    pub(crate) fn module(key: ModuleKey) -> Self {
        SigningKey(Repr::Module(Arc::new(key)))
    }

    /// Whether the key is inside a hardware security module (it cannot be written to a file).
    pub fn in_module(&self) -> bool {
        matches!(self.0, Repr::Module(_))
    }

    pub fn public_key(&self) -> PublicKey {
        match &self.0 {
            Repr::Soft(key) => PublicKey::from_point(key.verifying_key()),
            Repr::Module(key) => key.public,
        }
    }

    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `message` for `domain`.
    ///
    /// A `Domain::Other` name containing NUL is a programming error (it would let one
    /// domain's signature pass as another's); release builds return an all-zero
    /// signature, which [`PublicKey::verify`] always rejects. So does a module that fails to
    /// sign; callers that can report such a failure use [`SigningKey::try_sign`].
    pub fn sign(&self, domain: Domain, message: &[u8]) -> [u8; 64] {
        self.try_sign(domain, message).unwrap_or([0; 64])
    }

    /// [`SigningKey::sign`], saying why a key in a module could not sign.
    pub fn try_sign(&self, domain: Domain, message: &[u8]) -> Result<[u8; 64], Error> {
        debug_assert!(
            !domain.name().contains('\0'),
            "signature domain name contains NUL"
        );
        match domain.signed_bytes(message) {
            Some(bytes) => self.sign_raw(&bytes),
            None => Ok([0; 64]),
        }
    }

    /// Signs `text` with plain Ed25519: no `xroad-rs/v1/` prefix, no domain.
    ///
    /// Only for C2SP signed notes (checkpoints and their cosignatures), whose format is its
    /// own domain separation: a note's text can never be one of our prefixed messages, which
    /// start with `xroad-rs/v1/` (the `tlog` crate refuses such note texts). Everything else
    /// signs with [`SigningKey::sign`].
    pub fn sign_note_text(&self, text: &[u8]) -> [u8; 64] {
        self.sign_raw(text).unwrap_or([0; 64])
    }

    /// Plain Ed25519 over `bytes`: for the domain-separated methods above and for TLS
    /// handshakes (whose transcript is its own domain).
    pub(crate) fn sign_raw(&self, bytes: &[u8]) -> Result<[u8; 64], Error> {
        match &self.0 {
            Repr::Soft(key) => Ok(key.sign(bytes).to_bytes()),
            Repr::Module(key) => key.sign(bytes),
        }
    }

    fn soft_key(&self) -> Result<&ed25519_dalek::SigningKey, Error> {
        match &self.0 {
            Repr::Soft(key) => Ok(key),
            Repr::Module(key) => Err(Error::KeyFormat(format!(
                "key {} is inside a hardware security module ({}) and cannot be exported",
                self.key_id(),
                key.describe()
            ))),
        }
    }

    /// PKCS#8 v1 PEM, the seed alone (RFC 8410): the form OpenSSL writes and reads, so key
    /// files work with `openssl` and `curl --key`. [`SigningKey::from_pkcs8_pem`] reads it and
    /// the v2 form (with the public key) that earlier versions wrote. An error for a key inside
    /// a module.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.soft_key()?.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::KeyFormat(format!("encoding PKCS#8: {e}")))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self::soft)
            .map_err(|e| Error::KeyFormat(format!("Ed25519 PKCS#8 PEM: {e}")))
    }

    /// PKCS#8 DER, the form rustls and rcgen load keys from. An error for a key inside a module.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.soft_key()?
            .to_pkcs8_der()
            .map(|doc| doc.to_bytes())
            .map_err(|e| Error::KeyFormat(format!("encoding PKCS#8: {e}")))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SigningKey");
        d.field("key_id", &self.key_id().as_str());
        if let Repr::Module(key) = &self.0 {
            d.field("module", &key.describe());
        }
        d.finish_non_exhaustive()
    }
}

/// An Ed25519 public key: 32 bytes, checked to be a usable curve point. The decoded point is
/// kept beside the bytes, so verifying does not decompress the key again each time.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey {
    bytes: [u8; 32],
    point: ed25519_dalek::VerifyingKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl PublicKey {
    fn from_point(point: ed25519_dalek::VerifyingKey) -> Self {
        PublicKey {
            bytes: point.to_bytes(),
            point,
        }
    }

    /// Accepts exactly 32 bytes that decode to a curve point of large order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::KeyFormat(format!(
                "Ed25519 public key must be 32 bytes, got {}",
                bytes.len()
            ))
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::KeyFormat("not an Ed25519 curve point".into()))?;
        // verify_strict rejects every signature under a small-order key anyway;
        // refusing it here reports the real problem at configuration time.
        if key.is_weak() {
            return Err(Error::KeyFormat("weak (small-order) Ed25519 key".into()));
        }
        Ok(PublicKey { bytes, point: key })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::digest(self.bytes);
        KeyId(hex::encode(&digest[..16]))
    }

    /// Verifies a signature made by [`SigningKey::sign`] for the same domain and message.
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::Signature)?;
        let bytes = domain.signed_bytes(message).ok_or(Error::Signature)?;
        self.point
            .verify_strict(&bytes, &signature)
            .map_err(|_| Error::Signature)
    }

    /// Verifies a plain Ed25519 signature made by [`SigningKey::sign_note_text`] (strict
    /// RFC 8032 verification, no domain prefix).
    ///
    /// Only for C2SP signed notes, whose format is its own domain separation (a note's text
    /// can never be one of our prefixed messages, which start with `xroad-rs/v1/`).
    pub fn verify_note_text(&self, text: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::Signature)?;
        self.point
            .verify_strict(text, &signature)
            .map_err(|_| Error::Signature)
    }

    /// SubjectPublicKeyInfo DER, as it goes into a certificate.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
        der.extend_from_slice(&ED25519_SPKI_PREFIX);
        der.extend_from_slice(&self.bytes);
        der
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes)
    }

    pub fn from_base64(s: &str) -> Result<Self, Error> {
        let bytes = BASE64
            .decode(s)
            .map_err(|e| Error::KeyFormat(format!("public key base64: {e}")))?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::from_base64(&s)
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_base64()
    }
}

/// Hex of the first 16 bytes of SHA-256(raw public key): 32 lowercase hex characters.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Accepts exactly 32 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let well_formed = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(Error::KeyFormat(
                "key id must be 32 lowercase hex characters".into(),
            ));
        }
        Ok(KeyId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests;
