#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A member signing key rotated end to end while exchanges go on: `keys rotate` on the server,
//! approval in the registry, the server signing with the new key once it is valid, the old key
//! retired later. No exchange fails; evidence from before, during and after verifies offline;
//! the retired key's new signatures are refused (docs/keys.md).

use std::sync::Arc;

use central_registry::ops::{ApproveKeyRequest, ListKeyRequests, RemoveKey};
use integration_tests::load::{Load, resident_record};
use integration_tests::{RawPeer, admin};
use sandbox::{Federation, FederationSpec};
use security_server::admin::ops::{ListKeys, RotateKey};
use security_server::config::KeysConfig;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const OWNER: &str = "JP/GOV/digital-agency";

async fn start() -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 1;
    spec.key_activation_delay_secs = 3;
    spec.keys = KeysConfig {
        retire_previous_after_secs: 3,
    };
    spec.samples.clear();
    integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await
}

/// The key the ministry's server signs with now.
async fn in_use(f: &Federation) -> certs::KeyId {
    let keys = admin(f, MINISTRY).call(&ListKeys).await.unwrap();
    keys.into_iter().find(|k| k.in_use).unwrap().key_id
}

async fn verified_evidence(f: &Federation, server: &str, id: &str) {
    let bundle = integration_tests::export_evidence(f, server, id, 1).await;
    let report = integration_tests::verify_offline(f, &bundle);
    assert!(report.passed(), "{server} {id}: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_key_rotated_under_load_fails_no_exchange_and_all_evidence_verifies() {
    let (_dir, f) = start().await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let (load, running) = Load::start(proxy.clone());
    load.go_on(10).await;
    let old = in_use(&f).await;
    resident_record(&proxy, "before-rotation").await.unwrap();

    // One command on the server; the key waits for the registry operator.
    let rotated = admin(&f, MINISTRY)
        .call(&RotateKey { member: None })
        .await
        .unwrap();
    assert_eq!(rotated.status, "pending");
    assert_eq!(rotated.member.to_string(), OWNER);
    assert_ne!(rotated.key_id, old);
    // Asking again sends the same key, not another one.
    let again = admin(&f, MINISTRY)
        .call(&RotateKey { member: None })
        .await
        .unwrap();
    assert_eq!(again.key_id, rotated.key_id);
    let requests = f.registry().run(ListKeyRequests).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].key_id, rotated.key_id);
    load.go_on(5).await;
    assert_eq!(in_use(&f).await, old, "not used before it is listed");

    let listed = f
        .registry()
        .run(ApproveKeyRequest {
            member: OWNER.parse().unwrap(),
            key_id: rotated.key_id.clone(),
        })
        .await
        .unwrap();
    // Listed, but valid only after the activation delay: the old key still signs meanwhile.
    resident_record(&proxy, "during-rotation").await.unwrap();
    integration_tests::eventually("the new key in use", || async {
        (in_use(&f).await == rotated.key_id).then_some(())
    })
    .await;
    resident_record(&proxy, "after-rotation").await.unwrap();

    // The old key is retired `retire_previous_after_secs` after the new one became valid.
    let retired_at = listed.valid_from + 3;
    integration_tests::eventually("the old key retired", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (i64::try_from(now).unwrap() > retired_at + 1).then_some(())
    })
    .await;
    load.go_on(10).await;
    load.stop_with_none_failed(running).await;

    // New signatures by the retired key are refused; the new key's are served.
    let mut peer = RawPeer::new(&f);
    let keys_dir = f
        .server(MINISTRY)
        .unwrap()
        .config
        .data_dir
        .join("signing/JP_GOV_digital-agency");
    let key = |id: &certs::KeyId| certs::load_secret_key(&keys_dir.join(format!("{id}.key")));
    peer.key = key(&old).unwrap();
    assert_eq!(
        peer.send(peer.resident_record("signed-by-retired-key"), b"")
            .await
            .unwrap_err(),
        "Server.ServerProxy.KeyNotValid"
    );
    peer.key = key(&rotated.key_id).unwrap();
    let answer = peer
        .send(peer.resident_record("signed-by-new-key"), b"")
        .await;
    let header = answer.unwrap().header.unwrap();
    let header: proto::v1::ResponseHeader =
        prost::Message::decode(header.header.as_slice()).unwrap();
    assert_eq!(header.status, 200);

    // Evidence from before, during and after the rotation verifies offline, on both sides.
    for id in ["before-rotation", "during-rotation", "after-rotation"] {
        verified_evidence(&f, MINISTRY, id).await;
        verified_evidence(&f, CHIYODA, id).await;
    }

    // A key the registry removed (say it leaked) is never sent again: the next rotation makes a
    // new key, although the removed one is still on disk and unlisted.
    f.registry()
        .run(RemoveKey {
            member: OWNER.parse().unwrap(),
            key_id: old.clone(),
        })
        .await
        .unwrap();
    integration_tests::eventually("the removed key gone from the configuration", || async {
        let keys = admin(&f, MINISTRY).call(&ListKeys).await.unwrap();
        keys.iter()
            .any(|k| k.key_id == old && !k.listed)
            .then_some(())
    })
    .await;
    let next = admin(&f, MINISTRY)
        .call(&RotateKey { member: None })
        .await
        .unwrap();
    assert_ne!(next.key_id, old);
    assert_ne!(next.key_id, rotated.key_id);
    f.stop().await;
}
