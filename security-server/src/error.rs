//! How an X-Road error reaches an information system over HTTP (DESIGN §5.1): the status its
//! code decides, a body `{"type", "message", "detail"}` in JSON or, when `Accept` asks for it,
//! XML ([`ErrorFormat`]), and the same type in the `X-Road-Error` header, with the message's
//! `X-Road-Id`. The codes themselves are the protocol core's ([`exchange::error`]).

use axum::http::{HeaderValue, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use exchange::rest::header;
use exchange::{ErrorFormat, XRoadError};

/// The HTTP response for `e`, its body in `format`.
pub fn error_response(e: &XRoadError, format: ErrorFormat) -> Response {
    let (content_type, body) = e.render(format);
    let mut response = (
        e.status(),
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&e.error_type()) {
        headers.insert(header::ERROR, v);
    }
    if let Some(id) = e
        .message_id
        .as_deref()
        .and_then(|i| HeaderValue::from_str(i).ok())
    {
        headers.insert(header::ID, id);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use exchange::{ClientCode, ServerProxyCode};

    use super::*;

    #[tokio::test]
    async fn the_type_is_in_the_status_the_header_and_the_body() {
        let e = XRoadError::new(ServerProxyCode::AccessDenied, "no").with_id("id-1");
        let r = error_response(&e, ErrorFormat::Json);
        assert_eq!(r.status(), 500);
        assert_eq!(
            r.headers()["content-type"],
            "application/json;charset=utf-8"
        );
        assert_eq!(
            r.headers()["x-road-error"],
            "Server.ServerProxy.AccessDenied"
        );
        assert_eq!(r.headers()["x-road-id"], "id-1");
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "Server.ServerProxy.AccessDenied");
        assert_eq!(json["detail"], "id-1");
        let r = error_response(
            &XRoadError::new(ClientCode::BadRequest, "bad"),
            ErrorFormat::TextXml,
        );
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "text/xml;charset=utf-8");
        assert!(r.headers().get("x-road-id").is_none());
    }
}
