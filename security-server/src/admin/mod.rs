//! The admin API (bearer token, loopback by default) and the unauthenticated health endpoint for
//! load balancers. Every `/v1/...` request needs the bearer token; bodies and answers are JSON;
//! errors are `{"type": "Admin.<Kind>", "message": ...}` (see [`AdminError`]). Identifiers in
//! paths are one percent-encoded segment (`JP%2FMUN%2F131016%2Frecords%2FresidentRecord`).
//!
//! - [`ops`]: every admin operation, described once (method, path, request, answer, what it
//!   does); [`Admin::router`] registers one route per operation, all served by one generic
//!   handler.
//! - [`client`]: [`AdminClient`], the typed client the CLI uses.

pub mod client;
pub mod ops;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::confclient::ConfClient;
use crate::serverconf::{ServerConf, ServerConfError};

pub use client::{AdminClient, AdminClientError};
pub use ops::{AdminOp, Input, OpVisitor, PathParams, Reply, for_each_op};
use runtime::admin::Refusal;

#[derive(Debug, Clone)]
pub struct Admin {
    conf: Arc<ConfClient>,
    serverconf: Arc<ServerConf>,
    token_sha256: [u8; 32],
    evidence: Option<EvidenceSource>,
    renewal: Option<Arc<crate::renewal::Renewal>>,
    rotation: Option<Arc<crate::rotation::KeyRotation>>,
    backup: Option<Arc<crate::backup::Source>>,
    declared: Option<Arc<std::sync::Mutex<crate::declared::DeclaredStatus>>>,
    opmon: Option<Arc<crate::opmon::Opmon>>,
    federation: Option<Arc<crate::federation::Federation>>,
}

/// What went wrong with an admin request, and what the caller is told.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 401 `Admin.Unauthorized`
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// 400 `Admin.BadRequest`: unreadable body, bad identifier, invalid service or grant.
    #[error("{0}")]
    BadRequest(String),
    /// 404 `Admin.NotFound`: no such service, grant or endpoint.
    #[error("{0}")]
    NotFound(String),
    /// 409 `Admin.UnknownService`: a grant for a service this server does not provide.
    #[error("{0}")]
    UnknownService(String),
    /// 500 `Admin.Storage`: the local configuration database failed; nothing was changed.
    #[error("{0}")]
    Storage(String),
    /// 502 `Admin.RefreshFailed`: no source gave an acceptable global configuration.
    #[error("{0}")]
    RefreshFailed(String),
    /// 503 `Admin.NotYetCheckpointed`: the records are not under a signed checkpoint yet; retry.
    #[error("{0}")]
    NotYetCheckpointed(String),
    /// 502 `Admin.RegistryFailed`: the registry could not be reached, or refused a certificate
    /// renewal or a new key.
    #[error("{0}")]
    RegistryFailed(String),
    /// 409 `Admin.Declared`: services, access rights and rules are declared in a file
    /// (`[declared]`); the admin API does not change them.
    #[error("{0}")]
    Declared(String),
}

impl AdminError {
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "Admin.Unauthorized"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Admin.BadRequest"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "Admin.NotFound"),
            AdminError::UnknownService(_) => (StatusCode::CONFLICT, "Admin.UnknownService"),
            AdminError::Declared(_) => (StatusCode::CONFLICT, "Admin.Declared"),
            AdminError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Admin.Storage"),
            AdminError::RefreshFailed(_) => (StatusCode::BAD_GATEWAY, "Admin.RefreshFailed"),
            AdminError::RegistryFailed(_) => (StatusCode::BAD_GATEWAY, "Admin.RegistryFailed"),
            AdminError::NotYetCheckpointed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Admin.NotYetCheckpointed")
            }
        }
    }
}

/// The body of an error answer: `{"message": ..., "type": "Admin.<Kind>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// How a refusal reads in the admin CLI.
impl runtime::admin::ErrorAnswer for ErrorBody {
    fn refused(&self, status: http::StatusCode) -> String {
        format!("{}: {} (HTTP {status})", self.kind, self.message)
    }
    fn unexpected(status: http::StatusCode, message: &str) -> String {
        format!("HTTP {status}: {message}")
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind) = self.kind();
        if status.is_server_error() {
            tracing::error!(error = %self, kind, "admin request failed");
        }
        let body = Json(ErrorBody {
            message: self.to_string(),
            kind: kind.to_owned(),
        });
        let mut response = (status, body).into_response();
        if matches!(self, AdminError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ServerConfError> for AdminError {
    fn from(e: ServerConfError) -> Self {
        match e {
            ServerConfError::Invalid(why) => AdminError::BadRequest(why),
            ServerConfError::UnknownService(_) => AdminError::UnknownService(e.to_string()),
            ServerConfError::Storage(_) => AdminError::Storage(e.to_string()),
            ServerConfError::Declared(_) => AdminError::Declared(e.to_string()),
        }
    }
}

/// Runs a read or change of the local configuration off the async workers: a change waits for
/// the database's fsync.
async fn on_serverconf<T: Send + 'static>(
    admin: &Admin,
    f: impl FnOnce(&ServerConf) -> Result<T, ServerConfError> + Send + 'static,
) -> Result<T, AdminError> {
    let serverconf = Arc::clone(&admin.serverconf);
    tokio::task::spawn_blocking(move || f(&serverconf))
        .await
        .map_err(|e| AdminError::Storage(format!("the change did not run to the end: {e}")))?
        .map_err(AdminError::from)
}

/// What evidence export needs.
#[derive(Debug, Clone)]
pub struct EvidenceSource {
    pub log: msglog::MessageLog,
    pub server_id: globalconf::SecurityServerId,
    pub clock: Arc<dyn certs::Clock>,
}

impl Admin {
    pub fn new(conf: Arc<ConfClient>, serverconf: Arc<ServerConf>, token: &str) -> Self {
        Self {
            conf,
            serverconf,
            token_sha256: Sha256::digest(token.as_bytes()).into(),
            evidence: None,
            renewal: None,
            rotation: None,
            backup: None,
            declared: None,
            opmon: None,
            federation: None,
        }
    }

    /// Enables `POST /v1/evidence`.
    pub fn with_evidence(mut self, source: EvidenceSource) -> Self {
        self.evidence = Some(source);
        self
    }

    /// Shows where the declared configuration stands in `status` (`[declared]`).
    pub fn with_declared(
        mut self,
        status: Option<Arc<std::sync::Mutex<crate::declared::DeclaredStatus>>>,
    ) -> Self {
        self.declared = status;
        self
    }

    /// Answers `GET /v1/operational` from `opmon`.
    pub fn with_opmon(mut self, opmon: Option<Arc<crate::opmon::Opmon>>) -> Self {
        self.opmon = opmon;
        self
    }

    /// Shows the federated instances in `status`.
    pub fn with_federation(mut self, federation: Arc<crate::federation::Federation>) -> Self {
        self.federation = Some(federation);
        self
    }

    /// Writes backups of the server (`POST /v1/backup`).
    pub fn with_backup(mut self, source: crate::backup::Source) -> Self {
        self.backup = Some(Arc::new(source));
        self
    }

    /// Serves the member signing keys held and their rotation.
    pub fn with_rotation(mut self, rotation: Arc<crate::rotation::KeyRotation>) -> Self {
        self.rotation = Some(rotation);
        self
    }

    /// Serves the TLS certificate's status and the `renew` operation.
    pub fn with_renewal(mut self, renewal: Arc<crate::renewal::Renewal>) -> Self {
        self.renewal = Some(renewal);
        self
    }

    /// `/health`, and one route per operation of [`ops`], behind the bearer token.
    pub fn router(self) -> Router {
        let mut routes = Routes(Router::new());
        for_each_op(&mut routes);
        let authenticated = routes
            .0
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), require_bearer));
        Router::new()
            .route("/health", get(health))
            .merge(authenticated)
            .with_state(self)
    }

    /// Compares hashes, so the comparison time says nothing about the token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h == self.token_sha256
    }
}

async fn require_bearer(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    if !admin.authorized(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "admin request without a valid bearer token");
        return AdminError::Unauthorized.into_response();
    }
    next.run(req).await
}

async fn not_found() -> AdminError {
    AdminError::NotFound("no such endpoint".into())
}

/// Adds one route per operation.
struct Routes(Router<Admin>);

impl OpVisitor for Routes {
    fn visit<Op: AdminOp>(&mut self) {
        self.0 = runtime::admin::route::<Op, _, _, _>(std::mem::take(&mut self.0), handle::<Op>);
    }
}

/// The handler of every operation: runs it through [`AdminOp::apply`].
async fn handle<Op: AdminOp>(State(admin): State<Admin>, request: Request) -> Response {
    runtime::admin::handle::<Op, _, _>(request, refuse, |op| async move { op.apply(&admin).await })
        .await
}

/// A bad identifier, query or JSON body is an `Admin.BadRequest`.
fn refuse(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Path(e) => AdminError::from(e).into_response(),
        Refusal::Query(rejection) => AdminError::BadRequest(rejection.body_text()).into_response(),
        Refusal::Json(why) => AdminError::BadRequest(why).into_response(),
        // Cannot happen: every op without input has `()` for a body (a test in `ops` checks).
        Refusal::NoInput(why) => AdminError::Storage(why).into_response(),
    }
}

/// 200 `{"status":"ok","globalconf_serial":N}` when the server can exchange messages (it holds
/// an unexpired configuration and its message log takes records), else 503 with the reason.
async fn health(State(admin): State<Admin>) -> Response {
    use runtime::health::{Health, detail};
    if let Some(e) = admin.evidence.as_ref().and_then(|s| s.log.failure()) {
        return Health::Unavailable(format!(
            "the message log has failed, so every exchange is refused (LoggingFailed) until it \
             opens again, which it tries every few seconds (free disk space): {e}"
        ))
        .response(serde_json::Map::new());
    }
    match admin.conf.valid_now() {
        // Still serving, but the operator must act before the certificate expires.
        Ok(c) => match admin.renewal.as_ref().and_then(|r| r.attention()) {
            Some(reason) => Health::Warning(reason),
            None => Health::Ok,
        }
        .response(detail("globalconf_serial", c.serial())),
        Err(reason) => Health::Unavailable(reason.to_string()).response(serde_json::Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use certs::{ManualClock, SigningKey, TlsIdentity};
    use globalconf::{Anchor, InstanceId};

    use super::*;
    use crate::peer::PeerPool;

    const TOKEN: &str = "0123456789abcdef";

    fn admin(dir: &std::path::Path) -> Admin {
        let clock = ManualClock::at_unix(1_800_000_000);
        let ca = certs::CertificateAuthority::generate("JP", Duration::from_secs(86_400), &clock)
            .unwrap();
        let anchor = Anchor::new(
            "JP".parse::<InstanceId>().unwrap(),
            vec!["https://127.0.0.1:1".into()],
            ca.certificate_pem(),
            vec![SigningKey::generate().unwrap().public_key()],
        )
        .unwrap();
        let peers = Arc::new(PeerPool::new(
            certs::LiveIdentity::new(
                TlsIdentity::new(vec![], SigningKey::generate().unwrap()),
                Arc::new(clock.clone()),
            )
            .unwrap(),
            Duration::from_secs(1),
            1 << 20,
        ));
        let conf = ConfClient::open(
            anchor,
            dir.join("globalconf.bin"),
            "JP/MUN/131016/ss1".parse().unwrap(),
            peers,
            Duration::from_millis(100),
            None,
            Arc::new(clock.clone()),
        )
        .unwrap();
        let serverconf = ServerConf::open(&dir.join("serverconf.redb")).unwrap();
        Admin::new(Arc::new(conf), Arc::new(serverconf), TOKEN)
    }

    async fn send(app: &Router, method: &http::Method, path: &str) -> (u16, String) {
        runtime::admin::checks::send(app, TOKEN, method, path, "null").await
    }

    #[tokio::test]
    async fn every_op_is_routed_to_its_handler() {
        let dir = tempfile::tempdir().unwrap();
        let app = admin(dir.path()).router();
        for op in ops::table() {
            // "x" is no service id, so an op with one refuses it by name; a JSON body of `null`
            // is no request, so an op with a body refuses it: proof that its own handler, not
            // the fallback, answered.
            let (status, body) = runtime::admin::checks::routed(&app, TOKEN, "", "null", &op).await;
            if op.path_params > 0 {
                assert_eq!(status, 400, "{}: {body}", op.name);
                assert!(body.contains("service id: "), "{}: {body}", op.name);
            } else if op.input == Input::Json {
                assert_eq!(status, 400, "{}: {body}", op.name);
                assert!(body.contains("Admin.BadRequest"), "{}: {body}", op.name);
            }
        }
        let (status, _) = send(&app, &http::Method::DELETE, "/v1/status").await;
        assert_eq!(status, 405);
        let (status, body) = send(&app, &http::Method::GET, "/v1/nothing").await;
        assert_eq!((status, body.contains("no such endpoint")), (404, true));
    }
}
