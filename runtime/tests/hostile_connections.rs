#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Clients that hold connections without using them cannot lock a server out: idle and
//! half-sent connections are closed, one source holds only its share, and a full server closes
//! the connection idle longest to serve a new client, never one with a request in flight.
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

/// `/` answers at once; `/hold` answers once the test releases it.
async fn serve(options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let release = Arc::new(Notify::new());
    let (arrived, held) = tokio::sync::watch::channel(0usize);
    let arrived = Arc::new(arrived);
    let released = Arc::clone(&release);
    let router = Router::new().route("/", get(|| async { "ok" })).route(
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
