//! A backup of the running server ([`crate::backup`]).

use std::path::PathBuf;

use http::Method;
use serde::{Deserialize, Serialize};

use super::{AdminOp, Endpoint, Input, JsonReply};
use crate::admin::{Admin, AdminError};
use crate::backup::BackupReport;

/// `POST /v1/backup` `{"recipient": "age1…", "out": "/absolute/path"}`: writes an encrypted
/// backup of the server, as it runs, to a new file `out` the server may write. Answers when the
/// file is complete and durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// The age recipient (public key, `age1…`) whose secret key alone can read the backup.
    pub recipient: String,
    pub out: PathBuf,
}

impl Endpoint for CreateBackup {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/backup";
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
    async fn apply(self, admin: &Admin) -> Result<BackupReport, AdminError> {
        let source = admin
            .backup
            .clone()
            .ok_or_else(|| AdminError::NotFound("this server makes no backups".into()))?;
        if !self.out.is_absolute() {
            return Err(AdminError::BadRequest(format!(
                "out must be an absolute path, not {}",
                self.out.display()
            )));
        }
        let written = tokio::task::spawn_blocking(move || {
            crate::backup::write(&source, &self.recipient, &self.out)
        })
        .await
        .map_err(|e| AdminError::Storage(format!("the backup task failed: {e}")))?;
        written.map_err(|e| match e {
            runtime::backup::BackupError::Key(_) | runtime::backup::BackupError::Io { .. } => {
                AdminError::BadRequest(format!("the backup was not written: {e}"))
            }
            e => AdminError::Storage(format!("the backup was not written: {e}")),
        })
    }
    fn text(&self, r: &BackupReport) -> String {
        let mut text = format!(
            "backup written: {} ({} bytes), begun {}\n  message log: {} records, and those \
             acknowledged while it was written\n",
            r.path.display(),
            r.bytes,
            r.created_at,
            r.log_records
        );
        if r.keys_in_module {
            text.push_str(
                "  the keys in the hardware security module are not in it: back up the token\n",
            );
        }
        text
    }
}
