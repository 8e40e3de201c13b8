//! Starting a whole federation in one process on loopback: the central registry, then each
//! security server through the real enrolment path (init, one-time token, HTTPS enrolment), then
//! the servers themselves, the demo backend and the services with their grants; and
//! `federation.json`, the description scripts and tests read.
//!
//! # Why one long file
//! It is the sandbox's whole start-up in the order it happens, as an operator would do it by
//! hand (registry, enrolment, servers, services, grants); reading it top to bottom is the point.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use central_registry::{Registry, RegistryAdmin, RegistryConfig};
use certs::Clock;
use exchange::access::Grant;
use globalconf::{Anchor, MemberId, SecurityServerId, SubsystemId};
use security_server::identity::{self, EnrollmentStatus};
use security_server::serverconf::{ServerConfError, ServiceEntry};
use security_server::{Config as ServerConfig, Listeners, RunningServer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shared::SystemIdentity;
use crate::spec::{Backend, FederationSpec, ServiceSpec};

/// Why the federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("registry: {0}")]
    Registry(#[from] central_registry::RegistryError),
    #[error("security server: {0}")]
    Identity(#[from] identity::IdentityError),
    #[error("security server: {0}")]
    Start(#[from] security_server::server::StartError),
    #[error("security server configuration: {0}")]
    Config(#[from] security_server::config::ConfigError),
    #[error("keys: {0}")]
    Certs(#[from] certs::Error),
    #[error("services: {0}")]
    ServerConf(#[from] ServerConfError),
}

fn setup(msg: impl Into<String>) -> SandboxError {
    SandboxError::Setup(msg.into())
}

/// Which loopback ports to use.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// Port 0 everywhere (tests).
    Ephemeral,
    /// Fixed ports from a base (the README's `sandbox`): registry base+1 (admin base+2); server i:
    /// client proxy base+80+i, admin base+90+i, server proxy base+50+i; demo backend base+100.
    Fixed(u16),
}

impl Ports {
    fn addr(self, offset: u16) -> SocketAddr {
        let port = match self {
            Ports::Ephemeral => 0,
            Ports::Fixed(base) => base.saturating_add(offset),
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Listens on the port at `offset`. A fixed port already taken fails with what to do: the
    /// default ports lie in the range Linux hands out for outgoing connections (32768–60999),
    /// so even a passing connection of another program can hold one for a while.
    async fn bind(self, offset: u16) -> Result<TcpListener, SandboxError> {
        let addr = self.addr(offset);
        TcpListener::bind(addr).await.map_err(|e| {
            let hint = match (self, e.kind()) {
                (Ports::Fixed(_), std::io::ErrorKind::AddrInUse) => {
                    " (another program, or another sandbox, holds it: stop it and try again, or \
                     choose other ports with --base-port N, for instance below 32768, or \
                     --base-port 0 for free ones)"
                }
                _ => "",
            };
            setup(format!("cannot listen on {addr}: {e}{hint}"))
        })
    }
}

/// `federation.json` (DESIGN §10).
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    pub instance: String,
    pub anchor: PathBuf,
    pub registries: Vec<String>,
    pub registry_admin: String,
    pub registry_config: PathBuf,
    pub security_servers: Vec<ServerDescription>,
    pub services: Vec<ServiceDescription>,
    /// The demo provider information system ([`crate::demo`]), plain HTTP.
    pub demo_backend: String,
    /// Where the admin bearer tokens are (0600).
    pub credentials: PathBuf,
    /// The resident portal (DESIGN §7), with its clearly marked development login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// The instances this one is federated with (`sandbox --federated`), each described the
    /// same way, with the fingerprint of its anchor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub federated: Vec<FederatedDescription>,
}

/// A federated instance in `federation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FederatedDescription {
    pub anchor_fingerprint: String,
    #[serde(flatten)]
    pub description: Description,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerDescription {
    pub id: SecurityServerId,
    pub client_proxy: String,
    pub admin: String,
    pub server_proxy: String,
    pub hosts: Vec<SubsystemId>,
    pub config: PathBuf,
    /// On a server that hosts several members' subsystems (共同利用方式): each hosted system's
    /// client certificate, registered for its subsystem alone ([`crate::shared`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<SystemIdentity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceDescription {
    pub id: String,
    pub allowed: Vec<String>,
    /// The provider information system's base URL the server calls.
    pub backend: String,
}

/// One security server of the federation.
#[derive(Debug)]
pub struct SandboxServer {
    pub id: SecurityServerId,
    pub config_path: PathBuf,
    pub config: ServerConfig,
    pub admin_token: String,
    running: Option<RunningServer>,
}

impl SandboxServer {
    /// The running server (None after [`Federation::stop_server`]).
    pub fn running(&self) -> Option<&RunningServer> {
        self.running.as_ref()
    }

    pub fn client_proxy_url(&self) -> Option<String> {
        let scheme = if self.config.client_proxy.tls {
            "https"
        } else {
            "http"
        };
        self.running
            .as_ref()
            .map(|r| format!("{scheme}://{}", r.client_proxy_addr))
    }

    /// The client proxy's HTTPS listener (`client_proxy.tls_listen`), when it has one.
    pub fn client_proxy_tls_url(&self) -> Option<String> {
        let addr = self.running.as_ref()?.client_proxy_tls_addr?;
        Some(format!("https://{addr}"))
    }
}

/// A started federation. Dropping it without [`Federation::stop`] aborts its tasks.
#[derive(Debug)]
pub struct Federation {
    dir: PathBuf,
    spec: FederationSpec,
    clock: Arc<dyn Clock>,
    registry: RegistryAdmin,
    registry_stop: Option<runtime::ShutdownTrigger>,
    registry_task: Option<JoinHandle<Result<(), central_registry::RegistryError>>>,
    registry_url: String,
    servers: Vec<SandboxServer>,
    demo_url: String,
    demo_stop: Option<runtime::ShutdownTrigger>,
    demo_task: Option<JoinHandle<std::io::Result<()>>>,
    portal_stop: Option<runtime::ShutdownTrigger>,
    portal_task: Option<JoinHandle<std::io::Result<()>>>,
    description: Description,
}

const MARKER: &str = ".xroad-sandbox";

/// Prepares `dir`: creates it, or empties it if an earlier sandbox made it. Refuses to touch a
/// non-empty directory the sandbox did not make.
pub fn prepare_dir(dir: &Path) -> Result<(), SandboxError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(setup(format!(
                "{} exists and was not made by the sandbox; choose another --dir",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        b"made by the xroad-rs sandbox; deleted on its next start\n",
    )?;
    Ok(())
}

/// What [`Federation::restart_server_with`] changes about a server.
#[derive(Debug, Default)]
pub struct Restart {
    /// The clock it reads from then on; the federation's when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Where its server proxy listens instead of its address in the configuration, so that a
    /// test can put something else there (a TCP proxy that fails as a network would).
    pub server_proxy: Option<tokio::net::TcpListener>,
}

impl Federation {
    /// Starts the federation in `dir` (see [`prepare_dir`]).
    pub async fn start(
        spec: FederationSpec,
        dir: &Path,
        ports: Ports,
        clock: Arc<dyn Clock>,
    ) -> Result<Federation, SandboxError> {
        prepare_dir(dir)?;
        let dir = std::path::absolute(dir)?;

        // The registry: bind first, so the anchor can name the real port.
        let public = ports.bind(1).await?;
        let demo_listener = ports.bind(100).await?;
        let demo_url = format!("http://{}", demo_listener.local_addr()?);
        let admin = ports.bind(2).await?;
        let registry_url = format!("https://{}", public.local_addr()?);
        let registry_dir = dir.join("registry");
        std::fs::create_dir_all(&registry_dir)?;
        let registry_config = RegistryConfig {
            instance: spec.instance.clone(),
            data_dir: registry_dir.join("data"),
            listen: public.local_addr()?,
            admin_listen: admin.local_addr()?,
            public_urls: vec![registry_url.clone()],
            configuration_validity_secs: spec.configuration_validity_secs,
            key_activation_delay_secs: spec.key_activation_delay_secs,
            ..RegistryConfig::default()
        };
        let registry_config_path = registry_dir.join("registry.toml");
        certs::write_file_atomic(
            &registry_config_path,
            registry_config
                .to_toml()
                .map_err(|e| setup(e.to_string()))?
                .as_bytes(),
        )?;
        let init = central_registry::init_data_dir(&registry_config, clock.as_ref())?;
        let anchor_path = dir.join("anchor.toml");
        std::fs::copy(&init.anchor_path, &anchor_path)?;
        let anchor = Anchor::load(&anchor_path).map_err(|e| setup(e.to_string()))?;
        let registry = Registry::open(registry_config.clone(), Arc::clone(&clock))?;
        let admin_handle = registry.admin();
        let (registry_stop, registry_shutdown) = runtime::Shutdown::new();
        let registry_task = tokio::spawn(registry.run(public, admin, registry_shutdown.wait()));

        for m in &spec.members {
            admin_handle
                .add_member(m.id.clone(), m.name.clone())
                .await?;
            if !m.names.is_empty() || m.privacy_contact.is_some() {
                let profile = central_registry::ops::Profile {
                    names: m.names.iter().cloned().collect(),
                    privacy_contact: m.privacy_contact.clone(),
                };
                admin_handle
                    .set_member_profile(m.id.clone(), profile)
                    .await?;
            }
            for (code, name) in &m.subsystems {
                let sub = m.id.subsystem(code).map_err(|e| setup(e.to_string()))?;
                let names: std::collections::BTreeMap<String, String> = m
                    .subsystem_names
                    .iter()
                    .filter(|(c, _, _)| c == code)
                    .map(|(_, lang, name)| (lang.clone(), name.clone()))
                    .collect();
                admin_handle
                    .add_subsystem(sub.clone(), name.clone())
                    .await?;
                if !names.is_empty() {
                    let profile = central_registry::ops::SubsystemProfile { names };
                    admin_handle.set_subsystem_profile(sub, profile).await?;
                }
            }
        }

        // Each server: init, enrol with a one-time token over HTTPS, register what it hosts.
        let mut prepared = Vec::new();
        for (i, s) in spec.servers.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| setup("too many servers"))?;
            let listeners = Listeners {
                client_proxy: ports.bind(80 + i).await?,
                client_proxy_tls: None,
                server_proxy: ports.bind(50 + i).await?,
                admin: ports.bind(90 + i).await?,
            };
            let server_dir = dir.join(s.id.to_string().replace('/', "_"));
            std::fs::create_dir_all(&server_dir)?;
            let config_path = server_dir.join("security-server.toml");
            let mut config = ServerConfig {
                server_id: Some(s.id.clone()),
                ..ServerConfig::default()
            };
            config.client_proxy.listen = listeners.client_proxy.local_addr()?;
            config.server_proxy.listen = listeners.server_proxy.local_addr()?;
            config.admin.listen = listeners.admin.local_addr()?;
            config.globalconf.poll_interval_secs = spec.poll_interval_secs;
            // Its systems connect over HTTPS with certificates of their own (crate::shared).
            config.client_proxy.tls = s.system_certificates;
            config.messagelog.enabled = spec.messagelog_enabled;
            config.federation.instances = spec.federation.clone();
            config.tls = spec.tls.clone();
            config.keys = spec.keys.clone();
            config.hsm = spec
                .hsm
                .iter()
                .find(|(id, _)| id == &s.id)
                .map(|(_, hsm)| hsm.clone());
            certs::write_file_atomic(&config_path, config.to_toml()?.as_bytes())?;
            let config = ServerConfig::load(&config_path)?;
            anchor
                .save(&config.anchor)
                .map_err(|e| setup(e.to_string()))?;
            identity::init(&config, clock.as_ref())?;
            let token = admin_handle.issue_token(s.id.clone()).await?;
            let status = identity::submit_enrollment(&config, &anchor, Some(&token.token)).await?;
            if status != EnrollmentStatus::Approved {
                return Err(setup(format!(
                    "enrolment of {} was not approved: {status:?}",
                    s.id
                )));
            }
            if identity::fetch_certificate(&config, &anchor).await? != EnrollmentStatus::Approved {
                return Err(setup(format!("no certificate for {}", s.id)));
            }
            for h in &s.hosts {
                admin_handle
                    .add_hosted_subsystem(s.id.clone(), h.clone())
                    .await?;
            }
            // A member hosted on another's server signs with a key of its own there, which the
            // registry lists for it (as its owner's, made by `init`).
            let mut guests: Vec<&MemberId> = s
                .hosts
                .iter()
                .map(SubsystemId::member)
                .filter(|m| *m != s.id.owner())
                .collect();
            guests.sort();
            guests.dedup();
            for member in guests {
                let key = certs::SigningKey::generate().map_err(|e| setup(e.to_string()))?;
                let paths = identity::Paths::new(&config.data_dir);
                {
                    use std::os::unix::fs::DirBuilderExt as _;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(paths.signing_dir(member))?;
                }
                certs::save_secret_key(&paths.signing_key(member, &key.key_id()), &key)
                    .map_err(|e| setup(e.to_string()))?;
                admin_handle
                    .add_key(member.clone(), key.public_key(), None)
                    .await?;
            }
            prepared.push((s.clone(), config_path, config, listeners));
        }

        let mut servers = Vec::new();
        for (s, config_path, config, listeners) in prepared {
            let running = security_server::start(&config, listeners, Arc::clone(&clock)).await?;
            let admin_token = identity::Identity::load(&config)?.admin_token;
            servers.push(SandboxServer {
                id: s.id.clone(),
                config_path,
                config,
                admin_token,
                running: Some(running),
            });
        }

        let serial = admin_handle.publication().serial;
        for s in &servers {
            let conf = s.running.as_ref().map(|r| Arc::clone(&r.conf));
            let received = runtime::testing::within(Duration::from_secs(20), || {
                let conf = conf.clone();
                async move {
                    conf.and_then(|c| c.current())
                        .is_some_and(|c| c.serial() >= serial)
                        .then_some(())
                }
            })
            .await;
            if received.is_none() {
                return Err(setup(format!(
                    "{} did not receive configuration serial {serial}",
                    s.id
                )));
            }
        }

        let credentials = dir.join("credentials.json");
        let tokens: serde_json::Map<String, serde_json::Value> = servers
            .iter()
            .map(|s| {
                (
                    s.id.to_string(),
                    serde_json::Value::String(s.admin_token.clone()),
                )
            })
            .chain(std::iter::once((
                "central-registry".to_string(),
                serde_json::Value::String(
                    String::from_utf8_lossy(&certs::read_secret_file(&init.admin_token_path)?)
                        .trim()
                        .to_owned(),
                ),
            )))
            .collect();
        let tokens = serde_json::to_vec_pretty(&tokens).map_err(|e| setup(e.to_string()))?;
        certs::write_secret_file(&credentials, &tokens)?;

        let description = Description {
            instance: spec.instance.clone(),
            anchor: anchor_path,
            registries: vec![registry_url.clone()],
            registry_admin: format!("http://{}", registry_config.admin_listen),
            registry_config: registry_config_path,
            security_servers: servers
                .iter()
                .map(|s| {
                    let r = s.running.as_ref();
                    ServerDescription {
                        id: s.id.clone(),
                        client_proxy: s.client_proxy_url().unwrap_or_default(),
                        admin: r
                            .map(|r| format!("http://{}", r.admin_addr))
                            .unwrap_or_default(),
                        server_proxy: r
                            .map(|r| r.server_proxy_addr.to_string())
                            .unwrap_or_default(),
                        hosts: spec
                            .servers
                            .iter()
                            .find(|x| x.id == s.id)
                            .map(|x| x.hosts.clone())
                            .unwrap_or_default(),
                        config: s.config_path.clone(),
                        systems: Vec::new(),
                    }
                })
                .collect(),
            services: Vec::new(),
            demo_backend: demo_url.clone(),
            credentials,
            portal: None,
            federated: Vec::new(),
        };

        let (demo_stop, demo_shutdown) = runtime::Shutdown::new();
        let demo_task = tokio::spawn(crate::demo::serve(demo_listener, demo_shutdown.wait()));

        let services = spec.services.clone();
        let mut federation = Federation {
            dir,
            spec,
            clock,
            registry: admin_handle,
            registry_stop: Some(registry_stop),
            registry_task: Some(registry_task),
            registry_url,
            servers,
            demo_url,
            demo_stop: Some(demo_stop),
            demo_task: Some(demo_task),
            portal_stop: None,
            portal_task: None,
            description,
        };
        for service in services {
            federation.register_service(service)?;
        }
        federation.grant_find_usage()?;
        federation.set_up_shared_servers().await?;
        federation.make_samples().await?;
        federation.start_portal(ports, 200).await?;
        federation.write_description()?;
        Ok(federation)
    }

    /// Starts the resident portal as a client of the server hosting the spec's portal
    /// subsystem, with the development login.
    async fn start_portal(&mut self, ports: Ports, offset: u16) -> Result<(), SandboxError> {
        let Some(portal) = self.spec.portal.clone() else {
            return Ok(());
        };
        let proxy = self
            .client_proxy_of(&portal)
            .ok_or_else(|| setup(format!("no running server hosts the portal {portal}")))?;
        let listener = ports.bind(offset).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let config = resident_portal::Config {
            listen: listener.local_addr()?,
            security_server: proxy,
            client: Some(portal),
            login: resident_portal::LoginConfig {
                kind: Some(resident_portal::LoginKind::Development),
                danger_development_login: true,
                ..resident_portal::LoginConfig::default()
            },
            // Shown after the page's own "where to get the anchor file:": the path alone, so the
            // Japanese page has no English in it.
            verify_hint: Some(self.description.anchor.display().to_string()),
            // Residents see the federated instances' members' accesses too.
            federated_instances: self.spec.federation.clone(),
            ..resident_portal::Config::default()
        };
        // Checked here, so a bad configuration fails the start instead of the task.
        config
            .validate()
            .map_err(|e| setup(format!("portal: {e}")))?;
        let (stop, shutdown) = runtime::Shutdown::new();
        self.portal_task = Some(tokio::spawn(resident_portal::serve(
            listener,
            config,
            shutdown.wait(),
        )));
        self.portal_stop = Some(stop);
        self.description.portal = Some(url);
        Ok(())
    }

    /// The client proxy URL of the first running server hosting `subsystem`.
    pub fn client_proxy_of(&self, subsystem: &SubsystemId) -> Option<String> {
        self.spec
            .servers
            .iter()
            .filter(|s| s.hosts.contains(subsystem))
            .filter_map(|s| self.servers.iter().find(|x| x.id == s.id))
            .find_map(SandboxServer::client_proxy_url)
    }

    /// The resident portal's URL, when the spec has one.
    pub fn portal_url(&self) -> Option<&str> {
        self.description.portal.as_deref()
    }

    /// Grants the portal's subsystem `findUsage` on every subsystem every server hosts.
    fn grant_find_usage(&self) -> Result<(), SandboxError> {
        match &self.spec.portal {
            Some(portal) => self.grant_find_usage_to(portal),
            None => Ok(()),
        }
    }

    /// Grants `findUsage` on every hosted subsystem to `portal` (this instance's resident
    /// portal, or a federated instance's).
    pub fn grant_find_usage_to(&self, portal: &SubsystemId) -> Result<(), SandboxError> {
        for s in &self.spec.servers {
            let Some(running) = self
                .servers
                .iter()
                .find(|x| x.id == s.id)
                .and_then(SandboxServer::running)
            else {
                continue;
            };
            for hosted in &s.hosts {
                let service = hosted
                    .service(exchange::metaservice::FIND_USAGE, None)
                    .map_err(|e| setup(e.to_string()))?;
                running.serverconf.grant(Grant {
                    service,
                    subject: exchange::access::Subject::Subsystem(portal.clone()),
                    method: None,
                    path: None,
                })?;
            }
        }
        Ok(())
    }

    /// Gives the systems of each server whose spec asks for it their certificates, and checks
    /// that each is served as itself and refused as another's subsystem ([`crate::shared`]).
    async fn set_up_shared_servers(&mut self) -> Result<(), SandboxError> {
        let dir = self.dir.join("systems");
        for spec in &self.spec.servers {
            if !spec.system_certificates {
                continue;
            }
            let Some(server) = self.servers.iter().find(|s| s.id == spec.id) else {
                continue;
            };
            let (Some(running), Some(proxy)) = (server.running(), server.client_proxy_url()) else {
                continue;
            };
            let shared = |e: String| setup(format!("shared server {}: {e}", spec.id));
            let systems = crate::shared::issue_system_certificates(
                &running.serverconf,
                &spec.hosts,
                &dir,
                self.clock.as_ref(),
            )
            .map_err(shared)?;
            let server_cert = identity::Identity::load(&server.config)?.tls.leaf_sha256();
            // A metaservice every client may call: the check is of the connection alone.
            let probe = format!("{proxy}/r1/{}/listMethods", spec.hosts[0]);
            crate::shared::check_systems(&probe, server_cert, &systems)
                .await
                .map_err(shared)?;
            if let Some(d) = self
                .description
                .security_servers
                .iter_mut()
                .find(|d| d.id == spec.id)
            {
                d.systems = systems;
            }
        }
        Ok(())
    }

    /// Makes the spec's sample exchanges through the client proxies; each must succeed.
    async fn make_samples(&self) -> Result<(), SandboxError> {
        let http = runtime::HttpClient::plain().with_timeout(Duration::from_secs(30));
        for x in &self.spec.samples {
            let proxy = self
                .client_proxy_of(&x.client)
                .ok_or_else(|| setup(format!("no running server hosts {}", x.client)))?;
            let url = format!("{proxy}/r1/{}{}", x.service, x.path);
            let client = x.client.to_string();
            let answer = http
                .request(
                    http::Method::GET,
                    &url,
                    &[
                        ("X-Road-Client", &client),
                        ("X-Road-Data-Subject", &x.subject),
                        ("X-Road-Purpose", &x.purpose),
                    ],
                    bytes::Bytes::new(),
                )
                .await
                .map_err(|e| setup(format!("sample exchange {url}: {e}")))?;
            if !answer.is_success() {
                return Err(setup(format!(
                    "sample exchange {url} as {client}: HTTP {} {}",
                    answer.status,
                    answer.text()
                )));
            }
        }
        Ok(())
    }

    /// Registers a service (with its OpenAPI document) and its grants on every running server
    /// hosting the service's subsystem, and lists it in `federation.json`. Replaces an earlier
    /// entry of the same service; grants are added to those already there. For anything finer
    /// (method or path grants, revoking), use [`SandboxServer::running`]`.serverconf`.
    pub fn add_service(&mut self, service: ServiceSpec) -> Result<(), SandboxError> {
        self.register_service(service)?;
        self.write_description()
    }

    fn register_service(&mut self, service: ServiceSpec) -> Result<(), SandboxError> {
        let base = match &service.backend {
            Backend::Demo => &self.demo_url,
            Backend::Url(url) => url,
        };
        let url = format!("{}{}", base.trim_end_matches('/'), service.path);
        let provider = service.id.subsystem();
        let hosting: Vec<&RunningServer> = self
            .spec
            .servers
            .iter()
            .filter(|s| s.hosts.contains(provider))
            .filter_map(|s| self.servers.iter().find(|x| x.id == s.id))
            .filter_map(SandboxServer::running)
            .collect();
        if hosting.is_empty() {
            return Err(setup(format!(
                "no running security server hosts {provider}, the provider of {}",
                service.id
            )));
        }
        for server in hosting {
            server.serverconf.add_service(ServiceEntry {
                id: service.id.clone(),
                url: url.clone(),
                timeout_secs: 30,
                openapi: service.openapi.clone(),
                names: service.names.clone(),
            })?;
            for subject in &service.allowed {
                server.serverconf.grant(Grant {
                    service: service.id.clone(),
                    subject: subject.clone(),
                    method: None,
                    path: None,
                })?;
            }
        }

        let id = service.id.to_string();
        let allowed = service.allowed.iter().map(ToString::to_string);
        match self.description.services.iter_mut().find(|d| d.id == id) {
            Some(d) => {
                d.backend = url;
                for a in allowed {
                    if !d.allowed.contains(&a) {
                        d.allowed.push(a);
                    }
                }
            }
            None => self.description.services.push(ServiceDescription {
                id,
                allowed: allowed.collect(),
                backend: url,
            }),
        }
        Ok(())
    }

    /// Describes `other` in this instance's `federation.json` as federated with it.
    pub fn describe_federated(&mut self, other: FederatedDescription) -> Result<(), SandboxError> {
        self.description
            .federated
            .retain(|d| d.description.instance != other.description.instance);
        self.description.federated.push(other);
        self.write_description()
    }

    fn write_description(&self) -> Result<(), SandboxError> {
        let json =
            serde_json::to_vec_pretty(&self.description).map_err(|e| setup(e.to_string()))?;
        certs::write_file_atomic(&self.dir.join("federation.json"), &json)?;
        Ok(())
    }

    /// The demo provider information system's base URL (`http://127.0.0.1:PORT`).
    pub fn demo_url(&self) -> &str {
        &self.demo_url
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> &FederationSpec {
        &self.spec
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The registry, driven in-process.
    pub fn registry(&self) -> &RegistryAdmin {
        &self.registry
    }

    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    pub fn servers(&self) -> &[SandboxServer] {
        &self.servers
    }

    pub fn server(&self, id: &str) -> Option<&SandboxServer> {
        self.servers.iter().find(|s| s.id.to_string() == id)
    }

    /// Stops the registry (servers keep running on what they hold).
    pub async fn stop_registry(&mut self) {
        if let Some(t) = self.registry_stop.take() {
            t.trigger();
        }
        if let Some(task) = self.registry_task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "registry stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "registry task failed"),
            }
        }
    }

    /// Stops one security server.
    pub async fn stop_server(&mut self, id: &str) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.id.to_string() == id)
            && let Some(r) = s.running.take()
        {
            r.shutdown().await;
        }
    }

    /// Stops one security server (if it runs) and starts it again on the same addresses and data
    /// directory, as an operator's restart (or a crash and a restart) would.
    pub async fn restart_server(&mut self, id: &str) -> Result<(), SandboxError> {
        self.restart_server_with(id, Restart::default()).await
    }

    /// [`Federation::restart_server`] with the changes `restart` names: for tests of a machine
    /// whose clock is wrong, or of a network between servers that fails.
    pub async fn restart_server_with(
        &mut self,
        id: &str,
        restart: Restart,
    ) -> Result<(), SandboxError> {
        let clock = restart.clock.unwrap_or_else(|| Arc::clone(&self.clock));
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.id.to_string() == id)
            .ok_or_else(|| SandboxError::Setup(format!("no server {id}")))?;
        // A stopped server starts again on the addresses its configuration holds.
        let (client_proxy, server_proxy, admin) = match s.running.take() {
            Some(r) => {
                let addrs = (r.client_proxy_addr, r.server_proxy_addr, r.admin_addr);
                r.shutdown().await;
                addrs
            }
            None => (
                s.config.client_proxy.listen,
                s.config.server_proxy.listen,
                s.config.admin.listen,
            ),
        };
        let server_proxy = match restart.server_proxy {
            Some(listener) => listener,
            None => tokio::net::TcpListener::bind(server_proxy).await?,
        };
        let client_proxy_tls = match s.config.client_proxy.tls_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let listeners = security_server::Listeners {
            client_proxy: tokio::net::TcpListener::bind(client_proxy).await?,
            client_proxy_tls,
            server_proxy,
            admin: tokio::net::TcpListener::bind(admin).await?,
        };
        s.running = Some(security_server::start(&s.config, listeners, clock).await?);
        Ok(())
    }

    /// One server, to change its configuration before [`Federation::restart_server`].
    pub fn server_mut(&mut self, id: &str) -> Option<&mut SandboxServer> {
        self.servers.iter_mut().find(|s| s.id.to_string() == id)
    }

    /// Stops everything gracefully.
    pub async fn stop(mut self) {
        if let Some(t) = self.portal_stop.take() {
            t.trigger();
        }
        if let Some(task) = self.portal_task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "resident portal stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "resident portal task failed"),
            }
        }
        for s in &mut self.servers {
            if let Some(r) = s.running.take() {
                r.shutdown().await;
            }
        }
        if let Some(t) = self.demo_stop.take() {
            t.trigger();
        }
        if let Some(task) = self.demo_task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "demo backend stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "demo backend task failed"),
            }
        }
        self.stop_registry().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DemoApi;
    use serde_json::Value;

    const RECORDS_SERVER: &str = "JP/MUN/131016/ss1";

    #[tokio::test]
    async fn a_fixed_port_already_taken_is_named_with_what_to_do() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = Ports::Fixed(port - 1)
            .bind(1)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.contains("--base-port"), "{e}");
    }

    #[tokio::test]
    async fn services_are_registered_granted_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = FederationSpec::sandbox();
        spec.poll_interval_secs = 3600;
        let mut f = Federation::start(
            spec,
            &dir.path().join("fed"),
            Ports::Ephemeral,
            Arc::new(certs::SystemClock),
        )
        .await
        .unwrap();

        let json: Value =
            serde_json::from_slice(&std::fs::read(f.dir().join("federation.json")).unwrap())
                .unwrap();
        assert_eq!(json["demo_backend"], f.demo_url());
        let services = json["services"].as_array().unwrap();
        let allowed = |id: &str| {
            services
                .iter()
                .find(|s| s["id"] == id)
                .map(|s| s["allowed"].clone())
                .unwrap()
        };
        assert_eq!(
            allowed("JP/MUN/131016/records/residentRecord"),
            serde_json::json!([
                "JP/GOV/digital-agency/portal",
                "JP/GOV/digital-agency/benefits",
                "JP/MUN/133078/juki",
                "JP/MUN/133086/juki"
            ])
        );
        assert_eq!(
            allowed("JP/MUN/131016/records/taxCertificate"),
            serde_json::json!([
                "JP/GOV/digital-agency/portal",
                "JP/GOV/digital-agency/benefits",
                "JP/MUN/271004/welfare"
            ])
        );
        assert_eq!(json["portal"], f.portal_url().unwrap());
        assert_eq!(
            services[0]["backend"],
            format!("{}/residents", f.demo_url())
        );

        // The provider's server holds the services and grants; the others hold none.
        let provider = f.server(RECORDS_SERVER).unwrap().running().unwrap();
        let local = provider.serverconf.snapshot();
        let record: globalconf::ServiceId = "JP/MUN/131016/records/residentRecord".parse().unwrap();
        let entry = local.service(&record).unwrap();
        assert_eq!(entry.url, format!("{}/residents", f.demo_url()));
        assert!(entry.openapi.as_deref().unwrap().contains("住民票"));
        // Seven service grants (four of resident records, three of tax certificates), and
        // findUsage for the portal.
        assert_eq!(local.access.grants().len(), 8);
        let find_usage = local
            .access
            .grants()
            .iter()
            .filter(|g| g.service.code() == "findUsage")
            .map(|g| (g.service.to_string(), g.subject.to_string()))
            .collect::<Vec<_>>();
        assert_eq!(
            find_usage,
            [(
                "JP/MUN/131016/records/findUsage".to_owned(),
                "JP/GOV/digital-agency/portal".to_owned()
            )]
        );
        let ministry = f
            .server("JP/GOV/digital-agency/ss1")
            .unwrap()
            .running()
            .unwrap();
        assert!(ministry.serverconf.snapshot().services.is_empty());
        // The portal answers.
        let health = runtime::HttpClient::plain()
            .get(&format!("{}/health", f.portal_url().unwrap()), None)
            .await
            .unwrap();
        assert_eq!(health.status.as_u16(), 200);

        // The demo backend answers directly.
        let http = runtime::HttpClient::plain();
        let answer = http
            .get(&format!("{}/residents/131016000001", f.demo_url()), None)
            .await
            .unwrap();
        assert_eq!(answer.status.as_u16(), 200);
        assert_eq!(
            answer.json::<Value>().unwrap()["name"]["romaji"],
            "Yamada Taro"
        );

        // More services: registered, granted, and added to the description file.
        let echo: globalconf::ServiceId = "JP/MUN/131016/records/echo".parse().unwrap();
        f.add_service(ServiceSpec::demo(
            echo.clone(),
            DemoApi::Echo,
            vec!["JP/GOV/digital-agency/portal".parse().unwrap()],
        ))
        .unwrap();
        let local = provider_conf(&f);
        assert_eq!(
            local.service(&echo).unwrap().url,
            format!("{}/echo", f.demo_url())
        );
        let json: Value =
            serde_json::from_slice(&std::fs::read(f.dir().join("federation.json")).unwrap())
                .unwrap();
        assert_eq!(json["services"].as_array().unwrap().len(), 3);

        // A service of a subsystem no server hosts is refused.
        let orphan = ServiceSpec::demo(
            "JP/MUN/999999/records/x".parse().unwrap(),
            DemoApi::Echo,
            Vec::new(),
        );
        assert!(f.add_service(orphan).is_err());
        f.stop().await;
    }

    fn provider_conf(f: &Federation) -> Arc<security_server::serverconf::LocalConf> {
        f.server(RECORDS_SERVER)
            .unwrap()
            .running()
            .unwrap()
            .serverconf
            .snapshot()
    }
}
