//! Member signing keys that security servers ask to list (key rotation, DESIGN §3): submitted on
//! the public endpoint, signed by a key of the member that is valid now and by the new key, and
//! listed only when the operator approves, as any new key is. On approval the new key becomes
//! valid `key_activation_delay_secs` later (so every server holds the configuration listing it
//! before it signs anything), and the key that signed the request stops being valid the
//! requested time after that.

use certs::{Domain, KeyId, PublicKey};
use globalconf::{MemberId, SecurityServerId};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, PlainEndpoint, audit, not_found};
use crate::error::RegistryError;
use crate::ops::views::KeyView;
use crate::requests::{ParsedKeyRequest, parse_key_request};
use crate::state::{KeyRecord, KeyRequestRecord};
use crate::store::Change;

/// A key request as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequestView {
    pub member: MemberId,
    pub key_id: KeyId,
    pub public_key: PublicKey,
    pub server_id: SecurityServerId,
    pub submitted_at: i64,
    /// The member's key that signed the request, and how long it stays valid once the new one is.
    pub current_key_id: KeyId,
    pub retire_current_after_secs: u64,
}

/// Where a requested key stands, as the server is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRequestStatus {
    /// Waits for the operator.
    Pending,
    /// In the configuration.
    Listed,
}

/// The answer to `POST /v1/key-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequestAnswer {
    pub member: MemberId,
    pub key_id: KeyId,
    pub status: KeyRequestStatus,
}

fn view(member: &MemberId, key_id: &KeyId, r: &KeyRequestRecord) -> KeyRequestView {
    KeyRequestView {
        member: member.clone(),
        key_id: key_id.clone(),
        public_key: r.public_key,
        server_id: r.server_id.clone(),
        submitted_at: r.submitted_at,
        current_key_id: r.current_key_id.clone(),
        retire_current_after_secs: r.retire_current_after_secs,
    }
}

impl Core {
    /// What `POST /v1/key-requests` does with a `SignedKeyRequest`'s bytes.
    pub(crate) fn submit_key_request(
        &mut self,
        body: &[u8],
        now: i64,
    ) -> Result<KeyRequestAnswer, RegistryError> {
        let ParsedKeyRequest {
            member,
            server_id,
            new_key,
            retire_current_after_secs,
            signed,
        } = parse_key_request(body, now)?;
        if !self.state.members.contains_key(&member) {
            return Err(not_found(format!("member {member}")));
        }
        // Signed by a key of the member that is valid now, and by the new key.
        let current_key_id = KeyId::parse(&signed.current_key_id)
            .map_err(|e| RegistryError::BadRequest(format!("current_key_id: {e}")))?;
        let current = self
            .state
            .signing_keys
            .get(&member)
            .and_then(|keys| keys.get(&current_key_id))
            .filter(|k| k.valid_from <= now && k.valid_until.is_none_or(|u| now < u))
            .ok_or(RegistryError::KeyRequestSignature)?;
        if current
            .public_key
            .verify(
                Domain::KeyRequest,
                &signed.request,
                &signed.current_key_signature,
            )
            .is_err()
        {
            tracing::warn!(%member, "key request with a bad signature");
            return Err(RegistryError::KeyRequestSignature);
        }

        let key_id = new_key.key_id();
        let answer = |status| KeyRequestAnswer {
            member: member.clone(),
            key_id: key_id.clone(),
            status,
        };
        match self.state.key_owner(&key_id) {
            Some(owner) if owner == &member => return Ok(answer(KeyRequestStatus::Listed)),
            Some(owner) => {
                return Err(RegistryError::Conflict(format!(
                    "signing key {key_id} is already listed for member {owner}"
                )));
            }
            None => {}
        }
        if self
            .key_requests
            .contains_key(&(member.clone(), key_id.clone()))
        {
            return Ok(answer(KeyRequestStatus::Pending));
        }
        let record = KeyRequestRecord {
            public_key: new_key,
            server_id: server_id.clone(),
            submitted_at: now,
            current_key_id,
            retire_current_after_secs,
        };
        self.execute(
            vec![Change::PutKeyRequest(
                member.clone(),
                key_id.clone(),
                record,
            )],
            audit(
                "key.request",
                json!({"member": member, "key_id": key_id, "server_id": server_id}),
            ),
            false,
            now,
        )?;
        Ok(answer(KeyRequestStatus::Pending))
    }

    fn key_request(
        &self,
        member: &MemberId,
        key_id: &KeyId,
    ) -> Result<KeyRequestRecord, RegistryError> {
        self.key_requests
            .get(&(member.clone(), key_id.clone()))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("no request to list key {key_id} of {member}"))
            })
    }
}

/// `GET /admin/v1/key-requests`: keys servers asked to list, waiting for approval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListKeyRequests;

impl PlainEndpoint for ListKeyRequests {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/key-requests";
    type Response = Vec<KeyRequestView>;
}

impl AdminOp for ListKeyRequests {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<KeyRequestView>, RegistryError> {
        Ok(core
            .key_requests
            .iter()
            .map(|((m, k), r)| view(m, k, r))
            .collect())
    }
    fn text(&self, requests: &Vec<KeyRequestView>) -> String {
        requests
            .iter()
            .map(|r| {
                format!(
                    "{}  key {}  from {}  submitted {}  replaces {} after {} s\n",
                    r.member,
                    r.key_id,
                    r.server_id,
                    runtime::time::rfc3339(r.submitted_at),
                    r.current_key_id,
                    r.retire_current_after_secs
                )
            })
            .collect()
    }
}

/// `POST /admin/v1/members/{id}/keys/{key_id}/approve`: lists a requested key, valid from
/// `key_activation_delay_secs` from now; the key that signed the request is retired the requested
/// time after that.
#[derive(Debug, Clone)]
pub struct ApproveKeyRequest {
    pub member: MemberId,
    pub key_id: KeyId,
}

impl Endpoint for ApproveKeyRequest {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members/{id}/keys/{key_id}/approve";
    type Path = (MemberId, KeyId);
    type Body = ();
    type Response = KeyView;

    fn from_wire((member, key_id): Self::Path, (): ()) -> Self {
        Self { member, key_id }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.member.clone(), self.key_id.clone()), ())
    }
}

impl AdminOp for ApproveKeyRequest {
    fn apply(self, core: &mut Core, now: i64) -> Result<KeyView, RegistryError> {
        let (member, key_id) = (self.member, self.key_id);
        let request = core.key_request(&member, &key_id)?;
        if !core.state.members.contains_key(&member) {
            return Err(not_found(format!("member {member}")));
        }
        if let Some(owner) = core.state.key_owner(&key_id) {
            return Err(RegistryError::Conflict(format!(
                "signing key {key_id} is already listed for member {owner}"
            )));
        }
        let valid_from = now.saturating_add(core.key_activation_delay);
        let record = KeyRecord {
            public_key: request.public_key,
            valid_from,
            valid_until: None,
        };
        let mut changes = vec![
            Change::PutKey(member.clone(), key_id.clone(), record.clone()),
            Change::DeleteKeyRequest(member.clone(), key_id.clone()),
        ];
        let retire_at = i64::try_from(request.retire_current_after_secs)
            .ok()
            .filter(|secs| *secs > 0)
            .map(|secs| valid_from.saturating_add(secs));
        let current = core
            .state
            .signing_keys
            .get(&member)
            .and_then(|keys| keys.get(&request.current_key_id))
            .cloned();
        if let (Some(at), Some(mut current)) = (retire_at, current)
            && current.valid_until.is_none_or(|u| u > at)
        {
            current.valid_until = Some(at.max(current.valid_from));
            changes.push(Change::PutKey(
                member.clone(),
                request.current_key_id.clone(),
                current,
            ));
        }
        core.execute(
            changes,
            audit(
                "key.request.approve",
                json!({
                    "member": member, "key_id": key_id, "valid_from": valid_from,
                    "retires": request.current_key_id, "retire_at": retire_at,
                }),
            ),
            false,
            now,
        )?;
        Ok(KeyView {
            member,
            key_id,
            public_key: record.public_key,
            valid_from,
            valid_until: None,
        })
    }
    fn text(&self, key: &KeyView) -> String {
        super::keys::key_text(key)
    }
}

/// `POST /admin/v1/members/{id}/keys/{key_id}/reject`: drops a key request (204).
#[derive(Debug, Clone)]
pub struct RejectKeyRequest {
    pub member: MemberId,
    pub key_id: KeyId,
}

impl Endpoint for RejectKeyRequest {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members/{id}/keys/{key_id}/reject";
    const STATUS: http::StatusCode = http::StatusCode::NO_CONTENT;
    type Path = (MemberId, KeyId);
    type Body = ();
    type Response = ();

    fn from_wire((member, key_id): Self::Path, (): ()) -> Self {
        Self { member, key_id }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.member.clone(), self.key_id.clone()), ())
    }
}

impl AdminOp for RejectKeyRequest {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let (member, key_id) = (self.member, self.key_id);
        core.key_request(&member, &key_id)?;
        core.execute(
            vec![Change::DeleteKeyRequest(member.clone(), key_id.clone())],
            audit(
                "key.request.reject",
                json!({"member": member, "key_id": key_id}),
            ),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!(
            "rejected the request to list key {} of {}\n",
            self.key_id, self.member
        )
    }
}
