//! The requests enrolled security servers sign and send to the registry's public endpoint,
//! recognised in full before anything else looks at them: certificate renewals and new member
//! signing keys (DESIGN §3, lifecycle). Pure: what needs the registry's state (which certificate
//! or key is listed) is checked by the operations that call these (`ops::renewal`,
//! `ops::key_requests`).

use certs::{Domain, PublicKey};
use globalconf::{InstanceId, MemberId, SecurityServerId};
use proto::v1 as pb;

use crate::enrollment::{check_age, decode_exact, ed25519_spki};
use crate::error::RegistryError;

/// A renewal request whose structure was recognised in full and whose new key signed it.
#[derive(Debug)]
pub struct VerifiedRenewal {
    pub server_id: SecurityServerId,
    /// SubjectPublicKeyInfo DER of the new TLS key.
    pub new_key_der: Vec<u8>,
    pub in_use: bool,
    /// The signed request bytes, which the current key's signature must cover too.
    pub request: Vec<u8>,
    pub current_key_signature: Vec<u8>,
}

/// Recognises a `SignedRenewalRequest` in full and checks the new key's signature and the
/// request's age; whether the current key signed it needs the registry's state.
pub fn verify_renewal(
    body: &[u8],
    instance: &InstanceId,
    now: i64,
) -> Result<VerifiedRenewal, RegistryError> {
    let bad = |m: String| RegistryError::BadRequest(m);
    let signed: pb::SignedRenewalRequest =
        decode_exact(body, "SignedRenewalRequest").map_err(bad)?;
    let request: pb::RenewalRequest =
        decode_exact(&signed.request, "RenewalRequest").map_err(bad)?;
    let new_key = ed25519_spki(&request.new_tls_public_key_der).ok_or_else(|| {
        bad("new_tls_public_key_der is not the SubjectPublicKeyInfo of an Ed25519 key".into())
    })?;
    new_key
        .verify(
            Domain::RenewalRequest,
            &signed.request,
            &signed.new_key_signature,
        )
        .map_err(|_| RegistryError::RenewalSignature)?;
    let server_id: SecurityServerId = request
        .server_id
        .parse()
        .map_err(|e| bad(format!("server_id: {e}")))?;
    if server_id.owner().instance() != instance.as_str() {
        return Err(bad(format!(
            "server {server_id} does not belong to instance {instance}"
        )));
    }
    check_age("renewal request", request.created_at, now).map_err(bad)?;
    Ok(VerifiedRenewal {
        server_id,
        new_key_der: request.new_tls_public_key_der,
        in_use: request.in_use,
        request: signed.request,
        current_key_signature: signed.current_key_signature,
    })
}

/// A key request recognised in full, signed by the new key it names, at most a day old.
#[derive(Debug)]
pub struct ParsedKeyRequest {
    pub member: MemberId,
    pub server_id: SecurityServerId,
    pub new_key: PublicKey,
    pub retire_current_after_secs: u64,
    /// The envelope: the request bytes and the current key's id and signature, still to check.
    pub signed: pb::SignedKeyRequest,
}

/// Recognises a `SignedKeyRequest` in full and checks the new key's signature and the request's
/// age; whether a valid key of the member signed it needs the registry's state.
pub fn parse_key_request(body: &[u8], now: i64) -> Result<ParsedKeyRequest, RegistryError> {
    let bad = |m: String| RegistryError::BadRequest(m);
    let signed: pb::SignedKeyRequest = decode_exact(body, "SignedKeyRequest").map_err(bad)?;
    let request: pb::KeyRequest = decode_exact(&signed.request, "KeyRequest").map_err(bad)?;
    let member: MemberId = request
        .member_id
        .parse()
        .map_err(|e| bad(format!("member_id: {e}")))?;
    let server_id: SecurityServerId = request
        .server_id
        .parse()
        .map_err(|e| bad(format!("server_id: {e}")))?;
    let new_key = PublicKey::from_bytes(&request.new_public_key)
        .map_err(|e| bad(format!("new_public_key: {e}")))?;
    check_age("key request", request.created_at, now).map_err(bad)?;
    new_key
        .verify(
            Domain::KeyRequest,
            &signed.request,
            &signed.new_key_signature,
        )
        .map_err(|_| RegistryError::KeyRequestSignature)?;
    Ok(ParsedKeyRequest {
        member,
        server_id,
        new_key,
        retire_current_after_secs: request.retire_current_after_secs,
        signed,
    })
}
