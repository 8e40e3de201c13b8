//! The instance certificate authority: it issues each security server's TLS
//! certificate (DESIGN.md §3). Peers are accepted by certificate pin, so the CA
//! mainly gives HTTPS clients of the registry something to chain to.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::{
    Clock, Error, SigningKey, cert_sha256, cert_to_pem, certs_from_pem, load_secret_key,
    save_secret_key, write_file_atomic,
};

/// Certificates start this long before "now", so a peer whose clock is a little
/// behind does not reject a certificate issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The last instant X.509 time can express: 9999-12-31T23:59:59Z.
const LAST_CERT_TIME: Duration = Duration::from_secs(253_402_300_799);

/// The CA certificate and its Ed25519 key. `Debug` shows no key material.
pub struct CertificateAuthority {
    key: SigningKey,
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
}

impl CertificateAuthority {
    /// A new self-signed CA "xroad-rs `instance` CA" with a fresh Ed25519 key,
    /// valid for `validity` from one hour before `clock.now()`.
    pub fn generate(instance: &str, validity: Duration, clock: &dyn Clock) -> Result<Self, Error> {
        let key = SigningKey::generate()?;
        let params = ca_params(instance, None, validity, clock)?;
        Self::self_signed(key, params)
    }

    /// The CA that takes over from this one in a rollover, and the certificate this CA issues
    /// for it (a cross-certificate), so that a client trusting only this CA still accepts what
    /// the successor issues when the server sends the cross-certificate after its own.
    ///
    /// The successor is named "xroad-rs `instance` CA <key id>", so that no two CAs a client
    /// may trust at once share a name. The cross-certificate ends when the earlier of the two does.
    pub fn successor(
        &self,
        instance: &str,
        validity: Duration,
        clock: &dyn Clock,
    ) -> Result<(Self, Vec<u8>), Error> {
        let key = SigningKey::generate()?;
        let params = ca_params(instance, Some(&key), validity, clock)?;
        let mut cross_params = params.clone();
        let own_end = crate::certificate_info(&self.cert_der)?.not_after;
        if let Ok(end) = u64::try_from(own_end)
            && UNIX_EPOCH + Duration::from_secs(end) < clock.now() + validity
        {
            cross_params.not_after = (UNIX_EPOCH + Duration::from_secs(end)).into();
        }
        cross_params.serial_number = Some(random_serial()?);
        cross_params.use_authority_key_identifier_extension = true;
        let cross = cross_params
            .signed_by(&rcgen_key_pair(&key)?, &self.issuer)?
            .der()
            .to_vec();
        Ok((Self::self_signed(key, params)?, cross))
    }

    /// Whether this CA signed `cert_der` (any certificate; its validity is not checked).
    pub fn issued(&self, cert_der: &[u8]) -> bool {
        issued_by(cert_der, &self.cert_der)
    }

    fn self_signed(key: SigningKey, params: CertificateParams) -> Result<Self, Error> {
        let key_pair = rcgen_key_pair(&key)?;
        let cert = params.self_signed(&key_pair)?;
        Ok(CertificateAuthority {
            key,
            issuer: Issuer::new(params, key_pair),
            cert_der: cert.der().to_vec(),
        })
    }

    /// Loads a CA saved with [`save`](Self::save): the certificate PEM and the
    /// PKCS#8 PEM key file (which must have mode 0600).
    pub fn load(cert_pem_path: &Path, key_path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read_to_string(cert_pem_path).map_err(|source| Error::Io {
            path: cert_pem_path.to_owned(),
            source,
        })?;
        let mut certs = certs_from_pem(&pem)?;
        if certs.len() != 1 {
            return Err(Error::Certificate(format!(
                "{}: expected one CA certificate, found {}",
                cert_pem_path.display(),
                certs.len()
            )));
        }
        let cert_der = certs.remove(0);
        let key = load_secret_key(key_path)?;
        // Catches a certificate and key file from different CAs. DER is canonical, so
        // the certificate holds exactly these bytes iff it certifies this key.
        let spki = key.public_key().to_spki_der();
        if !cert_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(Error::Certificate(format!(
                "{} does not certify the key in {}",
                cert_pem_path.display(),
                key_path.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(cert_der.as_slice()),
            rcgen_key_pair(&key)?,
        )?;
        Ok(CertificateAuthority {
            key,
            issuer,
            cert_der,
        })
    }

    /// Writes the certificate (0644, replacing) and the key (0600, refusing to
    /// overwrite an existing key file). The key is written first, so a failure
    /// never leaves a certificate whose key is lost.
    pub fn save(&self, cert_pem_path: &Path, key_path: &Path) -> Result<(), Error> {
        save_secret_key(key_path, &self.key)?;
        write_file_atomic(cert_pem_path, self.certificate_pem().as_bytes())
    }

    pub fn certificate_pem(&self) -> String {
        cert_to_pem(&self.cert_der)
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues an end-entity certificate (serverAuth and clientAuth, not a CA) for a
    /// key the CA does not hold.
    ///
    /// `spki_der` is the subject's SubjectPublicKeyInfo DER (see
    /// [`PublicKey::to_spki_der`](crate::PublicKey::to_spki_der)); `common_name` e.g.
    /// `"JP/GOV/digital-agency/ss1"`; `hosts` become subject alternative names, IP
    /// addresses as IP SANs and anything else as DNS SANs. Returns the certificate DER.
    pub fn issue(
        &self,
        common_name: &str,
        spki_der: &[u8],
        hosts: &[String],
        validity: Duration,
        clock: &dyn Clock,
    ) -> Result<Vec<u8>, Error> {
        if common_name.is_empty() {
            return Err(Error::Certificate("common name is empty".into()));
        }
        let subject_key = SubjectPublicKeyInfo::from_der(spki_der)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = hosts
            .iter()
            .map(|host| match host.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(host.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity, clock)?;
        params.serial_number = Some(random_serial()?);

        Ok(params.signed_by(&subject_key, &self.issuer)?.der().to_vec())
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_sha256", &hex::encode(cert_sha256(&self.cert_der)))
            .field("key", &self.key)
            .finish()
    }
}

/// A CA certificate's parameters: "xroad-rs `instance` CA", followed by the first characters
/// of `key_id_of`'s key id for a successor.
fn ca_params(
    instance: &str,
    key_id_of: Option<&SigningKey>,
    validity: Duration,
    clock: &dyn Clock,
) -> Result<CertificateParams, Error> {
    if instance.is_empty() {
        return Err(Error::Certificate("instance name is empty".into()));
    }
    let name = match key_id_of {
        None => format!("xroad-rs {instance} CA"),
        Some(key) => format!("xroad-rs {instance} CA {}", &key.key_id().as_str()[..8]),
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, instance);
    // The CA signs security-server certificates only, and at a rollover the cross-certificate
    // of its successor. Path length 0 says no CA may sign below it; a trust anchor's own
    // constraint binds no verifier we use (RFC 5280 §6.1.1 leaves it to them), and the
    // cross-certificate is only sent until the rollover ends.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, validity, clock)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Whether the certificate `ca_der` certifies the key that signed `cert_der`: the issuer's name
/// matches the CA's subject and the signature verifies with the CA's key. False for anything
/// that does not parse.
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The CA key in the form rcgen signs with.
fn rcgen_key_pair(key: &SigningKey) -> Result<KeyPair, Error> {
    let der = key.to_pkcs8_der()?;
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &PKCS_ED25519,
    )?)
}

fn set_validity(
    params: &mut CertificateParams,
    validity: Duration,
    clock: &dyn Clock,
) -> Result<(), Error> {
    let now = clock.now();
    let not_before = now
        .checked_sub(BACKDATE)
        .filter(|t| *t >= UNIX_EPOCH)
        .unwrap_or(UNIX_EPOCH);
    // Checked here because converting an out-of-range time for rcgen would panic.
    let not_after = now
        .checked_add(validity)
        .filter(|t| {
            t.duration_since(UNIX_EPOCH)
                .is_ok_and(|d| d <= LAST_CERT_TIME)
        })
        .ok_or_else(|| Error::Certificate("validity must end between 1970 and 9999".into()))?;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(())
}

/// A random positive serial, so two certificates for the same key never share one.
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    use std::time::SystemTime;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;
    use crate::{ManualClock, SystemClock, certificate_info};

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// Verifies `leaf` for `host` against `ca_der` the way an HTTPS client would, at `at`.
    fn verify_chain(
        ca_der: &[u8],
        leaf: &[u8],
        host: &str,
        at: SystemTime,
    ) -> Result<(), rustls::Error> {
        verify_with(&[ca_der], leaf, &[], host, at)
    }

    /// Verifies `leaf` (sent with `intermediates`) for `host` against the roots `cas`, at `at`.
    fn verify_with(
        cas: &[&[u8]],
        leaf: &[u8],
        intermediates: &[&[u8]],
        host: &str,
        at: SystemTime,
    ) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for ca_der in cas {
            roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
        }
        let intermediates: Vec<_> = intermediates
            .iter()
            .map(|d| CertificateDer::from(d.to_vec()))
            .collect();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_server_cert(
                &CertificateDer::from(leaf),
                &intermediates,
                &ServerName::try_from(host.to_owned()).unwrap(),
                &[],
                UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap()),
            )
            .map(|_| ())
    }

    #[test]
    fn issued_certificate_for_external_key_chains_to_ca() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let ca = CertificateAuthority::generate("JP-TEST", 365 * DAY, &clock).unwrap();
        let subject = SigningKey::from_seed([4; 32]);
        let hosts = vec!["127.0.0.1".to_owned(), "ss1.example.test".to_owned()];
        let leaf = ca
            .issue(
                "JP-TEST/GOV/agency/ss1",
                &subject.public_key().to_spki_der(),
                &hosts,
                30 * DAY,
                &clock,
            )
            .unwrap();

        verify_chain(ca.certificate_der(), &leaf, "127.0.0.1", clock.now()).unwrap();
        verify_chain(ca.certificate_der(), &leaf, "ss1.example.test", clock.now()).unwrap();
        // The certificate carries the subject's key, not the CA's.
        let spki = subject.public_key().to_spki_der();
        assert!(leaf.windows(spki.len()).any(|w| w == spki.as_slice()));
    }

    #[test]
    fn issued_certificate_is_checked_for_name_time_and_issuer() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let ca = CertificateAuthority::generate("JP-TEST", 365 * DAY, &clock).unwrap();
        let other_ca = CertificateAuthority::generate("JP-TEST", 365 * DAY, &clock).unwrap();
        let spki = SigningKey::from_seed([4; 32]).public_key().to_spki_der();
        let leaf = ca
            .issue("ss1", &spki, &["127.0.0.1".to_owned()], 30 * DAY, &clock)
            .unwrap();

        assert!(verify_chain(ca.certificate_der(), &leaf, "127.0.0.2", clock.now()).is_err());
        assert!(verify_chain(other_ca.certificate_der(), &leaf, "127.0.0.1", clock.now()).is_err());
        // Backdated one hour, valid for 30 days from issue.
        let just_before = clock.now() - BACKDATE + Duration::from_secs(1);
        verify_chain(ca.certificate_der(), &leaf, "127.0.0.1", just_before).unwrap();
        let too_early = clock.now() - BACKDATE - Duration::from_secs(1);
        assert!(verify_chain(ca.certificate_der(), &leaf, "127.0.0.1", too_early).is_err());
        let expired = clock.now() + 30 * DAY + Duration::from_secs(1);
        assert!(verify_chain(ca.certificate_der(), &leaf, "127.0.0.1", expired).is_err());
    }

    #[test]
    fn a_successor_is_trusted_through_its_cross_certificate_until_clients_trust_it() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let old = CertificateAuthority::generate("JP-TEST", 365 * DAY, &clock).unwrap();
        let (new, cross) = old.successor("JP-TEST", 3650 * DAY, &clock).unwrap();
        let spki = SigningKey::from_seed([5; 32]).public_key().to_spki_der();
        let hosts = ["registry.test".to_owned()];
        let leaf = new
            .issue("registry", &spki, &hosts, 30 * DAY, &clock)
            .unwrap();
        let now = clock.now();
        let (o, n) = (old.certificate_der(), new.certificate_der());

        // A client that trusts only the old CA needs the cross-certificate.
        verify_with(&[o], &leaf, &[&cross], "registry.test", now).unwrap();
        assert!(verify_with(&[o], &leaf, &[], "registry.test", now).is_err());
        // Clients that trust the new CA, alone or beside the old, accept either chain.
        for roots in [&[n][..], &[n, o], &[o, n]] {
            verify_with(roots, &leaf, &[&cross], "registry.test", now).unwrap();
            verify_with(roots, &leaf, &[], "registry.test", now).unwrap();
        }
        // What the old CA issues is not accepted by a client that trusts only the new one.
        let old_leaf = old
            .issue("registry", &spki, &hosts, 30 * DAY, &clock)
            .unwrap();
        assert!(verify_with(&[n], &old_leaf, &[&cross], "registry.test", now).is_err());

        assert_ne!(
            certificate_info(n).unwrap().spki_der,
            certificate_info(o).unwrap().spki_der
        );
        // The cross-certificate ends with the old CA, not after it.
        assert_eq!(
            certificate_info(&cross).unwrap().not_after,
            certificate_info(o).unwrap().not_after
        );
        assert!(new.issued(&leaf) && !old.issued(&leaf));
        assert!(old.issued(&cross) && !new.issued(&cross));
        assert!(old.issued(o) && new.issued(n) && !new.issued(o));
        assert!(!old.issued(b"not a certificate"));
    }

    #[test]
    fn issue_rejects_garbage_spki() {
        let ca = CertificateAuthority::generate("T", DAY, &SystemClock).unwrap();
        assert!(matches!(
            ca.issue("ss1", b"not der", &[], DAY, &SystemClock),
            Err(Error::Certificate(_))
        ));
    }

    #[test]
    fn save_writes_key_0600_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("ca.pem");
        let key_path = dir.path().join("ca.key");
        let ca = CertificateAuthority::generate("JP-TEST", 365 * DAY, &SystemClock).unwrap();
        ca.save(&cert_path, &key_path).unwrap();

        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_path), 0o600);
        assert_eq!(mode(&cert_path), 0o644);

        let loaded = CertificateAuthority::load(&cert_path, &key_path).unwrap();
        assert_eq!(loaded.certificate_der(), ca.certificate_der());
        assert_eq!(loaded.certificate_pem(), ca.certificate_pem());

        // A certificate from the reloaded CA chains to the original CA certificate.
        let spki = SigningKey::from_seed([8; 32]).public_key().to_spki_der();
        let leaf = loaded
            .issue("ss2", &spki, &["localhost".to_owned()], DAY, &SystemClock)
            .unwrap();
        verify_chain(ca.certificate_der(), &leaf, "localhost", SystemTime::now()).unwrap();

        assert!(matches!(
            ca.save(&cert_path, &key_path),
            Err(Error::Exists { .. })
        ));
    }

    #[test]
    fn load_rejects_key_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = CertificateAuthority::generate("A", DAY, &SystemClock).unwrap();
        let b = CertificateAuthority::generate("B", DAY, &SystemClock).unwrap();
        a.save(&dir.path().join("a.pem"), &dir.path().join("a.key"))
            .unwrap();
        b.save(&dir.path().join("b.pem"), &dir.path().join("b.key"))
            .unwrap();
        let err = CertificateAuthority::load(&dir.path().join("a.pem"), &dir.path().join("b.key"))
            .unwrap_err();
        assert!(matches!(err, Error::Certificate(_)), "{err}");
    }

    #[test]
    fn load_rejects_group_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        CertificateAuthority::generate("A", DAY, &SystemClock)
            .unwrap()
            .save(&cert_path, &key_path)
            .unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            CertificateAuthority::load(&cert_path, &key_path),
            Err(Error::Permissions { .. })
        ));
    }

    #[test]
    fn debug_redacts_key() {
        let ca = CertificateAuthority::generate("A", DAY, &SystemClock).unwrap();
        let debug = format!("{ca:?}");
        assert!(debug.contains(ca.key.key_id().as_str()));
        let pem = ca.key.to_pkcs8_pem().unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!debug.contains(body));
        assert!(!debug.contains("PRIVATE"));
    }

    #[test]
    fn validity_past_year_9999_is_refused() {
        let err =
            CertificateAuthority::generate("A", Duration::from_secs(u64::MAX / 2), &SystemClock)
                .unwrap_err();
        assert!(matches!(err, Error::Certificate(_)));
    }
}
