//! The server proxy: receives an exchange from a peer security server, checks it in DESIGN §5.2's
//! order (pinned TLS peer hosting the client, signature under a valid key, clock skew, replay —
//! in [`message::verify_request`]; then the service and the access rights here), calls the
//! provider's information system, and signs the answer with the provider member's key.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use certs::Clock;
use globalconf::{GlobalConf, SecurityServerId};
use http::{Method, StatusCode};
use proto::v1 as pb;

use exchange::message::{self, VerifiedRequest};
use exchange::openapi;
use exchange::replay::ReplayCache;
use exchange::{Authorized, HashedBody, MetaCall, ServerProxyCode, XRoadError};

use crate::federation::{Federation, Refusal};
use crate::keys::MemberKeys;
use crate::log::{Durable, Logged, MessageLogger};
use crate::metrics::{self, Metrics};
use crate::peer::{self, Part as _};
use crate::proxy::backend::Backend;
use crate::serverconf::{LocalConf, ServerConf};
use crate::spool::{MessageBody, ReadError, Room, Spool};
use crate::usage;

/// Everything the server proxy needs, shared by all connections.
#[derive(Debug)]
pub struct ServerProxy {
    pub this: SecurityServerId,
    /// The own configuration and the federated instances' (a client may be of either).
    pub confs: Arc<Federation>,
    pub serverconf: Arc<ServerConf>,
    pub keys: Arc<MemberKeys>,
    pub replay: ReplayCache,
    pub backend: Backend,
    /// Where request bodies are read into (the backend's answers too, [`Backend`]).
    pub spool: Spool,
    pub clock: Arc<dyn Clock>,
    /// `exchange.max_clock_skew_secs` when set; else the instance parameter.
    pub skew_override: Option<Duration>,
    pub metrics: Arc<Metrics>,
    pub logger: MessageLogger,
}

impl ServerProxy {
    pub fn max_skew(&self, conf: &GlobalConf) -> Duration {
        self.skew_override
            .unwrap_or(conf.parameters().max_clock_skew)
    }

    /// Handles one exchange, read from its request stream: the signed answer (header and
    /// body), to be sent at once, and the wait until its response record is durable, after which
    /// the call may end OK (the `Exchange` RPC's contract). Records the outcome in the metrics
    /// once both are known.
    pub async fn exchange(
        &self,
        peer_cert_sha256: Option<[u8; 32]>,
        request: &mut tonic::Streaming<pb::ExchangeRequest>,
    ) -> Result<
        (
            (pb::SignedHeader, MessageBody),
            impl Future<Output = Result<(), XRoadError>> + Send + 'static,
        ),
        XRoadError,
    > {
        let started = Instant::now();
        let mut parties = None;
        match self.handle(peer_cert_sha256, request, &mut parties).await {
            Ok((answer, logged)) => {
                if let Some(p) = parties.as_mut() {
                    p.response_bytes = Some(answer.1.len());
                }
                // Made only once answered: an exchange dropped before (its caller gone) is not
                // counted, as before the answer went out early.
                let mut outcome = Outcome {
                    metrics: Arc::clone(&self.metrics),
                    started,
                    outcome: Cow::Borrowed("ok"),
                    parties,
                };
                Ok((answer, async move {
                    let result = logged.durable().await;
                    if let Err(e) = &result {
                        outcome.outcome = Cow::Owned(e.error_type());
                    }
                    drop(outcome);
                    result
                }))
            }
            Err(e) => {
                self.metrics.observe_exchange(
                    metrics::SERVER_PROXY,
                    &e.error_type(),
                    started.elapsed(),
                    parties.as_ref(),
                );
                Err(e)
            }
        }
    }

    async fn handle(
        &self,
        peer_cert_sha256: Option<[u8; 32]>,
        request: &mut tonic::Streaming<pb::ExchangeRequest>,
        parties: &mut Option<metrics::Parties>,
    ) -> Result<((pb::SignedHeader, MessageBody), Durable), XRoadError> {
        let own = self
            .confs
            .own()
            .valid_now()
            .map_err(|m| XRoadError::new(ServerProxyCode::OutdatedGlobalConf, m))?;
        let conf = own.conf();
        let peer = peer_cert_sha256.ok_or_else(|| {
            XRoadError::new(
                ServerProxyCode::UnauthenticatedPeer,
                "no client certificate",
            )
        })?;
        // The configuration that lists the peer says who its clients are and which keys they
        // sign with: this instance's, or a federated one's.
        let theirs = self
            .confs
            .conf_of_peer(&own, &peer)
            .map_err(|r| match r {
                Refusal::Own(m) | Refusal::Outdated(_, m) => {
                    XRoadError::new(ServerProxyCode::OutdatedGlobalConf, m)
                }
                r => XRoadError::new(ServerProxyCode::UnauthenticatedPeer, r.to_string()),
            })?
            // The handshake checked the certificate against the configurations of that moment;
            // a pooled connection outlives them (a server removed since, or a federation ended).
            .ok_or_else(|| {
                XRoadError::new(
                    ServerProxyCode::UnauthenticatedPeer,
                    "the peer's TLS certificate is in no configuration this server holds, of \
                     this instance or of a federated one it exchanges with",
                )
            })?;
        let invalid = |m: String| XRoadError::new(ServerProxyCode::InvalidMessage, m);
        let first = request
            .message()
            .await
            .map_err(|s| invalid(format!("the exchange broke off: {}", s.message())))?
            .ok_or_else(|| invalid("the exchange has no header".into()))?;
        let (header, first, length) = first.into_parts();
        let header = header.ok_or_else(|| invalid("the exchange has no header".into()))?;
        // Whole before it is checked: the signed header carries its hash.
        let body = peer::read_body((&self.spool, Room::Wait), (first, length), request)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(max) => XRoadError::new(
                    ServerProxyCode::BodyTooLarge,
                    format!("the request body is larger than {max} bytes"),
                ),
                ReadError::Broken(m) => {
                    invalid(format!("the request body did not arrive whole: {m}"))
                }
                ReadError::Storage(e) => {
                    tracing::error!(error = %e, "a request body could not be spooled");
                    XRoadError::new(
                        ServerProxyCode::InternalError,
                        "the request body could not be spooled to disk",
                    )
                }
            })?;
        let now = self.clock.unix_now();
        let verified = message::verify_request(
            &header,
            body.sha256(),
            message::Confs {
                client: theirs.conf(),
                own: conf,
            },
            &peer,
            &self.this,
            now,
            self.max_skew(conf),
            &self.replay,
        )?;
        *parties = Some(metrics::Parties {
            service: verified.service().to_string(),
            client: verified.client().to_string(),
            message_id: verified.message_id().to_owned(),
            request_bytes: Some(body.len()),
            response_bytes: None,
        });
        // From here on every error is about this message.
        self.answer(&verified, &header, body, conf, now)
            .await
            .map_err(|e| e.or_id(verified.message_id()))
    }

    /// Answers a verified request: decides what answers it (and checks access) before logging
    /// it, so a refused request is not recorded as passed on; logs it; gets the answer; signs
    /// and logs the answer.
    async fn answer(
        &self,
        verified: &VerifiedRequest,
        header: &pb::SignedHeader,
        body: MessageBody,
        conf: &GlobalConf,
        now: i64,
    ) -> Result<((pb::SignedHeader, MessageBody), Durable), XRoadError> {
        let local = self.serverconf.snapshot();
        let meta = MetaCall::parse(
            verified.service(),
            verified.method(),
            verified.path(),
            verified.query(),
            Some(verified.header().data_subject.as_str()),
        )
        .transpose()
        .map_err(|e| e.to_server_proxy_error())?;
        let plan = match meta {
            Some(call @ (MetaCall::FindUsage { .. } | MetaCall::UsageEvidence { .. })) => {
                local.access.authorize(verified, conf)?;
                Plan::Meta(call)
            }
            Some(call) => Plan::Meta(call),
            None => {
                let entry = local.service(verified.service()).ok_or_else(|| {
                    XRoadError::new(
                        ServerProxyCode::UnknownService,
                        format!("service {} is not provided here", verified.service()),
                    )
                })?;
                Plan::Backend(entry, local.access.authorize(verified, conf)?)
            }
        };
        let request_record = self.logger.enqueue(Logged {
            kind: pb::LogKind::Request,
            side: pb::LogSide::Server,
            message_id: verified.message_id(),
            client: verified.client(),
            service: verified.service(),
            signed: header,
            body: &body,
            data_subject: Some(verified.header().data_subject.as_str()),
            peer: verified.peer(),
        })?;
        let (status, headers, response_body) = match plan {
            Plan::Meta(MetaCall::ListMethods) => list_methods(verified, &local, conf, false),
            Plan::Meta(MetaCall::AllowedMethods) => list_methods(verified, &local, conf, true),
            Plan::Meta(MetaCall::GetOpenApi { service }) => {
                open_api(verified, &service, &local, conf)?
            }
            Plan::Meta(MetaCall::FindUsage { offset, limit }) => {
                self.find_usage(verified, &local, conf, now, offset, limit)
                    .await?
            }
            Plan::Meta(MetaCall::UsageEvidence { id }) => {
                self.usage_evidence(verified, &local, now, id).await?
            }
            Plan::Backend(entry, authorized) => {
                let r = self.backend.call(entry, authorized, body).await?;
                (r.status, r.headers, r.body)
            }
        };
        let provider = verified.service().subsystem().member();
        let key = self.keys.signer(provider, conf, now).ok_or_else(|| {
            XRoadError::new(
                ServerProxyCode::NoSigningKey,
                format!("this server holds no signing key valid now for {provider}"),
            )
        })?;
        let response_header = message::build_response_header(
            verified,
            status,
            &headers,
            response_body.sha256(),
            &key.key_id(),
            now,
            &self.this,
        );
        let signed = message::try_sign_response(&response_header, &key).map_err(|e| {
            XRoadError::new(
                ServerProxyCode::InternalError,
                format!("the signing key could not sign: {e}"),
            )
        })?;
        // Put in the log's commit order before it is passed on; the caller ends the call OK
        // only once it is durable, while the client's server checks and logs the answer.
        let logged = self.logger.begin_write(
            Logged {
                kind: pb::LogKind::Response,
                side: pb::LogSide::Server,
                message_id: verified.message_id(),
                client: verified.client(),
                service: verified.service(),
                signed: &signed,
                body: &response_body,
                data_subject: None,
                peer: verified.peer(),
            },
            request_record,
        )?;
        Ok(((signed, response_body), logged))
    }
}

/// What answers a verified request.
enum Plan<'a> {
    Meta(MetaCall),
    Backend(&'a crate::serverconf::ServiceEntry, Authorized<'a>),
}

/// Records an exchange's outcome in the metrics when dropped: also when the client's server
/// hangs up after the answer, before the response record is durable (it stays in the log's
/// commit order, so the exchange counts as answered).
struct Outcome {
    metrics: Arc<Metrics>,
    started: Instant,
    outcome: Cow<'static, str>,
    parties: Option<metrics::Parties>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.metrics.observe_exchange(
            metrics::SERVER_PROXY,
            &self.outcome,
            self.started.elapsed(),
            self.parties.as_ref(),
        );
    }
}

type Answer = (StatusCode, Vec<(String, String)>, MessageBody);

impl ServerProxy {
    /// `findUsage?offset=N&limit=M` (DESIGN §7, [`usage`]).
    async fn find_usage(
        &self,
        request: &VerifiedRequest,
        local: &LocalConf,
        conf: &GlobalConf,
        now: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Answer, XRoadError> {
        let log = self.logger.log().clone();
        let provider = request.service().subsystem().clone();
        let subject = request.header().data_subject.clone();
        let rules = local.suppressions.clone();
        let page = tokio::task::spawn_blocking(move || {
            usage::find_usage(&log, &provider, &subject, offset, limit, &rules, now)
        })
        .await
        .map_err(|e| XRoadError::new(ServerProxyCode::InternalError, e.to_string()))?
        .map_err(|e| log_read_failed(request.message_id(), &e))?;
        let provider = request.service().subsystem();
        Ok(json_answer(&usage::page_json(
            &page,
            (&self.this, provider),
            (offset, limit),
            conf,
            |service| {
                local
                    .service(service)
                    .map(|s| s.names.clone())
                    .unwrap_or_default()
            },
        )))
    }

    /// `usageEvidence?id=X-Road-Id`: the evidence bundle of one access, without bodies.
    async fn usage_evidence(
        &self,
        request: &VerifiedRequest,
        local: &LocalConf,
        now: i64,
        wanted: String,
    ) -> Result<Answer, XRoadError> {
        let id = request.message_id();
        let log = self.logger.log().clone();
        let server = self.this.clone();
        let provider = request.service().subsystem().clone();
        let subject = request.header().data_subject.clone();
        let rules = local.suppressions.clone();
        let clock = Arc::clone(&self.clock);
        let bundle = tokio::task::spawn_blocking(move || {
            usage::usage_evidence(
                &log,
                &server,
                &provider,
                &subject,
                &wanted,
                &rules,
                now,
                clock.as_ref(),
            )
        })
        .await
        .map_err(|e| XRoadError::new(ServerProxyCode::InternalError, e.to_string()))?;
        let bundle = match bundle {
            Ok(b) => b,
            Err(usage::UsageEvidenceError::NotFound(m)) => {
                return Err(XRoadError::new(
                    ServerProxyCode::UsageRecordNotFound,
                    format!("no access record {m} for this data subject"),
                ));
            }
            Err(usage::UsageEvidenceError::Evidence(
                msglog::EvidenceError::NotYetCheckpointed { .. },
            )) => {
                return Err(XRoadError::new(
                    ServerProxyCode::NotYetCheckpointed,
                    "the record is not under a signed checkpoint yet; try again shortly",
                ));
            }
            Err(usage::UsageEvidenceError::Evidence(e)) => {
                tracing::error!(error = %e, id, "usage evidence export failed");
                return Err(XRoadError::new(
                    ServerProxyCode::LogReadFailed,
                    e.to_string(),
                ));
            }
            Err(usage::UsageEvidenceError::Log(e)) => return Err(log_read_failed(id, &e)),
        };
        Ok((
            StatusCode::OK,
            vec![("content-type".into(), "application/x-protobuf".into())],
            made_here(prost::Message::encode_to_vec(&bundle)),
        ))
    }
}

fn log_read_failed(id: &str, e: &msglog::LogError) -> XRoadError {
    tracing::error!(error = %e, id, "reading the message log for a transparency call failed");
    XRoadError::new(
        ServerProxyCode::LogReadFailed,
        "the message log could not be read",
    )
}

fn json_answer(value: &serde_json::Value) -> Answer {
    (
        StatusCode::OK,
        vec![("content-type".into(), "application/json".into())],
        made_here(value.to_string()),
    )
}

/// An answer this server made (a metaservice's), in memory.
fn made_here(bytes: impl Into<Bytes>) -> MessageBody {
    MessageBody::in_memory(HashedBody::new(bytes.into()))
}

fn service_json(
    id: &globalconf::ServiceId,
    openapi: Option<&openapi::Description<'_>>,
    endpoints: &[(String, String)],
) -> serde_json::Value {
    let sub = id.subsystem();
    serde_json::json!({
        "object_type": "SERVICE",
        "xroad_instance": sub.member().instance(),
        "member_class": sub.member().class(),
        "member_code": sub.member().code(),
        "subsystem_code": sub.code(),
        "service_code": id.code(),
        "service_type": if openapi.is_some() { "OPENAPI" } else { "REST" },
        "endpoint_list": endpoints
            .iter()
            .map(|(method, path)| serde_json::json!({ "method": method, "path": path }))
            .collect::<Vec<_>>(),
    })
}

/// A service's OpenAPI description, when it has one that reads as OpenAPI 3.
fn description(entry: &crate::serverconf::ServiceEntry) -> Option<openapi::Description<'_>> {
    let text = entry.openapi.as_deref()?;
    match openapi::Description::parse(text) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(service = %entry.id, error = %e, "the service's OpenAPI description cannot be read");
            None
        }
    }
}

/// `listMethods` (every service of the provider subsystem) or `allowedMethods` (those the
/// client may call), in X-Road's JSON shape (PR-MREST Annex B). A service with an OpenAPI
/// description is `OPENAPI` and lists its operations (`allowedMethods`: those the client's
/// grants cover in full); one without is `REST` and lists `* **` (`allowedMethods`: the
/// client's grants, `*` for any method, `**` for any path).
fn list_methods(
    request: &VerifiedRequest,
    local: &LocalConf,
    conf: &GlobalConf,
    only_allowed: bool,
) -> Answer {
    let provider = request.service().subsystem();
    let pairs = |endpoints: Vec<openapi::Operation>| -> Vec<(String, String)> {
        endpoints.into_iter().map(|o| (o.method, o.path)).collect()
    };
    let services: Vec<serde_json::Value> = if only_allowed {
        local
            .access
            .allowed_methods(request.client(), provider, conf)
            .into_iter()
            .filter_map(|(id, granted)| Some((local.service(&id)?, granted)))
            .map(|(entry, granted)| {
                let doc = description(entry);
                let mut endpoints = pairs(doc.as_ref().map(|d| d.endpoints()).unwrap_or_default());
                endpoints.retain(|(method, path)| {
                    Method::from_bytes(method.as_bytes()).is_ok_and(|m| {
                        local
                            .access
                            .allows(request.client(), &entry.id, &m, path, conf)
                    })
                });
                if endpoints.is_empty() {
                    endpoints = granted
                        .iter()
                        .map(|e| {
                            (
                                e.method.clone().unwrap_or_else(|| "*".into()),
                                e.path.clone().unwrap_or_else(|| "**".into()),
                            )
                        })
                        .collect();
                }
                service_json(&entry.id, doc.as_ref(), &endpoints)
            })
            .collect()
    } else {
        local
            .services_of(provider)
            .map(|entry| {
                let doc = description(entry);
                let endpoints = match &doc {
                    Some(d) => pairs(d.endpoints()),
                    None => vec![("*".into(), "**".into())],
                };
                service_json(&entry.id, doc.as_ref(), &endpoints)
            })
            .collect()
    };
    json_answer(&serde_json::json!({ "service": services }))
}

/// `getOpenAPI?serviceCode=X`: the service's OpenAPI document, for clients allowed to call it.
fn open_api(
    request: &VerifiedRequest,
    service: &globalconf::ServiceId,
    local: &LocalConf,
    conf: &GlobalConf,
) -> Result<Answer, XRoadError> {
    let unknown = || {
        XRoadError::new(
            ServerProxyCode::UnknownService,
            format!("service {service} has no OpenAPI description here"),
        )
    };
    let entry = local.service(service).ok_or_else(unknown)?;
    let allowed = local
        .access
        .allowed_methods(request.client(), service.subsystem(), conf)
        .iter()
        .any(|(s, _)| s == service);
    if !allowed {
        return Err(XRoadError::new(
            ServerProxyCode::AccessDenied,
            format!("{} may not call {service}", request.client()),
        ));
    }
    let text = entry.openapi.as_deref().ok_or_else(unknown)?;
    // Served with its server URLs cut to their paths (exchange::openapi): the provider's hosts
    // stay private, and clients call through their security server.
    let doc = openapi::Description::parse(text).map_err(|e| {
        XRoadError::new(
            ServerProxyCode::InternalError,
            format!("the OpenAPI description of {service} cannot be read: {e}"),
        )
    })?;
    let (content_type, served) = doc.served();
    Ok((
        StatusCode::OK,
        vec![("content-type".into(), content_type.into())],
        made_here(served),
    ))
}
