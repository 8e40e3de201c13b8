//! Assembles a running security server from its configuration: the configuration client, the
//! client proxy, the server proxy (peer gRPC over pinned mutual TLS) and the admin API, all
//! stopped by one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certs::Clock;
use globalconf::Anchor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::admin::Admin;
use crate::confclient::ConfClient;
use crate::config::Config;
use crate::federation::Federation;
use crate::identity::{Identity, IdentityError, Paths};
use crate::keys::MemberKeys;
use crate::log::{Checkpointer, MessageLogger};
use crate::metrics::Metrics;
use crate::peer::PeerPool;
use crate::proxy::PeerService;
use crate::proxy::backend::Backend;
use crate::proxy::client::{ClientProxy, ClientProxySettings};
use crate::proxy::server::ServerProxy;
use crate::renewal::Renewal;
use crate::rotation::KeyRotation;
use crate::serverconf::ServerConf;
use crate::spool::{self, Spool};
use exchange::replay::ReplayCache;

/// How long X-Road-Ids are remembered when `exchange.replay_window_secs` is 0: long enough for
/// any clock skew up to five minutes.
const DEFAULT_REPLAY_WINDOW_SECS: u64 = 600;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("message log: {0}")]
    MessageLog(#[from] msglog::LogError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("anchor: {0}")]
    Anchor(#[from] globalconf::AnchorError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("TLS: {0}")]
    Tls(#[from] certs::Error),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("local configuration: {0}")]
    ServerConf(crate::serverconf::ServerConfError),
    #[error("rebuilding the replay window from the message log: {0}")]
    Replay(String),
    #[error("the body spool directory: {0}")]
    Spool(std::io::Error),
}

/// The listeners of a server; tests bind them to port 0.
#[derive(Debug)]
pub struct Listeners {
    pub client_proxy: TcpListener,
    /// `client_proxy.tls_listen`: the client proxy over HTTPS too.
    pub client_proxy_tls: Option<TcpListener>,
    pub server_proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        /// The error names the listener and its address (a port in use says which).
        async fn bind(what: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{what} {addr}: {e}")))
        }
        let client_proxy_tls = match config.client_proxy.tls_listen {
            Some(addr) => Some(bind("client_proxy.tls_listen", addr).await?),
            None => None,
        };
        Ok(Self {
            client_proxy: bind("client_proxy.listen", config.client_proxy.listen).await?,
            client_proxy_tls,
            server_proxy: bind("server_proxy.listen", config.server_proxy.listen).await?,
            admin: bind("admin.listen", config.admin.listen).await?,
        })
    }
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The message log (DESIGN §6).
    pub log: msglog::MessageLog,
    pub conf: Arc<ConfClient>,
    /// The federated instances' configurations.
    pub federation: Arc<Federation>,
    /// Services and access rights; changes apply to the next request.
    pub serverconf: Arc<ServerConf>,
    pub client_proxy_addr: SocketAddr,
    /// The client proxy's HTTPS listener (`client_proxy.tls_listen`), if it has one.
    pub client_proxy_tls_addr: Option<SocketAddr>,
    pub server_proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    trigger: runtime::ShutdownTrigger,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and returns when every task has ended.
    pub async fn shutdown(mut self) {
        self.trigger.trigger();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Starts a server on the given listeners.
pub async fn start(
    config: &Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    config.validate()?;
    let anchor = Anchor::load(&config.anchor)?;
    let identity = Identity::load(config)?;
    // Shared by every listener and the peer pool: a renewed certificate replaces it in place.
    let tls_identity = certs::LiveIdentity::new(identity.tls, Arc::clone(&clock))?;
    let exchange = &config.exchange;
    // A part of a body plus its signed header and framing; a body in memory comes whole in one
    // message from servers of earlier versions.
    let max_message = exchange.in_memory_body_bytes.max(spool::CHUNK) + 256 * 1024;
    let peers = Arc::new(PeerPool::new(
        tls_identity.clone(),
        Duration::from_millis(exchange.connect_timeout_ms),
        max_message,
    ));
    let poll_override = (config.globalconf.poll_interval_secs > 0)
        .then(|| Duration::from_secs(config.globalconf.poll_interval_secs));
    let conf = Arc::new(ConfClient::open(
        anchor.clone(),
        Paths::new(&config.data_dir).stored_globalconf(),
        identity.server_id.clone(),
        Arc::clone(&peers),
        config.fetch_timeout(),
        poll_override,
        Arc::clone(&clock),
    )?);

    let mut serverconf = ServerConf::open(&config.data_dir.join("serverconf.redb"))
        .map_err(StartError::ServerConf)?
        .with_clock(Arc::clone(&clock));
    if let Some(declared) = &config.declared {
        serverconf = serverconf.declared_in(declared.file.clone());
    }
    let serverconf = Arc::new(serverconf);
    // A declared configuration is in force before the first request; a file that does not
    // hold leaves the one applied last (and `status` says why).
    let declared = config.declared.as_ref().map(|d| {
        let mut reloader = crate::declared::Reloader::new(
            d.file.clone(),
            Arc::clone(&serverconf),
            Arc::clone(&clock),
        );
        reloader.reload();
        (reloader, Duration::from_secs(d.reload_interval_secs))
    });
    let declared_status = declared.as_ref().map(|(r, _)| r.status());

    let client_proxy_addr = listeners.client_proxy.local_addr()?;
    let client_proxy_tls_addr = listeners
        .client_proxy_tls
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let server_proxy_addr = listeners.server_proxy.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let (trigger, shutdown) = runtime::Shutdown::new();
    let mut tasks = JoinSet::new();

    tasks.spawn(Arc::clone(&conf).run(shutdown.clone()));
    tasks.spawn(Arc::clone(&conf).spread(shutdown.clone()));
    if let Some((reloader, interval)) = declared {
        tasks.spawn(reloader.run(interval, shutdown.clone()));
    }
    let renewal = Arc::new(Renewal::new(
        tls_identity.clone(),
        Paths::new(&config.data_dir),
        identity.tls_keys.clone(),
        identity.server_id.clone(),
        anchor,
        Arc::clone(&conf),
        Arc::clone(&clock),
        &config.tls,
    ));
    tasks.spawn(Arc::clone(&renewal).run(shutdown.clone()));

    let token = identity.token.clone();
    let keys = Arc::new(MemberKeys::new(identity.signing_keys));
    let spool = Spool::new(
        &config.data_dir.join("spool"),
        exchange.in_memory_body_bytes,
        exchange.body_memory_budget_bytes,
        exchange.max_body_bytes,
    )
    .map_err(StartError::Spool)?;
    let log_config = &config.messagelog;
    let log = crate::log::open(config)?;
    let logger = MessageLogger::new(
        log.clone(),
        log_config.enabled,
        log_config.log_bodies,
        log_config.body_logging_off.clone(),
        Arc::clone(&clock),
    );
    let federation = Arc::new(
        Federation::new(
            Arc::clone(&conf),
            crate::federation::Settings {
                allowed: config.federation.instances.clone(),
                paths: Paths::new(&config.data_dir),
                own_id: identity.server_id.clone(),
                fetch_timeout: config.fetch_timeout(),
                poll_override,
            },
            Arc::clone(&peers),
            Arc::clone(&clock),
        )
        .with_history(log.clone()),
    );
    tasks.spawn(Arc::clone(&federation).run(shutdown.clone()));
    let metrics = Arc::new(Metrics::new());
    // Operational data is for the operator's insight, not evidence: a store that cannot be
    // opened is logged, and the server serves without it.
    let opmon = if config.opmon.enabled {
        match crate::opmon::Opmon::open(
            &config.data_dir.join(crate::opmon::FILE),
            config.opmon.retention_days,
        ) {
            Ok(opmon) => {
                metrics.attach_opmon(Arc::clone(&opmon));
                Some(opmon)
            }
            Err(e) => {
                tracing::error!(error = %e, "operational data is off until a restart");
                None
            }
        }
    } else {
        None
    };
    let skew_override = (exchange.max_clock_skew_secs > 0)
        .then(|| Duration::from_secs(exchange.max_clock_skew_secs));
    let replay_window = Duration::from_secs(if exchange.replay_window_secs > 0 {
        exchange.replay_window_secs
    } else {
        DEFAULT_REPLAY_WINDOW_SECS
    });

    // Information systems may present a client certificate; whether it is registered for the
    // subsystem a request names is checked per request (client_auth).
    let client_tls = if config.client_proxy.tls {
        Some(Arc::new(
            tls_identity.information_system_server_config(&[b"h2", b"http/1.1"])?,
        ))
    } else {
        None
    };
    let client_router = ClientProxy::new(
        ClientProxySettings {
            this: identity.server_id.clone(),
            spool: spool.clone(),
            request_timeout: Duration::from_secs(exchange.request_timeout_secs),
            skew_override,
            serverconf: Arc::clone(&serverconf),
        },
        Arc::clone(&federation),
        Arc::clone(&keys),
        Arc::clone(&peers),
        Arc::clone(&clock),
        Arc::clone(&metrics),
        logger.clone(),
    )
    .router();
    if let Some(listener) = listeners.client_proxy_tls {
        let tls = Arc::new(tls_identity.information_system_server_config(&[b"h2", b"http/1.1"])?);
        tasks.spawn(serve(
            "client proxy (HTTPS)",
            listener,
            Some(tls),
            client_router.clone(),
            config.client_proxy.connections.serve_options(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(serve(
        "client proxy",
        listeners.client_proxy,
        client_tls,
        client_router,
        config.client_proxy.connections.serve_options(),
        shutdown.clone(),
    ));

    // Peers are pinned against the own configuration and the federated instances'.
    let peer_tls = Arc::new(tls_identity.pinned_server_config(
        Arc::clone(&federation) as Arc<dyn certs::PinPolicy>,
        &[crate::peer::pool::ALPN_H2],
    )?);
    let server_proxy = Arc::new(ServerProxy {
        this: identity.server_id.clone(),
        confs: Arc::clone(&federation),
        serverconf: Arc::clone(&serverconf),
        keys: Arc::clone(&keys),
        replay: ReplayCache::new(replay_window, exchange.replay_cache_entries),
        backend: Backend::new(spool.clone()),
        spool,
        clock: Arc::clone(&clock),
        skew_override,
        metrics: Arc::clone(&metrics),
        logger,
    });
    // Before the server proxy serves anything: the ids it accepted before a restart stay used.
    {
        let max_skew = skew_override
            .or_else(|| conf.current().map(|c| c.conf().parameters().max_clock_skew))
            .unwrap_or(replay_window);
        let now = clock.unix_now();
        let proxy = Arc::clone(&server_proxy);
        tokio::task::spawn_blocking(move || {
            crate::log::replay::rebuild(proxy.logger.log(), &proxy.replay, max_skew, now)
        })
        .await
        .map_err(|e| StartError::Replay(e.to_string()))?
        .map_err(|e| StartError::Replay(e.to_string()))?;
    }
    // Bounded concurrency bounds the memory peers' bodies can take (each at most max_message).
    let peer_router = PeerService::new(server_proxy).router(max_message).layer(
        tower::limit::GlobalConcurrencyLimitLayer::new(exchange.max_concurrent_exchanges),
    );
    tasks.spawn(serve(
        "server proxy",
        listeners.server_proxy,
        Some(peer_tls),
        peer_router,
        config.server_proxy.connections.serve_options(),
        shutdown.clone(),
    ));

    let admin_router = Admin::new(
        Arc::clone(&conf),
        Arc::clone(&serverconf),
        &identity.admin_token,
    )
    .with_evidence(crate::admin::EvidenceSource {
        log: log.clone(),
        server_id: identity.server_id.clone(),
        clock: Arc::clone(&clock),
    })
    .with_renewal(Arc::clone(&renewal))
    .with_declared(declared_status)
    .with_opmon(opmon)
    .with_federation(Arc::clone(&federation))
    .with_backup(crate::backup::Source {
        config: config.clone(),
        server_id: identity.server_id.clone(),
        log: log.clone(),
        serverconf: Arc::clone(&serverconf),
        clock: Arc::clone(&clock),
    })
    .with_rotation(Arc::new(KeyRotation {
        keys: Arc::clone(&keys),
        paths: Paths::new(&config.data_dir),
        server_id: identity.server_id.clone(),
        anchor: conf.anchor().clone(),
        conf: Arc::clone(&conf),
        clock: Arc::clone(&clock),
        retire_previous_after_secs: config.keys.retire_previous_after_secs,
        hsm: token.zip(config.hsm.clone()),
    }))
    .router()
    .merge(crate::metrics::router(
        Arc::clone(&metrics),
        Arc::clone(&federation),
        Arc::clone(&clock),
        log.clone(),
        tls_identity.clone(),
    ));
    tasks.spawn(serve(
        "admin",
        listeners.admin,
        None,
        admin_router,
        config.admin.connections.serve_options(),
        shutdown.clone(),
    ));

    tasks.spawn(crate::federation::keep_history(
        conf.subscribe(),
        log.clone(),
        false,
        shutdown.clone(),
    ));
    let checkpointer = Checkpointer {
        log: log.clone(),
        this: identity.server_id.clone(),
        conf: Arc::clone(&conf),
        keys: Arc::clone(&keys),
        peers: Arc::clone(&peers),
        clock: Arc::clone(&clock),
        interval_override: (log_config.checkpoint_interval_secs > 0)
            .then(|| Duration::from_secs(log_config.checkpoint_interval_secs)),
        witness_count_override: (log_config.witness_count > 0).then_some(log_config.witness_count),
        metrics: Arc::clone(&metrics),
    };
    tasks.spawn(checkpointer.run(shutdown.clone()));
    if log_config.retention_days > 0 {
        tasks.spawn(retention(
            log.clone(),
            log_config.retention_days,
            log_config.archive_dir.clone(),
            Arc::clone(&clock),
            shutdown.clone(),
        ));
    }

    tracing::info!(
        server = %identity.server_id,
        client_proxy = %client_proxy_addr,
        server_proxy = %server_proxy_addr,
        admin = %admin_addr,
        "security server started"
    );
    Ok(RunningServer {
        log,
        conf,
        federation,
        serverconf,
        client_proxy_addr,
        client_proxy_tls_addr,
        server_proxy_addr,
        admin_addr,
        trigger,
        tasks,
    })
}

async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    limits: runtime::ServeOptions,
    shutdown: runtime::Shutdown,
) {
    if let Err(e) = runtime::serve_http_with(listener, tls, router, shutdown.wait(), limits).await {
        tracing::error!(listener = name, error = %e, "listener failed");
    }
}

/// Once an hour, moves records older than the retention period to archive files.
async fn retention(
    log: msglog::MessageLog,
    days: u64,
    dir: std::path::PathBuf,
    clock: Arc<dyn Clock>,
    shutdown: runtime::Shutdown,
) {
    let mut stop = std::pin::pin!(shutdown.wait());
    loop {
        let now_ms = clock.unix_now().saturating_mul(1000);
        let cutoff = now_ms
            .saturating_sub(i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX));
        let (log2, dir2) = (log.clone(), dir.clone());
        match tokio::task::spawn_blocking(move || log2.archive_before(cutoff, &dir2, |_, _| {}))
            .await
        {
            Ok(Ok(report)) => tracing::info!(?report, "archived old message log records"),
            Ok(Err(e)) => tracing::error!(error = %e, "archiving the message log failed"),
            Err(e) => tracing::error!(error = %e, "archiving task failed"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
