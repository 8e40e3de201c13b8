//! Signing and verifying the messages between security servers (DESIGN §5.2). No I/O.
//!
//! The client's server builds a [`pb::RequestHeader`] ([`build_request_header`]), encodes it once
//! and signs those bytes with the client member's key ([`sign_request`]). The provider's server
//! verifies the exact bytes before decoding them and runs its checks ([`verify_request`]); only
//! this module can make the resulting [`VerifiedRequest`], so code that forwards or logs a
//! request cannot skip them. The response goes the same way back ([`build_response_header`],
//! [`sign_response`], [`verify_response`] → [`VerifiedResponse`]), tied to the request by the
//! request hash: SHA-512 of the signed request header bytes, which cover the body's SHA-256.
//!
//! # Request checks and their errors (`Server.ServerProxy.*`, HTTP 500, [`ServerProxyCode`])
//!
//! In this order (DESIGN §5.2: peer, signature and key, skew, replay, service):
//!
//! | step | code | when |
//! |---|---|---|
//! | 1 | `UnknownSigningKey` | the envelope's key id is malformed or not in the configuration (never listed, or removed) |
//! | 1 | `InvalidSignature` | the signature does not verify over the exact header bytes |
//! | 1 | `InvalidMessage` | the bytes do not decode; the header's `signer_key_id` differs from the envelope's; a malformed X-Road-Id, client, service, method, path, header or target server |
//! | 1 | `SignerNotClient` | the key belongs to another member than the client's |
//! | 1 | `UnknownMember` | the client subsystem is not in the configuration |
//! | 1 | `ClientNotHostedByPeer` | the TLS peer's certificate is not pinned in the configuration, or that server does not host the client subsystem |
//! | 2 | `KeyNotValid` | the key was not valid at the header's `created_at` (not yet, or no longer) |
//! | 3 | `ClockSkew` | `created_at` is further than the allowed skew from our clock, either way |
//! | 3 | `InvalidSecurityServer` | the header names a target server other than this one |
//! | 3 | `InvalidBody` | the body's SHA-256 differs from the signed one |
//! | 4 | `DuplicateMessage` | this client used this X-Road-Id within the replay window |
//! | 4 | `ClockSkew` | the message is older than the replay window (only when the window is shorter than the skew) |
//! | 4 | `ReplayCacheFull` | the replay cache is full; the message cannot be checked now |
//! | 5 | `UnknownService` | this server does not host the service's subsystem |
//!
//! Target server and body are checked before the replay cache so that a message refused for
//! them does not use up its X-Road-Id. The service's existence in the provider's own service
//! list and the access rights are the caller's next steps.
//!
//! # Response checks and their errors (`Server.ClientProxy.*`, HTTP 500)
//!
//! Key, signature, decoding, signer (the provider's member), the key's validity at
//! `created_at`, clock skew, the X-Road-Id and request hash it answers, the answering server,
//! the body hash, then status and headers; [`ClientProxyCode`] says when each code is raised.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use prost::Message as _;
use sha2::{Digest as _, Sha512};

use certs::{Domain, KeyId, SigningKey};
use globalconf::{GlobalConf, MemberKey, SecurityServerId, ServiceId, SubsystemId};
use proto::v1 as pb;

use crate::body::HashedBody;
use crate::error::{ClientProxyCode, ServerProxyCode, XRoadError};
use crate::replay::{ReplayCache, ReplayError};
use crate::rest::{self, ClientRequest};

/// The request hash: SHA-512 of the exact signed request header bytes.
pub fn request_hash(signed_header_bytes: &[u8]) -> [u8; 64] {
    Sha512::digest(signed_header_bytes).into()
}

/// The request hash as `X-Road-Request-Hash` carries it: standard base64 with padding.
pub fn request_hash_b64(hash: &[u8; 64]) -> String {
    BASE64.encode(hash)
}

fn to_proto_headers(headers: &[(String, String)]) -> Vec<pb::Header> {
    headers
        .iter()
        .map(|(name, value)| pb::Header {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// The request header for one attempt to one provider server (the target is signed, so a
/// failover to another server builds and signs a new header).
pub fn build_request_header(
    req: &ClientRequest,
    body: &HashedBody,
    signer: &KeyId,
    created_at: i64,
    target: &SecurityServerId,
) -> pb::RequestHeader {
    pb::RequestHeader {
        message_id: req.message_id.clone(),
        client: req.client.to_string(),
        service: req.service.to_string(),
        method: req.method.as_str().to_owned(),
        path: req.path.clone(),
        query: req.query.clone().unwrap_or_default(),
        headers: to_proto_headers(&req.headers),
        user_id: req.user_id.clone().unwrap_or_default(),
        issue: req.issue.clone().unwrap_or_default(),
        represented_party: req.represented_party.clone().unwrap_or_default(),
        data_subject: req.data_subject.clone().unwrap_or_default(),
        purpose: req.purpose.clone().unwrap_or_default(),
        created_at,
        body_sha256: body.sha256().to_vec(),
        signer_key_id: signer.as_str().to_owned(),
        target_server: target.to_string(),
    }
}

/// Encodes the header once and signs those bytes. The header's `signer_key_id` is set to the
/// key's id, whatever it held, so that the signed bytes always name the key that signed them.
pub fn sign_request(header: &pb::RequestHeader, key: &SigningKey) -> pb::SignedHeader {
    let key_id = key.key_id();
    let mut header = header.clone();
    header.signer_key_id = key_id.as_str().to_owned();
    sign_bytes(header.encode_to_vec(), Domain::RequestHeader, key, key_id)
}

/// Encodes the header once and signs those bytes; `signer_key_id` is set as in [`sign_request`].
pub fn sign_response(header: &pb::ResponseHeader, key: &SigningKey) -> pb::SignedHeader {
    let key_id = key.key_id();
    let mut header = header.clone();
    header.signer_key_id = key_id.as_str().to_owned();
    sign_bytes(header.encode_to_vec(), Domain::ResponseHeader, key, key_id)
}

fn sign_bytes(bytes: Vec<u8>, domain: Domain, key: &SigningKey, key_id: KeyId) -> pb::SignedHeader {
    let signature = key.sign(domain, &bytes).to_vec();
    pb::SignedHeader {
        header: bytes,
        signature,
        key_id: key_id.into(),
    }
}

/// A request header whose signature, signer, peer, time, replay, target, body and service
/// hosting were checked by [`verify_request`]; nothing else can make one.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    header: pb::RequestHeader,
    client: SubsystemId,
    service: ServiceId,
    method: Method,
    peer: SecurityServerId,
    signed_bytes: Vec<u8>,
    signature: Vec<u8>,
    key_id: KeyId,
    request_hash: [u8; 64],
}

impl VerifiedRequest {
    pub fn header(&self) -> &pb::RequestHeader {
        &self.header
    }
    pub fn client(&self) -> &SubsystemId {
        &self.client
    }
    pub fn service(&self) -> &ServiceId {
        &self.service
    }
    pub fn method(&self) -> &Method {
        &self.method
    }
    /// `""` or starting with `/`, percent-encoded, free of dot segments.
    pub fn path(&self) -> &str {
        &self.header.path
    }
    pub fn query(&self) -> Option<&str> {
        Some(self.header.query.as_str()).filter(|q| !q.is_empty())
    }
    /// The security server that sent it (by its pinned TLS certificate).
    pub fn peer(&self) -> &SecurityServerId {
        &self.peer
    }
    /// The exact bytes that were signed (what the message log keeps).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed_bytes
    }
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    pub fn request_hash(&self) -> &[u8; 64] {
        &self.request_hash
    }
    pub fn created_at(&self) -> i64 {
        self.header.created_at
    }
    pub fn message_id(&self) -> &str {
        &self.header.message_id
    }
}

/// Looks up the key named outside the signed bytes and verifies the signature over those exact
/// bytes, before anything is decoded.
fn verify_envelope<'c, C: Copy>(
    signed: &pb::SignedHeader,
    conf: &'c GlobalConf,
    domain: Domain,
    reject: &impl Fn(C, String) -> XRoadError,
    unknown_key: C,
    bad_signature: C,
) -> Result<(KeyId, &'c globalconf::MemberId, &'c MemberKey), XRoadError> {
    let key_id = KeyId::parse(&signed.key_id)
        .map_err(|_| reject(unknown_key, "the signing key id is malformed".into()))?;
    let (member, key) = conf.signing_key(&key_id).ok_or_else(|| {
        reject(
            unknown_key,
            format!("signing key {key_id} is not in the global configuration"),
        )
    })?;
    key.public_key
        .verify(domain, &signed.header, &signed.signature)
        .map_err(|_| {
            reject(
                bad_signature,
                format!("the signature does not verify under key {key_id} of {member}"),
            )
        })?;
    Ok((key_id, member, key))
}

fn check_skew(created_at: i64, now_unix: i64, max_skew: Duration) -> Result<(), String> {
    let skew = now_unix.abs_diff(created_at);
    if skew > max_skew.as_secs() {
        return Err(format!(
            "created at {created_at}, {skew} s from our clock ({now_unix}); at most {} s allowed",
            max_skew.as_secs()
        ));
    }
    Ok(())
}

fn check_headers(headers: &[pb::Header]) -> Result<(), String> {
    for h in headers {
        if HeaderName::from_bytes(h.name.as_bytes()).is_err()
            || HeaderValue::from_bytes(h.value.as_bytes()).is_err()
        {
            return Err(format!("header {:?} is not valid HTTP", h.name));
        }
    }
    Ok(())
}

/// The provider's server's checks of one request (see the module table for order and codes).
#[allow(clippy::too_many_arguments)]
pub fn verify_request(
    signed: &pb::SignedHeader,
    body: &HashedBody,
    conf: &GlobalConf,
    peer_cert_sha256: &[u8; 32],
    this_server: &SecurityServerId,
    now_unix: i64,
    max_skew: Duration,
    replay: &ReplayCache,
) -> Result<VerifiedRequest, XRoadError> {
    use ServerProxyCode as c;
    let reject = |code: ServerProxyCode, msg: String| XRoadError::new(code, msg);

    // (1) The key, the signature over the exact bytes, then decoding.
    let (key_id, signer_member, _) = verify_envelope(
        signed,
        conf,
        Domain::RequestHeader,
        &reject,
        c::UnknownSigningKey,
        c::InvalidSignature,
    )?;
    let header = pb::RequestHeader::decode(signed.header.as_slice())
        .map_err(|e| reject(c::InvalidMessage, format!("request header: {e}")))?;
    if !rest::is_valid_message_id(&header.message_id) {
        return Err(reject(c::InvalidMessage, "malformed X-Road-Id".into()));
    }
    let id = header.message_id.clone();
    let reject = |code: ServerProxyCode, msg: String| reject(code, msg).with_id(id.clone());
    let malformed = |what: &str, e: &dyn std::fmt::Display| {
        reject(c::InvalidMessage, format!("request header {what}: {e}"))
    };

    if header.signer_key_id != key_id.as_str() {
        return Err(reject(
            c::InvalidMessage,
            "the header names another signing key than the envelope".into(),
        ));
    }
    let client: SubsystemId = header.client.parse().map_err(|e| malformed("client", &e))?;
    let service: ServiceId = header
        .service
        .parse()
        .map_err(|e| malformed("service", &e))?;
    let method = Method::from_bytes(header.method.as_bytes())
        .ok()
        .filter(rest::is_supported_method)
        .ok_or_else(|| malformed("method", &header.method))?;
    crate::uri::path_segments(&header.path).map_err(|e| malformed("path", &e))?;
    check_headers(&header.headers).map_err(|e| malformed("headers", &e))?;
    for (what, v) in [
        ("user id", &header.user_id),
        ("issue", &header.issue),
        ("represented party", &header.represented_party),
        ("data subject", &header.data_subject),
        ("purpose", &header.purpose),
    ] {
        if !rest::is_valid_free_text(v) {
            return Err(malformed(what, &"not acceptable text"));
        }
    }
    let target: Option<SecurityServerId> = if header.target_server.is_empty() {
        None
    } else {
        Some(
            header
                .target_server
                .parse()
                .map_err(|e| malformed("target server", &e))?,
        )
    };

    if signer_member != client.member() {
        return Err(reject(
            c::SignerNotClient,
            format!(
                "signed with a key of {signer_member}, not of the client's member {}",
                client.member()
            ),
        ));
    }
    if !conf.has_subsystem(&client) {
        return Err(reject(
            c::UnknownMember,
            format!("client {client} is not in the global configuration"),
        ));
    }
    let peer = conf.server_by_cert(peer_cert_sha256).ok_or_else(|| {
        reject(
            c::ClientNotHostedByPeer,
            "the peer's TLS certificate is not in the global configuration".into(),
        )
    })?;
    if !conf.servers_hosting(&client).contains(&peer.id) {
        return Err(reject(
            c::ClientNotHostedByPeer,
            format!("security server {} does not host {client}", peer.id),
        ));
    }

    // (2) The key was valid when the message was made.
    if conf
        .member_key_at(client.member(), &key_id, header.created_at)
        .is_none()
    {
        return Err(reject(
            c::KeyNotValid,
            format!(
                "key {key_id} of {} was not valid at {}",
                client.member(),
                header.created_at
            ),
        ));
    }

    // (3) Clock skew, then what the message is addressed to and carries.
    check_skew(header.created_at, now_unix, max_skew).map_err(|m| reject(c::ClockSkew, m))?;
    if let Some(target) = &target
        && target != this_server
    {
        return Err(reject(
            c::InvalidSecurityServer,
            format!("the request is addressed to {target}, this is {this_server}"),
        ));
    }
    if header.body_sha256.as_slice() != body.sha256().as_slice() {
        return Err(reject(
            c::InvalidBody,
            "the body does not match its signed SHA-256".into(),
        ));
    }

    // (4) Replay.
    replay
        .check_and_insert(&client, &header.message_id, header.created_at, now_unix)
        .map_err(|e| match e {
            ReplayError::Duplicate => reject(
                c::DuplicateMessage,
                format!("X-Road-Id already used by {client} within the replay window"),
            ),
            ReplayError::Expired => reject(
                c::ClockSkew,
                "the message is older than the replay window".into(),
            ),
            ReplayError::Full => reject(
                c::ReplayCacheFull,
                "too many messages in the replay window; try again later".into(),
            ),
        })?;

    // (5) The service is hosted here.
    let hosted = conf
        .server(this_server)
        .is_some_and(|s| s.hosted.contains(service.subsystem()));
    if !hosted {
        return Err(reject(
            c::UnknownService,
            format!(
                "{this_server} does not host subsystem {}",
                service.subsystem()
            ),
        ));
    }

    Ok(VerifiedRequest {
        request_hash: request_hash(&signed.header),
        signed_bytes: signed.header.clone(),
        signature: signed.signature.clone(),
        key_id,
        peer: peer.id.clone(),
        header,
        client,
        service,
        method,
    })
}

/// The response header for a verified request: status, pass-through headers, body hash and the
/// request hash. Taking a [`VerifiedRequest`] means no response is made to an unchecked request.
pub fn build_response_header(
    request: &VerifiedRequest,
    status: StatusCode,
    headers: &[(String, String)],
    body: &HashedBody,
    signer: &KeyId,
    created_at: i64,
    server: &SecurityServerId,
) -> pb::ResponseHeader {
    pb::ResponseHeader {
        message_id: request.message_id().to_owned(),
        status: u32::from(status.as_u16()),
        headers: to_proto_headers(headers),
        created_at,
        body_sha256: body.sha256().to_vec(),
        request_hash: request.request_hash().to_vec(),
        signer_key_id: signer.as_str().to_owned(),
        server: server.to_string(),
    }
}

/// What the client's server remembers of the request it sent, to check the response against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub message_id: String,
    /// [`request_hash`] of the signed request header bytes.
    pub request_hash: [u8; 64],
    /// The provider security server the request was sent to.
    pub server: SecurityServerId,
}

impl RequestContext {
    /// The context of a signed request sent to `server`.
    pub fn new(message_id: &str, signed: &pb::SignedHeader, server: &SecurityServerId) -> Self {
        Self {
            message_id: message_id.to_owned(),
            request_hash: request_hash(&signed.header),
            server: server.clone(),
        }
    }
}

/// A response header whose signature, signer, time, request binding and body were checked by
/// [`verify_response`]; nothing else can make one.
#[derive(Debug, Clone)]
pub struct VerifiedResponse {
    header: pb::ResponseHeader,
    status: StatusCode,
    server: SecurityServerId,
    signed_bytes: Vec<u8>,
    signature: Vec<u8>,
    key_id: KeyId,
}

impl VerifiedResponse {
    pub fn header(&self) -> &pb::ResponseHeader {
        &self.header
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The pass-through headers, as `(name, value)`; valid HTTP.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.header
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
    }
    /// The provider security server that answered.
    pub fn server(&self) -> &SecurityServerId {
        &self.server
    }
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed_bytes
    }
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    pub fn created_at(&self) -> i64 {
        self.header.created_at
    }
    pub fn message_id(&self) -> &str {
        &self.header.message_id
    }
    /// The request hash, base64, for `X-Road-Request-Hash`.
    pub fn request_hash_b64(&self) -> String {
        BASE64.encode(&self.header.request_hash)
    }
}

/// The client's server's checks of a response (see the module table for codes).
pub fn verify_response(
    signed: &pb::SignedHeader,
    body: &HashedBody,
    conf: &GlobalConf,
    expected_provider: &SubsystemId,
    request: &RequestContext,
    now_unix: i64,
    max_skew: Duration,
) -> Result<VerifiedResponse, XRoadError> {
    use ClientProxyCode as c;
    let reject = |code: ClientProxyCode, msg: String| {
        XRoadError::new(code, msg).with_id(request.message_id.clone())
    };

    let (key_id, signer_member, _) = verify_envelope(
        signed,
        conf,
        Domain::ResponseHeader,
        &reject,
        c::UnknownSigningKey,
        c::InvalidSignature,
    )?;
    let header = pb::ResponseHeader::decode(signed.header.as_slice())
        .map_err(|e| reject(c::InvalidResponse, format!("response header: {e}")))?;
    if header.signer_key_id != key_id.as_str() {
        return Err(reject(
            c::InvalidResponse,
            "the header names another signing key than the envelope".into(),
        ));
    }
    if signer_member != expected_provider.member() {
        return Err(reject(
            c::SignerNotProvider,
            format!(
                "signed with a key of {signer_member}, not of the provider's member {}",
                expected_provider.member()
            ),
        ));
    }
    if conf
        .member_key_at(signer_member, &key_id, header.created_at)
        .is_none()
    {
        return Err(reject(
            c::KeyNotValid,
            format!("key {key_id} was not valid at {}", header.created_at),
        ));
    }
    check_skew(header.created_at, now_unix, max_skew).map_err(|m| reject(c::ClockSkew, m))?;
    if header.message_id != request.message_id {
        return Err(reject(
            c::InconsistentResponse,
            "the response answers another X-Road-Id".into(),
        ));
    }
    if header.request_hash.as_slice() != request.request_hash.as_slice() {
        return Err(reject(
            c::InvalidRequestHash,
            "the response's request hash is not the hash of the request sent".into(),
        ));
    }
    let server: SecurityServerId = header
        .server
        .parse()
        .map_err(|e| reject(c::InvalidResponse, format!("response server: {e}")))?;
    if server != request.server {
        return Err(reject(
            c::InconsistentResponse,
            format!(
                "answered by {server}, the request went to {}",
                request.server
            ),
        ));
    }
    if header.body_sha256.as_slice() != body.sha256().as_slice() {
        return Err(reject(
            c::InvalidBody,
            "the body does not match its signed SHA-256".into(),
        ));
    }
    let status = u16::try_from(header.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| reject(c::InvalidResponse, format!("status {}", header.status)))?;
    check_headers(&header.headers).map_err(|m| reject(c::InvalidResponse, m))?;

    Ok(VerifiedResponse {
        signed_bytes: signed.header.clone(),
        signature: signed.signature.clone(),
        key_id,
        status,
        server,
        header,
    })
}

/// A small global configuration for the tests of this crate's pure modules.
#[cfg(test)]
pub(crate) mod test_support {
    use certs::SigningKey;
    use globalconf::testing::ConfBuilder;
    use globalconf::{GlobalConf, SecurityServerId, SubsystemId};
    use proto::v1 as pb;

    /// The tests' clock.
    pub const NOW: i64 = 1_700_000_000;
    /// When the ordinary keys became valid.
    pub const KEYS_FROM: i64 = 1_600_000_000;
    /// The window of the client's short-lived key.
    pub const LIMITED_FROM: i64 = NOW - 1000;
    pub const LIMITED_UNTIL: i64 = NOW - 10;

    pub const CLIENT: &str = "JP/GOV/digital-agency/portal";
    pub const CLIENT_SERVER: &str = "JP/GOV/digital-agency/ss1";
    pub const PROVIDER: &str = "JP/MUN/131016/records";
    pub const PROVIDER_SERVER: &str = "JP/MUN/131016/ss1";
    pub const OTHER: &str = "JP/MUN/131024/other";
    pub const OTHER_SERVER: &str = "JP/MUN/131024/ss1";
    pub const GROUP: &str = "JP/portals";
    pub const CLIENT_CERT: [u8; 32] = [1; 32];
    pub const PROVIDER_CERT: [u8; 32] = [2; 32];
    pub const OTHER_CERT: [u8; 32] = [3; 32];

    pub fn client_key() -> SigningKey {
        SigningKey::from_seed([11; 32])
    }
    /// A second key of the client's member, valid only from LIMITED_FROM to LIMITED_UNTIL.
    pub fn limited_key() -> SigningKey {
        SigningKey::from_seed([12; 32])
    }
    pub fn provider_key() -> SigningKey {
        SigningKey::from_seed([21; 32])
    }
    pub fn other_key() -> SigningKey {
        SigningKey::from_seed([31; 32])
    }

    pub fn sub(s: &str) -> SubsystemId {
        s.parse().unwrap()
    }
    pub fn server(s: &str) -> SecurityServerId {
        s.parse().unwrap()
    }

    /// Three members (client, provider, other), one server each, one global group holding the
    /// client subsystem.
    pub fn proto() -> pb::GlobalConfiguration {
        ConfBuilder::new("JP", NOW - 100)
            .subsystem(CLIENT)
            .key("JP/GOV/digital-agency", &client_key(), KEYS_FROM, 0)
            .key(
                "JP/GOV/digital-agency",
                &limited_key(),
                LIMITED_FROM,
                LIMITED_UNTIL,
            )
            .subsystem(PROVIDER)
            .key("JP/MUN/131016", &provider_key(), KEYS_FROM, 0)
            .subsystem(OTHER)
            .key("JP/MUN/131024", &other_key(), KEYS_FROM, 0)
            .server(CLIENT_SERVER, CLIENT_CERT, &[CLIENT])
            .server(PROVIDER_SERVER, PROVIDER_CERT, &[PROVIDER])
            .server(OTHER_SERVER, OTHER_CERT, &[OTHER])
            .group(GROUP, &[CLIENT])
            .proto()
    }

    pub fn conf_from(pb: &pb::GlobalConfiguration) -> GlobalConf {
        globalconf::testing::conf_of(pb)
    }

    pub fn conf() -> GlobalConf {
        conf_from(&proto())
    }

    /// A request of CLIENT to `PROVIDER/code`, signed by the client's server and verified by
    /// the provider's.
    #[allow(clippy::unwrap_used)]
    pub fn verified(code: &str, method: http::Method, path: &str) -> crate::VerifiedRequest {
        use std::time::Duration;

        let request = crate::rest::ClientRequest {
            message_id: format!("id-{code}-{method}-{path}"),
            client: sub(CLIENT),
            service: format!("{PROVIDER}/{code}").parse().unwrap(),
            method,
            path: path.into(),
            query: None,
            headers: Vec::new(),
            user_id: None,
            issue: None,
            represented_party: None,
            data_subject: Some("subject-1".into()),
            purpose: None,
            target_server: None,
        };
        let body = crate::HashedBody::new(bytes::Bytes::new());
        let to = server(PROVIDER_SERVER);
        let header = super::build_request_header(&request, &body, &client_key().key_id(), NOW, &to);
        let signed = super::sign_request(&header, &client_key());
        let replay = crate::replay::ReplayCache::new(Duration::from_secs(600), 10);
        let skew = Duration::from_secs(60);
        super::verify_request(
            &signed,
            &body,
            &conf(),
            &CLIENT_CERT,
            &to,
            NOW,
            skew,
            &replay,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::error::Code;

    fn hashed(body: &[u8]) -> HashedBody {
        HashedBody::new(bytes::Bytes::copy_from_slice(body))
    }

    const SKEW: Duration = Duration::from_secs(60);
    const BODY: &[u8] = b"{\"q\":1}";

    fn client_request() -> ClientRequest {
        ClientRequest {
            message_id: "msg-1".into(),
            client: sub(CLIENT),
            service: format!("{PROVIDER}/residentRecord").parse().unwrap(),
            method: Method::POST,
            path: "/persons/1".into(),
            query: Some("a=b".into()),
            headers: vec![("content-type".into(), "application/json".into())],
            user_id: Some("JP123".into()),
            issue: None,
            represented_party: None,
            data_subject: Some("subject-1".into()),
            purpose: Some("purpose".into()),
            target_server: None,
        }
    }

    fn header() -> pb::RequestHeader {
        build_request_header(
            &client_request(),
            &hashed(BODY),
            &client_key().key_id(),
            NOW,
            &server(PROVIDER_SERVER),
        )
    }

    fn signed() -> pb::SignedHeader {
        sign_request(&header(), &client_key())
    }

    fn cache() -> ReplayCache {
        ReplayCache::new(Duration::from_secs(300), 100)
    }

    fn verify_with(
        signed: &pb::SignedHeader,
        body: &[u8],
        conf: &GlobalConf,
        peer: &[u8; 32],
        now: i64,
        replay: &ReplayCache,
    ) -> Result<VerifiedRequest, XRoadError> {
        verify_request(
            signed,
            &hashed(body),
            conf,
            peer,
            &server(PROVIDER_SERVER),
            now,
            SKEW,
            replay,
        )
    }

    fn verify(signed: &pb::SignedHeader) -> Result<VerifiedRequest, XRoadError> {
        verify_with(signed, BODY, &conf(), &CLIENT_CERT, NOW, &cache())
    }

    fn code(r: Result<VerifiedRequest, XRoadError>) -> ServerProxyCode {
        match r.unwrap_err().code {
            Code::ServerProxy(c) => c,
            other => panic!("not a server proxy's code: {other}"),
        }
    }

    /// Re-signs a modified header with `key`, keeping the envelope consistent.
    fn resigned(h: &pb::RequestHeader, key: &SigningKey) -> pb::SignedHeader {
        sign_request(h, key)
    }

    #[test]
    fn request_round_trip() {
        let s = signed();
        let v = verify(&s).unwrap();
        assert_eq!(v.client(), &sub(CLIENT));
        assert_eq!(v.service().code(), "residentRecord");
        assert_eq!(v.method(), Method::POST);
        assert_eq!(v.path(), "/persons/1");
        assert_eq!(v.query(), Some("a=b"));
        assert_eq!(v.peer(), &server(CLIENT_SERVER));
        assert_eq!(v.message_id(), "msg-1");
        assert_eq!(v.created_at(), NOW);
        assert_eq!(v.key_id(), &client_key().key_id());
        assert_eq!(v.signed_bytes(), s.header.as_slice());
        assert_eq!(v.signature(), s.signature.as_slice());
        assert_eq!(v.request_hash(), &request_hash(&s.header));
        assert_eq!(v.header().data_subject, "subject-1");
        assert_eq!(v.header().body_sha256, sha2::Sha256::digest(BODY).to_vec());
        assert_eq!(v.header().target_server, PROVIDER_SERVER);
        assert_eq!(s.key_id, client_key().key_id().as_str());
    }

    #[test]
    fn sign_request_sets_the_signer_key_id() {
        let mut h = header();
        h.signer_key_id = "something else".into();
        let s = sign_request(&h, &client_key());
        let decoded = pb::RequestHeader::decode(s.header.as_slice()).unwrap();
        assert_eq!(decoded.signer_key_id, client_key().key_id().as_str());
        verify(&s).unwrap();
    }

    #[test]
    fn request_hash_is_sha512_of_the_signed_bytes() {
        let s = signed();
        let h = request_hash(&s.header);
        assert_eq!(h.as_slice(), Sha512::digest(&s.header).as_slice());
        let b64 = request_hash_b64(&h);
        assert_eq!(BASE64.decode(&b64).unwrap(), h.to_vec());
        assert_eq!(b64.len(), 88);
    }

    #[test]
    fn flipped_header_byte_fails_the_signature() {
        let s = signed();
        for i in 0..s.header.len() {
            let mut bad = s.clone();
            bad.header[i] ^= 0x01;
            assert_eq!(
                code(verify(&bad)),
                ServerProxyCode::InvalidSignature,
                "byte {i}"
            );
        }
    }

    #[test]
    fn flipped_signature_byte_fails() {
        let s = signed();
        let mut bad = s.clone();
        bad.signature[10] ^= 0x80;
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
        bad.signature.truncate(63);
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
    }

    #[test]
    fn wrong_key_id_in_the_envelope() {
        // The provider's key id: known, but the signature was not made with it.
        let mut bad = signed();
        bad.key_id = provider_key().key_id().into();
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
        // An id nobody holds.
        bad.key_id = SigningKey::from_seed([99; 32]).key_id().into();
        assert_eq!(code(verify(&bad)), ServerProxyCode::UnknownSigningKey);
        bad.key_id = "not-a-key-id".into();
        assert_eq!(code(verify(&bad)), ServerProxyCode::UnknownSigningKey);
    }

    #[test]
    fn header_naming_another_key_than_the_envelope() {
        // Signed bytes that claim another key id than the one that signed them.
        let mut h = header();
        h.signer_key_id = limited_key().key_id().into();
        let bytes = h.encode_to_vec();
        let bad = pb::SignedHeader {
            signature: client_key().sign(Domain::RequestHeader, &bytes).to_vec(),
            header: bytes,
            key_id: client_key().key_id().into(),
        };
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidMessage);
    }

    #[test]
    fn undecodable_bytes_are_refused_after_the_signature() {
        let bytes = vec![0xff, 0xff, 0xff];
        let bad = pb::SignedHeader {
            signature: client_key().sign(Domain::RequestHeader, &bytes).to_vec(),
            header: bytes,
            key_id: client_key().key_id().into(),
        };
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidMessage);
    }

    #[test]
    fn response_signature_is_not_a_request_signature() {
        let h = header();
        let bytes = h.encode_to_vec();
        let bad = pb::SignedHeader {
            signature: client_key().sign(Domain::ResponseHeader, &bytes).to_vec(),
            header: bytes,
            key_id: client_key().key_id().into(),
        };
        assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
    }

    #[test]
    fn key_of_another_member() {
        // Validly signed by the other member's key, but claiming our client.
        let s = resigned(&header(), &other_key());
        assert_eq!(code(verify(&s)), ServerProxyCode::SignerNotClient);
    }

    #[test]
    fn key_removed_from_the_configuration() {
        let mut pb = proto();
        pb.members[0].signing_keys.remove(0);
        let conf = conf_from(&pb);
        let r = verify_with(&signed(), BODY, &conf, &CLIENT_CERT, NOW, &cache());
        assert_eq!(code(r), ServerProxyCode::UnknownSigningKey);
    }

    #[test]
    fn key_not_valid_at_created_at() {
        // The limited key is valid [NOW-1000, NOW-10).
        let mut h = header();
        h.created_at = LIMITED_FROM - 1;
        let s = resigned(&h, &limited_key());
        let r = verify_with(&s, BODY, &conf(), &CLIENT_CERT, LIMITED_FROM - 1, &cache());
        assert_eq!(code(r), ServerProxyCode::KeyNotValid, "not yet valid");

        h.created_at = LIMITED_UNTIL;
        let s = resigned(&h, &limited_key());
        assert_eq!(code(verify(&s)), ServerProxyCode::KeyNotValid, "expired");

        h.created_at = LIMITED_UNTIL - 1;
        let s = resigned(&h, &limited_key());
        verify(&s).unwrap();
    }

    #[test]
    fn clock_skew_either_way() {
        for created_at in [NOW - 61, NOW + 61] {
            let mut h = header();
            h.created_at = created_at;
            let s = resigned(&h, &client_key());
            assert_eq!(code(verify(&s)), ServerProxyCode::ClockSkew, "{created_at}");
        }
        for created_at in [NOW - 60, NOW + 60] {
            let mut h = header();
            h.created_at = created_at;
            verify(&resigned(&h, &client_key())).unwrap();
        }
    }

    #[test]
    fn replay_is_refused() {
        let replay = cache();
        let s = signed();
        verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
        let r = verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW + 1, &replay);
        let e = r.unwrap_err();
        assert_eq!(e.code, ServerProxyCode::DuplicateMessage);
        assert_eq!(e.message_id.as_deref(), Some("msg-1"));
    }

    #[test]
    fn refused_message_does_not_use_up_its_id() {
        let replay = cache();
        let s = signed();
        let r = verify_with(&s, b"tampered", &conf(), &CLIENT_CERT, NOW, &replay);
        assert_eq!(code(r), ServerProxyCode::InvalidBody);
        verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
    }

    #[test]
    fn altered_body() {
        let r = verify_with(
            &signed(),
            b"{\"q\":2}",
            &conf(),
            &CLIENT_CERT,
            NOW,
            &cache(),
        );
        assert_eq!(code(r), ServerProxyCode::InvalidBody);
    }

    #[test]
    fn peer_not_hosting_the_client() {
        let r = verify_with(&signed(), BODY, &conf(), &OTHER_CERT, NOW, &cache());
        assert_eq!(code(r), ServerProxyCode::ClientNotHostedByPeer);
        let r = verify_with(&signed(), BODY, &conf(), &[9; 32], NOW, &cache());
        assert_eq!(code(r), ServerProxyCode::ClientNotHostedByPeer);
    }

    #[test]
    fn client_not_in_the_configuration() {
        let mut h = header();
        h.client = "JP/GOV/digital-agency/unlisted".into();
        let s = resigned(&h, &client_key());
        assert_eq!(code(verify(&s)), ServerProxyCode::UnknownMember);
    }

    #[test]
    fn target_server_mismatch() {
        let mut h = header();
        h.target_server = OTHER_SERVER.into();
        assert_eq!(
            code(verify(&resigned(&h, &client_key()))),
            ServerProxyCode::InvalidSecurityServer
        );
        h.target_server = String::new();
        verify(&resigned(&h, &client_key())).unwrap();
    }

    #[test]
    fn service_not_hosted_here() {
        let mut h = header();
        h.service = format!("{OTHER}/svc");
        assert_eq!(
            code(verify(&resigned(&h, &client_key()))),
            ServerProxyCode::UnknownService
        );
    }

    #[test]
    fn malformed_fields_in_a_signed_header() {
        let cases: [fn(&mut pb::RequestHeader); 7] = [
            |h| h.client = "JP/GOV".into(),
            |h| h.service = "not a service".into(),
            |h| h.method = "CONNECT".into(),
            |h| h.path = "/a/../b".into(),
            |h| h.message_id = String::new(),
            |h| h.target_server = "x".into(),
            |h| {
                h.headers.push(pb::Header {
                    name: "bad name".into(),
                    value: "v".into(),
                })
            },
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut h = header();
            f(&mut h);
            assert_eq!(
                code(verify(&resigned(&h, &client_key()))),
                ServerProxyCode::InvalidMessage,
                "case {i}"
            );
        }
    }

    // ----- responses -----

    fn verified_request() -> VerifiedRequest {
        verify(&signed()).unwrap()
    }

    fn response_header(req: &VerifiedRequest) -> pb::ResponseHeader {
        build_response_header(
            req,
            StatusCode::OK,
            &[("content-type".into(), "application/json".into())],
            &hashed(b"answer"),
            &provider_key().key_id(),
            NOW + 1,
            &server(PROVIDER_SERVER),
        )
    }

    fn context() -> RequestContext {
        RequestContext::new("msg-1", &signed(), &server(PROVIDER_SERVER))
    }

    fn verify_resp(
        signed: &pb::SignedHeader,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<VerifiedResponse, XRoadError> {
        verify_response(
            signed,
            &hashed(body),
            &conf(),
            &sub(PROVIDER),
            ctx,
            NOW + 2,
            SKEW,
        )
    }

    fn resp_code(r: Result<VerifiedResponse, XRoadError>) -> ClientProxyCode {
        let e = r.unwrap_err();
        assert_eq!(e.message_id.as_deref(), Some("msg-1"));
        match e.code {
            Code::ClientProxy(c) => c,
            other => panic!("not a client proxy's code: {other}"),
        }
    }

    #[test]
    fn response_round_trip() {
        let req = verified_request();
        let s = sign_response(&response_header(&req), &provider_key());
        let v = verify_resp(&s, b"answer", &context()).unwrap();
        assert_eq!(v.status(), StatusCode::OK);
        assert_eq!(v.message_id(), "msg-1");
        assert_eq!(v.server(), &server(PROVIDER_SERVER));
        assert_eq!(
            v.headers().collect::<Vec<_>>(),
            [("content-type", "application/json")]
        );
        assert_eq!(v.request_hash_b64(), request_hash_b64(req.request_hash()));
        assert_eq!(v.signed_bytes(), s.header.as_slice());
        assert_eq!(v.key_id(), &provider_key().key_id());
        assert_eq!(v.created_at(), NOW + 1);
    }

    #[test]
    fn response_with_wrong_request_hash() {
        let req = verified_request();
        let mut h = response_header(&req);
        h.request_hash[0] ^= 1;
        let s = sign_response(&h, &provider_key());
        assert_eq!(
            resp_code(verify_resp(&s, b"answer", &context())),
            ClientProxyCode::InvalidRequestHash
        );
        // Also when our own context is of another request.
        let s = sign_response(&response_header(&req), &provider_key());
        let mut ctx = context();
        ctx.request_hash = request_hash(b"another request");
        assert_eq!(
            resp_code(verify_resp(&s, b"answer", &ctx)),
            ClientProxyCode::InvalidRequestHash
        );
    }

    #[test]
    fn response_signed_by_another_member() {
        let req = verified_request();
        let s = sign_response(&response_header(&req), &other_key());
        assert_eq!(
            resp_code(verify_resp(&s, b"answer", &context())),
            ClientProxyCode::SignerNotProvider
        );
    }

    #[test]
    fn response_body_altered() {
        let req = verified_request();
        let s = sign_response(&response_header(&req), &provider_key());
        assert_eq!(
            resp_code(verify_resp(&s, b"answer!", &context())),
            ClientProxyCode::InvalidBody
        );
    }

    #[test]
    fn response_other_failures() {
        let req = verified_request();
        let good = sign_response(&response_header(&req), &provider_key());

        let mut bad = good.clone();
        bad.header[3] ^= 1;
        assert_eq!(
            resp_code(verify_resp(&bad, b"answer", &context())),
            ClientProxyCode::InvalidSignature
        );
        // A request signature never passes as a response signature.
        let bytes = good.header.clone();
        let bad = pb::SignedHeader {
            signature: provider_key().sign(Domain::RequestHeader, &bytes).to_vec(),
            header: bytes,
            key_id: provider_key().key_id().into(),
        };
        assert_eq!(
            resp_code(verify_resp(&bad, b"answer", &context())),
            ClientProxyCode::InvalidSignature
        );

        let mut ctx = context();
        ctx.message_id = "msg-2".into();
        let e = verify_resp(&good, b"answer", &ctx).unwrap_err();
        assert_eq!(e.code, ClientProxyCode::InconsistentResponse);

        let mut ctx = context();
        ctx.server = server(OTHER_SERVER);
        assert_eq!(
            resp_code(verify_resp(&good, b"answer", &ctx)),
            ClientProxyCode::InconsistentResponse
        );

        let r = verify_response(
            &good,
            &hashed(b"answer"),
            &conf(),
            &sub(PROVIDER),
            &context(),
            NOW + 100,
            SKEW,
        );
        assert_eq!(resp_code(r), ClientProxyCode::ClockSkew);

        let mut h = response_header(&req);
        h.status = 1000;
        assert_eq!(
            resp_code(verify_resp(
                &sign_response(&h, &provider_key()),
                b"answer",
                &context()
            )),
            ClientProxyCode::InvalidResponse
        );

        let mut pb = proto();
        pb.members[1].signing_keys.clear();
        let r = verify_response(
            &good,
            &hashed(b"answer"),
            &conf_from(&pb),
            &sub(PROVIDER),
            &context(),
            NOW + 2,
            SKEW,
        );
        assert_eq!(resp_code(r), ClientProxyCode::UnknownSigningKey);
    }

    #[test]
    fn provider_request_headers_come_from_the_verified_header() {
        let v = verified_request();
        let rights = crate::access::AccessRights::new(vec![crate::access::Grant {
            service: v.service().clone(),
            subject: crate::access::Subject::Subsystem(sub(CLIENT)),
            method: None,
            path: None,
        }]);
        let authorized = rights.authorize(&v, &conf()).unwrap();
        let mut map = http::HeaderMap::new();
        authorized.provider_request_headers(&mut map).unwrap();
        assert_eq!(map["content-type"], "application/json");
        assert_eq!(map["x-road-client"], CLIENT);
        assert_eq!(map["x-road-service"], format!("{PROVIDER}/residentRecord"));
        assert_eq!(map["x-road-id"], "msg-1");
        assert_eq!(map["x-road-userid"], "JP123");
        assert_eq!(map["x-road-data-subject"], "subject-1");
        assert!(map.get("x-road-issue").is_none());
    }
}
