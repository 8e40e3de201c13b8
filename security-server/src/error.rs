//! Errors a security server reports to an information system, in X-Road's taxonomy (DESIGN §5.1):
//! a JSON body `{"type", "message", "detail"}` and the same type in the `X-Road-Error` header.
//! Each kind maps explicitly to its HTTP status, the way rustls maps errors to alerts.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Who is at fault, which decides the prefix of the error type and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The calling information system sent something wrong (`Client.*`, 400).
    Client,
    /// The client's own security server cannot proceed (`Server.ClientProxy.*`, 500).
    ClientProxy,
    /// The provider's security server refused or failed (`Server.ServerProxy.*`, 500).
    ServerProxy,
}

/// One X-Road error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.error_type())]
pub struct XRoadError {
    pub origin: Origin,
    /// The code after the prefix, e.g. `OutdatedGlobalConf`, `InvalidClientIdentifier`.
    pub code: Cow<'static, str>,
    pub message: String,
    /// The message's X-Road-Id, when known.
    pub message_id: Option<String>,
}

impl XRoadError {
    pub fn new(
        origin: Origin,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            origin,
            code: code.into(),
            message: message.into(),
            message_id: None,
        }
    }

    pub fn client(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(Origin::Client, code, message)
    }

    pub fn client_proxy(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(Origin::ClientProxy, code, message)
    }

    pub fn server_proxy(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(Origin::ServerProxy, code, message)
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// The global configuration is missing or expired (DESIGN §4 (c)).
    pub fn outdated_globalconf(message: impl Into<String>) -> Self {
        Self::client_proxy("OutdatedGlobalConf", message)
    }

    /// Rebuilds an error a provider's security server reported (its type and message). Only
    /// `Server.ServerProxy.*` types are taken as they are: a provider cannot make the client's
    /// server claim a fault of its own or of the client.
    pub fn from_remote(error_type: &str, message: &str) -> Self {
        let valid_code = |c: &str| {
            !c.is_empty()
                && c.len() <= 128
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.')
        };
        match error_type.strip_prefix("Server.ServerProxy.") {
            Some(code) if valid_code(code) => Self::server_proxy(code.to_owned(), message),
            _ => Self::client_proxy(
                "InvalidResponse",
                format!(
                    "the provider's security server answered with an unrecognised error {error_type:?}: {message}"
                ),
            ),
        }
    }

    /// `Client.X`, `Server.ClientProxy.X` or `Server.ServerProxy.X`.
    pub fn error_type(&self) -> String {
        let prefix = match self.origin {
            Origin::Client => "Client",
            Origin::ClientProxy => "Server.ClientProxy",
            Origin::ServerProxy => "Server.ServerProxy",
        };
        format!("{prefix}.{}", self.code)
    }

    pub fn status(&self) -> StatusCode {
        match self.origin {
            Origin::Client => StatusCode::BAD_REQUEST,
            Origin::ClientProxy | Origin::ServerProxy => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.error_type(),
            "message": self.message,
            "detail": self.message_id.clone().unwrap_or_default(),
        })
    }
}

impl IntoResponse for XRoadError {
    fn into_response(self) -> Response {
        let error_type = self.error_type();
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Ok(v) = HeaderValue::from_str(&error_type) {
            response.headers_mut().insert("x-road-error", v);
        }
        if let Some(id) = self
            .message_id
            .as_deref()
            .and_then(|i| HeaderValue::from_str(i).ok())
        {
            response.headers_mut().insert("x-road-id", id);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_statuses_follow_the_origin() {
        let e = XRoadError::outdated_globalconf("expired").with_id("abc");
        assert_eq!(e.error_type(), "Server.ClientProxy.OutdatedGlobalConf");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["detail"], "abc");
        let e = XRoadError::client("InvalidClientIdentifier", "bad");
        assert_eq!(e.error_type(), "Client.InvalidClientIdentifier");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = XRoadError::server_proxy("AccessDenied", "no");
        assert_eq!(e.error_type(), "Server.ServerProxy.AccessDenied");
    }
}
