#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Clients that hold connections without using them cannot lock a server out: idle and
//! half-sent connections are closed, one source holds only its share, and a full server closes
//! the connection idle longest to serve a new client, never one with a request in flight. A
//! request body that stops arriving, or arrives a byte at a time, is cut off.
//!
//! The limits are small so that the tests stay quick; each wait is bounded so that a broken
//! server fails the test instead of hanging it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use runtime::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

/// Longest any single step may take before the test calls the server stuck.
const STUCK: Duration = Duration::from_secs(20);

struct Server {
    address: SocketAddr,
    release: Arc<Notify>,
    /// How many `/hold` requests have reached the handler.
    held: tokio::sync::watch::Receiver<usize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `/` answers at once; `/hold` answers once the test releases it; `/echo` reads the body and
/// answers its length (axum answers 400 when the body cannot be read).
async fn serve(options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let release = Arc::new(Notify::new());
    let (arrived, held) = tokio::sync::watch::channel(0usize);
    let arrived = Arc::new(arrived);
    let released = Arc::clone(&release);
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/hold",
            get(move || {
                let (released, arrived) = (Arc::clone(&released), Arc::clone(&arrived));
                async move {
                    let notified = released.notified();
                    arrived.send_modify(|n| *n += 1);
                    notified.await;
                    "released"
                }
            }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runtime::serve_http_with(
        listener,
        None,
        router,
        async {
            let _ = stopped.await;
        },
        options,
    ));
    Server {
        address,
        release,
        held,
        stop: Some(stop),
    }
}

fn options() -> ServeOptions {
    ServeOptions {
        max_connections: 4,
        max_connections_per_source: 100,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3600),
        ..ServeOptions::default()
    }
}

/// A connection from `127.0.0.N` (the whole 127/8 range is loopback).
async fn connect_from(source: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            0,
        ))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `GET path` and reads the answer until the server closes the connection.
async fn get_on(mut stream: TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(STUCK, stream.read_to_string(&mut answer))
        .await
        .expect("the server answers")
        .unwrap();
    answer
}

/// Whether the server closes `stream` (end of file or reset) without answering.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(STUCK, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the server neither answered nor closed the connection"),
    }
}

#[tokio::test]
async fn a_server_full_of_idle_connections_still_serves_a_new_client() {
    let server = serve(options()).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        // Accepted in order, so the first is the one idle longest.
        idle.push(connect_from(1, server.address).await);
    }
    let answer = get_on(connect_from(2, server.address).await, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the connection idle longest made room"
    );
}

#[tokio::test]
async fn connections_with_requests_in_flight_are_never_closed_for_room() {
    let mut server = serve(options()).await;
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(1, server.address).await;
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::timeout(STUCK, server.held.wait_for(|n| *n == 4))
        .await
        .expect("the four requests reach the handler")
        .unwrap();
    // Every connection holds a request: a new one is refused, not one of theirs.
    let mut late = connect_from(2, server.address).await;
    assert!(
        closed_by_server(&mut late).await,
        "a full server of busy connections refuses a new one"
    );
    server.release.notify_waiters();
    for s in &mut busy {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(STUCK, s.read(&mut buf))
            .await
            .expect("the held request is answered")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "the held request was served, not cut off"
        );
    }
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let server = serve(ServeOptions {
        idle_timeout: Duration::from_millis(300),
        ..options()
    })
    .await;
    let mut slow = connect_from(1, server.address).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut slow).await, "half-sent headers");
    let mut silent = connect_from(1, server.address).await;
    assert!(closed_by_server(&mut silent).await, "nothing sent at all");
    // A connection in use is not idle.
    let answer = get_on(connect_from(1, server.address).await, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn one_source_holds_only_its_share() {
    let server = serve(ServeOptions {
        max_connections: 10,
        max_connections_per_source: 2,
        ..options()
    })
    .await;
    let _a = connect_from(3, server.address).await;
    let _b = connect_from(3, server.address).await;
    // Registered in accept order: a request on a third from the same source is refused.
    let mut third = connect_from(3, server.address).await;
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        closed_by_server(&mut third).await,
        "over the source's share"
    );
    let answer = get_on(connect_from(4, server.address).await, "/").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "another source is served"
    );
}

/// Sends the head of `POST /echo` declaring `length` bytes of body.
async fn post_head(stream: &mut TcpStream, length: usize) {
    let head = format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
}

/// Reads what the server sends until it closes the connection or `STUCK` passes.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STUCK, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

fn paced(gap_ms: u64, min_bytes_per_sec: u64) -> ServeOptions {
    ServeOptions {
        body_pace: runtime::body::BodyPace {
            gap: Duration::from_millis(gap_ms),
            min_bytes_per_sec,
        },
        ..options()
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_off() {
    let server = serve(paced(300, 0)).await;
    let mut stalled = connect_from(1, server.address).await;
    post_head(&mut stalled, 100).await;
    stalled.write_all(&[b'x'; 10]).await.unwrap();
    let answer = read_answer(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut whole = connect_from(1, server.address).await;
    post_head(&mut whole, 100).await;
    whole.write_all(&[b'x'; 100]).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(STUCK, whole.read(&mut buf))
        .await
        .expect("a whole body is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("100"), "{answer}");
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_by_the_rate() {
    // Each byte comes well within the gap, but 1,000 bytes a second are needed beyond it.
    let server = serve(paced(500, 1000)).await;
    let mut drip = connect_from(1, server.address).await;
    post_head(&mut drip, 1000).await;
    let (mut from_server, mut to_server) = drip.into_split();
    // Read while dripping, so that the answer is taken before the server's close can reset it.
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = from_server.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let dripping = async {
        for _ in 0..1000 {
            if to_server.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Far less than the 100 s the drip would take.
    tokio::time::timeout(STUCK, async {
        tokio::select! {
            answer = answer => answer.unwrap(),
            () = dripping => String::from("the whole drip was taken"),
        }
    })
    .await
    .map(|answer| assert!(answer.starts_with("HTTP/1.1 400"), "{answer}"))
    .expect("the server stops the drip");
    let answer = get_on(connect_from(1, server.address).await, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
