//! How the local configuration is kept on disk: the whole configuration in one table, each
//! change's audit record in another, written in one transaction.

use std::path::Path;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{AuditEntry, LocalConf, ServerConfError, ServiceEntry};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Keys [`CONF_SERVICES`], [`CONF_GRANTS`], [`CONF_SUPPRESSIONS`] and [`CONF_CLIENT_AUTH`],
/// each a JSON array.
const CONF: Table = TableDefinition::new("local_conf");
const CONF_SERVICES: &str = "services";
const CONF_GRANTS: &str = "grants";
const CONF_SUPPRESSIONS: &str = "suppressions";
const CONF_CLIENT_AUTH: &str = "client_auth";
/// Sequence number → JSON [`AuditEntry`].
const AUDIT: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit");

/// Where changes go.
#[derive(Debug)]
pub(super) enum Store {
    /// Tests and tools: nothing survives the process.
    Memory {
        audit: Vec<AuditEntry>,
    },
    Disk(Database),
}

pub(super) fn storage(e: impl std::fmt::Display) -> ServerConfError {
    ServerConfError::Storage(e.to_string())
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ServerConfError> {
    serde_json::to_vec(value).map_err(storage)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, ServerConfError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServerConfError::Storage(format!("stored {what} are unreadable: {e}")))
}

impl Store {
    pub(super) fn open(path: &Path) -> Result<(Self, LocalConf), ServerConfError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => ServerConfError::Storage(format!(
                "{} is open in another process (is the server already running?)",
                path.display()
            )),
            e => ServerConfError::Storage(format!("{}: {e}", path.display())),
        })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CONF).map_err(storage)?;
        txn.open_table(AUDIT).map_err(storage)?;
        txn.commit().map_err(storage)?;

        let txn = db.begin_read().map_err(storage)?;
        let table = txn.open_table(CONF).map_err(storage)?;
        let mut conf = LocalConf::default();
        if let Some(v) = table.get(CONF_SERVICES).map_err(storage)? {
            let services: Vec<ServiceEntry> = decode("services", v.value())?;
            conf.services = services.into_iter().map(|s| (s.id.clone(), s)).collect();
        }
        if let Some(v) = table.get(CONF_GRANTS).map_err(storage)? {
            conf.access = decode("grants", v.value())?;
        }
        if let Some(v) = table.get(CONF_SUPPRESSIONS).map_err(storage)? {
            conf.suppressions = decode("suppression rules", v.value())?;
        }
        if let Some(v) = table.get(CONF_CLIENT_AUTH).map_err(storage)? {
            conf.client_auth = decode("information system rules", v.value())?;
        }
        Ok((Store::Disk(db), conf))
    }

    /// Writes `conf` and appends `entry` (its `seq` is assigned here), all or nothing.
    pub(super) fn commit(
        &mut self,
        conf: &LocalConf,
        entry: AuditEntry,
    ) -> Result<(), ServerConfError> {
        self.commit_all(conf, vec![entry])
    }

    /// Writes `conf` and appends `entries` (their `seq` assigned here), all or nothing.
    pub(super) fn commit_all(
        &mut self,
        conf: &LocalConf,
        entries: Vec<AuditEntry>,
    ) -> Result<(), ServerConfError> {
        match self {
            Store::Memory { audit } => {
                for mut entry in entries {
                    entry.seq = audit.last().map_or(1, |e| e.seq + 1);
                    audit.push(entry);
                }
                Ok(())
            }
            Store::Disk(db) => {
                let services: Vec<&ServiceEntry> = conf.services.values().collect();
                let services = encode(&services)?;
                let grants = encode(&conf.access)?;
                let suppressions = encode(&conf.suppressions)?;
                let client_auth = encode(&conf.client_auth)?;
                let txn = db.begin_write().map_err(storage)?;
                {
                    let mut table = txn.open_table(CONF).map_err(storage)?;
                    table
                        .insert(CONF_SERVICES, services.as_slice())
                        .map_err(storage)?;
                    table
                        .insert(CONF_GRANTS, grants.as_slice())
                        .map_err(storage)?;
                    table
                        .insert(CONF_SUPPRESSIONS, suppressions.as_slice())
                        .map_err(storage)?;
                    table
                        .insert(CONF_CLIENT_AUTH, client_auth.as_slice())
                        .map_err(storage)?;
                    let mut audit = txn.open_table(AUDIT).map_err(storage)?;
                    let mut seq = match audit.last().map_err(storage)? {
                        Some((k, _)) => k.value(),
                        None => 0,
                    };
                    for mut entry in entries {
                        seq += 1;
                        entry.seq = seq;
                        audit
                            .insert(entry.seq, encode(&entry)?.as_slice())
                            .map_err(storage)?;
                    }
                }
                txn.commit().map_err(storage)
            }
        }
    }

    /// The newest `limit` entries, oldest first.
    pub(super) fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, ServerConfError> {
        match self {
            Store::Memory { audit } => Ok(audit[audit.len().saturating_sub(limit)..].to_vec()),
            Store::Disk(db) => {
                let txn = db.begin_read().map_err(storage)?;
                let table = txn.open_table(AUDIT).map_err(storage)?;
                let mut entries = Vec::new();
                for row in table.iter().map_err(storage)?.rev().take(limit) {
                    let (_, v) = row.map_err(storage)?;
                    entries.push(decode("audit entries", v.value())?);
                }
                entries.reverse();
                Ok(entries)
            }
        }
    }

    /// Copies the database, as one read transaction sees it, into a new file at `path`.
    pub(super) fn snapshot_to(&self, path: &Path) -> Result<(), ServerConfError> {
        let Store::Disk(db) = self else {
            return Err(ServerConfError::Storage(
                "the configuration is kept in memory only".into(),
            ));
        };
        if path.exists() {
            return Err(ServerConfError::Storage(format!(
                "{} exists",
                path.display()
            )));
        }
        let from = db.begin_read().map_err(storage)?;
        let copy = Database::create(path).map_err(storage)?;
        let to = copy.begin_write().map_err(storage)?;
        runtime::backup::copy_table(&from, &to, CONF).map_err(storage)?;
        runtime::backup::copy_table(&from, &to, AUDIT).map_err(storage)?;
        to.commit().map_err(storage)
    }
}
