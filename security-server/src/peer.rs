//! Transport between security servers (DESIGN §5.2): gRPC over mutual TLS, each side pinning
//! the other's certificate against the current global configuration. tonic trusts only CA roots,
//! so the TLS handshakes are ours (rustls, `certs::pinned_*_config`) and tonic gets the streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certs::{PinPolicy, PinSet, TlsIdentity};
use globalconf::{SecurityServerId, ServerInfo, VerifiedConf};
use hyper_util::rt::TokioIo;
use proto::v1 as pb;
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
}

/// A channel is for one server, at one address, pinned to one certificate.
type ChannelKey = (SecurityServerId, String, [u8; 32]);

/// One long-lived HTTP/2 channel per peer address, reconnecting lazily.
#[derive(Debug)]
pub struct PeerPool {
    identity: Arc<TlsIdentity>,
    connect_timeout: Duration,
    channels: Mutex<HashMap<ChannelKey, Channel>>,
}

impl PeerPool {
    pub fn new(identity: Arc<TlsIdentity>, connect_timeout: Duration) -> Self {
        Self {
            identity,
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
        }
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
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&key) {
            return Ok(PeerClient::new(channel.clone()));
        }
        let channel = self.connect_lazy(server.tls_cert_sha256, address)?;
        channels.insert(key, channel.clone());
        Ok(PeerClient::new(channel))
    }

    /// Forgets channels to servers or certificates the configuration no longer lists.
    pub fn retain(&self, conf: &globalconf::GlobalConf) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .retain(|(id, _, pin), _| conf.server(id).is_some_and(|s| &s.tls_cert_sha256 == pin));
    }

    fn connect_lazy(&self, pin: [u8; 32], address: &str) -> Result<Channel, PeerError> {
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
        let connector = tower::service_fn(move |uri: Uri| {
            let tls = Arc::clone(&tls);
            async move {
                let host = uri
                    .host()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                // The pin, not the name, authenticates the peer; the name only fills SNI.
                let name = rustls::pki_types::ServerName::try_from(host)
                    .unwrap_or_else(|_| {
                        rustls::pki_types::ServerName::from(std::net::Ipv4Addr::LOCALHOST)
                    })
                    .to_owned();
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let endpoint = Endpoint::from(uri)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

/// The peer-facing gRPC service of this server.
#[derive(Debug, Clone)]
pub struct PeerService {
    conf: watch::Receiver<Option<VerifiedConf>>,
}

impl PeerService {
    pub fn new(conf: watch::Receiver<Option<VerifiedConf>>) -> Self {
        Self { conf }
    }

    pub fn router(self) -> axum::Router {
        tonic::service::Routes::new(pb::peer_server::PeerServer::new(self)).into_axum_router()
    }
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn exchange(
        &self,
        _request: tonic::Request<pb::ExchangeRequest>,
    ) -> Result<tonic::Response<pb::ExchangeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "message exchange is not available on this server yet",
        ))
    }

    async fn get_configuration(
        &self,
        _request: tonic::Request<pb::GetConfigurationRequest>,
    ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
        let envelope = self
            .conf
            .borrow()
            .as_ref()
            .map(|c| c.envelope().to_vec())
            .ok_or_else(|| tonic::Status::unavailable("this server holds no configuration"))?;
        // The stored envelope was produced by prost and checked to have no unknown data, so
        // decoding and re-encoding it gives back the same bytes.
        let signed = <pb::SignedConfiguration as prost::Message>::decode(envelope.as_slice())
            .map_err(|_| tonic::Status::internal("stored configuration does not decode"))?;
        Ok(tonic::Response::new(signed))
    }
}
