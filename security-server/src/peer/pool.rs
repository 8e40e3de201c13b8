//! The connections to peer security servers: one long-lived HTTP/2 channel per peer address,
//! over mutual TLS pinned to the certificate the configuration lists (DESIGN §5.2). tonic trusts
//! only CA roots, so the TLS handshakes are ours (rustls, `certs::pinned_*_config`) and tonic
//! gets the streams. Also the server side's pinning ([`server_tls`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certs::{LiveIdentity, PinPolicy, PinSet};
use globalconf::{SecurityServerId, ServerInfo, VerifiedConf};
use hyper_util::rt::TokioIo;
use proto::v1::peer_client::PeerClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};

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
    identity: &LiveIdentity,
    conf: watch::Receiver<Option<VerifiedConf>>,
) -> Result<Arc<rustls::ServerConfig>, certs::Error> {
    let config = identity.pinned_server_config(Arc::new(ConfPins(conf)), &[ALPN_H2])?;
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

/// A channel is for one server, at one address, pinned to the certificates the configuration
/// lists for it, and made with this server's own certificate of the time: after a renewal, new
/// connections present the new one.
type ChannelKey = (SecurityServerId, String, Vec<[u8; 32]>, [u8; 32]);

/// One long-lived HTTP/2 channel per peer address, reconnecting lazily.
#[derive(Debug)]
pub struct PeerPool {
    identity: LiveIdentity,
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
    pub fn new(identity: LiveIdentity, connect_timeout: Duration, max_message: usize) -> Self {
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
        let key = self.key(server, address);
        if let Some(channel) = self.lock().get(&key) {
            return Ok(self.wrap(channel.clone()));
        }
        let (endpoint, connector) = self.endpoint(key.2.clone(), address)?;
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| PeerError::Connect(runtime::error_chain(&e)))?;
        self.lock().insert(key, channel.clone());
        Ok(self.wrap(channel))
    }

    /// Drops the pooled channel to `server` at `address` (after it failed).
    pub fn forget(&self, server: &ServerInfo, address: &str) {
        let key = self.key(server, address);
        self.lock().remove(&key);
    }

    fn key(&self, server: &ServerInfo, address: &str) -> ChannelKey {
        (
            server.id.clone(),
            address.to_owned(),
            server.pins().collect(),
            self.identity.leaf_sha256(),
        )
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
        let key = self.key(server, address);
        let mut channels = self.lock();
        if let Some(channel) = channels.get(&key) {
            return Ok(self.wrap(channel.clone()));
        }
        let (endpoint, connector) = self.endpoint(key.2.clone(), address)?;
        let channel = endpoint.connect_with_connector_lazy(connector);
        channels.insert(key, channel.clone());
        drop(channels);
        Ok(self.wrap(channel))
    }

    /// Forgets channels to servers of the configuration's instance, or certificates, that it no
    /// longer lists, and those made with a certificate this server no longer presents. Channels
    /// to other (federated) instances' servers are that instance's configuration's to judge.
    pub fn retain(&self, conf: &globalconf::GlobalConf) {
        let own = self.identity.leaf_sha256();
        let instance = conf.instance().as_str();
        self.lock().retain(|(id, _, pins, with), _| {
            *with == own
                && (id.owner().instance() != instance
                    || conf
                        .server(id)
                        .is_some_and(|s| s.pins().eq(pins.iter().copied())))
        });
    }

    /// Forgets every channel to a server of `instance` (the federation with it ended).
    pub fn forget_instance(&self, instance: &globalconf::InstanceId) {
        self.lock()
            .retain(|(id, ..), _| id.owner().instance() != instance.as_str());
    }

    #[allow(clippy::type_complexity)]
    fn endpoint(
        &self,
        pins: Vec<[u8; 32]>,
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
        let policy = Arc::new(PinSet(pins.into_iter().collect()));
        let tls = Arc::new(self.identity.pinned_client_config(policy, &[ALPN_H2])?);
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
