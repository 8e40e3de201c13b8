//! Who the resident is: pluggable logins behind one trait, and the resident identifier they yield.
//!
//! - [`DevelopmentLogin`]: a form that takes any resident id, with in-memory sessions. It
//!   authenticates nobody; pages show a banner saying so and the server warns at startup.
//! - [`TrustedHeaderLogin`]: an authenticating reverse proxy in front of the portal puts the
//!   resident id in a header on every request; the portal takes it as given. The proxy must
//!   remove that header from what residents send.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use http::{HeaderMap, HeaderName};
use serde::Serialize;

use crate::config::{Config, ConfigError, LoginKind};

/// The session cookie of the development login.
pub const SESSION_COOKIE: &str = "portal_session";

/// Longest resident identifier, in characters.
pub const MAX_RESIDENT_CHARS: usize = 64;

/// Most development sessions held at once (expired ones are dropped first).
const MAX_SESSIONS: usize = 100_000;

/// Random bytes in a session token (hex in the cookie).
const TOKEN_BYTES: usize = 32;

/// Why a request does not identify a resident.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("a resident id is 1 to {MAX_RESIDENT_CHARS} characters without control characters")]
    InvalidResident,
    #[error("the login header {0} appears more than once")]
    AmbiguousHeader(String),
    #[error("this portal has no login form")]
    NoForm,
    #[error("too many open sessions; try again later")]
    TooManySessions,
    #[error("no randomness for a session token: {0}")]
    Random(String),
}

/// A resident's identifier, as the login vouches for it and as sent in `X-Road-Data-Subject`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ResidentId(String);

impl ResidentId {
    /// 1..=64 characters, no control characters (so it is always a valid header value).
    pub fn parse(s: &str) -> Result<Self, LoginError> {
        let n = s.chars().count();
        if n == 0 || n > MAX_RESIDENT_CHARS || s.chars().any(char::is_control) {
            return Err(LoginError::InvalidResident);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The resident a login vouches for: the identifier it names them by, and (from an OpenID
/// Connect login) the other identifiers `[[identifiers]]` rules ask members for, by the claim
/// they came in. One resident, many identifiers; all of them from the login, none from the
/// resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resident {
    pub id: ResidentId,
    pub claims: BTreeMap<String, ResidentId>,
}

impl From<ResidentId> for Resident {
    fn from(id: ResidentId) -> Self {
        Resident {
            id,
            claims: BTreeMap::new(),
        }
    }
}

/// A way of telling who the resident is.
pub trait Login: Send + Sync + fmt::Debug {
    /// The resident a request comes from; `Ok(None)` when it carries no login.
    fn resident(&self, headers: &HeaderMap) -> Result<Option<Resident>, LoginError>;

    /// Whether this login authenticates nobody (pages then show the development banner).
    fn is_development(&self) -> bool {
        false
    }

    /// Whether the portal shows its own login form (`POST /login/dev`).
    fn has_form(&self) -> bool {
        false
    }

    /// Starts a session from the login form; the cookie to set.
    fn start_session(&self, resident: ResidentId) -> Result<Cookie<'static>, LoginError> {
        let _ = resident;
        Err(LoginError::NoForm)
    }

    /// Ends the request's session, if any; the cookie to set, which clears it.
    fn end_session(&self, headers: &HeaderMap) -> Option<Cookie<'static>> {
        let _ = headers;
        None
    }
}

/// The login `config` asks for. Logs a warning when it is the development login.
pub fn from_config(config: &Config) -> Result<Arc<dyn Login>, ConfigError> {
    match (config.login.kind, &config.login.header) {
        (Some(LoginKind::Development), _) => {
            tracing::warn!(
                "DEVELOPMENT LOGIN is on: anyone can read anyone's access history; never use this in production ([login] kind = \"trusted-header\")"
            );
            Ok(Arc::new(DevelopmentLogin::new(
                config.session_ttl(),
                config.cookies_secure(),
            )))
        }
        (Some(LoginKind::TrustedHeader), Some(name)) => {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::Invalid(format!(
                    "[login] header {name:?} is not a valid header name"
                ))
            })?;
            Ok(Arc::new(TrustedHeaderLogin::new(header)))
        }
        (Some(LoginKind::TrustedHeader), None) => Err(ConfigError::Invalid(
            "[login] kind = \"trusted-header\" needs header".into(),
        )),
        (None, _) => Err(ConfigError::Invalid("[login] kind is required".into())),
        // Needs its sealing key and an async runtime: `web::router` makes it.
        (Some(LoginKind::Oidc), _) => Err(ConfigError::Invalid(
            "the OpenID Connect login is made by oidc::OidcLogin::new".into(),
        )),
    }
}

#[derive(Debug)]
struct Session {
    resident: ResidentId,
    expires: Instant,
}

/// The development login: a form, and sessions in memory (lost on restart).
pub struct DevelopmentLogin {
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    secure_cookies: bool,
}

impl fmt::Debug for DevelopmentLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens.
        f.debug_struct("DevelopmentLogin")
            .field("ttl", &self.ttl)
            .field("secure_cookies", &self.secure_cookies)
            .finish_non_exhaustive()
    }
}

impl DevelopmentLogin {
    pub fn new(ttl: Duration, secure_cookies: bool) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            ttl,
            secure_cookies,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere while holding the lock leaves the map consistent (plain inserts and
        // removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Login::resident`] at a given time.
    pub fn resident_at(&self, headers: &HeaderMap, now: Instant) -> Option<ResidentId> {
        let token = session_token(headers)?;
        let mut sessions = self.sessions();
        match sessions.get(&token) {
            Some(s) if s.expires > now => Some(s.resident.clone()),
            Some(_) => {
                sessions.remove(&token);
                None
            }
            None => None,
        }
    }

    /// [`Login::start_session`] at a given time, with a given token.
    fn start_session_at(
        &self,
        resident: ResidentId,
        token: String,
        now: Instant,
    ) -> Result<Cookie<'static>, LoginError> {
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
            if sessions.len() >= MAX_SESSIONS {
                return Err(LoginError::TooManySessions);
            }
        }
        let cookie = session_cookie(token.clone(), self.ttl.as_secs(), self.secure_cookies);
        sessions.insert(
            token,
            Session {
                resident,
                expires: now + self.ttl,
            },
        );
        Ok(cookie)
    }

    /// Open sessions (expired ones included until they are looked at or swept).
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }
}

impl Login for DevelopmentLogin {
    fn resident(&self, headers: &HeaderMap) -> Result<Option<Resident>, LoginError> {
        Ok(self
            .resident_at(headers, Instant::now())
            .map(Resident::from))
    }

    fn is_development(&self) -> bool {
        true
    }

    fn has_form(&self) -> bool {
        true
    }

    fn start_session(&self, resident: ResidentId) -> Result<Cookie<'static>, LoginError> {
        let token = new_token()?;
        self.start_session_at(resident, token, Instant::now())
    }

    fn end_session(&self, headers: &HeaderMap) -> Option<Cookie<'static>> {
        if let Some(token) = session_token(headers) {
            self.sessions().remove(&token);
        }
        Some(session_cookie(String::new(), 0, self.secure_cookies))
    }
}

/// The resident id comes from a header that an authenticating reverse proxy sets.
#[derive(Debug)]
pub struct TrustedHeaderLogin {
    header: HeaderName,
}

impl TrustedHeaderLogin {
    pub fn new(header: HeaderName) -> Self {
        Self { header }
    }
}

impl Login for TrustedHeaderLogin {
    fn resident(&self, headers: &HeaderMap) -> Result<Option<Resident>, LoginError> {
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(LoginError::AmbiguousHeader(self.header.to_string()));
        }
        // Raw UTF-8 is allowed: resident ids need not be ASCII.
        let text = std::str::from_utf8(value.as_bytes())
            .map_err(|_| LoginError::InvalidResident)?
            .trim();
        if text.is_empty() {
            return Ok(None);
        }
        ResidentId::parse(text).map(|id| Some(id.into()))
    }
}

/// A cookie with the portal's attributes: `Path=/`, `SameSite=Lax`, `Max-Age`, and `HttpOnly`
/// and `Secure` when asked.
pub fn portal_cookie(
    name: &'static str,
    value: String,
    max_age_secs: u64,
    http_only: bool,
    secure: bool,
) -> Cookie<'static> {
    let max_age = time::Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX));
    Cookie::build((name, value))
        .path("/")
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .http_only(http_only)
        .secure(secure)
        .build()
}

fn session_cookie(token: String, max_age_secs: u64, secure: bool) -> Cookie<'static> {
    portal_cookie(SESSION_COOKIE, token, max_age_secs, true, secure)
}

/// The session token of a request, when it has the right shape (anything else is no session).
fn session_token(headers: &HeaderMap) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    let token = jar.get(SESSION_COOKIE)?.value();
    (token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| token.to_owned())
}

fn new_token() -> Result<String, LoginError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| LoginError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::{HeaderValue, header};

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    fn token_of(cookie: &Cookie<'_>) -> String {
        let s = cookie.to_string();
        let v = s.strip_prefix("portal_session=").unwrap();
        v.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn resident_ids_are_bounded_and_printable() {
        assert!(ResidentId::parse("131016000001").is_ok());
        assert!(ResidentId::parse("住民123").is_ok());
        assert!(ResidentId::parse(&"あ".repeat(64)).is_ok());
        assert!(ResidentId::parse(&"あ".repeat(65)).is_err());
        assert!(ResidentId::parse("").is_err());
        assert!(ResidentId::parse("a\nb").is_err());
        assert!(ResidentId::parse("a\u{7f}").is_err());
        assert!(ResidentId::parse("a\u{85}").is_err());
    }

    #[test]
    fn development_sessions_expire_and_end() {
        let login = DevelopmentLogin::new(Duration::from_secs(60), true);
        let now = Instant::now();
        let resident = ResidentId::parse("131016000001").unwrap();
        let cookie = login
            .start_session_at(resident.clone(), new_token().unwrap(), now)
            .unwrap();
        let text = cookie.to_string();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax"));
        assert!(text.contains("Path=/") && text.contains("Secure"));
        let token = token_of(&cookie);
        assert_eq!(token.len(), 64);

        let headers = with_cookie(&format!("other=1; portal_session={token}"));
        assert_eq!(login.resident_at(&headers, now), Some(resident));
        assert_eq!(
            login.resident_at(&headers, now + Duration::from_secs(61)),
            None
        );
        assert_eq!(login.session_count(), 0, "an expired session is dropped");

        let cookie = login
            .start_session(ResidentId::parse("x").unwrap())
            .unwrap();
        let headers = with_cookie(&format!("portal_session={}", token_of(&cookie)));
        assert!(login.resident(&headers).unwrap().is_some());
        let cleared = login.end_session(&headers).unwrap();
        assert!(cleared.to_string().contains("Max-Age=0"));
        assert_eq!(login.resident(&headers).unwrap(), None);
    }

    #[test]
    fn forged_and_malformed_cookies_are_no_session() {
        let login = DevelopmentLogin::new(Duration::from_secs(60), false);
        for cookie in [
            "portal_session=",
            "portal_session=abc",
            &format!("portal_session={}", "0".repeat(64)),
            &format!("portal_session={}", "g".repeat(64)),
            "portal_session",
            ";;==;",
        ] {
            assert_eq!(login.resident(&with_cookie(cookie)).unwrap(), None);
        }
        assert_eq!(login.resident(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn trusted_header_takes_exactly_one_value() {
        let login = TrustedHeaderLogin::new(HeaderName::from_static("x-authenticated-resident"));
        let mut h = HeaderMap::new();
        assert_eq!(login.resident(&h).unwrap(), None);
        h.insert(
            "x-authenticated-resident",
            HeaderValue::from_bytes("住民1".as_bytes()).unwrap(),
        );
        assert_eq!(login.resident(&h).unwrap().unwrap().id.as_str(), "住民1");
        h.append("x-authenticated-resident", HeaderValue::from_static("b"));
        assert!(matches!(
            login.resident(&h),
            Err(LoginError::AmbiguousHeader(_))
        ));
        let mut h = HeaderMap::new();
        h.insert(
            "x-authenticated-resident",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert!(login.resident(&h).is_err());
        assert!(!login.has_form() && !login.is_development());
        assert!(matches!(
            login.start_session(ResidentId::parse("a").unwrap()),
            Err(LoginError::NoForm)
        ));
    }
}
