//! Renewal of a security server's TLS certificate (DESIGN §3, lifecycle), on the public
//! endpoint. The server signs a `RenewalRequest` with the key of the certificate the configuration
//! lists for it and with the new key; the registry issues a certificate for the new key at once
//! and lists it beside the old one, so peers accept both while the server moves over. When the
//! server says it presents the new certificate (`in_use`), the old one is no longer listed.
//!
//! No token and no operator: holding the listed certificate's key is what a server is trusted
//! for. Requests are idempotent, so a server that lost an answer simply asks again.

use certs::{Domain, PublicKey};
use globalconf::SecurityServerId;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Core, audit, not_found};
use crate::datadir::TLS_VALIDITY;
use crate::enrollment::{ed25519_spki, hosts_of};
use crate::error::RegistryError;
use crate::requests::verify_renewal;
use crate::store::Change;

/// Where a renewal stands, as the server is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenewalStatus {
    /// A certificate for the new key is issued and listed beside the old one.
    Issued,
    /// The new certificate is the only one listed.
    Complete,
}

/// The answer to `POST /v1/renewals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalView {
    pub server_id: SecurityServerId,
    pub status: RenewalStatus,
    /// The certificate for the new key, followed during a CA rollover by the new CA's
    /// certificate signed by the previous CA.
    pub certificate_pem: String,
}

/// The key a certificate (DER) certifies.
fn certified_key(der: &[u8]) -> Result<PublicKey, RegistryError> {
    let info = certs::certificate_info(der)?;
    ed25519_spki(&info.spki_der)
        .ok_or_else(|| RegistryError::Internal("a listed certificate has no Ed25519 key".into()))
}

impl Core {
    /// What `POST /v1/renewals` does with a `SignedRenewalRequest`'s bytes.
    pub(crate) fn submit_renewal(
        &mut self,
        body: &[u8],
        now: i64,
    ) -> Result<RenewalView, RegistryError> {
        let request = verify_renewal(body, &self.instance, now)?;
        let id = request.server_id.clone();
        let record = self
            .state
            .servers
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(format!("security server {id}")))?;
        // The server proves it holds a certificate the configuration lists for it now.
        let listed =
            std::iter::once(record.tls_certificate_der()).chain(record.renewal_certificate_der());
        let mut signed_by_listed = false;
        for der in listed {
            if certified_key(der)?
                .verify(
                    Domain::RenewalRequest,
                    &request.request,
                    &request.current_key_signature,
                )
                .is_ok()
            {
                signed_by_listed = true;
            }
        }
        if !signed_by_listed {
            tracing::warn!(server_id = %id, "renewal request not signed by a listed certificate's key");
            return Err(RegistryError::RenewalSignature);
        }
        // During a CA rollover a certificate of the new CA is followed by the cross-certificate,
        // so that clients of the server's client proxy that still trust only the old CA accept it.
        let cross = self.cas.previous.as_ref().map(|p| {
            (
                p.cross_der.clone(),
                self.cas.issuing.certificate_der().to_vec(),
            )
        });
        let view = |status, der: &[u8]| RenewalView {
            server_id: id.clone(),
            status,
            certificate_pem: match &cross {
                Some((cross, issuing)) if certs::issued_by(der, issuing) => {
                    certs::cert_to_pem(der) + &certs::cert_to_pem(cross)
                }
                _ => certs::cert_to_pem(der),
            },
        };
        let certifies_new_key = |der: &[u8]| {
            certs::certificate_info(der).is_ok_and(|info| info.spki_der == request.new_key_der)
        };

        // The new key's certificate is already the listed one: done before (a repeated request).
        if certifies_new_key(record.tls_certificate_der()) {
            return Ok(view(RenewalStatus::Complete, record.tls_certificate_der()));
        }
        let pending = record
            .renewal_certificate_der()
            .filter(|d| certifies_new_key(d));
        match (pending.map(<[u8]>::to_vec), request.in_use) {
            (Some(der), true) => {
                let renewed = record.renewed();
                self.execute(
                    vec![Change::PutServer(id.clone(), renewed)],
                    audit(
                        "server.renewal.complete",
                        json!({"server_id": id, "tls_cert_sha256": hex::encode(certs::cert_sha256(&der))}),
                    ),
                    false,
                    now,
                )?;
                Ok(view(RenewalStatus::Complete, &der))
            }
            (Some(der), false) => Ok(view(RenewalStatus::Issued, &der)),
            (None, true) => Err(RegistryError::Conflict(format!(
                "no certificate was issued for this key to {id}; ask for one first"
            ))),
            (None, false) => {
                let der = self
                    .cas
                    .issuing
                    .issue(
                        &id.to_string(),
                        &request.new_key_der,
                        &hosts_of(&record.addresses),
                        TLS_VALIDITY,
                        &*self.clock,
                    )
                    .map_err(|e| {
                        RegistryError::BadRequest(format!("cannot certify the new TLS key: {e}"))
                    })?;
                self.execute(
                    vec![Change::PutServer(id.clone(), record.with_renewal(der.clone()))],
                    audit(
                        "server.renewal.issue",
                        json!({"server_id": id, "tls_cert_sha256": hex::encode(certs::cert_sha256(&der))}),
                    ),
                    false,
                    now,
                )?;
                Ok(view(RenewalStatus::Issued, &der))
            }
        }
    }
}
