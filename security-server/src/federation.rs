//! Federation (DESIGN §3): the other instances this server exchanges with.
//!
//! An instance is talked to when the own registry's configuration lists it as federated (with
//! the anchor both operators agreed on) and `[federation] instances` allows it; by default none
//! is, as in X-Road. For each, a [`ConfClient`] under that instance's anchor fetches, verifies
//! and stores its configuration as the own one is (its registries, then its servers and this
//! instance's, which relay it), and keeps it on disk, so that exchanges go on while either
//! registry is down, until it expires.
//!
//! Every look-up of another instance's servers, member keys or subsystems goes through
//! [`Federation::conf_for`] or [`Federation::conf_of_peer`]: when the agreement ends (the own
//! configuration no longer lists the instance), the next request is refused, and the TLS
//! handshake of its servers too ([`Federation`] is the server proxy's [`PinPolicy`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use certs::{Clock, PinPolicy};
use globalconf::{Anchor, GlobalConf, InstanceId, SecurityServerId, VerifiedConf};
use tokio::task::JoinHandle;

use crate::confclient::ConfClient;
use crate::identity::Paths;
use crate::peer::PeerPool;

/// Why another instance's configuration cannot be used for an exchange.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// This server's own configuration is missing or expired.
    #[error("{0}")]
    Own(String),
    #[error(
        "instance {other} is not federated with {own}: the registry's configuration lists no agreement with it"
    )]
    NotFederated { own: InstanceId, other: InstanceId },
    #[error(
        "this security server does not exchange with instance {0}: it is not in [federation] instances"
    )]
    NotAllowed(InstanceId),
    /// The other instance's configuration is not held yet, or expired.
    #[error("instance {0}: {1}")]
    Outdated(InstanceId, String),
}

/// What the parts of a federated instance's configuration client need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[federation] instances`.
    pub allowed: Vec<InstanceId>,
    pub paths: Paths,
    pub own_id: SecurityServerId,
    pub fetch_timeout: Duration,
    pub poll_override: Option<Duration>,
}

/// One federated instance this server talks to.
#[derive(Debug)]
struct Other {
    anchor: Anchor,
    client: Arc<ConfClient>,
    stop: runtime::ShutdownTrigger,
    task: JoinHandle<()>,
}

/// The own configuration and those of the federated instances this server talks to.
#[derive(Debug)]
pub struct Federation {
    own: Arc<ConfClient>,
    settings: Settings,
    peers: Arc<PeerPool>,
    clock: Arc<dyn Clock>,
    history: Option<msglog::MessageLog>,
    others: RwLock<BTreeMap<InstanceId, Other>>,
}

/// How one federated instance's configuration stands, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FederatedStatus {
    pub instance: InstanceId,
    /// The anchor's fingerprint, as the operators compared it.
    pub fingerprint: String,
    /// The serial of the configuration held, if any.
    pub serial: Option<u64>,
    pub expires_at: Option<i64>,
    /// Whether exchanges with the instance can be made now.
    pub usable: bool,
    /// Why not, when they cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Federation {
    pub fn new(
        own: Arc<ConfClient>,
        settings: Settings,
        peers: Arc<PeerPool>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            own,
            settings,
            peers,
            clock,
            history: None,
            others: RwLock::new(BTreeMap::new()),
        }
    }

    /// Keeps every configuration of a federated instance in the message log's history too, so
    /// that evidence of a cross-border exchange carries the configuration that lists the other
    /// side's key.
    pub fn with_history(mut self, log: msglog::MessageLog) -> Self {
        self.history = Some(log);
        self
    }

    pub fn own(&self) -> &Arc<ConfClient> {
        &self.own
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<InstanceId, Other>> {
        self.others.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<InstanceId, Other>> {
        self.others.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration that says who `instance`'s servers, members and subsystems are, if
    /// exchanges with it can be made now.
    pub fn conf_for(&self, instance: &InstanceId) -> Result<VerifiedConf, Refusal> {
        let own = self.own.valid_now().map_err(Refusal::Own)?;
        if own.conf().instance() == instance {
            return Ok(own);
        }
        let Some(agreed) = own.conf().federated(instance) else {
            return Err(Refusal::NotFederated {
                own: own.conf().instance().clone(),
                other: instance.clone(),
            });
        };
        if !self.settings.allowed.contains(instance) {
            return Err(Refusal::NotAllowed(instance.clone()));
        }
        let others = self.read();
        match others.get(instance) {
            Some(o) if &o.anchor == agreed => o
                .client
                .valid_now()
                .map_err(|m| Refusal::Outdated(instance.clone(), m)),
            _ => Err(Refusal::Outdated(
                instance.clone(),
                "its configuration has not been fetched yet".into(),
            )),
        }
    }

    /// The configuration that lists the peer with this TLS certificate: `own` (the own one,
    /// usable now), or a federated instance's that is usable now. `None` when none does.
    pub fn conf_of_peer(
        &self,
        own: &VerifiedConf,
        cert_sha256: &[u8; 32],
    ) -> Result<Option<VerifiedConf>, Refusal> {
        if own.conf().server_by_cert(cert_sha256).is_some() {
            return Ok(Some(own.clone()));
        }
        let listing: Option<InstanceId> = self.read().iter().find_map(|(id, o)| {
            o.client
                .current()
                .filter(|c| c.conf().server_by_cert(cert_sha256).is_some())
                .map(|_| id.clone())
        });
        match listing {
            Some(instance) => self.conf_for(&instance).map(Some),
            None => Ok(None),
        }
    }

    /// The configuration held of `instance` (own or federated), expired or not: what this server
    /// relays to a peer that asks for it.
    pub fn held(&self, instance: &InstanceId) -> Option<VerifiedConf> {
        let own = self.own.current();
        if own.as_ref().is_none_or(|c| c.conf().instance() == instance) {
            return own;
        }
        self.read().get(instance).and_then(|o| o.client.current())
    }

    /// How each federated instance this server talks to stands.
    pub fn status(&self) -> Vec<FederatedStatus> {
        let now = self.clock.unix_now();
        let own = self.own.current();
        let mut out = Vec::new();
        let Some(own) = own else {
            return out;
        };
        for f in own.conf().federated_instances() {
            let allowed = self.settings.allowed.contains(&f.instance);
            let held = allowed
                .then(|| {
                    self.read()
                        .get(&f.instance)
                        .and_then(|o| o.client.current())
                })
                .flatten();
            let problem = if !allowed {
                Some(Refusal::NotAllowed(f.instance.clone()).to_string())
            } else {
                self.conf_for(&f.instance).err().map(|e| e.to_string())
            };
            out.push(FederatedStatus {
                instance: f.instance.clone(),
                fingerprint: f.anchor.fingerprint().unwrap_or_default(),
                serial: held.as_ref().map(VerifiedConf::serial),
                expires_at: held.as_ref().map(|c| c.conf().expires_at()),
                usable: problem.is_none() && held.is_some_and(|c| !c.conf().is_expired(now)),
                problem,
            });
        }
        // Listed here, but no agreement in the registry's configuration: say so too.
        for id in &self.settings.allowed {
            if own.conf().federated(id).is_none() {
                out.push(FederatedStatus {
                    instance: id.clone(),
                    fingerprint: String::new(),
                    serial: None,
                    expires_at: None,
                    usable: false,
                    problem: Some(
                        Refusal::NotFederated {
                            own: own.conf().instance().clone(),
                            other: id.clone(),
                        }
                        .to_string(),
                    ),
                });
            }
        }
        out
    }

    /// Starts and stops the federated instances' configuration clients as `own` says.
    fn sync(&self, own: &GlobalConf, shutdown: &runtime::Shutdown) {
        let wanted: BTreeMap<&InstanceId, &Anchor> = own
            .federated_instances()
            .filter(|f| self.settings.allowed.contains(&f.instance))
            .map(|f| (&f.instance, &f.anchor))
            .collect();
        let mut others = self.write();
        others.retain(|id, o| {
            let keep = wanted.get(id) == Some(&&o.anchor);
            if !keep {
                o.stop.trigger();
                self.peers.forget_instance(id);
                tracing::info!(instance = %id, "the federation with this instance ended");
            }
            keep
        });
        for (id, anchor) in wanted {
            if others.contains_key(id) {
                continue;
            }
            match self.start_other(anchor, shutdown) {
                Ok(other) => {
                    tracing::info!(instance = %id, "federated with this instance");
                    others.insert(id.clone(), other);
                }
                Err(e) => {
                    tracing::error!(instance = %id, error = %e, "cannot keep this federated instance's configuration")
                }
            }
        }
        for id in &self.settings.allowed {
            if own.federated(id).is_none() {
                tracing::warn!(instance = %id, "[federation] instances lists this instance, but the registry's configuration does not federate with it");
            }
        }
    }

    fn start_other(
        &self,
        anchor: &Anchor,
        shutdown: &runtime::Shutdown,
    ) -> Result<Other, certs::Error> {
        let store = self
            .settings
            .paths
            .stored_federated_globalconf(anchor.instance());
        if let Some(dir) = store.parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| certs::Error::Io {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let client = Arc::new(
            ConfClient::open(
                anchor.clone(),
                store,
                self.settings.own_id.clone(),
                Arc::clone(&self.peers),
                self.settings.fetch_timeout,
                self.settings.poll_override,
                Arc::clone(&self.clock),
            )?
            .relayed_by(self.own.subscribe()),
        );
        let (stop, child) = runtime::Shutdown::new();
        let parent = shutdown.clone();
        let running = Arc::clone(&client);
        let history = self.history.clone();
        let task = tokio::spawn(async move {
            let work = async {
                match history {
                    Some(log) => {
                        tokio::join!(
                            running.clone().run(child.clone()),
                            keep_history(running.subscribe(), log, true, child)
                        );
                    }
                    None => running.run(child).await,
                }
            };
            tokio::select! {
                () = work => {}
                () = parent.wait() => {}
            }
        });
        Ok(Other {
            anchor: anchor.clone(),
            client,
            stop,
            task,
        })
    }

    /// Follows the own configuration until shutdown, then stops every federated instance's
    /// client.
    pub async fn run(self: Arc<Self>, shutdown: runtime::Shutdown) {
        let mut updates = self.own.subscribe();
        let mut stop = std::pin::pin!(shutdown.clone().wait());
        loop {
            let current = updates.borrow_and_update().clone();
            if let Some(c) = current {
                self.sync(c.conf(), &shutdown);
            }
            tokio::select! {
                () = &mut stop => break,
                changed = updates.changed() => if changed.is_err() { break },
            }
        }
        let others = std::mem::take(&mut *self.write());
        for o in others.values() {
            o.stop.trigger();
        }
        for (_, o) in others {
            let _ = o.task.await;
        }
    }
}

/// Accepts a TLS peer iff the own configuration, or the configuration of a federated instance
/// this server talks to, lists its certificate.
impl PinPolicy for Federation {
    fn allows(&self, cert_sha256: &[u8; 32]) -> bool {
        self.own
            .current()
            .is_some_and(|c| c.conf().server_by_cert(cert_sha256).is_some())
            || self.read().values().any(|o| {
                o.client
                    .current()
                    .is_some_and(|c| c.conf().server_by_cert(cert_sha256).is_some())
            })
    }
}

/// Stores every configuration `updates` publishes in the message log's history, so that evidence
/// can show the configuration in force when a record was written: the own instance's, or (when
/// `federated`) a federated instance's, whose serials are its own.
pub(crate) async fn keep_history(
    mut updates: tokio::sync::watch::Receiver<Option<VerifiedConf>>,
    log: msglog::MessageLog,
    federated: bool,
    shutdown: runtime::Shutdown,
) {
    let mut stop = std::pin::pin!(shutdown.wait());
    loop {
        let current = updates.borrow_and_update().clone();
        if let Some(c) = current {
            let log = log.clone();
            let stored = tokio::task::spawn_blocking(move || {
                let (serial, generated_at) = (c.serial(), c.conf().generated_at());
                if federated {
                    let instance = c.conf().instance().as_str();
                    log.store_federated_configuration(instance, serial, generated_at, c.envelope())
                } else {
                    log.store_configuration(serial, generated_at, c.envelope())
                }
            })
            .await;
            if !matches!(stored, Ok(Ok(_))) {
                tracing::error!("cannot store the configuration in the message log's history");
            }
        }
        tokio::select! {
            () = &mut stop => return,
            changed = updates.changed() => if changed.is_err() { return },
        }
    }
}
