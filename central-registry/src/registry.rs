//! The running registry: the state behind one lock, every operation as one store transaction,
//! republication after every change that affects the configuration and on a timer, and the two
//! listeners (public HTTPS, admin HTTP).
//!
//! Each operation checks the request against the in-memory state, turns it into a list of
//! record-level [`Change`]s, applies them in memory, signs the next configuration if they affect
//! it, and commits changes + audit entry + publication in one redb write transaction. If the
//! commit fails, memory is reloaded from the database, so the two never drift apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use certs::{CertificateAuthority, Clock, KeyId, PublicKey, SigningKey, TlsIdentity};
use globalconf::{Anchor, GlobalGroupId, InstanceId, MemberId, SecurityServerId, SubsystemId};
use prost::Message as _;
use proto::v1 as pb;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{
    EnrollmentStatusView, EnrollmentView, GroupView, IssuedToken, KeyView, MemberView,
    RegistryAdmin, ServerView, StatusView, SubsystemView,
};
use crate::config::{ConfigError, RegistryConfig};
use crate::datadir::{DataDir, TLS_VALIDITY};
use crate::enrollment::{
    EnrollmentRecord, EnrollmentStatus, TokenRecord, VerifiedEnrollment, token_hash,
    verify_enrollment,
};
use crate::error::RegistryError;
use crate::state::{
    GroupRecord, KeyRecord, MemberRecord, PublicationSettings, RegistryState, ServerRecord,
    SubsystemRecord, build_configuration,
};
use crate::store::{AuditEntry, Change, Publication, Store};
use crate::util;

/// ALPN protocols of the public HTTPS endpoint.
pub(crate) const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A central registry opened on its data directory. Start serving with [`Registry::run`];
/// drive it in-process with [`Registry::admin`].
///
/// The database stays open (and locked against other processes) until the registry and every
/// [`RegistryAdmin`] handle made from it are dropped.
#[derive(Debug)]
pub struct Registry {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: RegistryConfig,
    pub(crate) instance: InstanceId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) anchor: Anchor,
    pub(crate) anchor_toml: String,
    pub(crate) ca_pem: String,
    pub(crate) admin_token: certs::Zeroizing<String>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) publication: watch::Sender<Arc<Publication>>,
    core: Mutex<Core>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("instance", &self.instance)
            .field("data_dir", &self.config.data_dir)
            .field("serial", &self.publication.borrow().serial)
            .finish_non_exhaustive()
    }
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
        let signing_key = certs::load_secret_key(&dir.signing_key())?;
        let anchor = Anchor::load(&dir.anchor())?;
        if anchor.instance() != &instance {
            return Err(ConfigError::Invalid(format!(
                "the anchor is for instance {}, the configuration says {instance}",
                anchor.instance()
            ))
            .into());
        }
        if anchor.signing_key(&signing_key.key_id()).is_none() {
            return Err(RegistryError::Internal(
                "the anchor does not list the configuration-signing key".into(),
            ));
        }
        let anchor_toml = anchor.to_toml()?;
        let ca = CertificateAuthority::load(&dir.ca_pem(), &dir.ca_key())?;
        let ca_pem = ca.certificate_pem();
        let tls_pem =
            std::fs::read_to_string(dir.tls_pem()).map_err(|source| certs::Error::Io {
                path: dir.tls_pem(),
                source,
            })?;
        let identity = TlsIdentity::new(
            certs::certs_from_pem(&tls_pem)?,
            certs::load_secret_key(&dir.tls_key())?,
        );
        let tls = Arc::new(certs::server_config(&identity, ALPN)?);
        let admin_token = certs::Zeroizing::new(dir.read_admin_token()?);
        if admin_token.len() < 32 {
            return Err(RegistryError::Internal(
                "the admin token is too short".into(),
            ));
        }

        let store = Store::open(&dir.database())?;
        let loaded = store.load(&instance)?;
        let mut core = Core {
            store,
            instance: instance.clone(),
            clock: Arc::clone(&clock),
            signing_key,
            ca,
            settings: PublicationSettings {
                validity: config.configuration_validity(),
                parameters: config.parameters.to_proto(),
                registry_urls: config.public_urls.clone(),
            },
            republish_interval: config.republish_interval(),
            token_validity: i64::try_from(config.enrollment_token_validity_secs)
                .unwrap_or(i64::MAX),
            state: loaded.state,
            enrollments: loaded.enrollments,
            tokens: loaded.tokens,
            publication: loaded.publication.map(Arc::new),
        };
        let now = clock.unix_now();
        if core.publication_due(now) {
            core.execute(Vec::new(), None, true, now)?;
        }
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
                anchor_toml,
                ca_pem,
                admin_token,
                tls,
                publication,
                core: Mutex::new(core),
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
            let r = runtime::serve_http(
                public,
                Some(Arc::clone(&shared.tls)),
                crate::http::public_router(Arc::clone(shared)),
                stop.clone().wait(),
            )
            .await;
            trigger.trigger();
            r
        };
        let admin_task = async {
            let r = runtime::serve_http(
                admin,
                None,
                crate::admin_api::router(Arc::clone(shared)),
                stop.clone().wait(),
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
                    s.with_core(|core, now| {
                        if core.publication_due(now) {
                            core.execute(Vec::new(), None, true, now)?;
                        }
                        Ok(())
                    })
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic mid-operation may have left memory ahead of the database: reload.
                let mut guard = poisoned.into_inner();
                self.core.clear_poison();
                if let Err(e) = guard.reload() {
                    tracing::error!(error = %e, "reloading the registry state failed");
                }
                guard
            }
        }
    }

    /// Runs one operation under the lock at the clock's current time, and announces a new
    /// publication if it made one.
    pub(crate) fn with_core<T>(
        &self,
        op: impl FnOnce(&mut Core, i64) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut core = self.lock();
        let now = self.clock.unix_now();
        let result = op(&mut core, now);
        if let Some(p) = &core.publication
            && p.serial != self.publication.borrow().serial
        {
            tracing::info!(serial = p.serial, "published a new global configuration");
            self.publication.send_replace(Arc::clone(p));
        }
        result
    }
}

pub(crate) struct Core {
    store: Store,
    instance: InstanceId,
    clock: Arc<dyn Clock>,
    signing_key: SigningKey,
    ca: CertificateAuthority,
    settings: PublicationSettings,
    republish_interval: Duration,
    token_validity: i64,
    state: RegistryState,
    enrollments: BTreeMap<SecurityServerId, EnrollmentRecord>,
    tokens: HashMap<String, TokenRecord>,
    publication: Option<Arc<Publication>>,
}

fn audit(action: &str, details: serde_json::Value) -> Option<(String, serde_json::Value)> {
    Some((action.to_owned(), details))
}

fn not_found(what: impl fmt::Display) -> RegistryError {
    RegistryError::NotFound(format!("{what} is not registered"))
}

impl Core {
    /// Applies `changes` in memory and in one store transaction (with the audit entry and, if
    /// the configuration changed or `force_publish`, a newly signed configuration).
    fn execute(
        &mut self,
        changes: Vec<Change>,
        audit: Option<(String, serde_json::Value)>,
        force_publish: bool,
        now: i64,
    ) -> Result<(), RegistryError> {
        let republish = force_publish || changes.iter().any(Change::affects_configuration);
        for change in &changes {
            self.apply(change);
        }
        let publication = if republish {
            Some(self.sign_next(now))
        } else {
            None
        };
        let entry = audit.map(|(action, details)| AuditEntry {
            seq: 0,
            time: now,
            action,
            details,
        });
        if let Err(e) = self
            .store
            .commit(&changes, entry.as_ref(), publication.as_ref())
        {
            if let Err(reload) = self.reload() {
                tracing::error!(error = %reload, "reloading the registry state failed");
            }
            return Err(e.into());
        }
        if let Some(p) = publication {
            self.publication = Some(Arc::new(p));
        }
        Ok(())
    }

    fn apply(&mut self, change: &Change) {
        let s = &mut self.state;
        match change.clone() {
            Change::PutMember(id, r) => {
                s.members.insert(id, r);
            }
            Change::DeleteMember(id) => {
                s.members.remove(&id);
            }
            Change::PutSubsystem(id, r) => {
                s.subsystems.insert(id, r);
            }
            Change::DeleteSubsystem(id) => {
                s.subsystems.remove(&id);
            }
            Change::PutGroup(id, r) => {
                s.groups.insert(id, r);
            }
            Change::DeleteGroup(id) => {
                s.groups.remove(&id);
            }
            Change::PutServer(id, r) => {
                s.servers.insert(id, r);
            }
            Change::DeleteServer(id) => {
                s.servers.remove(&id);
            }
            Change::PutKey(member, key_id, r) => {
                s.signing_keys.entry(member).or_default().insert(key_id, r);
            }
            Change::DeleteKey(member, key_id) => {
                if let Some(keys) = s.signing_keys.get_mut(&member) {
                    keys.remove(&key_id);
                    if keys.is_empty() {
                        s.signing_keys.remove(&member);
                    }
                }
            }
            Change::PutEnrollment(r) => {
                self.enrollments.insert(r.server_id.clone(), r);
            }
            Change::DeleteEnrollment(id) => {
                self.enrollments.remove(&id);
            }
            Change::PutToken(hash, r) => {
                self.tokens.insert(hash, r);
            }
        }
    }

    fn reload(&mut self) -> Result<(), RegistryError> {
        let loaded = self.store.load(&self.instance)?;
        self.state = loaded.state;
        self.enrollments = loaded.enrollments;
        self.tokens = loaded.tokens;
        self.publication = loaded.publication.map(Arc::new);
        Ok(())
    }

    fn sign_next(&self, now: i64) -> Publication {
        let serial = self.publication.as_ref().map_or(1, |p| p.serial + 1);
        let conf = build_configuration(&self.state, serial, now, &self.settings);
        let envelope = globalconf::signed::sign(&conf, &self.signing_key);
        Publication {
            serial,
            generated_at: now,
            expires_at: conf.expires_at,
            envelope: envelope.into(),
        }
    }

    /// Whether the served configuration must be re-signed: none yet, older than the republish
    /// interval, or made with other settings or another key than the current ones.
    fn publication_due(&self, now: i64) -> bool {
        let Some(p) = &self.publication else {
            return true;
        };
        let interval = i64::try_from(self.republish_interval.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(p.generated_at) >= interval || now < p.generated_at {
            return true;
        }
        let Ok(signed) = pb::SignedConfiguration::decode(p.envelope.as_ref()) else {
            return true;
        };
        let Ok(conf) = pb::GlobalConfiguration::decode(signed.configuration.as_slice()) else {
            return true;
        };
        let validity = i64::try_from(self.settings.validity.as_secs()).unwrap_or(i64::MAX);
        signed.key_id != self.signing_key.key_id().as_str()
            || conf.registry_urls != self.settings.registry_urls
            || conf.parameters.as_ref() != Some(&self.settings.parameters)
            || conf.expires_at.saturating_sub(conf.generated_at) != validity
    }

    fn own_instance(&self, what: &str, instance: &str) -> Result<(), RegistryError> {
        if instance == self.instance.as_str() {
            Ok(())
        } else {
            Err(RegistryError::BadRequest(format!(
                "{what} belongs to instance {instance}, this registry serves {}",
                self.instance
            )))
        }
    }

    // ---- status -------------------------------------------------------------------------------

    pub(crate) fn status(&self) -> Result<StatusView, RegistryError> {
        let p = self
            .publication
            .as_ref()
            .ok_or_else(|| RegistryError::Internal("nothing published".into()))?;
        Ok(StatusView {
            instance: self.instance.to_string(),
            serial: p.serial,
            generated_at: p.generated_at,
            expires_at: p.expires_at,
            members: self.state.members.len(),
            subsystems: self.state.subsystems.len(),
            servers: self.state.servers.len(),
            pending_enrollments: self
                .enrollments
                .values()
                .filter(|e| e.status == EnrollmentStatus::Pending)
                .count(),
        })
    }

    pub(crate) fn publish(&mut self, now: i64) -> Result<StatusView, RegistryError> {
        self.execute(Vec::new(), audit("publish", json!({})), true, now)?;
        self.status()
    }

    pub(crate) fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        Ok(self.store.audit(limit)?)
    }

    // ---- members and subsystems ---------------------------------------------------------------

    fn member_view(
        &self,
        id: &MemberId,
        record: &MemberRecord,
        subsystems: Vec<SubsystemView>,
    ) -> MemberView {
        MemberView {
            id: id.clone(),
            name: record.name.clone(),
            subsystems,
            signing_keys: self.key_views(id),
            servers: self
                .state
                .servers
                .keys()
                .filter(|s| s.owner() == id)
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn list_members(&self) -> Vec<MemberView> {
        let mut subs: HashMap<&MemberId, Vec<SubsystemView>> = HashMap::new();
        for (sid, s) in &self.state.subsystems {
            subs.entry(sid.member()).or_default().push(SubsystemView {
                id: sid.clone(),
                name: s.name.clone(),
            });
        }
        self.state
            .members
            .iter()
            .map(|(id, r)| self.member_view(id, r, subs.remove(id).unwrap_or_default()))
            .collect()
    }

    pub(crate) fn add_member(
        &mut self,
        id: MemberId,
        name: String,
        now: i64,
    ) -> Result<MemberView, RegistryError> {
        self.own_instance(&format!("member {id}"), id.instance())?;
        let name = name.trim().to_owned();
        if name.is_empty() {
            return Err(RegistryError::BadRequest("a member needs a name".into()));
        }
        if self.state.members.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "member {id} already exists"
            )));
        }
        let record = MemberRecord { name: name.clone() };
        self.execute(
            vec![Change::PutMember(id.clone(), record.clone())],
            audit("member.add", json!({"id": id, "name": name})),
            false,
            now,
        )?;
        Ok(self.member_view(&id, &record, Vec::new()))
    }

    /// Removes a member with its subsystems, signing keys and security servers.
    pub(crate) fn remove_member(&mut self, id: &MemberId, now: i64) -> Result<(), RegistryError> {
        if !self.state.members.contains_key(id) {
            return Err(not_found(format!("member {id}")));
        }
        let subsystems: BTreeSet<SubsystemId> = self
            .state
            .subsystems_of(id)
            .map(|(sid, _)| sid.clone())
            .collect();
        let servers: BTreeSet<SecurityServerId> = self
            .state
            .servers
            .keys()
            .filter(|s| s.owner() == id)
            .cloned()
            .collect();
        let mut changes = self.detach_subsystems(&subsystems, &servers);
        for sid in &subsystems {
            changes.push(Change::DeleteSubsystem(sid.clone()));
        }
        for server in &servers {
            changes.push(Change::DeleteServer(server.clone()));
            if self.enrollments.contains_key(server) {
                changes.push(Change::DeleteEnrollment(server.clone()));
            }
        }
        for key_id in self
            .state
            .signing_keys
            .get(id)
            .into_iter()
            .flat_map(|k| k.keys())
        {
            changes.push(Change::DeleteKey(id.clone(), key_id.clone()));
        }
        changes.push(Change::DeleteMember(id.clone()));
        self.execute(
            changes,
            audit(
                "member.remove",
                json!({"id": id, "subsystems": subsystems, "servers": servers}),
            ),
            false,
            now,
        )
    }

    /// Changes that take `removed` subsystems out of server hosting lists and global groups
    /// (servers in `skip` are being deleted anyway).
    fn detach_subsystems(
        &self,
        removed: &BTreeSet<SubsystemId>,
        skip: &BTreeSet<SecurityServerId>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for (id, server) in &self.state.servers {
            if !skip.contains(id) && server.hosted.iter().any(|s| removed.contains(s)) {
                let mut server = server.clone();
                server.hosted.retain(|s| !removed.contains(s));
                changes.push(Change::PutServer(id.clone(), server));
            }
        }
        for (id, group) in &self.state.groups {
            if group.members.iter().any(|s| removed.contains(s)) {
                let mut group = group.clone();
                group.members.retain(|s| !removed.contains(s));
                changes.push(Change::PutGroup(id.clone(), group));
            }
        }
        changes
    }

    pub(crate) fn list_subsystems(&self) -> Vec<SubsystemView> {
        self.state
            .subsystems
            .iter()
            .map(|(id, s)| SubsystemView {
                id: id.clone(),
                name: s.name.clone(),
            })
            .collect()
    }

    pub(crate) fn add_subsystem(
        &mut self,
        id: SubsystemId,
        name: String,
        now: i64,
    ) -> Result<SubsystemView, RegistryError> {
        if !self.state.members.contains_key(id.member()) {
            return Err(not_found(format!("member {}", id.member())));
        }
        if self.state.subsystems.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "subsystem {id} already exists"
            )));
        }
        let name = match name.trim() {
            "" => id.code().to_owned(),
            n => n.to_owned(),
        };
        self.execute(
            vec![Change::PutSubsystem(
                id.clone(),
                SubsystemRecord { name: name.clone() },
            )],
            audit("subsystem.add", json!({"id": id, "name": name})),
            false,
            now,
        )?;
        Ok(SubsystemView { id, name })
    }

    /// Removes a subsystem, and with it its hosting entries and group memberships.
    pub(crate) fn remove_subsystem(
        &mut self,
        id: &SubsystemId,
        now: i64,
    ) -> Result<(), RegistryError> {
        if !self.state.subsystems.contains_key(id) {
            return Err(not_found(format!("subsystem {id}")));
        }
        let removed = BTreeSet::from([id.clone()]);
        let mut changes = self.detach_subsystems(&removed, &BTreeSet::new());
        changes.push(Change::DeleteSubsystem(id.clone()));
        self.execute(
            changes,
            audit("subsystem.remove", json!({"id": id})),
            false,
            now,
        )
    }

    // ---- global groups ------------------------------------------------------------------------

    fn group_view(id: &GlobalGroupId, g: &GroupRecord) -> GroupView {
        GroupView {
            id: id.clone(),
            description: g.description.clone(),
            members: g.members.iter().cloned().collect(),
        }
    }

    pub(crate) fn list_groups(&self) -> Vec<GroupView> {
        self.state
            .groups
            .iter()
            .map(|(id, g)| Self::group_view(id, g))
            .collect()
    }

    pub(crate) fn add_group(
        &mut self,
        id: GlobalGroupId,
        description: String,
        now: i64,
    ) -> Result<GroupView, RegistryError> {
        self.own_instance(&format!("group {id}"), id.instance())?;
        if self.state.groups.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "group {id} already exists"
            )));
        }
        let record = GroupRecord {
            description: description.trim().to_owned(),
            members: BTreeSet::new(),
        };
        self.execute(
            vec![Change::PutGroup(id.clone(), record.clone())],
            audit(
                "group.add",
                json!({"id": id, "description": record.description}),
            ),
            false,
            now,
        )?;
        Ok(Self::group_view(&id, &record))
    }

    pub(crate) fn remove_group(
        &mut self,
        id: &GlobalGroupId,
        now: i64,
    ) -> Result<(), RegistryError> {
        if !self.state.groups.contains_key(id) {
            return Err(not_found(format!("group {id}")));
        }
        self.execute(
            vec![Change::DeleteGroup(id.clone())],
            audit("group.remove", json!({"id": id})),
            false,
            now,
        )
    }

    pub(crate) fn set_group_member(
        &mut self,
        group: &GlobalGroupId,
        subsystem: &SubsystemId,
        member: bool,
        now: i64,
    ) -> Result<GroupView, RegistryError> {
        let mut record = self
            .state
            .groups
            .get(group)
            .cloned()
            .ok_or_else(|| not_found(format!("group {group}")))?;
        if member {
            if !self.state.subsystems.contains_key(subsystem) {
                return Err(not_found(format!("subsystem {subsystem}")));
            }
            if !record.members.insert(subsystem.clone()) {
                return Ok(Self::group_view(group, &record));
            }
        } else if !record.members.remove(subsystem) {
            return Err(RegistryError::NotFound(format!(
                "subsystem {subsystem} is not a member of group {group}"
            )));
        }
        let action = if member {
            "group.add-member"
        } else {
            "group.remove-member"
        };
        self.execute(
            vec![Change::PutGroup(group.clone(), record.clone())],
            audit(action, json!({"group": group, "subsystem": subsystem})),
            false,
            now,
        )?;
        Ok(Self::group_view(group, &record))
    }

    // ---- security servers ---------------------------------------------------------------------

    fn server_view(id: &SecurityServerId, s: &ServerRecord) -> ServerView {
        ServerView {
            id: id.clone(),
            addresses: s.addresses.clone(),
            tls_cert_sha256: util::hex(s.tls_cert_sha256()),
            hosted_subsystems: s.hosted.iter().cloned().collect(),
        }
    }

    pub(crate) fn list_servers(&self) -> Vec<ServerView> {
        self.state
            .servers
            .iter()
            .map(|(id, s)| Self::server_view(id, s))
            .collect()
    }

    /// Removes an approved server: it leaves the configuration (with its hosting list) at the
    /// next serial, and may enrol again afterwards.
    pub(crate) fn remove_server(
        &mut self,
        id: &SecurityServerId,
        now: i64,
    ) -> Result<(), RegistryError> {
        if !self.state.servers.contains_key(id) {
            return Err(not_found(format!("security server {id}")));
        }
        let mut changes = vec![Change::DeleteServer(id.clone())];
        if self.enrollments.contains_key(id) {
            changes.push(Change::DeleteEnrollment(id.clone()));
        }
        self.execute(
            changes,
            audit("server.remove", json!({"id": id})),
            false,
            now,
        )
    }

    pub(crate) fn set_hosted_subsystem(
        &mut self,
        server: &SecurityServerId,
        subsystem: &SubsystemId,
        hosted: bool,
        now: i64,
    ) -> Result<ServerView, RegistryError> {
        let mut record = self
            .state
            .servers
            .get(server)
            .cloned()
            .ok_or_else(|| not_found(format!("security server {server}")))?;
        if hosted {
            if !self.state.subsystems.contains_key(subsystem) {
                return Err(not_found(format!("subsystem {subsystem}")));
            }
            if !record.hosted.insert(subsystem.clone()) {
                return Ok(Self::server_view(server, &record));
            }
        } else if !record.hosted.remove(subsystem) {
            return Err(RegistryError::NotFound(format!(
                "security server {server} does not host {subsystem}"
            )));
        }
        let action = if hosted {
            "server.add-subsystem"
        } else {
            "server.remove-subsystem"
        };
        self.execute(
            vec![Change::PutServer(server.clone(), record.clone())],
            audit(action, json!({"server": server, "subsystem": subsystem})),
            false,
            now,
        )?;
        Ok(Self::server_view(server, &record))
    }

    // ---- member signing keys ------------------------------------------------------------------

    fn key_views(&self, member: &MemberId) -> Vec<KeyView> {
        self.state
            .signing_keys
            .get(member)
            .into_iter()
            .flatten()
            .map(|(key_id, k)| KeyView {
                member: member.clone(),
                key_id: key_id.clone(),
                public_key: k.public_key,
                valid_from: k.valid_from,
                valid_until: k.valid_until,
            })
            .collect()
    }

    pub(crate) fn list_keys(&self, member: &MemberId) -> Result<Vec<KeyView>, RegistryError> {
        if !self.state.members.contains_key(member) {
            return Err(not_found(format!("member {member}")));
        }
        Ok(self.key_views(member))
    }

    fn key_record(&self, member: &MemberId, key_id: &KeyId) -> Result<KeyRecord, RegistryError> {
        self.state
            .signing_keys
            .get(member)
            .and_then(|keys| keys.get(key_id))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("member {member} has no signing key {key_id}"))
            })
    }

    /// Lists a signing key for a member (key rotation, or a member hosted on another member's
    /// server). A key can belong to one member only.
    pub(crate) fn add_key(
        &mut self,
        member: &MemberId,
        public_key: PublicKey,
        valid_from: Option<i64>,
        now: i64,
    ) -> Result<KeyView, RegistryError> {
        if !self.state.members.contains_key(member) {
            return Err(not_found(format!("member {member}")));
        }
        let key_id = public_key.key_id();
        if let Some(owner) = self.state.key_owner(&key_id) {
            return Err(RegistryError::Conflict(format!(
                "signing key {key_id} is already listed for member {owner}"
            )));
        }
        let record = KeyRecord {
            public_key,
            valid_from: valid_from.unwrap_or(now),
            valid_until: None,
        };
        self.execute(
            vec![Change::PutKey(
                member.clone(),
                key_id.clone(),
                record.clone(),
            )],
            audit(
                "key.add",
                json!({"member": member, "key_id": key_id, "valid_from": record.valid_from}),
            ),
            false,
            now,
        )?;
        Ok(KeyView {
            member: member.clone(),
            key_id,
            public_key,
            valid_from: record.valid_from,
            valid_until: None,
        })
    }

    /// Ends a key's validity at `at` (default: now); signatures made later are refused.
    pub(crate) fn retire_key(
        &mut self,
        member: &MemberId,
        key_id: &KeyId,
        at: Option<i64>,
        now: i64,
    ) -> Result<KeyView, RegistryError> {
        let mut record = self.key_record(member, key_id)?;
        let until = at.unwrap_or(now);
        if until < record.valid_from {
            return Err(RegistryError::BadRequest(format!(
                "retirement time {until} is before the key became valid ({})",
                record.valid_from
            )));
        }
        record.valid_until = Some(until);
        self.execute(
            vec![Change::PutKey(
                member.clone(),
                key_id.clone(),
                record.clone(),
            )],
            audit(
                "key.retire",
                json!({"member": member, "key_id": key_id, "valid_until": until}),
            ),
            false,
            now,
        )?;
        Ok(KeyView {
            member: member.clone(),
            key_id: key_id.clone(),
            public_key: record.public_key,
            valid_from: record.valid_from,
            valid_until: record.valid_until,
        })
    }

    pub(crate) fn remove_key(
        &mut self,
        member: &MemberId,
        key_id: &KeyId,
        now: i64,
    ) -> Result<(), RegistryError> {
        self.key_record(member, key_id)?;
        self.execute(
            vec![Change::DeleteKey(member.clone(), key_id.clone())],
            audit("key.remove", json!({"member": member, "key_id": key_id})),
            false,
            now,
        )
    }

    // ---- enrolment ----------------------------------------------------------------------------

    fn enrollment_view(r: &EnrollmentRecord) -> EnrollmentView {
        EnrollmentView {
            server_id: r.server_id.clone(),
            status: r.status,
            addresses: r.addresses.clone(),
            member_key_id: r.member_key_id.clone(),
            submitted_at: r.submitted_at,
            decided_at: r.decided_at,
            certificate_pem: r.certificate_der.as_deref().map(certs::cert_to_pem),
        }
    }

    pub(crate) fn list_enrollments(&self) -> Vec<EnrollmentView> {
        self.enrollments
            .values()
            .map(Self::enrollment_view)
            .collect()
    }

    pub(crate) fn enrollment(
        &self,
        id: &SecurityServerId,
    ) -> Result<EnrollmentView, RegistryError> {
        self.enrollments
            .get(id)
            .map(Self::enrollment_view)
            .ok_or_else(|| RegistryError::NotFound(format!("no enrolment request for {id}")))
    }

    pub(crate) fn issue_token(
        &mut self,
        server_id: &SecurityServerId,
        now: i64,
    ) -> Result<IssuedToken, RegistryError> {
        self.own_instance(&format!("server {server_id}"), server_id.owner().instance())?;
        if !self.state.members.contains_key(server_id.owner()) {
            return Err(not_found(format!("member {}", server_id.owner())));
        }
        if self.state.servers.contains_key(server_id) {
            return Err(RegistryError::Conflict(format!(
                "security server {server_id} is already approved; remove it first to re-enrol"
            )));
        }
        let token = util::random_hex(32).map_err(certs::Error::from)?;
        let expires_at = now.saturating_add(self.token_validity);
        let record = TokenRecord {
            server_id: server_id.clone(),
            issued_at: now,
            expires_at,
            used_at: None,
        };
        self.execute(
            vec![Change::PutToken(token_hash(&token), record)],
            audit(
                "token.issue",
                json!({"server_id": server_id, "expires_at": expires_at}),
            ),
            false,
            now,
        )?;
        Ok(IssuedToken {
            server_id: server_id.clone(),
            token,
            expires_at,
        })
    }

    /// A security server's enrolment request (the POSTed `SignedEnrollmentRequest` bytes).
    /// With a valid token it is approved at once; without one it waits for the operator.
    pub(crate) fn submit_enrollment(
        &mut self,
        body: &[u8],
        now: i64,
    ) -> Result<EnrollmentStatusView, RegistryError> {
        let (request, token) = verify_enrollment(body, &self.instance)?;
        request.check_fresh(now)?;
        let id = request.server_id().clone();
        if !self.state.members.contains_key(id.owner()) {
            return Err(not_found(format!("member {}", id.owner())));
        }
        if self.state.servers.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "security server {id} is already approved; the operator must remove it before it can enrol again"
            )));
        }
        let pending = EnrollmentRecord {
            server_id: id.clone(),
            status: EnrollmentStatus::Pending,
            addresses: request.addresses().to_vec(),
            member_key_id: request.member_key().key_id(),
            submitted_at: now,
            decided_at: None,
            signed_request: request.envelope().to_vec(),
            certificate_der: None,
        };
        let record = if token.is_empty() {
            self.execute(
                vec![Change::PutEnrollment(pending.clone())],
                audit(
                    "enrollment.submit",
                    json!({"server_id": id, "addresses": pending.addresses}),
                ),
                false,
                now,
            )?;
            pending
        } else {
            let hash = token_hash(&token);
            let mut token_record = match self.tokens.get(&hash) {
                None => Err("token is unknown"),
                Some(t) => t.refusal(&id, now).map_or(Ok(t.clone()), Err),
            }
            .map_err(|reason| {
                tracing::warn!(server_id = %id, reason, "enrolment token refused");
                RegistryError::InvalidToken(format!(
                    "the enrolment token is not valid for {id} (unknown, used, expired or issued for another server)"
                ))
            })?;
            token_record.used_at = Some(now);
            let (mut changes, record) = self.approval(&request, pending, now)?;
            changes.push(Change::PutToken(hash, token_record));
            self.execute(
                changes,
                audit(
                    "enrollment.approve",
                    json!({"server_id": id, "by": "token", "addresses": record.addresses}),
                ),
                false,
                now,
            )?;
            record
        };
        Ok(EnrollmentStatusView::from_record(&record))
    }

    pub(crate) fn approve_enrollment(
        &mut self,
        id: &SecurityServerId,
        now: i64,
    ) -> Result<EnrollmentView, RegistryError> {
        let record = self.pending(id)?;
        // Verified when it was submitted; verifying again is what yields the proof value.
        let (request, _) = verify_enrollment(&record.signed_request, &self.instance)
            .map_err(|e| RegistryError::Internal(format!("stored enrolment request: {e}")))?;
        if !self.state.members.contains_key(id.owner()) {
            return Err(not_found(format!("member {}", id.owner())));
        }
        let (changes, record) = self.approval(&request, record, now)?;
        self.execute(
            changes,
            audit(
                "enrollment.approve",
                json!({"server_id": id, "by": "operator", "addresses": record.addresses}),
            ),
            false,
            now,
        )?;
        Ok(Self::enrollment_view(&record))
    }

    pub(crate) fn reject_enrollment(
        &mut self,
        id: &SecurityServerId,
        now: i64,
    ) -> Result<EnrollmentView, RegistryError> {
        let mut record = self.pending(id)?;
        record.status = EnrollmentStatus::Rejected;
        record.decided_at = Some(now);
        self.execute(
            vec![Change::PutEnrollment(record.clone())],
            audit("enrollment.reject", json!({"server_id": id})),
            false,
            now,
        )?;
        Ok(Self::enrollment_view(&record))
    }

    fn pending(&self, id: &SecurityServerId) -> Result<EnrollmentRecord, RegistryError> {
        let record = self
            .enrollments
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(format!("no enrolment request for {id}")))?;
        if record.status != EnrollmentStatus::Pending {
            return Err(RegistryError::Conflict(format!(
                "the enrolment request of {id} is {}, not pending",
                record.status.as_str()
            )));
        }
        Ok(record)
    }

    /// The changes that approve a verified request: the CA certifies the server's TLS key, the
    /// server and (if new) the member signing key enter the configuration.
    fn approval(
        &self,
        request: &VerifiedEnrollment,
        mut record: EnrollmentRecord,
        now: i64,
    ) -> Result<(Vec<Change>, EnrollmentRecord), RegistryError> {
        let id = request.server_id();
        let owner = id.owner();
        if self.state.servers.contains_key(id) {
            return Err(RegistryError::Conflict(format!(
                "security server {id} is already approved"
            )));
        }
        let mut changes = Vec::new();
        let key_id = request.member_key().key_id();
        match self.state.key_owner(&key_id) {
            Some(m) if m != owner => {
                return Err(RegistryError::Conflict(format!(
                    "member signing key {key_id} is already listed for member {m}"
                )));
            }
            Some(_) => {}
            None => changes.push(Change::PutKey(
                owner.clone(),
                key_id,
                KeyRecord {
                    public_key: *request.member_key(),
                    valid_from: now,
                    valid_until: None,
                },
            )),
        }
        let certificate = self
            .ca
            .issue(
                &id.to_string(),
                request.tls_public_key_der(),
                &request.hosts(),
                TLS_VALIDITY,
                &*self.clock,
            )
            .map_err(|e| {
                RegistryError::BadRequest(format!("cannot certify the server's TLS key: {e}"))
            })?;
        changes.push(Change::PutServer(
            id.clone(),
            ServerRecord::new(
                request.addresses().to_vec(),
                certificate.clone(),
                BTreeSet::new(),
            ),
        ));
        record.status = EnrollmentStatus::Approved;
        record.decided_at = Some(now);
        record.certificate_der = Some(certificate);
        changes.push(Change::PutEnrollment(record.clone()));
        Ok((changes, record))
    }
}
