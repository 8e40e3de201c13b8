//! A typed client of the admin API, used by the CLI commands. One generic [`AdminClient::call`]
//! sends any operation of [`super::ops`] and reads its [`super::Reply`].

use std::time::Duration;

use runtime::admin::{self, CallError};

use super::ErrorBody;
use super::ops::AdminOp;
use crate::config::Config;
use crate::identity::Paths;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The admin token could not be read.
    #[error("{0}")]
    Token(#[from] certs::Error),
    /// No answer, an `Admin.*` refusal, or an answer that is no admin API answer.
    #[error(transparent)]
    Call(#[from] CallError<ErrorBody>),
}

impl AdminClientError {
    /// The status of a refusal, if the server answered.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            AdminClientError::Call(e) => e.status(),
            AdminClientError::Token(_) => None,
        }
    }
}

/// Admin API client: base URL plus bearer token.
#[derive(Clone, Debug)]
pub struct AdminClient {
    api: admin::Client,
}

impl AdminClient {
    /// `base` like `http://127.0.0.1:8090`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            api: admin::Client::new(base, token),
        }
    }

    /// The configuration's `admin.listen` and the token in `data_dir/admin-token`.
    pub fn from_config(config: &Config) -> Result<Self, AdminClientError> {
        let token = certs::read_secret_file(&Paths::new(&config.data_dir).admin_token())?;
        let token = String::from_utf8_lossy(&token).trim().to_owned();
        Ok(Self::new(format!("http://{}", config.admin.listen), token))
    }

    /// Waits this long for an answer (an evidence export may take minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.api = self.api.with_timeout(timeout);
        self
    }

    /// Sends one admin operation (see [`super::ops`]) and reads its answer.
    pub async fn call<Op: AdminOp>(&self, op: &Op) -> Result<Op::Response, AdminClientError> {
        Ok(self.api.call(op).await?)
    }
}

#[cfg(test)]
mod tests {
    use runtime::admin::{fill_path, path_segment, query_string};

    use crate::admin::ops::{self, Endpoint as _, PathParams as _};

    #[test]
    fn identifiers_fill_the_path_percent_encoded() {
        let op = ops::RemoveService {
            id: "JP/MUN/131016/records/residentRecord".parse().unwrap(),
        };
        let (path, ()) = op.to_wire();
        assert_eq!(
            fill_path(ops::RemoveService::PATH, &path.segments()),
            "/v1/services/JP%2FMUN%2F131016%2Frecords%2FresidentRecord"
        );
        assert_eq!(fill_path("/v1/status", &[]), "/v1/status");
        assert_eq!(path_segment("JP/GOV/a?b c"), "JP%2FGOV%2Fa%3Fb%20c");
    }

    #[test]
    fn queries_carry_the_fields_that_are_set() {
        assert_eq!(
            query_string(&ops::Audit { limit: Some(50) }).unwrap(),
            "?limit=50"
        );
        assert_eq!(query_string(&ops::Audit { limit: None }).unwrap(), "");
    }
}
