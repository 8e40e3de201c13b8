//! What goes into a message log record and when it is written (DESIGN §6): each request and
//! response, at both ends, before it is passed on; a failed write fails the exchange with
//! `LoggingFailed` of the side whose log failed (fail closed).

use std::sync::Arc;

use certs::Clock;
use exchange::{Code, Origin, XRoadError};
use globalconf::{ClientId, SecurityServerId, ServiceId, SubsystemId};
use msglog::{Entry, MessageLog};
use proto::v1 as pb;

use crate::spool::MessageBody;

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
            cache_bytes: usize::try_from(config.messagelog.cache_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
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
    pub client: &'a ClientId,
    pub service: &'a ServiceId,
    pub signed: &'a pb::SignedHeader,
    /// The body and its hash (which the signed header carries). A body in memory is stored
    /// (unless body logging is off for the exchange); a spooled one, too large for memory, is
    /// logged by its hash alone, which the signature covers.
    pub body: &'a MessageBody,
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

/// An exchange that ended without an answer for the client, after its request was logged.
#[derive(Debug)]
pub struct Failed<'a> {
    pub message_id: &'a str,
    pub client: &'a ClientId,
    pub service: &'a ServiceId,
    pub peer: &'a SecurityServerId,
    pub error: &'a XRoadError,
    /// Whether the request may have reached the provider's server.
    pub sent: bool,
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

    fn stores_body(&self, client: &ClientId, service: &ServiceId) -> bool {
        self.log_bodies
            && !self
                .body_logging_off
                .iter()
                .any(|s| client == s || s == service.subsystem())
    }

    fn now_ms(&self) -> i64 {
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn entry(&self, m: &Logged<'_>) -> Entry {
        let logged_at_ms = self.now_ms();
        let stored = self
            .stores_body(m.client, m.service)
            .then(|| m.body.memory())
            .flatten();
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
            body_stored: stored.is_some(),
            logged_at_ms,
            peer: m.peer.to_string(),
            error: String::new(),
            sent: false,
        };
        Entry {
            record,
            body: stored.cloned(),
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

    /// Notes in the log that the exchange whose request record was logged ends with `error` for
    /// the client instead of an answer (a [`pb::LogKind::Failure`] record); `sent` says whether
    /// the request may have reached the provider's server. Without it, a request record alone
    /// would not tell an auditor whether the exchange failed or the log lost its answer.
    /// Not waited for: the client gets its error at once, and the record is on disk within
    /// 20 ms. A log that has failed cannot take it; that failure is what the client then got.
    pub fn note_failure(&self, failed: Failed<'_>) {
        if !self.enabled {
            return;
        }
        let record = pb::LogRecord {
            kind: pb::LogKind::Failure as i32,
            side: pb::LogSide::Client as i32,
            message_id: failed.message_id.to_owned(),
            client: failed.client.to_string(),
            service: failed.service.to_string(),
            logged_at_ms: self.now_ms(),
            peer: failed.peer.to_string(),
            error: failed.error.to_string(),
            sent: failed.sent,
            ..pb::LogRecord::default()
        };
        let entry = Entry {
            record,
            body: None,
            data_subject: None,
        };
        if let Err(e) = self.log.enqueue(entry) {
            tracing::warn!(error = %e, id = failed.message_id, "the failure of an exchange was not logged");
        }
    }

    /// Puts a request record in the log's commit order before the request is passed on, without
    /// waiting for the disk: the exchange is acknowledged only after its response record is
    /// durable, and [`MessageLogger::write`] and [`MessageLogger::begin_write`] then check that
    /// this one is too (a log that failed and opened again in between has lost it). Saves one
    /// fsync wait per exchange at each end. A log that has failed refuses at once.
    pub fn enqueue(&self, m: Logged<'_>) -> Result<Queued, XRoadError> {
        if !self.enabled {
            return Ok(Queued(None));
        }
        self.log
            .enqueue(self.entry(&m))
            .map(|pending| Queued(Some(pending)))
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))
    }

    /// Puts a response record in the log's commit order after its request's (`request`) and
    /// starts its group commit; the returned [`Durable`] waits until both are on disk. Lets
    /// the server proxy send its answer while the record is synced (DESIGN §5.2). A log that
    /// has failed refuses at once.
    pub fn begin_write(&self, m: Logged<'_>, request: Queued) -> Result<Durable, XRoadError> {
        if !self.enabled {
            return Ok(Durable(None));
        }
        let pending = self
            .log
            .begin_append(self.entry(&m))
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))?;
        Ok(Durable(Some(Waiting {
            pending,
            request: request.0,
            origin: m.origin(),
            message_id: m.message_id.to_owned(),
        })))
    }

    /// Appends a response record and returns once it and its request's (`request`) are
    /// durable; on failure the exchange must fail.
    pub async fn write(&self, m: Logged<'_>, request: Queued) -> Result<u64, XRoadError> {
        if !self.enabled {
            return Ok(0);
        }
        let index = self
            .log
            .append(self.entry(&m))
            .await
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))?;
        request
            .durable()
            .await
            .map_err(|e| Self::failed(m.origin(), m.message_id, &e))?;
        Ok(index)
    }
}

/// A request record put in the log's commit order by [`MessageLogger::enqueue`], not yet known
/// to be durable.
#[derive(Debug)]
#[must_use = "the exchange's response record must be written after it"]
pub struct Queued(Option<msglog::Pending>);

impl Queued {
    /// Whether it is durable. Called once a later record is: by then its group commit has
    /// ended, one way or the other.
    async fn durable(self) -> Result<(), msglog::LogError> {
        match self.0 {
            None => Ok(()),
            Some(pending) => pending.durable().await.map(drop),
        }
    }
}

/// A record put in the log's commit order by [`MessageLogger::begin_write`].
#[derive(Debug)]
#[must_use = "the record is not known to be durable until `durable` returns Ok"]
pub struct Durable(Option<Waiting>);

#[derive(Debug)]
struct Waiting {
    pending: msglog::Pending,
    request: Option<msglog::Pending>,
    origin: Origin,
    message_id: String,
}

impl Durable {
    /// Waits until the record and its request's are on disk; on failure the exchange must
    /// fail.
    pub async fn durable(self) -> Result<(), XRoadError> {
        let Some(w) = self.0 else {
            return Ok(());
        };
        let written = match w.pending.durable().await {
            Ok(_) => Queued(w.request).durable().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| MessageLogger::failed(w.origin, &w.message_id, &e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn logged<'a>(
        kind: pb::LogKind,
        ids: &'a (ClientId, ServiceId, SecurityServerId),
        signed: &'a pb::SignedHeader,
        body: &'a MessageBody,
    ) -> Logged<'a> {
        Logged {
            kind,
            side: pb::LogSide::Client,
            message_id: "id-1",
            client: &ids.0,
            service: &ids.1,
            signed,
            body,
            data_subject: None,
            peer: &ids.2,
        }
    }

    /// A request record queued before the disk filled up is lost with the failed commit. Once
    /// the log has opened again, the exchange's response record would be durable without it:
    /// the exchange must fail instead of being acknowledged with half its record.
    #[tokio::test]
    async fn a_response_is_not_acknowledged_when_its_request_record_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let log = MessageLog::open(&dir.path().join("log.redb"), Default::default()).unwrap();
        let logger = MessageLogger::new(
            log.clone(),
            true,
            true,
            Vec::new(),
            Arc::new(certs::SystemClock),
        );
        let ids = (
            "JP/MUN/131016/portal".parse().unwrap(),
            "JP/GOV/8000012/records/residents".parse().unwrap(),
            "JP/GOV/8000012/ss1".parse().unwrap(),
        );
        let signed = pb::SignedHeader::default();
        let body = MessageBody::in_memory(exchange::HashedBody::new(Bytes::from_static(b"body")));

        log.simulate_disk_full(true);
        let queued = logger
            .enqueue(logged(pb::LogKind::Request, &ids, &signed, &body))
            .unwrap();
        runtime::testing::eventually("the log fails", || async { log.failure().map(drop) }).await;
        log.simulate_disk_full(false);
        runtime::testing::eventually("the log opens again", || async {
            log.failure().is_none().then_some(())
        })
        .await;

        let e = logger
            .write(logged(pb::LogKind::Response, &ids, &signed, &body), queued)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "Server.ClientProxy.LoggingFailed");

        // Once both are written, the exchange is acknowledged.
        let queued = logger
            .enqueue(logged(pb::LogKind::Request, &ids, &signed, &body))
            .unwrap();
        let index = tokio::time::timeout(
            Duration::from_secs(10),
            logger.write(logged(pb::LogKind::Response, &ids, &signed, &body), queued),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(log.size().unwrap(), index + 1);
    }
}
