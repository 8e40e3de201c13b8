//! The registry's configuration file (TOML): what it is called, where it keeps its data, where it
//! listens, and the timings of what it publishes. Every key is documented in
//! `docs/registry.md`; this module owns parsing, defaults and validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globalconf::InstanceId;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration is not valid TOML: {0}")]
    Syntax(String),
    #[error("configuration is invalid: {0}")]
    Invalid(String),
}

/// `[parameters]`: instance parameters copied into every published configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParametersConfig {
    pub poll_interval_secs: u32,
    pub checkpoint_interval_secs: u32,
    pub witness_count: u32,
    pub max_clock_skew_secs: u32,
}

impl Default for ParametersConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: 60,
            checkpoint_interval_secs: 1,
            witness_count: 2,
            max_clock_skew_secs: 60,
        }
    }
}

impl ParametersConfig {
    pub fn to_proto(&self) -> pb::InstanceParameters {
        pb::InstanceParameters {
            poll_interval_secs: self.poll_interval_secs,
            checkpoint_interval_secs: self.checkpoint_interval_secs,
            witness_count: self.witness_count,
            max_clock_skew_secs: self.max_clock_skew_secs,
        }
    }
}

/// The registry's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The instance identifier, e.g. `JP`.
    pub instance: String,
    /// Keys, certificates, the database and the anchor live here.
    pub data_dir: PathBuf,
    /// Public HTTPS endpoint (global configuration, anchor, enrolment).
    pub listen: SocketAddr,
    /// Admin HTTP API (bearer token); loopback unless you put a TLS proxy in front.
    pub admin_listen: SocketAddr,
    /// How many connections the public endpoint holds and how long they may wait.
    pub connections: runtime::ConnectionLimits,
    /// The same for the admin API.
    pub admin_connections: runtime::ConnectionLimits,
    /// Registry URLs written into the anchor and every configuration: primary first, replicas after.
    pub public_urls: Vec<String>,
    pub configuration_validity_secs: u64,
    pub republish_interval_secs: u64,
    pub enrollment_token_validity_secs: u64,
    /// Seconds between the approval of a key a server asked for (key rotation) and the moment it
    /// becomes valid, so that every server holds the configuration listing it before it is used.
    pub key_activation_delay_secs: u64,
    /// `text` or `json` (one JSON object per line) for `serve`'s logs.
    pub log_format: String,
    pub parameters: ParametersConfig,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            instance: "JP".into(),
            data_dir: PathBuf::from("registry-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 41001)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 41002)),
            connections: runtime::ConnectionLimits::default(),
            admin_connections: runtime::ConnectionLimits::default(),
            public_urls: vec!["https://127.0.0.1:41001".into()],
            configuration_validity_secs: 7 * 24 * 3600,
            republish_interval_secs: 3600,
            enrollment_token_validity_secs: 7 * 24 * 3600,
            key_activation_delay_secs: 600,
            log_format: "text".into(),
            parameters: ParametersConfig::default(),
        }
    }
}

impl RegistryConfig {
    /// Parses and validates a configuration; relative paths stay relative (see [`Self::load`]).
    #[allow(clippy::should_implement_trait)] // returns our error type, like the other configs
    pub fn from_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration file; a relative `data_dir` is taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::from_str(&text)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes relative paths absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.instance.parse::<InstanceId>() {
            return invalid(format!("instance: {e}"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir is empty".into());
        }
        if self.public_urls.is_empty() {
            return invalid("public_urls is empty: at least the primary's URL is needed".into());
        }
        for url in &self.public_urls {
            if let Err(e) = url_host(url) {
                return invalid(format!("public_urls: {e}"));
            }
        }
        if self.configuration_validity_secs == 0 {
            return invalid("configuration_validity_secs must be positive".into());
        }
        if self.republish_interval_secs == 0
            || self.republish_interval_secs >= self.configuration_validity_secs
        {
            return invalid(
                "republish_interval_secs must be positive and shorter than configuration_validity_secs"
                    .into(),
            );
        }
        if i64::try_from(self.configuration_validity_secs).is_err() {
            return invalid("configuration_validity_secs is too large".into());
        }
        if self.enrollment_token_validity_secs == 0
            || i64::try_from(self.enrollment_token_validity_secs).is_err()
        {
            return invalid("enrollment_token_validity_secs must be positive".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return invalid(format!(
                "log_format {:?} is neither \"text\" nor \"json\"",
                self.log_format
            ));
        }
        self.connections
            .check("connections")
            .map_err(ConfigError::Invalid)?;
        self.admin_connections
            .check("admin_connections")
            .map_err(ConfigError::Invalid)?;
        let p = &self.parameters;
        if p.poll_interval_secs == 0
            || p.checkpoint_interval_secs == 0
            || p.max_clock_skew_secs == 0
        {
            return invalid("parameters: intervals and skew must be positive".into());
        }
        Ok(())
    }

    /// The instance identifier (checked by [`Self::validate`]).
    pub fn instance_id(&self) -> Result<InstanceId, ConfigError> {
        self.instance
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("instance: {e}")))
    }

    pub fn configuration_validity(&self) -> Duration {
        Duration::from_secs(self.configuration_validity_secs)
    }

    pub fn republish_interval(&self) -> Duration {
        Duration::from_secs(self.republish_interval_secs)
    }

    /// The hosts of all public URLs, deduplicated: the SANs of the registry's TLS certificate.
    pub fn public_hosts(&self) -> Result<Vec<String>, ConfigError> {
        let mut hosts = Vec::new();
        for url in &self.public_urls {
            let host = url_host(url).map_err(ConfigError::Invalid)?;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(hosts)
    }
}

/// The host of an `https://host[:port][/path]` URL (IPv6 literals in brackets, returned without).
pub fn url_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} is not an https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} has no usable host"));
    }
    Ok(host.to_owned())
}

/// The port of an `https://` URL (443 when not given).
pub fn url_port(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} is not an https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let after_host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, r)| r).unwrap_or_default(),
        None => authority.split_once(':').map(|(_, p)| p).map_or("", |p| p),
    };
    let port = after_host.strip_prefix(':').unwrap_or(after_host);
    if port.is_empty() {
        return Ok(443);
    }
    port.parse().map_err(|_| format!("{url:?} has a bad port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = RegistryConfig::default();
        c.validate().unwrap();
        let text = c.to_toml().unwrap();
        assert_eq!(RegistryConfig::from_str(&text).unwrap(), c);
        assert_eq!(RegistryConfig::from_str("").unwrap(), c);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(matches!(
            RegistryConfig::from_str("instanse = \"JP\""),
            Err(ConfigError::Syntax(_))
        ));
        assert!(RegistryConfig::from_str("instance = \"J/P\"").is_err());
        assert!(RegistryConfig::from_str("public_urls = [\"http://x:1\"]").is_err());
        assert!(RegistryConfig::from_str("public_urls = []").is_err());
        assert!(
            RegistryConfig::from_str(
                "configuration_validity_secs = 100\nrepublish_interval_secs = 100"
            )
            .is_err()
        );
    }

    #[test]
    fn url_parts() {
        assert_eq!(
            url_host("https://reg.example:8443/x").unwrap(),
            "reg.example"
        );
        assert_eq!(url_port("https://reg.example:8443/x").unwrap(), 8443);
        assert_eq!(url_port("https://reg.example").unwrap(), 443);
        assert_eq!(url_host("https://[::1]:9").unwrap(), "::1");
        assert_eq!(url_port("https://[::1]:9").unwrap(), 9);
        assert!(url_host("https://:9").is_err());
    }

    #[test]
    fn relative_data_dir_is_resolved_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        std::fs::write(&path, "data_dir = \"data\"").unwrap();
        let c = RegistryConfig::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
    }
}
