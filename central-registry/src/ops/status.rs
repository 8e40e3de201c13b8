//! The served configuration as a whole: its status, publishing a new serial now, the audit log.

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Input, PlainEndpoint, audit};
use crate::enrollment::EnrollmentStatus;
use crate::error::RegistryError;
use crate::ops::views::StatusView;
use crate::store::AuditEntry;

/// `GET /admin/v1/status`: serial and validity of the served configuration, and counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Status;

impl PlainEndpoint for Status {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/status";
    type Response = StatusView;
}

impl AdminOp for Status {
    fn apply(self, core: &mut Core, _now: i64) -> Result<StatusView, RegistryError> {
        core.status()
    }
    fn text(&self, s: &StatusView) -> String {
        status_text(s)
    }
}

/// `POST /admin/v1/publish`: signs and publishes a new serial now, even without changes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Publish;

impl PlainEndpoint for Publish {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/publish";
    type Response = StatusView;
}

impl AdminOp for Publish {
    fn apply(self, core: &mut Core, now: i64) -> Result<StatusView, RegistryError> {
        core.execute(Vec::new(), audit("publish", json!({})), true, now)?;
        core.status()
    }
    fn text(&self, s: &StatusView) -> String {
        status_text(s)
    }
}

/// `GET /admin/v1/audit?limit=N`: the newest `limit` (default 100) audit entries, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audit {
    pub limit: Option<usize>,
}

impl PlainEndpoint for Audit {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/audit";
    const INPUT: Input = Input::Query;
    type Response = Vec<AuditEntry>;
}

impl AdminOp for Audit {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<AuditEntry>, RegistryError> {
        Ok(core.store.audit(self.limit.unwrap_or(100))?)
    }
    fn text(&self, entries: &Vec<AuditEntry>) -> String {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{:>6}  {}  {:<24} {}\n",
                    e.seq,
                    runtime::time::rfc3339(e.time),
                    e.action,
                    e.details
                )
            })
            .collect()
    }
}

impl Core {
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
}

fn status_text(s: &StatusView) -> String {
    [
        format!("instance:            {}", s.instance),
        format!("serial:              {}", s.serial),
        format!(
            "generated at:        {}",
            runtime::time::rfc3339(s.generated_at)
        ),
        format!(
            "expires at:          {}",
            runtime::time::rfc3339(s.expires_at)
        ),
        format!("members:             {}", s.members),
        format!("subsystems:          {}", s.subsystems),
        format!("security servers:    {}", s.servers),
        format!("pending enrolments:  {}", s.pending_enrollments),
    ]
    .map(|line| line + "\n")
    .concat()
}
