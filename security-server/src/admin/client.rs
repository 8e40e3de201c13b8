//! A typed client of the admin API, used by the CLI commands. One generic [`AdminClient::call`]
//! sends any operation of [`super::ops`] and reads its [`Reply`].

use std::time::Duration;

use serde::Serialize;

use super::ErrorBody;
use super::ops::{AdminOp, Input, PathParams, Reply};
use crate::config::Config;
use crate::identity::{Paths, path_segment};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The admin token could not be read.
    #[error("{0}")]
    Token(#[from] certs::Error),
    #[error("{0}")]
    Transport(#[from] runtime::ClientError),
    /// The server refused with an `Admin.*` error.
    #[error("{}: {} (HTTP {status})", body.kind, body.message)]
    Refused {
        status: http::StatusCode,
        body: ErrorBody,
    },
    /// An answer that is no admin API answer.
    #[error("HTTP {status}: {message}")]
    Unexpected {
        status: http::StatusCode,
        message: String,
    },
}

impl AdminClientError {
    /// The status of a refusal, if the server answered.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            AdminClientError::Refused { status, .. }
            | AdminClientError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Admin API client: base URL plus bearer token.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    http: runtime::HttpClient,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `base` like `http://127.0.0.1:8090`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: runtime::HttpClient::plain(),
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
        self.http = self.http.with_timeout(timeout);
        self
    }

    /// Sends one admin operation (see [`super::ops`]) and reads its answer.
    pub async fn call<Op: AdminOp>(&self, op: &Op) -> Result<Op::Response, AdminClientError> {
        let (path, input) = op.to_wire();
        let mut url = format!("{}{}", self.base, fill_path(Op::PATH, &path.segments()));
        let body = match Op::INPUT {
            Input::None => None,
            Input::Query => {
                url += &query_string(&input).map_err(encoding)?;
                None
            }
            Input::Json => Some(serde_json::to_vec(&input).map_err(encoding)?),
        };
        let response = self
            .http
            .send(
                Op::METHOD,
                &url,
                Some(&self.token),
                body.map(|b| ("application/json", b.into())),
            )
            .await?;
        let status = response.status;
        if !status.is_success() {
            return Err(match response.json::<ErrorBody>() {
                Ok(body) => AdminClientError::Refused { status, body },
                Err(_) => AdminClientError::Unexpected {
                    status,
                    message: response.text(),
                },
            });
        }
        Op::Response::from_answer(status, &response.body)
            .map_err(|message| AdminClientError::Unexpected { status, message })
    }
}

fn encoding(e: serde_json::Error) -> AdminClientError {
    runtime::ClientError::Request(format!("cannot encode request: {e}")).into()
}

/// `template` (`/v1/services/{*id}`) with its placeholders replaced, in order, by the
/// percent-encoded `segments`.
fn fill_path(template: &str, segments: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut segments = segments.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        if let Some(segment) = segments.next() {
            out.push_str(&path_segment(segment));
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// `?name=value&...` for the non-null fields of a query type (empty if there are none).
fn query_string<T: Serialize>(query: &T) -> Result<String, serde_json::Error> {
    let serde_json::Value::Object(fields) = serde_json::to_value(query)? else {
        return Ok(String::new());
    };
    let pairs: Vec<String> = fields
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!("{}={}", path_segment(name), path_segment(&value)))
        })
        .collect();
    Ok(if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::ops;

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
