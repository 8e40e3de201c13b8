//! Renewal of an enrolled server's TLS certificate over the public HTTPS endpoint: signed by the
//! key of the listed certificate and by the new key, issued at once, listed beside the old one
//! until the server says it uses it; forged, foreign and unknown requests refused.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use certs::{Clock as _, SigningKey};
use common::{TestRegistry, enrolled, error_type, renewal};

const MEMBER: &str = "JP/GOV/digital-agency";
const SS1: &str = "JP/GOV/digital-agency/ss1";
const SS2: &str = "JP/GOV/digital-agency/ss2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_listed_beside_the_old_one_until_the_server_uses_it() {
    let mut registry = TestRegistry::start().await;
    registry
        .admin
        .add_member(MEMBER.parse().unwrap(), "Digital Agency")
        .await
        .unwrap();
    let (ss1, old_pin) = enrolled(&registry, SS1).await;
    let (ss2, _) = enrolled(&registry, SS2).await;
    let next = SigningKey::generate().unwrap();
    let now = registry.clock.unix_now();

    // Refused: not signed by the listed certificate's key (another server's, or none), not
    // signed by the new key, stale, for an unknown server, or malformed. Nothing is listed.
    let serial = registry.serial().await;
    let stranger = SigningKey::generate().unwrap();
    for (what, body, status, kind) in [
        (
            "another server's key",
            renewal(SS1, &ss2.tls_key, &next, &next, now, false),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "an unknown key",
            renewal(SS1, &stranger, &next, &next, now, false),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "no proof of the new key",
            renewal(SS1, &ss1.tls_key, &next, &stranger, now, false),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "two days old",
            renewal(SS1, &ss1.tls_key, &next, &next, now - 2 * 86_400, false),
            400,
            "Registry.BadRequest",
        ),
        (
            "an unknown server",
            renewal(
                "JP/GOV/digital-agency/ss9",
                &ss1.tls_key,
                &next,
                &next,
                now,
                false,
            ),
            404,
            "Registry.NotFound",
        ),
        (
            "in use before issued",
            renewal(SS1, &ss1.tls_key, &next, &next, now, true),
            409,
            "Registry.Conflict",
        ),
        (
            "not protobuf",
            b"\xff\xff".to_vec(),
            400,
            "Registry.BadRequest",
        ),
    ] {
        let r = registry.post("/v1/renewals", body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(error_type(&r), kind, "{what}");
    }
    assert_eq!(registry.serial().await, serial);

    // Issued at once, for the new key, and listed beside the old certificate.
    let r = registry
        .post(
            "/v1/renewals",
            renewal(SS1, &ss1.tls_key, &next, &next, now, false),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["status"], "issued");
    let der = certs::certs_from_pem(body["certificate_pem"].as_str().unwrap())
        .unwrap()
        .remove(0);
    let info = certs::certificate_info(&der).unwrap();
    assert_eq!(info.spki_der, next.public_key().to_spki_der());
    assert!(info.valid_at(now));
    let new_pin = certs::cert_sha256(&der);
    let (_, conf) = registry.fetch().await;
    let listed = conf.conf().server(&ss1.id).unwrap();
    assert_eq!(listed.tls_cert_sha256, old_pin);
    assert_eq!(listed.renewal_tls_cert_sha256, Some(new_pin));
    assert_eq!(conf.conf().server_by_cert(&new_pin).unwrap().id, ss1.id);

    // Asking again (a lost answer) gives the same certificate and changes nothing.
    let serial = registry.serial().await;
    let r = registry
        .post(
            "/v1/renewals",
            renewal(SS1, &ss1.tls_key, &next, &next, now, false),
        )
        .await;
    let again: serde_json::Value = r.json().unwrap();
    assert_eq!(again["certificate_pem"], body["certificate_pem"]);
    assert_eq!(registry.serial().await, serial);

    // In use (signed by the new key, the one the server holds now): the old one is dropped.
    let r = registry
        .post("/v1/renewals", renewal(SS1, &next, &next, &next, now, true))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done: serde_json::Value = r.json().unwrap();
    assert_eq!(done["status"], "complete");
    let (_, conf) = registry.fetch().await;
    let listed = conf.conf().server(&ss1.id).unwrap();
    assert_eq!(listed.tls_cert_sha256, new_pin);
    assert_eq!(listed.renewal_tls_cert_sha256, None);
    assert!(conf.conf().server_by_cert(&old_pin).is_none());

    // The old key no longer speaks for the server.
    let later = SigningKey::generate().unwrap();
    let r = registry
        .post(
            "/v1/renewals",
            renewal(SS1, &ss1.tls_key, &later, &later, now, false),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_type(&r), "Registry.InvalidSignature");
    let audit = registry.admin.audit(20).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"server.renewal.issue"), "{actions:?}");
    assert!(actions.contains(&"server.renewal.complete"), "{actions:?}");
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_renews_its_own_certificate_before_it_expires() {
    let mut registry = TestRegistry::start_with(|c| c.republish_interval_secs = 1).await;
    let dir = central_registry::DataDir::new(&registry.config.data_dir);
    let before = std::fs::read(dir.tls_pem()).unwrap();
    let not_after = certs::certificate_info(
        &certs::certs_from_pem(std::str::from_utf8(&before).unwrap()).unwrap()[0],
    )
    .unwrap()
    .not_after;
    let health = format!("{}/health", registry.public_url);
    let client_at = |clock: &certs::ManualClock| {
        runtime::HttpClient::https(
            certs::client_config_trusting_at(
                &registry.anchor.ca_certificates_der(),
                &[],
                std::sync::Arc::new(clock.clone()),
            )
            .unwrap(),
        )
    };

    // Ten days before it expires, the registry issues itself a new one and presents it.
    let now = registry.clock.unix_now();
    registry.clock.advance(std::time::Duration::from_secs(
        u64::try_from(not_after - now).unwrap() - 10 * 86_400,
    ));
    common::eventually("a renewed registry certificate", || async {
        (std::fs::read(dir.tls_pem()).unwrap() != before).then_some(())
    })
    .await;
    // Past the old certificate's end, a client checking at that time still connects.
    registry
        .clock
        .advance(std::time::Duration::from_secs(20 * 86_400));
    let r = client_at(&registry.clock).get(&health, None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    registry.stop().await;
}
