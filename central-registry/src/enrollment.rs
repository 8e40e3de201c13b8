//! Enrolment of a security server (DESIGN §3), the pure part: recognising a
//! `SignedEnrollmentRequest` in full, checking the proof of possession of the member signing key,
//! and the records the registry keeps about requests and one-time tokens. No I/O.
//!
//! The only way to get a [`VerifiedEnrollment`] is [`verify_enrollment`], so approving a request
//! whose signature was not checked does not compile.

use certs::{Domain, KeyId, PublicKey};
use globalconf::{InstanceId, SecurityServerId};
use prost::Message;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::util::{b64, b64_opt};

/// Why an enrolment request is refused (the registry answers `Registry.BadRequest` or
/// `Registry.InvalidSignature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the enrolment request's signature does not verify")]
    InvalidSignature,
}

/// How far an enrolment request's `created_at` may be from the registry's clock.
pub const MAX_REQUEST_AGE_SECS: i64 = 24 * 3600;

/// A request whose structure was recognised in full and whose signature verified under the
/// member signing key it carries.
#[derive(Debug, Clone)]
pub struct VerifiedEnrollment {
    server_id: SecurityServerId,
    addresses: Vec<String>,
    tls_public_key_der: Vec<u8>,
    member_key: PublicKey,
    created_at: i64,
    /// The signed envelope without its token: what the registry stores.
    envelope: Vec<u8>,
}

impl VerifiedEnrollment {
    pub fn server_id(&self) -> &SecurityServerId {
        &self.server_id
    }
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }
    pub fn tls_public_key_der(&self) -> &[u8] {
        &self.tls_public_key_der
    }
    pub fn member_key(&self) -> &PublicKey {
        &self.member_key
    }
    pub fn created_at(&self) -> i64 {
        self.created_at
    }
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The hosts of its addresses: the subject alternative names of its TLS certificate.
    pub fn hosts(&self) -> Vec<String> {
        hosts_of(&self.addresses)
    }

    /// Refuses a request created more than a day before or after `now` (a replayed old request).
    pub fn check_fresh(&self, now: i64) -> Result<(), EnrollmentError> {
        check_age("enrolment request", self.created_at, now).map_err(EnrollmentError::BadRequest)
    }
}

/// Recognises a `SignedEnrollmentRequest` (the POSTed bytes) and verifies its signature.
/// Returns the verified request and the token it carried ("" when none).
pub fn verify_enrollment(
    body: &[u8],
    instance: &InstanceId,
) -> Result<(VerifiedEnrollment, String), EnrollmentError> {
    let bad = |m: String| EnrollmentError::BadRequest(m);
    let signed: pb::SignedEnrollmentRequest =
        decode_exact(body, "SignedEnrollmentRequest").map_err(bad)?;
    let request: pb::EnrollmentRequest =
        decode_exact(&signed.request, "EnrollmentRequest").map_err(bad)?;
    let member_key = PublicKey::from_bytes(&request.member_signing_public_key)
        .map_err(|e| bad(format!("member_signing_public_key: {e}")))?;
    member_key
        .verify(
            Domain::EnrollmentRequest,
            &signed.request,
            &signed.signature,
        )
        .map_err(|_| EnrollmentError::InvalidSignature)?;

    let server_id: SecurityServerId = request
        .server_id
        .parse()
        .map_err(|e| bad(format!("server_id: {e}")))?;
    if server_id.owner().instance() != instance.as_str() {
        return Err(bad(format!(
            "server {server_id} does not belong to instance {instance}"
        )));
    }
    if request.addresses.is_empty() {
        return Err(bad(
            "addresses is empty: at least one host:port is needed".into()
        ));
    }
    for a in &request.addresses {
        split_address(a).map_err(bad)?;
    }
    // One key type everywhere: the server's TLS key is Ed25519 too.
    if ed25519_spki(&request.tls_public_key_der).is_none() {
        return Err(bad(
            "tls_public_key_der is not the SubjectPublicKeyInfo of an Ed25519 key".into(),
        ));
    }
    let envelope = pb::SignedEnrollmentRequest {
        request: signed.request,
        signature: signed.signature,
        token: String::new(),
    }
    .encode_to_vec();
    Ok((
        VerifiedEnrollment {
            server_id,
            addresses: request.addresses,
            tls_public_key_der: request.tls_public_key_der,
            member_key,
            created_at: request.created_at,
            envelope,
        },
        signed.token,
    ))
}

/// Refuses a `what` created more than a day before or after `now` (a replayed old request).
pub fn check_age(what: &str, created_at: i64, now: i64) -> Result<(), String> {
    if created_at.abs_diff(now) > MAX_REQUEST_AGE_SECS.unsigned_abs() {
        return Err(format!(
            "{what} was created at {created_at}, more than a day from the registry's time {now}"
        ));
    }
    Ok(())
}

/// Decodes `bytes` as a `what` message. prost skips unknown fields, so anything we would not
/// produce byte for byte (unknown fields, trailing data) is refused too.
pub fn decode_exact<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, String> {
    let message = M::decode(bytes).map_err(|e| format!("not a {what}: {e}"))?;
    if message.encoded_len() != bytes.len() {
        return Err(format!("{what} has unknown or trailing data"));
    }
    Ok(message)
}

/// The Ed25519 key whose SubjectPublicKeyInfo DER `der` is, exactly.
pub fn ed25519_spki(der: &[u8]) -> Option<PublicKey> {
    let raw = der.get(12..).filter(|_| der.len() == 44)?;
    PublicKey::from_bytes(raw)
        .ok()
        .filter(|k| k.to_spki_der() == der)
}

/// The hosts of `host:port` addresses, each once, in order: a TLS certificate's subject
/// alternative names.
pub fn hosts_of(addresses: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for a in addresses {
        if let Ok((host, _)) = split_address(a)
            && !hosts.iter().any(|h| h == host)
        {
            hosts.push(host.to_owned());
        }
    }
    hosts
}

/// Splits `host:port` (`[v6]:port` for IPv6) into the host (without brackets) and the port.
pub fn split_address(address: &str) -> Result<(&str, u16), String> {
    let bad = || format!("address {address:?} is not host:port");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        (host, rest.strip_prefix(':').ok_or_else(bad)?)
    } else {
        address.rsplit_once(':').ok_or_else(bad)?
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
    let port: u16 = port.parse().map_err(|_| bad())?;
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

/// Where an enrolment request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    Pending,
    Approved,
    Rejected,
}

impl EnrollmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Pending => "pending",
            EnrollmentStatus::Approved => "approved",
            EnrollmentStatus::Rejected => "rejected",
        }
    }
}

/// One enrolment request as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRecord {
    pub server_id: SecurityServerId,
    pub status: EnrollmentStatus,
    pub addresses: Vec<String>,
    pub member_key_id: KeyId,
    pub submitted_at: i64,
    pub decided_at: Option<i64>,
    /// The `SignedEnrollmentRequest` bytes, token removed.
    #[serde(with = "b64")]
    pub signed_request: Vec<u8>,
    /// DER of the issued TLS certificate, once approved.
    #[serde(with = "b64_opt", default)]
    pub certificate_der: Option<Vec<u8>>,
}

/// A one-time enrolment token, stored under the hex SHA-256 of the token (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub server_id: SecurityServerId,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl TokenRecord {
    /// Why this token cannot enrol `server_id` at `now`, if it cannot.
    pub fn refusal(&self, server_id: &SecurityServerId, now: i64) -> Option<&'static str> {
        if self.used_at.is_some() {
            Some("token was already used")
        } else if now >= self.expires_at {
            Some("token has expired")
        } else if &self.server_id != server_id {
            Some("token was issued for another server")
        } else {
            None
        }
    }
}

/// The key a token is stored under: hex SHA-256 of the token text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use certs::SigningKey;

    fn request(key: &SigningKey, server_id: &str, addresses: &[&str]) -> pb::EnrollmentRequest {
        pb::EnrollmentRequest {
            server_id: server_id.into(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            tls_public_key_der: SigningKey::from_seed([2; 32]).public_key().to_spki_der(),
            member_signing_public_key: key.public_key().as_bytes().to_vec(),
            created_at: 1000,
        }
    }

    fn signed(key: &SigningKey, r: &pb::EnrollmentRequest, token: &str) -> Vec<u8> {
        let request = r.encode_to_vec();
        let signature = key.sign(Domain::EnrollmentRequest, &request).to_vec();
        pb::SignedEnrollmentRequest {
            request,
            signature,
            token: token.into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn verifies_a_good_request_and_strips_the_token() {
        let key = SigningKey::from_seed([1; 32]);
        let body = signed(
            &key,
            &request(&key, "JP/GOV/da/ss1", &["ss1.example:5500"]),
            "t0k",
        );
        let jp: InstanceId = "JP".parse().unwrap();
        let (v, token) = verify_enrollment(&body, &jp).unwrap();
        assert_eq!(token, "t0k");
        assert_eq!(v.server_id().to_string(), "JP/GOV/da/ss1");
        assert_eq!(v.hosts(), ["ss1.example"]);
        let stored = pb::SignedEnrollmentRequest::decode(v.envelope()).unwrap();
        assert!(stored.token.is_empty());
        assert!(v.check_fresh(1000 + MAX_REQUEST_AGE_SECS).is_ok());
        assert!(v.check_fresh(1001 + MAX_REQUEST_AGE_SECS).is_err());
    }

    #[test]
    fn refuses_forged_malformed_and_foreign_requests() {
        let key = SigningKey::from_seed([1; 32]);
        let other = SigningKey::from_seed([3; 32]);
        let jp: InstanceId = "JP".parse().unwrap();
        // Signed by another key than the one it names.
        let r = request(&key, "JP/GOV/da/ss1", &["a:1"]);
        let forged = signed(&other, &r, "");
        assert!(matches!(
            verify_enrollment(&forged, &jp),
            Err(EnrollmentError::InvalidSignature)
        ));
        let foreign = signed(&key, &request(&key, "EE/GOV/da/ss1", &["a:1"]), "");
        assert!(matches!(
            verify_enrollment(&foreign, &jp),
            Err(EnrollmentError::BadRequest(_))
        ));
        let no_port = signed(&key, &request(&key, "JP/GOV/da/ss1", &["a"]), "");
        assert!(verify_enrollment(&no_port, &jp).is_err());
        let none = signed(&key, &request(&key, "JP/GOV/da/ss1", &[]), "");
        assert!(verify_enrollment(&none, &jp).is_err());
        let mut trailing = signed(&key, &r, "");
        trailing.extend_from_slice(&[0xf8, 0x01, 0x01]);
        assert!(verify_enrollment(&trailing, &jp).is_err());
        assert!(verify_enrollment(b"\xff\xff", &jp).is_err());
    }

    #[test]
    fn addresses_and_tokens() {
        assert_eq!(split_address("[::1]:5500").unwrap(), ("::1", 5500));
        assert_eq!(split_address("ss1.example:1").unwrap(), ("ss1.example", 1));
        assert!(split_address("ss1.example:0").is_err());
        assert!(split_address("a b:1").is_err());
        let id: SecurityServerId = "JP/GOV/da/ss1".parse().unwrap();
        let other: SecurityServerId = "JP/GOV/da/ss2".parse().unwrap();
        let t = TokenRecord {
            server_id: id.clone(),
            issued_at: 0,
            expires_at: 100,
            used_at: None,
        };
        assert_eq!(t.refusal(&id, 50), None);
        assert!(t.refusal(&other, 50).is_some());
        assert!(t.refusal(&id, 100).is_some());
        assert!(
            TokenRecord {
                used_at: Some(1),
                ..t
            }
            .refusal(&id, 50)
            .is_some()
        );
        assert_eq!(token_hash("abc").len(), 64);
    }
}
