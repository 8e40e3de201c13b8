//! The outcome of verifying evidence: every check with what it was about, whether it passed and
//! why, plus what the bundle showed (checkpoint, witnesses, configurations, records). Printed for
//! people by `Display` (one line per check, ✓/✗, then a summary) and serialised for JSON.

use std::fmt;

use serde::Serialize;

/// What a check was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// The bundle as a whole.
    Bundle,
    /// The configuration at `position` in the bundle (its serial once it verified).
    Configuration {
        position: usize,
        serial: Option<u64>,
    },
    /// The checkpoint note.
    Checkpoint,
    /// The record at leaf `index`.
    Record { index: u64 },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Bundle => f.write_str("bundle"),
            Subject::Configuration {
                position,
                serial: Some(serial),
            } => write!(f, "configuration #{position} (serial {serial})"),
            Subject::Configuration { position, .. } => write!(f, "configuration #{position}"),
            Subject::Checkpoint => f.write_str("checkpoint"),
            Subject::Record { index } => write!(f, "record {index}"),
        }
    }
}

/// Which check (docs/evidence.md describes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The bundle carries records and configurations.
    Contents,
    /// The configuration is signed by a registry key of the anchor and valid.
    ConfigurationSignature,
    /// A configuration lists the log's security server.
    ServerListed,
    /// The checkpoint note is signed by a key of the server's owner member.
    CheckpointSignature,
    /// The checkpoint's origin is the bundle's server.
    CheckpointOrigin,
    /// Enough independent witnesses cosigned the checkpoint, and every cosignature by a known
    /// witness verifies.
    Cosignatures,
    /// The record (and its signed header) decode.
    RecordDecode,
    /// The record is a leaf of the checkpointed tree.
    InclusionProof,
    /// The signed header's signature verifies under the key the record names.
    HeaderSignature,
    /// That key belongs to the signer's member and was valid when the header was made.
    SignerKey,
    /// The record's own fields agree with its signed header.
    RecordMatchesHeader,
    /// The signed header's body hash is the record's.
    BodyHash,
    /// The included body hashes to the record's body hash.
    Body,
    /// The response's request hash is SHA-512 of its request's signed header.
    RequestHash,
    /// A failure record (the client's server's note that an exchange ended without an answer)
    /// is well formed: logged by the client's side, signing nothing, with no body.
    FailureNote,
}

impl CheckKind {
    pub fn label(self) -> &'static str {
        match self {
            CheckKind::Contents => "contents",
            CheckKind::ConfigurationSignature => "configuration signature",
            CheckKind::ServerListed => "server listed",
            CheckKind::CheckpointSignature => "checkpoint signature",
            CheckKind::CheckpointOrigin => "checkpoint origin",
            CheckKind::Cosignatures => "cosignatures",
            CheckKind::RecordDecode => "record decodes",
            CheckKind::InclusionProof => "inclusion proof",
            CheckKind::HeaderSignature => "header signature",
            CheckKind::SignerKey => "signer key",
            CheckKind::RecordMatchesHeader => "record matches header",
            CheckKind::BodyHash => "body hash",
            CheckKind::Body => "body",
            CheckKind::RequestHash => "request hash",
            CheckKind::FailureNote => "failure note",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub subject: Subject,
    pub kind: CheckKind,
    pub passed: bool,
    /// What was found (on success) or what is wrong (on failure).
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { '✓' } else { '✗' };
        write!(f, "{mark} {}: {}: {}", self.subject, self.kind, self.detail)
    }
}

/// The checkpoint the records were proved against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    pub size: u64,
    /// Standard base64, as in the note.
    pub root: String,
}

/// A witness whose cosignature verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessInfo {
    pub server_id: String,
    /// When it cosigned (Unix seconds, as the cosignature states).
    pub time: u64,
}

/// A configuration that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigurationInfo {
    /// The instance it is of (a cross-border exchange's bundle holds two).
    pub instance: String,
    pub serial: u64,
    pub generated_at: i64,
}

/// What a record says (filled in once it decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordInfo {
    pub index: u64,
    /// "request", "response" or "failure".
    pub kind: String,
    /// "client" or "server": which side logged it.
    pub side: String,
    pub message_id: String,
    pub client: String,
    pub service: String,
    pub peer: String,
    pub logged_at_ms: i64,
    /// The signed header's created-at (Unix seconds), once the header decoded.
    pub created_at: Option<i64>,
    /// The response status, for responses.
    pub status: Option<u32>,
    pub body_included: bool,
    /// For failures: the X-Road error the client got, and whether the request had been sent
    /// (the provider's server may then hold the exchange in its log, answered or not).
    pub error: Option<String>,
    pub sent: Option<bool>,
    /// The member whose key signed the header (its identifier names its instance), once the
    /// signature and the signer checked out.
    pub signer: Option<String>,
    /// The instance of that member.
    pub signer_instance: Option<String>,
}

/// Everything a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub server_id: String,
    pub exported_at: i64,
    pub checkpoint: Option<CheckpointInfo>,
    pub witnesses: Vec<WitnessInfo>,
    pub configurations: Vec<ConfigurationInfo>,
    pub records: Vec<RecordInfo>,
    pub checks: Vec<Check>,
}

impl Report {
    pub(crate) fn new(server_id: String, exported_at: i64) -> Self {
        Report {
            server_id,
            exported_at,
            checkpoint: None,
            witnesses: Vec::new(),
            configurations: Vec::new(),
            records: Vec::new(),
            checks: Vec::new(),
        }
    }

    pub(crate) fn pass(&mut self, subject: Subject, kind: CheckKind, detail: impl Into<String>) {
        self.push(subject, kind, true, detail);
    }

    pub(crate) fn fail(&mut self, subject: Subject, kind: CheckKind, detail: impl Into<String>) {
        self.push(subject, kind, false, detail);
    }

    pub(crate) fn check(
        &mut self,
        subject: Subject,
        kind: CheckKind,
        outcome: Result<String, String>,
    ) -> bool {
        let passed = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|e| e);
        self.push(subject, kind, passed, detail);
        passed
    }

    fn push(&mut self, subject: Subject, kind: CheckKind, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            subject,
            kind,
            passed,
            detail: detail.into(),
        });
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Whether `kind` failed for `subject`.
    pub fn failed(&self, subject: &Subject, kind: CheckKind) -> bool {
        self.failures()
            .any(|c| &c.subject == subject && c.kind == kind)
    }

    /// One line naming the failed checks.
    pub fn failure_summary(&self) -> String {
        let failures: Vec<String> = self
            .failures()
            .map(|c| format!("{} ({})", c.subject, c.kind))
            .collect();
        match failures.len() {
            0 => "no check failed".into(),
            n => format!("{n} check(s) failed: {}", failures.join(", ")),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Evidence from the message log of {}, exported at {} (Unix time)",
            self.server_id, self.exported_at
        )?;
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        let failed = self.failures().count();
        if failed == 0 {
            write!(f, "VALID: all {} checks passed", self.checks.len())
        } else {
            write!(
                f,
                "INVALID: {failed} of {} checks failed",
                self.checks.len()
            )
        }
    }
}
