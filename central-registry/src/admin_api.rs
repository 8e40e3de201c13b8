//! The admin HTTP API (plain HTTP on `admin_listen`, loopback by default). Every request needs
//! `Authorization: Bearer <admin-token>`; bodies and answers are JSON. Identifiers in paths are
//! percent-encoded, one path segment each (`JP%2FGOV%2Fdigital-agency`).
//!
//! Every operation of [`crate::ops`] gets its route from its `METHOD` and `PATH`, and the one
//! generic [`handle`] reads its request (path, then query or JSON body), runs it, and answers
//! with its `STATUS`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header;
use runtime::admin::{self, Refusal};
use subtle::ConstantTimeEq as _;

use crate::admin::RegistryAdmin;
use crate::error::RegistryError;
use crate::ops::{self, AdminOp, OpVisitor};
use crate::shared::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut routes = Routes(Router::new());
    ops::for_each_op(&mut routes);
    let admin = Router::new()
        .nest("/admin/v1", routes.0)
        .fallback(crate::http::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_bearer,
        ))
        .with_state(Arc::clone(&shared));
    // Monitors read it without the token, as they read a security server's (keep the admin
    // listener on loopback or a management network).
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/health", axum::routing::get(crate::http::health))
        .with_state(shared)
        .merge(admin)
}

/// `GET /metrics`.
async fn metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let rendered = tokio::task::spawn_blocking(move || {
        shared.with_core(|core, now| shared.metrics.render(core, now))
    })
    .await;
    match rendered {
        Ok(Ok(text)) => (
            [(http::header::CONTENT_TYPE, runtime::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => RegistryError::Internal(e.to_string()).into_response(),
    }
}

/// Adds one route per operation.
struct Routes(Router<Arc<Shared>>);

impl OpVisitor for Routes {
    fn visit<Op: AdminOp>(&mut self) {
        self.0 = admin::route::<Op, _, _, _>(std::mem::take(&mut self.0), handle::<Op>);
    }
}

async fn require_bearer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed =
        presented.is_some_and(|t| bool::from(t.as_bytes().ct_eq(shared.admin_token.as_bytes())));
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

/// The handler of every operation: runs it through [`RegistryAdmin::run`].
async fn handle<Op: AdminOp>(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    admin::handle::<Op, _, _>(request, refuse, |op| async move {
        RegistryAdmin::new(shared).run(op).await
    })
    .await
}

/// A query the extractor cannot read gets axum's own answer; a bad identifier or JSON body is a
/// `Registry.BadRequest`.
fn refuse(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Path(e) => RegistryError::from(e).into_response(),
        Refusal::Query(rejection) => rejection.into_response(),
        Refusal::Json(why) => RegistryError::BadRequest(why).into_response(),
        Refusal::NoInput(why) => RegistryError::Internal(why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use certs::SystemClock;

    use super::*;
    use crate::ops::Input;
    use crate::{Registry, RegistryConfig, init_data_dir};

    async fn send(app: &Router, token: &str, method: &http::Method, path: &str) -> (u16, String) {
        let uri = format!("/admin/v1{path}");
        runtime::admin::checks::send(app, token, method, &uri, "{}").await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_op_is_routed_to_its_handler() {
        let dir = tempfile::tempdir().unwrap();
        let config = RegistryConfig {
            data_dir: dir.path().join("data"),
            ..RegistryConfig::default()
        };
        init_data_dir(&config, &SystemClock).unwrap();
        let registry = Registry::open(config, Arc::new(SystemClock)).unwrap();
        let token = registry.shared.admin_token.to_string();
        let app = router(Arc::clone(&registry.shared));
        for op in ops::table() {
            // "x" is no identifier of any kind, so an op with identifiers refuses it by name:
            // proof that its own handler, not the fallback, answered.
            let (status, body) =
                runtime::admin::checks::routed(&app, &token, "/admin/v1", "{}", &op).await;
            if op.path == "/federations/{instance}" {
                // "x" is a valid instance identifier: its own handler says it is unknown.
                assert_eq!(status, 404, "{}: {body}", op.name);
                assert!(body.contains("instance x"), "{}: {body}", op.name);
            } else if op.path_params > 0 {
                assert_eq!(status, 400, "{}: {body}", op.name);
                assert!(body.contains(" id: "), "{}: {body}", op.name);
            } else if op.input == Input::None {
                assert_eq!(status, op.status.as_u16(), "{}: {body}", op.name);
            }
        }
        let (status, _) = send(&app, &token, &http::Method::DELETE, "/status").await;
        assert_eq!(status, 405);
        let (status, body) = send(&app, &token, &http::Method::GET, "/nothing").await;
        assert_eq!((status, body.contains("no such endpoint")), (404, true));
    }
}
