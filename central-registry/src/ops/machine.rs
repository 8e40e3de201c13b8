//! [`Core`]: the registry's state and its database, and the one way they change. Every admin
//! operation checks its request against the in-memory state, turns it into record-level
//! [`Change`]s and hands them to [`Core::execute`], which applies them in memory, signs the next
//! configuration if they affect it, and commits changes + audit entry + publication in one redb
//! write transaction. If the commit fails, memory is reloaded from the database, so the two never
//! drift apart. No async and no tokio here: the caller holds the lock and picks the thread.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use certs::{Clock, KeyId, LiveIdentity, SigningKey};
use globalconf::{Anchor, InstanceId, MemberId, SecurityServerId};
use prost::Message as _;
use proto::v1 as pb;

use crate::datadir::InstanceCas;
use crate::enrollment::{EnrollmentRecord, TokenRecord};
use crate::error::RegistryError;
use crate::state::{KeyRequestRecord, PublicationSettings, RegistryState, build_configuration};
use crate::store::{AuditEntry, Change, Publication, Store};

/// The registry's state under its lock: what the admin operations ([`super::AdminOp::apply`])
/// read and change. Only this crate makes one.
pub struct Core {
    pub(crate) store: Store,
    pub(crate) instance: InstanceId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) signing_key: SigningKey,
    /// The anchor as `init` wrote it: its signing keys start the key history.
    pub(crate) anchor: Anchor,
    /// The instance CAs: the issuing one and, during a rollover, the previous one.
    pub(crate) cas: InstanceCas,
    /// The registry's own HTTPS identity, and the names it is issued for.
    pub(crate) tls_identity: LiveIdentity,
    pub(crate) own_hosts: Vec<String>,
    /// The anchor and CA certificates the public endpoint serves (they change with the CAs).
    pub(crate) served: Arc<RwLock<Served>>,
    pub(crate) settings: PublicationSettings,
    pub(crate) republish_interval: Duration,
    /// Seconds an enrolment token stays valid.
    pub(crate) token_validity: i64,
    pub(crate) state: RegistryState,
    pub(crate) enrollments: BTreeMap<SecurityServerId, EnrollmentRecord>,
    pub(crate) tokens: HashMap<String, TokenRecord>,
    /// Keys servers asked to list, waiting for the operator (by member and key id).
    pub(crate) key_requests: BTreeMap<(MemberId, KeyId), KeyRequestRecord>,
    /// Seconds from the approval of a requested key to its `valid_from`.
    pub(crate) key_activation_delay: i64,
    /// How the configuration-signing keys changed since the anchor; every envelope carries it.
    pub(crate) key_history: Vec<pb::KeyAnnouncement>,
    /// Where the signing key files are (a rollover writes them).
    pub(crate) data_dir: crate::datadir::DataDir,
    /// The configuration file as loaded, for backups.
    pub(crate) config_toml: String,
    pub(crate) publication: Option<Arc<Publication>>,
}

/// What the public endpoint serves besides the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Served {
    pub(crate) anchor_toml: String,
    pub(crate) ca_pem: String,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("instance", &self.instance)
            .field("serial", &self.publication.as_ref().map(|p| p.serial))
            .finish_non_exhaustive()
    }
}

/// The audit entry of an operation: its action name and details (never a token or key).
pub(crate) fn audit(
    action: &str,
    details: serde_json::Value,
) -> Option<(String, serde_json::Value)> {
    Some((action.to_owned(), details))
}

pub(crate) fn not_found(what: impl fmt::Display) -> RegistryError {
    RegistryError::NotFound(format!("{what} is not registered"))
}

impl Core {
    /// Applies `changes` in memory and in one store transaction (with the audit entry and, if
    /// the configuration changed or `force_publish`, a newly signed configuration).
    pub(crate) fn execute(
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
            Change::PutKeyRequest(member, key_id, r) => {
                self.key_requests.insert((member, key_id), r);
            }
            Change::DeleteKeyRequest(member, key_id) => {
                self.key_requests.remove(&(member, key_id));
            }
            Change::PutKeyHistory(history) => {
                self.key_history = history;
            }
            Change::PutFederation(id, r) => {
                s.federated.insert(id, r);
            }
            Change::DeleteFederation(id) => {
                s.federated.remove(&id);
            }
        }
    }

    /// Replaces memory with what the database holds.
    pub(crate) fn reload(&mut self) -> Result<(), RegistryError> {
        let loaded = self.store.load(&self.instance)?;
        self.state = loaded.state;
        self.enrollments = loaded.enrollments;
        self.tokens = loaded.tokens;
        self.key_requests = loaded.key_requests;
        self.key_history = loaded.key_history;
        self.publication = loaded.publication.map(Arc::new);
        Ok(())
    }

    fn sign_next(&self, now: i64) -> Publication {
        let serial = self.publication.as_ref().map_or(1, |p| p.serial + 1);
        let conf = build_configuration(&self.state, serial, now, &self.settings);
        let envelope =
            globalconf::signed::sign_with_history(&conf, &self.signing_key, &self.key_history);
        Publication {
            serial,
            generated_at: now,
            expires_at: conf.expires_at,
            envelope: envelope.into(),
        }
    }

    /// Whether the served configuration must be re-signed: none yet, older than the republish
    /// interval, or made with other settings or another key than the current ones.
    pub(crate) fn publication_due(&self, now: i64) -> bool {
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
            || conf.ca_certificates != self.settings.ca_certificates
            || conf.parameters.as_ref() != Some(&self.settings.parameters)
            || conf.expires_at.saturating_sub(conf.generated_at) != validity
    }

    /// Puts what the instance CAs are into everything that shows them: the next configuration's
    /// CA list, `anchor.toml` and the public endpoint's anchor and `ca.pem`, and the registry's
    /// own certificate chain (reissued under the issuing CA, with the cross-certificate during a
    /// rollover). Called at start and after a CA change; each part is left alone when it is
    /// already right.
    pub(crate) fn apply_cas(&mut self) -> Result<(), RegistryError> {
        self.settings.ca_certificates = self.cas.published();
        let anchor = Anchor::new(
            self.instance.clone(),
            self.anchor.registry_urls().to_vec(),
            self.cas.published_pem(),
            self.anchor.signing_keys().to_vec(),
        )?;
        let anchor_toml = anchor.to_toml()?;
        if std::fs::read_to_string(self.data_dir.anchor())
            .ok()
            .as_deref()
            != Some(&anchor_toml)
        {
            certs::write_file_atomic(&self.data_dir.anchor(), anchor_toml.as_bytes())?;
        }
        *self.served.write().unwrap_or_else(PoisonError::into_inner) = Served {
            anchor_toml,
            ca_pem: self.cas.published_pem(),
        };
        self.renew_own_certificate()
    }

    /// Renews the registry's own TLS certificate when due or issued by another CA than the
    /// issuing one ([`crate::datadir::renew_own_certificate`]); the public endpoint presents the
    /// new one from the next handshake.
    pub(crate) fn renew_own_certificate(&self) -> Result<(), RegistryError> {
        let renewed = crate::datadir::renew_own_certificate(
            &self.data_dir,
            &self.instance,
            &self.cas,
            &self.own_hosts,
            &self.tls_identity.current(),
            &*self.clock,
        )?;
        if let Some(identity) = renewed {
            self.tls_identity.replace(identity)?;
        }
        Ok(())
    }

    /// Re-signs the configuration if [`Core::publication_due`], without an audit entry.
    pub(crate) fn republish_if_due(&mut self, now: i64) -> Result<(), RegistryError> {
        if self.publication_due(now) {
            self.execute(Vec::new(), None, true, now)?;
        }
        Ok(())
    }

    pub(crate) fn own_instance(&self, what: &str, instance: &str) -> Result<(), RegistryError> {
        if instance == self.instance.as_str() {
            Ok(())
        } else {
            Err(RegistryError::BadRequest(format!(
                "{what} belongs to instance {instance}, this registry serves {}",
                self.instance
            )))
        }
    }
}
