//! Member signing keys that security servers ask to list (key rotation) over the public HTTPS
//! endpoint: signed by a key of the member valid now and by the new key, pending until the
//! operator approves, then valid after the activation delay, the signing key retired the
//! requested time after that; forged, foreign and stale requests refused.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use central_registry::ops::{ApproveKeyRequest, ListKeyRequests, RejectKeyRequest};
use certs::{Clock as _, Domain, SigningKey};
use common::{TestRegistry, enrolled, error_type};
use prost::Message as _;
use proto::v1 as pb;

const MEMBER: &str = "JP/GOV/digital-agency";
const OTHER: &str = "JP/MUN/131016";
const SS1: &str = "JP/GOV/digital-agency/ss1";

/// A `SignedKeyRequest` of `member` for `new_key`, signed by `current` and `new_signer`.
fn key_request(
    member: &str,
    current: &SigningKey,
    new_key: &SigningKey,
    new_signer: &SigningKey,
    created_at: i64,
) -> Vec<u8> {
    let request = pb::KeyRequest {
        member_id: member.into(),
        new_public_key: new_key.public_key().as_bytes().to_vec(),
        server_id: SS1.into(),
        created_at,
        retire_current_after_secs: 3600,
    }
    .encode_to_vec();
    pb::SignedKeyRequest {
        current_key_id: current.key_id().to_string(),
        current_key_signature: current.sign(Domain::KeyRequest, &request).to_vec(),
        new_key_signature: new_signer.sign(Domain::KeyRequest, &request).to_vec(),
        request,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_key_is_listed_when_approved_and_retires_the_key_that_asked() {
    let mut registry = TestRegistry::start_with(|c| c.key_activation_delay_secs = 60).await;
    for (member, name) in [(MEMBER, "Digital Agency"), (OTHER, "Chiyoda")] {
        registry
            .admin
            .add_member(member.parse().unwrap(), name)
            .await
            .unwrap();
    }
    let (ss1, _) = enrolled(&registry, SS1).await;
    let current = &ss1.member_key;
    let new = SigningKey::generate().unwrap();
    let now = registry.clock.unix_now();
    let serial = registry.serial().await;

    let stranger = SigningKey::generate().unwrap();
    for (what, body, status, kind) in [
        (
            "signed by a key the member does not have",
            key_request(MEMBER, &stranger, &new, &new, now),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "for another member, with this member's key",
            key_request(OTHER, current, &new, &new, now),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "no proof of the new key",
            key_request(MEMBER, current, &new, &stranger, now),
            400,
            "Registry.InvalidSignature",
        ),
        (
            "two days old",
            key_request(MEMBER, current, &new, &new, now - 2 * 86_400),
            400,
            "Registry.BadRequest",
        ),
        (
            "an unknown member",
            key_request("JP/GOV/nobody", current, &new, &new, now),
            404,
            "Registry.NotFound",
        ),
        ("not protobuf", b"\x01".to_vec(), 400, "Registry.BadRequest"),
    ] {
        let r = registry.post("/v1/key-requests", body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(error_type(&r), kind, "{what}");
    }
    assert!(
        registry
            .admin
            .run(ListKeyRequests)
            .await
            .unwrap()
            .is_empty()
    );

    // Pending until approved; asking again changes nothing; nothing is published meanwhile.
    for _ in 0..2 {
        let r = registry
            .post(
                "/v1/key-requests",
                key_request(MEMBER, current, &new, &new, now),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["status"], "pending");
        assert_eq!(body["key_id"], new.key_id().to_string());
    }
    let pending = registry.admin.run(ListKeyRequests).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].current_key_id, current.key_id());
    assert_eq!(registry.serial().await, serial);

    // Approved: valid after the activation delay; the key that asked retires an hour later.
    let approve = |key: &SigningKey| ApproveKeyRequest {
        member: MEMBER.parse().unwrap(),
        key_id: key.key_id(),
    };
    let listed = registry.admin.run(approve(&new)).await.unwrap();
    assert_eq!(listed.valid_from, now + 60);
    let (_, conf) = registry.fetch().await;
    let member = MEMBER.parse().unwrap();
    let new_entry = conf.conf().member_key_at(&member, &new.key_id(), now + 60);
    assert!(new_entry.is_some());
    assert!(
        conf.conf()
            .member_key_at(&member, &new.key_id(), now + 59)
            .is_none()
    );
    let old = conf
        .conf()
        .member_key_at(&member, &current.key_id(), now)
        .unwrap();
    assert_eq!(old.valid_until, Some(now + 60 + 3600));
    assert!(
        registry
            .admin
            .run(ListKeyRequests)
            .await
            .unwrap()
            .is_empty()
    );
    let r = registry
        .post(
            "/v1/key-requests",
            key_request(MEMBER, current, &new, &new, now),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json::<serde_json::Value>().unwrap()["status"], "listed");

    // A rejected request is dropped and approving it is then not possible.
    let third = SigningKey::generate().unwrap();
    let r = registry
        .post(
            "/v1/key-requests",
            key_request(MEMBER, current, &third, &third, now),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    registry
        .admin
        .run(RejectKeyRequest {
            member: MEMBER.parse().unwrap(),
            key_id: third.key_id(),
        })
        .await
        .unwrap();
    assert!(matches!(
        registry.admin.run(approve(&third)).await,
        Err(central_registry::RegistryError::NotFound(_))
    ));
    let audit = registry.admin.audit(20).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for action in ["key.request", "key.request.approve", "key.request.reject"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    registry.stop().await;
}
