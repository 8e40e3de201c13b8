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
//! | 1 | `InvalidMessage` | the bytes do not decode; the header's `signer_key_id` differs from the envelope's; a malformed X-Road-Id, X-Road-Request-Id, client, service, method, path, header or target server |
//! | 1 | `SignerNotClient` | the key belongs to another member than the client's |
//! | 1 | `UnknownMember` | the client (subsystem, or member calling as itself) is not in the configuration |
//! | 1 | `ClientNotHostedByPeer` | the TLS peer's certificate is not pinned in the configuration, or that server does not host the client subsystem (for a member calling as itself: is not the member's own server) |
//! | 2 | `KeyNotValid` | the key was not valid at the header's `created_at` (not yet, or no longer) |
//! | 3 | `ClockSkew` | `created_at` is further than the allowed skew from our clock, either way |
//! | 3 | `InvalidSecurityServer` | the header names a target server other than this one |
//! | 3 | `InvalidBody` | the body's SHA-256 differs from the signed one |
//! | 4 | `DuplicateMessage` | this client's server sent a request with this X-Road-Request-Id within the replay window (a replay: the client's server makes one per request; the client's own X-Road-Id may repeat) |
//! | 4 | `ClockSkew` | the message is older than the replay window (only when the window is shorter than the skew) |
//! | 4 | `ReplayCacheFull` | the replay cache is full; the message cannot be checked now |
//! | 5 | `UnknownService` | this server does not host the service's subsystem |
//!
//! Target server and body are checked before the replay cache so that a message refused for
//! them does not use up its X-Road-Request-Id. The service's existence in the provider's own service
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

use certs::{Domain, KeyId};
use globalconf::{ClientId, GlobalConf, MemberKey, SecurityServerId, ServiceId, SubsystemId};
use proto::v1 as pb;

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
    request_id: &str,
    body_sha256: &[u8; 32],
    signer: &KeyId,
    created_at: i64,
    target: &SecurityServerId,
) -> pb::RequestHeader {
    pb::RequestHeader {
        message_id: req.message_id.clone(),
        request_id: request_id.to_owned(),
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
        body_sha256: body_sha256.to_vec(),
        signer_key_id: signer.as_str().to_owned(),
        target_server: target.to_string(),
    }
}

/// A request header whose signature, signer, peer, time, replay, target, body and service
/// hosting were checked by [`verify_request`]; nothing else can make one.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    header: pb::RequestHeader,
    client: ClientId,
    service: ServiceId,
    method: Method,
    peer: SecurityServerId,
    signed_bytes: Vec<u8>,
    signature: Vec<u8>,
    key_id: KeyId,
    request_hash: [u8; 64],
}

/// What the replay window remembers of a request: its X-Road-Request-Id, made unique by the
/// client's security server; for a server of an earlier version that sent none, its X-Road-Id
/// (which its client then may not repeat within the window).
pub fn replay_key(header: &pb::RequestHeader) -> &str {
    if header.request_id.is_empty() {
        &header.message_id
    } else {
        &header.request_id
    }
}

impl VerifiedRequest {
    pub fn header(&self) -> &pb::RequestHeader {
        &self.header
    }

    /// The X-Road-Request-Id the client's server made for this request (empty from servers of
    /// earlier versions).
    pub fn request_id(&self) -> &str {
        &self.header.request_id
    }
    pub fn client(&self) -> &ClientId {
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

/// The configurations a request is checked against: the client's instance's (its servers and
/// member keys) and the provider server's own (what it hosts). The same one, unless the client
/// belongs to a federated instance.
#[derive(Debug, Clone, Copy)]
pub struct Confs<'c> {
    pub client: &'c GlobalConf,
    pub own: &'c GlobalConf,
}

impl<'c> From<&'c GlobalConf> for Confs<'c> {
    fn from(conf: &'c GlobalConf) -> Self {
        Self {
            client: conf,
            own: conf,
        }
    }
}

/// The provider's server's checks of one request (see the module table for order and codes).
#[allow(clippy::too_many_arguments)]
pub fn verify_request<'c>(
    signed: &pb::SignedHeader,
    body_sha256: &[u8; 32],
    confs: impl Into<Confs<'c>>,
    peer_cert_sha256: &[u8; 32],
    this_server: &SecurityServerId,
    now_unix: i64,
    max_skew: Duration,
    replay: &ReplayCache,
) -> Result<VerifiedRequest, XRoadError> {
    use ServerProxyCode as c;
    let reject = |code: ServerProxyCode, msg: String| XRoadError::new(code, msg);
    let Confs { client: conf, own } = confs.into();

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
    if !header.request_id.is_empty() && !rest::is_valid_message_id(&header.request_id) {
        return Err(reject(
            c::InvalidMessage,
            "malformed X-Road-Request-Id".into(),
        ));
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
    let client: ClientId = header.client.parse().map_err(|e| malformed("client", &e))?;
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
    if !conf.has_client(&client) {
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
    if !conf.hosts_client(&peer.id, &client) {
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
    if header.body_sha256.as_slice() != body_sha256.as_slice() {
        return Err(reject(
            c::InvalidBody,
            "the body does not match its signed SHA-256".into(),
        ));
    }

    // (4) Replay.
    replay
        .check_and_insert(&client, replay_key(&header), header.created_at, now_unix)
        .map_err(|e| match e {
            ReplayError::Duplicate => reject(
                c::DuplicateMessage,
                format!(
                    "this request of {client} (X-Road-Request-Id {}) was already received \
                     within the replay window",
                    replay_key(&header)
                ),
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
    let hosted = own
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
    body_sha256: &[u8; 32],
    signer: &KeyId,
    created_at: i64,
    server: &SecurityServerId,
) -> pb::ResponseHeader {
    pb::ResponseHeader {
        message_id: request.message_id().to_owned(),
        status: u32::from(status.as_u16()),
        headers: to_proto_headers(headers),
        created_at,
        body_sha256: body_sha256.to_vec(),
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
    body_sha256: &[u8; 32],
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
    if header.body_sha256.as_slice() != body_sha256.as_slice() {
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

mod sign;
pub use sign::{sign_request, sign_response, try_sign_request, try_sign_response};

#[cfg(test)]
mod tests;
