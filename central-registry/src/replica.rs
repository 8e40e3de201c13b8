//! A read-only registry replica (DESIGN §4 (a)): it polls upstream registries for the signed
//! configuration, accepts only what verifies under the anchor and is not older than what it
//! holds, stores it atomically, and serves it from memory — also while the primary is down.
//! It trusts the signature, not the upstream: the HTTPS client trusts only the anchor's CA, and
//! every envelope is verified before it replaces the held one.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use certs::{Clock, TlsIdentity};
use globalconf::signed::{self, VerifiedConf};
use globalconf::{Anchor, ConfError, Succession};
use http::StatusCode;
use tokio::net::TcpListener;

use crate::error::RegistryError;
use crate::http::{anchor_response, ca_pem_response, configuration_response};
use crate::registry::ALPN;

/// Name of the stored envelope in the replica's state directory.
pub const STORED_CONFIGURATION: &str = "global-configuration.signed";

/// How a replica is set up (the `replica` subcommand's flags).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub anchor: PathBuf,
    /// Base URLs of the registries to poll, tried in order each round.
    pub upstreams: Vec<String>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
}

/// Why an offered configuration was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("{0}")]
    Refused(#[from] ConfError),
    #[error("cannot store the configuration: {0}")]
    Store(#[from] certs::Error),
    #[error("upstream {url}: {message}")]
    Upstream { url: String, message: String },
}

/// A replica, ready to [`run`](Replica::run).
#[derive(Debug)]
pub struct Replica {
    shared: Arc<ReplicaShared>,
}

/// In-process view of a running replica. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicaHandle {
    shared: Arc<ReplicaShared>,
}

#[derive(Debug)]
struct ReplicaShared {
    anchor: Anchor,
    anchor_toml: String,
    upstreams: Vec<String>,
    poll_interval: Duration,
    stored: PathBuf,
    clock: Arc<dyn Clock>,
    client: runtime::HttpClient,
    /// The CAs `client` trusts: the held configuration's.
    roots: Arc<certs::CaRoots>,
    tls: Arc<rustls::ServerConfig>,
    current: Mutex<Option<VerifiedConf>>,
    refusals: AtomicU64,
    last_refusal: Mutex<Option<String>>,
}

impl Replica {
    /// Loads the anchor, the TLS identity and the stored configuration (if any; one that no
    /// longer verifies is ignored with a warning).
    pub fn new(config: ReplicaConfig, clock: Arc<dyn Clock>) -> Result<Replica, RegistryError> {
        if config.upstreams.is_empty() {
            return Err(RegistryError::BadRequest(
                "a replica needs an upstream URL".into(),
            ));
        }
        if config.poll_interval.is_zero() {
            return Err(RegistryError::BadRequest(
                "poll interval must be positive".into(),
            ));
        }
        let anchor = Anchor::load(&config.anchor)?;
        let anchor_toml = anchor.to_toml()?;
        let cert_pem =
            std::fs::read_to_string(&config.tls_cert).map_err(|source| certs::Error::Io {
                path: config.tls_cert.clone(),
                source,
            })?;
        let identity = TlsIdentity::new(
            certs::certs_from_pem(&cert_pem)?,
            certs::load_secret_key(&config.tls_key)?,
        );
        let tls = Arc::new(certs::server_config(&identity, ALPN)?);
        // hyper-rustls sets ALPN itself; it refuses a config that already has some.
        std::fs::create_dir_all(&config.state_dir).map_err(|source| certs::Error::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        let stored = config.state_dir.join(STORED_CONFIGURATION);
        let current = match std::fs::read(&stored) {
            Ok(bytes) => match signed::verify(&bytes, &anchor) {
                Ok(conf) => {
                    tracing::info!(
                        serial = conf.serial(),
                        "replica starts from its stored configuration"
                    );
                    Some(conf)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the stored configuration");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(certs::Error::Io {
                    path: stored,
                    source,
                }
                .into());
            }
        };
        // HTTPS to the upstream trusts the CAs the configuration lists, as a security server does.
        let roots = certs::CaRoots::new(&match &current {
            Some(conf) => conf.conf().trusted_cas(&anchor),
            None => anchor.ca_certificates_der(),
        })?;
        // hyper-rustls sets ALPN itself; it refuses a config that already has some.
        let client_tls = roots.client_config(&[], Arc::new(certs::SystemClock))?;
        Ok(Replica {
            shared: Arc::new(ReplicaShared {
                roots,
                anchor,
                anchor_toml,
                upstreams: config
                    .upstreams
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
                poll_interval: config.poll_interval,
                stored,
                clock,
                client: runtime::HttpClient::https(client_tls),
                tls,
                current: Mutex::new(current),
                refusals: AtomicU64::new(0),
                last_refusal: Mutex::new(None),
            }),
        })
    }

    pub fn handle(&self) -> ReplicaHandle {
        ReplicaHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves on `listener` and polls the upstreams until `shutdown` resolves.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RegistryError> {
        let (trigger, stop) = runtime::Shutdown::new();
        let router = Router::new()
            .route("/v1/global-configuration", get(configuration))
            .route("/v1/anchor", get(anchor))
            .route("/v1/ca.pem", get(ca_pem))
            .route("/v1/enrollments", axum::routing::any(read_only))
            .route("/v1/enrollments/{*rest}", axum::routing::any(read_only))
            .route("/v1/renewals", axum::routing::any(read_only))
            .route("/v1/key-requests", axum::routing::any(read_only))
            .route("/health", get(health))
            .fallback(crate::http::not_found)
            .with_state(Arc::clone(&self.shared));
        tracing::info!(addr = ?listener.local_addr().ok(), "registry replica serving");
        let trigger = &trigger;
        let serve = async {
            let r = runtime::serve_http(
                listener,
                Some(Arc::clone(&self.shared.tls)),
                router,
                stop.clone().wait(),
            )
            .await;
            trigger.trigger();
            r
        };
        let handle = self.handle();
        let poll = async {
            let mut tick = tokio::time::interval(self.shared.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stopped = stop.clone().wait();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = handle.poll_once().await {
                            tracing::warn!(error = %e, "no configuration from any upstream this round");
                        }
                    }
                }
            }
        };
        let signal = async {
            shutdown.await;
            trigger.trigger();
        };
        let (result, (), ()) = tokio::join!(serve, poll, signal);
        result.map_err(|e| RegistryError::Internal(format!("serving failed: {e}")))
    }
}

impl ReplicaHandle {
    fn current(&self) -> Option<VerifiedConf> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serial of the configuration served, if any.
    pub fn serial(&self) -> Option<u64> {
        self.current().map(|c| c.serial())
    }

    /// The exact envelope bytes served, if any.
    pub fn envelope(&self) -> Option<Bytes> {
        self.current().map(|c| Bytes::copy_from_slice(c.envelope()))
    }

    /// How many offered configurations were refused so far, and the last reason.
    pub fn refusals(&self) -> (u64, Option<String>) {
        let last = self
            .shared
            .last_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.shared.refusals.load(Ordering::SeqCst), last)
    }

    /// Verifies an envelope against the anchor and, if it is newer than the one held, stores it
    /// atomically and serves it. The same envelope again is `Same`; an older serial or a second
    /// envelope with the held serial is refused.
    pub fn offer(&self, envelope: &[u8]) -> Result<Succession, OfferError> {
        let result = self.offer_inner(envelope);
        if let Err(e) = &result {
            self.shared.refusals.fetch_add(1, Ordering::SeqCst);
            *self
                .shared
                .last_refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
        result
    }

    fn offer_inner(&self, envelope: &[u8]) -> Result<Succession, OfferError> {
        let next = signed::verify(envelope, &self.shared.anchor)?;
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let succession = match current.as_ref() {
            Some(held) => held.check_successor(&next)?,
            None => Succession::Newer,
        };
        if succession == Succession::Newer {
            certs::write_file_atomic(&self.shared.stored, envelope)?;
            tracing::info!(serial = next.serial(), "replica took a new configuration");
            if let Err(e) = self
                .shared
                .roots
                .replace(&next.conf().trusted_cas(&self.shared.anchor))
            {
                tracing::error!(error = %e, "the configuration's CA certificates are unusable");
            }
            *current = Some(next);
        }
        Ok(succession)
    }

    /// Fetches from each upstream in order until one gives a configuration that is accepted
    /// (newer or the same); refusals are counted and the next upstream is tried.
    pub async fn poll_once(&self) -> Result<Succession, OfferError> {
        let mut last_error = None;
        for base in &self.shared.upstreams {
            let url = format!("{base}/v1/global-configuration");
            let response = match self.shared.client.get(&url, None).await {
                Ok(r) if r.status == StatusCode::OK => r,
                Ok(r) => {
                    last_error = Some(OfferError::Upstream {
                        url,
                        message: format!("status {}", r.status),
                    });
                    continue;
                }
                Err(e) => {
                    last_error = Some(OfferError::Upstream {
                        url,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let me = self.clone();
            let offered = tokio::task::spawn_blocking(move || me.offer(&response.body)).await;
            match offered {
                Ok(Ok(succession)) => return Ok(succession),
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %base, error = %e, "refused a configuration");
                    last_error = Some(e);
                }
                Err(e) => {
                    last_error = Some(OfferError::Upstream {
                        url,
                        message: format!("task failed: {e}"),
                    });
                }
            }
        }
        Err(last_error.unwrap_or(OfferError::Upstream {
            url: String::new(),
            message: "no upstream configured".into(),
        }))
    }
}

async fn configuration(
    State(shared): State<Arc<ReplicaShared>>,
    request: axum::http::HeaderMap,
) -> Response {
    let current = ReplicaHandle { shared }.current();
    match current {
        Some(conf) => configuration_response(
            conf.serial(),
            Bytes::copy_from_slice(conf.envelope()),
            &request,
        ),
        None => RegistryError::NotFound("this replica holds no configuration yet".into())
            .into_response(),
    }
}

/// The anchor, with the CAs the held configuration lists (as the primary serves it).
async fn anchor(State(shared): State<Arc<ReplicaShared>>) -> Response {
    let anchor = Anchor::new(
        shared.anchor.instance().clone(),
        shared.anchor.registry_urls().to_vec(),
        trusted_pem(&shared),
        shared.anchor.signing_keys().to_vec(),
    )
    .and_then(|a| a.to_toml());
    match anchor {
        Ok(toml) => anchor_response(toml),
        Err(_) => anchor_response(shared.anchor_toml.clone()),
    }
}

async fn ca_pem(State(shared): State<Arc<ReplicaShared>>) -> Response {
    ca_pem_response(trusted_pem(&shared))
}

fn trusted_pem(shared: &ReplicaShared) -> String {
    shared
        .roots
        .ders()
        .iter()
        .map(|d| certs::cert_to_pem(d))
        .collect()
}

async fn read_only() -> RegistryError {
    RegistryError::ReadOnlyReplica
}

/// 200 while the replica holds an unexpired configuration, 503 otherwise.
async fn health(State(shared): State<Arc<ReplicaShared>>) -> Response {
    let now = shared.clock.unix_now();
    let current = ReplicaHandle {
        shared: Arc::clone(&shared),
    }
    .current();
    use runtime::health::{Health, detail};
    match current {
        Some(conf) if !conf.conf().is_expired(now) => {
            Health::Ok.response(detail("serial", conf.serial()))
        }
        _ => {
            Health::Unavailable("no current configuration".into()).response(serde_json::Map::new())
        }
    }
}
