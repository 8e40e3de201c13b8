//! rustls configurations, TLS 1.3 only, ring provider only.
//!
//! Two trust models (DESIGN.md §3):
//! - HTTPS to the registry: the client trusts the instance CA and checks names as usual.
//! - Security server to security server: mutual TLS where each side accepts the other
//!   only if the SHA-256 of its certificate is pinned, as the current global
//!   configuration says. Names and chains are not checked there: the pin is stronger,
//!   and it lets a removed server be cut off at once.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::{Error, SigningKey, SystemClock, cert_sha256};

mod live;
pub use live::LiveIdentity;

/// A certificate chain (leaf first, DER) and the Ed25519 key of the leaf. `Debug` shows
/// the leaf fingerprint and key id only.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_chain: Vec<Vec<u8>>,
    key: SigningKey,
}

impl TlsIdentity {
    pub fn new(cert_chain: Vec<Vec<u8>>, key: SigningKey) -> Self {
        TlsIdentity { cert_chain, key }
    }

    /// The key the leaf certificate certifies.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The pin of this identity: SHA-256 of the leaf certificate's DER.
    /// (For an empty chain, which no config accepts, the SHA-256 of nothing.)
    pub fn leaf_sha256(&self) -> [u8; 32] {
        cert_sha256(self.cert_chain.first().map_or(&[][..], Vec::as_slice))
    }

    fn rustls_chain(&self) -> Vec<CertificateDer<'static>> {
        self.cert_chain
            .iter()
            .map(|der| CertificateDer::from(der.clone()))
            .collect()
    }

    fn rustls_key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        let mut der = self.key.to_pkcs8_der()?;
        // Moves the buffer out without copying; rustls wipes its key DER on drop.
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            std::mem::take(&mut *der),
        )))
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("leaf_sha256", &hex::encode(self.leaf_sha256()))
            .field("chain_len", &self.cert_chain.len())
            .field("key", &self.key)
            .finish()
    }
}

/// Decides which peer certificates a pinned connection accepts.
pub trait PinPolicy: Send + Sync + fmt::Debug + 'static {
    /// `cert_sha256` is the SHA-256 of the peer's end-entity certificate DER.
    fn allows(&self, cert_sha256: &[u8; 32]) -> bool;
}

/// A fixed set of allowed certificate hashes.
#[derive(Debug, Clone, Default)]
pub struct PinSet(pub HashSet<[u8; 32]>);

impl PinPolicy for PinSet {
    fn allows(&self, cert_sha256: &[u8; 32]) -> bool {
        self.0.contains(cert_sha256)
    }
}

impl FromIterator<[u8; 32]> for PinSet {
    fn from_iter<I: IntoIterator<Item = [u8; 32]>>(iter: I) -> Self {
        PinSet(iter.into_iter().collect())
    }
}

/// HTTPS server without client authentication (the registry's public endpoints).
pub fn server_config(identity: &TlsIdentity, alpn: &[&[u8]]) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.rustls_chain(), identity.rustls_key()?)?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// HTTPS server for information systems (the client proxy): TLS 1.2 or 1.3, and a client
/// certificate requested but not required. Any certificate is accepted at the handshake (its
/// key must sign the handshake, so the client holds it); whether its SHA-256 is registered for
/// the subsystem a request names is checked per request. Sessions are not resumed, so every
/// connection presents its certificate.
pub fn information_system_server_config(
    identity: &TlsIdentity,
    alpn: &[&[u8]],
) -> Result<ServerConfig, Error> {
    LiveIdentity::new(identity.clone(), Arc::new(SystemClock))?
        .information_system_server_config(alpn)
}

/// Allows every certificate (checked later, per request).
#[derive(Debug)]
struct AnyCertificate;

impl PinPolicy for AnyCertificate {
    fn allows(&self, _cert_sha256: &[u8; 32]) -> bool {
        true
    }
}

/// HTTPS client that trusts only the given CA certificates (the instance CA from the
/// anchor) and checks the server name as usual.
pub fn client_config_trusting(ca_ders: &[Vec<u8>], alpn: &[&[u8]]) -> Result<ClientConfig, Error> {
    client_config_trusting_at(ca_ders, alpn, Arc::new(SystemClock))
}

/// [`client_config_trusting`], checking certificates' validity at `clock`'s time.
pub fn client_config_trusting_at(
    ca_ders: &[Vec<u8>],
    alpn: &[&[u8]],
    clock: Arc<dyn crate::Clock>,
) -> Result<ClientConfig, Error> {
    CaRoots::new(ca_ders)?.client_config(alpn, clock)
}

/// The CA certificates an HTTPS client trusts, replaceable while clients made from them run:
/// a security server trusts the instance CAs its newest configuration lists, which change at a
/// CA rollover (DESIGN §3). Each handshake uses the set held at its start.
#[derive(Debug)]
pub struct CaRoots {
    current: RwLock<Roots>,
}

#[derive(Debug)]
struct Roots {
    ders: Vec<Vec<u8>>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl Roots {
    fn new(ca_ders: &[Vec<u8>]) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for der in ca_ders {
            roots.add(CertificateDer::from(der.as_slice()))?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Error::Certificate(format!("trust anchors: {e}")))?;
        Ok(Self {
            ders: ca_ders.to_vec(),
            verifier,
        })
    }
}

impl CaRoots {
    /// Trusts `ca_ders` (DER certificates; at least one).
    pub fn new(ca_ders: &[Vec<u8>]) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            current: RwLock::new(Roots::new(ca_ders)?),
        }))
    }

    /// Trusts `ca_ders` instead from the next handshake on. Returns whether the set changed.
    pub fn replace(&self, ca_ders: &[Vec<u8>]) -> Result<bool, Error> {
        if self.ders() == ca_ders {
            return Ok(false);
        }
        let next = Roots::new(ca_ders)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(true)
    }

    /// The certificates trusted now.
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.roots().ders.clone()
    }

    fn roots(&self) -> std::sync::RwLockReadGuard<'_, Roots> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        Arc::clone(&self.roots().verifier)
    }

    /// An HTTPS client configuration (TLS 1.3, no client certificate) that trusts these roots,
    /// as they are at each handshake, and checks validity at `clock`'s time.
    pub fn client_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        clock: Arc<dyn crate::Clock>,
    ) -> Result<ClientConfig, Error> {
        let mut config = ClientConfig::builder_with_details(provider(), live::clock_time(clock))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(self) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        config.alpn_protocols = alpn_list(alpn);
        Ok(config)
    }
}

impl ServerCertVerifier for CaRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// Server side of pinned mutual TLS: requires a client certificate and accepts it iff
/// `policy` allows its SHA-256 and it is valid now. Handshake signatures are still verified, so
/// the peer must hold the pinned certificate's key.
pub fn pinned_server_config(
    identity: &TlsIdentity,
    policy: Arc<dyn PinPolicy>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, Error> {
    LiveIdentity::new(identity.clone(), Arc::new(SystemClock))?.pinned_server_config(policy, alpn)
}

/// Client side of pinned mutual TLS: presents `identity` and accepts the server iff
/// `policy` allows its certificate's SHA-256 and it is valid now. The server name is not checked.
pub fn pinned_client_config(
    identity: &TlsIdentity,
    policy: Arc<dyn PinPolicy>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, Error> {
    LiveIdentity::new(identity.clone(), Arc::new(SystemClock))?.pinned_client_config(policy, alpn)
}

impl LiveIdentity {
    /// [`server_config`], presenting whatever this identity holds at each handshake.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, Error> {
        let mut config = ServerConfig::builder_with_details(provider(), self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver());
        config.alpn_protocols = alpn_list(alpn);
        Ok(config)
    }

    /// [`pinned_server_config`], presenting whatever this identity holds at each handshake and
    /// checking validity against this identity's clock.
    pub fn pinned_server_config(
        &self,
        policy: Arc<dyn PinPolicy>,
        alpn: &[&[u8]],
    ) -> Result<ServerConfig, Error> {
        let provider = provider();
        let verifier = PinnedCertVerifier::pinned(policy, &provider);
        let mut config = ServerConfig::builder_with_details(provider, self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver());
        // A resumed session skips certificate verification, so a peer whose pin was
        // removed could keep resuming. Every connection does a full handshake instead.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = alpn_list(alpn);
        Ok(config)
    }

    /// [`pinned_client_config`], presenting whatever this identity holds at each handshake and
    /// checking validity against this identity's clock.
    pub fn pinned_client_config(
        &self,
        policy: Arc<dyn PinPolicy>,
        alpn: &[&[u8]],
    ) -> Result<ClientConfig, Error> {
        let provider = provider();
        let verifier = PinnedCertVerifier::pinned(policy, &provider);
        let mut config = ClientConfig::builder_with_details(provider, self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.resolver());
        // See pinned_server_config: resumption would bypass the pin check.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = alpn_list(alpn);
        Ok(config)
    }

    /// [`information_system_server_config`], presenting whatever this identity holds at each
    /// handshake.
    pub fn information_system_server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, Error> {
        let provider = provider();
        let verifier = Arc::new(PinnedCertVerifier {
            policy: Arc::new(AnyCertificate),
            algorithms: provider.signature_verification_algorithms,
            mandatory: false,
            // Registered per subsystem and checked per request; an information system's own
            // certificate is its operator's business.
            check_validity: false,
        });
        let mut config = ServerConfig::builder_with_details(provider, self.time())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver());
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = alpn_list(alpn);
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_list(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

/// Verifies peers by pin, for both directions of pinned mutual TLS.
#[derive(Debug)]
struct PinnedCertVerifier {
    policy: Arc<dyn PinPolicy>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Whether a client must present a certificate (server side).
    mandatory: bool,
    /// Whether the certificate must be valid at the handshake's time.
    check_validity: bool,
}

impl PinnedCertVerifier {
    /// Both sides of pinned mutual TLS: a certificate is required, pinned and within its validity.
    fn pinned(policy: Arc<dyn PinPolicy>, provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(Self {
            policy,
            algorithms: provider.signature_verification_algorithms,
            mandatory: true,
            check_validity: true,
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        if !self.policy.allows(&cert_sha256(end_entity)) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        if self.check_validity {
            let info = crate::certificate_info(end_entity)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if now > info.not_after {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
            }
            if now < info.not_before {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet,
                ));
            }
        }
        Ok(())
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
