//! The security server's configuration file (one TOML file; every key is documented in
//! `docs/configuration.md`). Pingora style: a `#[serde(default)]` struct, parsed, then
//! validated; relative paths are resolved against the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globalconf::{InstanceId, SecurityServerId, SubsystemId};
use serde::{Deserialize, Serialize};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("configuration is invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This server's identifier, `INSTANCE/CLASS/MEMBER/SERVERCODE`.
    pub server_id: Option<SecurityServerId>,
    /// The instance anchor this server trusts.
    pub anchor: PathBuf,
    /// Keys, certificate, stored configuration and databases.
    pub data_dir: PathBuf,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    pub client_proxy: ClientProxyConfig,
    pub server_proxy: ServerProxyConfig,
    pub admin: AdminConfig,
    pub globalconf: GlobalConfConfig,
    pub exchange: ExchangeConfig,
    pub messagelog: MessageLogConfig,
    pub tls: TlsConfig,
    pub keys: KeysConfig,
    /// Operational data of every exchange (`[opmon]`; docs/monitoring.md).
    pub opmon: OpmonConfig,
    /// Keys in a hardware security module; absent, every key is a file in `data_dir`.
    pub hsm: Option<HsmConfig>,
    /// Services, access rights, suppression and information-system rules declared in one file
    /// that every node of a cluster loads (`[declared]`; docs/clusters.md); absent, they are
    /// changed through the admin API.
    pub declared: Option<DeclaredConfig>,
    /// Which federated instances this server talks to (`[federation]`; docs/federation.md).
    pub federation: FederationConfig,
}

/// `[federation]`: the other instances this server exchanges with. An instance is talked to
/// only when it is listed here and the own registry's configuration lists it as federated;
/// by default none is, as in X-Road.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    pub instances: Vec<InstanceId>,
}

/// `[opmon]`: operational data of every exchange (client, service, sizes, duration, outcome),
/// kept in `data_dir/opmon.redb`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpmonConfig {
    pub enabled: bool,
    /// Days a record is kept.
    pub retention_days: u64,
}

impl Default for OpmonConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 7,
        }
    }
}

/// `[declared]`: the file that holds this server's local configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredConfig {
    /// The file (relative to this configuration file).
    pub file: PathBuf,
    /// Seconds between two reads of the file; a changed file is applied as a whole, or not at
    /// all.
    #[serde(default = "DeclaredConfig::default_reload_interval_secs")]
    pub reload_interval_secs: u64,
}

impl DeclaredConfig {
    fn default_reload_interval_secs() -> u64 {
        5
    }
}

/// Keys in a hardware security module through its PKCS#11 library (`[hsm]`; docs/keys.md). The
/// keys named here live in the token and sign there; the others stay files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The module's PKCS#11 library, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds the keys.
    pub token_label: String,
    /// A file (mode 0600) holding the token's user PIN. Exactly one of this and `pin_env`.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The environment variable holding the token's user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// The label of this server's TLS key in the token (made there by `init` when missing);
    /// absent, the TLS key is `data_dir/tls.key`.
    #[serde(default)]
    pub tls_key_label: Option<String>,
    /// Member signing keys in the token (made there by `init` for the owner when missing). Keys
    /// `keys rotate` makes are labelled `KEY_LABEL/…` and are found under the same entry.
    #[serde(default)]
    pub signing_keys: Vec<HsmSigningKey>,
}

/// One member signing key in the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSigningKey {
    pub member: globalconf::MemberId,
    pub key_label: String,
}

impl HsmConfig {
    /// The label of `member`'s signing key in the token, if it has one there.
    pub fn signing_key_label(&self, member: &globalconf::MemberId) -> Option<&str> {
        self.signing_keys
            .iter()
            .find(|k| &k.member == member)
            .map(|k| k.key_label.as_str())
    }

    /// Reads the PIN and opens the token. The PIN is never logged or shown.
    pub fn open(&self) -> Result<certs::pkcs11::Token, certs::Error> {
        let pin = match (&self.pin_file, &self.pin_env) {
            (Some(path), None) => {
                let bytes = certs::read_secret_file(path)?;
                certs::Zeroizing::new(String::from_utf8_lossy(&bytes).trim().to_owned())
            }
            (None, Some(var)) => certs::Zeroizing::new(std::env::var(var).map_err(|_| {
                certs::Error::Module(format!("the environment variable {var} holds no PIN"))
            })?),
            _ => {
                return Err(certs::Error::Module(
                    "hsm needs exactly one of pin_file and pin_env".into(),
                ));
            }
        };
        certs::pkcs11::Token::open(&self.module, &self.token_label, &pin)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.pin_file.is_some() == self.pin_env.is_some() {
            return Err(ConfigError::Invalid(
                "hsm needs exactly one of pin_file and pin_env".into(),
            ));
        }
        let labels = self
            .tls_key_label
            .iter()
            .chain(self.signing_keys.iter().map(|k| &k.key_label));
        let mut seen = std::collections::HashSet::new();
        for label in labels {
            // `.next` is where a renewal makes the TLS key that takes over, `LABEL/…` where
            // `keys rotate` makes a member's next key.
            if label.is_empty()
                || label.ends_with(".next")
                || label.contains('/')
                || !seen.insert(label)
            {
                return Err(ConfigError::Invalid(format!(
                    "hsm key label {label:?} is empty, ends in .next, has a / or is used twice"
                )));
            }
        }
        if self.token_label.is_empty() {
            return Err(ConfigError::Invalid("hsm.token_label is empty".into()));
        }
        Ok(())
    }
}

/// Rotation of member signing keys (`[keys]`; docs/keys.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// How long the key in use stays valid for new signatures once the key that replaces it
    /// (`keys rotate`) is; it stays listed, so what it signed still verifies. 0: until removed.
    pub retire_previous_after_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            retire_previous_after_secs: 7 * 24 * 3600,
        }
    }
}

/// Renewal of the server's TLS certificate (`[tls]`; docs/keys.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Ask the registry for a renewed certificate this many days before the current one expires.
    pub renew_before_days: u64,
    /// Seconds between checks of the certificate's expiry and of a renewal under way.
    pub check_interval_secs: u64,
    /// Seconds a renewed certificate must have been listed in the configuration before this
    /// server presents it, so that peers hold that configuration too; 0: twice the poll interval.
    pub install_delay_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            renew_before_days: 30,
            check_interval_secs: 3600,
            install_delay_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageLogConfig {
    /// Log every exchange (DESIGN §6). Turning it off is for benchmarks only: exchanges are then
    /// neither logged nor covered by evidence.
    pub enabled: bool,
    /// Store request and response bodies beside the records (the records always hold the bodies'
    /// SHA-256, which the signatures cover).
    pub log_bodies: bool,
    /// Subsystems (hosted here, as client or provider) whose bodies are never stored.
    pub body_logging_off: Vec<SubsystemId>,
    /// Encrypt stored bodies with the server's body key (`data_dir/messagelog-body.key`).
    pub encrypt_bodies: bool,
    /// Records older than this many days move to archive files; 0 keeps everything online.
    pub retention_days: u64,
    /// Where archive files go (relative to the configuration file).
    pub archive_dir: PathBuf,
    /// Seconds between checkpoints when there are new records; 0 takes the instance parameter
    /// (default 1).
    pub checkpoint_interval_secs: u64,
    /// Witnesses asked to cosign each checkpoint; 0 takes the instance parameter (default 2).
    pub witness_count: u32,
    /// Under concurrent load, how many milliseconds after one group commit (write and fsync) the
    /// next one may gather records, so that more of them share each fsync; 0 syncs as soon as
    /// the last one is done.
    pub group_commit_interval_ms: u64,
    /// The most memory, in MiB, the message log's database may cache.
    pub cache_mb: u64,
}

impl Default for MessageLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            log_bodies: true,
            body_logging_off: Vec::new(),
            encrypt_bodies: true,
            retention_days: 0,
            archive_dir: PathBuf::from("archive"),
            checkpoint_interval_secs: 0,
            witness_count: 0,
            group_commit_interval_ms: 2,
            cache_mb: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Largest request or response body, in bytes.
    pub max_body_bytes: u64,
    /// Bodies up to this size are held in memory (and stored in the message log); larger ones
    /// are spooled to encrypted files in `data_dir/spool` as they arrive (and logged by hash).
    pub in_memory_body_bytes: usize,
    /// Bytes of bodies held in memory at once across all exchanges; a body waits for room
    /// before it is read.
    pub body_memory_budget_bytes: usize,
    /// Largest accepted clock difference for signed headers; 0 takes the instance parameter.
    pub max_clock_skew_secs: u64,
    /// How long X-Road-Ids are remembered against replays; 0 means twice the clock skew.
    pub replay_window_secs: u64,
    /// Most remembered X-Road-Ids; beyond it new messages are refused until old ones age out.
    pub replay_cache_entries: usize,
    /// How long connecting to a peer security server may take before trying the next one.
    pub connect_timeout_ms: u64,
    /// How long one exchange may take end to end, as seen by the client proxy.
    pub request_timeout_secs: u64,
    /// Exchanges the server proxy handles at once (further ones wait).
    pub max_concurrent_exchanges: usize,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024 * 1024,
            in_memory_body_bytes: 10 * 1024 * 1024,
            body_memory_budget_bytes: 256 * 1024 * 1024,
            max_clock_skew_secs: 0,
            replay_window_secs: 0,
            replay_cache_entries: 1_000_000,
            connect_timeout_ms: 2_000,
            request_timeout_secs: 120,
            max_concurrent_exchanges: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientProxyConfig {
    /// Where the organisation's information systems call (X-Road REST); keep it on the local network.
    pub listen: SocketAddr,
    /// Serve HTTPS instead of HTTP, with this server's certificate from the instance CA (the
    /// information systems then trust the instance CA, `ca.pem` of the anchor).
    pub tls: bool,
    /// Also serve HTTPS here, beside `listen` (X-Road's 8443 beside 8080): for information
    /// systems that must connect over HTTPS or with a client certificate.
    pub tls_listen: Option<SocketAddr>,
    /// How many connections it holds and how long they may wait (`[client_proxy.connections]`).
    pub connections: runtime::ConnectionLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerProxyConfig {
    /// Where peer security servers connect (gRPC over mutual TLS).
    pub listen: SocketAddr,
    /// `host:port` peers should use; published in the global configuration at enrolment.
    /// Empty: the listen address.
    pub advertise: Vec<String>,
    /// How many connections it holds and how long they may wait (`[server_proxy.connections]`).
    pub connections: runtime::ConnectionLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin API and health/metrics endpoints (bearer token from `data_dir/admin-token`).
    pub listen: SocketAddr,
    /// How many connections it holds and how long they may wait (`[admin.connections]`).
    pub connections: runtime::ConnectionLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalConfConfig {
    /// Seconds between polls for a new configuration; 0 takes the instance parameter (default 60).
    pub poll_interval_secs: u64,
    /// Seconds one download may take.
    pub fetch_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_id: None,
            anchor: PathBuf::from("anchor.toml"),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Text,
            client_proxy: ClientProxyConfig::default(),
            server_proxy: ServerProxyConfig::default(),
            admin: AdminConfig::default(),
            globalconf: GlobalConfConfig::default(),
            exchange: ExchangeConfig::default(),
            messagelog: MessageLogConfig::default(),
            tls: TlsConfig::default(),
            keys: KeysConfig::default(),
            opmon: OpmonConfig::default(),
            hsm: None,
            declared: None,
            federation: FederationConfig::default(),
        }
    }
}

impl Default for ClientProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: false,
            tls_listen: None,
            connections: runtime::ConnectionLimits::default(),
        }
    }
}

impl Default for ServerProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5500)),
            advertise: Vec::new(),
            connections: runtime::ConnectionLimits::default(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            connections: runtime::ConnectionLimits::default(),
        }
    }
}

impl Default for GlobalConfConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: 0,
            fetch_timeout_secs: 10,
        }
    }
}

impl Config {
    /// Parses TOML; relative paths are taken relative to `base_dir`.
    pub fn from_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: "configuration".into(),
            message: e.to_string(),
        })?;
        config.anchor = base_dir.join(&config.anchor);
        config.data_dir = base_dir.join(&config.data_dir);
        config.messagelog.archive_dir = base_dir.join(&config.messagelog.archive_dir);
        if let Some(declared) = &mut config.declared {
            declared.file = base_dir.join(&declared.file);
        }
        if let Some(hsm) = &mut config.hsm {
            hsm.module = base_dir.join(&hsm.module);
            hsm.pin_file = hsm.pin_file.as_ref().map(|p| base_dir.join(p));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, base).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .declared
            .as_ref()
            .is_some_and(|d| d.reload_interval_secs == 0)
        {
            return Err(ConfigError::Invalid(
                "declared.reload_interval_secs must be at least 1".into(),
            ));
        }
        if self.server_id.is_none() {
            return Err(ConfigError::Invalid("server_id is not set".into()));
        }
        if self.globalconf.fetch_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "globalconf.fetch_timeout_secs must be at least 1".into(),
            ));
        }
        let e = &self.exchange;
        if e.max_body_bytes == 0 || e.body_memory_budget_bytes < e.in_memory_body_bytes {
            return Err(ConfigError::Invalid(
                "exchange.max_body_bytes must be at least 1, and exchange.in_memory_body_bytes at most exchange.body_memory_budget_bytes".into(),
            ));
        }
        if e.replay_cache_entries == 0
            || e.connect_timeout_ms == 0
            || e.request_timeout_secs == 0
            || e.max_concurrent_exchanges == 0
        {
            return Err(ConfigError::Invalid(
                "exchange.replay_cache_entries, connect_timeout_ms, request_timeout_secs and max_concurrent_exchanges must be at least 1".into(),
            ));
        }
        if self.tls.check_interval_secs == 0 || self.tls.renew_before_days > 365 {
            return Err(ConfigError::Invalid(
                "tls.check_interval_secs must be at least 1 and tls.renew_before_days at most 365"
                    .into(),
            ));
        }
        if self.messagelog.cache_mb == 0 {
            return Err(ConfigError::Invalid(
                "messagelog.cache_mb must be at least 1".into(),
            ));
        }
        if self.messagelog.group_commit_interval_ms > 1000 {
            return Err(ConfigError::Invalid(
                "messagelog.group_commit_interval_ms must be at most 1000".into(),
            ));
        }
        for (table, limits) in [
            ("client_proxy.connections", &self.client_proxy.connections),
            ("server_proxy.connections", &self.server_proxy.connections),
            ("admin.connections", &self.admin.connections),
        ] {
            limits.check(table).map_err(ConfigError::Invalid)?;
        }
        if let Some(hsm) = &self.hsm {
            hsm.validate()?;
        }
        for a in &self.server_proxy.advertise {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(ConfigError::Invalid(format!(
                    "server_proxy.advertise entry {a:?} is not host:port"
                )));
            }
        }
        Ok(())
    }

    /// The validated server id (`validate` guarantees it is set).
    pub fn server_id(&self) -> Result<&SecurityServerId, ConfigError> {
        self.server_id
            .as_ref()
            .ok_or_else(|| ConfigError::Invalid("server_id is not set".into()))
    }

    /// Addresses peers should use to reach this server.
    pub fn advertised_addresses(&self) -> Vec<String> {
        if self.server_proxy.advertise.is_empty() {
            vec![self.server_proxy.listen.to_string()]
        } else {
            self.server_proxy.advertise.clone()
        }
    }

    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.globalconf.fetch_timeout_secs)
    }

    /// Renders the file form; paths are written as given.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
