//! A replica serves the primary's signed configuration byte for byte, goes on serving it when
//! the primary is down, and never goes back to an older serial.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use central_registry::{OfferError, Replica, ReplicaConfig, issue_replica_identity};
use certs::{ManualClock, TlsIdentity};
use common::{TestRegistry, error_type, eventually, fetch_from};
use globalconf::{ConfError, MemberId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// An HTTPS "registry" that always serves the same (old) envelope.
async fn stale_upstream(registry: &TestRegistry, envelope: Bytes) -> (String, oneshot::Sender<()>) {
    let dir = registry.dir.path().join("stale-upstream");
    let files =
        issue_replica_identity(&registry.config, "127.0.0.1", &dir, &registry.clock).unwrap();
    let chain = certs::certs_from_pem(&std::fs::read_to_string(&files.tls_cert).unwrap()).unwrap();
    let identity = TlsIdentity::new(chain, certs::load_secret_key(&files.tls_key).unwrap());
    let tls = Arc::new(certs::server_config(&identity, &[b"h2", b"http/1.1"]).unwrap());
    let router = Router::new().route(
        "/v1/global-configuration",
        get(move || {
            let envelope = envelope.clone();
            async move { envelope }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(runtime::serve_http(
        listener,
        Some(tls),
        router,
        async move {
            let _ = stopped.await;
        },
    ));
    (url, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_serves_the_same_bytes_survives_the_primary_and_refuses_rollback() {
    let mut primary = TestRegistry::start().await;
    let admin = primary.admin.clone();
    let (old_envelope, old) = primary.fetch().await;

    admin
        .add_member(
            "JP/GOV/digital-agency".parse::<MemberId>().unwrap(),
            "Digital Agency",
        )
        .await
        .unwrap();
    let (stale_url, _stale_stop) = stale_upstream(&primary, old_envelope.clone()).await;

    // The replica's identity, as `issue-replica-identity` makes it.
    let identity_dir = primary.dir.path().join("replica-identity");
    let files = issue_replica_identity(&primary.config, "127.0.0.1", &identity_dir, &primary.clock)
        .unwrap();
    let state_dir = primary.dir.path().join("replica-state");
    let config = ReplicaConfig {
        anchor: files.anchor.clone(),
        upstreams: vec![primary.public_url.clone(), stale_url.clone()],
        tls_cert: files.tls_cert.clone(),
        tls_key: files.tls_key.clone(),
        state_dir: state_dir.clone(),
        poll_interval: Duration::from_millis(100),
    };
    let clock = Arc::new(ManualClock::new(std::time::SystemTime::now()));
    let replica = Replica::new(config.clone(), clock.clone()).unwrap();
    let handle = replica.handle();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica_url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop_replica, replica_stopped) = oneshot::channel::<()>();
    let replica_task = tokio::spawn(replica.run(listener, async move {
        let _ = replica_stopped.await;
    }));

    // Same signed bytes as the primary, and it follows new serials.
    let (primary_bytes, current) = primary.fetch().await;
    assert!(current.serial() > old.serial());
    eventually("replica catches up", || async {
        (handle.serial() == Some(current.serial())).then_some(())
    })
    .await;
    let (replica_bytes, _) = fetch_from(&primary.https, &replica_url, &primary.anchor).await;
    assert_eq!(replica_bytes, primary_bytes);

    admin.publish().await.unwrap();
    let (primary_bytes, current) = primary.fetch().await;
    eventually("replica follows the next serial", || async {
        (handle.serial() == Some(current.serial())).then_some(())
    })
    .await;
    let (replica_bytes, _) = fetch_from(&primary.https, &replica_url, &primary.anchor).await;
    assert_eq!(replica_bytes, primary_bytes);

    // Read-only: enrolment goes to the primary.
    let r = primary
        .https
        .post(
            &format!("{replica_url}/v1/enrollments"),
            None,
            "application/x-protobuf",
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(error_type(&r), "Registry.ReadOnlyReplica");
    let anchor_text = primary
        .https
        .get(&format!("{replica_url}/v1/anchor"), None)
        .await
        .unwrap()
        .text();
    assert_eq!(
        globalconf::Anchor::parse(&anchor_text).unwrap(),
        primary.anchor
    );

    // The primary goes away: the replica keeps serving, and the only upstream left offers an
    // older serial, which is refused.
    primary.stop().await;
    let (refused_before, _) = handle.refusals();
    eventually("the stale upstream's envelope is refused", || async {
        let (n, last) = handle.refusals();
        (n > refused_before).then_some(last)
    })
    .await;
    let (replica_bytes, conf) = fetch_from(&primary.https, &replica_url, &primary.anchor).await;
    assert_eq!(replica_bytes, primary_bytes);
    assert_eq!(conf.serial(), current.serial());
    assert!(matches!(
        handle.offer(&old_envelope),
        Err(OfferError::Refused(ConfError::Rollback { .. }))
    ));
    assert_eq!(handle.serial(), Some(current.serial()));

    // A restarted replica starts from its stored copy, with no upstream reachable.
    let _ = stop_replica.send(());
    replica_task.await.unwrap().unwrap();
    let restarted = Replica::new(
        ReplicaConfig {
            upstreams: vec![primary.public_url.clone()],
            ..config
        },
        clock,
    )
    .unwrap();
    assert_eq!(restarted.handle().serial(), Some(current.serial()));
    assert_eq!(restarted.handle().envelope(), Some(primary_bytes));
}
