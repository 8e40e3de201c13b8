//! Backup and restore of a security server (`docs/backup.md`).
//!
//! [`write`] runs inside the server (the admin API's `POST /v1/backup`): the databases cannot be
//! copied as files while they are written, so the configuration database and the message log
//! are copied table by table in one read transaction each, and the message log's write-ahead
//! segments are read after its copy (`msglog::backup`). Everything else in the data directory
//! (keys, certificates, the stored global configuration, the admin token), the anchor, the
//! configuration file and the archive files go in as they are. The archive is encrypted for the
//! operator's age recipient key (`runtime::backup`).
//!
//! [`restore`] runs with no server: into a new configuration file and an empty data directory
//! (the backed-up one, or `--data-dir`), then it opens the restored message log, which applies
//! the copied segments as after a crash, and checks its tree.
//!
//! Keys in a hardware security module are not in a backup (they cannot leave it): the token's
//! own backup covers them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use globalconf::SecurityServerId;
use runtime::backup::{BackupError, BackupWriter, Manifest};
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::serverconf::ServerConf;

/// `Manifest::kind` of a security server's backup.
pub const KIND: &str = "security-server";
/// The database files, copied table by table rather than as files.
pub const LOG_DB: &str = "messagelog.redb";
pub const CONF_DB: &str = "serverconf.redb";
/// Where `backup --out` puts files by default under the data directory; never backed up itself.
pub const BACKUPS_DIR: &str = "backups";

/// What the running server backs up.
#[derive(Debug, Clone)]
pub struct Source {
    pub config: Config,
    pub server_id: SecurityServerId,
    pub log: msglog::MessageLog,
    pub serverconf: Arc<ServerConf>,
    pub clock: Arc<dyn certs::Clock>,
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub created_at: String,
    /// Message log records in the copied database; records acknowledged while the backup was
    /// written follow them in the copied write-ahead segments.
    pub log_records: u64,
    /// Whether keys are in a hardware security module (and so not in the backup).
    pub keys_in_module: bool,
}

/// Writes a backup of the running server to `out` (absolute, new), encrypted for `recipient`.
/// Blocking: run it off the async threads.
pub fn write(source: &Source, recipient: &str, out: &Path) -> Result<BackupReport, BackupError> {
    let config = &source.config;
    let created_at = runtime::time::rfc3339(source.clock.unix_now());
    let staging = runtime::backup::staging_dir(&config.data_dir)?;
    let conf_copy = staging.path().join(CONF_DB);
    source
        .serverconf
        .snapshot_to(&conf_copy)
        .map_err(|e| BackupError::Database(e.to_string()))?;
    let log_copy = staging.path().join(LOG_DB);
    let snapshot = source
        .log
        .snapshot(&log_copy)
        .map_err(|e| BackupError::Database(e.to_string()))?;

    let manifest = Manifest {
        format: runtime::backup::FORMAT,
        kind: KIND.to_owned(),
        id: source.server_id.to_string(),
        created_at: created_at.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        log_records: Some(snapshot.size()),
        paths: [
            ("data".to_owned(), config.data_dir.clone()),
            ("archive".to_owned(), config.messagelog.archive_dir.clone()),
        ]
        .into(),
    };
    let mut writer = BackupWriter::create(out, recipient, &manifest)?;
    let toml = config
        .to_toml()
        .map_err(|e| BackupError::Format(e.to_string()))?;
    writer.add_reader(
        "config/security-server.toml",
        toml.as_bytes(),
        toml.len() as u64,
    )?;
    writer.add_file("config/anchor.toml", &config.anchor)?;

    // Files of the data directory as they are, but for what is copied otherwise or is not state.
    let data_dir = &config.data_dir;
    let inside = |path: &Path| path.strip_prefix(data_dir).ok().map(Path::to_path_buf);
    let mut skipped: Vec<PathBuf> = [
        LOG_DB,
        &format!("{LOG_DB}-wal"),
        CONF_DB,
        // Operational data is not backed up: it is written all the time, and it is not
        // evidence (the message log is).
        crate::opmon::FILE,
        "spool",
        BACKUPS_DIR,
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    skipped.extend(inside(out));
    skipped.extend(inside(&config.anchor));
    skipped.extend(inside(&config.messagelog.archive_dir));
    writer.add_dir("data", data_dir, &|relative| {
        runtime::backup::is_staging(relative) || skipped.iter().any(|s| relative.starts_with(s))
    })?;
    writer.add_file(&format!("data/{CONF_DB}"), &conf_copy)?;
    writer.add_file(&format!("data/{LOG_DB}"), &log_copy)?;
    for segment in snapshot
        .segments()
        .map_err(|e| BackupError::Database(e.to_string()))?
    {
        let (file, len) = segment
            .open()
            .map_err(|e| BackupError::Database(e.to_string()))?;
        writer.add_reader(&format!("data/{LOG_DB}-wal/{}", segment.name), file, len)?;
    }
    let log_records = snapshot.size();
    // Archiving may go on once the segments are read; its files are read after it.
    drop(snapshot);
    writer.add_dir("archive", &config.messagelog.archive_dir, &|_| false)?;
    let bytes = writer.finish()?;
    Ok(BackupReport {
        path: out.to_path_buf(),
        bytes,
        created_at,
        log_records,
        keys_in_module: config.hsm.is_some(),
    })
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("the restored configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("the restored message log: {0}")]
    Log(#[from] msglog::LogError),
}

/// What a restore wrote.
#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub files: usize,
    /// Records in the restored message log, after its write-ahead segments were applied.
    pub log_records: u64,
}

/// Restores `backup` (decrypted with the secret key in `identity`) with its configuration file
/// written to `config_path` (which must not exist) and its data in `data_dir` (default: where
/// the backed-up server kept it), which must be empty or absent; the anchor and the archives go
/// into the data directory when it is moved. No server may run on it meanwhile.
pub fn restore(
    config_path: &Path,
    backup: &Path,
    identity: &Path,
    data_dir: Option<PathBuf>,
) -> Result<RestoreReport, RestoreError> {
    let plan = runtime::backup::plan_restore(backup, identity, KIND, config_path, data_dir)?;
    let data_dir = plan.data_dir.clone();
    let archive_dir = if plan.moved {
        data_dir.join("archive")
    } else {
        plan.backed_up("archive")?
    };
    runtime::backup::require_empty(&archive_dir)?;
    // The backed-up anchor path is in the configuration; write it beside the data first and
    // point the configuration at it.
    let anchor = data_dir.join("anchor.toml");
    let (_, written) = runtime::backup::restore(backup, identity, &|name| {
        let mut parts = name.components();
        let top = parts.next()?.as_os_str().to_str()?;
        let rest = parts.as_path();
        match top {
            "config" if rest == Path::new("security-server.toml") => {
                Some(config_path.to_path_buf())
            }
            "config" if rest == Path::new("anchor.toml") => Some(anchor.clone()),
            "data" => Some(data_dir.join(rest)),
            "archive" => Some(archive_dir.join(rest)),
            _ => None,
        }
    })?;

    let mut config = Config::load(config_path)?;
    config.data_dir = data_dir.clone();
    config.anchor = anchor;
    config.messagelog.archive_dir = archive_dir.clone();
    certs::write_file_atomic(config_path, config.to_toml()?.as_bytes())
        .map_err(|e| RestoreError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
    let config = Config::load(config_path)?;
    msglog::backup::relocate_archives(&data_dir.join(LOG_DB), &archive_dir)?;
    let log = crate::log::open(&config)?;
    let log_records = log.size()?;
    // The tree is whole: its root can be computed from the restored nodes.
    log.root(log_records)?;
    Ok(RestoreReport {
        manifest: plan.manifest,
        config: config_path.to_path_buf(),
        data_dir,
        files: written.len(),
        log_records,
    })
}
