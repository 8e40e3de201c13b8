//! How the information systems of each hosted subsystem must connect to the client proxy
//! (X-Road's NOSSL / SSLNOAUTH / SSLAUTH, DESIGN §5.1): plain HTTP, HTTPS, or HTTPS with a client
//! certificate registered for that subsystem. On a server that hosts subsystems of several
//! members (共同利用方式) a subsystem without a rule requires a registered certificate, so one
//! member's system cannot name another member's subsystem; on a server of one member it may use
//! plain HTTP, as before. No I/O: the rules live in the local configuration
//! ([`crate::serverconf`]), the connection's facts come from the listener.

use std::fmt;

use exchange::{ClientCode, XRoadError};
use globalconf::ClientId;
use serde::{Deserialize, Serialize};

/// How a subsystem's information systems must connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// Plain HTTP or HTTPS, no client certificate (X-Road's NOSSL).
    Http,
    /// HTTPS, no client certificate (SSLNOAUTH).
    Https,
    /// HTTPS with a client certificate registered for the subsystem (SSLAUTH).
    HttpsCert,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::Http => "http",
            Connection::Https => "https",
            Connection::HttpsCert => "https-cert",
        })
    }
}

impl std::str::FromStr for Connection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Connection::Http),
            "https" => Ok(Connection::Https),
            "https-cert" => Ok(Connection::HttpsCert),
            other => Err(format!("{other:?} is not http, https or https-cert")),
        }
    }
}

/// One subsystem's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// The subsystem, or a member that calls as itself (`INSTANCE/CLASS/MEMBER`).
    pub subsystem: ClientId,
    pub connection: Connection,
    /// SHA-256 of each client certificate registered for the subsystem (64 hex digits), for
    /// [`Connection::HttpsCert`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
}

impl ClientAuth {
    /// Checks the certificate hashes (and that a rule requiring a certificate names one).
    pub fn validate(&self) -> Result<(), String> {
        for c in &self.certs {
            let ok = c.len() == 64 && hex::decode(c).is_ok() && *c == c.to_ascii_lowercase();
            if !ok {
                return Err(format!(
                    "certificate hash {c:?} is not 64 lower-case hex digits (SHA-256)"
                ));
            }
        }
        match (self.connection, self.certs.is_empty()) {
            (Connection::HttpsCert, true) => {
                Err("https-cert needs at least one registered certificate".into())
            }
            (Connection::Http | Connection::Https, false) => Err(format!(
                "certificates are registered only with https-cert, not {}",
                self.connection
            )),
            _ => Ok(()),
        }
    }
}

/// What the client proxy knows of a request's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub tls: bool,
    /// SHA-256 of the client certificate the connection presented.
    pub client_cert: Option<[u8; 32]>,
}

/// The rule for `subsystem` when it has none of its own: a registered certificate on a server
/// that hosts subsystems of more than one member, plain HTTP otherwise.
pub fn default_connection(shared_server: bool) -> Connection {
    if shared_server {
        Connection::HttpsCert
    } else {
        Connection::Http
    }
}

/// Whether a request over `transport` may name `subsystem` as its client, under `rule` (or the
/// default when it has none); `Client.ClientNotAuthenticated` with the reason if not.
pub fn check(
    subsystem: &ClientId,
    rule: Option<&ClientAuth>,
    shared_server: bool,
    transport: Transport,
) -> Result<(), XRoadError> {
    let connection = rule.map_or(default_connection(shared_server), |r| r.connection);
    let refuse = |why: String| {
        Err(XRoadError::new(
            ClientCode::ClientNotAuthenticated,
            format!("{subsystem}: {why}"),
        ))
    };
    match connection {
        Connection::Http => Ok(()),
        Connection::Https if transport.tls => Ok(()),
        Connection::Https => refuse("its information systems must connect over HTTPS".into()),
        Connection::HttpsCert if !transport.tls => refuse(
            "its information systems must connect over HTTPS with a client certificate \
             registered for it"
                .into(),
        ),
        Connection::HttpsCert => {
            let Some(cert) = transport.client_cert else {
                return refuse("the connection presented no client certificate".into());
            };
            let hash = hex::encode(cert);
            let registered = rule.is_some_and(|r| r.certs.contains(&hash));
            if registered {
                Ok(())
            } else {
                refuse(format!(
                    "the client certificate (SHA-256 {hash}) is not registered for it"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CERT: [u8; 32] = [0xab; 32];

    fn sub() -> ClientId {
        "JP/MUN/131016/records".parse().unwrap()
    }

    fn rule(connection: Connection, certs: &[[u8; 32]]) -> ClientAuth {
        ClientAuth {
            subsystem: sub(),
            connection,
            certs: certs.iter().map(hex::encode).collect(),
        }
    }

    fn t(tls: bool, cert: Option<[u8; 32]>) -> Transport {
        Transport {
            tls,
            client_cert: cert,
        }
    }

    #[test]
    fn each_connection_type_asks_what_it_says() {
        let plain = t(false, None);
        let https = t(true, None);
        let registered = t(true, Some(CERT));
        let stranger = t(true, Some([8; 32]));
        let http = rule(Connection::Http, &[]);
        let tls = rule(Connection::Https, &[]);
        let cert = rule(Connection::HttpsCert, &[CERT]);
        for (rule, transport, ok) in [
            (&http, plain, true),
            (&http, stranger, true),
            (&tls, plain, false),
            (&tls, https, true),
            (&cert, plain, false),
            (&cert, https, false),
            (&cert, stranger, false),
            (&cert, registered, true),
        ] {
            let r = check(&sub(), Some(rule), true, transport);
            assert_eq!(r.is_ok(), ok, "{rule:?} {transport:?}");
            if let Err(e) = r {
                assert_eq!(e.error_type(), "Client.ClientNotAuthenticated");
                assert_eq!(e.status(), 400);
                assert!(e.message.starts_with("JP/MUN/131016/records: "), "{e}");
            }
        }
    }

    #[test]
    fn without_a_rule_a_shared_server_asks_for_a_registered_certificate() {
        assert!(check(&sub(), None, false, t(false, None)).is_ok());
        assert!(check(&sub(), None, true, t(false, None)).is_err());
        // No rule: no certificate is registered, whatever the connection shows.
        assert!(check(&sub(), None, true, t(true, Some(CERT))).is_err());
    }

    #[test]
    fn rules_are_checked() {
        assert!(rule(Connection::HttpsCert, &[CERT]).validate().is_ok());
        assert!(rule(Connection::HttpsCert, &[]).validate().is_err());
        assert!(rule(Connection::Http, &[CERT]).validate().is_err());
        let mut r = rule(Connection::HttpsCert, &[CERT]);
        r.certs[0] = r.certs[0].to_uppercase();
        assert!(r.validate().is_err());
        r.certs[0] = "ab".into();
        assert!(r.validate().is_err());
        assert_eq!(
            "https-cert".parse::<Connection>(),
            Ok(Connection::HttpsCert)
        );
        assert!("ssl".parse::<Connection>().is_err());
    }
}
