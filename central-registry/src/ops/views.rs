//! The JSON views the admin operations answer with (what the admin API, the client and the
//! CLI show of members, servers, keys and enrolments).

use certs::{KeyId, PublicKey};
use globalconf::{GlobalGroupId, MemberId, SecurityServerId, SubsystemId};
use serde::{Deserialize, Serialize};

use crate::enrollment::{EnrollmentRecord, EnrollmentStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub instance: String,
    pub serial: u64,
    pub generated_at: i64,
    pub expires_at: i64,
    pub members: usize,
    pub subsystems: usize,
    pub servers: usize,
    pub pending_enrollments: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: MemberId,
    pub name: String,
    /// The name per language, for residents.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub names: std::collections::BTreeMap<String, String>,
    /// Where residents ask about the member's use of their data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_contact: Option<String>,
    pub subsystems: Vec<SubsystemView>,
    pub signing_keys: Vec<KeyView>,
    /// Security servers the member owns.
    pub servers: Vec<SecurityServerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsystemView {
    pub id: SubsystemId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: GlobalGroupId,
    pub description: String,
    pub members: Vec<SubsystemId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: SecurityServerId,
    pub addresses: Vec<String>,
    /// Hex SHA-256 of its TLS certificate (the pin peers check).
    pub tls_cert_sha256: String,
    pub hosted_subsystems: Vec<SubsystemId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub member: MemberId,
    pub key_id: KeyId,
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: PublicKey,
    pub valid_from: i64,
    pub valid_until: Option<i64>,
}

/// An enrolment request as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentView {
    pub server_id: SecurityServerId,
    pub status: EnrollmentStatus,
    pub addresses: Vec<String>,
    pub member_key_id: KeyId,
    pub submitted_at: i64,
    pub decided_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

/// What the public enrolment endpoints tell a security server about its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentStatusView {
    pub server_id: SecurityServerId,
    pub status: EnrollmentStatus,
    /// The issued TLS certificate, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

impl EnrollmentStatusView {
    pub(crate) fn from_record(r: &EnrollmentRecord) -> Self {
        Self {
            server_id: r.server_id.clone(),
            status: r.status,
            certificate_pem: r.certificate_der.as_deref().map(certs::cert_to_pem),
        }
    }
}

impl From<EnrollmentView> for EnrollmentStatusView {
    fn from(v: EnrollmentView) -> Self {
        Self {
            server_id: v.server_id,
            status: v.status,
            certificate_pem: v.certificate_pem,
        }
    }
}

/// A freshly issued one-time enrolment token. The registry keeps only its hash: this is the
/// only time the token is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub server_id: SecurityServerId,
    pub token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("server_id", &self.server_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The views are JSON answers with their operation's status.
macro_rules! json_replies {
    ($($ty:ty),* $(,)?) => {$(impl runtime::admin::JsonReply for $ty {})*};
}

json_replies!(
    StatusView,
    MemberView,
    SubsystemView,
    GroupView,
    ServerView,
    KeyView,
    EnrollmentView,
    IssuedToken,
);
