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
use http::StatusCode;
use proto::v1 as pb;

use crate::backend::Backend;
use crate::confclient::ConfClient;
use crate::error::{Origin, XRoadError};
use crate::keys::MemberKeys;
use crate::message::{self, HashedBody, VerifiedRequest, request_codes};
use crate::messagelog::{Durable, Logged, MessageLogger};
use crate::metrics::{self, Metrics};
use crate::replay::ReplayCache;
use crate::rest::{self, metaservice};
use crate::serverconf::{LocalConf, ServerConf};
use crate::usage;

/// Error codes of this module (`Server.ServerProxy.*`); `message` and `backend` have the rest.
pub mod codes {
    /// The provider's server holds no usable global configuration.
    pub const OUTDATED_GLOBALCONF: &str = "OutdatedGlobalConf";
    /// The access rights do not allow this client this service, method and path.
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// The provider's server has no valid signing key for the provider member.
    pub const NO_SIGNING_KEY: &str = "NoSigningKey";
    /// The TLS connection carried no client certificate (cannot happen with the pinned config).
    pub const UNAUTHENTICATED_PEER: &str = "UnauthenticatedPeer";
    /// (Witness RPC) a peer's checkpoint is malformed, unsigned, forked, rolled back or
    /// inconsistent with what this witness cosigned before.
    pub const CHECKPOINT_REFUSED: &str = "CheckpointRefused";
    /// (`findUsage`, `usageEvidence`) the request's method, path or parameters are wrong (the
    /// client's server checks them first; this answers a server that did not).
    pub const BAD_REQUEST: &str = "BadRequest";
    /// (`usageEvidence`) no access record by that X-Road-Id that this data subject may see.
    pub const USAGE_RECORD_NOT_FOUND: &str = "UsageRecordNotFound";
    /// (`usageEvidence`) the record is not under a signed checkpoint yet; retry shortly.
    pub const NOT_YET_CHECKPOINTED: &str = "NotYetCheckpointed";
    /// The message log could not be read.
    pub const LOG_READ_FAILED: &str = "LogReadFailed";
    /// Unexpected internal failure.
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// Everything the server proxy needs, shared by all connections.
#[derive(Debug)]
pub struct ServerProxy {
    pub this: SecurityServerId,
    pub conf: Arc<ConfClient>,
    pub serverconf: Arc<ServerConf>,
    pub keys: Arc<MemberKeys>,
    pub replay: ReplayCache,
    pub backend: Backend,
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

    /// Handles one exchange: the signed answer, to be sent at once, and the wait until its
    /// response record is durable, after which the call may end OK (the `Exchange` RPC's
    /// contract). Records the outcome in the metrics once both are known.
    pub async fn exchange(
        &self,
        peer_cert_sha256: Option<[u8; 32]>,
        request: pb::ExchangeRequest,
    ) -> Result<
        (
            pb::ExchangeResponse,
            impl Future<Output = Result<(), XRoadError>> + Send + 'static,
        ),
        XRoadError,
    > {
        let started = Instant::now();
        match self.handle(peer_cert_sha256, request).await {
            Ok((answer, logged)) => {
                // Made only once answered: an exchange dropped before (its caller gone) is not
                // counted, as before the answer went out early.
                let mut outcome = Outcome {
                    metrics: Arc::clone(&self.metrics),
                    started,
                    outcome: Cow::Borrowed("ok"),
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
                self.metrics
                    .observe(metrics::SERVER_PROXY, &e.error_type(), started.elapsed());
                Err(e)
            }
        }
    }

    async fn handle(
        &self,
        peer_cert_sha256: Option<[u8; 32]>,
        request: pb::ExchangeRequest,
    ) -> Result<(pb::ExchangeResponse, Durable), XRoadError> {
        let conf = self
            .conf
            .valid_now()
            .map_err(|m| XRoadError::server_proxy(codes::OUTDATED_GLOBALCONF, m))?;
        let conf = conf.conf();
        let peer = peer_cert_sha256.ok_or_else(|| {
            XRoadError::server_proxy(codes::UNAUTHENTICATED_PEER, "no client certificate")
        })?;
        let header = request.header.ok_or_else(|| {
            XRoadError::server_proxy(request_codes::INVALID_MESSAGE, "the exchange has no header")
        })?;
        let body = HashedBody::new(Bytes::from(request.body));
        let now = self.clock.unix_now();
        let verified = message::verify_request(
            &header,
            &body,
            conf,
            &peer,
            &self.this,
            now,
            self.max_skew(conf),
            &self.replay,
        )?;
        let id = verified.message_id().to_owned();
        let local = self.serverconf.snapshot();

        // Decide what answers the request (and check access) before logging it, so a refused
        // request is not recorded as passed on.
        enum Plan<'a> {
            Meta(&'a str),
            Usage(&'a str),
            Backend(&'a crate::serverconf::ServiceEntry),
        }
        let code = verified.service().code();
        let plan = match code {
            metaservice::LIST_METHODS | metaservice::ALLOWED_METHODS | metaservice::GET_OPENAPI => {
                Plan::Meta(code)
            }
            metaservice::FIND_USAGE | metaservice::USAGE_EVIDENCE => {
                check_usage_call(&verified, &local, conf)?;
                Plan::Usage(code)
            }
            _ => {
                let entry = local.service(verified.service()).ok_or_else(|| {
                    XRoadError::server_proxy(
                        request_codes::UNKNOWN_SERVICE,
                        format!("service {} is not provided here", verified.service()),
                    )
                    .with_id(id.clone())
                })?;
                let allowed = local.access.allows(
                    verified.client(),
                    verified.service(),
                    verified.method(),
                    verified.path(),
                    conf,
                );
                if !allowed {
                    return Err(XRoadError::server_proxy(
                        codes::ACCESS_DENIED,
                        format!(
                            "{} may not call {} {} {}",
                            verified.client(),
                            verified.method(),
                            verified.service(),
                            if verified.path().is_empty() {
                                "/"
                            } else {
                                verified.path()
                            }
                        ),
                    )
                    .with_id(id));
                }
                Plan::Backend(entry)
            }
        };
        let subject = verified.header().data_subject.clone();
        self.logger.enqueue(
            Origin::ServerProxy,
            Logged {
                kind: pb::LogKind::Request,
                side: pb::LogSide::Server,
                message_id: &id,
                client: verified.client(),
                service: verified.service(),
                signed: &header,
                body: &body,
                data_subject: Some(subject.as_str()),
                peer: verified.peer(),
            },
        )?;
        let (status, headers, response_body) = match plan {
            Plan::Meta(metaservice::LIST_METHODS) => list_methods(&verified, &local, conf, false)?,
            Plan::Meta(metaservice::ALLOWED_METHODS) => {
                list_methods(&verified, &local, conf, true)?
            }
            Plan::Meta(_) => open_api(&verified, &local, conf)?,
            Plan::Usage(metaservice::FIND_USAGE) => {
                self.find_usage(&verified, &local, conf, now).await?
            }
            Plan::Usage(_) => self.usage_evidence(&verified, &local, now).await?,
            Plan::Backend(entry) => {
                let r = self
                    .backend
                    .call(entry, &verified, body.into_bytes())
                    .await?;
                (r.status, r.headers, r.body)
            }
        };

        let response_body = HashedBody::new(response_body);
        let provider = verified.service().subsystem().member();
        let key = self.keys.signer(provider, conf, now).ok_or_else(|| {
            XRoadError::server_proxy(
                codes::NO_SIGNING_KEY,
                format!("this server holds no signing key valid now for {provider}"),
            )
            .with_id(id.clone())
        })?;
        let response_header = message::build_response_header(
            &verified,
            status,
            &headers,
            &response_body,
            &key.key_id(),
            now,
            &self.this,
        );
        let signed = message::sign_response(&response_header, key);
        // Put in the log's commit order before it is passed on; the caller ends the call OK
        // only once it is durable, while the client's server checks and logs the answer.
        let logged = self.logger.begin_write(
            Origin::ServerProxy,
            Logged {
                kind: pb::LogKind::Response,
                side: pb::LogSide::Server,
                message_id: &id,
                client: verified.client(),
                service: verified.service(),
                signed: &signed,
                body: &response_body,
                data_subject: None,
                peer: verified.peer(),
            },
        )?;
        let answer = pb::ExchangeResponse {
            header: Some(signed),
            body: response_body.into_bytes().to_vec(),
        };
        Ok((answer, logged))
    }
}

/// Records an exchange's outcome in the metrics when dropped: also when the client's server
/// hangs up after the answer, before the response record is durable (it stays in the log's
/// commit order, so the exchange counts as answered).
struct Outcome {
    metrics: Arc<Metrics>,
    started: Instant,
    outcome: Cow<'static, str>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.metrics
            .observe(metrics::SERVER_PROXY, &self.outcome, self.started.elapsed());
    }
}

type Answer = (StatusCode, Vec<(String, String)>, Bytes);

impl ServerProxy {
    /// `findUsage?offset=N&limit=M` (DESIGN §7, [`usage`]).
    async fn find_usage(
        &self,
        request: &VerifiedRequest,
        local: &LocalConf,
        conf: &GlobalConf,
        now: i64,
    ) -> Result<Answer, XRoadError> {
        let id = request.message_id().to_owned();
        let number = |name: &str, default: usize| -> Result<usize, XRoadError> {
            match query_param(request, name)? {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    XRoadError::server_proxy(
                        codes::BAD_REQUEST,
                        format!("{name} must be a non-negative integer"),
                    )
                    .with_id(id.clone())
                }),
            }
        };
        let offset = number("offset", 0)?;
        let limit = number("limit", usage::DEFAULT_PAGE)?.clamp(1, usage::MAX_PAGE);
        let log = self.logger.log().clone();
        let provider = request.service().subsystem().clone();
        let subject = request.header().data_subject.clone();
        let rules = local.suppressions.clone();
        let page = tokio::task::spawn_blocking(move || {
            usage::find_usage(&log, &provider, &subject, offset, limit, &rules, now)
        })
        .await
        .map_err(|e| XRoadError::server_proxy(codes::INTERNAL_ERROR, e.to_string()))?
        .map_err(|e| log_read_failed(&id, &e))?;
        let provider = request.service().subsystem();
        Ok(json_answer(&usage::page_json(
            &page, &self.this, provider, offset, limit, conf,
        )))
    }

    /// `usageEvidence?id=X-Road-Id`: the evidence bundle of one access, without bodies.
    async fn usage_evidence(
        &self,
        request: &VerifiedRequest,
        local: &LocalConf,
        now: i64,
    ) -> Result<Answer, XRoadError> {
        let id = request.message_id().to_owned();
        let wanted = query_param(request, "id")?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                XRoadError::server_proxy(
                    codes::BAD_REQUEST,
                    "usageEvidence needs the query parameter id",
                )
                .with_id(id.clone())
            })?;
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
        .map_err(|e| XRoadError::server_proxy(codes::INTERNAL_ERROR, e.to_string()))?;
        let bundle = match bundle {
            Ok(b) => b,
            Err(usage::UsageEvidenceError::NotFound(m)) => {
                return Err(XRoadError::server_proxy(
                    codes::USAGE_RECORD_NOT_FOUND,
                    format!("no access record {m} for this data subject"),
                )
                .with_id(id));
            }
            Err(usage::UsageEvidenceError::Evidence(
                msglog::EvidenceError::NotYetCheckpointed { .. },
            )) => {
                return Err(XRoadError::server_proxy(
                    codes::NOT_YET_CHECKPOINTED,
                    "the record is not under a signed checkpoint yet; try again shortly",
                )
                .with_id(id));
            }
            Err(usage::UsageEvidenceError::Evidence(e)) => {
                tracing::error!(error = %e, id, "usage evidence export failed");
                return Err(
                    XRoadError::server_proxy(codes::LOG_READ_FAILED, e.to_string()).with_id(id),
                );
            }
            Err(usage::UsageEvidenceError::Log(e)) => return Err(log_read_failed(&id, &e)),
        };
        Ok((
            StatusCode::OK,
            vec![("content-type".into(), "application/x-protobuf".into())],
            Bytes::from(prost::Message::encode_to_vec(&bundle)),
        ))
    }
}

fn log_read_failed(id: &str, e: &msglog::LogError) -> XRoadError {
    tracing::error!(error = %e, id, "reading the message log for a transparency call failed");
    XRoadError::server_proxy(codes::LOG_READ_FAILED, "the message log could not be read")
        .with_id(id.to_owned())
}

/// A transparency call is GET without a path after the code, names a data subject, and needs a
/// grant of the provider's `findUsage` ([`usage`]).
fn check_usage_call(
    request: &VerifiedRequest,
    local: &LocalConf,
    conf: &GlobalConf,
) -> Result<(), XRoadError> {
    let id = request.message_id().to_owned();
    let code = request.service().code();
    if *request.method() != http::Method::GET || !request.path().is_empty() {
        return Err(XRoadError::server_proxy(
            codes::BAD_REQUEST,
            format!("metaservice {code} takes GET only and no path after the service code"),
        )
        .with_id(id));
    }
    if request.header().data_subject.is_empty() {
        return Err(XRoadError::server_proxy(
            codes::BAD_REQUEST,
            format!("metaservice {code} needs X-Road-Data-Subject"),
        )
        .with_id(id));
    }
    let provider = request.service().subsystem();
    let find_usage = provider
        .service(metaservice::FIND_USAGE, None)
        .map_err(|e| XRoadError::server_proxy(codes::INTERNAL_ERROR, e.to_string()))?;
    if !local
        .access
        .allows(request.client(), &find_usage, &http::Method::GET, "", conf)
    {
        return Err(XRoadError::server_proxy(
            codes::ACCESS_DENIED,
            format!("{} may not call {find_usage}", request.client()),
        )
        .with_id(id));
    }
    Ok(())
}

fn json_answer(value: &serde_json::Value) -> Answer {
    (
        StatusCode::OK,
        vec![("content-type".into(), "application/json".into())],
        Bytes::from(value.to_string()),
    )
}

fn service_json(id: &globalconf::ServiceId) -> serde_json::Value {
    let sub = id.subsystem();
    serde_json::json!({
        "object_type": "SERVICE",
        "xroad_instance": sub.member().instance(),
        "member_class": sub.member().class(),
        "member_code": sub.member().code(),
        "subsystem_code": sub.code(),
        "service_code": id.code(),
        "service_type": "REST",
    })
}

/// `listMethods` (every service of the provider subsystem) or `allowedMethods` (those the
/// client may call, with the allowed endpoints), in X-Road's JSON shape.
fn list_methods(
    request: &VerifiedRequest,
    local: &LocalConf,
    conf: &GlobalConf,
    only_allowed: bool,
) -> Result<Answer, XRoadError> {
    let provider = request.service().subsystem();
    let services: Vec<serde_json::Value> = if only_allowed {
        local
            .access
            .allowed_methods(request.client(), provider, conf)
            .into_iter()
            .filter(|(id, _)| local.service(id).is_some())
            .map(|(id, endpoints)| {
                let mut v = service_json(&id);
                v["endpoints"] = endpoints
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "method": e.method.clone().unwrap_or_else(|| "*".into()),
                            "path": e.path.clone().unwrap_or_else(|| "**".into()),
                        })
                    })
                    .collect();
                v
            })
            .collect()
    } else {
        local
            .services_of(provider)
            .map(|s| service_json(&s.id))
            .collect()
    };
    Ok(json_answer(&serde_json::json!({ "service": services })))
}

/// A metaservice's query parameter. A malformed query is this server's `BadRequest`: the
/// client's server passes on only `Server.ServerProxy.*` errors from a peer, so a `Client.*`
/// one would reach the client as `InvalidResponse` (the client proxy checks the query first,
/// so only a client's server that did not sees these).
fn query_param(request: &VerifiedRequest, name: &str) -> Result<Option<String>, XRoadError> {
    rest::query_param(request.query(), name).map_err(|e| {
        XRoadError::server_proxy(codes::BAD_REQUEST, e.message)
            .with_id(request.message_id().to_owned())
    })
}

/// `getOpenAPI?serviceCode=X`: the service's OpenAPI document, for clients allowed to call it.
fn open_api(
    request: &VerifiedRequest,
    local: &LocalConf,
    conf: &GlobalConf,
) -> Result<Answer, XRoadError> {
    let id = request.message_id().to_owned();
    let bad = |message: String| XRoadError::server_proxy(codes::BAD_REQUEST, message);
    let code = query_param(request, "serviceCode")?
        .ok_or_else(|| bad("serviceCode is missing".into()).with_id(id.clone()))?;
    let provider = request.service().subsystem();
    let service = provider
        .service(&code, None)
        .map_err(|e| bad(format!("serviceCode: {e}")).with_id(id.clone()))?;
    let unknown = || {
        XRoadError::server_proxy(
            request_codes::UNKNOWN_SERVICE,
            format!("service {service} has no OpenAPI description here"),
        )
        .with_id(id.clone())
    };
    let entry = local.service(&service).ok_or_else(unknown)?;
    let allowed = local
        .access
        .allowed_methods(request.client(), provider, conf)
        .iter()
        .any(|(s, _)| s == &service);
    if !allowed {
        return Err(XRoadError::server_proxy(
            codes::ACCESS_DENIED,
            format!("{} may not call {service}", request.client()),
        )
        .with_id(id));
    }
    let doc = entry.openapi.clone().ok_or_else(unknown)?;
    let content_type = if doc.trim_start().starts_with('{') {
        "application/json"
    } else {
        "application/yaml"
    };
    Ok((
        StatusCode::OK,
        vec![("content-type".into(), content_type.into())],
        Bytes::from(doc),
    ))
}
