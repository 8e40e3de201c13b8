//! The admin HTTP API (plain HTTP on `admin_listen`, loopback by default). Every request needs
//! `Authorization: Bearer <admin-token>`; bodies and answers are JSON. Identifiers in paths are
//! percent-encoded, one path segment each (`JP%2FGOV%2Fdigital-agency`).
//!
//! Every operation of [`crate::ops`] gets its route from its `METHOD` and `PATH`, and the one
//! generic [`handle`] reads its request (path, then query or JSON body), runs it, and answers
//! with its `STATUS`.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use http::{StatusCode, header};
use subtle::ConstantTimeEq as _;

use crate::admin::RegistryAdmin;
use crate::error::RegistryError;
use crate::ops::{self, AdminOp, Input, OpVisitor, PathParams};
use crate::registry::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut routes = Routes(Router::new());
    ops::for_each_op(&mut routes);
    Router::new()
        .nest("/admin/v1", routes.0)
        .fallback(crate::http::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_bearer,
        ))
        .with_state(shared)
}

/// Adds one route per operation.
struct Routes(Router<Arc<Shared>>);

impl OpVisitor for Routes {
    fn visit<Op: AdminOp>(&mut self) {
        let Ok(filter) = MethodFilter::try_from(Op::METHOD) else {
            tracing::error!(method = %Op::METHOD, path = Op::PATH, "no route for this method");
            return;
        };
        let routes = std::mem::take(&mut self.0);
        self.0 = routes.route(Op::PATH, on(filter, handle::<Op>));
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

/// The handler of every operation.
async fn handle<Op: AdminOp>(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let op = match read::<Op>(request).await {
        Ok(op) => op,
        Err(refusal) => return refusal,
    };
    match RegistryAdmin::new(shared).run(op).await {
        Ok(_) if Op::STATUS == StatusCode::NO_CONTENT => StatusCode::NO_CONTENT.into_response(),
        Ok(answer) => (Op::STATUS, Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The request of `Op`: path identifiers first, then the query or the JSON body. A path or
/// query the extractor cannot read gets axum's own answer; a bad identifier or JSON body is a
/// `Registry.BadRequest`.
async fn read<Op: AdminOp>(request: Request) -> Result<Op, Response> {
    let (mut parts, body) = request.into_parts();
    let raw = if <Op::Path as PathParams>::COUNT == 0 {
        Vec::new()
    } else {
        let Path(raw) = Path::<Vec<String>>::from_request_parts(&mut parts, &())
            .await
            .map_err(IntoResponse::into_response)?;
        raw
    };
    let path = Op::Path::parse(&raw).map_err(IntoResponse::into_response)?;
    let body = match Op::INPUT {
        Input::None => serde_json::from_value(serde_json::Value::Null).map_err(|e| {
            RegistryError::Internal(format!("{} takes no input: {e}", Op::PATH)).into_response()
        })?,
        Input::Query => {
            let Query(query) = Query::<Op::Body>::from_request_parts(&mut parts, &())
                .await
                .map_err(IntoResponse::into_response)?;
            query
        }
        Input::Json => {
            let Json(body) = Json::<Op::Body>::from_request(Request::from_parts(parts, body), &())
                .await
                .map_err(|r| RegistryError::BadRequest(r.body_text()).into_response())?;
            body
        }
    };
    Ok(Op::from_wire(path, body))
}
