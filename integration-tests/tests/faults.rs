#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults of the machines and the network under the servers: a clock an hour wrong, clocks that
//! jump an hour forwards and back, and a network between two servers that drops or stalls
//! traffic. Clients get a clear X-Road error in time, no exchange is logged as answered on one
//! side only, everything works again once the fault is gone, and the log stays verifiable.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicU8, Ordering};

use certs::ManualClock;
use http::Method;
use proto::v1 as pb;
use sandbox::{Federation, FederationSpec, Restart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const PORTAL: &str = "JP/GOV/digital-agency/portal";
const HOUR: Duration = Duration::from_secs(3600);

async fn start(clock: Arc<dyn certs::Clock>) -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 3600;
    spec.samples.clear();
    integration_tests::start_federation(spec, clock).await
}

/// The portal asks Chiyoda's `residentRecord` through the ministry's server.
async fn exchange(f: &Federation, id: &str) -> runtime::Response {
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    runtime::HttpClient::plain()
        .with_timeout(Duration::from_secs(30))
        .request(
            Method::GET,
            &format!("{proxy}/r1/JP/MUN/131016/records/residentRecord/131016000001"),
            &[
                ("X-Road-Client", PORTAL),
                ("X-Road-Id", id),
                ("X-Road-Data-Subject", "131016000001"),
                ("X-Road-Purpose", "clock test"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
}

/// The records `server`'s log holds for `message_id`, in log order.
async fn records(f: &Federation, server: &str, message_id: &str) -> Vec<pb::LogRecord> {
    let log = f.server(server).unwrap().running().unwrap().log.clone();
    let id = message_id.to_owned();
    tokio::task::spawn_blocking(move || {
        log.find_by_message_id(&id)
            .unwrap()
            .into_iter()
            .map(|i| log.record(i).unwrap().unwrap().decode().unwrap())
            .collect()
    })
    .await
    .unwrap()
}

/// [`records`] once what an exchange left has reached the log: a request record is enqueued
/// without waiting, and its failure record follows; both are on disk within 20 ms (synced with
/// the next record, or on their own). Waits until there are two records, or a second has passed
/// (an exchange that failed before its request was logged leaves none).
async fn settled_records(f: &Federation, server: &str, message_id: &str) -> Vec<pb::LogRecord> {
    let started = std::time::Instant::now();
    integration_tests::eventually("the exchange's records", || async {
        let records = records(f, server, message_id).await;
        (records.len() >= 2 || started.elapsed() > Duration::from_secs(1)).then_some(records)
    })
    .await
}

/// How many records `server`'s log holds for `message_id`.
async fn logged(f: &Federation, server: &str, message_id: &str) -> usize {
    let s = f.server(server).unwrap();
    let log = s.running().unwrap().log.clone();
    let id = message_id.to_owned();
    tokio::task::spawn_blocking(move || log.find_by_message_id(&id).unwrap().len())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_provider_whose_clock_is_an_hour_off_refuses_with_clock_skew_until_it_is_right() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    let r = exchange(&f, "skew-before").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    // Chiyoda's machine runs an hour fast: the requests it gets were created an hour "ago".
    let chiyoda = ManualClock::new(SystemTime::now() + HOUR);
    let restart = Restart {
        clock: Some(Arc::new(chiyoda.clone())),
        ..Restart::default()
    };
    f.restart_server_with(CHIYODA, restart).await.unwrap();
    let r = exchange(&f, "skew-fast").await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.ClockSkew",
        "{}: {}",
        r.status,
        r.text()
    );
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(
        logged(&f, CHIYODA, "skew-fast").await,
        0,
        "a refused request is not logged as passed on"
    );
    // The client's server holds the request it sent and, instead of an answer, what its
    // client got.
    let kinds: Vec<_> = settled_records(&f, MINISTRY, "skew-fast")
        .await
        .iter()
        .map(|r| {
            (
                r.kind(),
                r.error.split(':').next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (pb::LogKind::Request, String::new()),
            (
                pb::LogKind::Failure,
                "Server.ServerProxy.ClockSkew".to_owned()
            )
        ]
    );

    // An hour slow: the requests come from its future.
    chiyoda.set(SystemTime::now() - HOUR);
    let r = exchange(&f, "skew-slow").await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.ClockSkew",
        "{}: {}",
        r.status,
        r.text()
    );

    // Put right (by NTP, say): exchanges work again without a restart.
    chiyoda.set(SystemTime::now());
    let r = exchange(&f, "skew-after").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    for server in [MINISTRY, CHIYODA] {
        assert_eq!(logged(&f, server, "skew-after").await, 2, "{server}");
    }
    f.stop().await;
}

#[tokio::test]
async fn every_clock_jumping_an_hour_forwards_and_back_keeps_exchanges_and_the_log_whole() {
    let clock = ManualClock::new(SystemTime::now());
    let (_dir, f) = start(Arc::new(clock.clone())).await;

    let r = exchange(&f, "jump-0").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    clock.advance(HOUR);
    let r = exchange(&f, "jump-forward").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // Back by an hour: records are now written with times before those already in the log.
    clock.set(SystemTime::now());
    let r = exchange(&f, "jump-back").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    for server in [MINISTRY, CHIYODA] {
        for id in ["jump-0", "jump-forward", "jump-back"] {
            assert_eq!(logged(&f, server, id).await, 2, "{server} {id}");
        }
    }
    // The log's chain and checkpoints hold across the jumps: evidence of the last exchange,
    // sealed after both jumps, verifies offline.
    let bundle = integration_tests::export_evidence(&f, CHIYODA, "jump-back", 1).await;
    let report = integration_tests::verify_offline(&f, &bundle);
    assert!(report.passed(), "{report}");
    f.stop().await;
}

const PASS: u8 = 0;
const STALL: u8 = 1;
const DROP: u8 = 2;
/// Requests pass, answers are held: a partition in the middle of an exchange.
const ANSWERS_LOST: u8 = 3;

/// A TCP proxy in front of `target` that passes traffic, holds it (`STALL`: bytes are read
/// but not passed on; `ANSWERS_LOST`: only those coming back), or cuts every connection and
/// refuses new ones (`DROP`), as `mode` says.
async fn flaky_link(listener: TcpListener, target: std::net::SocketAddr, mode: Arc<AtomicU8>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        if mode.load(Ordering::SeqCst) == DROP {
            continue;
        }
        let Ok(outbound) = TcpStream::connect(target).await else {
            continue;
        };
        let (ri, wi) = inbound.into_split();
        let (ro, wo) = outbound.into_split();
        tokio::spawn(pipe(ri, wo, Arc::clone(&mode), ANSWERS_LOST));
        tokio::spawn(pipe(ro, wi, Arc::clone(&mode), PASS));
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    // The mode in which this direction passes traffic as in `PASS`.
    passes_in: u8,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match mode.load(Ordering::SeqCst) {
                PASS => break,
                m if m == passes_in => break,
                DROP => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_network_that_drops_or_stalls_between_servers_gives_clear_errors_in_time() {
    let (_dir, mut f) = start(Arc::new(certs::SystemClock)).await;
    // The ministry's clients wait at most 3 s for an answer.
    f.server_mut(MINISTRY)
        .unwrap()
        .config
        .exchange
        .request_timeout_secs = 3;
    f.restart_server(MINISTRY).await.unwrap();

    // Chiyoda's server proxy moves behind a link on the address the configuration lists.
    let listed = f
        .server(CHIYODA)
        .unwrap()
        .running()
        .unwrap()
        .server_proxy_addr;
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inner_addr = inner.local_addr().unwrap();
    let restart = Restart {
        server_proxy: Some(inner),
        ..Restart::default()
    };
    f.restart_server_with(CHIYODA, restart).await.unwrap();
    let mode = Arc::new(AtomicU8::new(PASS));
    let link = TcpListener::bind(listed).await.unwrap();
    tokio::spawn(flaky_link(link, inner_addr, Arc::clone(&mode)));

    let r = exchange(&f, "link-up").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    // Stalled: no byte crosses. The client hears within the ministry's 3 s.
    mode.store(STALL, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = exchange(&f, "link-stalled").await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ClientProxy.NetworkError",
        "{}: {}",
        r.status,
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Dropped: connections cut and refused.
    mode.store(DROP, Ordering::SeqCst);
    let r = exchange(&f, "link-dropped").await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ClientProxy.NetworkError",
        "{}: {}",
        r.status,
        r.text()
    );

    // Nothing crossed, so the provider logged nothing; the client's server holds no answer,
    // and, if it logged the request, a failure record saying what the client got (synced with
    // the next record, or within 20 ms).
    for id in ["link-stalled", "link-dropped"] {
        assert_eq!(logged(&f, CHIYODA, id).await, 0, "{id}");
        let ministry = settled_records(&f, MINISTRY, id).await;
        match ministry.as_slice() {
            [] => {}
            [request, failure] => {
                assert_eq!(request.kind(), pb::LogKind::Request, "{id}");
                assert_eq!(failure.kind(), pb::LogKind::Failure, "{id}");
                assert!(
                    failure
                        .error
                        .starts_with("Server.ClientProxy.NetworkError: "),
                    "{id}: {}",
                    failure.error
                );
            }
            other => panic!("{id}: {other:?}"),
        }
    }

    // The partition falls in the middle of an exchange: the request reaches Chiyoda, which
    // serves and logs it, and its answer is lost. The client hears `NetworkError` in time,
    // and the ministry's log says so after the request, with `sent`: the one log holds the
    // exchange as answered, the other as failed, and each says which.
    mode.store(PASS, Ordering::SeqCst);
    integration_tests::eventually("the link passes again", || async {
        exchange(&f, "link-between")
            .await
            .is_success()
            .then_some(())
    })
    .await;
    mode.store(ANSWERS_LOST, Ordering::SeqCst);
    let r = exchange(&f, "answer-lost").await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ClientProxy.NetworkError",
        "{}: {}",
        r.status,
        r.text()
    );
    let chiyoda = records(&f, CHIYODA, "answer-lost").await;
    let kinds: Vec<_> = chiyoda.iter().map(pb::LogRecord::kind).collect();
    assert_eq!(kinds, [pb::LogKind::Request, pb::LogKind::Response]);
    let ministry = settled_records(&f, MINISTRY, "answer-lost").await;
    let kinds: Vec<_> = ministry.iter().map(pb::LogRecord::kind).collect();
    assert_eq!(kinds, [pb::LogKind::Request, pb::LogKind::Failure]);
    assert!(ministry[1].sent);
    assert!(
        ministry[1]
            .error
            .starts_with("Server.ClientProxy.NetworkError: "),
        "{}",
        ministry[1].error
    );
    // The failure record is evidence like any other: it verifies offline.
    let bundle = integration_tests::export_evidence(&f, MINISTRY, "answer-lost", 1).await;
    let report = integration_tests::verify_offline(&f, &bundle);
    assert!(report.passed(), "{report}");
    let failure = report.records.iter().find(|r| r.kind == "failure").unwrap();
    assert_eq!(failure.sent, Some(true));

    // The link heals: exchanges work again (on a new connection, once the old one is gone).
    mode.store(PASS, Ordering::SeqCst);
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    integration_tests::eventually("an exchange over the healed link", || async {
        let n = attempt.fetch_add(1, Ordering::SeqCst);
        exchange(&f, &format!("link-healed-{n}"))
            .await
            .is_success()
            .then_some(())
    })
    .await;
    f.stop().await;
}
