//! The server's local configuration (X-Road's "serverconf"): which services this server provides
//! for its hosted subsystems (service code → provider information system), and who may call them
//! (access rights). Changed through the admin API and CLI; a change applies to the next request
//! without a restart, because readers take an immutable snapshot.
//!
//! # Storage
//!
//! [`ServerConf::open`] keeps the configuration in a redb database (`serverconf.redb` in the data
//! directory). Every change is one write transaction holding the whole new configuration and its
//! audit record (DESIGN §8); the in-memory snapshot is swapped only after the transaction has
//! committed, so memory is never ahead of disk and no change is ever without its audit record.
//! The configuration is written whole rather than record by record: it is small (services and
//! grants of one server), and what is on disk is then by construction exactly the snapshot
//! readers see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use certs::{Clock, SystemClock};
use globalconf::{ClientId, ServiceId, SubsystemId};
use serde::{Deserialize, Serialize};

use crate::client_auth::ClientAuth;
use crate::usage::{SuppressedClient, Suppression};
use exchange::access::{AccessRights, Grant};
use exchange::metaservice;

/// The longest `timeout_secs` a service may have (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// One service a hosted subsystem provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// `INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE`.
    pub id: ServiceId,
    /// Base URL of the provider's information system; the request path and query are appended.
    pub url: String,
    /// How long the provider's information system may take to answer.
    pub timeout_secs: u64,
    /// The service's OpenAPI document, served by the `getOpenAPI` metaservice.
    #[serde(default)]
    pub openapi: Option<String>,
    /// What residents see the service as, by language (`ja`, `en`): `住民票` rather than
    /// `residentRecord`. `findUsage` passes them on to the resident portal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

impl ServiceEntry {
    /// Checks the URL (`http://` or `https://` with a host, and no query or fragment, because the
    /// request's path and query are appended), the timeout (1 s to [`MAX_TIMEOUT_SECS`]) and that
    /// an OpenAPI description reads as OpenAPI 3 (`getOpenAPI` serves it, `listMethods` lists its
    /// operations).
    pub fn validate(&self) -> Result<(), ServerConfError> {
        for (lang, name) in &self.names {
            let lang_ok = (2..=8).contains(&lang.len())
                && lang.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
            let name_ok = !name.trim().is_empty()
                && name.chars().count() <= 200
                && !name.chars().any(char::is_control);
            if !lang_ok || !name_ok {
                return Err(ServerConfError::Invalid(format!(
                    "name {lang:?} = {name:?}: a language code (ja, en) and 1 to 200 characters \
                     without control characters"
                )));
            }
        }
        if let Some(text) = &self.openapi {
            exchange::openapi::Description::parse(text).map_err(|e| {
                ServerConfError::Invalid(format!("the OpenAPI description of {}: {e}", self.id))
            })?;
        }
        let invalid = |why: &str| {
            Err(ServerConfError::Invalid(format!(
                "service URL {:?} {why}",
                self.url
            )))
        };
        let Ok(uri) = self.url.parse::<http::Uri>() else {
            return invalid("is not a URL");
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return invalid("is not http:// or https://");
        }
        if uri.host().is_none_or(str::is_empty) {
            return invalid("has no host");
        }
        if uri.query().is_some() || self.url.contains('#') {
            return invalid("may not have a query or a fragment");
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return invalid("may not carry user information");
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(ServerConfError::Invalid(format!(
                "timeout_secs must be 1 to {MAX_TIMEOUT_SECS}"
            )));
        }
        Ok(())
    }
}

/// An immutable view of the local configuration.
#[derive(Debug, Clone, Default)]
pub struct LocalConf {
    pub services: BTreeMap<ServiceId, ServiceEntry>,
    pub access: AccessRights,
    /// Resident transparency: whose accesses residents do not see, or see late (one rule per
    /// client, in client order).
    pub suppressions: Vec<Suppression>,
    /// How each hosted subsystem's information systems must connect (one rule per subsystem,
    /// in subsystem order; the default for the others is [`crate::client_auth::default_connection`]).
    pub client_auth: Vec<ClientAuth>,
}

impl LocalConf {
    /// The service with this identifier (a versioned call falls back to the unversioned entry).
    pub fn service(&self, id: &ServiceId) -> Option<&ServiceEntry> {
        self.services.get(id).or_else(|| {
            id.version()?;
            let unversioned = id.subsystem().service(id.code(), None).ok()?;
            self.services.get(&unversioned)
        })
    }

    /// The rule for `subsystem`'s information systems (or a member's calling as itself), if
    /// it has one.
    pub fn client_auth_of(&self, subsystem: &ClientId) -> Option<&ClientAuth> {
        self.client_auth.iter().find(|r| &r.subsystem == subsystem)
    }

    /// The services one hosted subsystem provides, in identifier order.
    pub fn services_of<'a>(
        &'a self,
        provider: &'a SubsystemId,
    ) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.services
            .values()
            .filter(move |s| s.id.subsystem() == provider)
    }

    /// Whether some service entry could be called under `grant`: one with the grant's
    /// subsystem and code, and, for a versioned grant, that version or no version (the
    /// unversioned entry serves every version).
    fn has_service_for(&self, grant: &Grant) -> bool {
        let g = &grant.service;
        // Every hosted subsystem answers `findUsage`; there is no service entry to add first.
        if g.code() == metaservice::FIND_USAGE && g.version().is_none() {
            return true;
        }
        self.services.keys().any(|s| {
            s.subsystem() == g.subsystem()
                && s.code() == g.code()
                && (s.version().is_none() || s.version() == g.version())
        })
    }
}

/// Why the local configuration could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfError {
    #[error("invalid: {0}")]
    Invalid(String),
    /// A grant for a service this server does not provide.
    #[error("no service {0} is configured; add the service before granting it")]
    UnknownService(Box<ServiceId>),
    #[error("storage: {0}")]
    Storage(String),
    /// A change through the admin API while the configuration is declared in a file.
    #[error(
        "this server's services, access rights, suppression and information-system rules are \
         declared in {0}: change that file (every node of the cluster loads it)"
    )]
    Declared(PathBuf),
}

/// One recorded change of the local configuration (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the audit table, from 1.
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// `service.add`, `service.remove`, `access.grant`, `access.revoke`, `suppression.add`,
    /// `suppression.remove`, `client_auth.set` or `client_auth.remove`.
    pub action: String,
    pub details: serde_json::Value,
}

mod store;
use store::{Store, storage};

/// What one change did, for the audit table; `None` from a change that changed nothing.
struct Record {
    action: &'static str,
    details: serde_json::Value,
}

/// The local configuration and its current snapshot.
#[derive(Debug)]
pub struct ServerConf {
    current: RwLock<Arc<LocalConf>>,
    /// Held for the whole of a change, so changes apply one at a time; readers are not blocked
    /// while a change is written.
    store: Mutex<Store>,
    clock: Arc<dyn Clock>,
    /// The file the configuration is declared in (`[declared]`): then only
    /// [`ServerConf::apply_declared`] changes it.
    declared: Option<PathBuf>,
}

impl Default for ServerConf {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl ServerConf {
    /// An empty configuration held in memory only (its audit records too).
    pub fn in_memory() -> Self {
        Self::with_store(Store::Memory { audit: Vec::new() }, LocalConf::default())
    }

    /// Opens the database at `path`, creating it if missing, and loads the configuration.
    pub fn open(path: &Path) -> Result<ServerConf, ServerConfError> {
        let (store, conf) = Store::open(path)?;
        Ok(Self::with_store(store, conf))
    }

    fn with_store(store: Store, conf: LocalConf) -> Self {
        Self {
            current: RwLock::new(Arc::new(conf)),
            store: Mutex::new(store),
            clock: Arc::new(SystemClock),
            declared: None,
        }
    }

    /// Copies the database, as one read transaction sees it, into a new file at `path`: a
    /// backup's copy (the file itself cannot be copied while it may be written).
    pub fn snapshot_to(&self, path: &Path) -> Result<(), ServerConfError> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot_to(path)
    }

    /// The configuration is declared in `file` from now on: the admin API's changes are refused
    /// with [`ServerConfError::Declared`].
    pub fn declared_in(mut self, file: PathBuf) -> Self {
        self.declared = Some(file);
        self
    }

    /// Makes `desired` the configuration, with one audit record per change in `changes` (see
    /// `crate::declared::diff`), in one transaction. Nothing happens when `changes` is empty.
    pub fn apply_declared(
        &self,
        desired: LocalConf,
        changes: Vec<(String, serde_json::Value)>,
    ) -> Result<(), ServerConfError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let time = self.clock.unix_now();
        let entries = changes
            .into_iter()
            .map(|(action, details)| AuditEntry {
                seq: 0,
                time,
                action,
                details,
            })
            .collect();
        store.commit_all(&desired, entries)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(desired);
        tracing::info!("declared local configuration applied");
        Ok(())
    }

    /// The clock that timestamps audit records (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current snapshot; cheap (one `Arc` clone).
    pub fn snapshot(&self) -> Arc<LocalConf> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The newest `limit` audit records, oldest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, ServerConfError> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .audit(limit)
    }

    /// Applies `change` to a copy of the snapshot; if it changed something, commits the copy
    /// with its audit record, and only then makes it the snapshot.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut LocalConf) -> Result<(T, Option<Record>), ServerConfError>,
    ) -> Result<T, ServerConfError> {
        if let Some(file) = &self.declared {
            return Err(ServerConfError::Declared(file.clone()));
        }
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        // Changes hold `store`, so no other change can swap the snapshot until we are done.
        let mut next = LocalConf::clone(&self.snapshot());
        let (result, record) = change(&mut next)?;
        let Some(record) = record else {
            return Ok(result);
        };
        let entry = AuditEntry {
            seq: 0,
            time: self.clock.unix_now(),
            action: record.action.to_owned(),
            details: record.details,
        };
        store.commit(&next, entry)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        tracing::info!(action = record.action, "local configuration changed");
        Ok(result)
    }

    /// Adds or replaces a service; returns whether it was new.
    pub fn add_service(&self, entry: ServiceEntry) -> Result<bool, ServerConfError> {
        entry.validate()?;
        self.update(|c| {
            let old = c.services.get(&entry.id);
            if old == Some(&entry) {
                return Ok((false, None));
            }
            let new = old.is_none();
            let record = Record {
                action: "service.add",
                details: serde_json::json!({
                    "id": entry.id,
                    "url": entry.url,
                    "timeout_secs": entry.timeout_secs,
                    "openapi_bytes": entry.openapi.as_ref().map(String::len),
                    "replaced": !new,
                }),
            };
            c.services.insert(entry.id.clone(), entry);
            Ok((new, Some(record)))
        })
    }

    /// Removes a service and the grants for it (also versioned grants that only this entry
    /// served); returns whether it existed.
    pub fn remove_service(&self, id: &ServiceId) -> Result<bool, ServerConfError> {
        self.update(|c| {
            if c.services.remove(id).is_none() {
                return Ok((false, None));
            }
            let stale: Vec<Grant> = c
                .access
                .grants()
                .iter()
                .filter(|g| {
                    &g.service == id
                        || (g.service.subsystem() == id.subsystem()
                            && g.service.code() == id.code()
                            && !c.has_service_for(g))
                })
                .cloned()
                .collect();
            for g in &stale {
                c.access.remove(g);
            }
            let record = Record {
                action: "service.remove",
                details: serde_json::json!({"id": id, "grants_removed": stale}),
            };
            Ok((true, Some(record)))
        })
    }

    /// Adds a grant for a configured service; returns false if it was already there.
    pub fn grant(&self, grant: Grant) -> Result<bool, ServerConfError> {
        grant
            .validate()
            .map_err(|e| ServerConfError::Invalid(e.to_string()))?;
        self.update(|c| {
            if !c.has_service_for(&grant) {
                return Err(ServerConfError::UnknownService(Box::new(
                    grant.service.clone(),
                )));
            }
            let details = serde_json::to_value(&grant).map_err(storage)?;
            if !c.access.add(grant) {
                return Ok((false, None));
            }
            let record = Record {
                action: "access.grant",
                details,
            };
            Ok((true, Some(record)))
        })
    }

    /// Removes a grant; returns whether it existed.
    pub fn revoke(&self, grant: &Grant) -> Result<bool, ServerConfError> {
        self.update(|c| {
            if !c.access.remove(grant) {
                return Ok((false, None));
            }
            let record = Record {
                action: "access.revoke",
                details: serde_json::to_value(grant).map_err(storage)?,
            };
            Ok((true, Some(record)))
        })
    }

    /// Adds a suppression rule, or replaces the rule for the same client; returns whether it
    /// was new.
    pub fn suppress(&self, rule: Suppression) -> Result<bool, ServerConfError> {
        rule.validate().map_err(ServerConfError::Invalid)?;
        self.update(|c| {
            let old = c.suppressions.iter().position(|r| r.client == rule.client);
            if old.is_some_and(|i| c.suppressions[i] == rule) {
                return Ok((false, None));
            }
            let record = Record {
                action: "suppression.add",
                details: serde_json::json!({
                    "rule": rule,
                    "replaced": old.map(|i| c.suppressions[i].clone()),
                }),
            };
            match old {
                Some(i) => c.suppressions[i] = rule,
                None => {
                    c.suppressions.push(rule);
                    c.suppressions.sort_by(|a, b| a.client.cmp(&b.client));
                }
            }
            Ok((old.is_none(), Some(record)))
        })
    }

    /// Removes the suppression rule for `client`; returns whether there was one.
    pub fn unsuppress(&self, client: &SuppressedClient) -> Result<bool, ServerConfError> {
        self.update(|c| {
            let Some(i) = c.suppressions.iter().position(|r| &r.client == client) else {
                return Ok((false, None));
            };
            let removed = c.suppressions.remove(i);
            let record = Record {
                action: "suppression.remove",
                details: serde_json::json!({ "rule": removed }),
            };
            Ok((true, Some(record)))
        })
    }

    /// Sets how `rule.subsystem`'s information systems must connect, replacing its rule;
    /// returns whether it had none.
    pub fn set_client_auth(&self, mut rule: ClientAuth) -> Result<bool, ServerConfError> {
        rule.certs.sort();
        rule.certs.dedup();
        rule.validate().map_err(ServerConfError::Invalid)?;
        self.update(|c| {
            let old = c
                .client_auth
                .iter()
                .position(|r| r.subsystem == rule.subsystem);
            if old.is_some_and(|i| c.client_auth[i] == rule) {
                return Ok((false, None));
            }
            let record = Record {
                action: "client_auth.set",
                details: serde_json::json!({
                    "rule": &rule,
                    "replaced": old.map(|i| c.client_auth[i].clone()),
                }),
            };
            match old {
                Some(i) => c.client_auth[i] = rule,
                None => {
                    c.client_auth.push(rule);
                    c.client_auth.sort_by(|a, b| a.subsystem.cmp(&b.subsystem));
                }
            }
            Ok((old.is_none(), Some(record)))
        })
    }

    /// Removes `subsystem`'s rule (it gets the default again); returns whether there was one.
    pub fn remove_client_auth(&self, subsystem: &ClientId) -> Result<bool, ServerConfError> {
        self.update(|c| {
            let Some(i) = c.client_auth.iter().position(|r| &r.subsystem == subsystem) else {
                return Ok((false, None));
            };
            let removed = c.client_auth.remove(i);
            let record = Record {
                action: "client_auth.remove",
                details: serde_json::json!({ "rule": removed }),
            };
            Ok((true, Some(record)))
        })
    }
}

#[cfg(test)]
mod tests;
