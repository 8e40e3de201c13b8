#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Security servers renew their TLS certificates before they expire, and under a new instance CA
//! when the registry rolls its CA over, by themselves, while exchanges go on: with an injected
//! clock, a federation runs across the expiry of its servers' certificates and across a CA
//! rollover under load, and no exchange fails (docs/keys.md).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use central_registry::ops::{RotateCa, ShowCa, WithdrawCa};
use certs::ManualClock;
use integration_tests::load::Load;
use sandbox::{Federation, FederationSpec};
use security_server::admin::ops::RenewTls;
use security_server::config::TlsConfig;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const DAY: u64 = 86_400;
/// How long the registry's certificates are valid (central_registry::datadir::TLS_VALIDITY).
const TLS_VALIDITY_DAYS: u64 = 2 * 365;

async fn start(clock: Arc<dyn certs::Clock>) -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 1;
    // Long enough that the configuration held stays valid across the clock's jumps below, so
    // that only the certificates' expiry is under test.
    spec.configuration_validity_secs = 3 * 365 * DAY;
    spec.tls = TlsConfig {
        renew_before_days: 30,
        check_interval_secs: 1,
        install_delay_secs: 2,
    };
    spec.samples.clear();
    integration_tests::start_federation(spec, clock).await
}

/// `(listed, renewal)` pins of `server` in the configuration `holder` holds.
fn pins(f: &Federation, holder: &str, server: &str) -> ([u8; 32], Option<[u8; 32]>) {
    let conf = f
        .server(holder)
        .unwrap()
        .running()
        .unwrap()
        .conf
        .current()
        .unwrap();
    let info = conf
        .conf()
        .server(&server.parse().unwrap())
        .unwrap()
        .clone();
    (info.tls_cert_sha256, info.renewal_tls_cert_sha256)
}

async fn metric(f: &Federation, server: &str, name: &str) -> i64 {
    let admin = f.server(server).unwrap().running().unwrap().admin_addr;
    let text = runtime::HttpClient::plain()
        .get(&format!("http://{admin}/metrics"), None)
        .await
        .unwrap()
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_renew_before_expiry_and_across_a_ca_rollover_under_load_and_no_exchange_fails() {
    let clock = ManualClock::new(SystemTime::now());
    let (_dir, f) = start(Arc::new(clock.clone())).await;
    let servers = [MINISTRY, CHIYODA];
    let before: Vec<[u8; 32]> = servers.iter().map(|s| pins(&f, s, s).0).collect();
    let expires_in = metric(&f, MINISTRY, "xroad_tls_certificate_expires_in_seconds").await;
    assert!(expires_in > 700 * 86_400, "{expires_in}");

    let (load, running) = Load::start(f.server(MINISTRY).unwrap().client_proxy_url().unwrap());
    load.go_on(10).await;

    // 29 days before the certificates expire: within the 30 days of `renew_before_days`.
    {
        let _between = load.between().await;
        clock.advance(Duration::from_secs((TLS_VALIDITY_DAYS - 29) * DAY));
    }
    for (server, old) in servers.iter().zip(&before) {
        // Each server is listed with a new certificate only, in what every server holds.
        for holder in servers {
            integration_tests::eventually(&format!("{holder} to list {server} renewed"), || {
                let now = pins(&f, holder, server);
                async move { (now.0 != *old && now.1.is_none()).then_some(()) }
            })
            .await;
        }
        let conf = f.server(server).unwrap().running().unwrap().conf.current();
        assert!(
            conf.unwrap().conf().server_by_cert(old).is_none(),
            "{server}'s old certificate is still accepted"
        );
    }
    let expires_in = metric(&f, MINISTRY, "xroad_tls_certificate_expires_in_seconds").await;
    assert!(expires_in > 700 * 86_400, "renewed: {expires_in}");
    load.go_on(10).await;

    // Past the old certificates' expiry: every connection uses the new ones.
    {
        let _between = load.between().await;
        clock.advance(Duration::from_secs(30 * DAY));
    }
    load.go_on(20).await;

    // A CA rollover: the new CA is published before the old one, every server renews under it
    // by itself (peers accept both certificates meanwhile), then the old CA is withdrawn.
    let rotated = f.registry().run(RotateCa).await.unwrap();
    assert_eq!(rotated.waiting_for.len(), f.servers().len());
    integration_tests::eventually("every server to renew under the new CA", || async {
        let shown = f.registry().run(ShowCa).await.unwrap();
        shown.waiting_for.is_empty().then_some(())
    })
    .await;
    for server in servers {
        let s = f.server(server).unwrap();
        let conf = s.running().unwrap().conf.current().unwrap();
        let issuing = &conf.conf().ca_certificates()[0];
        let pem = std::fs::read_to_string(s.config.data_dir.join("tls.pem")).unwrap();
        let leaf = &certs::certs_from_pem(&pem).unwrap()[0];
        assert!(certs::issued_by(leaf, issuing), "{server}");
        assert_eq!(
            conf.conf()
                .server_by_cert(&certs::cert_sha256(leaf))
                .map(|i| i.id.to_string()),
            Some(server.to_owned())
        );
    }
    load.go_on(10).await;
    f.registry().run(WithdrawCa).await.unwrap();
    // Every server now trusts only the new CA for HTTPS to the registry, and still reaches it.
    let serial = f.registry().publish().await.unwrap().serial;
    for server in f.servers() {
        let server = server.id.to_string();
        integration_tests::eventually(&format!("{server} to fetch serial {serial}"), || {
            let conf = f.server(&server).unwrap().running().unwrap().conf.current();
            async move {
                let conf = conf?;
                (conf.serial() >= serial && conf.conf().ca_certificates().len() == 1).then_some(())
            }
        })
        .await;
    }
    // A renewal after the withdrawal opens a new connection to the registry: it must trust the
    // new CA (the old one no longer leads to the registry's certificate).
    for server in servers {
        let renewed = integration_tests::admin(&f, server).call(&RenewTls).await;
        assert!(renewed.is_ok(), "{server}: {renewed:?}");
    }
    load.go_on(20).await;
    load.stop_with_none_failed(running).await;
    let health = runtime::HttpClient::plain()
        .get(
            &format!(
                "http://{}/health",
                f.server(CHIYODA).unwrap().running().unwrap().admin_addr
            ),
            None,
        )
        .await
        .unwrap();
    let health: serde_json::Value = health.json().unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    f.stop().await;
}
