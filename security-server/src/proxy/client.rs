//! The client proxy: where an organisation's information systems call, with X-Road's REST
//! protocol (DESIGN §5.1). It recognises the call, signs a request header with the client
//! member's key, sends it over pinned mutual TLS to a security server hosting the provider
//! (failing over to the next one when a connection cannot be made, before any byte of the
//! request is sent), verifies the signed response, and answers with X-Road's response headers.
//!
//! Every request first needs a usable global configuration: a server whose configuration is
//! missing or expired refuses with `Server.ClientProxy.OutdatedGlobalConf`, as X-Road does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use certs::Clock;
use globalconf::{ClientId, GlobalConf, InstanceId, SecurityServerId, SubsystemId, VerifiedConf};
use proto::v1 as pb;

use exchange::message::{self, RequestContext};
use exchange::metaservice;
use exchange::rest::{self, ClientCall, ClientRequest, ResponseMeta};
use exchange::{ClientCode, ClientProxyCode, ErrorFormat, XRoadError};

use crate::client_auth;
use crate::error::error_response;
use crate::federation::{Federation, Refusal};
use crate::keys::MemberKeys;
use crate::log::{Failed, Logged, MessageLogger, Queued};
use crate::metrics::{self, Metrics};
use crate::peer::{self, Part as _, PeerPool};
use crate::proxy::health::Health;
use crate::serverconf::ServerConf;
use crate::spool::{MessageBody, ReadError, Room, Spool};

/// What the client proxy is built from.
#[derive(Debug)]
pub struct ClientProxySettings {
    pub this: SecurityServerId,
    /// Where request and response bodies are read into.
    pub spool: Spool,
    pub request_timeout: Duration,
    /// `exchange.max_clock_skew_secs` when set; else the instance parameter.
    pub skew_override: Option<Duration>,
    /// How hosted subsystems' information systems must connect ([`client_auth`]).
    pub serverconf: Arc<ServerConf>,
}

#[derive(Debug)]
struct Inner {
    settings: ClientProxySettings,
    /// The own configuration and the federated instances'.
    confs: Arc<Federation>,
    keys: Arc<MemberKeys>,
    peers: Arc<PeerPool>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    logger: MessageLogger,
    health: Health,
}

#[derive(Debug, Clone)]
pub struct ClientProxy {
    inner: Arc<Inner>,
}

impl ClientProxy {
    pub fn new(
        settings: ClientProxySettings,
        confs: Arc<Federation>,
        keys: Arc<MemberKeys>,
        peers: Arc<PeerPool>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        logger: MessageLogger,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                confs,
                keys,
                peers,
                clock,
                metrics,
                logger,
                health: Health::default(),
            }),
        }
    }

    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

/// The size of the answer's body, for the operational data (an extension of the response the
/// client proxy makes; never sent).
#[derive(Debug, Clone, Copy)]
struct ResponseBytes(u64);

async fn handle(State(proxy): State<ClientProxy>, request: Request) -> Response {
    let started = Instant::now();
    let message_id = request
        .headers()
        .get(rest::header::ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let format = ErrorFormat::from_accept(
        request
            .headers()
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let mut parties = None;
    let (response, outcome) = match proxy.inner.call(request, &mut parties).await {
        Ok(r) => (r, "ok".to_owned()),
        Err(mut e) => {
            if e.message_id.is_none() {
                e.message_id = message_id;
            }
            tracing::info!(error = %e, id = e.message_id.as_deref().unwrap_or(""), "client proxy refused a request");
            let outcome = e.error_type();
            (error_response(&e, format), outcome)
        }
    };
    proxy.inner.metrics.observe_exchange(
        metrics::CLIENT_PROXY,
        &outcome,
        started.elapsed(),
        parties.as_ref(),
    );
    response
}

impl Inner {
    fn max_skew(&self, conf: &GlobalConf) -> Duration {
        self.settings
            .skew_override
            .unwrap_or(conf.parameters().max_clock_skew)
    }

    /// Answers one request; `parties` is set once the request says which service and client.
    async fn call(
        &self,
        request: Request,
        parties: &mut Option<metrics::Parties>,
    ) -> Result<Response, XRoadError> {
        let conf = self
            .confs
            .own()
            .valid_now()
            .map_err(XRoadError::outdated_globalconf)?;
        let (parts, body) = request.into_parts();
        let request = match rest::parse_call(&parts)? {
            // Another instance's clients come from its configuration (as X-Road's
            // `listClients?xRoadInstance=FI` does).
            ClientCall::ListClients {
                instance: Some(instance),
            } if &instance != conf.conf().instance() => {
                // An instance this server does not exchange with has no clients it knows of:
                // an empty list, as X-Road answers for an unknown instance.
                let theirs = match self.confs.conf_for(&instance) {
                    Ok(theirs) => theirs,
                    Err(r @ (Refusal::Own(_) | Refusal::Outdated(..))) => return Err(refused(r)),
                    Err(Refusal::NotFederated { .. } | Refusal::NotAllowed(_)) => conf.clone(),
                };
                return Ok(list_clients(theirs.conf(), Some(&instance), &parts));
            }
            ClientCall::ListClients { instance } => {
                return Ok(list_clients(conf.conf(), instance.as_ref(), &parts));
            }
            ClientCall::Service(r) => *r,
        };
        *parties = Some(metrics::Parties {
            service: request.service.to_string(),
            client: request.client.to_string(),
            message_id: request.message_id.clone(),
            ..metrics::Parties::default()
        });
        let id = request.message_id.clone();
        // From here on every error is about this message.
        self.check_client(conf.conf(), &parts, &request.client)
            .map_err(|e| e.with_id(id.clone()))?;
        self.exchange(&conf, body, request, parties)
            .await
            .map_err(|e| e.or_id(&id))
    }

    /// Whether the connection meets what `client`'s information systems must use
    /// ([`client_auth`]): before anything is read or signed.
    fn check_client(
        &self,
        conf: &GlobalConf,
        parts: &http::request::Parts,
        client: &ClientId,
    ) -> Result<(), XRoadError> {
        let local = self.settings.serverconf.snapshot();
        let members: std::collections::BTreeSet<_> = conf
            .server(&self.settings.this)
            .map(|s| s.hosted.iter().map(SubsystemId::member).collect())
            .unwrap_or_default();
        let transport = client_auth::Transport {
            tls: parts.extensions.get::<runtime::TlsConnection>().is_some(),
            client_cert: parts
                .extensions
                .get::<runtime::PeerCertificate>()
                .map(|c| c.0),
        };
        client_auth::check(
            client,
            local.client_auth_of(client),
            members.len() > 1,
            transport,
        )
    }

    /// Reads the body (within the memory budget, or into the spool) and forwards the call,
    /// within the request timeout.
    async fn exchange(
        &self,
        conf: &VerifiedConf,
        body: Body,
        request: ClientRequest,
        parties: &mut Option<metrics::Parties>,
    ) -> Result<Response, XRoadError> {
        // The length the connection will deliver (`Content-Length`), if known.
        let declared = hyper::body::Body::size_hint(&body).exact();
        let body = self
            .settings
            .spool
            .read((declared, Room::Wait), body.into_data_stream())
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(max) => XRoadError::new(
                    ClientCode::BodyTooLarge,
                    format!("the request body is larger than {max} bytes"),
                ),
                ReadError::Broken(m) => XRoadError::new(
                    ClientCode::BrokenBody,
                    format!("cannot read the request body: {m}"),
                ),
                ReadError::Storage(e) => spool_failed("request", &e),
            })?;
        if let Some(p) = parties.as_mut() {
            p.request_bytes = Some(body.len());
        }

        let exchange = self.forward(conf, request, body);
        let response = tokio::time::timeout(self.settings.request_timeout, exchange)
            .await
            .map_err(|_| {
                XRoadError::new(
                    ClientProxyCode::NetworkError,
                    format!("no answer within {:?}", self.settings.request_timeout),
                )
            })??;
        if let (Some(p), Some(ResponseBytes(n))) = (
            parties.as_mut(),
            response.extensions().get::<ResponseBytes>(),
        ) {
            p.response_bytes = Some(*n);
        }
        Ok(response)
    }

    async fn forward(
        &self,
        verified_conf: &VerifiedConf,
        request: ClientRequest,
        body: MessageBody,
    ) -> Result<Response, XRoadError> {
        let conf = verified_conf.conf();
        let id = request.message_id.clone();
        // X-Road-Request-Id: ours, unique per request (the client may repeat its X-Road-Id);
        // signed into the header, the provider's replay window is keyed on it.
        let request_id = rest::new_message_id();
        let err = |code: ClientProxyCode, msg: String| XRoadError::new(code, msg);

        let this = conf.server(&self.settings.this).ok_or_else(|| {
            err(
                ClientProxyCode::ServerNotListed,
                format!(
                    "this server {} is not in the global configuration",
                    self.settings.this
                ),
            )
        })?;
        if !conf.has_client(&request.client) {
            return Err(err(
                ClientProxyCode::UnknownMember,
                format!(
                    "client {} is not in the global configuration",
                    request.client
                ),
            ));
        }
        if !conf.hosts_client(&this.id, &request.client) {
            return Err(err(
                ClientProxyCode::ClientNotHosted,
                format!(
                    "client {} is not hosted by this security server",
                    request.client
                ),
            ));
        }
        let provider = request.service.subsystem();
        // The provider's instance's configuration says who hosts it, and under which keys its
        // answer is signed: this one's, or a federated instance's.
        let provider_instance = instance_of(provider);
        let theirs = if &provider_instance == conf.instance() {
            verified_conf.clone()
        } else {
            self.confs.conf_for(&provider_instance).map_err(refused)?
        };
        let hosting = theirs.conf().servers_hosting(provider);
        let candidates: Vec<SecurityServerId> = match &request.target_server {
            Some(t) if hosting.contains(t) => vec![t.clone()],
            Some(t) => {
                return Err(err(
                    ClientProxyCode::UnknownService,
                    format!("security server {t} does not host {provider}"),
                ));
            }
            None => self.health.order(hosting),
        };
        if candidates.is_empty() {
            return Err(err(
                ClientProxyCode::UnknownService,
                format!("no security server hosts {provider}"),
            ));
        }
        let now = self.clock.unix_now();
        let key = self
            .keys
            .signer(request.client.member(), conf, now)
            .ok_or_else(|| {
                err(
                    ClientProxyCode::NoSigningKey,
                    format!("no signing key of {} is valid now", request.client.member()),
                )
            })?;

        let mut failures = Vec::new();
        for server_id in candidates {
            let Some(server) = theirs.conf().server(&server_id) else {
                continue;
            };
            for address in &server.addresses {
                let mut client = match self.peers.connect(server, address).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.health.failed(&server_id);
                        failures.push(format!("{server_id} at {address}: {e}"));
                        continue;
                    }
                };
                let header = message::build_request_header(
                    &request,
                    &request_id,
                    body.sha256(),
                    &key.key_id(),
                    now,
                    &server_id,
                );
                let signed = message::try_sign_request(&header, &key).map_err(|e| {
                    XRoadError::new(
                        ClientProxyCode::InternalError,
                        format!("the signing key could not sign: {e}"),
                    )
                })?;
                let context = RequestContext::new(&id, &signed, &server_id);
                // Logged before it is passed on; a failed write stops the exchange.
                let queued = self.logger.enqueue(Logged {
                    kind: pb::LogKind::Request,
                    side: pb::LogSide::Client,
                    message_id: &id,
                    client: &request.client,
                    service: &request.service,
                    signed: &signed,
                    body: &body,
                    data_subject: request.data_subject.as_deref(),
                    peer: &server_id,
                })?;
                let outgoing = peer::outgoing(signed, &body);
                let unfinished = Unfinished {
                    logger: &self.logger,
                    message_id: &id,
                    request: &request,
                    peer: &server_id,
                    armed: true,
                };
                let result = match peer::call_exchange(&mut client, outgoing).await {
                    Ok(Some((answer, confirmation))) => {
                        self.health.succeeded(&server_id);
                        self.respond(
                            &theirs,
                            (&request, &request_id),
                            &context,
                            (answer, confirmation),
                            queued,
                        )
                        .await
                    }
                    Ok(None) => Err(err(
                        ClientProxyCode::InvalidResponse,
                        format!("{server_id} ended the exchange without a response"),
                    )),
                    Err(status) if peer::is_connect_failure(&status) => {
                        self.peers.forget(server, address);
                        self.health.failed(&server_id);
                        let failure = format!("{server_id} at {address}: {}", status.message());
                        unfinished
                            .failed(&err(ClientProxyCode::NetworkError, failure.clone()), false);
                        failures.push(failure);
                        continue;
                    }
                    Err(status) => match peer::status_to_error(&status) {
                        Some(e) => Err(e),
                        None => {
                            self.peers.forget(server, address);
                            Err(err(
                                ClientProxyCode::NetworkError,
                                format!(
                                    "the exchange with {server_id} broke off: {}",
                                    status.message()
                                ),
                            ))
                        }
                    },
                };
                // The request was sent: the provider's server may have logged the exchange,
                // answered or not, so the client's log says how it ended for the client.
                match &result {
                    Ok(_) => unfinished.done(),
                    Err(e) => unfinished.failed(e, true),
                }
                return result;
            }
        }
        Err(err(
            ClientProxyCode::NetworkError,
            format!(
                "cannot connect to any security server hosting {provider}: {}",
                failures.join("; ")
            ),
        ))
    }

    async fn respond(
        &self,
        verified_conf: &VerifiedConf,
        (request, request_id): (&ClientRequest, &str),
        context: &RequestContext,
        (answer, mut confirmation): (pb::ExchangeResponse, peer::Confirmation),
        request_record: Queued,
    ) -> Result<Response, XRoadError> {
        let id = request.message_id.clone();
        let conf = verified_conf.conf();
        let (header, first, length) = answer.into_parts();
        let header = header.ok_or_else(|| {
            XRoadError::new(
                ClientProxyCode::InvalidResponse,
                "the response has no header",
            )
        })?;
        // The request's body may hold room in the budget: the answer never waits for more.
        let body = peer::read_body(
            (&self.settings.spool, Room::OrSpool),
            (first, length),
            confirmation.stream(),
        )
        .await
        .map_err(|e| match e {
            ReadError::TooLarge(max) => XRoadError::new(
                ClientProxyCode::InvalidResponse,
                format!("the response body is larger than {max} bytes"),
            ),
            ReadError::Broken(m) => XRoadError::new(
                ClientProxyCode::NetworkError,
                format!("the response body did not arrive whole: {m}"),
            ),
            ReadError::Storage(e) => spool_failed("response", &e),
        })?;
        let verified = message::verify_response(
            &header,
            body.sha256(),
            conf,
            request.service.subsystem(),
            context,
            self.clock.unix_now(),
            self.max_skew(conf),
        )?;
        // Logged while the provider's server syncs its own record; answered only once both
        // are durable.
        let logged = self.logger.write(
            Logged {
                kind: pb::LogKind::Response,
                side: pb::LogSide::Client,
                message_id: &id,
                client: &request.client,
                service: &request.service,
                signed: &header,
                body: &body,
                data_subject: None,
                peer: verified.server(),
            },
            request_record,
        );
        let (logged, confirmed) = tokio::join!(logged, confirmation.confirmed());
        logged?;
        confirmed.map_err(|status| match peer::status_to_error(&status) {
            Some(e) => e,
            None => XRoadError::new(
                ClientProxyCode::NetworkError,
                format!(
                    "{} answered but did not confirm that it logged the answer: {}",
                    verified.server(),
                    status.message()
                ),
            ),
        })?;
        let internal = |e: rest::InvalidHeader| {
            XRoadError::new(ClientProxyCode::InvalidResponse, e.to_string())
        };
        let response_bytes = body.len();
        let mut response = Response::new(body.into_http());
        response
            .extensions_mut()
            .insert(ResponseBytes(response_bytes));
        *response.status_mut() = verified.status();
        let headers = response.headers_mut();
        rest::apply_headers(headers, verified.headers()).map_err(internal)?;
        rest::write_response_headers(
            headers,
            &ResponseMeta {
                message_id: id.clone(),
                request_id: Some(request_id.to_owned()),
                client: request.client.clone(),
                service: request.service.clone(),
                request_hash_b64: verified.request_hash_b64(),
                security_server: verified.server().clone(),
            },
        )
        .map_err(internal)?;
        Ok(response)
    }
}

/// The instance a subsystem belongs to.
fn instance_of(subsystem: &SubsystemId) -> InstanceId {
    subsystem.member().instance_id()
}

/// Why another instance's configuration cannot be used, as the client's X-Road error: an
/// instance this server does not exchange with is unknown to it, as in X-Road
/// (`UnknownMember`); an expired or missing configuration is `OutdatedGlobalConf`.
fn refused(refusal: Refusal) -> XRoadError {
    match refusal {
        Refusal::Own(m) => XRoadError::outdated_globalconf(m),
        r @ Refusal::Outdated(..) => XRoadError::outdated_globalconf(r.to_string()),
        r @ (Refusal::NotFederated { .. } | Refusal::NotAllowed(_)) => {
            XRoadError::new(ClientProxyCode::UnknownMember, r.to_string())
        }
    }
}

/// A body that could not be written to (or read back from) the spool: this server's fault.
fn spool_failed(what: &str, e: &std::io::Error) -> XRoadError {
    tracing::error!(error = %e, "the {what} body could not be spooled");
    XRoadError::new(
        ClientProxyCode::InternalError,
        format!("the {what} body could not be spooled to disk"),
    )
}

/// `GET /listClients`: the members and subsystems of the instance, XML or JSON as `Accept`
/// asks ([`metaservice::list_clients`]).
fn list_clients(
    conf: &GlobalConf,
    instance: Option<&InstanceId>,
    parts: &http::request::Parts,
) -> Response {
    let accept = parts
        .headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let json = metaservice::list_clients_wants_json(accept);
    let (content_type, body) = metaservice::list_clients(conf, instance, json);
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// An exchange whose request record is logged and whose end is not yet: it ends with
/// [`Unfinished::done`] (answered) or [`Unfinished::failed`], which notes in the log what the
/// client got. Dropped before either (the client's request timed out, or the client hung up), it
/// notes that the exchange was abandoned.
struct Unfinished<'a> {
    logger: &'a MessageLogger,
    message_id: &'a str,
    request: &'a ClientRequest,
    peer: &'a SecurityServerId,
    armed: bool,
}

impl Unfinished<'_> {
    fn done(mut self) {
        self.armed = false;
    }

    fn failed(mut self, error: &XRoadError, sent: bool) {
        self.armed = false;
        self.note(error, sent);
    }

    fn note(&self, error: &XRoadError, sent: bool) {
        self.logger.note_failure(Failed {
            message_id: self.message_id,
            client: &self.request.client,
            service: &self.request.service,
            peer: self.peer,
            error,
            sent,
        });
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.note(
                &XRoadError::new(
                    ClientProxyCode::NetworkError,
                    "abandoned before an answer: the request timed out or the client hung up",
                ),
                true,
            );
        }
    }
}
