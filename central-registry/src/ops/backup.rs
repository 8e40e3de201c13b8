//! A backup of the running registry ([`crate::backup`]).

use std::path::{Path, PathBuf};

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, JsonReply, audit};
use runtime::backup::{BackupError, BackupWriter, Manifest};

use crate::backup::{BACKUPS_DIR, BackupReport, DATABASE, KIND};
use crate::error::RegistryError;

/// `POST /admin/v1/backup` `{"recipient": "age1…", "out": "/absolute/path"}`: writes an
/// encrypted backup of the registry to a new file `out` the registry may write, under its lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// The age recipient (public key, `age1…`) whose secret key alone can read the backup.
    pub recipient: String,
    pub out: PathBuf,
}

impl Endpoint for CreateBackup {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/backup";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = CreateBackup;
    type Response = BackupReport;

    fn from_wire((): (), body: CreateBackup) -> Self {
        body
    }
    fn to_wire(&self) -> ((), CreateBackup) {
        ((), self.clone())
    }
}

impl JsonReply for BackupReport {}

impl AdminOp for CreateBackup {
    fn apply(self, core: &mut Core, now: i64) -> Result<BackupReport, RegistryError> {
        if !self.out.is_absolute() {
            return Err(RegistryError::BadRequest(format!(
                "out must be an absolute path, not {}",
                self.out.display()
            )));
        }
        let report = write(core, &self.recipient, &self.out, now).map_err(|e| match e {
            BackupError::Key(_) | BackupError::Io { .. } | BackupError::Refused(_) => {
                RegistryError::BadRequest(format!("the backup was not written: {e}"))
            }
            e => RegistryError::Internal(format!("the backup was not written: {e}")),
        })?;
        core.execute(
            Vec::new(),
            audit(
                "backup",
                json!({ "path": report.path, "bytes": report.bytes }),
            ),
            false,
            now,
        )?;
        Ok(report)
    }
    fn text(&self, r: &BackupReport) -> String {
        format!(
            "backup written: {} ({} bytes), configuration serial {}, at {}\n",
            r.path.display(),
            r.bytes,
            r.serial,
            r.created_at
        )
    }
}

/// Writes a backup of the registry to `out` (absolute, new), encrypted for `recipient`.
fn write(core: &Core, recipient: &str, out: &Path, now: i64) -> Result<BackupReport, BackupError> {
    let data_dir = core.data_dir.root();
    let created_at = runtime::time::rfc3339(now);
    let staging = runtime::backup::staging_dir(data_dir)?;
    let db_copy = staging.path().join(DATABASE);
    core.store.snapshot_to(&db_copy)?;
    let manifest = Manifest {
        format: runtime::backup::FORMAT,
        kind: KIND.to_owned(),
        id: core.instance.to_string(),
        created_at: created_at.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        log_records: None,
        paths: [("data".to_owned(), data_dir.to_path_buf())].into(),
    };
    let mut writer = BackupWriter::create(out, recipient, &manifest)?;
    let toml = core.config_toml.as_bytes();
    writer.add_reader("config/central-registry.toml", toml, toml.len() as u64)?;
    let mut skipped: Vec<PathBuf> = [DATABASE, BACKUPS_DIR].iter().map(PathBuf::from).collect();
    skipped.extend(out.strip_prefix(data_dir).ok().map(Path::to_path_buf));
    writer.add_dir("data", data_dir, &|relative| {
        runtime::backup::is_staging(relative) || skipped.iter().any(|s| relative.starts_with(s))
    })?;
    writer.add_file(&format!("data/{DATABASE}"), &db_copy)?;
    let bytes = writer.finish()?;
    Ok(BackupReport {
        path: out.to_path_buf(),
        bytes,
        created_at,
        serial: core.publication.as_ref().map_or(0, |p| p.serial),
    })
}
