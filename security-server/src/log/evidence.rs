//! Evidence export (DESIGN §6): which records an auditor asked for, and the self-contained
//! bundle `msglog` builds of them (docs/evidence.md).

use certs::Clock;
use globalconf::SecurityServerId;
use msglog::MessageLog;
use proto::v1 as pb;

/// Which records an evidence export covers: exactly one selector.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// Every record of one exchange (request and response).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Records logged in `[from_ms, to_ms)` (Unix milliseconds).
    #[serde(default)]
    pub from_ms: Option<i64>,
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// Records about one data subject (through the HMAC index).
    #[serde(default)]
    pub subject: Option<String>,
    /// Include the stored bodies (default true).
    #[serde(default)]
    pub include_bodies: Option<bool>,
}

/// Why an export produced no bundle.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    BadQuery(String),
    #[error("no records match")]
    NothingFound,
    #[error("{0}")]
    Evidence(#[from] msglog::EvidenceError),
    #[error("{0}")]
    Log(#[from] msglog::LogError),
}

impl ExportError {
    /// The records are not under a signed checkpoint yet: retrying in a second helps.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExportError::Evidence(msglog::EvidenceError::NotYetCheckpointed { .. })
        )
    }
}

/// Selects the records and builds the evidence bundle (blocking: call off the async workers).
pub fn export_evidence(
    log: &MessageLog,
    server_id: &SecurityServerId,
    query: &EvidenceQuery,
    clock: &dyn Clock,
    progress: impl FnMut(u64, u64),
) -> Result<pb::EvidenceBundle, ExportError> {
    let indexes = match (
        &query.message_id,
        query.from_ms.zip(query.to_ms),
        &query.subject,
    ) {
        (Some(id), None, None) => log.find_by_message_id(id)?,
        (None, Some((from, to)), None) => log.find_by_time(from, to)?,
        (None, None, Some(subject)) => log.find_by_subject(subject)?,
        _ => {
            return Err(ExportError::BadQuery(
                "give exactly one of: message_id, from_ms with to_ms, subject".into(),
            ));
        }
    };
    if indexes.is_empty() {
        return Err(ExportError::NothingFound);
    }
    Ok(msglog::export(
        log,
        server_id,
        &indexes,
        query.include_bodies.unwrap_or(true),
        clock,
        progress,
    )?)
}
