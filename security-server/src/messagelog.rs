//! The security server's side of the message log (DESIGN §6): what goes into a record, when it is
//! written (before a message is passed on; a failed write fails the exchange), the periodic
//! signed checkpoint, asking peer witnesses to cosign it, and witnessing peers' checkpoints.
//! The log itself (storage, Merkle tree, evidence) is the `msglog` crate.

use std::sync::Arc;
use std::time::Duration;

use certs::Clock;
use globalconf::{GlobalConf, SecurityServerId, ServiceId, SubsystemId};
use msglog::{Entry, HashedBody, MessageLog};
use proto::v1 as pb;
use tlog::{Checkpoint, CosignatureSigner, NoteSigner, NoteVerifier};

use crate::confclient::ConfClient;
use crate::error::{Origin, XRoadError};
use crate::keys::MemberKeys;
use crate::peer::PeerPool;
use crate::serverproxy::codes;

/// The error code when the log cannot be written (`Server.ClientProxy.LoggingFailed` or
/// `Server.ServerProxy.LoggingFailed`).
pub const LOGGING_FAILED: &str = "LoggingFailed";

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
            origin,
            LOGGING_FAILED,
            "the message log cannot be written; the exchange was stopped",
        )
        .with_id(message_id.to_owned())
    }

    /// Puts a request record in the log's commit order before the request is passed on, without
    /// waiting for the disk: the exchange is acknowledged only after its response record is
    /// durable, which (the log being one ordered, fail-stop sequence) makes this record durable
    /// too. Saves one fsync wait per exchange at each end. A log that has failed refuses at once.
    pub fn enqueue(&self, origin: Origin, m: Logged<'_>) -> Result<(), XRoadError> {
        if !self.enabled {
            return Ok(());
        }
        self.log
            .enqueue(self.entry(&m))
            .map(drop)
            .map_err(|e| Self::failed(origin, m.message_id, &e))
    }

    /// Puts a record in the log's commit order and starts its group commit; the returned
    /// [`Durable`] waits until it (and everything enqueued before it) is on disk. Lets the
    /// server proxy send its answer while the record is synced (DESIGN §5.2). A log that has
    /// failed refuses at once.
    pub fn begin_write(&self, origin: Origin, m: Logged<'_>) -> Result<Durable, XRoadError> {
        if !self.enabled {
            return Ok(Durable(None));
        }
        let pending = self
            .log
            .begin_append(self.entry(&m))
            .map_err(|e| Self::failed(origin, m.message_id, &e))?;
        Ok(Durable(Some((pending, origin, m.message_id.to_owned()))))
    }

    /// Appends a record and returns once it (and everything enqueued before it) is durable; on
    /// failure the exchange must fail.
    pub async fn write(&self, origin: Origin, m: Logged<'_>) -> Result<u64, XRoadError> {
        if !self.enabled {
            return Ok(0);
        }
        self.log
            .append(self.entry(&m))
            .await
            .map_err(|e| Self::failed(origin, m.message_id, &e))
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

/// How often (in checkpoint rounds) the stored checkpoints are thinned.
pub const THIN_EVERY_ROUNDS: u64 = 600;

/// Signs checkpoints of this server's log and has peers cosign them.
#[derive(Debug)]
pub struct Checkpointer {
    pub log: MessageLog,
    pub this: SecurityServerId,
    pub conf: Arc<ConfClient>,
    pub keys: Arc<MemberKeys>,
    pub peers: Arc<PeerPool>,
    pub clock: Arc<dyn Clock>,
    pub interval_override: Option<Duration>,
    pub witness_count_override: Option<u32>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What one checkpoint round achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub size: u64,
    pub cosigned_by: Vec<SecurityServerId>,
}

/// The k servers after `this` in identifier order (wrapping), so witnessing load spreads evenly
/// and each server's witnesses are stable.
pub fn choose_witnesses(
    conf: &GlobalConf,
    this: &SecurityServerId,
    k: usize,
) -> Vec<SecurityServerId> {
    let ids: Vec<&SecurityServerId> = conf.servers().map(|s| &s.id).collect();
    let start = ids.iter().position(|id| *id > this).unwrap_or(0);
    ids.iter()
        .cycle()
        .skip(start)
        .take(ids.len())
        .filter(|id| **id != this)
        .take(k)
        .map(|id| (*id).clone())
        .collect()
}

/// Runs a blocking message-log call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, msglog::LogError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl Checkpointer {
    fn interval(&self) -> Duration {
        self.interval_override.unwrap_or_else(|| {
            self.conf
                .current()
                .map_or(globalconf::Parameters::DEFAULT_CHECKPOINT_INTERVAL, |c| {
                    c.conf().parameters().checkpoint_interval
                })
        })
    }

    /// Checkpoints every interval while there are new records, until shutdown. Every
    /// [`THIN_EVERY_ROUNDS`] rounds (and at the first) it also thins the stored checkpoints
    /// ([`msglog::history::Thinning`]).
    pub async fn run(self, shutdown: runtime::Shutdown) {
        let mut stop = std::pin::pin!(shutdown.wait());
        let mut rounds = 0u64;
        loop {
            if rounds.is_multiple_of(THIN_EVERY_ROUNDS) {
                let log = self.log.clone();
                match blocking(move || log.thin_checkpoints(msglog::history::Thinning::DEFAULT))
                    .await
                {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "thinned the stored checkpoints"),
                    Err(e) => tracing::warn!(error = %e, "thinning the stored checkpoints failed"),
                }
            }
            rounds += 1;
            let started = std::time::Instant::now();
            match self.round().await {
                Ok(Some(round)) => self.metrics.log.record_round(
                    round.size,
                    self.clock.unix_now(),
                    started.elapsed(),
                    round.cosigned_by.len(),
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint round failed"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.interval()) => {}
            }
        }
    }

    /// One round: sign a checkpoint of the current size if it grew, then ask the witnesses.
    pub async fn round(&self) -> Result<Option<Round>, String> {
        let log = self.log.clone();
        let (size, latest) = blocking(move || Ok((log.size()?, log.latest_checkpoint()?))).await?;
        if size == 0 {
            return Ok(None);
        }
        let conf = self.conf.valid_now()?;
        let conf = conf.conf();
        let now = self.clock.unix_now();
        let owner = self.this.owner();
        let key = self
            .keys
            .signer(owner, conf, now)
            .ok_or_else(|| format!("no signing key of {owner} is valid now"))?;
        let mut note = match latest {
            Some((s, text)) if s == size => tlog::note::parse(&text).map_err(|e| e.to_string())?,
            _ => {
                let log = self.log.clone();
                let root = blocking(move || log.root(size)).await?;
                let cp = Checkpoint::new(self.this.to_string(), size, root)
                    .map_err(|e| e.to_string())?;
                let signer =
                    NoteSigner::new(tlog::log_key_name(&self.this.to_string()), key.clone())
                        .map_err(|e| e.to_string())?;
                tlog::sign_checkpoint(&cp, &signer)
            }
        };
        let cp = Checkpoint::parse_body(note.text()).map_err(|e| e.to_string())?;
        let k = self
            .witness_count_override
            .unwrap_or(conf.parameters().witness_count) as usize;
        let mut cosigned_by = Vec::new();
        for witness in choose_witnesses(conf, &self.this, k) {
            let name = witness.to_string();
            if note.signatures().iter().any(|s| s.name() == name) {
                cosigned_by.push(witness);
                continue;
            }
            match self.ask(conf, &witness, &cp, &note).await {
                Ok(line) => {
                    let sig = tlog::NoteSignature::from_line(&line).map_err(|e| e.to_string())?;
                    note.push_signature(sig).map_err(|e| e.to_string())?;
                    cosigned_by.push(witness);
                }
                Err(e) => {
                    tracing::info!(witness = %witness, error = %e, "witness did not cosign (will retry)")
                }
            }
        }
        let log = self.log.clone();
        let text = note.render();
        blocking(move || log.store_checkpoint(size, &text)).await?;
        Ok(Some(Round { size, cosigned_by }))
    }

    /// Asks one witness, starting from the size it last cosigned; retries once from the size it
    /// says it holds.
    async fn ask(
        &self,
        conf: &GlobalConf,
        witness: &SecurityServerId,
        cp: &Checkpoint,
        note: &tlog::Note,
    ) -> Result<String, String> {
        let server = conf
            .server(witness)
            .ok_or("witness not in the configuration")?;
        let address = server.addresses.first().ok_or("witness has no address")?;
        let mut client = self
            .peers
            .connect(server, address)
            .await
            .map_err(|e| e.to_string())?;
        let log = self.log.clone();
        let w = witness.to_string();
        let mut old_size = blocking(move || log.witnessed_size(&w)).await?;
        for _ in 0..2 {
            let log = self.log.clone();
            let new_size = cp.size();
            let proof = if old_size == 0 || old_size >= new_size {
                Vec::new()
            } else {
                blocking(move || log.consistency_proof(old_size, new_size)).await?
            };
            let request = pb::AddCheckpointRequest {
                old_size,
                consistency_proof: proof.iter().map(|h| h.to_vec()).collect(),
                checkpoint: note.render(),
            };
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.add_checkpoint(request))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|s| s.message().to_owned())?
                    .into_inner();
            match answer.result {
                Some(pb::add_checkpoint_response::Result::Cosignature(line)) => {
                    let log = self.log.clone();
                    let w = witness.to_string();
                    blocking(move || log.set_witnessed_size(&w, new_size)).await?;
                    return Ok(line);
                }
                Some(pb::add_checkpoint_response::Result::ConflictKnownSize(known)) => {
                    old_size = known
                }
                None => return Err("empty answer".into()),
            }
        }
        Err("the witness's size kept changing".into())
    }
}

/// The witness side: checks a peer's checkpoint against what this server saw of that log before,
/// and cosigns it. The caller has established, from the pinned TLS certificate, which server
/// `peer` is.
pub async fn witness(
    log: &MessageLog,
    conf: &GlobalConf,
    peer: &SecurityServerId,
    request: pb::AddCheckpointRequest,
    signer: CosignatureSigner,
    now: u64,
) -> Result<pb::AddCheckpointResponse, XRoadError> {
    let refuse = |msg: String| XRoadError::server_proxy(codes::CHECKPOINT_REFUSED, msg);
    let note = tlog::note::parse(&request.checkpoint)
        .map_err(|e| refuse(format!("malformed note: {e}")))?;
    let cp = Checkpoint::parse_body(note.text())
        .map_err(|e| refuse(format!("malformed checkpoint: {e}")))?;
    if cp.origin() != peer.to_string() {
        return Err(refuse(format!(
            "{peer} may only submit its own checkpoints, not {}",
            cp.origin()
        )));
    }
    let owner = conf
        .member(peer.owner())
        .ok_or_else(|| refuse(format!("{} is not a member", peer.owner())))?;
    let name = tlog::log_key_name(&peer.to_string());
    let verifiers: Vec<NoteVerifier> = owner
        .signing_keys
        .iter()
        .filter_map(|k| NoteVerifier::new(name.clone(), k.public_key).ok())
        .collect();
    note.verify(&verifiers)
        .map_err(|e| refuse(format!("the log's signature does not verify: {e}")))?;
    let proof: Vec<tlog::Hash> = request
        .consistency_proof
        .iter()
        .map(|h| <tlog::Hash>::try_from(h.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(|_| refuse("a proof hash is not 32 bytes".into()))?;

    let log = log.clone();
    let origin = cp.origin().to_owned();
    let old_size = request.old_size;
    let decision = tokio::task::spawn_blocking(move || -> Result<Result<(), u64>, String> {
        // Check and persist as one step: a concurrent submission cannot slip between them.
        loop {
            let previous = log.witness_state(&origin).map_err(|e| e.to_string())?;
            match tlog::check_update(previous.as_ref(), old_size, &cp, &proof) {
                Ok(next) => {
                    if log
                        .witness_update(&origin, previous.as_ref(), next)
                        .map_err(|e| e.to_string())?
                    {
                        return Ok(Ok(()));
                    }
                }
                Err(tlog::WitnessRefusal::Conflict { known_size, .. }) => {
                    return Ok(Err(known_size));
                }
                Err(other) => return Err(format!("refused: {other}")),
            }
        }
    })
    .await
    .map_err(|e| XRoadError::server_proxy(codes::INTERNAL_ERROR, e.to_string()))?
    .map_err(refuse)?;
    match decision {
        Err(known) => Ok(pb::AddCheckpointResponse {
            result: Some(pb::add_checkpoint_response::Result::ConflictKnownSize(
                known,
            )),
        }),
        Ok(()) => {
            let cp = Checkpoint::parse_body(note.text()).map_err(|e| refuse(e.to_string()))?;
            let sig = tlog::cosign(&cp, &signer, now).map_err(|e| refuse(e.to_string()))?;
            Ok(pb::AddCheckpointResponse {
                result: Some(pb::add_checkpoint_response::Result::Cosignature(
                    sig.to_line(),
                )),
            })
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::test_support::{CLIENT_SERVER, OTHER_SERVER, PROVIDER_SERVER, conf};

    #[test]
    fn witnesses_are_the_next_servers_in_order_without_self() {
        let conf = conf();
        let id = |s: &str| s.parse::<SecurityServerId>().unwrap();
        // In identifier order: CLIENT_SERVER < PROVIDER_SERVER < OTHER_SERVER.
        assert_eq!(
            choose_witnesses(&conf, &id(CLIENT_SERVER), 1),
            vec![id(PROVIDER_SERVER)]
        );
        assert_eq!(
            choose_witnesses(&conf, &id(OTHER_SERVER), 1),
            vec![id(CLIENT_SERVER)]
        );
        assert_eq!(
            choose_witnesses(&conf, &id(PROVIDER_SERVER), 9),
            vec![id(OTHER_SERVER), id(CLIENT_SERVER)]
        );
    }
}
