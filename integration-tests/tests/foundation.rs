#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 2, end to end: a registry and three security servers on loopback, enrolled through the
//! real path, exchanging the signed global configuration.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certs::ManualClock;
use globalconf::{ConfError, Succession};
use integration_tests::eventually;
use prost::Message;
use proto::v1 as pb;
use sandbox::{Federation, FederationSpec};
use security_server::confclient::{OfferError, Source};
use security_server::identity::{self, EnrollmentStatus, IdentityError};

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const OSAKA: &str = "JP/MUN/271004/ss1";
/// Tokyo's shared server (共同利用方式).
const SHARED: &str = "JP/MUN/130001/shared";

async fn start(clock: Arc<dyn certs::Clock>) -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    // No background polling after the first fetch: each test decides when servers refresh.
    spec.poll_interval_secs = 3600;
    integration_tests::start_federation(spec, clock).await
}

fn conf_of(f: &Federation, id: &str) -> Arc<security_server::confclient::ConfClient> {
    Arc::clone(&f.server(id).unwrap().running().unwrap().conf)
}

/// Adds the Ministry of Health to the registry; the serial of the configuration that lists it.
async fn publish_a_new_member(f: &Federation) -> u64 {
    f.registry()
        .add_member(
            "JP/GOV/mhlw".parse().unwrap(),
            "Ministry of Health, Labour and Welfare",
        )
        .await
        .unwrap();
    f.registry().publication().serial
}

/// Waits until server `id` holds `serial`, which lists the member [`publish_a_new_member`] added.
async fn holds_the_new_member(f: &Federation, id: &str, serial: u64) {
    let conf = conf_of(f, id);
    eventually(&format!("{id} holds serial {serial}"), || async {
        (conf.current().unwrap().serial() == serial).then_some(())
    })
    .await;
    let held = conf.current().unwrap();
    assert!(
        held.conf()
            .member(&"JP/GOV/mhlw".parse().unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn a_configuration_one_server_fetched_is_passed_on_to_the_others_with_the_registry_down() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    let old = conf_of(&f, CHIYODA).current().unwrap();
    let newest = publish_a_new_member(&f).await;
    assert!(newest > old.serial());
    // Only the ministry's server fetches it before the registry goes away; the others would
    // not poll for an hour.
    assert_eq!(
        conf_of(&f, MINISTRY).refresh().await.unwrap().serial,
        newest
    );
    f.stop_registry().await;
    for id in [CHIYODA, OSAKA, SHARED] {
        holds_the_new_member(&f, id, newest).await;
    }

    // Offered over the wire, a serial not newer than the one held changes nothing, and one
    // the offering server does not really hold neither: the receiver fetches from it and gets
    // nothing newer.
    let peer = integration_tests::raw_peer::RawPeer::new(&f);
    let chiyoda = peer
        .conf
        .conf()
        .server(&CHIYODA.parse().unwrap())
        .unwrap()
        .clone();
    let mut client = peer
        .pool
        .connect(&chiyoda, &chiyoda.addresses[0])
        .await
        .unwrap();
    let held = conf_of(&f, CHIYODA).current().unwrap();
    for offered in [old.serial(), newest, newest + 100] {
        let answer = client
            .offer_configuration(pb::OfferConfigurationRequest { serial: offered })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.serial, newest, "offered {offered}");
    }
    assert_eq!(
        conf_of(&f, CHIYODA).current().unwrap().envelope(),
        held.envelope()
    );
    f.stop().await;
}

#[tokio::test]
async fn with_the_registry_down_a_server_gets_the_newest_configuration_from_a_peer() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    // Chiyoda's server is down while a new configuration is published and passed round.
    f.stop_server(CHIYODA).await;
    let newest = publish_a_new_member(&f).await;
    assert_eq!(
        conf_of(&f, MINISTRY).refresh().await.unwrap().serial,
        newest
    );
    f.stop_registry().await;

    // Started again, it asks the registry (down), then peers.
    f.restart_server(CHIYODA).await.unwrap();
    holds_the_new_member(&f, CHIYODA, newest).await;
    let conf = conf_of(&f, CHIYODA);
    // Asked again, the peers hold nothing newer: a refresh that changes nothing, not a failure.
    let again = conf.refresh().await.expect("peers answer");
    assert!(
        matches!(again.source, Source::Peer(_)),
        "{:?}",
        again.source
    );
    assert_eq!(again.serial, newest);
    assert_eq!(again.succession, Succession::Same);
    f.stop().await;
}

#[tokio::test]
async fn an_expired_configuration_refuses_exchanges_with_outdated_globalconf() {
    let clock = ManualClock::new(SystemTime::now());
    let (_dir, mut f) = start(Arc::new(clock.clone())).await;
    let server = f.server(MINISTRY).unwrap();
    let proxy = server.client_proxy_url().unwrap();
    let admin = format!("http://{}", server.running().unwrap().admin_addr);
    let http = runtime::HttpClient::plain();
    let url = format!("{proxy}/r1/JP/MUN/131016/records/residentRecord");

    let health = http.get(&format!("{admin}/health"), None).await.unwrap();
    assert_eq!(health.status.as_u16(), 200);
    let answer = http.get(&url, None).await.unwrap();
    assert_ne!(
        answer.headers.get("x-road-error").unwrap(),
        "Server.ClientProxy.OutdatedGlobalConf"
    );

    // The registry goes away; the servers keep their configuration until it expires.
    f.stop_registry().await;
    clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));

    let answer = http.get(&url, None).await.unwrap();
    assert_eq!(answer.status.as_u16(), 500);
    assert_eq!(
        answer.headers.get("x-road-error").unwrap(),
        "Server.ClientProxy.OutdatedGlobalConf"
    );
    let body: serde_json::Value = answer.json().unwrap();
    assert_eq!(body["type"], "Server.ClientProxy.OutdatedGlobalConf");
    let health = http.get(&format!("{admin}/health"), None).await.unwrap();
    assert_eq!(health.status.as_u16(), 503);
    f.stop().await;
}

#[tokio::test]
async fn a_server_refuses_tampered_foreign_and_older_configurations_and_restarts_from_its_copy() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    let conf = conf_of(&f, MINISTRY);
    let old = conf.current().unwrap();

    f.registry()
        .add_member("JP/GOV/nta".parse().unwrap(), "National Tax Agency")
        .await
        .unwrap();
    conf.refresh().await.unwrap();
    let held = conf.current().unwrap();
    assert!(held.serial() > old.serial());

    // Older serial: a rollback.
    assert!(matches!(
        conf.offer(old.envelope()).await,
        Err(OfferError::Refused(ConfError::Rollback { .. }))
    ));
    // One byte altered, anywhere in the signed configuration.
    let mut tampered = held.envelope().to_vec();
    let i = tampered.len() / 2;
    tampered[i] ^= 0x01;
    assert!(conf.offer(&tampered).await.is_err());
    // Correctly signed, but by a key the anchor does not list.
    let mut envelope = pb::SignedConfiguration::decode(held.envelope()).unwrap();
    let mut newer = pb::GlobalConfiguration::decode(envelope.configuration.as_slice()).unwrap();
    newer.serial += 100;
    let intruder = certs::SigningKey::generate().unwrap();
    envelope =
        pb::SignedConfiguration::decode(globalconf::signed::sign(&newer, &intruder).as_slice())
            .unwrap();
    assert!(matches!(
        conf.offer(&envelope.encode_to_vec()).await,
        Err(OfferError::Refused(ConfError::UnknownSigner(_)))
    ));
    assert_eq!(conf.current().unwrap().serial(), held.serial());

    // What is on disk is the accepted configuration, and a restart starts from it even with
    // the registry down.
    let server = f.server(MINISTRY).unwrap();
    let stored =
        std::fs::read(identity::Paths::new(&server.config.data_dir).stored_globalconf()).unwrap();
    assert_eq!(stored, held.envelope());
    let config = server.config.clone();
    f.stop_registry().await;
    f.stop_server(MINISTRY).await;
    let listeners = security_server::Listeners {
        client_proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        client_proxy_tls: None,
        server_proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let restarted = security_server::start(&config, listeners, Arc::new(certs::SystemClock))
        .await
        .unwrap();
    assert_eq!(restarted.conf.current().unwrap().serial(), held.serial());
    restarted.shutdown().await;
    f.stop().await;
}

#[tokio::test]
async fn a_server_removed_from_the_configuration_is_cut_off_by_its_peers() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    f.registry()
        .remove_server(OSAKA.parse().unwrap())
        .await
        .unwrap();
    conf_of(&f, MINISTRY).refresh().await.unwrap();
    conf_of(&f, CHIYODA).refresh().await.unwrap();
    conf_of(&f, SHARED).refresh().await.unwrap();
    f.stop_registry().await;

    // Osaka's server still holds the old configuration and knows its peers, but they no longer
    // accept its certificate.
    let osaka = conf_of(&f, OSAKA);
    let serial = osaka.current().unwrap().serial();
    assert!(osaka.refresh().await.is_err());
    assert_eq!(osaka.current().unwrap().serial(), serial);
    f.stop().await;
}

#[tokio::test]
async fn enrolment_needs_approval_or_a_valid_one_time_token() {
    let (dir, f) = start(Arc::new(certs::SystemClock)).await;
    let registry = f.registry();
    registry
        .add_member("JP/MUN/012025".parse().unwrap(), "Hakodate City")
        .await
        .unwrap();
    let anchor = globalconf::Anchor::load(&f.description().anchor).unwrap();
    let config_text =
        "server_id = \"JP/MUN/012025/ss1\"\n[server_proxy]\nadvertise = [\"127.0.0.1:1\"]\n";
    let config =
        security_server::Config::from_str(config_text, &dir.path().join("hakodate")).unwrap();
    identity::init(&config, &certs::SystemClock).unwrap();
    let in_conf = |f: &Federation| {
        let p = f.registry().publication();
        let verified = globalconf::signed::verify(&p.envelope, &anchor).unwrap();
        verified
            .conf()
            .server(&"JP/MUN/012025/ss1".parse().unwrap())
            .is_some()
    };

    // A wrong token, and a token issued for another server, are refused.
    let err = identity::submit_enrollment(&config, &anchor, Some("00ff"))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Refused(_)), "{err}");
    let other = registry
        .issue_token("JP/MUN/131016/ss9".parse().unwrap())
        .await
        .unwrap();
    let err = identity::submit_enrollment(&config, &anchor, Some(&other.token))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Refused(_)), "{err}");
    assert!(!in_conf(&f));

    // Without a token the request waits for the operator.
    assert_eq!(
        identity::submit_enrollment(&config, &anchor, None)
            .await
            .unwrap(),
        EnrollmentStatus::Pending
    );
    assert_eq!(
        identity::fetch_certificate(&config, &anchor).await.unwrap(),
        EnrollmentStatus::Pending
    );
    assert!(!in_conf(&f));
    assert!(!identity::Paths::new(&config.data_dir).tls_cert().exists());

    registry
        .approve_enrollment("JP/MUN/012025/ss1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        identity::fetch_certificate(&config, &anchor).await.unwrap(),
        EnrollmentStatus::Approved
    );
    assert!(in_conf(&f));
    let pem = std::fs::read_to_string(identity::Paths::new(&config.data_dir).tls_cert()).unwrap();
    let der = certs::certs_from_pem(&pem).unwrap().remove(0);
    let p = f.registry().publication();
    let verified = globalconf::signed::verify(&p.envelope, &anchor).unwrap();
    let listed = verified
        .conf()
        .server(&"JP/MUN/012025/ss1".parse().unwrap())
        .unwrap();
    assert_eq!(listed.tls_cert_sha256, certs::cert_sha256(&der));

    // A token works once.
    let token = registry
        .issue_token("JP/MUN/271004/ss2".parse().unwrap())
        .await
        .unwrap();
    let config2 = security_server::Config::from_str(
        "server_id = \"JP/MUN/271004/ss2\"\n[server_proxy]\nadvertise = [\"127.0.0.1:2\"]\n",
        &dir.path().join("osaka2"),
    )
    .unwrap();
    identity::init(&config2, &certs::SystemClock).unwrap();
    assert_eq!(
        identity::submit_enrollment(&config2, &anchor, Some(&token.token))
            .await
            .unwrap(),
        EnrollmentStatus::Approved
    );
    let err = identity::submit_enrollment(&config2, &anchor, Some(&token.token))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Refused(_)), "{err}");
    f.stop().await;
}
