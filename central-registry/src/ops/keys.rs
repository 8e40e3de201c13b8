//! Member signing keys: list, add (rotation, or a member hosted on another member's server),
//! retire, remove. A key belongs to one member only.

use certs::{KeyId, PublicKey};
use globalconf::MemberId;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, audit, not_found};
use crate::error::RegistryError;
use crate::ops::views::KeyView;
use crate::state::KeyRecord;
use crate::store::Change;

/// `GET /admin/v1/members/{id}/keys`
#[derive(Debug, Clone)]
pub struct ListKeys {
    pub member: MemberId,
}

impl Endpoint for ListKeys {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/members/{id}/keys";
    type Path = MemberId;
    type Body = ();
    type Response = Vec<KeyView>;

    fn from_wire(member: MemberId, (): ()) -> Self {
        Self { member }
    }
    fn to_wire(&self) -> (MemberId, ()) {
        (self.member.clone(), ())
    }
}

impl AdminOp for ListKeys {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<KeyView>, RegistryError> {
        if !core.state.members.contains_key(&self.member) {
            return Err(not_found(format!("member {}", self.member)));
        }
        Ok(core.key_views(&self.member))
    }
    fn text(&self, keys: &Vec<KeyView>) -> String {
        keys.iter().map(key_text).collect()
    }
}

/// `POST /admin/v1/members/{id}/keys` with a [`NewKey`] body: lists another signing key for a
/// member, valid from `valid_from` (default: now) (201).
#[derive(Debug, Clone)]
pub struct AddKey {
    pub member: MemberId,
    pub key: NewKey,
}

/// The body of [`AddKey`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: PublicKey,
    #[serde(default)]
    pub valid_from: Option<i64>,
}

impl Endpoint for AddKey {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members/{id}/keys";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = MemberId;
    type Body = NewKey;
    type Response = KeyView;

    fn from_wire(member: MemberId, key: NewKey) -> Self {
        Self { member, key }
    }
    fn to_wire(&self) -> (MemberId, NewKey) {
        (self.member.clone(), self.key.clone())
    }
}

impl AdminOp for AddKey {
    fn apply(self, core: &mut Core, now: i64) -> Result<KeyView, RegistryError> {
        let member = self.member;
        if !core.state.members.contains_key(&member) {
            return Err(not_found(format!("member {member}")));
        }
        let public_key = self.key.public_key;
        let key_id = public_key.key_id();
        if let Some(owner) = core.state.key_owner(&key_id) {
            return Err(RegistryError::Conflict(format!(
                "signing key {key_id} is already listed for member {owner}"
            )));
        }
        let record = KeyRecord {
            public_key,
            valid_from: self.key.valid_from.unwrap_or(now),
            valid_until: None,
        };
        core.execute(
            vec![Change::PutKey(
                member.clone(),
                key_id.clone(),
                record.clone(),
            )],
            audit(
                "key.add",
                json!({"member": member, "key_id": key_id, "valid_from": record.valid_from}),
            ),
            false,
            now,
        )?;
        Ok(KeyView {
            member,
            key_id,
            public_key,
            valid_from: record.valid_from,
            valid_until: None,
        })
    }
    fn text(&self, key: &KeyView) -> String {
        key_text(key)
    }
}

/// `POST /admin/v1/members/{id}/keys/{key_id}/retire` with a [`Retirement`] body: ends a key's
/// validity at `at` (default: now); signatures made later are refused.
#[derive(Debug, Clone)]
pub struct RetireKey {
    pub member: MemberId,
    pub key_id: KeyId,
    pub retirement: Retirement,
}

/// The body of [`RetireKey`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retirement {
    #[serde(default)]
    pub at: Option<i64>,
}

impl Endpoint for RetireKey {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members/{id}/keys/{key_id}/retire";
    const INPUT: Input = Input::Json;
    type Path = (MemberId, KeyId);
    type Body = Retirement;
    type Response = KeyView;

    fn from_wire((member, key_id): Self::Path, retirement: Retirement) -> Self {
        Self {
            member,
            key_id,
            retirement,
        }
    }
    fn to_wire(&self) -> (Self::Path, Retirement) {
        (
            (self.member.clone(), self.key_id.clone()),
            self.retirement.clone(),
        )
    }
}

impl AdminOp for RetireKey {
    fn apply(self, core: &mut Core, now: i64) -> Result<KeyView, RegistryError> {
        let (member, key_id) = (self.member, self.key_id);
        let mut record = core.key_record(&member, &key_id)?;
        let until = self.retirement.at.unwrap_or(now);
        if until < record.valid_from {
            return Err(RegistryError::BadRequest(format!(
                "retirement time {until} is before the key became valid ({})",
                record.valid_from
            )));
        }
        record.valid_until = Some(until);
        core.execute(
            vec![Change::PutKey(
                member.clone(),
                key_id.clone(),
                record.clone(),
            )],
            audit(
                "key.retire",
                json!({"member": member, "key_id": key_id, "valid_until": until}),
            ),
            false,
            now,
        )?;
        Ok(KeyView {
            member,
            key_id,
            public_key: record.public_key,
            valid_from: record.valid_from,
            valid_until: record.valid_until,
        })
    }
    fn text(&self, key: &KeyView) -> String {
        key_text(key)
    }
}

/// `DELETE /admin/v1/members/{id}/keys/{key_id}` (204).
#[derive(Debug, Clone)]
pub struct RemoveKey {
    pub member: MemberId,
    pub key_id: KeyId,
}

impl Endpoint for RemoveKey {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/members/{id}/keys/{key_id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
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

impl AdminOp for RemoveKey {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let (member, key_id) = (self.member, self.key_id);
        core.key_record(&member, &key_id)?;
        core.execute(
            vec![Change::DeleteKey(member.clone(), key_id.clone())],
            audit("key.remove", json!({"member": member, "key_id": key_id})),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!("removed key {} of {}\n", self.key_id, self.member)
    }
}

impl Core {
    pub(super) fn key_views(&self, member: &MemberId) -> Vec<KeyView> {
        self.state
            .signing_keys
            .get(member)
            .into_iter()
            .flatten()
            .map(|(key_id, k)| KeyView {
                member: member.clone(),
                key_id: key_id.clone(),
                public_key: k.public_key,
                valid_from: k.valid_from,
                valid_until: k.valid_until,
            })
            .collect()
    }

    fn key_record(&self, member: &MemberId, key_id: &KeyId) -> Result<KeyRecord, RegistryError> {
        self.state
            .signing_keys
            .get(member)
            .and_then(|keys| keys.get(key_id))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("member {member} has no signing key {key_id}"))
            })
    }
}

/// One key as the CLI lists it (also under its member).
pub(super) fn key_text(k: &KeyView) -> String {
    let until = k.valid_until.map_or_else(
        || "until removed".to_owned(),
        |u| format!("until {}", runtime::time::rfc3339(u)),
    );
    format!(
        "  key       {}  from {} {until}  {}\n",
        k.key_id,
        runtime::time::rfc3339(k.valid_from),
        k.public_key.to_base64()
    )
}
