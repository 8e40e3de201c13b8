//! The server proxy's face to peer servers: the `Peer` gRPC service. `Exchange` goes to the
//! [`ServerProxy`], `AddCheckpoint` to this server's witness, `GetConfiguration` and
//! `OfferConfiguration` to the [`ConfigurationRelay`] (peers refresh from each other and pass a
//! new configuration on, DESIGN §4).

use std::sync::Arc;

use exchange::{ServerProxyCode, XRoadError};
use globalconf::InstanceId;
use proto::v1 as pb;

use crate::confclient::{OfferError, TakeOfferError};
use crate::federation::Federation;
use crate::log::witness;
use crate::peer::wire::{AnswerThenConfirm, error_to_status};
use crate::proxy::server::ServerProxy;

/// The peer-facing gRPC service of this server.
#[derive(Debug, Clone)]
pub struct PeerService {
    proxy: Arc<ServerProxy>,
    relay: ConfigurationRelay,
}

impl PeerService {
    pub fn new(proxy: Arc<ServerProxy>) -> Self {
        let relay = ConfigurationRelay::new(Arc::clone(&proxy.confs));
        Self { proxy, relay }
    }

    /// `max_message`: the largest gRPC message either way.
    pub fn router(self, max_message: usize) -> axum::Router {
        let server = pb::peer_server::PeerServer::new(self)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        tonic::service::Routes::new(server).into_axum_router()
    }
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    type ExchangeStream = AnswerThenConfirm;

    async fn exchange(
        &self,
        request: tonic::Request<tonic::Streaming<pb::ExchangeRequest>>,
    ) -> Result<tonic::Response<AnswerThenConfirm>, tonic::Status> {
        let peer = peer_of(&request);
        let mut stream = request.into_inner();
        match self.proxy.exchange(peer, &mut stream).await {
            Ok(((header, body), logged)) => Ok(tonic::Response::new(AnswerThenConfirm::new(
                header, body, logged,
            ))),
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
                .confs
                .own()
                .valid_now()
                .map_err(|m| XRoadError::new(ServerProxyCode::OutdatedGlobalConf, m))?;
            let conf = conf.conf();
            // The pinned TLS certificate says which server is asking.
            let peer = peer_of(&request)
                .and_then(|p| conf.server_by_cert(&p))
                .map(|s| s.id.clone())
                .ok_or_else(|| {
                    XRoadError::new(ServerProxyCode::UnauthenticatedPeer, "unknown peer")
                })?;
            let now = proxy.clock.unix_now();
            let owner = proxy.this.owner();
            let key = proxy.keys.signer(owner, conf, now).ok_or_else(|| {
                XRoadError::new(
                    ServerProxyCode::NoSigningKey,
                    format!("no valid key of {owner}"),
                )
            })?;
            let signer = tlog::CosignatureSigner::new(
                proxy.this.to_string(),
                certs::SigningKey::clone(&key),
            )
            .map_err(|e| XRoadError::new(ServerProxyCode::InternalError, e.to_string()))?;
            witness(
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
        let peer = peer_of(&request);
        self.relay
            .get(peer, &request.into_inner())
            .map(tonic::Response::new)
    }

    async fn offer_configuration(
        &self,
        request: tonic::Request<pb::OfferConfigurationRequest>,
    ) -> Result<tonic::Response<pb::OfferConfigurationResponse>, tonic::Status> {
        let peer = peer_of(&request);
        self.relay
            .offer(peer, request.into_inner())
            .await
            .map(tonic::Response::new)
    }
}

/// The certificate the peer presented (the TLS handshake pinned it).
pub fn peer_of<T>(request: &tonic::Request<T>) -> Option<[u8; 32]> {
    request
        .extensions()
        .get::<runtime::PeerCertificate>()
        .map(|p| p.0)
}

/// Serves the configurations this server holds to peers and takes new ones from them
/// (DESIGN §4 (b)): the configuration-relay half of the peer service, also used on its own by
/// `bench converge`.
#[derive(Debug, Clone)]
pub struct ConfigurationRelay {
    confs: Arc<Federation>,
}

impl ConfigurationRelay {
    pub fn new(confs: Arc<Federation>) -> Self {
        Self { confs }
    }

    /// The handshake checked the certificate against the configurations of that moment; a
    /// pooled connection outlives them, so a server removed since (or of an instance no longer
    /// federated) is refused here, by the same policy.
    fn check_peer(&self, peer: Option<[u8; 32]>) -> Result<(), tonic::Status> {
        if peer.is_some_and(|p| certs::PinPolicy::allows(self.confs.as_ref(), &p)) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(
                "the configurations this server holds do not list the caller",
            ))
        }
    }

    /// The configuration asked for: the own instance's (also when the caller does not say), or
    /// a federated instance's that this server holds and relays; empty when it is not newer
    /// than the one the caller has.
    pub fn get(
        &self,
        peer: Option<[u8; 32]>,
        request: &pb::GetConfigurationRequest,
    ) -> Result<pb::SignedConfiguration, tonic::Status> {
        let own = self
            .confs
            .own()
            .current()
            .ok_or_else(|| tonic::Status::unavailable("this server holds no configuration"))?;
        self.check_peer(peer)?;
        let held = if request.instance.is_empty() {
            Some(own)
        } else {
            let instance: InstanceId = request
                .instance
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("malformed instance"))?;
            self.confs.held(&instance)
        };
        let held = held.ok_or_else(|| {
            tonic::Status::not_found(format!(
                "this server holds no configuration of instance {}",
                request.instance
            ))
        })?;
        if held.serial() <= request.have_serial {
            return Ok(pb::SignedConfiguration::default());
        }
        // The stored envelope was produced by prost and checked to have no unknown data, so
        // decoding and re-encoding it gives back the same bytes.
        <pb::SignedConfiguration as prost::Message>::decode(held.envelope())
            .map_err(|_| tonic::Status::internal("stored configuration does not decode"))
    }

    /// A server of this instance says it holds a configuration with `request.serial`: when
    /// that is newer, this server fetches it from that server and keeps it if it verifies (and
    /// then tells others, [`crate::confclient::ConfClient::spread`]).
    pub async fn offer(
        &self,
        peer: Option<[u8; 32]>,
        request: pb::OfferConfigurationRequest,
    ) -> Result<pb::OfferConfigurationResponse, tonic::Status> {
        self.check_peer(peer)?;
        let own = self.confs.own();
        // Only a server the own configuration lists offers it: this server fetches from it.
        let from = own
            .current()
            .and_then(|c| peer.and_then(|p| c.conf().server_by_cert(&p).cloned()))
            .ok_or_else(|| {
                tonic::Status::permission_denied(
                    "only servers of this instance offer its configuration",
                )
            })?;
        match own.take_offer(&from, request.serial).await {
            Ok(_) => Ok(pb::OfferConfigurationResponse {
                serial: own.current().map_or(0, |c| c.serial()),
            }),
            Err(TakeOfferError::Fetch(e)) => Err(tonic::Status::unavailable(e)),
            Err(TakeOfferError::Offer(OfferError::Refused(e))) => {
                Err(tonic::Status::invalid_argument(e.to_string()))
            }
            Err(TakeOfferError::Offer(OfferError::Store(e))) => {
                tracing::error!(error = %e, "cannot store a configuration a peer offered");
                Err(tonic::Status::internal("cannot store the configuration"))
            }
        }
    }
}
