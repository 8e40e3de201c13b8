//! C2SP signed notes (c2sp.org/signed-note): text signed by one or more keys, with Ed25519
//! note keys (signature type 0x01) and their verifier-key ("vkey") text encoding.
//!
//! ```text
//! <text, one or more lines, each ending in a newline>
//! <blank line>
//! — <key name> <base64(4-byte key hash ‖ signature)>
//! — ...
//! ```
//!
//! Parsing is strict: the whole note is valid UTF-8 without control characters other than
//! newline, the text is everything before the last blank line, every following line is a
//! well-formed signature line (canonical base64), and a note has at most
//! [`MAX_SIGNATURES`] of them. A note's text is only to be used after [`Note::verify`].

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certs::{PublicKey, SigningKey};
use sha2::{Digest as _, Sha256};

/// The most signature lines a note may carry. The spec asks verifiers to accept at least 16;
/// a checkpoint carries the log's signature and a few witness cosignatures.
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte of a plain Ed25519 note signature (signed-note).
pub(crate) const TYPE_ED25519: u8 = 0x01;

/// Every domain-separated signature made with `certs::SigningKey::sign` covers bytes that
/// start with this prefix. A note text starting with it is refused, so that a note signature
/// (plain Ed25519 over the text) can never double as one of those.
const XROAD_SIGNATURE_PREFIX: &str = "xroad-rs/v1/";

/// Why a note, a key name or a verifier key was refused, grouped by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note (or a signature line) does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),

    /// A key name is empty or contains a Unicode space, a plus sign or a control character.
    #[error("invalid key name {0:?}: must be non-empty, without spaces, '+' or control characters")]
    InvalidKeyName(String),

    /// A verifier key string is malformed, of another signature type, holds an unusable
    /// public key, or its key hash does not match its name and key.
    #[error("invalid verifier key: {0}")]
    InvalidVerifierKey(String),

    /// Two trusted keys share a name and key hash, so the signature cannot be attributed.
    #[error("ambiguous key {name}+{key_hash}: two trusted keys share this name and key hash")]
    AmbiguousKey { name: String, key_hash: String },

    /// A signature by a trusted key does not verify: the whole note is rejected.
    #[error("invalid signature by trusted key {name}+{key_hash}")]
    BadSignature { name: String, key_hash: String },

    /// No signature by a trusted key: the note is rejected.
    #[error("the note carries no signature by a trusted key")]
    NoTrustedSignature,
}

/// One signature line: the key's name, its 4-byte key hash and the signature bytes (whose
/// format depends on the key's signature type).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    name: String,
    key_hash: [u8; 4],
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature line from its parts; the name must be a valid key name and the signature
    /// non-empty.
    pub fn new(
        name: impl Into<String>,
        key_hash: [u8; 4],
        signature: Vec<u8>,
    ) -> Result<Self, NoteError> {
        let name = name.into();
        validate_key_name(&name)?;
        if signature.is_empty() {
            return Err(NoteError::Malformed("empty signature"));
        }
        Ok(NoteSignature {
            name,
            key_hash,
            signature,
        })
    }

    /// Parses one signature line, `— <name> <base64>`, without its final newline.
    pub fn from_line(line: &str) -> Result<Self, NoteError> {
        if line.chars().any(is_forbidden_control) || line.contains('\n') {
            return Err(NoteError::Malformed(
                "control character in a signature line",
            ));
        }
        let rest = line.strip_prefix("— ").ok_or(NoteError::Malformed(
            "signature line does not start with an em dash and a space",
        ))?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "signature line has no space between key name and signature",
        ))?;
        validate_key_name(name)?;
        let raw = BASE64
            .decode(encoded)
            .map_err(|_| NoteError::Malformed("signature is not canonical base64"))?;
        let (key_hash, signature) = raw
            .split_first_chunk::<4>()
            .filter(|(_, sig)| !sig.is_empty())
            .ok_or(NoteError::Malformed(
                "signature shorter than a key hash and one byte",
            ))?;
        Ok(NoteSignature {
            name: name.to_owned(),
            key_hash: *key_hash,
            signature: signature.to_vec(),
        })
    }

    /// The signature line, `— <name> <base64>`, without a final newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_hash);
        raw.extend_from_slice(&self.signature);
        format!("— {} {}", self.name, BASE64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The signature bytes after the key hash.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// Parses a block of signature lines, each ending in a newline (as a witness answers with
/// cosignatures). At least one line, at most [`MAX_SIGNATURES`].
pub fn parse_signature_lines(block: &str) -> Result<Vec<NoteSignature>, NoteError> {
    let body = block.strip_suffix('\n').ok_or(NoteError::Malformed(
        "signature lines do not end in a newline",
    ))?;
    let mut signatures = Vec::new();
    for line in body.split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        signatures.push(NoteSignature::from_line(line)?);
    }
    Ok(signatures)
}

/// A signed note: its text (ending in a newline) and its signature lines.
///
/// Holding a `Note` says nothing about its signatures; [`Note::verify`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// Parses a signed note strictly (see the module documentation).
pub fn parse(s: &str) -> Result<Note, NoteError> {
    if s.chars().any(is_forbidden_control) {
        return Err(NoteError::Malformed("control character other than newline"));
    }
    // Signature lines are never empty, so the last blank line separates text and signatures.
    let split = s.rfind("\n\n").ok_or(NoteError::Malformed(
        "no blank line between text and signatures",
    ))?;
    let (text, signature_lines) = (&s[..=split], &s[split + 2..]);
    validate_text(text)?;
    if signature_lines.is_empty() {
        return Err(NoteError::Malformed("no signature lines"));
    }
    Ok(Note {
        text: text.to_owned(),
        signatures: parse_signature_lines(signature_lines)?,
    })
}

impl Note {
    /// An unsigned note with `text`, which must end in a newline, contain no control character
    /// other than newline, and not start with `xroad-rs/v1/` (our domain-separated signatures'
    /// prefix).
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        validate_text(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// A note from parts already known valid (a checkpoint body and fresh signatures).
    pub(crate) fn from_valid_parts(text: String, signatures: Vec<NoteSignature>) -> Self {
        debug_assert!(validate_text(&text).is_ok(), "invalid note text");
        Note { text, signatures }
    }

    /// The text, including its final newline. Use it only after [`Note::verify`].
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line (for instance a witness cosignature).
    pub fn push_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// The note in its text form: text, blank line, one line per signature. A note without
    /// signatures renders as its text and a blank line, which does not parse back.
    pub fn render(&self) -> String {
        self.to_string()
    }

    /// Checks the signatures against the trusted `verifiers`, as the spec says: signatures
    /// whose (name, key hash) match no trusted key are ignored; every signature that matches
    /// must verify, or the whole note is rejected; at least one must match.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<VerifiedSigners, NoteError> {
        let mut signers: Vec<(String, [u8; 4])> = Vec::new();
        for sig in &self.signatures {
            let mut matching = verifiers
                .iter()
                .filter(|v| v.name == sig.name && v.key_hash == sig.key_hash);
            let Some(verifier) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return Err(NoteError::AmbiguousKey {
                    name: sig.name.clone(),
                    key_hash: hex::encode(sig.key_hash),
                });
            }
            if verifier
                .public_key
                .verify_note_text(self.text.as_bytes(), &sig.signature)
                .is_err()
            {
                return Err(NoteError::BadSignature {
                    name: sig.name.clone(),
                    key_hash: hex::encode(sig.key_hash),
                });
            }
            let key = (verifier.name.clone(), verifier.key_hash);
            if !signers.contains(&key) {
                signers.push(key);
            }
        }
        if signers.is_empty() {
            return Err(NoteError::NoTrustedSignature);
        }
        Ok(VerifiedSigners { signers })
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            writeln!(f, "{}", sig.to_line())?;
        }
        Ok(())
    }
}

impl FromStr for Note {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        parse(s)
    }
}

/// The trusted keys whose signatures on a note verified; only [`Note::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSigners {
    signers: Vec<(String, [u8; 4])>,
}

impl VerifiedSigners {
    /// The names of the keys that signed, in signature order, each once.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.signers.iter().map(|(name, _)| name.as_str())
    }

    /// Whether `verifier`'s key is among the signers.
    pub fn contains(&self, verifier: &NoteVerifier) -> bool {
        self.signers
            .iter()
            .any(|(name, hash)| *name == verifier.name && *hash == verifier.key_hash)
    }
}

/// A trusted Ed25519 note key: name, key hash (`SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]`) and
/// public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_hash: [u8; 4],
    public_key: PublicKey,
}

impl NoteVerifier {
    pub fn new(name: impl Into<String>, public_key: PublicKey) -> Result<Self, NoteError> {
        let name = name.into();
        validate_key_name(&name)?;
        let key_hash = key_hash(&name, TYPE_ED25519, &public_key);
        Ok(NoteVerifier {
            name,
            key_hash,
            public_key,
        })
    }

    /// Parses a verifier key, `<name>+<8 hex digits of key hash>+<base64(0x01 ‖ key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, key_hash, public_key) = decode_vkey(vkey, TYPE_ED25519)?;
        Ok(NoteVerifier {
            name,
            key_hash,
            public_key,
        })
    }

    /// The verifier key text, for configuration files and CLIs.
    pub fn to_vkey(&self) -> String {
        encode_vkey(&self.name, TYPE_ED25519, &self.public_key)
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

/// An Ed25519 note signing key under a key name.
#[derive(Debug, Clone)]
pub struct NoteSigner {
    name: String,
    key_hash: [u8; 4],
    key: SigningKey,
}

impl NoteSigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self, NoteError> {
        let name = name.into();
        validate_key_name(&name)?;
        let key_hash = key_hash(&name, TYPE_ED25519, &key.public_key());
        Ok(NoteSigner {
            name,
            key_hash,
            key,
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_hash: self.key_hash,
            public_key: self.key.public_key(),
        }
    }

    /// A signature over exactly the note's text bytes (plain Ed25519, as the spec says; the
    /// note format is its own domain separation).
    pub fn sign(&self, note: &Note) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_hash: self.key_hash,
            signature: self.key.sign_note_text(note.text.as_bytes()).to_vec(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }
}

/// SHA-256(name ‖ 0x0A ‖ signature type ‖ public key)[:4].
pub(crate) fn key_hash(name: &str, signature_type: u8, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, signature_type]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Key names: non-empty, no Unicode space, no '+', no control character.
pub(crate) fn validate_key_name(name: &str) -> Result<(), NoteError> {
    let valid = !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName(name.to_owned()))
    }
}

/// `<name>+<hex key hash>+<base64(type ‖ key)>`.
pub(crate) fn encode_vkey(name: &str, signature_type: u8, key: &PublicKey) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(signature_type);
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, signature_type, key)),
        BASE64.encode(raw)
    )
}

pub(crate) fn decode_vkey(
    vkey: &str,
    signature_type: u8,
) -> Result<(String, [u8; 4], PublicKey), NoteError> {
    let bad = |why: &str| NoteError::InvalidVerifierKey(why.to_owned());
    let mut parts = vkey.split('+');
    let (Some(name), Some(hash), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected <name>+<key hash>+<key>"));
    };
    validate_key_name(name)?;
    let hash = parse_hex4(hash).ok_or_else(|| bad("key hash must be 8 lowercase hex digits"))?;
    let raw = BASE64
        .decode(key)
        .map_err(|_| bad("key is not canonical base64"))?;
    let (&found_type, key_bytes) = raw.split_first().ok_or_else(|| bad("empty key"))?;
    if found_type != signature_type {
        return Err(NoteError::InvalidVerifierKey(format!(
            "signature type {found_type:#04x}, expected {signature_type:#04x}"
        )));
    }
    let public_key = PublicKey::from_bytes(key_bytes)
        .map_err(|e| NoteError::InvalidVerifierKey(e.to_string()))?;
    if key_hash(name, signature_type, &public_key) != hash {
        return Err(bad("key hash does not match the name and key"));
    }
    Ok((name.to_owned(), hash, public_key))
}

/// The text of a note: ends in a newline, no control characters but newline, not one of our
/// domain-separated messages.
fn validate_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text does not end in a newline"));
    }
    if text.chars().any(is_forbidden_control) {
        return Err(NoteError::Malformed("control character other than newline"));
    }
    if text.starts_with(XROAD_SIGNATURE_PREFIX) {
        return Err(NoteError::Malformed(
            "text starts with the prefix of xroad-rs domain-separated signatures",
        ));
    }
    Ok(())
}

/// The spec forbids ASCII control characters other than newline anywhere in a note.
fn is_forbidden_control(c: char) -> bool {
    c < ' ' && c != '\n'
}

/// Exactly 8 lowercase hex digits (the `hex` crate alone would also take upper case).
fn parse_hex4(s: &str) -> Option<[u8; 4]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 4];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex::encode([0xc7, 0x4f, 0x20, 0xa3]), "c74f20a3");
        assert_eq!(parse_hex4("c74f20a3"), Some([0xc7, 0x4f, 0x20, 0xa3]));
        for bad in ["c74f20a", "c74f20a30", "C74F20A3", "c74f20ag", "+74f20a3"] {
            assert_eq!(parse_hex4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn key_names_follow_the_spec() {
        for good in ["a", "example.com/log", "JP/MUN/131016/ss1", "ünïcode"] {
            validate_key_name(good).unwrap();
        }
        for bad in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\nb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
        ] {
            assert!(validate_key_name(bad).is_err(), "{bad:?}");
        }
    }
}
