//! The server itself: status, a refresh of the global configuration, renewal of the TLS
//! certificate, the audit log, evidence.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError, on_serverconf};
use crate::log::EvidenceQuery;
use crate::renewal::TlsStatus;
use crate::serverconf::AuditEntry;

/// How many audit records `GET /v1/audit` returns without `limit`, and at most.
const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 10_000;

/// `GET /v1/status`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Status;

/// What [`Status`] answers. Fields in name order, as the JSON has always had them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The global configuration held, if any.
    pub globalconf: Option<GlobalconfStatus>,
    pub grants: usize,
    pub services: usize,
    /// The TLS certificate presented now and its renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Where the declared configuration stands (`[declared]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<crate::declared::DeclaredStatus>,
    /// The federated instances the registry lists, and whether this server talks to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federation: Vec<crate::federation::FederatedStatus>,
}

/// The global configuration a server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalconfStatus {
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub generated_at: i64,
    pub serial: u64,
    /// Whether it is valid now, so exchanges can use it.
    pub usable: bool,
}

impl PlainEndpoint for Status {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/status";
    type Response = ServerStatus;
}

impl AdminOp for Status {
    async fn apply(self, admin: &Admin) -> Result<ServerStatus, AdminError> {
        let conf = admin.conf.current();
        let local = admin.serverconf.snapshot();
        Ok(ServerStatus {
            globalconf: conf.as_ref().map(|c| GlobalconfStatus {
                expires_at: c.conf().expires_at(),
                generated_at: c.conf().generated_at(),
                serial: c.serial(),
                usable: admin.conf.valid_now().is_ok(),
            }),
            grants: local.access.grants().len(),
            services: local.services.len(),
            tls: admin.renewal.as_ref().and_then(|r| r.status().ok()),
            declared: admin.declared.as_ref().map(|d| {
                d.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }),
            federation: admin
                .federation
                .as_ref()
                .map(|f| f.status())
                .unwrap_or_default(),
        })
    }
    fn text(&self, status: &ServerStatus) -> String {
        status_text(status)
    }
}

/// `POST /v1/globalconf/refresh`: fetches the global configuration now.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RefreshGlobalconf;

/// What [`RefreshGlobalconf`] answers (fields in name order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    /// Whether the configuration is newer than the one held before.
    pub changed: bool,
    pub serial: u64,
    /// Where it came from (`Registry("https://...")` or `Peer(...)`).
    pub source: String,
}

impl PlainEndpoint for RefreshGlobalconf {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/globalconf/refresh";
    type Response = Refresh;
}

impl AdminOp for RefreshGlobalconf {
    async fn apply(self, admin: &Admin) -> Result<Refresh, AdminError> {
        let r = admin
            .conf
            .refresh()
            .await
            .map_err(|e| AdminError::RefreshFailed(e.to_string()))?;
        Ok(Refresh {
            changed: r.succession == globalconf::Succession::Newer,
            serial: r.serial,
            source: format!("{:?}", r.source),
        })
    }
    fn text(&self, r: &Refresh) -> String {
        format!(
            "configuration serial {} from {}{}\n",
            r.serial,
            r.source,
            if r.changed {
                " (newer than the one held)"
            } else {
                " (already held)"
            }
        )
    }
}

/// `POST /v1/tls/renew`: asks the registry for a renewed TLS certificate now, whatever the
/// current one's expiry; the server presents it once the configuration lists it (docs/keys.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RenewTls;

impl PlainEndpoint for RenewTls {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/tls/renew";
    type Response = TlsStatus;
}

impl AdminOp for RenewTls {
    async fn apply(self, admin: &Admin) -> Result<TlsStatus, AdminError> {
        let renewal = admin.renewal.as_ref().ok_or_else(|| {
            AdminError::NotFound("this server does not renew certificates".into())
        })?;
        renewal
            .renew_now()
            .await
            .map_err(|e| AdminError::RegistryFailed(e.to_string()))
    }
    fn text(&self, t: &TlsStatus) -> String {
        let mut text = format!(
            "certificate {} valid until {}, renewed from {} (renewal: {})\n",
            t.cert_sha256,
            runtime::time::rfc3339(t.not_after),
            runtime::time::rfc3339(t.renew_at),
            t.renewal
        );
        if let Some(e) = &t.last_error {
            text += &format!("last renewal failed: {e}\n");
        }
        text
    }
}

/// `GET /v1/audit?limit=N`: the newest `limit` (default 100, at most 10 000) audit records,
/// oldest first.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub limit: Option<usize>,
}

impl PlainEndpoint for Audit {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/audit";
    const INPUT: Input = Input::Query;
    type Response = Vec<AuditEntry>;
}

impl AdminOp for Audit {
    async fn apply(self, admin: &Admin) -> Result<Vec<AuditEntry>, AdminError> {
        let limit = self
            .limit
            .unwrap_or(AUDIT_DEFAULT_LIMIT)
            .min(AUDIT_MAX_LIMIT);
        on_serverconf(admin, move |c| c.audit(limit)).await
    }
    fn text(&self, entries: &Vec<AuditEntry>) -> String {
        if entries.is_empty() {
            return "no audit records\n".into();
        }
        entries
            .iter()
            .map(|e| {
                format!(
                    "{:>6}  {}  {:<15} {}\n",
                    e.seq,
                    runtime::time::rfc3339(e.time),
                    e.action,
                    e.details
                )
            })
            .collect()
    }
}

/// `POST /v1/evidence` with an [`EvidenceQuery`]: an evidence bundle (protobuf,
/// docs/evidence.md) for one X-Road-Id, a time range or a data subject. 503
/// `Admin.NotYetCheckpointed` while the records wait for their checkpoint: retry.
#[derive(Debug, Clone)]
pub struct ExportEvidence(pub EvidenceQuery);

impl Endpoint for ExportEvidence {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/evidence";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = EvidenceQuery;
    type Response = proto::v1::EvidenceBundle;

    fn from_wire((): (), query: EvidenceQuery) -> Self {
        Self(query)
    }
    fn to_wire(&self) -> ((), EvidenceQuery) {
        ((), self.0.clone())
    }
}

impl AdminOp for ExportEvidence {
    async fn apply(self, admin: &Admin) -> Result<proto::v1::EvidenceBundle, AdminError> {
        use crate::log::ExportError;
        let source = admin
            .evidence
            .clone()
            .ok_or_else(|| AdminError::NotFound("this server has no message log".into()))?;
        tokio::task::spawn_blocking(move || {
            crate::log::export_evidence(
                &source.log,
                &source.server_id,
                &self.0,
                source.clock.as_ref(),
                |_, _| {},
            )
        })
        .await
        .map_err(|e| AdminError::Storage(format!("the export did not run to the end: {e}")))?
        .map_err(|e| match e {
            ExportError::BadQuery(why) => AdminError::BadRequest(why),
            ExportError::NothingFound => AdminError::NotFound(e.to_string()),
            e if e.is_retryable() => AdminError::NotYetCheckpointed(e.to_string()),
            e => AdminError::Storage(e.to_string()),
        })
    }
    fn text(&self, bundle: &proto::v1::EvidenceBundle) -> String {
        format!("{} records\n", bundle.records.len())
    }
}

/// `status` as the CLI prints it without `--json`: one line per thing, times as dates.
fn status_text(s: &ServerStatus) -> String {
    use runtime::time::rfc3339;
    let mut lines = Vec::new();
    match &s.globalconf {
        Some(c) => lines.push(format!(
            "configuration:  serial {}, generated {}, expires {}{}",
            c.serial,
            rfc3339(c.generated_at),
            rfc3339(c.expires_at),
            if c.usable { "" } else { " (not usable now)" }
        )),
        None => lines.push("configuration:  none held yet".to_owned()),
    }
    lines.push(format!(
        "local:          {} services, {} grants",
        s.services, s.grants
    ));
    if let Some(t) = &s.tls {
        lines.push(format!(
            "tls:            certificate {} valid until {}, renewed from {} (renewal: {})",
            &t.cert_sha256[..t.cert_sha256.len().min(16)],
            rfc3339(t.not_after),
            rfc3339(t.renew_at),
            t.renewal
        ));
        if let Some(e) = &t.last_error {
            lines.push(format!("                last renewal failed: {e}"));
        }
    }
    if let Some(d) = &s.declared {
        lines.push(format!(
            "declared:       {}{}",
            d.file.display(),
            match (&d.applied_sha256, d.applied_at) {
                (Some(sha), Some(at)) => format!(
                    ", version {} applied {}",
                    &sha[..sha.len().min(16)],
                    rfc3339(at)
                ),
                _ => ", nothing applied".to_owned(),
            }
        ));
        if let Some(e) = &d.error {
            lines.push(format!("                not applied: {e}"));
        }
    }
    for f in &s.federation {
        let anchor = if f.fingerprint.is_empty() {
            String::new()
        } else {
            format!(
                " (anchor {})",
                &f.fingerprint[..f.fingerprint.len().min(16)]
            )
        };
        lines.push(format!(
            "federated:      {}{anchor}: {}",
            f.instance,
            match (&f.problem, f.serial, f.expires_at) {
                (Some(p), _, _) => p.clone(),
                (None, Some(serial), Some(expires)) => {
                    format!("serial {serial}, expires {}", rfc3339(expires))
                }
                _ => "no configuration held yet".to_owned(),
            }
        ));
    }
    lines.into_iter().map(|l| l + "\n").collect()
}
