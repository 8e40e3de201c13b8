//! A typed client of the admin HTTP API, used by the CLI subcommands (the running registry holds
//! the database lock, so the CLI talks to it instead of opening the database). One generic
//! [`AdminClient::call`] sends any operation of [`crate::ops`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use runtime::admin::{self, CallError};

use crate::config::RegistryConfig;
use crate::datadir::DataDir;
use crate::error::{ErrorBody, RegistryError};
use crate::ops::AdminOp;

/// Why an admin call failed.
pub type AdminClientError = CallError<ErrorBody>;

/// Admin API client: base URL plus bearer token.
#[derive(Clone, Debug)]
pub struct AdminClient {
    api: admin::Client,
}

impl AdminClient {
    /// `base` like `http://127.0.0.1:41002`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        let base = base.into();
        Self {
            api: admin::Client::new(format!("{}/admin/v1", base.trim_end_matches('/')), token),
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
        self.api.call(op).await
    }
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
    use runtime::admin::{fill_path, query_string};

    use crate::ops::{self, Endpoint as _, PathParams as _};

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
