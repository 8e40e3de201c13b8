//! The server proxy's face to peer servers: the `Peer` gRPC service. `Exchange` goes to the
//! [`ServerProxy`], `AddCheckpoint` to this server's witness, `GetConfiguration` answers with
//! the configuration this server holds (peers refresh from each other, DESIGN §4).

use std::sync::Arc;

use exchange::{ServerProxyCode, XRoadError};
use globalconf::InstanceId;
use proto::v1 as pb;

use crate::log::witness;
use crate::peer::wire::{AnswerThenConfirm, error_to_status};
use crate::proxy::server::ServerProxy;

/// The peer-facing gRPC service of this server.
#[derive(Debug, Clone)]
pub struct PeerService {
    proxy: Arc<ServerProxy>,
}

impl PeerService {
    pub fn new(proxy: Arc<ServerProxy>) -> Self {
        Self { proxy }
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
        let peer = request
            .extensions()
            .get::<runtime::PeerCertificate>()
            .map(|p| p.0);
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
            let peer = request
                .extensions()
                .get::<runtime::PeerCertificate>()
                .and_then(|p| conf.server_by_cert(&p.0))
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
        let peer = request
            .extensions()
            .get::<runtime::PeerCertificate>()
            .map(|p| p.0);
        let request = request.into_inner();
        let envelope = {
            let confs = &self.proxy.confs;
            let own = confs
                .own()
                .current()
                .ok_or_else(|| tonic::Status::unavailable("this server holds no configuration"))?;
            // The handshake checked the certificate against the configurations of that moment;
            // a pooled connection outlives them, so a server removed since (or of an instance
            // no longer federated) is refused here, by the same policy.
            if !peer.is_some_and(|p| certs::PinPolicy::allows(confs.as_ref(), &p)) {
                return Err(tonic::Status::permission_denied(
                    "the configurations this server holds do not list the caller",
                ));
            }
            // Whose: the own instance's (also when the caller does not say), or a federated
            // instance's that this server holds and relays.
            let held = if request.instance.is_empty() {
                Some(own)
            } else {
                let instance: InstanceId = request
                    .instance
                    .parse()
                    .map_err(|_| tonic::Status::invalid_argument("malformed instance"))?;
                confs.held(&instance)
            };
            let held = held.ok_or_else(|| {
                tonic::Status::not_found(format!(
                    "this server holds no configuration of instance {}",
                    request.instance
                ))
            })?;
            held.envelope().to_vec()
        };
        // The stored envelope was produced by prost and checked to have no unknown data, so
        // decoding and re-encoding it gives back the same bytes.
        let signed = <pb::SignedConfiguration as prost::Message>::decode(envelope.as_slice())
            .map_err(|_| tonic::Status::internal("stored configuration does not decode"))?;
        Ok(tonic::Response::new(signed))
    }
}
