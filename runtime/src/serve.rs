//! The accept loop every server of ours runs (mini-redis style: injected listener, shutdown
//! future, explicit connection limits, back-off on accept errors).
//!
//! No client can hold the loop's connections hostage (`conns.rs`): a TLS handshake and a
//! request's headers must arrive within their timeouts, a connection with no request in flight
//! and no byte either way for the idle timeout is closed, one source address may hold only a
//! share of the connections, and when the loop is full the connection idle longest is closed so
//! that a new client is served. A request body must keep arriving too (`body.rs`).
//!
//! Each binary reads the limits of each of its listeners from its configuration file as a
//! [`ConnectionLimits`] table (`docs/configuration.md`, "Connections").
//!
//! Over TLS, each request's extensions hold [`TlsConnection`] and the SHA-256 of the peer's
//! end-entity certificate (when it presented one) as [`PeerCertificate`], so handlers can pin
//! peers without knowing about TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::{BodyPace, Paced};
use crate::conns::{Conns, Counting, Tracked};

/// SHA-256 of the DER of the TLS peer's end-entity certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertificate(pub [u8; 32]);

/// In the extensions of every request that came over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsConnection;

/// Limits of one serving loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections held at once. When all are held, the one idle longest is closed for a new
    /// one; if every one has a request in flight, the new one is closed at once.
    pub max_connections: usize,
    /// Connections one source address may hold at once; more are closed at once.
    pub max_connections_per_source: usize,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a request's headers may take to arrive (HTTP/1).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight and no byte either way.
    pub idle_timeout: Duration,
    /// How fast a request body must arrive.
    pub body_pace: BodyPace,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_source: 1_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            body_pace: BodyPace {
                gap: Duration::from_secs(30),
                min_bytes_per_sec: 1024,
            },
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The limits of one listener as its operator writes them: a table of a binary's configuration
/// file (`[client_proxy.connections]`, say). Every key is optional; the defaults are
/// [`ServeOptions::default`]'s.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Connections held at once.
    pub max: usize,
    /// Connections one source address may hold at once.
    pub max_per_source: usize,
    /// Seconds a TLS handshake may take.
    pub handshake_timeout_secs: u64,
    /// Seconds a request's headers may take to arrive.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and no byte either way.
    pub idle_timeout_secs: u64,
    /// Seconds the server waits at most for the next part of a request body.
    pub body_read_timeout_secs: u64,
    /// Bytes a second a request body must average while the server waits for it; 0: no limit.
    pub min_body_bytes_per_sec: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        let d = ServeOptions::default();
        Self {
            max: d.max_connections,
            max_per_source: d.max_connections_per_source,
            handshake_timeout_secs: d.handshake_timeout.as_secs(),
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            body_read_timeout_secs: d.body_pace.gap.as_secs(),
            min_body_bytes_per_sec: d.body_pace.min_bytes_per_sec,
        }
    }
}

/// The longest any connection timeout may be set to: longer is a mistake, and far enough in
/// the future would overflow the clock's arithmetic.
const MAX_TIMEOUT_SECS: u64 = 86_400;

impl ConnectionLimits {
    /// Why these limits cannot be used, naming the key; `table` is where they were read from
    /// (`client_proxy.connections`, say).
    pub fn check(&self, table: &str) -> Result<(), String> {
        let zero = [
            ("max", self.max == 0),
            ("max_per_source", self.max_per_source == 0),
            ("handshake_timeout_secs", self.handshake_timeout_secs == 0),
            (
                "header_read_timeout_secs",
                self.header_read_timeout_secs == 0,
            ),
            ("idle_timeout_secs", self.idle_timeout_secs == 0),
            ("body_read_timeout_secs", self.body_read_timeout_secs == 0),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(format!("{table}.{key} must be at least 1"));
        }
        let long = [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
        ];
        if let Some((key, _)) = long.iter().find(|(_, secs)| *secs > MAX_TIMEOUT_SECS) {
            return Err(format!(
                "{table}.{key} must be at most {MAX_TIMEOUT_SECS} (a day)"
            ));
        }
        if self.max_per_source > self.max {
            return Err(format!(
                "{table}.max_per_source ({}) is more than {table}.max ({})",
                self.max_per_source, self.max
            ));
        }
        Ok(())
    }

    /// The serving loop's options for these limits.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            max_connections: self.max,
            max_connections_per_source: self.max_per_source,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            body_pace: BodyPace {
                gap: Duration::from_secs(self.body_read_timeout_secs),
                min_bytes_per_sec: self.min_body_bytes_per_sec,
            },
            ..ServeOptions::default()
        }
    }
}

/// The most a request's head (request line and headers) may take: more is refused with 431
/// (HTTP/1) or a stream error (HTTP/2), so that 10,000 connections cannot hold hyper's default
/// ~400 KB each. X-Road clients send a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish (up to the drain timeout).
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_http_with(listener, tls, router, shutdown, ServeOptions::default()).await
}

/// [`serve_http`] with explicit limits.
pub async fn serve_http_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    options: ServeOptions,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(Conns::new(
        options.max_connections,
        options.max_connections_per_source,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    // Typically EMFILE: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let registered = match conns.admit(peer.ip()) {
            Ok(r) => r,
            Err(why) => {
                tracing::debug!(%peer, ?why, "connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::clone(&registered.conn);
        let stream = Tracked::new(stream, Arc::clone(&conn));
        let router = router.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let handshake_timeout = options.handshake_timeout;
        let idle_timeout = options.idle_timeout;
        let pace = options.body_pace;
        let in_flight = Arc::clone(&conn);
        let task = tokio::spawn(async move {
            // Dropped when the connection ends, or when its task is aborted (evicted, idle).
            let _registered = registered;
            match acceptor {
                None => {
                    let router = router.map_request(move |req: http::Request<Incoming>| {
                        req.map(|body| Paced::new(body, pace))
                    });
                    let service = TowerToHyperService::new(Counting::new(router, in_flight));
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    let tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| PeerCertificate(Sha256::digest(leaf.as_ref()).into()));
                    let router = router.map_request(move |mut req: http::Request<Incoming>| {
                        req.extensions_mut().insert(TlsConnection);
                        if let Some(pc) = peer_cert {
                            req.extensions_mut().insert(pc);
                        }
                        req.map(|body| Paced::new(body, pace))
                    });
                    let service = TowerToHyperService::new(Counting::new(router, in_flight));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
        conn.served_by(task.abort_handle());
        tokio::spawn(async move { conn.close_when_idle(idle_timeout).await });
    }

    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain deadline reached; closing remaining connections");
        }
    }
    Ok(())
}
