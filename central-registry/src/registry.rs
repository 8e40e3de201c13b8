//! The running registry: start-up (open the data directory, load the database, publish if due),
//! the state behind one lock, republication on a timer, and the two listeners (public HTTPS,
//! admin HTTP). What the operations do to the state is in [`crate::ops`].

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use certs::{Clock, TlsIdentity};
use globalconf::Anchor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::RegistryAdmin;
use crate::config::{ConfigError, RegistryConfig};
use crate::datadir::{self, DataDir};
use crate::error::RegistryError;
use crate::ops::{Core, Served};
use crate::shared::Shared;
use crate::state::PublicationSettings;
use crate::store::{Publication, Store};

/// ALPN protocols of the public HTTPS endpoint.
pub(crate) const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A central registry opened on its data directory. Start serving with [`Registry::run`];
/// drive it in-process with [`Registry::admin`].
///
/// The database stays open (and locked against other processes) until the registry and every
/// [`RegistryAdmin`] handle made from it are dropped.
#[derive(Debug)]
pub struct Registry {
    pub(crate) shared: Arc<Shared>,
}

impl Registry {
    /// Opens an initialised data directory (see [`crate::init_data_dir`]) and makes sure a
    /// current configuration is published: a first one, or a new one if the stored one is older
    /// than `republish_interval_secs` or was made with other settings.
    pub fn open(config: RegistryConfig, clock: Arc<dyn Clock>) -> Result<Registry, RegistryError> {
        config.validate()?;
        let instance = config.instance_id()?;
        let dir = DataDir::new(&config.data_dir);
        if !dir.anchor().exists() || !dir.database().exists() {
            return Err(ConfigError::Invalid(format!(
                "{} is not an initialised registry data directory; run `central-registry init` first",
                dir.root().display()
            ))
            .into());
        }
        let anchor = Anchor::load(&dir.anchor())?;
        if anchor.instance() != &instance {
            return Err(ConfigError::Invalid(format!(
                "the anchor is for instance {}, the configuration says {instance}",
                anchor.instance()
            ))
            .into());
        }
        let tls_pem =
            std::fs::read_to_string(dir.tls_pem()).map_err(|source| certs::Error::Io {
                path: dir.tls_pem(),
                source,
            })?;
        let identity = TlsIdentity::new(
            certs::certs_from_pem(&tls_pem)?,
            certs::load_secret_key(&dir.tls_key())?,
        );
        let tls_identity = certs::LiveIdentity::new(identity, Arc::clone(&clock))?;
        let tls = Arc::new(tls_identity.server_config(ALPN)?);
        let admin_token = certs::Zeroizing::new(dir.read_admin_token()?);
        if admin_token.len() < 32 {
            return Err(RegistryError::Internal(
                "the admin token is too short".into(),
            ));
        }

        let served = Arc::new(RwLock::new(Served::default()));
        // The database is this process's lock on the data directory: open it before the CA
        // files may be moved.
        let store = Store::open(&dir.database())?;
        datadir::recover_cas(&dir)?;
        let cas = datadir::load_cas(&dir)?;
        let loaded = store.load(&instance)?;
        // The key that signs: the anchor's, or the newest after rollovers.
        let current = globalconf::signed::current_signing_keys(&loaded.key_history, &anchor)
            .map_err(|e| RegistryError::Internal(format!("the stored signing key history: {e}")))?;
        let signing_key = datadir::signing_key_for(&dir, &current)?;
        let mut core = Core {
            store,
            instance: instance.clone(),
            clock: Arc::clone(&clock),
            signing_key,
            anchor: anchor.clone(),
            cas,
            tls_identity: tls_identity.clone(),
            own_hosts: config.public_hosts()?,
            served: Arc::clone(&served),
            settings: PublicationSettings {
                validity: config.configuration_validity(),
                parameters: config.parameters.to_proto(),
                registry_urls: config.public_urls.clone(),
                ca_certificates: Vec::new(),
            },
            republish_interval: config.republish_interval(),
            token_validity: i64::try_from(config.enrollment_token_validity_secs)
                .unwrap_or(i64::MAX),
            state: loaded.state,
            enrollments: loaded.enrollments,
            tokens: loaded.tokens,
            key_requests: loaded.key_requests,
            key_history: loaded.key_history,
            data_dir: dir.clone(),
            config_toml: config
                .to_toml()
                .map_err(|e| RegistryError::Internal(format!("the configuration: {e}")))?,
            key_activation_delay: i64::try_from(config.key_activation_delay_secs)
                .unwrap_or(i64::MAX),
            publication: loaded.publication.map(Arc::new),
        };
        core.apply_cas()?;
        core.republish_if_due(clock.unix_now())?;
        let publication = core
            .publication
            .clone()
            .ok_or_else(|| RegistryError::Internal("no publication after publishing".into()))?;
        tracing::info!(
            instance = %instance,
            serial = publication.serial,
            "central registry opened"
        );
        let (publication, _) = watch::channel(publication);
        Ok(Registry {
            shared: Arc::new(Shared {
                config,
                instance,
                clock,
                anchor,
                served,
                admin_token,
                tls,
                publication,
                core: Mutex::new(core),
                metrics: crate::metrics::RegistryMetrics::new(),
            }),
        })
    }

    /// A handle for driving the registry in-process (the same operations as the admin API).
    pub fn admin(&self) -> RegistryAdmin {
        RegistryAdmin::new(Arc::clone(&self.shared))
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    pub fn anchor(&self) -> &Anchor {
        &self.shared.anchor
    }

    /// The configuration currently served.
    pub fn publication(&self) -> Arc<Publication> {
        self.shared.publication.borrow().clone()
    }

    /// Binds `listen` and `admin_listen` from the configuration and serves until `shutdown`.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RegistryError> {
        let bind = |addr| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                RegistryError::Config(ConfigError::Invalid(format!(
                    "cannot listen on {addr}: {e}"
                )))
            })
        };
        let public = bind(self.shared.config.listen).await?;
        let admin = bind(self.shared.config.admin_listen).await?;
        self.run(public, admin, shutdown).await
    }

    /// Serves the public HTTPS endpoints on `public` and the admin API on `admin`, republishes
    /// every `republish_interval_secs`, and stops when `shutdown` resolves (draining requests).
    pub async fn run(
        self,
        public: TcpListener,
        admin: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RegistryError> {
        let (trigger, stop) = runtime::Shutdown::new();
        let public_addr = public.local_addr().ok();
        let admin_addr = admin.local_addr().ok();
        tracing::info!(?public_addr, ?admin_addr, "central registry serving");
        let shared = &self.shared;
        let trigger = &trigger;
        let public_task = async {
            let r = runtime::serve_http_with(
                public,
                Some(Arc::clone(&shared.tls)),
                crate::http::public_router(Arc::clone(shared)),
                stop.clone().wait(),
                shared.config.connections.serve_options(),
            )
            .await;
            trigger.trigger();
            r
        };
        let admin_task = async {
            let r = runtime::serve_http_with(
                admin,
                None,
                crate::admin_api::router(Arc::clone(shared)),
                stop.clone().wait(),
                shared.config.admin_connections.serve_options(),
            )
            .await;
            trigger.trigger();
            r
        };
        let republish = republish_loop(Arc::clone(shared), stop.clone());
        let signal = async {
            shutdown.await;
            trigger.trigger();
        };
        let (public_result, admin_result, (), ()) =
            tokio::join!(public_task, admin_task, republish, signal);
        tracing::info!("central registry stopped");
        public_result
            .and(admin_result)
            .map_err(|e| RegistryError::Internal(format!("serving failed: {e}")))
    }
}

async fn republish_loop(shared: Arc<Shared>, stop: runtime::Shutdown) {
    // Checked against the injected clock, often enough that a long interval is met closely.
    let period = Duration::from_secs(shared.config.republish_interval_secs.clamp(1, 30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {
                let s = Arc::clone(&shared);
                let result = tokio::task::spawn_blocking(move || {
                    s.with_core(|core, now| core.republish_if_due(now))?;
                    s.renew_own_certificate()
                })
                .await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "republication failed"),
                    Err(e) => tracing::error!(error = %e, "republication task failed"),
                }
            }
        }
    }
}
