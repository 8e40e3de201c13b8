//! Certificate PEM encoding and fingerprints. Pins everywhere are the SHA-256 of a
//! certificate's DER, computed by [`cert_sha256`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};

use crate::Error;

/// SHA-256 of a certificate's DER encoding: the value that is pinned.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// One `CERTIFICATE` PEM block, 64 base64 characters a line.
pub fn cert_to_pem(der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push('\n');
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The DER of every `CERTIFICATE` block in `pem`, in order; other blocks are skipped.
/// An input without any certificate is an error.
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Certificate(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Certificate("no CERTIFICATE block in PEM".into()));
    }
    Ok(certs)
}

/// What a peer checks in a certificate besides its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds; the certificate is valid through this second.
    pub not_after: i64,
    /// SubjectPublicKeyInfo DER of the certified key.
    pub spki_der: Vec<u8>,
}

impl CertificateInfo {
    /// Whether the certificate is valid at `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The validity window and key of an X.509 certificate (DER).
pub fn certificate_info(der: &[u8]) -> Result<CertificateInfo, Error> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Certificate(format!("cannot parse: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let validity = cert.validity();
    Ok(CertificateInfo {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        spki_der: cert.public_key().raw.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_of_several_certificates() {
        let a: Vec<u8> = (0..=255).collect();
        let b = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = cert_to_pem(&a) + &cert_to_pem(&b);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(certs_from_pem(&pem).unwrap(), vec![a, b]);
    }

    #[test]
    fn other_pem_blocks_are_skipped() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned()
            + &cert_to_pem(b"abc");
        assert_eq!(certs_from_pem(&pem).unwrap(), vec![b"abc".to_vec()]);
    }

    #[test]
    fn pem_without_certificates_is_an_error() {
        assert!(matches!(certs_from_pem(""), Err(Error::Certificate(_))));
        assert!(matches!(
            certs_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(Error::Certificate(_))
        ));
    }

    #[test]
    fn cert_sha256_is_plain_sha256_of_der() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(cert_sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf],);
    }
}
