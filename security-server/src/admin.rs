//! The admin API (bearer token, loopback by default) and the unauthenticated health endpoint for
//! load balancers.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use crate::confclient::ConfClient;

#[derive(Debug, Clone)]
pub struct Admin {
    conf: Arc<ConfClient>,
    token_sha256: [u8; 32],
}

impl Admin {
    pub fn new(conf: Arc<ConfClient>, token: &str) -> Self {
        Self {
            conf,
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/v1/status", get(status))
            .route("/v1/globalconf/refresh", post(refresh))
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

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"type": "Admin.Unauthorized", "message": "a valid admin bearer token is required"})),
    )
        .into_response()
}

/// 200 when the server can exchange messages (it holds an unexpired configuration), else 503.
async fn health(State(admin): State<Admin>) -> Response {
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

async fn status(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.authorized(&headers) {
        return unauthorized();
    }
    let conf = admin.conf.current();
    Json(serde_json::json!({
        "globalconf": conf.as_ref().map(|c| serde_json::json!({
            "serial": c.serial(),
            "generated_at": c.conf().generated_at(),
            "expires_at": c.conf().expires_at(),
            "usable": admin.conf.valid_now().is_ok(),
        })),
    }))
    .into_response()
}

async fn refresh(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.authorized(&headers) {
        return unauthorized();
    }
    match admin.conf.refresh().await {
        Ok(r) => Json(serde_json::json!({
            "serial": r.serial,
            "source": format!("{:?}", r.source),
            "changed": r.succession == globalconf::Succession::Newer,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"type": "Admin.RefreshFailed", "message": e.to_string()})),
        )
            .into_response(),
    }
}
