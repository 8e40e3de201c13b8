//! One health format for every binary's `GET /health`, for load balancers and monitors: a JSON
//! object whose `status` is `ok` or `warning` (200: it serves; a warning needs the operator)
//! or `unavailable` (503: send it nothing), with the `reason` for anything but `ok`, and what
//! else the binary adds (`globalconf_serial`, `serial`).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value};

/// What a binary says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// It serves, but the operator must act (a certificate that does not renew).
    Warning(String),
    /// It cannot serve now.
    Unavailable(String),
}

impl Health {
    /// The answer, with `details` beside `status` and `reason`.
    pub fn response(self, details: Map<String, Value>) -> Response {
        let mut body = details;
        let (status, code) = match self {
            Health::Ok => ("ok", StatusCode::OK),
            Health::Warning(reason) => {
                body.insert("reason".into(), reason.into());
                ("warning", StatusCode::OK)
            }
            Health::Unavailable(reason) => {
                body.insert("reason".into(), reason.into());
                ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
            }
        };
        body.insert("status".into(), status.into());
        (code, Json(Value::Object(body))).into_response()
    }
}

/// `{"key": value}`, for [`Health::response`].
pub fn detail(key: &str, value: impl Into<Value>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.to_owned(), value.into());
    map
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn answer(health: Health) -> (u16, Value) {
        let r = health.response(detail("serial", 7));
        let status = r.status().as_u16();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_status_reads_the_same_way() {
        let (code, body) = answer(Health::Ok).await;
        assert_eq!(code, 200);
        assert_eq!(body, serde_json::json!({"status": "ok", "serial": 7}));
        let (code, body) = answer(Health::Warning("renew".into())).await;
        assert_eq!(code, 200);
        assert_eq!(
            body,
            serde_json::json!({"status": "warning", "reason": "renew", "serial": 7})
        );
        let (code, body) = answer(Health::Unavailable("expired".into())).await;
        assert_eq!(code, 503);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["reason"], "expired");
    }
}
