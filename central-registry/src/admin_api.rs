//! The admin HTTP API (plain HTTP on `admin_listen`, loopback by default). Every request needs
//! `Authorization: Bearer <admin-token>`; bodies and answers are JSON. Identifiers in paths are
//! percent-encoded, one path segment each (`JP%2FGOV%2Fdigital-agency`).

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use certs::{KeyId, PublicKey};
use globalconf::{GlobalGroupId, MemberId, SecurityServerId, SubsystemId};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::admin::RegistryAdmin;
use crate::error::RegistryError;
use crate::registry::Shared;
use crate::util::constant_time_eq;

/// `POST /admin/v1/members`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub id: MemberId,
    pub name: String,
}

/// `POST /admin/v1/subsystems`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSubsystem {
    pub id: SubsystemId,
    #[serde(default)]
    pub name: String,
}

/// `POST /admin/v1/groups`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddGroup {
    pub id: GlobalGroupId,
    #[serde(default)]
    pub description: String,
}

/// `POST /admin/v1/tokens`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub server_id: SecurityServerId,
}

/// `POST /admin/v1/members/{member}/keys`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: PublicKey,
    #[serde(default)]
    pub valid_from: Option<i64>,
}

/// `POST /admin/v1/members/{member}/keys/{key_id}/retire`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireKey {
    #[serde(default)]
    pub at: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/publish", post(publish))
        .route("/audit", get(audit))
        .route("/members", get(list_members).post(add_member))
        .route("/members/{id}", axum::routing::delete(remove_member))
        .route("/members/{id}/keys", get(list_keys).post(add_key))
        .route(
            "/members/{id}/keys/{key_id}",
            axum::routing::delete(remove_key),
        )
        .route("/members/{id}/keys/{key_id}/retire", post(retire_key))
        .route("/subsystems", get(list_subsystems).post(add_subsystem))
        .route("/subsystems/{id}", axum::routing::delete(remove_subsystem))
        .route("/groups", get(list_groups).post(add_group))
        .route("/groups/{id}", axum::routing::delete(remove_group))
        .route(
            "/groups/{id}/members/{subsystem}",
            put(add_group_member).delete(remove_group_member),
        )
        .route("/enrollments", get(list_enrollments))
        .route("/enrollments/{id}", get(enrollment))
        .route("/enrollments/{id}/approve", post(approve_enrollment))
        .route("/enrollments/{id}/reject", post(reject_enrollment))
        .route("/tokens", post(issue_token))
        .route("/servers", get(list_servers))
        .route("/servers/{id}", axum::routing::delete(remove_server))
        .route(
            "/servers/{id}/subsystems/{subsystem}",
            put(add_hosted_subsystem).delete(remove_hosted_subsystem),
        );
    Router::new()
        .nest("/admin/v1", api)
        .fallback(crate::http::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_bearer,
        ))
        .with_state(shared)
}

async fn require_bearer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed =
        presented.is_some_and(|t| constant_time_eq(t.as_bytes(), shared.admin_token.as_bytes()));
    if !allowed {
        tracing::warn!(path = %req.uri().path(), "admin request without a valid bearer token");
        let mut response = RegistryError::Unauthorized.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(req).await
}

type ApiResult = Result<Response, RegistryError>;

fn admin(shared: Arc<Shared>) -> RegistryAdmin {
    RegistryAdmin::new(shared)
}

fn id<T: FromStr>(what: &str, raw: &str) -> Result<T, RegistryError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e| RegistryError::BadRequest(format!("{what}: {e}")))
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, RegistryError> {
    json.map(|Json(v)| v)
        .map_err(|r| RegistryError::BadRequest(r.body_text()))
}

fn ok<T: Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

fn created<T: Serialize>(value: T) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).status().await?)
}

async fn publish(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).publish().await?)
}

async fn audit(State(s): State<Arc<Shared>>, Query(q): Query<AuditQuery>) -> ApiResult {
    ok(admin(s).audit(q.limit.unwrap_or(100)).await?)
}

async fn list_members(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).list_members().await?)
}

async fn add_member(
    State(s): State<Arc<Shared>>,
    req: Result<Json<AddMember>, JsonRejection>,
) -> ApiResult {
    let req = body(req)?;
    created(admin(s).add_member(req.id, req.name).await?)
}

async fn remove_member(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    admin(s).remove_member(id("member id", &raw)?).await?;
    no_content()
}

async fn list_keys(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    ok(admin(s).list_keys(id("member id", &raw)?).await?)
}

async fn add_key(
    State(s): State<Arc<Shared>>,
    Path(raw): Path<String>,
    req: Result<Json<AddKey>, JsonRejection>,
) -> ApiResult {
    let member = id("member id", &raw)?;
    let req = body(req)?;
    created(
        admin(s)
            .add_key(member, req.public_key, req.valid_from)
            .await?,
    )
}

fn key_id(raw: &str) -> Result<KeyId, RegistryError> {
    KeyId::parse(raw).map_err(|e| RegistryError::BadRequest(format!("key id: {e}")))
}

async fn retire_key(
    State(s): State<Arc<Shared>>,
    Path((member, key)): Path<(String, String)>,
    req: Result<Json<RetireKey>, JsonRejection>,
) -> ApiResult {
    let member = id("member id", &member)?;
    let key = key_id(&key)?;
    let req = body(req)?;
    ok(admin(s).retire_key(member, key, req.at).await?)
}

async fn remove_key(
    State(s): State<Arc<Shared>>,
    Path((member, key)): Path<(String, String)>,
) -> ApiResult {
    admin(s)
        .remove_key(id("member id", &member)?, key_id(&key)?)
        .await?;
    no_content()
}

async fn list_subsystems(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).list_subsystems().await?)
}

async fn add_subsystem(
    State(s): State<Arc<Shared>>,
    req: Result<Json<AddSubsystem>, JsonRejection>,
) -> ApiResult {
    let req = body(req)?;
    created(admin(s).add_subsystem(req.id, req.name).await?)
}

async fn remove_subsystem(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    admin(s).remove_subsystem(id("subsystem id", &raw)?).await?;
    no_content()
}

async fn list_groups(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).list_groups().await?)
}

async fn add_group(
    State(s): State<Arc<Shared>>,
    req: Result<Json<AddGroup>, JsonRejection>,
) -> ApiResult {
    let req = body(req)?;
    created(admin(s).add_group(req.id, req.description).await?)
}

async fn remove_group(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    admin(s).remove_group(id("group id", &raw)?).await?;
    no_content()
}

async fn add_group_member(
    State(s): State<Arc<Shared>>,
    Path((group, subsystem)): Path<(String, String)>,
) -> ApiResult {
    ok(admin(s)
        .add_group_member(id("group id", &group)?, id("subsystem id", &subsystem)?)
        .await?)
}

async fn remove_group_member(
    State(s): State<Arc<Shared>>,
    Path((group, subsystem)): Path<(String, String)>,
) -> ApiResult {
    ok(admin(s)
        .remove_group_member(id("group id", &group)?, id("subsystem id", &subsystem)?)
        .await?)
}

async fn list_enrollments(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).list_enrollments().await?)
}

async fn enrollment(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    ok(admin(s).enrollment(id("server id", &raw)?).await?)
}

async fn approve_enrollment(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    ok(admin(s).approve_enrollment(id("server id", &raw)?).await?)
}

async fn reject_enrollment(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    ok(admin(s).reject_enrollment(id("server id", &raw)?).await?)
}

async fn issue_token(
    State(s): State<Arc<Shared>>,
    req: Result<Json<IssueToken>, JsonRejection>,
) -> ApiResult {
    let req = body(req)?;
    created(admin(s).issue_token(req.server_id).await?)
}

async fn list_servers(State(s): State<Arc<Shared>>) -> ApiResult {
    ok(admin(s).list_servers().await?)
}

async fn remove_server(State(s): State<Arc<Shared>>, Path(raw): Path<String>) -> ApiResult {
    admin(s).remove_server(id("server id", &raw)?).await?;
    no_content()
}

async fn add_hosted_subsystem(
    State(s): State<Arc<Shared>>,
    Path((server, subsystem)): Path<(String, String)>,
) -> ApiResult {
    ok(admin(s)
        .add_hosted_subsystem(id("server id", &server)?, id("subsystem id", &subsystem)?)
        .await?)
}

async fn remove_hosted_subsystem(
    State(s): State<Arc<Shared>>,
    Path((server, subsystem)): Path<(String, String)>,
) -> ApiResult {
    ok(admin(s)
        .remove_hosted_subsystem(id("server id", &server)?, id("subsystem id", &subsystem)?)
        .await?)
}
