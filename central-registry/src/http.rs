//! The public HTTPS endpoints of the registry (and the pieces a replica shares): the signed
//! global configuration, the anchor, the CA certificate, enrolment, certificate renewal, key
//! requests, health.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use globalconf::SecurityServerId;
use http::{StatusCode, header};

use crate::admin::RegistryAdmin;
use crate::enrollment::EnrollmentStatus;
use crate::error::RegistryError;
use crate::shared::Shared;

/// Largest accepted enrolment request body.
pub const MAX_ENROLLMENT_BODY: usize = 64 * 1024;

/// Header carrying the serial of the served configuration.
pub const SERIAL_HEADER: &str = "x-configuration-serial";

pub(crate) fn public_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/global-configuration", get(global_configuration))
        .route("/v1/anchor", get(anchor))
        .route("/v1/ca.pem", get(ca_pem))
        .route(
            "/v1/enrollments",
            post(submit_enrollment).layer(DefaultBodyLimit::max(MAX_ENROLLMENT_BODY)),
        )
        .route("/v1/enrollments/{*server_id}", get(enrollment_status))
        .route(
            "/v1/renewals",
            post(submit_renewal).layer(DefaultBodyLimit::max(MAX_ENROLLMENT_BODY)),
        )
        .route(
            "/v1/key-requests",
            post(submit_key_request).layer(DefaultBodyLimit::max(MAX_ENROLLMENT_BODY)),
        )
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(shared)
}

/// The signed configuration envelope as served by the registry and its replicas. Its entity tag
/// is the serial: a server that already holds it (`If-None-Match: "<serial>"`) gets `304 Not
/// Modified` and no body, so thousands of servers polling every minute do not each download the
/// whole configuration again. As HTTP says (RFC 9110 §13.1.2), `If-None-Match` compares weakly
/// (`W/"7"` matches `"7"`) and `*` matches whatever is published.
pub(crate) fn configuration_response(
    serial: u64,
    envelope: Bytes,
    request: &header::HeaderMap,
) -> Response {
    let etag = format!("\"{serial}\"");
    let headers = [
        (header::CONTENT_TYPE, "application/x-protobuf".to_owned()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, etag.clone()),
        (
            header::HeaderName::from_static(SERIAL_HEADER),
            serial.to_string(),
        ),
    ];
    let held = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    if held {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, envelope).into_response()
}

pub(crate) fn anchor_response(toml: String) -> Response {
    ([(header::CONTENT_TYPE, "application/toml")], toml).into_response()
}

pub(crate) fn ca_pem_response(pem: String) -> Response {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}

/// `GET /health` (`runtime::health`): the registry serves whenever it runs; it says which
/// serial.
pub(crate) async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let serial = shared.publication.borrow().serial;
    runtime::health::Health::Ok.response(runtime::health::detail("serial", serial))
}

pub(crate) async fn not_found() -> RegistryError {
    RegistryError::NotFound("no such endpoint".into())
}

/// Parses a server id taken from a path: percent-encoded (`JP%2FGOV%2Fx%2Fss1`) or with slashes.
pub(crate) fn path_server_id(raw: &str) -> Result<SecurityServerId, RegistryError> {
    raw.trim_start_matches('/')
        .parse()
        .map_err(|e| RegistryError::BadRequest(format!("server id: {e}")))
}

async fn global_configuration(
    State(shared): State<Arc<Shared>>,
    request: header::HeaderMap,
) -> Response {
    let p = shared.publication.borrow().clone();
    configuration_response(p.serial, p.envelope.clone(), &request)
}

async fn anchor(State(shared): State<Arc<Shared>>) -> Response {
    anchor_response(shared.served().anchor_toml)
}

async fn ca_pem(State(shared): State<Arc<Shared>>) -> Response {
    ca_pem_response(shared.served().ca_pem)
}

/// A request body within [`MAX_ENROLLMENT_BODY`].
fn request_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, RegistryError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RegistryError::TooLarge(MAX_ENROLLMENT_BODY)
        } else {
            RegistryError::BadRequest(r.body_text())
        }
    })
}

async fn submit_enrollment(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RegistryError> {
    let body = request_body(body)?;
    let view = RegistryAdmin::new(shared)
        .submit_enrollment(body.to_vec())
        .await?;
    let status = match view.status {
        EnrollmentStatus::Approved => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(view)).into_response())
}

async fn submit_renewal(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RegistryError> {
    let body = request_body(body)?;
    let view = RegistryAdmin::new(shared)
        .submit_renewal(body.to_vec())
        .await?;
    Ok(Json(view).into_response())
}

async fn submit_key_request(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RegistryError> {
    let body = request_body(body)?;
    let answer = RegistryAdmin::new(shared)
        .submit_key_request(body.to_vec())
        .await?;
    let status = match answer.status {
        crate::ops::KeyRequestStatus::Listed => StatusCode::OK,
        crate::ops::KeyRequestStatus::Pending => StatusCode::ACCEPTED,
    };
    Ok((status, Json(answer)).into_response())
}

async fn enrollment_status(
    State(shared): State<Arc<Shared>>,
    Path(server_id): Path<String>,
) -> Result<Response, RegistryError> {
    let id = path_server_id(&server_id)?;
    let view = RegistryAdmin::new(shared).enrollment(id).await?;
    Ok(Json(crate::admin::EnrollmentStatusView::from(view)).into_response())
}
