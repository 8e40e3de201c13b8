//! Rotation of a member's message-signing key (DESIGN §3): `security-server keys rotate` makes a
//! new key, keeps it beside the others (`signing/<member>/<key-id>.key`) and asks the registry to
//! list it (`POST /v1/key-requests`), signed by the member's key in use and by the new key. The
//! registry operator approves it as any new key; it becomes valid a little later, once every
//! server holds the configuration listing it, and from then on this server signs with it
//! ([`crate::keys::MemberKeys::signer`] takes the newest valid key). The old key stays listed, so
//! records and evidence signed with it still verify; it stops being valid for new signatures
//! `keys.retire_previous_after_secs` after the new one starts.
//!
//! Asking again is safe: the key asked for before (`signing/<member>/pending-key-id`), while not
//! yet listed, is sent again instead of a new one. No other unlisted key is ever sent: one the
//! registry removed (a leaked key) stays out.

use std::sync::Arc;

use certs::{Clock, Domain, KeyId, SigningKey};
use globalconf::{Anchor, MemberId, SecurityServerId};
use prost::Message as _;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::confclient::ConfClient;
use crate::identity::{IdentityError, Paths, post_to_registry};
use crate::keys::MemberKeys;

/// In a member's key directory: the id of the key last asked for, so that asking again sends
/// it again instead of making another.
const PENDING: &str = "pending-key-id";

/// What `keys rotate` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub member: MemberId,
    pub key_id: KeyId,
    /// `pending` (waits for the registry operator: `central-registry key approve MEMBER KEY_ID`)
    /// or `listed`.
    pub status: String,
}

/// One key this server holds, as the configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldKey {
    pub member: MemberId,
    pub key_id: KeyId,
    /// Whether the configuration lists it (else it waits for approval, or was removed).
    pub listed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<i64>,
    /// Whether this server signs for the member with it now.
    pub in_use: bool,
    /// The raw public key (base64), as `central-registry key add` takes it.
    pub public_key: certs::PublicKey,
    /// Whether the key is in the hardware security module (`[hsm]`) rather than a file.
    #[serde(default)]
    pub in_module: bool,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
}

/// The configuration's entry for `member`'s key `key_id`, whatever its validity.
fn listed_key(
    conf: &globalconf::GlobalConf,
    member: &MemberId,
    key_id: &KeyId,
) -> Option<globalconf::MemberKey> {
    conf.signing_key(key_id)
        .filter(|(owner, _)| *owner == member)
        .map(|(_, key)| key.clone())
}

/// Makes and submits new member keys; lists the keys held.
#[derive(Debug)]
pub struct KeyRotation {
    pub keys: Arc<MemberKeys>,
    pub paths: Paths,
    pub server_id: SecurityServerId,
    pub anchor: Anchor,
    pub conf: Arc<ConfClient>,
    pub clock: Arc<dyn Clock>,
    /// Sent with the request: how long the key in use stays valid once the new one is.
    pub retire_previous_after_secs: u64,
    /// The token and `[hsm]` settings: members whose keys are there get new keys there.
    pub hsm: Option<(certs::pkcs11::Token, crate::config::HsmConfig)>,
}

impl KeyRotation {
    /// The keys held, with what the configuration says of each.
    pub fn held(&self) -> Vec<HeldKey> {
        let conf = self.conf.current();
        let now = self.clock.unix_now();
        let mut held: Vec<HeldKey> = self
            .keys
            .all()
            .into_iter()
            .map(|(member, key)| {
                let key_id = key.key_id();
                let listed = conf
                    .as_ref()
                    .and_then(|c| listed_key(c.conf(), &member, &key_id));
                let in_use = conf.as_ref().is_some_and(|c| {
                    self.keys
                        .signer(&member, c.conf(), now)
                        .is_some_and(|k| k.key_id() == key_id)
                });
                HeldKey {
                    public_key: key.public_key(),
                    in_module: key.in_module(),
                    listed: listed.is_some(),
                    valid_from: listed.as_ref().map(|k| k.valid_from),
                    valid_until: listed.and_then(|k| k.valid_until),
                    in_use,
                    member,
                    key_id,
                }
            })
            .collect();
        held.sort_by(|a, b| (&a.member, a.valid_from).cmp(&(&b.member, b.valid_from)));
        held
    }

    /// Makes a new key of `member` (or takes the one made before and not yet listed) and asks the
    /// registry to list it.
    pub async fn rotate(&self, member: &MemberId) -> Result<Rotation, IdentityError> {
        let conf = self
            .conf
            .current()
            .ok_or_else(|| IdentityError::Refused("this server holds no configuration".into()))?;
        let now = self.clock.unix_now();
        let current = self.keys.signer(member, conf.conf(), now).ok_or_else(|| {
            IdentityError::NoSigningKey(format!(
                "{member} valid now (the request must be signed by the member's key in use)"
            ))
        })?;
        // The key asked for before and not listed yet, if any: never any other unlisted key,
        // which may be one the registry removed because it leaked.
        let marker = self.paths.signing_dir(member).join(PENDING);
        let pending = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|id| KeyId::parse(id.trim()).ok())
            .filter(|id| listed_key(conf.conf(), member, id).is_none())
            .and_then(|id| {
                self.keys
                    .all()
                    .into_iter()
                    .find(|(m, k)| m == member && k.key_id() == id)
                    .map(|(_, k)| k)
            });
        let new_key = match pending {
            Some(key) => key,
            None => {
                let dir = self.paths.signing_dir(member);
                std::fs::create_dir_all(&dir).map_err(|source| IdentityError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                // In the token when the member's keys are there (`LABEL/<time>`), else a file.
                let in_token = self
                    .hsm
                    .as_ref()
                    .and_then(|(token, hsm)| Some((token, hsm.signing_key_label(member)?)));
                let key = match in_token {
                    Some((token, label)) => token.generate(&format!("{label}/{now}"))?,
                    None => {
                        let key = SigningKey::generate()?;
                        certs::save_secret_key(
                            &self.paths.signing_key(member, &key.key_id()),
                            &key,
                        )?;
                        key
                    }
                };
                certs::write_file_atomic(&marker, key.key_id().to_string().as_bytes())?;
                self.keys.add(member.clone(), key.clone());
                Arc::new(key)
            }
        };
        let request = pb::KeyRequest {
            member_id: member.to_string(),
            new_public_key: new_key.public_key().as_bytes().to_vec(),
            server_id: self.server_id.to_string(),
            created_at: now,
            retire_current_after_secs: self.retire_previous_after_secs,
        }
        .encode_to_vec();
        let signed = pb::SignedKeyRequest {
            current_key_id: current.key_id().to_string(),
            current_key_signature: current.sign(Domain::KeyRequest, &request).to_vec(),
            new_key_signature: new_key.sign(Domain::KeyRequest, &request).to_vec(),
            request,
        };
        let answer: Answer = post_to_registry(
            &self.anchor,
            self.conf.registry_roots(),
            "/v1/key-requests",
            signed.encode_to_vec(),
            Arc::clone(&self.clock),
        )
        .await?;
        tracing::info!(%member, key_id = %new_key.key_id(), status = %answer.status, "member signing key submitted");
        Ok(Rotation {
            member: member.clone(),
            key_id: new_key.key_id(),
            status: answer.status,
        })
    }
}
