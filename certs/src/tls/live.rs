//! A TLS identity that can be replaced while servers and clients keep running: a renewed
//! certificate is presented by every handshake after [`LiveIdentity::replace`], without a restart.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{PrivatePkcs8KeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use rustls::{SignatureScheme, crypto::ring::sign::any_eddsa_type};

use super::TlsIdentity;
use crate::{Clock, Error, SigningKey};

/// The identity presented now, shared by every configuration made from it. Clones share it.
#[derive(Debug, Clone)]
pub struct LiveIdentity {
    current: Arc<RwLock<Current>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Current {
    identity: TlsIdentity,
    certified: Arc<CertifiedKey>,
    /// The leaf's SHA-256, computed once: the peer pool asks for it on every call.
    pin: [u8; 32],
}

impl Current {
    fn new(identity: TlsIdentity) -> Result<Self, Error> {
        let key: Arc<dyn rustls::sign::SigningKey> = if identity.key.in_module() {
            Arc::new(ModuleTlsKey(identity.key.clone()))
        } else {
            let der = identity.key.to_pkcs8_der()?;
            any_eddsa_type(&PrivatePkcs8KeyDer::from(der.as_slice()))?
        };
        let certified = Arc::new(CertifiedKey::new(identity.rustls_chain(), key));
        Ok(Self {
            pin: identity.leaf_sha256(),
            identity,
            certified,
        })
    }
}

impl LiveIdentity {
    /// `clock` is the time certificates are checked against (peers' validity windows).
    pub fn new(identity: TlsIdentity, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        Ok(Self {
            current: Arc::new(RwLock::new(Current::new(identity)?)),
            clock,
        })
    }

    /// Presents `identity` from the next handshake on. Connections already made keep theirs.
    pub fn replace(&self, identity: TlsIdentity) -> Result<(), Error> {
        let next = Current::new(identity)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// The identity presented now.
    pub fn current(&self) -> TlsIdentity {
        self.read(|c| c.identity.clone())
    }

    /// The pin of the identity presented now.
    pub fn leaf_sha256(&self) -> [u8; 32] {
        self.read(|c| c.pin)
    }

    fn read<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        f(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver(Arc::clone(&self.current)))
    }

    pub(super) fn time(&self) -> Arc<dyn TimeProvider> {
        clock_time(Arc::clone(&self.clock))
    }
}

/// Hands rustls the certified key of the moment, on both sides of a connection.
#[derive(Debug)]
pub(super) struct Resolver(Arc<RwLock<Current>>);

impl Resolver {
    fn get(&self) -> Arc<CertifiedKey> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .certified,
        )
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ED25519)
            .then(|| self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS key inside a hardware security module: the handshake's signature is made there.
#[derive(Debug)]
struct ModuleTlsKey(SigningKey);

impl rustls::sign::SigningKey for ModuleTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(ModuleTlsSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct ModuleTlsSigner(SigningKey);

impl rustls::sign::Signer for ModuleTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .sign_raw(message)
            .map(|s| s.to_vec())
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// `clock` as rustls's time source.
pub(super) fn clock_time(clock: Arc<dyn Clock>) -> Arc<dyn TimeProvider> {
    Arc::new(ClockTime(clock))
}

/// The injected clock as rustls's time source.
#[derive(Debug)]
struct ClockTime(Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        self.0
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}
