//! The portal's configuration file (TOML): where it listens, which security server it calls and as
//! which client subsystem, the limits of one timeline, and how residents log in. Every key is
//! documented in `docs/portal.md`; this module owns parsing, defaults and validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globalconf::{InstanceId, MemberId, SubsystemId};
use http::HeaderName;
use serde::{Deserialize, Serialize};

/// The purpose sent with every call unless the configuration names another.
pub const DEFAULT_PURPOSE: &str = "本人による利用履歴の確認 (resident's own access history)";

/// The largest page `findUsage` answers.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Longest free-text X-Road header value the security server takes, in bytes.
const MAX_TEXT_HEADER_BYTES: usize = 1024;

/// Why a configuration cannot be used.
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

/// How residents log in (`[login] kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginKind {
    /// A form that takes any resident id: no authentication at all. Demos and tests only, and
    /// only with `danger_development_login = true`.
    Development,
    /// The resident id comes from a header set by an authenticating reverse proxy.
    TrustedHeader,
    /// OpenID Connect: the authorization code flow with PKCE against `issuer`.
    Oidc,
}

/// `[login]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Required: there is deliberately no default, so a production deployment never falls back to
    /// the development login.
    pub kind: Option<LoginKind>,
    /// For `trusted-header`: the header the proxy sets, e.g. `X-Authenticated-Resident`.
    pub header: Option<String>,
    /// `kind = "development"` is refused unless this is `true`: it lets anyone read anyone's
    /// access history.
    pub danger_development_login: bool,
    /// For `oidc`: the identity provider (its `/.well-known/openid-configuration` is read).
    /// HTTPS, or plain HTTP on a loopback address (tests).
    pub issuer: Option<String>,
    /// For `oidc`: the portal's client id at the provider.
    pub client_id: Option<String>,
    /// For `oidc`: a file (0600) holding the client secret (`client_secret_basic`).
    pub client_secret_file: Option<PathBuf>,
    /// For `oidc`: where the provider sends residents back, the portal's public URL ending
    /// `/login/callback`, as registered with the provider. Cookies are `Secure` when it is HTTPS.
    pub redirect_url: Option<String>,
    /// For `oidc`: the ID token claim that holds the resident's identifier (default `sub`).
    pub resident_claim: Option<String>,
    /// For `oidc`: scopes asked for besides `openid` (e.g. the one that releases
    /// `resident_claim`).
    pub scopes: Vec<String>,
    /// For `oidc` with an HTTPS issuer: PEM file of the CA certificates to trust for it (the
    /// system bundle, `/etc/ssl/certs/ca-certificates.crt`, trusts the public web PKI).
    pub ca_file: Option<PathBuf>,
}

impl LoginConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let oidc_keys = self.issuer.is_some()
            || self.client_id.is_some()
            || self.client_secret_file.is_some()
            || self.redirect_url.is_some()
            || self.resident_claim.is_some()
            || !self.scopes.is_empty()
            || self.ca_file.is_some();
        if self.kind != Some(LoginKind::Oidc) && oidc_keys {
            return invalid(
                "[login] issuer, client_id, client_secret_file, redirect_url, resident_claim, \
                 scopes and ca_file are only used with kind = \"oidc\""
                    .into(),
            );
        }
        if self.kind != Some(LoginKind::TrustedHeader) && self.header.is_some() {
            return invalid("[login] header is only used with kind = \"trusted-header\"".into());
        }
        match self.kind {
            None => invalid(
                "[login] kind is required: \"oidc\", \"trusted-header\" behind an \
                 authenticating proxy, or \"development\" (no authentication; demos only)"
                    .into(),
            ),
            Some(LoginKind::Development) if !self.danger_development_login => invalid(
                "[login] kind = \"development\" lets anyone read anyone's access history; it \
                 needs danger_development_login = true, and never belongs in production"
                    .into(),
            ),
            Some(LoginKind::Development) => Ok(()),
            Some(LoginKind::TrustedHeader) => match &self.header {
                None => invalid(
                    "[login] kind = \"trusted-header\" needs header (e.g. \"X-Authenticated-Resident\")"
                        .into(),
                ),
                Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(_) => Ok(()),
                    Err(_) => invalid(format!("[login] header {h:?} is not a valid header name")),
                },
            },
            Some(LoginKind::Oidc) => self.validate_oidc(),
        }
    }

    fn validate_oidc(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let (Some(issuer), Some(client_id), Some(_), Some(redirect)) = (
            &self.issuer,
            &self.client_id,
            &self.client_secret_file,
            &self.redirect_url,
        ) else {
            return invalid(
                "[login] kind = \"oidc\" needs issuer, client_id, client_secret_file and \
                 redirect_url"
                    .into(),
            );
        };
        if let Err(m) = check_oidc_url(issuer) {
            return invalid(format!("[login] issuer {issuer:?}: {m}"));
        }
        if issuer.starts_with("https://") && self.ca_file.is_none() {
            return invalid(
                "[login] an https issuer needs ca_file, the CAs to trust for it (the system \
                 bundle, /etc/ssl/certs/ca-certificates.crt, trusts the public web PKI)"
                    .into(),
            );
        }
        if client_id.is_empty() || client_id.chars().any(char::is_control) {
            return invalid("[login] client_id must be printable text".into());
        }
        if let Err(m) = check_oidc_url(redirect) {
            return invalid(format!("[login] redirect_url {redirect:?}: {m}"));
        }
        if !redirect.ends_with("/login/callback") {
            return invalid("[login] redirect_url must end with /login/callback".into());
        }
        if self.resident_claim.as_deref().is_some_and(str::is_empty) {
            return invalid("[login] resident_claim must not be empty".into());
        }
        for scope in &self.scopes {
            if scope.is_empty()
                || !scope
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return invalid(format!("[login] scope {scope:?} is not a valid scope"));
            }
        }
        Ok(())
    }
}

/// An OpenID Connect URL: HTTPS, or plain HTTP on a loopback address (for tests and the
/// sandbox); no query or fragment.
fn check_oidc_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if host == "127.0.0.1" || host == "localhost" || host == "[::1]" => {}
        _ => return Err("must be https:// (or http:// on a loopback address)".into()),
    }
    if host.is_empty() || url.contains('?') || url.contains('#') {
        return Err("needs a host, and no query or fragment".into());
    }
    Ok(())
}

/// `[[identifiers]]`: the members in `members` are asked about the resident by the login's
/// claim `claim` (with the OpenID Connect login), not by its `resident_claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRule {
    pub members: Vec<MemberId>,
    pub claim: String,
}

/// The portal's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the web pages are served.
    pub listen: SocketAddr,
    /// How many connections the portal holds and how long they may wait (`[connections]`).
    pub connections: runtime::ConnectionLimits,
    /// Base URL of this organisation's security server's client proxy (plain HTTP).
    pub security_server: String,
    /// The portal's client subsystem, sent as `X-Road-Client`. Required.
    pub client: Option<SubsystemId>,
    /// Sent as `X-Road-Purpose` with every call.
    pub purpose: String,
    /// How long one call to the security server may take.
    pub timeout_secs: u64,
    /// How long the providers may take, each with every page of its `findUsage` (and every
    /// server hosting it), from when the portal starts asking them (waiting for one of the
    /// `max_parallel` permits counts); a provider not done by then is shown as unavailable
    /// with what it gave so far. With 2,000 members a few always hang, and without this bound
    /// each would hold the resident's page for `timeout_secs` (or several).
    pub member_timeout_ms: u64,
    /// Providers asked at once.
    pub max_parallel: usize,
    /// Records asked for per `findUsage` page (at most 500).
    pub page_size: u32,
    /// Most records shown per provider; beyond it the provider is marked truncated.
    pub max_records_per_provider: usize,
    /// How long a development-login session lasts.
    pub session_ttl_secs: u64,
    /// Mark cookies `Secure` with the development login too (it runs on plain HTTP on
    /// loopback otherwise). With any real login they are always `Secure`: see
    /// [`Config::cookies_secure`].
    pub secure_cookies: bool,
    /// Subsystems to ask; absent means every subsystem `listClients` names.
    pub targets: Option<Vec<SubsystemId>>,
    /// Federated instances whose members are asked too (their subsystems from
    /// `listClients?xRoadInstance=…`). The portal's security server must talk to them, and
    /// their providers grant the portal `findUsage`, as this instance's do.
    pub federated_instances: Vec<InstanceId>,
    /// Where residents get the federation's anchor file, shown beside the verification help.
    pub verify_hint: Option<String>,
    /// The time zone access times are shown in (an IANA name; default `Asia/Tokyo`).
    pub time_zone: String,
    /// `text` or `json` (one JSON object per line).
    pub log_format: String,
    /// One resident, many identifiers: members that know residents by another claim of the
    /// OpenID Connect login than `[login] resident_claim` (`[[identifiers]]`).
    pub identifiers: Vec<IdentifierRule>,
    /// 32-byte key (file, 0600) that seals the session cookies of the OpenID Connect login;
    /// made on first start when missing. Portal instances behind one load balancer share it,
    /// and then serve each other's sessions. Without it, each start makes a key of its own.
    pub session_key_file: Option<PathBuf>,
    pub login: LoginConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            connections: runtime::ConnectionLimits::default(),
            security_server: String::new(),
            client: None,
            purpose: DEFAULT_PURPOSE.to_owned(),
            timeout_secs: 5,
            member_timeout_ms: 1500,
            max_parallel: 256,
            page_size: 100,
            max_records_per_provider: 1000,
            session_ttl_secs: 1800,
            secure_cookies: false,
            targets: None,
            federated_instances: Vec::new(),
            verify_hint: None,
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            log_format: "text".to_owned(),
            session_key_file: None,
            identifiers: Vec::new(),
            login: LoginConfig::default(),
        }
    }
}

/// Residents see access times in Japan time unless the configuration names another zone.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Tokyo";

impl Config {
    /// The time zone of [`Config::time_zone`] (from the time zone database built in, so that no
    /// system files are needed).
    pub fn zone(&self) -> Result<jiff::tz::TimeZone, jiff::Error> {
        jiff::tz::TimeZone::get(&self.time_zone)
    }

    /// Parses and validates a configuration.
    #[allow(clippy::should_implement_trait)] // returns our error type, like the other configs
    pub fn from_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_str(&text)
    }

    /// Whether cookies carry `Secure`: when `secure_cookies` is set; with the OpenID Connect
    /// login, when its `redirect_url` (the portal's public URL) is HTTPS; always with the
    /// trusted-header login. The sandbox and tests serve the portal on plain HTTP on loopback.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies
            || match self.login.kind {
                Some(LoginKind::Development) => false,
                Some(LoginKind::Oidc) => self
                    .login
                    .redirect_url
                    .as_deref()
                    .is_none_or(|u| !u.starts_with("http://")),
                _ => true,
            }
    }

    /// Checks what serde cannot: required keys, ranges, and that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Err(m) = self.connections.check("connections") {
            return invalid(m);
        }
        if self.security_server.is_empty() {
            return invalid("security_server is required (e.g. \"http://127.0.0.1:8080\")".into());
        }
        if let Err(e) = self.zone() {
            return invalid(format!("time_zone {:?}: {e}", self.time_zone));
        }
        if let Err(m) = check_base_url(&self.security_server) {
            return invalid(format!("security_server {:?}: {m}", self.security_server));
        }
        if self.client.is_none() {
            return invalid(
                "client is required: the portal's subsystem, INSTANCE/CLASS/MEMBER/SUBSYSTEM"
                    .into(),
            );
        }
        if let Err(m) = check_text_header(&self.purpose) {
            return invalid(format!("purpose: {m}"));
        }
        if self.timeout_secs == 0 {
            return invalid("timeout_secs must be at least 1".into());
        }
        if self.member_timeout_ms == 0 {
            return invalid("member_timeout_ms must be at least 1".into());
        }
        if self.max_parallel == 0 {
            return invalid("max_parallel must be at least 1".into());
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return invalid(format!("page_size must be 1..={MAX_PAGE_SIZE}"));
        }
        if self.max_records_per_provider == 0 {
            return invalid("max_records_per_provider must be at least 1".into());
        }
        if self.session_ttl_secs == 0 {
            return invalid("session_ttl_secs must be at least 1".into());
        }
        if let Some(targets) = &self.targets
            && targets.is_empty()
        {
            return invalid(
                "targets is an empty list; omit it to ask every subsystem listClients names".into(),
            );
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return invalid(format!(
                "log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            ));
        }
        self.login.validate()?;
        self.validate_identifiers()
    }

    fn validate_identifiers(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.identifiers.is_empty() {
            return Ok(());
        }
        if self.login.kind != Some(LoginKind::Oidc) {
            return invalid(
                "[[identifiers]] rules take claims of the OpenID Connect login: kind = \"oidc\""
                    .into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for rule in &self.identifiers {
            if rule.claim.is_empty() || rule.claim.chars().any(char::is_control) {
                return invalid("[[identifiers]] claim must be a claim name".into());
            }
            if rule.members.is_empty() {
                return invalid(format!(
                    "[[identifiers]] rule for claim {:?} names no members",
                    rule.claim
                ));
            }
            for member in &rule.members {
                if !seen.insert(member) {
                    return invalid(format!(
                        "[[identifiers]] names member {member} twice: one identifier per member"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The claim a member knows residents by: its `[[identifiers]]` rule's, if it has one.
    pub fn claim_for(&self, member: &MemberId) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|r| r.members.contains(member))
            .map(|r| r.claim.as_str())
    }

    /// The security server's base URL without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.security_server.trim_end_matches('/')
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn member_timeout(&self) -> Duration {
        Duration::from_millis(self.member_timeout_ms)
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
}

/// A plain-HTTP base URL: scheme, authority, and at most a path prefix (no query or fragment).
fn check_base_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("must be a plain http:// URL (the client proxy on the local network)".into());
    }
    if uri.authority().is_none() {
        return Err("has no host".into());
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
}

/// The security server's rule for free-text X-Road headers.
fn check_text_header(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_TEXT_HEADER_BYTES {
        return Err(format!("longer than {MAX_TEXT_HEADER_BYTES} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
