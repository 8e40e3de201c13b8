//! A typed client of the admin HTTP API, used by the CLI subcommands (the running registry holds
//! the database lock, so the CLI talks to it instead of opening the database). One generic
//! [`AdminClient::call`] sends any operation of [`crate::ops`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use crate::config::RegistryConfig;
use crate::datadir::DataDir;
use crate::error::{ErrorBody, RegistryError};
use crate::ops::{AdminOp, Input, PathParams};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("{0}")]
    Transport(#[from] runtime::ClientError),
    #[error("{status}: {} ({})", body.message, body.error_type)]
    Refused {
        status: http::StatusCode,
        body: ErrorBody,
    },
    #[error("unexpected answer ({status}): {message}")]
    Unexpected {
        status: http::StatusCode,
        message: String,
    },
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
    /// `base` like `http://127.0.0.1:41002`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: runtime::HttpClient::plain(),
        }
    }

    /// The admin URL of the configuration (`admin_listen`; a wildcard address means loopback)
    /// and the token in its data directory.
    pub fn from_config(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let token = DataDir::new(&config.data_dir).read_admin_token()?;
        Ok(Self::new(admin_url(config.admin_listen), token))
    }

    /// Sends one admin operation (see [`crate::ops`]) and reads its answer.
    pub async fn call<Op: AdminOp>(&self, op: &Op) -> Result<Op::Response, AdminClientError> {
        let (path, input) = op.to_wire();
        let mut url = format!(
            "{}/admin/v1{}",
            self.base,
            fill_path(Op::PATH, &path.segments())
        );
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
        let body = if response.body.is_empty() {
            &b"null"[..]
        } else {
            &response.body[..]
        };
        serde_json::from_slice(body).map_err(|e| AdminClientError::Unexpected {
            status,
            message: format!("cannot decode the answer: {e}"),
        })
    }
}

fn encoding(e: serde_json::Error) -> AdminClientError {
    runtime::ClientError::Request(format!("cannot encode request: {e}")).into()
}

/// Characters left as they are in a path segment: RFC 3986 unreserved ones, so an identifier's
/// `/` becomes `%2F` and its `?` becomes `%3F`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `template` (`/members/{id}/keys`) with its placeholders replaced, in order, by the
/// percent-encoded `segments`.
fn fill_path(template: &str, segments: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut segments = segments.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        if let Some(segment) = segments.next() {
            out.extend(utf8_percent_encode(segment, SEGMENT));
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
            Some(format!(
                "{}={}",
                utf8_percent_encode(name, SEGMENT),
                utf8_percent_encode(&value, SEGMENT)
            ))
        })
        .collect();
    Ok(if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    })
}

/// `http://` URL for an admin listen address; a wildcard address is reached on loopback.
pub fn admin_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;

    #[test]
    fn identifiers_fill_the_path_percent_encoded() {
        let op = ops::RetireKey {
            member: "JP/GOV/digital-agency".parse().unwrap(),
            key_id: certs::KeyId::parse("00112233445566778899aabbccddeeff").unwrap(),
            retirement: ops::Retirement::default(),
        };
        let (path, _) = op.to_wire();
        assert_eq!(
            fill_path(ops::RetireKey::PATH, &path.segments()),
            "/members/JP%2FGOV%2Fdigital-agency/keys/00112233445566778899aabbccddeeff/retire"
        );
        assert_eq!(
            fill_path("/x/{id}", &["JP/GOV/a?b c".to_owned()]),
            "/x/JP%2FGOV%2Fa%3Fb%20c"
        );
        assert_eq!(fill_path("/status", &[]), "/status");
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
