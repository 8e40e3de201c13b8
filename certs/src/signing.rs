//! Ed25519 keys, key ids and domain-separated signatures.
//!
//! Every signature covers `b"xroad-rs/v1/" + domain name + b"\0" + message`, so a
//! signature made for one purpose (say, a request header) never verifies for another
//! (say, the global configuration).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use sha2::{Digest as _, Sha256};

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

/// An Ed25519 secret key. The inner key is wiped on drop; `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from a fixed seed, for tests and fixtures.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn public_key(&self) -> PublicKey {
        let point = self.0.verifying_key();
        PublicKey {
            bytes: point.to_bytes(),
            point,
        }
    }

    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `message` for `domain`.
    ///
    /// A `Domain::Other` name containing NUL is a programming error (it would let one
    /// domain's signature pass as another's); release builds return an all-zero
    /// signature, which [`PublicKey::verify`] always rejects.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> [u8; 64] {
        debug_assert!(
            !domain.name().contains('\0'),
            "signature domain name contains NUL"
        );
        match domain.signed_bytes(message) {
            Some(bytes) => self.0.sign(&bytes).to_bytes(),
            None => [0; 64],
        }
    }

    /// Signs `text` with plain Ed25519: no `xroad-rs/v1/` prefix, no domain.
    ///
    /// Only for C2SP signed notes (checkpoints and their cosignatures), whose format is its
    /// own domain separation: a note's text can never be one of our prefixed messages, which
    /// start with `xroad-rs/v1/` (the `tlog` crate refuses such note texts). Everything else
    /// signs with [`SigningKey::sign`].
    pub fn sign_note_text(&self, text: &[u8]) -> [u8; 64] {
        self.0.sign(text).to_bytes()
    }

    /// PKCS#8 v1 PEM, the seed alone (RFC 8410): the form OpenSSL writes and reads, so key
    /// files work with `openssl` and `curl --key`. [`SigningKey::from_pkcs8_pem`] reads it and
    /// the v2 form (with the public key) that earlier versions wrote.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::KeyFormat(format!("encoding PKCS#8: {e}")))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey)
            .map_err(|e| Error::KeyFormat(format!("Ed25519 PKCS#8 PEM: {e}")))
    }

    /// PKCS#8 DER, the form rustls and rcgen load keys from.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.0
            .to_pkcs8_der()
            .map(|doc| doc.to_bytes())
            .map_err(|e| Error::KeyFormat(format!("encoding PKCS#8: {e}")))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id().as_str())
            .finish_non_exhaustive()
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
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed([n; 32])
    }

    #[test]
    fn key_files_are_pkcs8_v1_as_openssl_writes_and_earlier_v2_files_still_load() {
        let k = key(7);
        let pem = k.to_pkcs8_pem().unwrap();
        // RFC 8410's v1 form: version 0, the Ed25519 OID, the seed; no public key.
        let der_prefix = "MC4CAQAwBQYDK2VwBCIEI";
        assert!(
            pem.lines().nth(1).unwrap().starts_with(der_prefix),
            "{}",
            *pem
        );
        assert_eq!(
            SigningKey::from_pkcs8_pem(&pem).unwrap().key_id(),
            k.key_id()
        );
        let v2 = k.0.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(!v2.contains(der_prefix));
        assert_eq!(
            SigningKey::from_pkcs8_pem(&v2).unwrap().key_id(),
            k.key_id()
        );
    }

    #[test]
    fn signature_verifies_for_same_domain_and_message() {
        let k = key(1);
        let sig = k.sign(Domain::RequestHeader, b"hello");
        k.public_key()
            .verify(Domain::RequestHeader, b"hello", &sig)
            .unwrap();
    }

    #[test]
    fn signature_fails_for_other_domain() {
        let k = key(1);
        let sig = k.sign(Domain::RequestHeader, b"hello");
        for other in [
            Domain::ResponseHeader,
            Domain::GlobalConfiguration,
            Domain::EnrollmentRequest,
            Domain::RenewalRequest,
            Domain::KeyRequest,
            Domain::SigningKeySet,
            Domain::Checkpoint,
            Domain::Other("request-header-x"),
        ] {
            assert!(matches!(
                k.public_key().verify(other, b"hello", &sig),
                Err(Error::Signature)
            ));
        }
    }

    #[test]
    fn signature_fails_for_flipped_message_byte() {
        let k = key(1);
        let msg = b"the quick brown fox".to_vec();
        let sig = k.sign(Domain::Checkpoint, &msg);
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 0x01;
            assert!(
                k.public_key()
                    .verify(Domain::Checkpoint, &bad, &sig)
                    .is_err()
            );
        }
    }

    #[test]
    fn signature_fails_for_flipped_signature_byte() {
        let k = key(1);
        let sig = k.sign(Domain::Checkpoint, b"m");
        for i in 0..sig.len() {
            let mut bad = sig;
            bad[i] ^= 0x01;
            assert!(
                k.public_key()
                    .verify(Domain::Checkpoint, b"m", &bad)
                    .is_err()
            );
        }
    }

    #[test]
    fn signature_fails_for_wrong_key() {
        let sig = key(1).sign(Domain::GlobalConfiguration, b"conf");
        assert!(matches!(
            key(2)
                .public_key()
                .verify(Domain::GlobalConfiguration, b"conf", &sig),
            Err(Error::Signature)
        ));
    }

    #[test]
    fn signature_of_wrong_length_is_rejected() {
        let k = key(1);
        let sig = k.sign(Domain::Checkpoint, b"m");
        assert!(matches!(
            k.public_key().verify(Domain::Checkpoint, b"m", &sig[..63]),
            Err(Error::Signature)
        ));
        let mut long = sig.to_vec();
        long.push(0);
        assert!(matches!(
            k.public_key().verify(Domain::Checkpoint, b"m", &long),
            Err(Error::Signature)
        ));
    }

    #[test]
    fn signed_bytes_follow_the_documented_layout() {
        let k = key(3);
        let sig = k.sign(Domain::EnrollmentRequest, b"abc");
        let raw = ed25519_dalek::VerifyingKey::from_bytes(k.public_key().as_bytes()).unwrap();
        raw.verify_strict(
            b"xroad-rs/v1/enrollment-request\0abc",
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .unwrap();
    }

    #[test]
    fn other_domain_with_nul_never_verifies() {
        let k = key(1);
        // Made without the helper (sign debug-asserts) to show verify refuses on its own.
        let forged = k.0.sign(b"xroad-rs/v1/a\0b\0m").to_bytes();
        assert!(
            k.public_key()
                .verify(Domain::Other("a\0b"), b"m", &forged)
                .is_err()
        );
    }

    #[test]
    fn note_text_signature_is_plain_ed25519() {
        let k = key(4);
        let sig = k.sign_note_text(b"example.com/log\n1\n");
        let raw = ed25519_dalek::VerifyingKey::from_bytes(k.public_key().as_bytes()).unwrap();
        raw.verify_strict(
            b"example.com/log\n1\n",
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .unwrap();
        k.public_key()
            .verify_note_text(b"example.com/log\n1\n", &sig)
            .unwrap();
    }

    #[test]
    fn note_text_signature_rejects_changes() {
        let k = key(4);
        let text = b"origin\n5\n".to_vec();
        let sig = k.sign_note_text(&text);
        for i in 0..text.len() {
            let mut bad = text.clone();
            bad[i] ^= 0x01;
            assert!(k.public_key().verify_note_text(&bad, &sig).is_err());
        }
        for i in 0..sig.len() {
            let mut bad = sig;
            bad[i] ^= 0x01;
            assert!(k.public_key().verify_note_text(&text, &bad).is_err());
        }
        assert!(key(5).public_key().verify_note_text(&text, &sig).is_err());
        assert!(k.public_key().verify_note_text(&text, &sig[..63]).is_err());
    }

    #[test]
    fn note_and_domain_signatures_do_not_cross_verify() {
        let k = key(4);
        let pk = k.public_key();
        for domain in [
            Domain::Checkpoint,
            Domain::RequestHeader,
            Domain::Other("note"),
        ] {
            // A note signature over a message does not pass as a domain signature over it,
            // and vice versa.
            let note_sig = k.sign_note_text(b"m");
            assert!(pk.verify(domain, b"m", &note_sig).is_err());
            let domain_sig = k.sign(domain, b"m");
            assert!(pk.verify_note_text(b"m", &domain_sig).is_err());
            // Over the prefixed bytes the two are the same signature, which is why a note's
            // text must never start with `xroad-rs/v1/` (the tlog crate refuses such notes).
            let prefixed = domain.signed_bytes(b"m").unwrap();
            assert_eq!(k.sign_note_text(&prefixed), domain_sig);
        }
    }

    #[test]
    fn pkcs8_pem_round_trip() {
        let k = SigningKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let sig = back.sign(Domain::Checkpoint, b"x");
        k.public_key()
            .verify(Domain::Checkpoint, b"x", &sig)
            .unwrap();
    }

    #[test]
    fn from_pkcs8_pem_rejects_garbage() {
        assert!(matches!(
            SigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(Error::KeyFormat(_))
        ));
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn debug_shows_key_id_not_secret() {
        let k = key(7);
        let debug = format!("{k:?}");
        assert!(debug.contains(k.key_id().as_str()));
        let secret_hex = hex::encode([7u8; 32]);
        assert!(!debug.contains(&secret_hex[..16]));
        assert!(!debug.contains("[7, 7"));
        assert_eq!(
            format!("{:?}", k.public_key()),
            format!("PublicKey({})", k.key_id())
        );
    }

    #[test]
    fn key_id_is_first_16_bytes_of_sha256_in_hex() {
        let pk = key(1).public_key();
        let id = pk.key_id();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(
            id.as_str(),
            hex::encode(&Sha256::digest(pk.as_bytes())[..16])
        );
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn key_id_parse_is_strict() {
        assert!(KeyId::parse("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates_key_ids_and_public_keys() {
        let pk = key(1).public_key();
        let json = serde_json::to_string(&pk.key_id()).unwrap();
        assert_eq!(json, format!("\"{}\"", pk.key_id()));
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), pk.key_id());
        assert!(serde_json::from_str::<KeyId>("\"0123456789ABCDEF0123456789abcdef\"").is_err());

        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"{}\"", pk.to_base64()));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        assert!(serde_json::from_str::<PublicKey>("\"AAAA\"").is_err());
    }

    #[test]
    fn public_key_bytes_and_base64() {
        let pk = key(1).public_key();
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        assert_eq!(PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
        assert!(PublicKey::from_bytes(&[1u8; 31]).is_err());
        assert!(PublicKey::from_bytes(&[1u8; 33]).is_err());
        assert!(PublicKey::from_base64("not base64!").is_err());
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
    }

    #[test]
    fn spki_der_matches_dalek_encoding() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        let k = key(9);
        let expected = k.0.verifying_key().to_public_key_der().unwrap();
        assert_eq!(k.public_key().to_spki_der(), expected.as_bytes());
    }
}
