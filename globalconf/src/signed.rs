//! The signed configuration envelope (DESIGN §4): exact configuration bytes plus the registry's
//! Ed25519 signature over them. Verification checks the bytes first and decodes second; the
//! only way to get a [`VerifiedConf`] is [`verify`], so code that uses a configuration cannot
//! skip the check.

use std::sync::Arc;

use certs::{Domain, KeyId, SigningKey};
use prost::Message;
use proto::v1 as pb;

use crate::anchor::Anchor;
use crate::conf::{GlobalConf, InvalidConf};

/// Why a configuration envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("configuration envelope is malformed: {0}")]
    Malformed(String),
    #[error("configuration is signed by key {0}, which the anchor does not list")]
    UnknownSigner(String),
    #[error("configuration signature does not verify")]
    BadSignature,
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] InvalidConf),
    #[error("configuration serial {offered} is older than the serial {held} already held")]
    Rollback { held: u64, offered: u64 },
    #[error("two different configurations carry serial {0}")]
    SerialConflict(u64),
}

/// A configuration whose signature verified under an anchor key, with its exact envelope bytes
/// (which is what gets stored and passed on to peers).
#[derive(Debug, Clone)]
pub struct VerifiedConf {
    envelope: Arc<[u8]>,
    conf: Arc<GlobalConf>,
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

    /// Decides whether `next` may replace `self`: a higher serial may, the same envelope again
    /// changes nothing, and anything else is refused (no rollback, no forks).
    pub fn check_successor(&self, next: &VerifiedConf) -> Result<Succession, ConfError> {
        use std::cmp::Ordering;
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
    let configuration = conf.encode_to_vec();
    let signature = key.sign(Domain::GlobalConfiguration, &configuration);
    pb::SignedConfiguration {
        configuration,
        key_id: key.key_id().to_string(),
        signature: signature.to_vec(),
    }
    .encode_to_vec()
}

/// Verifies an envelope against the anchor, then decodes and validates the configuration.
pub fn verify(envelope: &[u8], anchor: &Anchor) -> Result<VerifiedConf, ConfError> {
    let signed = pb::SignedConfiguration::decode(envelope)
        .map_err(|e| ConfError::Malformed(e.to_string()))?;
    // prost skips unknown fields; an envelope we did not produce byte for byte is refused.
    if signed.encoded_len() != envelope.len() {
        return Err(ConfError::Malformed("unknown or trailing data".into()));
    }
    let key_id = KeyId::parse(&signed.key_id)
        .map_err(|_| ConfError::UnknownSigner(signed.key_id.clone()))?;
    let key = anchor
        .signing_key(&key_id)
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
    })
}
