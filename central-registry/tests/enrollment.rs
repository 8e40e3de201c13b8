//! Enrolment of security servers over the public HTTPS endpoint: pending until approved, tokens
//! that approve at once (and only for the right server, once), forged signatures refused.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use certs::Clock as _;
use common::{Enrollee, TestRegistry, error_type, eventually};
use globalconf::MemberId;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

const MEMBER: &str = "JP/GOV/digital-agency";
const SS1: &str = "JP/GOV/digital-agency/ss1";
const SS2: &str = "JP/GOV/digital-agency/ss2";

async fn with_member(registry: &TestRegistry) {
    registry
        .admin
        .add_member(MEMBER.parse().unwrap(), "Digital Agency")
        .await
        .unwrap();
}

/// Checks that `der` chains to the anchor's CA for `host` (webpki path validation).
fn assert_chains_to_ca(registry: &TestRegistry, der: &[u8], host: &str) {
    let mut roots = rustls::RootCertStore::empty();
    for ca in registry.anchor.ca_certificates_der() {
        roots.add(CertificateDer::from(ca)).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(der.to_vec()),
            &[],
            &ServerName::try_from(host.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_waits_for_approval_then_lists_the_certified_server() {
    let mut registry = TestRegistry::start().await;
    with_member(&registry).await;
    let ss1 = Enrollee::new(SS1);
    let now = registry.clock.unix_now();

    let r = registry.post_enrollment(ss1.signed(now, "")).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["status"], "pending");

    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_none());
    let status: serde_json::Value = registry.enrollment_status(SS1).await.json().unwrap();
    assert_eq!(status["status"], "pending");
    assert!(status.get("certificate_pem").is_none());
    let pending = registry.admin.list_enrollments().await.unwrap();
    assert_eq!(pending.len(), 1);

    // Approve through the admin HTTP API, as the CLI would.
    let admin = central_registry::AdminClient::new(&registry.admin_url, &registry.admin_token);
    let approve = central_registry::ops::ApproveEnrollment {
        server_id: ss1.id.clone(),
    };
    admin.call(&approve).await.unwrap();

    let conf = eventually("approved server in the configuration", || async {
        let (_, conf) = registry.fetch().await;
        conf.conf().server(&ss1.id).is_some().then_some(conf)
    })
    .await;
    let status: serde_json::Value = registry.enrollment_status(SS1).await.json().unwrap();
    assert_eq!(status["status"], "approved");
    let pem = status["certificate_pem"].as_str().unwrap();
    let der = certs::certs_from_pem(pem).unwrap().remove(0);

    let server = conf.conf().server(&ss1.id).unwrap();
    assert_eq!(server.tls_cert_sha256, certs::cert_sha256(&der));
    assert_eq!(server.addresses, ss1.addresses);
    assert_chains_to_ca(&registry, &der, "127.0.0.1");
    assert_chains_to_ca(&registry, &der, "ss.example");
    let spki = ss1.tls_key.public_key().to_spki_der();
    assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));

    // The proven member key is certified by the configuration from approval on.
    let member: MemberId = MEMBER.parse().unwrap();
    let key_id = ss1.member_key.key_id();
    let key = conf
        .conf()
        .member_key_at(&member, &key_id, now + 1)
        .unwrap();
    assert_eq!(key.public_key, ss1.member_key.public_key());
    assert_eq!(key.valid_until, None);

    // An approved server cannot enrol again until it is removed.
    let r = registry.post_enrollment(ss1.signed(now, "")).await;
    assert_eq!(r.status, 409);
    assert_eq!(error_type(&r), "Registry.Conflict");
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_approve_only_their_own_server_only_once() {
    let mut registry = TestRegistry::start_with(|c| c.enrollment_token_validity_secs = 3600).await;
    with_member(&registry).await;
    let ss1 = Enrollee::new(SS1);
    let ss2 = Enrollee::new(SS2);
    let t1 = registry.admin.issue_token(ss1.id.clone()).await.unwrap();
    let t2 = registry.admin.issue_token(ss2.id.clone()).await.unwrap();
    assert_ne!(t1.token, t2.token);
    let now = registry.clock.unix_now();
    let serial_before = registry.serial().await;

    for (what, token) in [
        ("unknown token", "0123456789abcdef".to_owned()),
        ("another server's token", t2.token.clone()),
    ] {
        let r = registry.post_enrollment(ss1.signed(now, &token)).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert_eq!(error_type(&r), "Registry.InvalidToken", "{what}");
        assert_eq!(registry.enrollment_status(SS1).await.status, 404, "{what}");
    }
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_none());
    assert_eq!(conf.serial(), serial_before, "refusals change nothing");

    // The right token approves at once: the very next fetch lists the server.
    let r = registry.post_enrollment(ss1.signed(now, &t1.token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["status"], "approved");
    assert!(
        body["certificate_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_some());

    // A used token does not work again, even after the server was removed.
    registry.admin.remove_server(ss1.id.clone()).await.unwrap();
    let r = registry.post_enrollment(ss1.signed(now, &t1.token)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(error_type(&r), "Registry.InvalidToken");
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_none());

    // An expired token is refused too.
    registry.clock.advance(Duration::from_secs(3601));
    let later = registry.clock.unix_now();
    let r = registry.post_enrollment(ss2.signed(later, &t2.token)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss2.id).is_none());

    // Tokens are audited without the token itself.
    let audit = registry.admin.audit(100).await.unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(text.contains("token.issue"));
    assert!(!text.contains(&t1.token));
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_unknown_requests_are_refused() {
    let mut registry = TestRegistry::start().await;
    with_member(&registry).await;
    let ss1 = Enrollee::new(SS1);
    let now = registry.clock.unix_now();

    let r = registry.post_enrollment(ss1.forged(now)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_type(&r), "Registry.InvalidSignature");
    assert_eq!(registry.enrollment_status(SS1).await.status, 404);

    let r = registry
        .post_enrollment(ss1.signed(now - 2 * 86_400, ""))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_type(&r), "Registry.BadRequest");

    let r = registry
        .post_enrollment(b"not protobuf at all".to_vec())
        .await;
    assert_eq!(r.status, 400);

    let r = registry.post_enrollment(vec![0u8; 65 * 1024]).await;
    assert_eq!(r.status, 413);
    assert_eq!(error_type(&r), "Registry.TooLarge");

    let stranger = Enrollee::new("JP/GOV/unknown-member/ss1");
    let r = registry.post_enrollment(stranger.signed(now, "")).await;
    assert_eq!(r.status, 404);
    assert_eq!(error_type(&r), "Registry.NotFound");

    let (_, conf) = registry.fetch().await;
    assert_eq!(conf.conf().servers().count(), 0);
    assert!(registry.admin.list_enrollments().await.unwrap().is_empty());
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_add_nothing_and_can_be_resubmitted() {
    let mut registry = TestRegistry::start().await;
    with_member(&registry).await;
    let ss1 = Enrollee::new(SS1);
    let now = registry.clock.unix_now();
    assert_eq!(
        registry.post_enrollment(ss1.signed(now, "")).await.status,
        202
    );
    let rejected = registry
        .admin
        .reject_enrollment(ss1.id.clone())
        .await
        .unwrap();
    assert_eq!(
        rejected.status,
        central_registry::EnrollmentStatus::Rejected
    );
    let status: serde_json::Value = registry.enrollment_status(SS1).await.json().unwrap();
    assert_eq!(status["status"], "rejected");
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_none());
    assert!(
        conf.conf()
            .member(&MEMBER.parse().unwrap())
            .unwrap()
            .signing_keys
            .is_empty()
    );
    // A rejected request cannot be approved; a new submission replaces it.
    assert!(
        registry
            .admin
            .approve_enrollment(ss1.id.clone())
            .await
            .is_err()
    );
    assert_eq!(
        registry.post_enrollment(ss1.signed(now, "")).await.status,
        202
    );
    registry
        .admin
        .approve_enrollment(ss1.id.clone())
        .await
        .unwrap();
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_some());
    // The status endpoint also takes the id with plain slashes.
    let r = registry
        .https
        .get(
            &format!("{}/v1/enrollments/{SS1}", registry.public_url),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    registry.stop().await;
}
