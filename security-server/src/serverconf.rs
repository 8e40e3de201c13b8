//! The server's local configuration (X-Road's "serverconf"): which services this server provides
//! for its hosted subsystems (service code → provider information system), and who may call them
//! (access rights). Changed through the admin API and CLI; a change applies to the next request
//! without a restart, because readers take an immutable snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use globalconf::{ServiceId, SubsystemId};
use serde::{Deserialize, Serialize};

use crate::access::{AccessRights, Grant};

/// One service a hosted subsystem provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// An immutable view of the local configuration.
#[derive(Debug, Clone, Default)]
pub struct LocalConf {
    pub services: BTreeMap<ServiceId, ServiceEntry>,
    pub access: AccessRights,
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

    /// The services one hosted subsystem provides, in identifier order.
    pub fn services_of<'a>(&'a self, provider: &'a SubsystemId) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.services.values().filter(move |s| s.id.subsystem() == provider)
    }
}

/// Why the local configuration could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfError {
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// The local configuration and its current snapshot.
#[derive(Debug, Default)]
pub struct ServerConf {
    current: RwLock<Arc<LocalConf>>,
}

impl ServerConf {
    /// An empty configuration held in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The current snapshot; cheap (one `Arc` clone).
    pub fn snapshot(&self) -> Arc<LocalConf> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn update<T>(&self, change: impl FnOnce(&mut LocalConf) -> T) -> T {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next = LocalConf::clone(&guard);
        let result = change(&mut next);
        *guard = Arc::new(next);
        result
    }

    /// Adds or replaces a service; returns whether it was new.
    pub fn add_service(&self, entry: ServiceEntry) -> Result<bool, ServerConfError> {
        if !(entry.url.starts_with("http://") || entry.url.starts_with("https://")) {
            return Err(ServerConfError::Invalid(format!(
                "service URL {:?} is not http:// or https://",
                entry.url
            )));
        }
        if entry.timeout_secs == 0 {
            return Err(ServerConfError::Invalid("timeout_secs must be at least 1".into()));
        }
        Ok(self.update(|c| c.services.insert(entry.id.clone(), entry).is_none()))
    }

    /// Removes a service and the grants for it; returns whether it existed.
    pub fn remove_service(&self, id: &ServiceId) -> Result<bool, ServerConfError> {
        Ok(self.update(|c| {
            let existed = c.services.remove(id).is_some();
            let stale: Vec<Grant> = c.access.grants().iter().filter(|g| &g.service == id).cloned().collect();
            for g in &stale {
                c.access.remove(g);
            }
            existed
        }))
    }

    /// Adds a grant; returns false if it was already there.
    pub fn grant(&self, grant: Grant) -> Result<bool, ServerConfError> {
        grant
            .validate()
            .map_err(|e| ServerConfError::Invalid(e.to_string()))?;
        Ok(self.update(|c| c.access.add(grant)))
    }

    /// Removes a grant; returns whether it existed.
    pub fn revoke(&self, grant: &Grant) -> Result<bool, ServerConfError> {
        Ok(self.update(|c| c.access.remove(grant)))
    }
}
