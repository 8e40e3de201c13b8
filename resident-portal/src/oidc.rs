//! OpenID Connect login: the authorization code flow with PKCE (RFC 7636), `state` and `nonce`,
//! against the identity provider named by `[login] issuer`.
//!
//! 1. `GET /login`: a random `state`, `nonce` and PKCE verifier go into a sealed cookie
//!    ([`crate::seal`], 10 minutes); the resident is sent to the provider's authorization
//!    endpoint with the `state`, the `nonce` and the verifier's S256 challenge.
//! 2. `GET /login/callback?code&state`: the `state` must be the cookie's (else the request was
//!    not started here: refused); the code is exchanged at the token endpoint with the client
//!    secret and the verifier; the ID token's signature is checked with the provider's key of
//!    its `kid` (from its JWKS, fetched again when a new `kid` appears: key rotation), and its
//!    `iss`, `aud` (and `azp`), `exp`, `iat` and `nonce`. The resident's identifier is the claim
//!    `[login] resident_claim` (default `sub`).
//! 3. The session is a sealed cookie holding the resident and its expiry (`session_ttl_secs`);
//!    nothing is kept on the server, so instances sharing `session_key_file` serve it.
//!    `POST /logout` clears it.
//!
//! The provider's metadata (`/.well-known/openid-configuration`) is read at the first login,
//! not at start, so the portal starts while the provider is down; its `issuer` must be the
//! configured one exactly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum_extra::extract::cookie::{Cookie, CookieJar};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use http::{HeaderMap, Method};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::{Config, ConfigError};
use crate::login::{Login, LoginError, Resident, ResidentId, SESSION_COOKIE, portal_cookie};
use crate::seal::Sealer;

/// The cookie of a login in progress.
pub const LOGIN_COOKIE: &str = "portal_login";
/// How long a login may take at the provider.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Allowed clock difference with the provider for `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;
/// How often the provider's keys may be fetched again for an unknown `kid`.
const JWKS_REFRESH: Duration = Duration::from_secs(30);
/// Signature algorithms accepted for ID tokens (never `none` or a shared-secret HMAC).
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a login did not succeed. Shown to the resident (without secrets) and logged.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider cannot be reached or answered unusably: {0}")]
    Provider(String),
    #[error("the login was not started here, or took too long; please log in again")]
    State,
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    #[error("the identity provider's ID token is not acceptable: {0}")]
    Token(String),
    #[error(transparent)]
    Login(#[from] LoginError),
}

/// What the provider publishes about itself (OpenID Connect Discovery 1.0).
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// A login in progress, sealed in [`LOGIN_COOKIE`].
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    exp: u64,
}

/// A session, sealed in [`SESSION_COOKIE`].
#[derive(Debug, Serialize, Deserialize)]
struct Session {
    resident: String,
    exp: u64,
    /// The claims `[[identifiers]]` rules name, as the ID token had them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    ids: BTreeMap<String, String>,
}

/// The query of `GET /login/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207: the issuer of the authorization response, when the provider says.
    pub iss: Option<String>,
}

#[derive(Debug)]
struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// The OpenID Connect login.
pub struct OidcLogin {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_url: String,
    resident_claim: String,
    /// The claims `[[identifiers]]` rules name, kept in the session.
    identifier_claims: Vec<String>,
    scope: String,
    http: runtime::HttpClient,
    sealer: Sealer,
    session_ttl: Duration,
    secure_cookies: bool,
    metadata: tokio::sync::OnceCell<Metadata>,
    keys: Mutex<Option<Keys>>,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client secret.
        f.debug_struct("OidcLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("resident_claim", &self.resident_claim)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_text(bytes: usize) -> Result<String, LoginError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| LoginError::Random(e.to_string()))?;
    Ok(B64.encode(buf))
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl OidcLogin {
    /// The login `config` describes (validated), with its sealing key.
    pub fn new(config: &Config, sealer: Sealer) -> Result<Self, ConfigError> {
        let l = &config.login;
        let missing = || ConfigError::Invalid("[login] kind = \"oidc\" is incomplete".into());
        let issuer = l.issuer.clone().ok_or_else(missing)?;
        let secret_file = l.client_secret_file.as_ref().ok_or_else(missing)?;
        let client_secret = read_secret(secret_file)?;
        let http = match &l.ca_file {
            Some(ca) if issuer.starts_with("https://") => {
                let pem = std::fs::read_to_string(ca).map_err(|source| ConfigError::Io {
                    path: ca.display().to_string(),
                    source,
                })?;
                let cas = pem_certificates(&pem).map_err(|e| {
                    ConfigError::Invalid(format!("[login] ca_file {}: {e}", ca.display()))
                })?;
                let tls = certs::client_config_trusting(&cas, &[])
                    .map_err(|e| ConfigError::Invalid(format!("[login] ca_file: {e}")))?;
                runtime::HttpClient::https(tls)
            }
            _ => runtime::HttpClient::plain(),
        }
        .with_timeout(config.timeout())
        .with_max_body(1024 * 1024);
        let mut scope = vec!["openid".to_owned()];
        scope.extend(l.scopes.iter().filter(|s| *s != "openid").cloned());
        Ok(OidcLogin {
            issuer,
            client_id: l.client_id.clone().ok_or_else(missing)?,
            client_secret,
            redirect_url: l.redirect_url.clone().ok_or_else(missing)?,
            resident_claim: l.resident_claim.clone().unwrap_or_else(|| "sub".into()),
            identifier_claims: config.identifiers.iter().map(|r| r.claim.clone()).collect(),
            scope: scope.join(" "),
            http,
            sealer,
            session_ttl: config.session_ttl(),
            secure_cookies: config.cookies_secure(),
            metadata: tokio::sync::OnceCell::new(),
            keys: Mutex::new(None),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let r = self
            .http
            .get(url, None)
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        if !r.is_success() {
            return Err(OidcError::Provider(format!("{url}: HTTP {}", r.status)));
        }
        r.json()
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))
    }

    async fn metadata(&self) -> Result<&Metadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let m: Metadata = self.get_json(&url).await?;
                if m.issuer != self.issuer {
                    return Err(OidcError::Provider(format!(
                        "the provider calls itself {:?}, not the configured issuer",
                        m.issuer
                    )));
                }
                Ok(m)
            })
            .await
    }

    /// Step 1: where to send the resident, and the cookie that remembers the login.
    pub async fn begin(&self) -> Result<(String, Cookie<'static>), OidcError> {
        let metadata = self.metadata().await?;
        let pending = Pending {
            state: random_text(24)?,
            nonce: random_text(24)?,
            verifier: random_text(48)?,
            exp: now_secs() + LOGIN_TTL.as_secs(),
        };
        let challenge = B64.encode(Sha256::digest(pending.verifier.as_bytes()));
        let separator = if metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            metadata.authorization_endpoint,
            encode(&self.client_id),
            encode(&self.redirect_url),
            encode(&self.scope),
            encode(&pending.state),
            encode(&pending.nonce),
            challenge,
        );
        let sealed = self.seal(LOGIN_COOKIE, &pending)?;
        let cookie = portal_cookie(
            LOGIN_COOKIE,
            sealed,
            LOGIN_TTL.as_secs(),
            true,
            self.secure_cookies,
        );
        Ok((url, cookie))
    }

    fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> Result<String, LoginError> {
        let json = serde_json::to_vec(value).map_err(|e| LoginError::Random(e.to_string()))?;
        self.sealer
            .seal(purpose, &json)
            .map_err(|e| LoginError::Random(e.to_string()))
    }

    fn opened<T: serde::de::DeserializeOwned>(&self, headers: &HeaderMap, name: &str) -> Option<T> {
        let jar = CookieJar::from_headers(headers);
        let payload = self.sealer.open(name, jar.get(name)?.value())?;
        serde_json::from_slice(&payload).ok()
    }

    /// Step 2: the session cookie for the resident the provider vouched for, and the cookie
    /// that ends the login in progress.
    pub async fn finish(
        &self,
        callback: Callback,
        headers: &HeaderMap,
    ) -> Result<(Resident, [Cookie<'static>; 2]), OidcError> {
        let pending: Pending = self.opened(headers, LOGIN_COOKIE).ok_or(OidcError::State)?;
        if pending.exp < now_secs() || callback.state.as_deref() != Some(pending.state.as_str()) {
            return Err(OidcError::State);
        }
        if let Some(error) = callback.error {
            let detail = callback.error_description.unwrap_or_default();
            return Err(OidcError::Refused(
                format!("{error} {detail}").trim().to_owned(),
            ));
        }
        if callback
            .iss
            .as_deref()
            .is_some_and(|iss| iss != self.issuer)
        {
            return Err(OidcError::Refused(
                "the answer came from another issuer".into(),
            ));
        }
        let code = callback
            .code
            .ok_or_else(|| OidcError::Refused("no authorization code".into()))?;
        let id_token = self.redeem(&code, &pending.verifier).await?;
        let claims = self.verify(&id_token, &pending.nonce).await?;
        let resident = claims
            .get(&self.resident_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                OidcError::Token(format!("it has no {:?} claim", self.resident_claim))
            })?;
        let resident = ResidentId::parse(resident)?;
        let mut ids = BTreeMap::new();
        for claim in &self.identifier_claims {
            // A claim the token lacks leaves that member unasked (shown as unavailable).
            if let Some(value) = claims.get(claim).and_then(|v| v.as_str()) {
                ResidentId::parse(value)?;
                ids.insert(claim.clone(), value.to_owned());
            }
        }
        let session = Session {
            resident: resident.as_str().to_owned(),
            exp: now_secs() + self.session_ttl.as_secs(),
            ids,
        };
        let resident = session.resident()?;
        let cookie = portal_cookie(
            SESSION_COOKIE,
            self.seal(SESSION_COOKIE, &session)?,
            self.session_ttl.as_secs(),
            true,
            self.secure_cookies,
        );
        let done = portal_cookie(LOGIN_COOKIE, String::new(), 0, true, self.secure_cookies);
        Ok((resident, [cookie, done]))
    }

    /// Exchanges the code for the ID token at the token endpoint.
    async fn redeem(&self, code: &str, verifier: &str) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            encode(code),
            encode(&self.redirect_url),
            encode(verifier)
        );
        // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
        let basic = STANDARD.encode(format!(
            "{}:{}",
            encode(&self.client_id),
            encode(&self.client_secret)
        ));
        let authorization = format!("Basic {basic}");
        let r = self
            .http
            .request(
                Method::POST,
                &metadata.token_endpoint,
                &[
                    ("authorization", authorization.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "application/json"),
                ],
                body.into(),
            )
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let answer: serde_json::Value = r
            .json()
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !r.is_success() {
            let error = answer["error"].as_str().unwrap_or("unknown error");
            return Err(OidcError::Refused(format!("token endpoint: {error}")));
        }
        answer["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Provider("the token answer has no id_token".into()))
    }

    /// The key the provider signs with under `kid`: from the keys held, or fetched again
    /// (at most every [`JWKS_REFRESH`]) when it is not among them.
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, OidcError> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            // Without a kid, only a provider with a single key is unambiguous.
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let stale = {
            let keys = self
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match keys.as_ref() {
                Some(k) => {
                    if let Some(jwk) = find(&k.set) {
                        return Ok(jwk);
                    }
                    k.fetched.elapsed() >= JWKS_REFRESH
                }
                None => true,
            }
        };
        if !stale {
            return Err(OidcError::Token(format!("no provider key {kid:?}")));
        }
        let metadata = self.metadata().await?;
        let set: JwkSet = self.get_json(&metadata.jwks_uri).await?;
        let jwk = find(&set);
        *self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Keys {
            set,
            fetched: Instant::now(),
        });
        jwk.ok_or_else(|| OidcError::Token(format!("no provider key {kid:?}")))
    }

    /// Checks the ID token's signature and claims; its claims.
    async fn verify(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let bad = |m: String| OidcError::Token(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        if claims.get("nonce").and_then(|v| v.as_str()) != Some(nonce) {
            return Err(bad("its nonce is not this login's".into()));
        }
        let iat = claims
            .get("iat")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if iat > now_secs() + LEEWAY_SECS {
            return Err(bad("it was issued in the future".into()));
        }
        // Several audiences: the token must have been issued to this client (OIDC Core 3.1.3.7).
        if claims.get("aud").is_some_and(serde_json::Value::is_array)
            && claims.get("azp").and_then(|v| v.as_str()) != Some(self.client_id.as_str())
        {
            return Err(bad(
                "it names several audiences and not this client as azp".into()
            ));
        }
        Ok(claims)
    }

    /// The resident of a request's session cookie, while it lasts.
    fn session(&self, headers: &HeaderMap) -> Option<Resident> {
        let session: Session = self.opened(headers, SESSION_COOKIE)?;
        if session.exp <= now_secs() {
            return None;
        }
        session.resident().ok()
    }
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs = certs::certs_from_pem(pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificates".into());
    }
    Ok(certs)
}

/// The client secret from its file, which others must not be able to read.
fn read_secret(path: &std::path::Path) -> Result<String, ConfigError> {
    let bytes = certs::read_secret_file(path)
        .map_err(|e| ConfigError::Invalid(format!("[login] client_secret_file: {e}")))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigError::Invalid("[login] client_secret_file is not UTF-8".into()))?
        .trim()
        .to_owned();
    if text.is_empty() {
        return Err(ConfigError::Invalid(
            "[login] client_secret_file is empty".into(),
        ));
    }
    Ok(text)
}

impl Session {
    fn resident(&self) -> Result<Resident, LoginError> {
        let mut claims = BTreeMap::new();
        for (claim, value) in &self.ids {
            claims.insert(claim.clone(), ResidentId::parse(value)?);
        }
        Ok(Resident {
            id: ResidentId::parse(&self.resident)?,
            claims,
        })
    }
}

impl Login for OidcLogin {
    fn resident(&self, headers: &HeaderMap) -> Result<Option<Resident>, LoginError> {
        Ok(self.session(headers))
    }

    fn end_session(&self, _headers: &HeaderMap) -> Option<Cookie<'static>> {
        Some(portal_cookie(
            SESSION_COOKIE,
            String::new(),
            0,
            true,
            self.secure_cookies,
        ))
    }
}

#[cfg(test)]
mod tests;
