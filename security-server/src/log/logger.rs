//! What goes into a message log record and when it is written (DESIGN §6): each request and
//! response, at both ends, before it is passed on; a failed write fails the exchange with
//! `LoggingFailed` of the side whose log failed (fail closed).

use std::sync::Arc;

use certs::Clock;
use exchange::{Code, HashedBody, Origin, XRoadError};
use globalconf::{SecurityServerId, ServiceId, SubsystemId};
use msglog::{Entry, MessageLog};
use proto::v1 as pb;

/// Opens this server's message log with its key files (made on first use, mode 0600): the one
/// place that knows the file names, shared by the server and the offline CLI commands.
pub fn open(config: &crate::config::Config) -> Result<MessageLog, msglog::LogError> {
    let dir = &config.data_dir;
    let body_key = if config.messagelog.encrypt_bodies {
        Some(msglog::load_or_create_key(
            &dir.join("messagelog-body.key"),
        )?)
    } else {
        None
    };
    MessageLog::open(
        &dir.join("messagelog.redb"),
        msglog::LogOptions {
            body_key,
            subject_key: msglog::load_or_create_key(&dir.join("subject-index.key"))?,
            group_commit_interval: std::time::Duration::from_millis(
                config.messagelog.group_commit_interval_ms,
            ),
            ..msglog::LogOptions::default()
        },
    )
}

/// What one record says, besides the signed header itself.
#[derive(Debug)]
pub struct Logged<'a> {
    pub kind: pb::LogKind,
    pub side: pb::LogSide,
    pub message_id: &'a str,
    pub client: &'a SubsystemId,
    pub service: &'a ServiceId,
    pub signed: &'a pb::SignedHeader,
    /// The body and its hash (which the signed header carries).
    pub body: &'a HashedBody,
    /// Only request records are indexed by data subject (one entry per exchange).
    pub data_subject: Option<&'a str>,
    pub peer: &'a SecurityServerId,
}

impl Logged<'_> {
    /// Whose `LoggingFailed` a failed write is: the side that keeps the record.
    fn origin(&self) -> Origin {
        match self.side {
            pb::LogSide::Server => Origin::ServerProxy,
            _ => Origin::ClientProxy,
        }
    }
}

/// Writes records, applying the body policy.
#[derive(Debug, Clone)]
pub struct MessageLogger {
    log: MessageLog,
    enabled: bool,
    log_bodies: bool,
    body_logging_off: Arc<[SubsystemId]>,
    clock: Arc<dyn Clock>,
}

impl MessageLogger {
    pub fn new(
        log: MessageLog,
        enabled: bool,
        log_bodies: bool,
        body_logging_off: Vec<SubsystemId>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            log,
            enabled,
            log_bodies,
            body_logging_off: body_logging_off.into(),
            clock,
        }
    }

    pub fn log(&self) -> &MessageLog {
        &self.log
    }

    fn stores_body(&self, client: &SubsystemId, service: &ServiceId) -> bool {
        self.log_bodies
            && !self
                .body_logging_off
                .iter()
                .any(|s| s == client || s == service.subsystem())
    }

    fn entry(&self, m: &Logged<'_>) -> Entry {
        let logged_at_ms = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let store_body = self.stores_body(m.client, m.service);
        let record = pb::LogRecord {
            kind: m.kind as i32,
            side: m.side as i32,
            message_id: m.message_id.to_owned(),
            client: m.client.to_string(),
            service: m.service.to_string(),
            signed_header: m.signed.header.clone(),
            signature: m.signed.signature.clone(),
            key_id: m.signed.key_id.clone(),
            body_sha256: m.body.sha256().to_vec(),
            body_stored: store_body,
            logged_at_ms,
            peer: m.peer.to_string(),
        };
        Entry {
            record,
            body: store_body.then(|| m.body.clone()),
            data_subject: m.data_subject.filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }

    fn failed(origin: Origin, message_id: &str, e: &msglog::LogError) -> XRoadError {
        tracing::error!(error = %e, id = message_id, "message log write failed");
        XRoadError::new(
            Code::logging_failed(origin),
            "the message log cannot be written; the exchange was stopped",
        )
        .with_id(message_id.to_owned())
    }

    /// Puts a request record in the log's commit order before the request is passed on, without
    /// waiting for the disk: the exchange is acknowledged only after its response record is
    /// durable, which (the log being one ordered, fail-stop sequence) makes this record durable
    /// too. Saves one fsync wait per exchange at each end. A log that has failed refuses at once.
    pub fn enqueue(&self, m: Logged<'_>) -> Result<(), XRoadError> {
        if !self.enabled {
            return Ok(());
        }
        self.log
            .enqueue(self.entry(&m))
            .map(drop)
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))
    }

    /// Puts a record in the log's commit order and starts its group commit; the returned
    /// [`Durable`] waits until it (and everything enqueued before it) is on disk. Lets the
    /// server proxy send its answer while the record is synced (DESIGN §5.2). A log that has
    /// failed refuses at once.
    pub fn begin_write(&self, m: Logged<'_>) -> Result<Durable, XRoadError> {
        if !self.enabled {
            return Ok(Durable(None));
        }
        let pending = self
            .log
            .begin_append(self.entry(&m))
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))?;
        Ok(Durable(Some((
            pending,
            m.origin(),
            m.message_id.to_owned(),
        ))))
    }

    /// Appends a record and returns once it (and everything enqueued before it) is durable; on
    /// failure the exchange must fail.
    pub async fn write(&self, m: Logged<'_>) -> Result<u64, XRoadError> {
        if !self.enabled {
            return Ok(0);
        }
        self.log
            .append(self.entry(&m))
            .await
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))
    }
}

/// A record put in the log's commit order by [`MessageLogger::begin_write`].
#[derive(Debug)]
#[must_use = "the record is not known to be durable until `durable` returns Ok"]
pub struct Durable(Option<(msglog::Pending, Origin, String)>);

impl Durable {
    /// Waits until the record is on disk; on failure the exchange must fail.
    pub async fn durable(self) -> Result<(), XRoadError> {
        let Some((pending, origin, message_id)) = self.0 else {
            return Ok(());
        };
        pending
            .durable()
            .await
            .map(drop)
            .map_err(|e| MessageLogger::failed(origin, &message_id, &e))
    }
}
