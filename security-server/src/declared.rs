//! A local configuration declared in one file (`[declared]`; docs/clusters.md): the services,
//! access rights, suppression rules and information-system rules of every node of a cluster,
//! reviewed like code and loaded by each node, so that the nodes never drift apart.
//!
//! Each node reads the file every `reload_interval_secs`. A file that changed is checked whole,
//! with the same rules as the admin API's changes ([`load`]); if it holds, the node makes it its
//! configuration in one transaction, with an audit record for each change ([`diff`]). If it does
//! not, nothing changes, the node goes on serving what it had, and `status` says why. Meanwhile
//! the admin API refuses changes (`Admin.Declared`). `security-server declared check` shows what
//! a file would change on a running node without applying it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use exchange::access::Grant;
use globalconf::ServiceId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::client_auth::ClientAuth;
use crate::serverconf::{LocalConf, ServerConf, ServiceEntry};
use crate::usage::Suppression;

/// The declared file (TOML): `[[services]]`, `[[access]]`, `[[suppressions]]`,
/// `[[client_auth]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredFile {
    #[serde(default)]
    pub services: Vec<DeclaredService>,
    #[serde(default)]
    pub access: Vec<Grant>,
    #[serde(default)]
    pub suppressions: Vec<Suppression>,
    #[serde(default)]
    pub client_auth: Vec<ClientAuth>,
}

/// A service as the file declares it: a [`ServiceEntry`], with its OpenAPI document in a file
/// beside the declared one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredService {
    pub id: ServiceId,
    pub url: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The OpenAPI document, relative to the declared file.
    #[serde(default)]
    pub openapi_file: Option<PathBuf>,
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

fn default_timeout_secs() -> u64 {
    30
}

/// Why a declared file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A declared file that holds: the configuration it declares, and the SHA-256 of its bytes.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub conf: LocalConf,
    pub sha256: [u8; 32],
}

/// Reads and checks the declared file at `path`, whole: every entry as the admin API would
/// take it (a grant needs its service), and none twice.
pub fn load(path: &Path) -> Result<Loaded, DeclaredError> {
    let bytes = std::fs::read(path).map_err(|source| DeclaredError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = Sha256::digest(&bytes).into();
    let invalid = |message: String| DeclaredError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let file: DeclaredFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let conf = ServerConf::in_memory();
    for s in file.services {
        let openapi = s
            .openapi_file
            .map(|f| {
                let f = base.join(f);
                std::fs::read_to_string(&f).map_err(|source| DeclaredError::Io { path: f, source })
            })
            .transpose()?;
        let id = s.id.clone();
        let new = conf
            .add_service(ServiceEntry {
                id: s.id,
                url: s.url,
                timeout_secs: s.timeout_secs,
                openapi,
                names: s.names,
            })
            .map_err(|e| invalid(format!("service {id}: {e}")))?;
        if !new {
            return Err(invalid(format!("service {id} is declared twice")));
        }
    }
    for grant in file.access {
        let what = format!("access to {} for {}", grant.service, grant.subject);
        if !conf
            .grant(grant)
            .map_err(|e| invalid(format!("{what}: {e}")))?
        {
            return Err(invalid(format!("{what} is declared twice")));
        }
    }
    for rule in file.suppressions {
        let client = rule.client.to_string();
        if !conf
            .suppress(rule)
            .map_err(|e| invalid(format!("suppression of {client}: {e}")))?
        {
            return Err(invalid(format!(
                "suppression of {client} is declared twice"
            )));
        }
    }
    for rule in file.client_auth {
        let subsystem = rule.subsystem.to_string();
        if !conf
            .set_client_auth(rule)
            .map_err(|e| invalid(format!("client_auth of {subsystem}: {e}")))?
        {
            return Err(invalid(format!(
                "client_auth of {subsystem} is declared twice"
            )));
        }
    }
    Ok(Loaded {
        conf: LocalConf::clone(&conf.snapshot()),
        sha256,
    })
}

/// The changes that make `current` into `desired`, as audit records: the admin API's action
/// names (`service.add`, `access.revoke`, …) with `declared` (which file, which version) in
/// their details.
pub fn diff(current: &LocalConf, desired: &LocalConf, declared: &Value) -> Vec<(String, Value)> {
    let mut changes = Vec::new();
    let mut record = |action: &str, mut details: Value| {
        if let Some(map) = details.as_object_mut().filter(|_| !declared.is_null()) {
            map.insert("declared".into(), declared.clone());
        }
        changes.push((action.to_owned(), details));
    };
    for (id, entry) in &desired.services {
        let old = current.services.get(id);
        if old != Some(entry) {
            record(
                "service.add",
                json!({
                    "id": id,
                    "url": entry.url,
                    "timeout_secs": entry.timeout_secs,
                    "openapi_bytes": entry.openapi.as_ref().map(String::len),
                    "replaced": old.is_some(),
                }),
            );
        }
    }
    for id in current.services.keys() {
        if !desired.services.contains_key(id) {
            record("service.remove", json!({ "id": id }));
        }
    }
    for grant in desired.access.grants() {
        if !current.access.grants().contains(grant) {
            record("access.grant", json!(grant));
        }
    }
    for grant in current.access.grants() {
        if !desired.access.grants().contains(grant) {
            record("access.revoke", json!(grant));
        }
    }
    for rule in &desired.suppressions {
        let old = current
            .suppressions
            .iter()
            .find(|r| r.client == rule.client);
        if old != Some(rule) {
            record("suppression.add", json!({ "rule": rule, "replaced": old }));
        }
    }
    for rule in &current.suppressions {
        if !desired.suppressions.iter().any(|r| r.client == rule.client) {
            record("suppression.remove", json!({ "rule": rule }));
        }
    }
    for rule in &desired.client_auth {
        let old = current
            .client_auth
            .iter()
            .find(|r| r.subsystem == rule.subsystem);
        if old != Some(rule) {
            record("client_auth.set", json!({ "rule": rule, "replaced": old }));
        }
    }
    for rule in &current.client_auth {
        if !desired
            .client_auth
            .iter()
            .any(|r| r.subsystem == rule.subsystem)
        {
            record("client_auth.remove", json!({ "rule": rule }));
        }
    }
    changes
}

/// Where the declared file stands on this node (`status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredStatus {
    pub file: PathBuf,
    /// The SHA-256 (hex) of the version applied (or found already in force) last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_sha256: Option<String>,
    /// When it was applied (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<i64>,
    /// Why the file as it is now is not applied; the node serves the version applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the declared file now and then, and applies a changed version that holds.
#[derive(Debug)]
pub struct Reloader {
    file: PathBuf,
    serverconf: Arc<ServerConf>,
    status: Arc<Mutex<DeclaredStatus>>,
    clock: Arc<dyn certs::Clock>,
    /// The bytes' hash read last, applied or not: an unchanged file is not checked again.
    last_read: Option<[u8; 32]>,
}

impl Reloader {
    pub fn new(
        file: PathBuf,
        serverconf: Arc<ServerConf>,
        clock: Arc<dyn certs::Clock>,
    ) -> Reloader {
        let status = Arc::new(Mutex::new(DeclaredStatus {
            file: file.clone(),
            ..DeclaredStatus::default()
        }));
        Reloader {
            file,
            serverconf,
            status,
            clock,
            last_read: None,
        }
    }

    /// What `status` shows of it.
    pub fn status(&self) -> Arc<Mutex<DeclaredStatus>> {
        Arc::clone(&self.status)
    }

    /// Reads the file; if it changed since the last read, applies it when it holds. Blocking.
    pub fn reload(&mut self) {
        let loaded = match load(&self.file) {
            Ok(loaded) => loaded,
            Err(e) => {
                let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                let message = e.to_string();
                if status.error.as_ref() != Some(&message) {
                    tracing::error!(error = %message, "the declared configuration is not applied; the last applied one still serves");
                    status.error = Some(message);
                }
                // Read again next time: a file being written may hold once it is complete.
                self.last_read = None;
                return;
            }
        };
        if self.last_read == Some(loaded.sha256) {
            return;
        }
        let sha256 = hex::encode(loaded.sha256);
        let declared = json!({ "file": self.file, "sha256": sha256 });
        let changes = diff(&self.serverconf.snapshot(), &loaded.conf, &declared);
        let count = changes.len();
        let applied = self.serverconf.apply_declared(loaded.conf, changes);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match applied {
            Ok(()) => {
                tracing::info!(changes = count, sha256 = %sha256, "declared configuration in force");
                self.last_read = Some(loaded.sha256);
                status.applied_sha256 = Some(sha256);
                status.applied_at = Some(self.clock.unix_now());
                status.error = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "the declared configuration could not be stored");
                status.error = Some(e.to_string());
            }
        }
    }

    /// Reloads every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: runtime::Shutdown) {
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(interval) => {}
            }
            self = match tokio::task::spawn_blocking(move || {
                self.reload();
                self
            })
            .await
            {
                Ok(reloader) => reloader,
                Err(e) => {
                    tracing::error!(error = %e, "the declared configuration reload failed");
                    return;
                }
            };
        }
    }
}

#[cfg(test)]
mod tests;
