#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The registry's configuration-signing key rolls over without a new anchor: servers follow the
//! announcement by themselves, a server that was offline through two rollovers catches up from
//! the anchor it holds, evidence signed under the new keys verifies with the old anchor, and a
//! configuration signed by a retired key is refused (docs/keys.md).

use std::sync::Arc;
use std::time::Duration;

use central_registry::ops::{RotateSigningKey, ShowSigningKey};
use globalconf::ConfError;
use http::Method;
use prost::Message as _;
use proto::v1 as pb;
use sandbox::{Federation, FederationSpec};
use security_server::confclient::OfferError;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const OSAKA: &str = "JP/MUN/271004/ss1";

fn generation(f: &Federation, server: &str) -> usize {
    let conf = f.server(server).unwrap().running().unwrap().conf.current();
    conf.map_or(0, |c| c.key_generation())
}

/// Osaka's welfare office asks Chiyoda for a tax certificate through Osaka's server.
async fn tax_certificate(f: &Federation, id: &str) -> runtime::Response {
    let proxy = f.server(OSAKA).unwrap().client_proxy_url().unwrap();
    runtime::HttpClient::plain()
        .with_timeout(Duration::from_secs(30))
        .request(
            Method::GET,
            &format!("{proxy}/r1/JP/MUN/131016/records/taxCertificate/131016000001?year=2025"),
            &[
                ("X-Road-Client", "JP/MUN/271004/welfare"),
                ("X-Road-Id", id),
                ("X-Road-Data-Subject", "131016000001"),
                ("X-Road-Purpose", "signing key test"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_follow_a_signing_key_rollover_and_refuse_the_retired_key() {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 1;
    spec.samples.clear();
    let (_dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let first = f.registry().run(ShowSigningKey).await.unwrap();
    assert_eq!(first.generation, 0);

    // Osaka's server is down through two rollovers.
    f.stop_server(OSAKA).await;
    let one = f.registry().run(RotateSigningKey).await.unwrap();
    assert_eq!(one.generation, 1);
    assert_eq!(one.retired_key_id.as_ref(), Some(&first.key_id));
    let two = f.registry().run(RotateSigningKey).await.unwrap();
    assert_eq!(two.generation, 2);
    assert_ne!(two.key_id, one.key_id);
    for server in [MINISTRY, CHIYODA] {
        integration_tests::eventually(&format!("{server} to follow"), || async {
            (generation(&f, server) == 2).then_some(())
        })
        .await;
    }

    // Back up, it holds only the anchor and a configuration signed by the first key: it follows.
    f.restart_server(OSAKA).await.unwrap();
    integration_tests::eventually("Osaka's server to follow", || async {
        (generation(&f, OSAKA) == 2).then_some(())
    })
    .await;
    let answer = tax_certificate(&f, "after-rollover").await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    // Evidence of an exchange under the new keys verifies with the anchor the auditor has.
    let bundle = integration_tests::export_evidence(&f, OSAKA, "after-rollover", 1).await;
    let report = integration_tests::verify_offline(&f, &bundle);
    assert!(report.passed(), "{report:?}");

    // The retired keys sign nothing a server accepts: the first key (anchor only, no history)
    // and the second (with the history that made it current) alike.
    let osaka = f.server(OSAKA).unwrap().running().unwrap().conf.clone();
    let held = osaka.current().unwrap();
    let signed = pb::SignedConfiguration::decode(held.envelope()).unwrap();
    let mut newer = pb::GlobalConfiguration::decode(signed.configuration.as_slice()).unwrap();
    newer.serial += 10;
    let data = f.dir().join("registry/data");
    let retired = |id: &certs::KeyId| {
        certs::load_secret_key(&data.join(format!("configuration-signing-{id}.retired.key")))
            .unwrap()
    };
    let by_first = globalconf::signed::sign(&newer, &retired(&first.key_id));
    let by_second = globalconf::signed::sign_with_history(
        &newer,
        &retired(&one.key_id),
        &signed.key_history[..1],
    );
    for (what, envelope) in [("first key", by_first), ("second key", by_second)] {
        match osaka.offer(&envelope).await {
            Err(OfferError::Refused(ConfError::KeyHistory(_))) => {}
            other => panic!("signed by the retired {what}: {other:?}"),
        }
    }
    assert_eq!(osaka.current().unwrap().serial(), held.serial());
    f.stop().await;
}
