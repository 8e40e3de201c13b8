//! Backup and restore of the registry (`docs/backup.md`).
//!
//! The backup runs inside the registry, under its lock (the `backup` admin operation), so that no
//! operation or CA rollover changes the files meanwhile: the database is copied table by table
//! in one read transaction (its file cannot be copied while it may be written), and the rest of
//! the data directory (keys, the CAs, the TLS identity, the anchor, the admin token) and the
//! configuration file go in as they are, encrypted for the operator's age recipient
//! (`runtime::backup`). [`restore`] runs with no registry: into a new configuration file and an
//! empty data directory, then it opens the restored database.

use std::path::{Path, PathBuf};

use runtime::backup::{BackupError, Manifest};
use serde::{Deserialize, Serialize};

use crate::config::RegistryConfig;
use crate::datadir::DataDir;
use crate::store::Store;

/// `Manifest::kind` of a registry's backup.
pub const KIND: &str = "central-registry";
pub(crate) const DATABASE: &str = "registry.redb";
/// Where backups go by default under the data directory; never backed up itself.
pub const BACKUPS_DIR: &str = "backups";

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub created_at: String,
    /// The configuration serial the registry served.
    pub serial: u64,
}

/// What a restore wrote.
#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub files: usize,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("the restored configuration: {0}")]
    Config(String),
    #[error("the restored database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Restores `backup` (decrypted with the secret key in `identity`) with its configuration file
/// written to `config_path` (which must not exist) and its data in `data_dir` (default: where
/// the backed-up registry kept it), which must be empty or absent.
pub fn restore(
    config_path: &Path,
    backup: &Path,
    identity: &Path,
    data_dir: Option<PathBuf>,
) -> Result<RestoreReport, RestoreError> {
    let plan = runtime::backup::plan_restore(backup, identity, KIND, config_path, data_dir)?;
    let data_dir = plan.data_dir.clone();
    let (_, written) = runtime::backup::restore(backup, identity, &|name| {
        let mut parts = name.components();
        let top = parts.next()?.as_os_str().to_str()?;
        let rest = parts.as_path();
        match top {
            "config" if rest == Path::new("central-registry.toml") => {
                Some(config_path.to_path_buf())
            }
            "data" => Some(data_dir.join(rest)),
            _ => None,
        }
    })?;
    let config_error = |e: &dyn std::fmt::Display| RestoreError::Config(e.to_string());
    let mut config = RegistryConfig::load(config_path).map_err(|e| config_error(&e))?;
    config.data_dir = data_dir.clone();
    let toml = config.to_toml().map_err(|e| config_error(&e))?;
    certs::write_file_atomic(config_path, toml.as_bytes()).map_err(|e| config_error(&e))?;
    // The restored database opens and holds the instance's state.
    let store = Store::open(&DataDir::new(&data_dir).database())?;
    store.load(&config.instance.parse().map_err(|e| config_error(&e))?)?;
    Ok(RestoreReport {
        manifest: plan.manifest,
        config: config_path.to_path_buf(),
        data_dir,
        files: written.len(),
    })
}
