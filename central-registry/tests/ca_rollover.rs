//! Rollover of the instance CA: a successor is published beside the current CA and issues from
//! then on; HTTPS clients that trust only the old CA still reach the registry (cross-certificate);
//! the old CA is withdrawn only once no listed server depends on it; a rollover cut off between
//! its steps is finished or undone when the registry opens.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use central_registry::ops::{RotateCa, ShowCa, WithdrawCa};
use central_registry::{DataDir, Registry};
use certs::{CaRoots, Clock as _, SigningKey};
use common::{TestRegistry, enrolled, error_type, fetch_from, https_client, renewal};

const MEMBER: &str = "JP/GOV/digital-agency";
const SS1: &str = "JP/GOV/digital-agency/ss1";

fn client_trusting(cas: &[Vec<u8>]) -> runtime::HttpClient {
    let roots = CaRoots::new(cas).unwrap();
    runtime::HttpClient::https(
        roots
            .client_config(&[], Arc::new(certs::SystemClock))
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rollover_keeps_old_clients_working_and_withdraws_only_when_nothing_depends_on_it() {
    let registry = TestRegistry::start().await;
    registry
        .admin
        .add_member(MEMBER.parse().unwrap(), "Digital Agency")
        .await
        .unwrap();
    let (ss1, _) = enrolled(&registry, SS1).await;
    let old_ca = registry.anchor.ca_certificates_der();
    let (_, before) = registry.fetch().await;
    assert_eq!(before.conf().ca_certificates(), old_ca);
    let shown = registry.admin.run(ShowCa).await.unwrap();
    assert!(shown.previous.is_none() && shown.waiting_for.is_empty());
    let refused = registry.admin.run(WithdrawCa).await.unwrap_err();
    assert!(refused.to_string().contains("no CA rollover"), "{refused}");

    // Rotate: the new CA first, the old one after it.
    let rotated = registry.admin.run(RotateCa).await.unwrap();
    let (_, during) = registry.fetch().await;
    let listed = during.conf().ca_certificates().to_vec();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], old_ca[0]);
    let new_ca = listed[0].clone();
    assert_eq!(
        rotated.issuing.cert_sha256,
        hex::encode(certs::cert_sha256(&new_ca))
    );
    assert_eq!(rotated.waiting_for, std::slice::from_ref(&ss1.id));
    let again = registry.admin.run(RotateCa).await.unwrap_err();
    assert!(again.to_string().contains("under way"), "{again}");

    // The registry presents a certificate of the new CA: a client that trusts only the old CA
    // reaches it through the cross-certificate, one that trusts only the new CA directly.
    let only_old = https_client(&registry.anchor);
    let only_new = client_trusting(std::slice::from_ref(&new_ca));
    for client in [&only_old, &only_new] {
        fetch_from(client, &registry.public_url, &registry.anchor).await;
    }
    // New anchors and `ca.pem` list both.
    let anchor_text = registry
        .https
        .get(&format!("{}/v1/anchor", registry.public_url), None)
        .await
        .unwrap()
        .text();
    let served = globalconf::Anchor::parse(&anchor_text).unwrap();
    assert_eq!(served.ca_certificates_der(), listed);
    let dir = DataDir::new(&registry.config.data_dir);
    let on_disk = globalconf::Anchor::load(&dir.anchor()).unwrap();
    assert_eq!(on_disk, served);
    assert_eq!(on_disk.signing_keys(), registry.anchor.signing_keys());

    // Withdrawal is refused while ss1 presents a certificate of the old CA...
    let refused = registry.admin.run(WithdrawCa).await.unwrap_err();
    assert!(refused.to_string().contains(SS1), "{refused}");
    // ...until it renews: the certificate issued now comes from the new CA.
    let next = SigningKey::generate().unwrap();
    let now = registry.clock.unix_now();
    for in_use in [false, true] {
        let r = registry
            .post(
                "/v1/renewals",
                renewal(SS1, &ss1.tls_key, &next, &next, now, in_use),
            )
            .await;
        assert_eq!(r.status, 200, "{} {}", r.text(), error_type(&r));
        // The new CA's certificate, then the cross-certificate for clients of the old CA.
        let answer: serde_json::Value = r.json().unwrap();
        let chain = certs::certs_from_pem(answer["certificate_pem"].as_str().unwrap()).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(certs::issued_by(&chain[0], &new_ca) && certs::issued_by(&chain[1], &old_ca[0]));
    }
    let (_, renewed) = registry.fetch().await;
    let server = renewed.conf().server(&ss1.id).unwrap();
    assert!(server.renewal_tls_cert_sha256.is_none());
    let shown = registry.admin.run(ShowCa).await.unwrap();
    assert!(shown.waiting_for.is_empty(), "{shown:?}");

    let withdrawn = registry.admin.run(WithdrawCa).await.unwrap();
    assert!(withdrawn.previous.is_none());
    let (_, after) = registry.fetch().await;
    assert_eq!(
        after.conf().ca_certificates(),
        std::slice::from_ref(&new_ca)
    );
    // The old CA no longer leads to the registry; the new one does.
    let r = https_client(&registry.anchor)
        .get(
            &format!("{}/v1/global-configuration", registry.public_url),
            None,
        )
        .await;
    assert!(
        r.is_err(),
        "a client trusting only the withdrawn CA connected"
    );
    fetch_from(
        &client_trusting(std::slice::from_ref(&new_ca)),
        &registry.public_url,
        &registry.anchor,
    )
    .await;
    assert!(dir.withdrawn_ca_pem(&old_ca[0]).exists());
    assert!(!dir.previous_ca_pem().exists() && !dir.cross_ca_pem().exists());
    let audit = registry.admin.audit(10).await.unwrap();
    for action in ["ca.rotate", "ca.withdraw"] {
        assert!(audit.iter().any(|e| e.action == action), "no {action}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_cut_off_is_undone_before_its_commit_and_finished_after_it() {
    let mut registry = TestRegistry::start().await;
    let first = registry.admin.run(ShowCa).await.unwrap();
    registry.stop().await;
    let TestRegistry {
        dir: _data,
        config,
        clock,
        admin,
        ..
    } = registry;
    drop(admin);
    let dir = DataDir::new(&config.data_dir);

    // Stopped after writing the new CA, before the commit: undone.
    std::fs::copy(dir.ca_pem(), dir.next_ca_pem()).unwrap();
    std::fs::write(dir.cross_ca_pem(), "left over").unwrap();
    let reopened = Registry::open(config.clone(), Arc::new(clock.clone())).unwrap();
    let shown = reopened.admin().run(ShowCa).await.unwrap();
    assert_eq!(shown, first);
    assert!(!dir.next_ca_pem().exists() && !dir.cross_ca_pem().exists());

    // A rollover that stopped after its commit, before the new key and certificate moved.
    let rotated = reopened.admin().run(RotateCa).await.unwrap();
    let serial = reopened.publication().serial;
    drop(reopened);
    std::fs::rename(dir.ca_key(), dir.next_ca_key()).unwrap();
    std::fs::rename(dir.ca_pem(), dir.next_ca_pem()).unwrap();
    let reopened = Registry::open(config, Arc::new(clock)).unwrap();
    assert_eq!(reopened.admin().run(ShowCa).await.unwrap(), rotated);
    assert!(dir.ca_key().exists() && !dir.next_ca_key().exists());
    // The published configuration still lists both, and did not need re-signing.
    assert_eq!(reopened.publication().serial, serial);
}
