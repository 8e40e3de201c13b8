//! The configuration-signing key and its rollover without a new anchor (DESIGN §3, key
//! continuity): a new key is announced in a key set signed by the current key, every envelope
//! carries the announcements since the anchor, and servers follow them by themselves. The retired
//! key signs nothing a server that followed accepts.

use certs::{KeyId, SigningKey};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, PlainEndpoint, audit};
use crate::error::RegistryError;
use crate::store::Change;

/// The configuration-signing keys: what operators compare with their anchors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyView {
    /// How many rollovers since the anchor (0: the anchor's key signs).
    pub generation: usize,
    /// The key that signs now.
    pub key_id: KeyId,
    /// The key a rollover just retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_key_id: Option<KeyId>,
}

impl runtime::admin::JsonReply for SigningKeyView {}

fn view(core: &Core, retired: Option<KeyId>) -> SigningKeyView {
    SigningKeyView {
        generation: core.key_history.len(),
        key_id: core.signing_key.key_id(),
        retired_key_id: retired,
    }
}

fn text(v: &SigningKeyView) -> String {
    let mut text = format!(
        "configuration-signing key {} (generation {})\n",
        v.key_id, v.generation
    );
    if let Some(retired) = &v.retired_key_id {
        text += &format!("retired key {retired}: servers follow the change by themselves\n");
    }
    text
}

/// `GET /admin/v1/signing-key`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShowSigningKey;

impl PlainEndpoint for ShowSigningKey {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/signing-key";
    type Response = SigningKeyView;
}

impl AdminOp for ShowSigningKey {
    fn apply(self, core: &mut Core, _now: i64) -> Result<SigningKeyView, RegistryError> {
        Ok(view(core, None))
    }
    fn text(&self, v: &SigningKeyView) -> String {
        text(v)
    }
}

/// `POST /admin/v1/signing-key/rotate`: makes a new configuration-signing key, announces it
/// signed by the current one, and signs from now on with it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RotateSigningKey;

impl PlainEndpoint for RotateSigningKey {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/signing-key/rotate";
    type Response = SigningKeyView;
}

impl AdminOp for RotateSigningKey {
    fn apply(self, core: &mut Core, now: i64) -> Result<SigningKeyView, RegistryError> {
        // The new key on disk first, beside the current one: if the commit below fails it is
        // unused and replaced next time; if it succeeds and the files are not moved yet, the
        // registry finishes at start (`datadir::signing_key_for`).
        let next = SigningKey::generate()?;
        let next_path = core.data_dir.next_signing_key();
        if next_path.exists() {
            std::fs::remove_file(&next_path).map_err(|source| certs::Error::Io {
                path: next_path.clone(),
                source,
            })?;
        }
        certs::save_secret_key(&next_path, &next)?;

        let generation = u32::try_from(core.key_history.len() + 1)
            .map_err(|_| RegistryError::Internal("too many rollovers".into()))?;
        let announcement = globalconf::signed::announce(
            core.instance.as_str(),
            generation,
            &[next.public_key()],
            &core.signing_key,
        );
        let mut history = core.key_history.clone();
        history.push(announcement);
        let retired = std::mem::replace(&mut core.signing_key, next);
        let committed = core.execute(
            vec![Change::PutKeyHistory(history)],
            audit(
                "signing_key.rotate",
                json!({
                    "generation": generation,
                    "key_id": core.signing_key.key_id(),
                    "retired_key_id": retired.key_id(),
                }),
            ),
            true,
            now,
        );
        if let Err(e) = committed {
            core.signing_key = retired;
            return Err(e);
        }
        if let Err(e) = crate::datadir::finish_rollover(&core.data_dir, &retired) {
            // Committed and in use; the files are put right at the next start.
            tracing::error!(error = %e, "the signing key files were not moved after the rollover");
        }
        tracing::info!(
            generation,
            key_id = %core.signing_key.key_id(),
            "configuration-signing key rolled over"
        );
        Ok(view(core, Some(retired.key_id())))
    }
    fn text(&self, v: &SigningKeyView) -> String {
        text(v)
    }
}
