//! The admin API (bearer token, loopback by default) and the unauthenticated health endpoint for
//! load balancers. Every `/v1/...` request needs the bearer token; bodies and answers are JSON;
//! errors are `{"type": "Admin.<Kind>", "message": ...}` (see [`AdminError`]). Identifiers in
//! paths are one percent-encoded segment (`JP%2FMUN%2F131016%2Frecords%2FresidentRecord`).

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use globalconf::ServiceId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::confclient::ConfClient;
use crate::serverconf::{ServerConf, ServerConfError, ServiceEntry};
use crate::usage::{SuppressedClient, Suppression};
use exchange::access::Grant;

/// How many audit records `GET /v1/audit` returns without `limit`, and at most.
const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Admin {
    conf: Arc<ConfClient>,
    serverconf: Arc<ServerConf>,
    token_sha256: [u8; 32],
    evidence: Option<EvidenceSource>,
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
}

impl AdminError {
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "Admin.Unauthorized"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Admin.BadRequest"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "Admin.NotFound"),
            AdminError::UnknownService(_) => (StatusCode::CONFLICT, "Admin.UnknownService"),
            AdminError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Admin.Storage"),
            AdminError::RefreshFailed(_) => (StatusCode::BAD_GATEWAY, "Admin.RefreshFailed"),
            AdminError::NotYetCheckpointed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Admin.NotYetCheckpointed")
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind) = self.kind();
        if status.is_server_error() {
            tracing::error!(error = %self, kind, "admin request failed");
        }
        let body = Json(serde_json::json!({"type": kind, "message": self.to_string()}));
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
        }
    }
}

type ApiResult = Result<Response, AdminError>;

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
        }
    }

    /// Enables `POST /v1/evidence`.
    pub fn with_evidence(mut self, source: EvidenceSource) -> Self {
        self.evidence = Some(source);
        self
    }

    pub fn router(self) -> Router {
        let authenticated = Router::new()
            .route("/v1/status", get(status))
            .route("/v1/globalconf/refresh", post(refresh))
            .route("/v1/services", get(list_services).post(add_service))
            .route("/v1/services/{*id}", delete(remove_service))
            .route("/v1/access", get(list_access).post(grant))
            .route("/v1/access/revoke", post(revoke))
            .route("/v1/suppressions", get(list_suppressions).post(suppress))
            .route("/v1/suppressions/remove", post(unsuppress))
            .route("/v1/audit", get(audit))
            .route("/v1/evidence", post(export_evidence))
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

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, AdminError> {
    json.map(|Json(v)| v)
        .map_err(|r| AdminError::BadRequest(r.body_text()))
}

/// 201 when something was added, else 200.
fn added<T: Serialize>(new: bool, value: T) -> ApiResult {
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(value)).into_response())
}

/// 200 `{"status":"ok","globalconf_serial":N}` when the server can exchange messages (it holds
/// an unexpired configuration and its message log takes records), else 503 with the reason.
async fn health(State(admin): State<Admin>) -> Response {
    if let Some(e) = admin.evidence.as_ref().and_then(|s| s.log.failure()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unavailable",
                "reason": format!(
                    "the message log has failed, so every exchange is refused (LoggingFailed) \
                     until the server is restarted on a working disk: {e}"
                ),
            })),
        )
            .into_response();
    }
    match admin.conf.valid_now() {
        Ok(c) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "globalconf_serial": c.serial()})),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

async fn status(State(admin): State<Admin>) -> Response {
    let conf = admin.conf.current();
    let local = admin.serverconf.snapshot();
    Json(serde_json::json!({
        "globalconf": conf.as_ref().map(|c| serde_json::json!({
            "serial": c.serial(),
            "generated_at": c.conf().generated_at(),
            "expires_at": c.conf().expires_at(),
            "usable": admin.conf.valid_now().is_ok(),
        })),
        "services": local.services.len(),
        "grants": local.access.grants().len(),
    }))
    .into_response()
}

async fn refresh(State(admin): State<Admin>) -> ApiResult {
    let r = admin
        .conf
        .refresh()
        .await
        .map_err(|e| AdminError::RefreshFailed(e.to_string()))?;
    Ok(Json(serde_json::json!({
        "serial": r.serial,
        "source": format!("{:?}", r.source),
        "changed": r.succession == globalconf::Succession::Newer,
    }))
    .into_response())
}

/// Every service, in identifier order.
async fn list_services(State(admin): State<Admin>) -> Json<Vec<ServiceEntry>> {
    Json(
        admin
            .serverconf
            .snapshot()
            .services
            .values()
            .cloned()
            .collect(),
    )
}

/// Adds or replaces a service: 201 when new, 200 when replaced or unchanged.
async fn add_service(
    State(admin): State<Admin>,
    req: Result<Json<ServiceEntry>, JsonRejection>,
) -> ApiResult {
    let entry = body(req)?;
    let stored = entry.clone();
    let new = on_serverconf(&admin, move |c| c.add_service(stored)).await?;
    added(new, entry)
}

/// Removes a service and its grants: 204, or 404 if there was none.
async fn remove_service(State(admin): State<Admin>, Path(raw): Path<String>) -> ApiResult {
    let id: ServiceId = raw
        .trim_start_matches('/')
        .parse()
        .map_err(|e| AdminError::BadRequest(format!("service id: {e}")))?;
    let removed = {
        let id = id.clone();
        on_serverconf(&admin, move |c| c.remove_service(&id)).await?
    };
    if !removed {
        return Err(AdminError::NotFound(format!("no service {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Every grant.
async fn list_access(State(admin): State<Admin>) -> Json<Vec<Grant>> {
    Json(admin.serverconf.snapshot().access.grants().to_vec())
}

/// Adds a grant: 201 when new, 200 when it was already there.
async fn grant(State(admin): State<Admin>, req: Result<Json<Grant>, JsonRejection>) -> ApiResult {
    let grant = body(req)?;
    let stored = grant.clone();
    let new = on_serverconf(&admin, move |c| c.grant(stored)).await?;
    added(new, grant)
}

/// Removes a grant (the same JSON it was given with): 204, or 404 if there was none.
async fn revoke(State(admin): State<Admin>, req: Result<Json<Grant>, JsonRejection>) -> ApiResult {
    let grant = body(req)?;
    if !on_serverconf(&admin, move |c| c.revoke(&grant)).await? {
        return Err(AdminError::NotFound("no such grant".into()));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Every suppression rule (resident transparency).
async fn list_suppressions(State(admin): State<Admin>) -> Json<Vec<Suppression>> {
    Json(admin.serverconf.snapshot().suppressions.clone())
}

/// Adds a suppression rule or replaces the one for the same client: 201 when new, else 200.
async fn suppress(
    State(admin): State<Admin>,
    req: Result<Json<Suppression>, JsonRejection>,
) -> ApiResult {
    let rule = body(req)?;
    let stored = rule.clone();
    let new = on_serverconf(&admin, move |c| c.suppress(stored)).await?;
    added(new, rule)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    client: SuppressedClient,
}

/// Removes the suppression rule of `{"client": ...}`: 204, or 404 if there was none.
async fn unsuppress(
    State(admin): State<Admin>,
    req: Result<Json<ClientBody>, JsonRejection>,
) -> ApiResult {
    let ClientBody { client } = body(req)?;
    if !on_serverconf(&admin, move |c| c.unsuppress(&client)).await? {
        return Err(AdminError::NotFound(
            "no suppression rule for that client".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
}

/// The newest `limit` (default 100, at most 10 000) audit records, oldest first.
async fn audit(
    State(admin): State<Admin>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|r| AdminError::BadRequest(r.body_text()))?;
    let limit = q.limit.unwrap_or(AUDIT_DEFAULT_LIMIT).min(AUDIT_MAX_LIMIT);
    let entries = on_serverconf(&admin, move |c| c.audit(limit)).await?;
    Ok(Json(entries).into_response())
}

/// `POST /v1/evidence`: an evidence bundle (protobuf, docs/evidence.md) for one X-Road-Id, a time
/// range or a data subject.
async fn export_evidence(
    State(admin): State<Admin>,
    req: Result<Json<crate::log::EvidenceQuery>, JsonRejection>,
) -> ApiResult {
    use crate::log::ExportError;
    let query = body(req)?;
    let source = admin
        .evidence
        .clone()
        .ok_or_else(|| AdminError::NotFound("this server has no message log".into()))?;
    let bundle = tokio::task::spawn_blocking(move || {
        crate::log::export_evidence(
            &source.log,
            &source.server_id,
            &query,
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
    })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
        prost::Message::encode_to_vec(&bundle),
    )
        .into_response())
}
