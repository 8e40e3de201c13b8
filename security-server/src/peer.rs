//! Transport between security servers (DESIGN §5.2): gRPC over mutual TLS, each side pinning
//! the other's certificate against the current global configuration. tonic trusts only CA roots,
//! so the TLS handshakes are ours (rustls, `certs::pinned_*_config`) and tonic gets the streams.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use certs::{PinPolicy, PinSet, TlsIdentity};
use globalconf::{SecurityServerId, ServerInfo, VerifiedConf};
use hyper_util::rt::TokioIo;
use proto::v1 as pb;
use proto::v1::peer_client::PeerClient;
use tokio::sync::watch;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::XRoadError;
use crate::serverproxy::{ServerProxy, codes};

pub const ALPN_H2: &[u8] = b"h2";

/// Accepts a TLS peer iff the current configuration lists its certificate, so a server removed
/// from the configuration is cut off as soon as this server holds that configuration.
#[derive(Debug, Clone)]
pub struct ConfPins(pub watch::Receiver<Option<VerifiedConf>>);

impl PinPolicy for ConfPins {
    fn allows(&self, cert_sha256: &[u8; 32]) -> bool {
        self.0
            .borrow()
            .as_ref()
            .is_some_and(|c| c.conf().server_by_cert(cert_sha256).is_some())
    }
}

/// The rustls configuration of the server proxy's listener.
pub fn server_tls(
    identity: &TlsIdentity,
    conf: watch::Receiver<Option<VerifiedConf>>,
) -> Result<Arc<rustls::ServerConfig>, certs::Error> {
    let config = certs::pinned_server_config(identity, Arc::new(ConfPins(conf)), &[ALPN_H2])?;
    Ok(Arc::new(config))
}

/// Why a peer could not be called.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer address {0:?} is not host:port")]
    Address(String),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] certs::Error),
    #[error("{0}")]
    Connect(String),
}

/// A channel is for one server, at one address, pinned to one certificate.
type ChannelKey = (SecurityServerId, String, [u8; 32]);

/// One long-lived HTTP/2 channel per peer address, reconnecting lazily.
#[derive(Debug)]
pub struct PeerPool {
    identity: Arc<TlsIdentity>,
    connect_timeout: Duration,
    max_message: usize,
    channels: Mutex<HashMap<ChannelKey, Channel>>,
}

/// The connection to a peer could not be made (TCP or TLS): nothing of a request was sent, so
/// trying another server is safe.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect: {0}")]
pub struct ConnectFailed(#[source] pub std::io::Error);

/// Whether a failed call failed while connecting, before any byte of the request was sent.
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cur {
        if e.downcast_ref::<ConnectFailed>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl PeerPool {
    /// `max_message`: the largest gRPC message either way (a body plus its signed header).
    pub fn new(identity: Arc<TlsIdentity>, connect_timeout: Duration, max_message: usize) -> Self {
        Self {
            identity,
            connect_timeout,
            max_message,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn wrap(&self, channel: Channel) -> PeerClient<Channel> {
        PeerClient::new(channel)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }

    /// A connected client for `server` at `address`: the pooled channel, or a new connection made
    /// now. An error means nothing was sent, so the caller may try another server.
    pub async fn connect(
        &self,
        server: &ServerInfo,
        address: &str,
    ) -> Result<PeerClient<Channel>, PeerError> {
        let key = (
            server.id.clone(),
            address.to_owned(),
            server.tls_cert_sha256,
        );
        if let Some(channel) = self.lock().get(&key) {
            return Ok(self.wrap(channel.clone()));
        }
        let (endpoint, connector) = self.endpoint(server.tls_cert_sha256, address)?;
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| PeerError::Connect(runtime::error_chain(&e)))?;
        self.lock().insert(key, channel.clone());
        Ok(self.wrap(channel))
    }

    /// Drops the pooled channel to `server` at `address` (after it failed).
    pub fn forget(&self, server: &ServerInfo, address: &str) {
        let key = (
            server.id.clone(),
            address.to_owned(),
            server.tls_cert_sha256,
        );
        self.lock().remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelKey, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client for `server` at `address`; the server must present the certificate the
    /// configuration pins for it.
    pub fn client(
        &self,
        server: &ServerInfo,
        address: &str,
    ) -> Result<PeerClient<Channel>, PeerError> {
        let key = (
            server.id.clone(),
            address.to_owned(),
            server.tls_cert_sha256,
        );
        let mut channels = self.lock();
        if let Some(channel) = channels.get(&key) {
            return Ok(self.wrap(channel.clone()));
        }
        let (endpoint, connector) = self.endpoint(server.tls_cert_sha256, address)?;
        let channel = endpoint.connect_with_connector_lazy(connector);
        channels.insert(key, channel.clone());
        drop(channels);
        Ok(self.wrap(channel))
    }

    /// Forgets channels to servers or certificates the configuration no longer lists.
    pub fn retain(&self, conf: &globalconf::GlobalConf) {
        self.lock()
            .retain(|(id, _, pin), _| conf.server(id).is_some_and(|s| &s.tls_cert_sha256 == pin));
    }

    #[allow(clippy::type_complexity)]
    fn endpoint(
        &self,
        pin: [u8; 32],
        address: &str,
    ) -> Result<
        (
            Endpoint,
            impl tower::Service<
                Uri,
                Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
                Error = ConnectFailed,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
        ),
        PeerError,
    > {
        let uri: Uri = format!("http://{address}")
            .parse()
            .map_err(|_| PeerError::Address(address.to_owned()))?;
        if uri.port_u16().is_none() {
            return Err(PeerError::Address(address.to_owned()));
        }
        let policy = Arc::new(PinSet([pin].into_iter().collect()));
        let tls = Arc::new(certs::pinned_client_config(
            &self.identity,
            policy,
            &[ALPN_H2],
        )?);
        let connect_timeout = self.connect_timeout;
        let connector = tower::service_fn(move |uri: Uri| {
            let tls = Arc::clone(&tls);
            async move {
                let host = uri
                    .host()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let handshake = async {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    tcp.set_nodelay(true)?;
                    // The pin, not the name, authenticates the peer; the name only fills SNI.
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .unwrap_or_else(|_| {
                            rustls::pki_types::ServerName::from(std::net::Ipv4Addr::LOCALHOST)
                        })
                        .to_owned();
                    tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                };
                match tokio::time::timeout(connect_timeout, handshake).await {
                    Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
                    Ok(Err(e)) => Err(ConnectFailed(e)),
                    Err(_) => Err(ConnectFailed(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))),
                }
            }
        });
        let endpoint = Endpoint::from(uri)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok((endpoint, connector))
    }
}

/// The peer-facing gRPC service of this server.
#[derive(Debug, Clone)]
pub struct PeerService {
    conf: watch::Receiver<Option<VerifiedConf>>,
    proxy: Arc<ServerProxy>,
}

/// The gRPC metadata key that carries an X-Road error type between servers.
pub const ERROR_METADATA: &str = "x-road-error";

impl PeerService {
    pub fn new(conf: watch::Receiver<Option<VerifiedConf>>, proxy: Arc<ServerProxy>) -> Self {
        Self { conf, proxy }
    }

    /// `max_message`: the largest gRPC message either way.
    pub fn router(self, max_message: usize) -> axum::Router {
        let server = pb::peer_server::PeerServer::new(self)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        tonic::service::Routes::new(server).into_axum_router()
    }
}

/// An X-Road error as a gRPC status: the type in metadata, the message as the status message.
pub fn error_to_status(e: &XRoadError) -> tonic::Status {
    let mut status = tonic::Status::failed_precondition(e.message.clone());
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(e.error_type()) {
        status.metadata_mut().insert(ERROR_METADATA, v);
    }
    status
}

/// The X-Road error a provider's server reported in a status, if it carried one.
pub fn status_to_error(status: &tonic::Status) -> Option<XRoadError> {
    let error_type = status.metadata().get(ERROR_METADATA)?.to_str().ok()?;
    Some(XRoadError::from_remote(error_type, status.message()))
}

/// What the provider's server sends on an `Exchange` call: the signed answer at once, then the
/// end of the call once its response record is durable (status OK), or an error status if its
/// log did not keep the record. The client's server checks and logs the answer meanwhile, so
/// the two servers' fsyncs overlap instead of following each other.
pub struct AnswerThenConfirm {
    answer: Option<pb::ExchangeResponse>,
    confirm: Option<Confirming>,
}

/// Waits until the provider's response record is durable.
type Confirming = Pin<Box<dyn Future<Output = Result<(), XRoadError>> + Send>>;

impl AnswerThenConfirm {
    pub fn new(
        answer: pb::ExchangeResponse,
        confirm: impl Future<Output = Result<(), XRoadError>> + Send + 'static,
    ) -> Self {
        Self {
            answer: Some(answer),
            confirm: Some(Box::pin(confirm)),
        }
    }
}

impl std::fmt::Debug for AnswerThenConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerThenConfirm")
            .field("answer_sent", &self.answer.is_none())
            .field("confirmed", &self.confirm.is_none())
            .finish()
    }
}

impl Stream for AnswerThenConfirm {
    type Item = Result<pb::ExchangeResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(answer) = self.answer.take() {
            return Poll::Ready(Some(Ok(answer)));
        }
        let Some(confirm) = self.confirm.as_mut() else {
            return Poll::Ready(None);
        };
        let result = std::task::ready!(confirm.as_mut().poll(cx));
        self.confirm = None;
        // A failed log was reported where it failed (`MessageLogger`).
        Poll::Ready(result.err().map(|e| Err(error_to_status(&e))))
    }
}

/// The rest of an `Exchange` call after the provider's answer, which says whether the
/// provider's log kept it.
#[derive(Debug)]
pub struct Confirmation(tonic::Streaming<pb::ExchangeResponse>);

impl Confirmation {
    /// Waits for the end of the call: `Ok` once the provider's server confirmed its response
    /// record durable; its error status otherwise (or if the call broke off, or carried a
    /// second response).
    pub async fn confirmed(mut self) -> Result<(), tonic::Status> {
        match self.0.message().await? {
            None => Ok(()),
            Some(_) => Err(tonic::Status::internal(
                "the provider's security server sent more than one response",
            )),
        }
    }
}

/// Makes an `Exchange` call and waits for the answer: `Ok(None)` if the call ended OK without
/// one (a provider breaking the contract); the call's status if it was refused or failed.
pub async fn call_exchange(
    client: &mut PeerClient<Channel>,
    request: pb::ExchangeRequest,
) -> Result<Option<(pb::ExchangeResponse, Confirmation)>, tonic::Status> {
    let mut rest = client.exchange(request).await?.into_inner();
    Ok(rest
        .message()
        .await?
        .map(|answer| (answer, Confirmation(rest))))
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    type ExchangeStream = AnswerThenConfirm;

    async fn exchange(
        &self,
        request: tonic::Request<pb::ExchangeRequest>,
    ) -> Result<tonic::Response<AnswerThenConfirm>, tonic::Status> {
        let peer = request
            .extensions()
            .get::<runtime::PeerCertificate>()
            .map(|p| p.0);
        match self.proxy.exchange(peer, request.into_inner()).await {
            Ok((answer, logged)) => {
                Ok(tonic::Response::new(AnswerThenConfirm::new(answer, logged)))
            }
            Err(e) => {
                tracing::info!(error = %e, "exchange refused");
                Err(error_to_status(&e))
            }
        }
    }

    async fn add_checkpoint(
        &self,
        request: tonic::Request<pb::AddCheckpointRequest>,
    ) -> Result<tonic::Response<pb::AddCheckpointResponse>, tonic::Status> {
        let proxy = &self.proxy;
        let result = async {
            let conf = proxy
                .conf
                .valid_now()
                .map_err(|m| XRoadError::server_proxy(codes::OUTDATED_GLOBALCONF, m))?;
            let conf = conf.conf();
            // The pinned TLS certificate says which server is asking.
            let peer = request
                .extensions()
                .get::<runtime::PeerCertificate>()
                .and_then(|p| conf.server_by_cert(&p.0))
                .map(|s| s.id.clone())
                .ok_or_else(|| {
                    XRoadError::server_proxy(codes::UNAUTHENTICATED_PEER, "unknown peer")
                })?;
            let now = proxy.clock.unix_now();
            let owner = proxy.this.owner();
            let key = proxy.keys.signer(owner, conf, now).ok_or_else(|| {
                XRoadError::server_proxy(codes::NO_SIGNING_KEY, format!("no valid key of {owner}"))
            })?;
            let signer = tlog::CosignatureSigner::new(proxy.this.to_string(), key.clone())
                .map_err(|e| XRoadError::server_proxy(codes::INTERNAL_ERROR, e.to_string()))?;
            crate::messagelog::witness(
                proxy.logger.log(),
                conf,
                &peer,
                request.into_inner(),
                signer,
                u64::try_from(now).unwrap_or(0),
            )
            .await
        }
        .await;
        match result {
            Ok(answer) => Ok(tonic::Response::new(answer)),
            Err(e) => {
                tracing::info!(error = %e, "checkpoint not cosigned");
                Err(error_to_status(&e))
            }
        }
    }

    async fn get_configuration(
        &self,
        request: tonic::Request<pb::GetConfigurationRequest>,
    ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
        let peer = request
            .extensions()
            .get::<runtime::PeerCertificate>()
            .map(|p| p.0);
        let envelope = {
            let held = self.conf.borrow();
            let held = held
                .as_ref()
                .ok_or_else(|| tonic::Status::unavailable("this server holds no configuration"))?;
            // The handshake checked the certificate against the configuration of that moment;
            // a pooled connection outlives it, so a server removed since is refused here.
            if peer.is_none_or(|p| held.conf().server_by_cert(&p).is_none()) {
                return Err(tonic::Status::permission_denied(
                    "the configuration this server holds does not list the caller",
                ));
            }
            held.envelope().to_vec()
        };
        // The stored envelope was produced by prost and checked to have no unknown data, so
        // decoding and re-encoding it gives back the same bytes.
        let signed = <pb::SignedConfiguration as prost::Message>::decode(envelope.as_slice())
            .map_err(|_| tonic::Status::internal("stored configuration does not decode"))?;
        Ok(tonic::Response::new(signed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::sync::oneshot;

    use super::*;
    use crate::messagelog::LOGGING_FAILED;

    type Confirm = oneshot::Receiver<Result<(), XRoadError>>;

    /// A provider's server that answers at once and ends the call when the test says so, or
    /// refuses when it has nothing to confirm with.
    struct FakeProvider(Mutex<Option<Confirm>>);

    #[tonic::async_trait]
    impl pb::peer_server::Peer for FakeProvider {
        type ExchangeStream = AnswerThenConfirm;

        async fn exchange(
            &self,
            request: tonic::Request<pb::ExchangeRequest>,
        ) -> Result<tonic::Response<AnswerThenConfirm>, tonic::Status> {
            let Some(confirm) = self.0.lock().unwrap().take() else {
                return Err(error_to_status(&XRoadError::server_proxy(
                    codes::ACCESS_DENIED,
                    "not you",
                )));
            };
            let answer = pb::ExchangeResponse {
                header: None,
                body: request.into_inner().body,
            };
            Ok(tonic::Response::new(AnswerThenConfirm::new(
                answer,
                async move { confirm.await.unwrap() },
            )))
        }

        async fn get_configuration(
            &self,
            _: tonic::Request<pb::GetConfigurationRequest>,
        ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }

        async fn add_checkpoint(
            &self,
            _: tonic::Request<pb::AddCheckpointRequest>,
        ) -> Result<tonic::Response<pb::AddCheckpointResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }
    }

    /// Serves the fake over plain HTTP/2 on loopback; a channel to it.
    async fn connect(confirm: Option<Confirm>) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = tonic::service::Routes::new(pb::peer_server::PeerServer::new(FakeProvider(
            Mutex::new(confirm),
        )))
        .into_axum_router();
        tokio::spawn(runtime::serve_http(
            listener,
            None,
            router,
            std::future::pending(),
        ));
        Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn request(body: &[u8]) -> pb::ExchangeRequest {
        pb::ExchangeRequest {
            header: None,
            body: body.to_vec(),
        }
    }

    /// An exchange the fake answered while its record is still being synced, and the sender
    /// with which the test ends the provider's side.
    async fn answered() -> (oneshot::Sender<Result<(), XRoadError>>, Confirmation) {
        let (confirm, confirmed_by_provider) = oneshot::channel();
        let mut client = PeerClient::new(connect(Some(confirmed_by_provider)).await);
        let (answer, confirmation) = call_exchange(&mut client, request(b"records"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.body, b"records");
        (confirm, confirmation)
    }

    #[tokio::test]
    async fn the_answer_arrives_before_the_provider_confirms_and_the_call_ends_ok_after() {
        let (confirm, confirmation) = answered().await;
        let mut ending = tokio::spawn(confirmation.confirmed());
        // The call does not end before the provider confirms.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut ending)
                .await
                .is_err()
        );
        confirm.send(Ok(())).unwrap();
        ending.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_provider_whose_log_did_not_keep_the_answer_ends_the_call_with_its_error() {
        let (confirm, confirmation) = answered().await;
        confirm
            .send(Err(XRoadError::server_proxy(LOGGING_FAILED, "disk gone")))
            .unwrap();
        let status = confirmation.confirmed().await.unwrap_err();
        let e = status_to_error(&status).expect("an X-Road error");
        assert_eq!(e.error_type(), "Server.ServerProxy.LoggingFailed");
    }

    #[tokio::test]
    async fn a_refused_exchange_ends_with_the_providers_error_and_no_answer() {
        let mut client = PeerClient::new(connect(None).await);
        let status = call_exchange(&mut client, request(b"records"))
            .await
            .unwrap_err();
        let e = status_to_error(&status).expect("an X-Road error");
        assert_eq!(e.error_type(), "Server.ServerProxy.AccessDenied");
    }

    /// The call as a client's server that reads it as unary (as before the answer was sent
    /// early) makes it: tonic's unary client, which waits for the status too.
    async fn unary_call(
        channel: Channel,
        request: pb::ExchangeRequest,
    ) -> Result<pb::ExchangeResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/xroad.v1.Peer/Exchange");
        let codec = tonic_prost::ProstCodec::<pb::ExchangeRequest, pb::ExchangeResponse>::default();
        grpc.unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    #[tokio::test]
    async fn a_unary_caller_gets_the_answer_with_the_confirmation_or_the_error_instead() {
        for kept in [true, false] {
            let (confirm, confirmed_by_provider) = oneshot::channel();
            let channel = connect(Some(confirmed_by_provider)).await;
            let whole_call = tokio::spawn(unary_call(channel, request(b"x")));
            confirm
                .send(if kept {
                    Ok(())
                } else {
                    Err(XRoadError::server_proxy(LOGGING_FAILED, "disk gone"))
                })
                .unwrap();
            let result = whole_call.await.unwrap();
            if kept {
                assert_eq!(result.unwrap().body, b"x");
            } else {
                let status = result.unwrap_err();
                assert_eq!(
                    status_to_error(&status).unwrap().error_type(),
                    "Server.ServerProxy.LoggingFailed"
                );
            }
        }
    }
}
