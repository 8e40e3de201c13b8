//! The instance anchor (DESIGN §3): the small file, handed out of band, from which a security
//! server derives all trust — the instance identifier, the registry URLs, the registry's
//! configuration-signing public keys and the instance CA certificate(s) that the registry's
//! HTTPS endpoints chain to.
//!
//! It is TOML so that an operator can read what they are asked to trust:
//!
//! ```toml
//! instance = "JP"
//! registry_urls = ["https://127.0.0.1:41001"]
//! ca_certificates = "-----BEGIN CERTIFICATE-----\n..."
//!
//! [[signing_keys]]
//! key_id = "3f1c..."
//! public_key = "base64 of the raw 32-byte Ed25519 key"
//! ```

use std::path::Path;

use certs::{KeyId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::id::InstanceId;

/// Why an anchor cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read anchor file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write anchor file: {0}")]
    Write(#[from] certs::Error),
    #[error("anchor is not valid TOML: {0}")]
    Syntax(String),
    #[error("anchor is invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorFile {
    instance: InstanceId,
    registry_urls: Vec<String>,
    ca_certificates: String,
    signing_keys: Vec<AnchorKeyFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorKeyFile {
    key_id: String,
    public_key: String,
}

/// A parsed and checked anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    instance: InstanceId,
    registry_urls: Vec<String>,
    ca_certificates_pem: String,
    signing_keys: Vec<PublicKey>,
}

impl Anchor {
    pub fn new(
        instance: InstanceId,
        registry_urls: Vec<String>,
        ca_certificates_pem: String,
        signing_keys: Vec<PublicKey>,
    ) -> Result<Self, AnchorError> {
        let anchor = Self {
            instance,
            registry_urls,
            ca_certificates_pem,
            signing_keys,
        };
        anchor.validate()?;
        Ok(anchor)
    }

    fn validate(&self) -> Result<(), AnchorError> {
        if self.registry_urls.is_empty() {
            return Err(AnchorError::Invalid("no registry URL".into()));
        }
        if let Some(url) = self
            .registry_urls
            .iter()
            .find(|u| !u.starts_with("https://"))
        {
            return Err(AnchorError::Invalid(format!(
                "registry URL {url:?} is not https://"
            )));
        }
        if self.signing_keys.is_empty() {
            return Err(AnchorError::Invalid("no configuration-signing key".into()));
        }
        certs::certs_from_pem(&self.ca_certificates_pem)
            .map_err(|e| AnchorError::Invalid(format!("CA certificates: {e}")))?;
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let file: AnchorFile =
            toml::from_str(text).map_err(|e| AnchorError::Syntax(e.to_string()))?;
        let mut keys = Vec::with_capacity(file.signing_keys.len());
        for k in &file.signing_keys {
            let key = PublicKey::from_base64(&k.public_key)
                .map_err(|e| AnchorError::Invalid(format!("key {}: {e}", k.key_id)))?;
            if key.key_id().as_str() != k.key_id {
                return Err(AnchorError::Invalid(format!(
                    "key id {} does not match its public key",
                    k.key_id
                )));
            }
            keys.push(key);
        }
        Self::new(
            file.instance,
            file.registry_urls,
            file.ca_certificates,
            keys,
        )
    }

    pub fn load(path: &Path) -> Result<Self, AnchorError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnchorError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn to_toml(&self) -> Result<String, AnchorError> {
        let file = AnchorFile {
            instance: self.instance.clone(),
            registry_urls: self.registry_urls.clone(),
            ca_certificates: self.ca_certificates_pem.clone(),
            signing_keys: self
                .signing_keys
                .iter()
                .map(|k| AnchorKeyFile {
                    key_id: k.key_id().to_string(),
                    public_key: k.to_base64(),
                })
                .collect(),
        };
        toml::to_string_pretty(&file).map_err(|e| AnchorError::Syntax(e.to_string()))
    }

    /// Writes the anchor atomically (it is public: 0644).
    pub fn save(&self, path: &Path) -> Result<(), AnchorError> {
        certs::write_file_atomic(path, self.to_toml()?.as_bytes())?;
        Ok(())
    }

    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    pub fn registry_urls(&self) -> &[String] {
        &self.registry_urls
    }

    pub fn ca_certificates_pem(&self) -> &str {
        &self.ca_certificates_pem
    }

    /// DER of each CA certificate, for an HTTPS client that trusts only this instance's CA.
    pub fn ca_certificates_der(&self) -> Vec<Vec<u8>> {
        // validate() made sure this parses.
        certs::certs_from_pem(&self.ca_certificates_pem).unwrap_or_default()
    }

    pub fn signing_keys(&self) -> &[PublicKey] {
        &self.signing_keys
    }

    pub fn signing_key(&self, key_id: &KeyId) -> Option<&PublicKey> {
        self.signing_keys.iter().find(|k| &k.key_id() == key_id)
    }

    /// What two operators compare out of band before they federate (DESIGN §3): the SHA-256 of
    /// the anchor's canonical form (what [`Anchor::to_toml`] writes), in hex. Two files that
    /// differ only in layout or comments have the same fingerprint; any change to what is
    /// trusted changes it.
    pub fn fingerprint(&self) -> Result<String, AnchorError> {
        use sha2::Digest as _;
        Ok(hex::encode(sha2::Sha256::digest(
            self.to_toml()?.as_bytes(),
        )))
    }
}
