//! C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): a log's signed tree head as a note.
//!
//! ```text
//! JP/MUN/131016/ss1                                  origin
//! 1234                                               tree size, decimal
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=       root hash, base64
//! <extension lines, optional, non-empty>
//! ```
//!
//! The origin is the security server's identifier as-is (`INSTANCE/CLASS/MEMBER/SERVER`); the
//! spec only recommends, and does not require, a schema-less URL without '+', and X-Road
//! identifiers may contain '+'. The log's key name SHOULD match the origin but key names may
//! not contain '+' or spaces, so [`log_key_name`] derives one that does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::merkle::Hash;
use crate::note::{self, Note, NoteError, NoteSigner, NoteVerifier};

/// Why a checkpoint was refused, grouped by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The body does not follow the checkpoint format (or a field cannot go into one).
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),

    /// The note around it is malformed, or not validly signed by the log's key.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A log's tree head: origin, size and root, plus opaque extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint for `origin` (non-empty, one line, no control characters).
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        validate_line(
            &origin,
            "empty origin",
            "origin holds a newline or control character",
        )?;
        // The body is a note text, which may not start like our domain-separated messages.
        Note::new(format!("{origin}\n")).map_err(|_| {
            CheckpointError::Malformed("origin starts with the xroad-rs signature prefix")
        })?;
        Ok(Checkpoint {
            origin,
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The same checkpoint with extension lines (each non-empty, one line, no control
    /// characters). The spec does not recommend them: monitors cannot audit them.
    pub fn with_extensions(mut self, extensions: Vec<String>) -> Result<Self, CheckpointError> {
        for line in &extensions {
            validate_line(
                line,
                "empty extension line",
                "extension line holds a newline or control character",
            )?;
        }
        self.extensions = extensions;
        Ok(self)
    }

    /// The log's identity: our security server id, as-is.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of leaves (log records).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size, base64 root, extension lines, each ending in a newline.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a body strictly: at least three non-empty lines, each ending in a newline; the
    /// size in decimal without leading zeros; the root as canonical base64 of 32 bytes. What
    /// parses renders back to the same bytes with [`Checkpoint::body`].
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let lines = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("body does not end in a newline"))?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed("fewer than three lines"));
        };
        let size = parse_size(size)?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|raw| Hash::try_from(raw).ok())
            .ok_or(CheckpointError::Malformed(
                "root hash is not canonical base64 of 32 bytes",
            ))?;
        Checkpoint::new(origin, size, root)?.with_extensions(lines.map(str::to_owned).collect())
    }
}

/// Signs the checkpoint as a note with the log's key.
pub fn sign_checkpoint(cp: &Checkpoint, signer: &NoteSigner) -> Note {
    // Checkpoint's invariants make its body a valid note text.
    let body = cp.body();
    let signature = signer.sign(&Note::from_valid_parts(body.clone(), Vec::new()));
    Note::from_valid_parts(body, vec![signature])
}

/// Parses a checkpoint note and requires a valid signature by the log's key; other signatures
/// (witness cosignatures) are ignored here. The body is only looked at after the signature
/// verified.
///
/// The caller checks that [`Checkpoint::origin`] is the log it expected: the verifier vouches
/// for the signature, not for which log the origin line names.
pub fn open_checkpoint(
    note_text: &str,
    log_verifier: &NoteVerifier,
) -> Result<(Checkpoint, Note), CheckpointError> {
    let note = note::parse(note_text)?;
    note.verify(std::slice::from_ref(log_verifier))?;
    let cp = Checkpoint::parse_body(note.text())?;
    Ok((cp, note))
}

/// A note key name for a log with this origin: the origin with each character a key name may
/// not hold (Unicode spaces, '+', control characters) and '%' percent-encoded, so different
/// origins always get different names. An X-Road server id without '+' is its own key name.
pub fn log_key_name(origin: &str) -> String {
    let mut name = String::with_capacity(origin.len());
    for c in origin.chars() {
        if c.is_whitespace() || c.is_control() || c == '+' || c == '%' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                name.push_str(&format!("%{b:02X}"));
            }
        } else {
            name.push(c);
        }
    }
    name
}

fn validate_line(
    line: &str,
    empty: &'static str,
    control: &'static str,
) -> Result<(), CheckpointError> {
    if line.is_empty() {
        return Err(CheckpointError::Malformed(empty));
    }
    if line.chars().any(|c| c < ' ') {
        return Err(CheckpointError::Malformed(control));
    }
    Ok(())
}

/// ASCII decimal, no sign, no leading zeros (except "0" itself).
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::Malformed(
            "tree size is not a decimal without leading zeros",
        ));
    }
    s.parse()
        .map_err(|_| CheckpointError::Malformed("tree size does not fit in 64 bits"))
}
