//! A typed client of the admin HTTP API, used by the CLI subcommands (the running registry holds
//! the database lock, so the CLI talks to it instead of opening the database).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use certs::{KeyId, PublicKey};
use globalconf::{GlobalGroupId, MemberId, SecurityServerId, SubsystemId};
use http::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::admin::{
    EnrollmentView, GroupView, IssuedToken, KeyView, MemberView, ServerView, StatusView,
    SubsystemView,
};
use crate::config::RegistryConfig;
use crate::datadir::DataDir;
use crate::error::{ErrorBody, RegistryError};
use crate::store::AuditEntry;
use crate::util::encode_segment as enc;

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

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, AdminClientError> {
        let url = format!("{}/admin/v1{path}", self.base);
        let body = match body {
            Some(v) => Some(serde_json::to_vec(&v).map_err(|e| {
                runtime::ClientError::Request(format!("cannot encode request: {e}"))
            })?),
            None => None,
        };
        let response = self
            .http
            .send(
                method,
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

    pub async fn status(&self) -> Result<StatusView, AdminClientError> {
        self.call(Method::GET, "/status", None).await
    }
    pub async fn publish(&self) -> Result<StatusView, AdminClientError> {
        self.call(Method::POST, "/publish", None).await
    }
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AdminClientError> {
        self.call(Method::GET, &format!("/audit?limit={limit}"), None)
            .await
    }

    pub async fn list_members(&self) -> Result<Vec<MemberView>, AdminClientError> {
        self.call(Method::GET, "/members", None).await
    }
    pub async fn add_member(
        &self,
        id: &MemberId,
        name: &str,
    ) -> Result<MemberView, AdminClientError> {
        self.call(
            Method::POST,
            "/members",
            Some(json!({"id": id, "name": name})),
        )
        .await
    }
    pub async fn remove_member(&self, id: &MemberId) -> Result<(), AdminClientError> {
        let path = format!("/members/{}", enc(&id.to_string()));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn list_subsystems(&self) -> Result<Vec<SubsystemView>, AdminClientError> {
        self.call(Method::GET, "/subsystems", None).await
    }
    pub async fn add_subsystem(
        &self,
        id: &SubsystemId,
        name: &str,
    ) -> Result<SubsystemView, AdminClientError> {
        self.call(
            Method::POST,
            "/subsystems",
            Some(json!({"id": id, "name": name})),
        )
        .await
    }
    pub async fn remove_subsystem(&self, id: &SubsystemId) -> Result<(), AdminClientError> {
        let path = format!("/subsystems/{}", enc(&id.to_string()));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupView>, AdminClientError> {
        self.call(Method::GET, "/groups", None).await
    }
    pub async fn add_group(
        &self,
        id: &GlobalGroupId,
        description: &str,
    ) -> Result<GroupView, AdminClientError> {
        let body = json!({"id": id, "description": description});
        self.call(Method::POST, "/groups", Some(body)).await
    }
    pub async fn remove_group(&self, id: &GlobalGroupId) -> Result<(), AdminClientError> {
        let path = format!("/groups/{}", enc(&id.to_string()));
        self.call(Method::DELETE, &path, None).await
    }
    pub async fn add_group_member(
        &self,
        group: &GlobalGroupId,
        subsystem: &SubsystemId,
    ) -> Result<GroupView, AdminClientError> {
        let path = format!(
            "/groups/{}/members/{}",
            enc(&group.to_string()),
            enc(&subsystem.to_string())
        );
        self.call(Method::PUT, &path, None).await
    }
    pub async fn remove_group_member(
        &self,
        group: &GlobalGroupId,
        subsystem: &SubsystemId,
    ) -> Result<GroupView, AdminClientError> {
        let path = format!(
            "/groups/{}/members/{}",
            enc(&group.to_string()),
            enc(&subsystem.to_string())
        );
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn list_enrollments(&self) -> Result<Vec<EnrollmentView>, AdminClientError> {
        self.call(Method::GET, "/enrollments", None).await
    }
    pub async fn enrollment(
        &self,
        id: &SecurityServerId,
    ) -> Result<EnrollmentView, AdminClientError> {
        let path = format!("/enrollments/{}", enc(&id.to_string()));
        self.call(Method::GET, &path, None).await
    }
    pub async fn approve_enrollment(
        &self,
        id: &SecurityServerId,
    ) -> Result<EnrollmentView, AdminClientError> {
        let path = format!("/enrollments/{}/approve", enc(&id.to_string()));
        self.call(Method::POST, &path, None).await
    }
    pub async fn reject_enrollment(
        &self,
        id: &SecurityServerId,
    ) -> Result<EnrollmentView, AdminClientError> {
        let path = format!("/enrollments/{}/reject", enc(&id.to_string()));
        self.call(Method::POST, &path, None).await
    }
    pub async fn issue_token(
        &self,
        server_id: &SecurityServerId,
    ) -> Result<IssuedToken, AdminClientError> {
        self.call(
            Method::POST,
            "/tokens",
            Some(json!({"server_id": server_id})),
        )
        .await
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerView>, AdminClientError> {
        self.call(Method::GET, "/servers", None).await
    }
    pub async fn remove_server(&self, id: &SecurityServerId) -> Result<(), AdminClientError> {
        let path = format!("/servers/{}", enc(&id.to_string()));
        self.call(Method::DELETE, &path, None).await
    }
    pub async fn add_hosted_subsystem(
        &self,
        server: &SecurityServerId,
        subsystem: &SubsystemId,
    ) -> Result<ServerView, AdminClientError> {
        let path = format!(
            "/servers/{}/subsystems/{}",
            enc(&server.to_string()),
            enc(&subsystem.to_string())
        );
        self.call(Method::PUT, &path, None).await
    }
    pub async fn remove_hosted_subsystem(
        &self,
        server: &SecurityServerId,
        subsystem: &SubsystemId,
    ) -> Result<ServerView, AdminClientError> {
        let path = format!(
            "/servers/{}/subsystems/{}",
            enc(&server.to_string()),
            enc(&subsystem.to_string())
        );
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn list_keys(&self, member: &MemberId) -> Result<Vec<KeyView>, AdminClientError> {
        let path = format!("/members/{}/keys", enc(&member.to_string()));
        self.call(Method::GET, &path, None).await
    }
    pub async fn add_key(
        &self,
        member: &MemberId,
        public_key: &PublicKey,
        valid_from: Option<i64>,
    ) -> Result<KeyView, AdminClientError> {
        let path = format!("/members/{}/keys", enc(&member.to_string()));
        let body = json!({"public_key": public_key, "valid_from": valid_from});
        self.call(Method::POST, &path, Some(body)).await
    }
    pub async fn retire_key(
        &self,
        member: &MemberId,
        key_id: &KeyId,
        at: Option<i64>,
    ) -> Result<KeyView, AdminClientError> {
        let path = format!("/members/{}/keys/{key_id}/retire", enc(&member.to_string()));
        self.call(Method::POST, &path, Some(json!({"at": at})))
            .await
    }
    pub async fn remove_key(
        &self,
        member: &MemberId,
        key_id: &KeyId,
    ) -> Result<(), AdminClientError> {
        let path = format!("/members/{}/keys/{key_id}", enc(&member.to_string()));
        self.call(Method::DELETE, &path, None).await
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
