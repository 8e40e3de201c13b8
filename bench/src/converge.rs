//! `bench converge`: how long a newly published global configuration takes to reach every
//! security server of an instance when the registry stops right after publishing (DESIGN §4 (b),
//! issue 22).
//!
//! One process holds a whole simulated instance on loopback: a registry serving the signed
//! configuration over HTTPS, and N security servers, each with its own CA-issued TLS identity,
//! stored configuration, configuration client ([`ConfClient`]: polls, verifies, stores, asks
//! peers, tells peers of a new one) and peer listener serving the [`ConfigurationRelay`] over pinned
//! mutual TLS. These are the code paths a security server runs for its configuration; what takes
//! no part in it (the proxies, the message log) is left out, so that hundreds fit in one process.
//!
//! The servers start at random moments within one poll interval, as servers started over
//! months would poll out of step, and then run for one interval. A configuration with one more
//! member is then published; the registry answers until the first server holds it and is
//! stopped at once. Every server's time from publication to holding it is the result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use globalconf::testing::ConfBuilder;
use globalconf::{Anchor, InstanceId, SecurityServerId};
use proto::v1 as pb;
use security_server::confclient::ConfClient;
use security_server::federation::{Federation, Settings};
use security_server::identity::Paths;
use security_server::peer::PeerPool;
use security_server::proxy::peer_service::{ConfigurationRelay, peer_of};
use tokio::sync::RwLock;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct ConvergeOptions {
    /// Security servers in the instance.
    pub servers: usize,
    /// Members the configuration lists (at least one per server), for a realistic size.
    pub members: usize,
    /// Every server's poll interval.
    pub poll: Duration,
    /// How long to wait for the last server before giving up.
    pub timeout: Duration,
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct ConvergeReport {
    pub servers: usize,
    /// Bytes of the signed configuration published.
    pub envelope_bytes: usize,
    /// Servers the registry gave the new configuration before it stopped.
    pub from_registry: u64,
    /// When the registry stopped, after publication.
    pub registry_stopped_after: Duration,
    /// Each server's time from publication to holding the new configuration, sorted; servers
    /// that did not get it within the timeout are missing.
    pub times: Vec<Duration>,
    /// Peer calls from publication to the end: configurations asked for (answered with the
    /// configuration, or empty because the caller held the newest), and offered.
    pub fetched_full: u64,
    pub fetched_empty: u64,
    pub offered: u64,
}

impl ConvergeReport {
    /// The time by which `q` (0..=1) of all servers held the new configuration, if they did.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let needed = ((self.servers as f64 * q).ceil() as usize).clamp(1, self.servers);
        self.times.get(needed - 1).copied()
    }

    pub fn converged(&self) -> bool {
        self.times.len() == self.servers
    }
}

/// The registry's side: the envelope it serves, whether it serves at all, and how many new
/// configurations it handed out.
#[derive(Debug)]
struct Registry {
    current: RwLock<(u64, Bytes)>,
    served_full: AtomicU64,
}

/// Counts the relay's calls, so that the report can say what converging cost.
#[derive(Debug, Default)]
struct Calls {
    fetched_full: AtomicU64,
    fetched_empty: AtomicU64,
    offered: AtomicU64,
}

/// The peer service of a simulated server: the real configuration relay, no exchanges.
#[derive(Debug, Clone)]
struct RelayOnly {
    relay: ConfigurationRelay,
    calls: Arc<Calls>,
}

#[tonic::async_trait]
impl pb::peer_server::Peer for RelayOnly {
    type ExchangeStream = tonic::codegen::BoxStream<pb::ExchangeResponse>;

    async fn exchange(
        &self,
        _: tonic::Request<tonic::Streaming<pb::ExchangeRequest>>,
    ) -> Result<tonic::Response<Self::ExchangeStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a simulated server exchanges nothing",
        ))
    }

    async fn get_configuration(
        &self,
        request: tonic::Request<pb::GetConfigurationRequest>,
    ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
        let peer = peer_of(&request);
        let answer = self.relay.get(peer, &request.into_inner())?;
        let counter = if answer == pb::SignedConfiguration::default() {
            &self.calls.fetched_empty
        } else {
            &self.calls.fetched_full
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(answer))
    }

    async fn offer_configuration(
        &self,
        request: tonic::Request<pb::OfferConfigurationRequest>,
    ) -> Result<tonic::Response<pb::OfferConfigurationResponse>, tonic::Status> {
        self.calls.offered.fetch_add(1, Ordering::Relaxed);
        let peer = peer_of(&request);
        self.relay
            .offer(peer, request.into_inner())
            .await
            .map(tonic::Response::new)
    }

    async fn add_checkpoint(
        &self,
        _: tonic::Request<pb::AddCheckpointRequest>,
    ) -> Result<tonic::Response<pb::AddCheckpointResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a simulated server witnesses nothing",
        ))
    }
}

/// One simulated server before it starts.
struct Server {
    id: SecurityServerId,
    identity: certs::LiveIdentity,
    listener: tokio::net::TcpListener,
}

/// Runs one simulation.
pub async fn run(options: &ConvergeOptions) -> anyhow::Result<ConvergeReport> {
    if options.servers < 2 {
        bail!("at least two servers");
    }
    let clock: Arc<dyn certs::Clock> = Arc::new(certs::SystemClock);
    let dir = tempfile::tempdir()?;
    let ca = certs::CertificateAuthority::generate("JP", Duration::from_secs(86_400), &*clock)?;
    let issue = |name: &str| -> anyhow::Result<certs::TlsIdentity> {
        let key = certs::SigningKey::generate()?;
        let cert = ca.issue(
            name,
            &key.public_key().to_spki_der(),
            &["127.0.0.1".into()],
            Duration::from_secs(86_400),
            &*clock,
        )?;
        Ok(certs::TlsIdentity::new(vec![cert], key))
    };

    // The registry: its listener first, since the anchor names its address.
    let registry_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("https://{}", registry_listener.local_addr()?);
    let registry_key = certs::SigningKey::generate()?;
    let instance: InstanceId = "JP".parse()?;
    let anchor = Anchor::new(
        instance,
        vec![registry_url.clone()],
        ca.certificate_pem(),
        vec![registry_key.public_key()],
    )?;

    let mut servers = Vec::with_capacity(options.servers);
    for i in 0..options.servers {
        let id: SecurityServerId = format!("JP/MUN/{:06}/ss1", 100_000 + i).parse()?;
        let identity = certs::LiveIdentity::new(issue(&id.to_string())?, Arc::clone(&clock))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        servers.push(Server {
            id,
            identity,
            listener,
        });
    }
    let now = clock.unix_now();
    let mut builder = ConfBuilder::new("JP", now);
    for s in &servers {
        let subsystem = format!("{}/records", s.id.owner());
        builder = builder.subsystem(&subsystem).server_at(
            &s.id.to_string(),
            &[&s.listener.local_addr()?.to_string()],
            s.identity.leaf_sha256(),
            &[&subsystem],
        );
    }
    for i in options.servers..options.members {
        builder = builder.subsystem(&format!("JP/MUN/{:06}/records", 100_000 + i));
    }
    let mut conf = builder.proto();
    conf.registry_urls = vec![registry_url];
    let first = globalconf::signed::sign(&conf, &registry_key);

    let registry = Arc::new(Registry {
        current: RwLock::new((conf.serial, Bytes::from(first.clone()))),
        served_full: AtomicU64::new(0),
    });
    let registry_tls = Arc::new(certs::server_config(
        &issue("registry")?,
        &[b"h2", b"http/1.1"],
    )?);
    let (stop_registry, registry_stopped) = runtime::Shutdown::new();
    let registry_task = tokio::spawn(runtime::serve_http(
        registry_listener,
        Some(registry_tls),
        registry_router(Arc::clone(&registry)),
        registry_stopped.wait(),
    ));

    // The servers, each from its stored copy of the first configuration.
    let (stop_servers, servers_stopped) = runtime::Shutdown::new();
    let calls = Arc::new(Calls::default());
    let mut clients = Vec::with_capacity(servers.len());
    let fetch_timeout = Duration::from_secs(10);
    for (i, s) in servers.into_iter().enumerate() {
        let data_dir = dir.path().join(format!("ss{i}"));
        std::fs::create_dir_all(&data_dir)?;
        let paths = Paths::new(&data_dir);
        certs::write_file_atomic(&paths.stored_globalconf(), &first)?;
        let peers = Arc::new(PeerPool::new(
            s.identity.clone(),
            Duration::from_secs(2),
            64 << 20,
        ));
        let client = Arc::new(ConfClient::open(
            anchor.clone(),
            paths.stored_globalconf(),
            s.id.clone(),
            Arc::clone(&peers),
            fetch_timeout,
            Some(options.poll),
            Arc::clone(&clock),
        )?);
        let federation = Arc::new(Federation::new(
            Arc::clone(&client),
            Settings {
                allowed: Vec::new(),
                paths,
                own_id: s.id.clone(),
                fetch_timeout,
                poll_override: Some(options.poll),
            },
            peers,
            Arc::clone(&clock),
        ));
        let tls = Arc::new(s.identity.pinned_server_config(
            Arc::clone(&federation) as Arc<dyn certs::PinPolicy>,
            &[security_server::peer::pool::ALPN_H2],
        )?);
        let service = RelayOnly {
            relay: ConfigurationRelay::new(federation),
            calls: Arc::clone(&calls),
        };
        let router = tonic::service::Routes::new(pb::peer_server::PeerServer::new(service))
            .into_axum_router();
        tokio::spawn(runtime::serve_http(
            s.listener,
            Some(tls),
            router,
            servers_stopped.clone().wait(),
        ));
        // Out of step: each starts polling at its own moment within the first interval.
        let start_after = options.poll.mul_f64(random_fraction());
        let (poller, stopped) = (Arc::clone(&client), servers_stopped.clone());
        tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            poller.run(stopped).await;
        });
        tokio::spawn(Arc::clone(&client).spread(servers_stopped.clone()));
        clients.push(client);
    }
    // Every server has polled once and is polling in its own rhythm.
    tokio::time::sleep(options.poll).await;

    // Publish the next configuration; stop the registry as soon as one server holds it.
    conf.serial += 1;
    conf.generated_at = clock.unix_now();
    conf.expires_at = conf.generated_at + 7 * 86_400;
    conf.members.push(pb::Member {
        id: "JP/GOV/newcomer".into(),
        name: "The member this publication adds".into(),
        ..Default::default()
    });
    let next = globalconf::signed::sign(&conf, &registry_key);
    let envelope_bytes = next.len();
    let before = snapshot(&calls);
    let published = Instant::now();
    *registry.current.write().await = (conf.serial, Bytes::from(next));

    let mut waits = tokio::task::JoinSet::new();
    for client in &clients {
        let mut updates = client.subscribe();
        let serial = conf.serial;
        waits.spawn(async move {
            updates
                .wait_for(|c| c.as_ref().is_some_and(|c| c.serial() >= serial))
                .await
                .ok()?;
            Some(published.elapsed())
        });
    }
    let mut times = Vec::with_capacity(clients.len());
    let mut registry_stopped_after = None;
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            done = waits.join_next() => match done {
                None => break,
                Some(Ok(Some(t))) => {
                    if registry_stopped_after.is_none() {
                        stop_registry.trigger();
                        registry_stopped_after = Some(published.elapsed());
                    }
                    times.push(t);
                }
                Some(_) => {}
            },
        }
    }
    waits.abort_all();
    stop_registry.trigger();
    stop_servers.trigger();
    registry_task
        .await
        .context("the registry task")?
        .context("the registry")?;
    times.sort_unstable();
    let after = snapshot(&calls);
    Ok(ConvergeReport {
        servers: clients.len(),
        envelope_bytes,
        from_registry: registry.served_full.load(Ordering::Relaxed),
        registry_stopped_after: registry_stopped_after.unwrap_or(options.timeout),
        times,
        fetched_full: after.0 - before.0,
        fetched_empty: after.1 - before.1,
        offered: after.2 - before.2,
    })
}

/// The report as the program prints it.
pub fn describe(r: &ConvergeReport) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "configuration: {} bytes signed; the registry handed it to {} server(s) and stopped {} after publishing\n",
        r.envelope_bytes,
        r.from_registry,
        ms(Some(r.registry_stopped_after)),
    ));
    out.push_str(&format!(
        "holding it: {} of {} servers\n",
        r.times.len(),
        r.servers
    ));
    out.push_str("time from publication until a share of the servers held it:\n");
    for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
        out.push_str(&format!("  {:>5.1} %  {}\n", q * 100.0, ms(r.quantile(q))));
    }
    out.push_str(&format!(
        "peer calls meanwhile: {} configurations offered, {} asked for and sent, {} asked for with nothing newer\n",
        r.offered, r.fetched_full, r.fetched_empty
    ));
    out
}

fn snapshot(calls: &Calls) -> (u64, u64, u64) {
    (
        calls.fetched_full.load(Ordering::Relaxed),
        calls.fetched_empty.load(Ordering::Relaxed),
        calls.offered.load(Ordering::Relaxed),
    )
}

/// `GET /v1/global-configuration` as the registry answers it: `304` to a server that sends the
/// serial it holds as `If-None-Match`, else the envelope.
fn registry_router(registry: Arc<Registry>) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/v1/global-configuration",
        axum::routing::get(move |headers: HeaderMap| {
            let registry = Arc::clone(&registry);
            async move {
                let (serial, envelope) = registry.current.read().await.clone();
                let etag = format!("\"{serial}\"");
                if headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|v| v.as_bytes() == etag.as_bytes())
                {
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                registry.served_full.fetch_add(1, Ordering::Relaxed);
                ([(header::ETAG, etag)], envelope).into_response()
            }
        }),
    )
}

/// A number in [0, 1) from the system's random source (0 should it fail).
fn random_fraction() -> f64 {
    getrandom::u32().map_or(0.0, |r| f64::from(r) / (f64::from(u32::MAX) + 1.0))
}
