#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Keys in a hardware security module (SoftHSM2 through PKCS#11, docs/keys.md): two security
//! servers whose member signing keys and TLS keys were made inside a token exchange, so both
//! signatures and both sides of the mutual TLS handshake are made by the module; the evidence
//! verifies offline, no key of theirs is in a file, and a TLS renewal and a member key rotation
//! make the next keys in the token.

use std::sync::Arc;

use central_registry::ops::ApproveKeyRequest;
use certs::pkcs11::{Token, init_token, testing};
use integration_tests::load::{Load, resident_record};
use sandbox::FederationSpec;
use security_server::admin::ops::{ListKeys, RenewTls, RotateKey};
use security_server::config::{HsmConfig, HsmSigningKey, TlsConfig};

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const TOKEN: &str = "xroad-rs";
const PIN: &str = "4711-user";

/// The server's TLS and signing key labels (no `/`: `keys rotate` adds `/…` to a label).
fn labels(server: &str) -> (String, String) {
    let server = server.replace('/', "_");
    (format!("{server} tls"), format!("{server} signing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_signs_and_handshakes_with_keys_inside_a_hardware_security_module() {
    let Some(module) = testing::in_own_softhsm(
        "an_exchange_signs_and_handshakes_with_keys_inside_a_hardware_security_module",
    ) else {
        return;
    };
    init_token(&module, TOKEN, "4711-officer", PIN).unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let pin_file = secrets.path().join("hsm-pin");
    certs::write_secret_file(&pin_file, format!("{PIN}\n").as_bytes()).unwrap();

    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    spec.poll_interval_secs = 1;
    spec.key_activation_delay_secs = 2;
    spec.tls = TlsConfig {
        renew_before_days: 30,
        check_interval_secs: 1,
        install_delay_secs: 2,
    };
    for server in [MINISTRY, CHIYODA] {
        let id: globalconf::SecurityServerId = server.parse().unwrap();
        let (tls, signing) = labels(server);
        spec.hsm.push((
            id.clone(),
            HsmConfig {
                module: module.clone(),
                token_label: TOKEN.into(),
                pin_file: Some(pin_file.clone()),
                pin_env: None,
                tls_key_label: Some(tls),
                signing_keys: vec![HsmSigningKey {
                    member: id.owner().clone(),
                    key_label: signing,
                }],
            },
        ));
    }
    let (_dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;

    let (load, running) = Load::start(f.server(MINISTRY).unwrap().client_proxy_url().unwrap());
    load.go_on(10).await;
    load.stop_with_none_failed(running).await;

    let token = Token::open(&module, TOKEN, PIN).unwrap();
    let conf = f
        .server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .conf
        .current()
        .unwrap();
    for server in [MINISTRY, CHIYODA] {
        let s = f.server(server).unwrap();
        let (tls_label, signing_label) = labels(server);
        // The configuration lists the token's keys: the member key, and a certificate for the
        // TLS key (which both handshakes of every exchange used).
        let signing = token.key(&signing_label).unwrap();
        let owner = s.id.owner();
        let member = conf.conf().member(owner).unwrap();
        assert!(
            member
                .signing_keys
                .iter()
                .any(|k| k.key_id == signing.key_id()),
            "{server}: the member key in the token is not listed"
        );
        let tls = token.key(&tls_label).unwrap();
        let pem = std::fs::read_to_string(s.config.data_dir.join("tls.pem")).unwrap();
        let leaf = &certs::certs_from_pem(&pem).unwrap()[0];
        assert_eq!(
            certs::certificate_info(leaf).unwrap().spki_der,
            tls.public_key().to_spki_der()
        );
        assert_eq!(
            conf.conf().server(&s.id).unwrap().tls_cert_sha256,
            certs::cert_sha256(leaf)
        );
        // No key of the server's own member, and no TLS key, is a file.
        assert!(!s.config.data_dir.join("tls.key").exists(), "{server}");
        let member_dir = s
            .config
            .data_dir
            .join("signing")
            .join(owner.to_string().replace('/', "_"));
        let files: Vec<_> = std::fs::read_dir(&member_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(files.is_empty(), "{server}: {files:?}");
    }

    // A renewal makes the next TLS key in the token too, and puts it in the place of the old.
    let (tls_label, _) = labels(MINISTRY);
    let old_key = token.key(&tls_label).unwrap().key_id();
    let s = f.server(MINISTRY).unwrap();
    let admin = integration_tests::admin(&f, MINISTRY);
    admin.call(&RenewTls).await.unwrap();
    let (load, running) = Load::start(s.client_proxy_url().unwrap());
    integration_tests::eventually("the renewed TLS key in place in the token", || {
        let token = token.clone();
        let label = tls_label.clone();
        let old_key = old_key.clone();
        let conf = s.running().unwrap().conf.current().unwrap();
        async move {
            let key = token.find(&label).ok()??;
            let listed = conf.conf().server(&s.id)?;
            (key.key_id() != old_key
                && listed.renewal_tls_cert_sha256.is_none()
                && token.find(&format!("{label}.next")).ok()?.is_none())
            .then_some(())
        }
    })
    .await;
    load.go_on(10).await;
    load.stop_with_none_failed(running).await;
    assert!(!s.config.data_dir.join("tls.key").exists());
    let pem = std::fs::read_to_string(s.config.data_dir.join("tls.pem")).unwrap();
    let leaf = &certs::certs_from_pem(&pem).unwrap()[0];
    assert_eq!(
        certs::certificate_info(leaf).unwrap().spki_der,
        token.key(&tls_label).unwrap().public_key().to_spki_der()
    );

    // `keys rotate` makes the member's next key in the token, under the configured label.
    let rotated = admin.call(&RotateKey { member: None }).await.unwrap();
    let (_, signing_label) = labels(MINISTRY);
    let in_token: Vec<_> = token
        .keys_under(&signing_label)
        .unwrap()
        .into_iter()
        .map(|(_, k)| k.key_id())
        .collect();
    assert_eq!(in_token.len(), 2);
    assert!(in_token.contains(&rotated.key_id));
    f.registry()
        .run(ApproveKeyRequest {
            member: rotated.member.clone(),
            key_id: rotated.key_id.clone(),
        })
        .await
        .unwrap();
    integration_tests::eventually("the rotated key in use", || async {
        let keys = admin.call(&ListKeys).await.ok()?;
        keys.into_iter()
            .any(|k| k.in_use && k.in_module && k.key_id == rotated.key_id)
            .then_some(())
    })
    .await;
    let proxy = s.client_proxy_url().unwrap();
    resident_record(&proxy, "after-rotation").await.unwrap();
    assert!(
        std::fs::read_dir(s.config.data_dir.join("signing/JP_GOV_digital-agency"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".key"))
    );

    // What the module signed verifies offline, as an auditor checks it.
    for (server, message_id) in [
        (MINISTRY, "load-1"),
        (CHIYODA, "load-1"),
        (MINISTRY, "after-rotation"),
        (CHIYODA, "after-rotation"),
    ] {
        let bundle = integration_tests::export_evidence(&f, server, message_id, 1).await;
        let report = integration_tests::verify_offline(&f, &bundle);
        assert!(report.passed(), "{server} {message_id}: {report}");
    }
    f.stop().await;
}
