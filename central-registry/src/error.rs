//! The registry's one error type, grouped by kind, and what each kind tells the other side:
//! an HTTP status and a JSON body `{"type": "Registry.<Kind>", "message": ...}`. Internal errors
//! are logged in full and answered with a generic message, so paths and key material never leak.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::enrollment::EnrollmentError;
use crate::store::StoreError;

/// Everything the registry can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Malformed input: bad identifier, undecodable protobuf, stale request, bad JSON.
    #[error("{0}")]
    BadRequest(String),
    /// An enrolment request whose signature does not verify under the key it carries.
    #[error("the enrolment request signature does not verify under its member signing key")]
    InvalidSignature,
    /// A renewal request not signed by both the server's current TLS key and the new one.
    #[error(
        "the renewal request is not signed by both the key of the server's listed certificate and the new key"
    )]
    RenewalSignature,
    /// A key request not signed by both a valid key of the member and the new key.
    #[error(
        "the key request is not signed by both a key the configuration lists as valid for the member and the new key"
    )]
    KeyRequestSignature,
    /// A wrong, used, expired or misdirected enrolment token.
    #[error("{0}")]
    InvalidToken(String),
    /// Missing or wrong admin bearer token.
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state (already exists, still referenced, not pending).
    #[error("{0}")]
    Conflict(String),
    /// A replica serves configuration only.
    #[error("this is a read-only replica of the central registry; enrol at the primary")]
    ReadOnlyReplica,
    /// The request body is larger than the endpoint accepts.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("keys or certificates: {0}")]
    Certs(#[from] certs::Error),
    #[error("anchor: {0}")]
    Anchor(#[from] globalconf::AnchorError),
    #[error("{0}")]
    Internal(String),
}

/// The kinds of [`RegistryError`], as the other side sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    InvalidSignature,
    InvalidToken,
    Unauthorized,
    NotFound,
    Conflict,
    ReadOnlyReplica,
    TooLarge,
    Internal,
}

impl ErrorKind {
    /// The `type` of the JSON error body.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "Registry.BadRequest",
            ErrorKind::InvalidSignature => "Registry.InvalidSignature",
            ErrorKind::InvalidToken => "Registry.InvalidToken",
            ErrorKind::Unauthorized => "Registry.Unauthorized",
            ErrorKind::NotFound => "Registry.NotFound",
            ErrorKind::Conflict => "Registry.Conflict",
            ErrorKind::ReadOnlyReplica => "Registry.ReadOnlyReplica",
            ErrorKind::TooLarge => "Registry.TooLarge",
            ErrorKind::Internal => "Registry.Internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest | ErrorKind::InvalidSignature => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidToken => StatusCode::FORBIDDEN,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::ReadOnlyReplica => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl RegistryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::BadRequest(_) => ErrorKind::BadRequest,
            RegistryError::InvalidSignature
            | RegistryError::RenewalSignature
            | RegistryError::KeyRequestSignature => ErrorKind::InvalidSignature,
            RegistryError::InvalidToken(_) => ErrorKind::InvalidToken,
            RegistryError::Unauthorized => ErrorKind::Unauthorized,
            RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::Conflict(_) => ErrorKind::Conflict,
            RegistryError::ReadOnlyReplica => ErrorKind::ReadOnlyReplica,
            RegistryError::TooLarge(_) => ErrorKind::TooLarge,
            RegistryError::Config(_)
            | RegistryError::Store(_)
            | RegistryError::Certs(_)
            | RegistryError::Anchor(_)
            | RegistryError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// What the other side is told: the full message for its own mistakes, nothing about ours.
    pub fn to_body(&self) -> ErrorBody {
        let kind = self.kind();
        let message = match kind {
            ErrorKind::Internal => "internal error; see the registry's log".to_owned(),
            _ => self.to_string(),
        };
        ErrorBody {
            error_type: kind.error_type().to_owned(),
            message,
        }
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
}

/// How a refusal reads in the admin CLI.
impl runtime::admin::ErrorAnswer for ErrorBody {
    fn refused(&self, status: http::StatusCode) -> String {
        format!("{status}: {} ({})", self.message, self.error_type)
    }
    fn unexpected(status: http::StatusCode, message: &str) -> String {
        format!("unexpected answer ({status}): {message}")
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        if kind == ErrorKind::Internal {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, error_type = kind.error_type(), "request refused");
        }
        (kind.status(), Json(self.to_body())).into_response()
    }
}

impl From<EnrollmentError> for RegistryError {
    fn from(e: EnrollmentError) -> Self {
        match e {
            EnrollmentError::BadRequest(m) => RegistryError::BadRequest(m),
            EnrollmentError::InvalidSignature => RegistryError::InvalidSignature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_details() {
        let e = RegistryError::Internal("/secret/path/ca.key unreadable".into());
        let body = e.to_body();
        assert_eq!(body.error_type, "Registry.Internal");
        assert!(!body.message.contains("ca.key"));
        let e = RegistryError::InvalidToken("enrolment token is not valid".into());
        assert_eq!(e.kind().status(), StatusCode::FORBIDDEN);
        assert_eq!(e.to_body().error_type, "Registry.InvalidToken");
    }
}
