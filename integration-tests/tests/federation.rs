#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Federation (DESIGN §3): two instances, each with its own registry, members and keys, whose
//! operators agreed to trust each other's anchor. Exchanges go across both ways; an instance
//! without an agreement is refused with a clear error; ending the agreement stops exchanges at
//! the next configuration; with either registry down, exchanges go on from the stored
//! configurations, and a server that lost its copy of the other instance's configuration gets
//! it from peers.

use std::sync::Arc;
use std::time::Duration;

use globalconf::{Anchor, InstanceId};
use http::Method;
use integration_tests::{eventually, portal_login, start_federation, x_road_error};
use sandbox::spec::FI_POPULATION;
use sandbox::{Federation, FederationSpec, federate};

const BENEFITS: &str = "JP/GOV/digital-agency/benefits";
const BENEFITS_SERVER: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA_SERVER: &str = "JP/MUN/131016/ss1";
const FI_SERVER: &str = "FI/GOV/0245437-2/ss1";
const FI_PERSON: &str = "FI/GOV/0245437-2/population/personInfo";
const RESIDENT_RECORD: &str = "JP/MUN/131016/records/residentRecord";

async fn call(f: &Federation, via: &str, path: &str, client: &str) -> runtime::Response {
    let url = format!(
        "{}{path}",
        f.server(via).unwrap().client_proxy_url().unwrap()
    );
    runtime::HttpClient::plain()
        .with_timeout(Duration::from_secs(30))
        .request(
            Method::GET,
            &url,
            &[
                ("X-Road-Client", client),
                ("X-Road-Data-Subject", "131016000001"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
}

/// Japan's benefits system reads Finland's population information.
async fn jp_to_fi(jp: &Federation) -> runtime::Response {
    call(
        jp,
        BENEFITS_SERVER,
        &format!("/r1/{FI_PERSON}/131016000001"),
        BENEFITS,
    )
    .await
}

/// Finland's population register reads a Chiyoda City resident record.
async fn fi_to_jp(fi: &Federation) -> runtime::Response {
    call(
        fi,
        FI_SERVER,
        &format!("/r1/{RESIDENT_RECORD}/131016000001"),
        FI_POPULATION,
    )
    .await
}

fn anchor(f: &Federation) -> Anchor {
    Anchor::load(&f.description().anchor).unwrap()
}

/// JP (the demo, its servers allowed to talk to FI) and FI, federated both ways.
async fn federated() -> (Vec<tempfile::TempDir>, Federation, Federation) {
    let clock: Arc<dyn certs::Clock> = Arc::new(certs::SystemClock);
    let (jp_dir, mut jp) =
        start_federation(FederationSpec::sandbox_federated(), Arc::clone(&clock)).await;
    let (fi_dir, mut fi) = start_federation(FederationSpec::finland(), clock).await;
    federate::federate(&mut jp, &mut fi).await.unwrap();
    (vec![jp_dir, fi_dir], jp, fi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_go_across_both_ways_and_stop_when_the_federation_ends() {
    let (_dirs, jp, fi) = federated().await;

    let r = jp_to_fi(&jp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-road-service"], FI_PERSON);
    assert_eq!(r.headers["x-road-security-server"], FI_SERVER);
    assert!(r.text().contains("131016000001"), "{}", r.text());
    let across = r.headers["x-road-id"].to_str().unwrap().to_owned();

    let r = fi_to_jp(&fi).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-road-client"], FI_POPULATION);
    assert_eq!(r.headers["x-road-security-server"], CHIYODA_SERVER);

    // Both ends logged the exchange under the other instance's identifiers.
    let chiyoda = jp.server(CHIYODA_SERVER).unwrap().running().unwrap();
    let records = chiyoda.log.find_by_subject("131016000001").unwrap();
    assert!(
        records.iter().any(|&i| {
            let r = chiyoda.log.record(i).unwrap().unwrap();
            String::from_utf8_lossy(&r.record_bytes).contains(FI_POPULATION)
        }),
        "Chiyoda's log has no record of FI's call"
    );

    // Evidence across: JP's server's bundle of the exchange carries both instances'
    // configurations; it verifies with both anchors, and says whose each signature is; with
    // JP's anchor alone, FI's agency's signature cannot be checked.
    let bundle = integration_tests::export_evidence(&jp, BENEFITS_SERVER, &across, 1).await;
    let relaxed = msglog::VerifyOptions {
        require_cosignatures: 0,
    };
    let report = msglog::verify_trusting(&bundle, &[anchor(&jp), anchor(&fi)], relaxed).unwrap();
    let instances: Vec<&str> = report
        .configurations
        .iter()
        .map(|c| c.instance.as_str())
        .collect();
    assert!(
        instances.contains(&"JP") && instances.contains(&"FI"),
        "{report}"
    );
    let signers: Vec<&str> = report
        .records
        .iter()
        .filter_map(|r| r.signer.as_deref())
        .collect();
    assert!(signers.contains(&"JP/GOV/digital-agency"), "{report}");
    assert!(signers.contains(&"FI/GOV/0245437-2"), "{report}");
    match msglog::verify_trusting(&bundle, &[anchor(&jp)], relaxed) {
        Err(msglog::EvidenceError::Rejected(report)) => {
            assert!(report.to_string().contains("no anchor of FI"), "{report}");
        }
        other => panic!("verified without FI's anchor: {other:?}"),
    }
    // And with FI's alone, JP's client's signature cannot be, nor JP's checkpoint.
    assert!(msglog::verify_trusting(&bundle, &[anchor(&jp)][..0], relaxed).is_err());
    assert!(msglog::verify_trusting(&bundle, &[anchor(&fi)], relaxed).is_err());
    // An exchange within JP, on the same federated server, needs JP's anchor only.
    let within = call(
        &jp,
        BENEFITS_SERVER,
        &format!("/r1/{RESIDENT_RECORD}/131016000002"),
        BENEFITS,
    )
    .await;
    assert_eq!(within.status, 200, "{}", within.text());
    let id = within.headers["x-road-id"].to_str().unwrap().to_owned();
    let bundle = integration_tests::export_evidence(&jp, BENEFITS_SERVER, &id, 1).await;
    let report = msglog::verify_trusting(&bundle, &[anchor(&jp)], relaxed).unwrap();
    assert!(
        report.configurations.iter().all(|c| c.instance == "JP"),
        "{report}"
    );

    // Metaservices across: JP's server lists FI's members from FI's configuration.
    let r = call(
        &jp,
        BENEFITS_SERVER,
        "/listClients?xRoadInstance=FI",
        BENEFITS,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("0245437-2"), "{}", r.text());
    assert!(!r.text().contains("131016"), "{}", r.text());

    // Access rights grant foreign subsystems only what they name: FI may not read Chiyoda's
    // tax certificates.
    let r = call(
        &fi,
        FI_SERVER,
        "/r1/JP/MUN/131016/records/taxCertificate/131016000001?year=2025",
        FI_POPULATION,
    )
    .await;
    assert_eq!(
        x_road_error(&r),
        "Server.ServerProxy.AccessDenied",
        "{}",
        r.text()
    );

    // The servers say where the federation stands.
    let status = integration_tests::admin(&jp, BENEFITS_SERVER)
        .call(&security_server::admin::ops::Status)
        .await
        .unwrap();
    assert_eq!(status.federation.len(), 1);
    assert_eq!(status.federation[0].instance.as_str(), "FI");
    assert!(status.federation[0].usable, "{:?}", status.federation);
    assert_eq!(
        status.federation[0].fingerprint,
        anchor(&fi).fingerprint().unwrap()
    );

    // Transparency across: the resident's page on JP's portal shows that JP's benefits system
    // read their data at FI's agency, from FI's server's own records.
    let portal = jp.portal_url().unwrap().to_owned();
    let cookie = portal_login(&portal, "131016000001").await;
    let timeline: serde_json::Value = runtime::HttpClient::plain()
        .request(
            Method::GET,
            &format!("{portal}/api/timeline"),
            &[("cookie", cookie.as_str())],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    let entries = timeline["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["provider"] == FI_POPULATION && e["client"] == BENEFITS),
        "{timeline}"
    );

    // And so do the metrics, for alerts before the other instance's configuration expires.
    let metrics = runtime::HttpClient::plain()
        .request(
            Method::GET,
            &format!(
                "http://{}/metrics",
                jp.server(BENEFITS_SERVER)
                    .unwrap()
                    .running()
                    .unwrap()
                    .admin_addr
            ),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("xroad_federated_usable{instance=\"FI\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xroad_federated_globalconf_expires_in_seconds{instance=\"FI\"}"),
        "{metrics}"
    );

    // JP's operator ends the federation: at the next configuration, calls to FI are refused
    // by JP's servers, and FI's calls by JP's pins.
    let fi_id: InstanceId = "FI".parse().unwrap();
    federate::end(&jp, &fi_id).await.unwrap();
    for s in jp.servers() {
        s.running().unwrap().conf.refresh().await.unwrap();
    }
    let refused = eventually("JP's server refuses calls to FI", || async {
        let r = jp_to_fi(&jp).await;
        (r.status != 200).then_some(r)
    })
    .await;
    assert_eq!(x_road_error(&refused), "Server.ClientProxy.UnknownMember");
    assert!(
        refused.text().contains("not federated"),
        "{}",
        refused.text()
    );
    // The server still lists FI in [federation] instances: status says the agreement is gone.
    let status = integration_tests::admin(&jp, BENEFITS_SERVER)
        .call(&security_server::admin::ops::Status)
        .await
        .unwrap();
    assert_eq!(status.federation.len(), 1);
    assert!(!status.federation[0].usable);
    assert!(
        status.federation[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("not federated")),
        "{:?}",
        status.federation
    );

    // FI's pooled connection to Chiyoda's server outlives the handshake: the request itself is
    // refused; a new connection would fail its handshake.
    let r = fi_to_jp(&fi).await;
    assert_eq!(
        x_road_error(&r),
        "Server.ServerProxy.UnauthenticatedPeer",
        "{}",
        r.text()
    );

    fi.stop().await;
    jp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_agreement_or_not_allowed_is_refused_clearly() {
    let clock: Arc<dyn certs::Clock> = Arc::new(certs::SystemClock);
    // JP's servers are not allowed to talk to FI (the default), though both registries agree.
    let (_jp_dir, jp) = start_federation(FederationSpec::sandbox(), Arc::clone(&clock)).await;
    let (_fi_dir, fi) = start_federation(FederationSpec::finland(), clock).await;
    federate::agree(&jp, &anchor(&fi)).await.unwrap();
    federate::agree(&fi, &anchor(&jp)).await.unwrap();
    federate::wait_until_federated(&fi, &"JP".parse().unwrap())
        .await
        .unwrap();
    jp.server(BENEFITS_SERVER)
        .unwrap()
        .running()
        .unwrap()
        .conf
        .refresh()
        .await
        .unwrap();

    let r = jp_to_fi(&jp).await;
    assert_eq!(
        x_road_error(&r),
        "Server.ClientProxy.UnknownMember",
        "{}",
        r.text()
    );
    assert!(r.text().contains("[federation] instances"), "{}", r.text());

    // An instance no registry agreed to.
    let r = call(
        &jp,
        BENEFITS_SERVER,
        "/r1/EE/GOV/70006317/population/person/1",
        BENEFITS,
    )
    .await;
    assert_eq!(
        x_road_error(&r),
        "Server.ClientProxy.UnknownMember",
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("instance EE is not federated with JP"),
        "{}",
        r.text()
    );

    // FI's server talks to JP, but JP's servers do not accept FI's: refused, nothing served.
    let r = fi_to_jp(&fi).await;
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("131016000001"), "{}", r.text());

    fi.stop().await;
    jp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_go_on_with_the_registries_down_and_peers_relay_the_other_configuration() {
    let (_dirs, mut jp, mut fi) = federated().await;
    assert_eq!(jp_to_fi(&jp).await.status, 200);

    // Both registries stop: the configurations held (on disk too) keep the exchanges going.
    fi.stop_registry().await;
    jp.stop_registry().await;
    let r = jp_to_fi(&jp).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = fi_to_jp(&fi).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A restarted server starts from the stored copy of FI's configuration.
    jp.restart_server(BENEFITS_SERVER).await.unwrap();
    let r = eventually("the restarted server calls FI", || async {
        let r = jp_to_fi(&jp).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.headers["x-road-security-server"], FI_SERVER);

    // One that lost it gets it from a peer (FI's registry still down): the signature, not the
    // source, is what it trusts.
    let stored = {
        let s = jp.server(BENEFITS_SERVER).unwrap();
        security_server::identity::Paths::new(&s.config.data_dir)
            .stored_federated_globalconf(&"FI".parse().unwrap())
    };
    jp.stop_server(BENEFITS_SERVER).await;
    std::fs::remove_file(&stored).unwrap();
    jp.restart_server(BENEFITS_SERVER).await.unwrap();
    let r = eventually("the server gets FI's configuration from a peer", || async {
        let r = jp_to_fi(&jp).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.headers["x-road-service"], FI_PERSON);
    assert!(stored.exists(), "the relayed configuration was not stored");

    fi.stop().await;
    jp.stop().await;
}
