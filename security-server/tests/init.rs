#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `init` makes the server's secrets with mode 0600 and a correctly signed enrolment request;
//! a listener whose port is taken says which.

use std::os::unix::fs::PermissionsExt;

use certs::{Domain, ManualClock, PublicKey};
use prost::Message;
use proto::v1 as pb;
use security_server::Config;
use security_server::identity::{self, IdentityError, Paths};

fn config(dir: &std::path::Path) -> Config {
    Config::from_str(
        "server_id = \"JP/MUN/131016/ss1\"\n[server_proxy]\nadvertise = [\"ss1.city.example:5500\"]\n",
        dir,
    )
    .unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_secret_files_0600_and_a_signed_enrollment_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let clock = ManualClock::at_unix(1_800_000_000);
    let report = identity::init(&config, &clock).unwrap();
    let paths = Paths::new(&config.data_dir);

    let owner = "JP/MUN/131016".parse().unwrap();
    let signing_key_path = paths.signing_key(&owner, &report.signing_key_id);
    for secret in [
        paths.tls_key(),
        paths.admin_token(),
        signing_key_path.clone(),
    ] {
        assert_eq!(mode(&secret), 0o600, "{} is not 0600", secret.display());
    }
    assert_eq!(
        mode(paths.data_dir()) & 0o077,
        0,
        "data_dir is open to others"
    );

    let signed = pb::SignedEnrollmentRequest::decode(
        std::fs::read(paths.enrollment_request())
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let request = pb::EnrollmentRequest::decode(signed.request.as_slice()).unwrap();
    assert_eq!(request.server_id, "JP/MUN/131016/ss1");
    assert_eq!(request.addresses, vec!["ss1.city.example:5500".to_string()]);
    assert_eq!(request.created_at, 1_800_000_000);
    let key = PublicKey::from_bytes(&request.member_signing_public_key).unwrap();
    assert_eq!(key.key_id(), report.signing_key_id);
    key.verify(
        Domain::EnrollmentRequest,
        &signed.request,
        &signed.signature,
    )
    .expect("the request is signed by the member key it carries");

    let signing_key = certs::load_secret_key(&signing_key_path).unwrap();
    assert_eq!(signing_key.public_key(), key);
}

#[test]
fn init_refuses_to_run_twice_and_run_needs_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let clock = ManualClock::at_unix(1_800_000_000);
    identity::init(&config, &clock).unwrap();
    assert!(matches!(
        identity::init(&config, &clock),
        Err(IdentityError::AlreadyInitialised(_))
    ));
    assert!(matches!(
        identity::Identity::load(&config),
        Err(IdentityError::NotEnrolled)
    ));
}

/// A certificate from a test CA for `key`.
fn certificate(ca: &certs::CertificateAuthority, key: &certs::SigningKey) -> String {
    let der = ca
        .issue(
            "JP/MUN/131016/ss1",
            &key.public_key().to_spki_der(),
            &["127.0.0.1".into()],
            std::time::Duration::from_secs(86_400),
            &certs::SystemClock,
        )
        .unwrap();
    certs::cert_to_pem(&der)
}

#[test]
fn a_renewal_cut_off_between_moving_the_key_and_its_certificate_is_finished_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    identity::init(&config, &ManualClock::at_unix(1_800_000_000)).unwrap();
    let paths = Paths::new(&config.data_dir);
    let ca = certs::CertificateAuthority::generate(
        "JP",
        std::time::Duration::from_secs(86_400),
        &certs::SystemClock,
    )
    .unwrap();
    let old_key = certs::load_secret_key(&paths.tls_key()).unwrap();
    std::fs::write(paths.tls_cert(), certificate(&ca, &old_key)).unwrap();
    assert!(identity::Identity::load(&config).is_ok());

    // The new key is in place, its certificate still in tls-next.pem: finished at start.
    let new_key = certs::SigningKey::generate().unwrap();
    let new_pem = certificate(&ca, &new_key);
    std::fs::remove_file(paths.tls_key()).unwrap();
    certs::save_secret_key(&paths.tls_key(), &new_key).unwrap();
    std::fs::write(paths.tls_next_cert(), &new_pem).unwrap();
    let loaded = identity::Identity::load(&config).unwrap();
    assert_eq!(
        loaded.tls.key().public_key().as_bytes(),
        new_key.public_key().as_bytes()
    );
    assert_eq!(std::fs::read_to_string(paths.tls_cert()).unwrap(), new_pem);
    assert!(!paths.tls_next_cert().exists());

    // A key whose certificate is nowhere is refused rather than served with the wrong one.
    std::fs::remove_file(paths.tls_key()).unwrap();
    certs::save_secret_key(&paths.tls_key(), &certs::SigningKey::generate().unwrap()).unwrap();
    assert!(matches!(
        identity::Identity::load(&config),
        Err(IdentityError::CertificateMismatch)
    ));
}

#[tokio::test]
async fn a_port_in_use_names_the_listener_and_its_address() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.client_proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.server_proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = addr;
    let e = security_server::Listeners::bind(&config).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        e.to_string().starts_with(&format!("admin.listen {addr}: ")),
        "{e}"
    );
}
