//! [`RawPeer`]: hand-made exchanges sent to Chiyoda's server proxy as the ministry's server would
//! send them, for tests of what a provider's server refuses (forged or stale signatures, keys
//! the configuration does not list or no longer lists as valid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use proto::v1 as pb;
use sandbox::Federation;
use sha2::{Digest as _, Sha256};

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const RECORDS: &str = "JP/MUN/131016/records";

/// Sends hand-made exchanges to Chiyoda's server proxy as the ministry's server would.
#[derive(Debug)]
pub struct RawPeer {
    pub pool: security_server::peer::PeerPool,
    /// The key requests are signed with: the ministry's first, unless replaced.
    pub key: certs::SigningKey,
    pub conf: globalconf::VerifiedConf,
}

impl RawPeer {
    pub fn new(f: &Federation) -> Self {
        let ministry = f.server(MINISTRY).unwrap();
        let identity = security_server::identity::Identity::load(&ministry.config).unwrap();
        let key = identity.signing_keys.into_iter().next().unwrap().1;
        let pool = security_server::peer::PeerPool::new(
            certs::LiveIdentity::new(identity.tls, Arc::new(certs::SystemClock)).unwrap(),
            Duration::from_secs(2),
            32 << 20,
        );
        let conf = ministry.running().unwrap().conf.current().unwrap();
        Self { pool, key, conf }
    }

    /// A request for Chiyoda's `raw` service from the portal, signed now with [`Self::key`].
    pub fn signed(&self, id: &str, body: &[u8]) -> pb::SignedHeader {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = pb::RequestHeader {
            message_id: id.into(),
            request_id: format!("{id}-request"),
            client: PORTAL.into(),
            service: format!("{RECORDS}/raw"),
            method: "POST".into(),
            created_at: now,
            body_sha256: Sha256::digest(body).to_vec(),
            target_server: CHIYODA.into(),
            ..Default::default()
        };
        exchange::message::sign_request(&header, &self.key)
    }

    /// The portal's `GET residentRecord/131016000001` as the sandbox grants it, signed now with
    /// [`Self::key`]; its body is empty.
    pub fn resident_record(&self, id: &str) -> pb::SignedHeader {
        let mut header = pb::RequestHeader::decode(self.signed(id, b"").header.as_slice()).unwrap();
        header.service = format!("{RECORDS}/residentRecord");
        header.method = "GET".into();
        header.path = "/131016000001".into();
        header.data_subject = "131016000001".into();
        header.purpose = "raw peer".into();
        exchange::message::sign_request(&header, &self.key)
    }

    /// Sends a signed request and its body; the answer, or the X-Road error type.
    pub async fn send(
        &self,
        header: pb::SignedHeader,
        body: &[u8],
    ) -> Result<pb::ExchangeResponse, String> {
        let server = self
            .conf
            .conf()
            .server(&CHIYODA.parse().unwrap())
            .unwrap()
            .clone();
        let mut client = self
            .pool
            .connect(&server, &server.addresses[0])
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let x_road_error = |status: tonic::Status| {
            security_server::peer::status_to_error(&status)
                .map(|e| e.error_type())
                .unwrap_or_else(|| format!("no X-Road error: {status}"))
        };
        let body = security_server::spool::MessageBody::in_memory(exchange::HashedBody::new(
            Bytes::copy_from_slice(body),
        ));
        let request = security_server::peer::outgoing(header, &body);
        let (answer, confirmation) = security_server::peer::call_exchange(&mut client, request)
            .await
            .map_err(x_road_error)?
            .ok_or("the call ended without a response")?;
        // The provider's server ends the call OK once its log holds the response.
        confirmation.confirmed().await.map_err(x_road_error)?;
        Ok(answer)
    }
}
