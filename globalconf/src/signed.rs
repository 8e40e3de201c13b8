//! The signed configuration envelope (DESIGN §4): exact configuration bytes plus the registry's
//! Ed25519 signature over them. Verification checks the bytes first and decodes second; the
//! only way to get a [`VerifiedConf`] is [`verify`], so code that uses a configuration cannot
//! skip the check.
//!
//! Key continuity (DESIGN §3): the envelope carries the history of the registry's signing keys
//! since the anchor, each new set signed by a key of the set before it, so a server that holds
//! only the anchor follows a rollover by itself. A server that holds a configuration accepts a
//! successor only if its key history extends the one it holds ([`VerifiedConf::check_successor`]),
//! so a retired key, which is not in the newest set, signs nothing it accepts, and a history
//! forged with it does not extend the held one.

use std::sync::Arc;

use certs::{Domain, KeyId, PublicKey, SigningKey};
use prost::Message;
use proto::v1 as pb;

use crate::anchor::Anchor;
use crate::conf::{GlobalConf, InvalidConf};

/// Why a configuration envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("configuration envelope is malformed: {0}")]
    Malformed(String),
    #[error(
        "configuration is signed by key {0}, which neither the anchor nor the key history lists as signing now"
    )]
    UnknownSigner(String),
    #[error("configuration signature does not verify")]
    BadSignature,
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] InvalidConf),
    #[error("configuration serial {offered} is older than the serial {held} already held")]
    Rollback { held: u64, offered: u64 },
    #[error("two different configurations carry serial {0}")]
    SerialConflict(u64),
    #[error("configuration key history: {0}")]
    KeyHistory(String),
}

/// A configuration whose signature verified under an anchor key, with its exact envelope bytes
/// (which is what gets stored and passed on to peers).
#[derive(Debug, Clone)]
pub struct VerifiedConf {
    envelope: Arc<[u8]>,
    conf: Arc<GlobalConf>,
    keys: Arc<KeyHistory>,
}

/// The registry's signing keys as an envelope establishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyHistory {
    /// Every announcement since the anchor, oldest first.
    announcements: Vec<pb::KeyAnnouncement>,
    /// The newest set (the anchor's keys when there is no announcement).
    current: Vec<PublicKey>,
}

impl VerifiedConf {
    pub fn conf(&self) -> &GlobalConf {
        &self.conf
    }
    pub fn shared_conf(&self) -> Arc<GlobalConf> {
        Arc::clone(&self.conf)
    }
    /// The exact signed envelope bytes, as received from the registry.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
    pub fn serial(&self) -> u64 {
        self.conf.serial()
    }
    /// How many times the signing keys changed since the anchor (0: the anchor's keys sign).
    pub fn key_generation(&self) -> usize {
        self.keys.announcements.len()
    }
    /// The keys that sign configurations now, as this envelope establishes them.
    pub fn signing_keys(&self) -> &[PublicKey] {
        &self.keys.current
    }

    /// Decides whether `next` may replace `self`: a higher serial may, the same envelope again
    /// changes nothing, and anything else is refused (no rollback, no forks). Its key history
    /// must extend the one held: what a retired key signs, or a history forked with it, is
    /// refused.
    pub fn check_successor(&self, next: &VerifiedConf) -> Result<Succession, ConfError> {
        use std::cmp::Ordering;
        let held = &self.keys.announcements;
        if !next.keys.announcements.starts_with(held) {
            return Err(ConfError::KeyHistory(format!(
                "it does not extend the {} key change(s) already followed: signed by a retired key, or forked",
                held.len()
            )));
        }
        match next.serial().cmp(&self.serial()) {
            Ordering::Greater => Ok(Succession::Newer),
            Ordering::Less => Err(ConfError::Rollback {
                held: self.serial(),
                offered: next.serial(),
            }),
            Ordering::Equal if next.envelope == self.envelope => Ok(Succession::Same),
            Ordering::Equal => Err(ConfError::SerialConflict(self.serial())),
        }
    }
}

/// The outcome of [`VerifiedConf::check_successor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    Newer,
    Same,
}

/// Encodes and signs a configuration; returns the envelope bytes to publish.
pub fn sign(conf: &pb::GlobalConfiguration, key: &SigningKey) -> Vec<u8> {
    sign_with_history(conf, key, &[])
}

/// [`sign`] by a key of the newest set in `history` (see [`announce`]).
pub fn sign_with_history(
    conf: &pb::GlobalConfiguration,
    key: &SigningKey,
    history: &[pb::KeyAnnouncement],
) -> Vec<u8> {
    let configuration = conf.encode_to_vec();
    let signature = key.sign(Domain::GlobalConfiguration, &configuration);
    pb::SignedConfiguration {
        configuration,
        key_id: key.key_id().to_string(),
        signature: signature.to_vec(),
        key_history: history.to_vec(),
    }
    .encode_to_vec()
}

/// Announces `keys` as the signing keys of `instance` from `generation` on (1 for the first
/// change after the anchor), signed by `signer`, a key of the set before.
pub fn announce(
    instance: &str,
    generation: u32,
    keys: &[PublicKey],
    signer: &SigningKey,
) -> pb::KeyAnnouncement {
    let announcement = pb::SigningKeySet {
        instance: instance.to_owned(),
        generation,
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
    }
    .encode_to_vec();
    pb::KeyAnnouncement {
        signature: signer.sign(Domain::SigningKeySet, &announcement).to_vec(),
        key_id: signer.key_id().to_string(),
        announcement,
    }
}

/// The key of `keys` with the id `key_id`.
fn find<'a>(keys: &'a [PublicKey], key_id: &str) -> Option<&'a PublicKey> {
    let id = KeyId::parse(key_id).ok()?;
    keys.iter().find(|k| k.key_id() == id)
}

/// Follows the key history from the anchor's keys to the newest set: the keys that sign
/// configurations now.
pub fn current_signing_keys(
    history: &[pb::KeyAnnouncement],
    anchor: &Anchor,
) -> Result<Vec<PublicKey>, ConfError> {
    let bad = |m: String| ConfError::KeyHistory(m);
    let mut keys = anchor.signing_keys().to_vec();
    for (i, a) in history.iter().enumerate() {
        let generation = u32::try_from(i + 1).map_err(|_| bad("too long".into()))?;
        let signer = find(&keys, &a.key_id).ok_or_else(|| {
            bad(format!(
                "set {generation} is signed by key {}, which set {} does not hold",
                a.key_id,
                generation - 1
            ))
        })?;
        signer
            .verify(Domain::SigningKeySet, &a.announcement, &a.signature)
            .map_err(|_| bad(format!("the signature of set {generation} does not verify")))?;
        let set = pb::SigningKeySet::decode(a.announcement.as_slice())
            .map_err(|e| bad(format!("set {generation} does not decode: {e}")))?;
        if set.instance != anchor.instance().as_str() || set.generation != generation {
            return Err(bad(format!(
                "set {generation} is for instance {:?}, generation {}",
                set.instance, set.generation
            )));
        }
        keys = set
            .keys
            .iter()
            .map(|k| PublicKey::from_bytes(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("set {generation}: {e}")))?;
        if keys.is_empty() {
            return Err(bad(format!("set {generation} holds no key")));
        }
    }
    Ok(keys)
}

/// Verifies an envelope against the anchor (following the key history it carries), then decodes
/// and validates the configuration.
pub fn verify(envelope: &[u8], anchor: &Anchor) -> Result<VerifiedConf, ConfError> {
    let signed = pb::SignedConfiguration::decode(envelope)
        .map_err(|e| ConfError::Malformed(e.to_string()))?;
    // prost skips unknown fields; an envelope we did not produce byte for byte is refused.
    if signed.encoded_len() != envelope.len() {
        return Err(ConfError::Malformed("unknown or trailing data".into()));
    }
    let current = current_signing_keys(&signed.key_history, anchor)?;
    let key = find(&current, &signed.key_id)
        .ok_or_else(|| ConfError::UnknownSigner(signed.key_id.clone()))?;
    key.verify(
        Domain::GlobalConfiguration,
        &signed.configuration,
        &signed.signature,
    )
    .map_err(|_| ConfError::BadSignature)?;
    let decoded = pb::GlobalConfiguration::decode(signed.configuration.as_slice())
        .map_err(|e| ConfError::Malformed(format!("signed configuration does not decode: {e}")))?;
    let conf = GlobalConf::from_proto(&decoded, anchor.instance())?;
    Ok(VerifiedConf {
        envelope: Arc::from(envelope),
        conf: Arc::new(conf),
        keys: Arc::new(KeyHistory {
            announcements: signed.key_history,
            current,
        }),
    })
}
