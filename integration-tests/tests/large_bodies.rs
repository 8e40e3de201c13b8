#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A 2 GiB body through two security servers and back, with the process's memory measured.
//!
//! Alone in its own test binary: the servers run in this process, so its peak resident memory
//! is theirs (plus the test's own client and the demo backend, which stream too), and no other
//! test may run beside it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sandbox::{FederationSpec, ServiceSpec};
use sha2::{Digest as _, Sha256};

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const ECHO: &str = "JP/MUN/131016/records/echo";

const BODY: u64 = 2 << 30;
const PART: usize = 1 << 20;
/// What each server may hold of bodies in memory at once (`exchange.body_memory_budget_bytes`).
const BUDGET: usize = 16 << 20;
/// How far the process's peak resident memory may rise above what it was before the exchange:
/// the budget of the two servers, and room for their buffers, the connections' windows, this
/// test's client and the allocator. A body held in memory even once would take 2 GiB.
const BOUND: u64 = 128 << 20;

/// Part `i` of the body: the same pseudo-random bytes, numbered so parts differ.
fn part(base: &Bytes, i: u64) -> Bytes {
    let mut p = base.to_vec();
    p[..8].copy_from_slice(&i.to_be_bytes());
    Bytes::from(p)
}

/// A `/proc/self/status` field in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_gib_body_round_trips_through_two_servers_in_bounded_memory() {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (_dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    f.add_service(ServiceSpec::demo(
        ECHO.parse().unwrap(),
        sandbox::demo::DemoApi::Echo,
        vec![PORTAL.parse().unwrap()],
    ))
    .unwrap();
    for server in [MINISTRY, CHIYODA] {
        let exchange = &mut f.server_mut(server).unwrap().config.exchange;
        exchange.max_body_bytes = 3 << 30;
        exchange.in_memory_body_bytes = 1 << 20;
        exchange.body_memory_budget_bytes = BUDGET;
        exchange.request_timeout_secs = 1800;
        f.restart_server(server).await.unwrap();
    }
    let url = format!(
        "{}/r1/{ECHO}",
        f.server(MINISTRY).unwrap().client_proxy_url().unwrap()
    );
    let client: Client<_, axum::body::Body> = Client::builder(TokioExecutor::new()).build_http();
    let request = |body: axum::body::Body| {
        http::Request::post(&url)
            .header("X-Road-Client", PORTAL)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", BODY.to_string())
            .body(body)
            .unwrap()
    };

    // The pseudo-random base of every part, and the body's hash, made before measuring.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let base: Bytes = (0..PART)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect::<Vec<u8>>()
        .into();
    let parts = BODY / PART as u64;
    let mut hasher = Sha256::new();
    for i in 0..parts {
        hasher.update(part(&base, i));
    }
    let sent_sha256 = hasher.finalize();

    // Warm up the connections and pools with a small exchange, then start measuring.
    let small = client
        .request(
            http::Request::post(&url)
                .header("X-Road-Client", PORTAL)
                .body(axum::body::Body::from("warm"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    small.into_body().collect().await.unwrap();
    let before = status_bytes("VmRSS:");
    // Resets the peak (VmHWM) to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();

    let stream = futures_util::stream::iter(0..parts)
        .map(move |i| Ok::<_, Infallible>(hyper::body::Frame::data(part(&base, i))));
    let body = axum::body::Body::new(http_body_util::StreamBody::new(stream));
    let response = client.request(request(body)).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(
        response.headers()["content-length"],
        BODY.to_string().as_str(),
        "the answer comes with its length"
    );
    let mut received = 0u64;
    let mut hasher = Sha256::new();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
            hasher.update(&data);
        }
    }
    let peak = status_bytes("VmHWM:");
    assert_eq!(received, BODY);
    assert!(
        hasher.finalize() == sent_sha256,
        "the body came back unchanged"
    );
    let rise = peak.saturating_sub(before);
    eprintln!(
        "resident memory: {} MiB before, peak {} MiB during the 2 GiB round trip (+{} MiB)",
        before >> 20,
        peak >> 20,
        rise >> 20
    );
    assert!(
        rise <= BOUND,
        "the peak resident memory rose by {} MiB, more than the {} MiB bound",
        rise >> 20,
        BOUND >> 20
    );
    // Nothing is left in either server's spool directory.
    for server in [MINISTRY, CHIYODA] {
        let spool = f.server(server).unwrap().config.data_dir.join("spool");
        assert_eq!(std::fs::read_dir(spool).unwrap().count(), 0);
    }
    tokio::time::timeout(Duration::from_secs(60), f.stop())
        .await
        .unwrap();
}
