//! The portal's HTTP side: routes, sessions and language per request, and what each outcome
//! becomes (status, headers, page). Pages are rendered by [`crate::page`]; calls to the security
//! server go through [`crate::gateway`].
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the login page (or 401 "login required"), else the resident's timeline |
//! | `POST /login/dev` | development login: form field `resident`; 303 to `/` with a session cookie |
//! | `GET /login` | OpenID Connect login: 303 to the identity provider ([`crate::oidc`]) |
//! | `GET /login/callback` | where the identity provider sends the resident back; 303 to `/` with a session cookie |
//! | `POST /logout` | ends the session; 303 to `/` |
//! | `GET /evidence?provider=…&id=…[&server=…]` | the evidence bundle of one access, for the logged-in resident (of the provider's server that holds it, when it has several) |
//! | `GET /api/timeline` | the timeline as JSON |
//! | `GET /about` | what the purpose and legal basis of an access mean, how to question one |
//! | `GET /health` | `{"status":"ok"}` |
//!
//! Any page takes `?lang=ja|en`, remembered in the `portal_lang` cookie; without it the
//! language comes from the cookie, then `Accept-Language`, else Japanese.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use globalconf::{SecurityServerId, SubsystemId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Config, ConfigError, LoginKind};
use crate::gateway::{EvidenceError, Gateway};
use crate::login::{self, Login, LoginError, ResidentId, portal_cookie};
use crate::oidc::{Callback, OidcError, OidcLogin};
use crate::page::{self, Lang, Problem, VerifyHelp};
use crate::seal::Sealer;
use crate::usage::{Timeline, is_message_id};

/// The language cookie.
pub const LANG_COOKIE: &str = "portal_lang";

/// Largest request body (the login form is a few bytes).
const MAX_REQUEST_BODY: usize = 16 * 1024;

/// How long the language choice is remembered.
const LANG_COOKIE_SECS: u64 = 365 * 24 * 3600;

/// Longest file name offered for an evidence download (without the extension).
const MAX_FILENAME_CHARS: usize = 100;

#[derive(Debug, Clone)]
struct Portal {
    login: Arc<dyn Login>,
    /// The OpenID Connect login, when it is the login.
    oidc: Option<Arc<OidcLogin>>,
    gateway: Gateway,
    secure_cookies: bool,
    verify_hint: Option<Arc<str>>,
    /// Access times are shown in it (`time_zone`).
    zone: jiff::tz::TimeZone,
}

/// The portal's routes for `config` (validated here). Logs a warning when the development
/// login is on.
pub fn router(config: Config) -> Result<Router, ConfigError> {
    config.validate()?;
    let (login, oidc): (Arc<dyn Login>, _) = if config.login.kind == Some(LoginKind::Oidc) {
        let sealer = match &config.session_key_file {
            Some(path) => Sealer::from_file(path),
            None => Sealer::ephemeral(),
        }
        .map_err(|e| ConfigError::Invalid(format!("session_key_file: {e}")))?;
        let oidc = Arc::new(OidcLogin::new(&config, sealer)?);
        (Arc::clone(&oidc) as Arc<dyn Login>, Some(oidc))
    } else {
        (login::from_config(&config)?, None)
    };
    let portal = Portal {
        login,
        oidc,
        gateway: Gateway::new(&config)?,
        secure_cookies: config.cookies_secure(),
        verify_hint: config.verify_hint.as_deref().map(Arc::from),
        zone: config
            .zone()
            .map_err(|e| ConfigError::Invalid(format!("time_zone: {e}")))?,
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/login/dev", post(dev_login))
        .route("/login", get(oidc_login))
        .route("/login/callback", get(oidc_callback))
        .route("/logout", post(logout))
        .route("/evidence", get(evidence))
        .route("/about", get(about))
        .route("/api/timeline", get(api_timeline))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .layer(middleware::map_response(common_headers))
        .with_state(portal))
}

/// The page language, and a cookie to remember it when `?lang=` chose it.
struct PageLang {
    lang: Lang,
    remember: Option<Cookie<'static>>,
}

impl Portal {
    fn dev(&self) -> bool {
        self.login.is_development()
    }

    fn page_lang(&self, uri: &Uri, jar: &CookieJar, headers: &HeaderMap) -> PageLang {
        let asked = uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.strip_prefix("lang="))
                .find_map(Lang::from_code)
        });
        if let Some(lang) = asked {
            let cookie = portal_cookie(
                LANG_COOKIE,
                lang.code().to_owned(),
                LANG_COOKIE_SECS,
                false,
                self.secure_cookies,
            );
            return PageLang {
                lang,
                remember: Some(cookie),
            };
        }
        let lang = jar
            .get(LANG_COOKIE)
            .and_then(|c| Lang::from_code(c.value()))
            .unwrap_or_else(|| Lang::from_accept_language(headers));
        PageLang {
            lang,
            remember: None,
        }
    }

    fn problem(&self, lang: Lang, status: StatusCode, problem: &Problem) -> Response {
        html(status, page::problem_page(lang, self.dev(), problem))
    }

    /// What a request without a resident gets: the login form or button, or 401 "login
    /// required".
    fn login_wall(&self, lang: Lang, status_for_form: StatusCode) -> Response {
        if self.oidc.is_some() {
            html(status_for_form, page::oidc_login_page(lang))
        } else if self.login.has_form() {
            html(status_for_form, page::login_page(lang, None))
        } else {
            html(StatusCode::UNAUTHORIZED, page::login_required_page(lang))
        }
    }

    fn login_error(&self, lang: Lang, e: &LoginError) -> Response {
        self.problem(
            lang,
            StatusCode::BAD_REQUEST,
            &Problem::BadLogin(e.to_string()),
        )
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn with_lang_cookie(jar: CookieJar, response: Response, lang: PageLang) -> Response {
    match lang.remember {
        Some(cookie) => (jar.add(cookie), response).into_response(),
        None => response,
    }
}

/// Headers on every answer: the pages hold personal data, so nothing is cached, framed or sniffed.
async fn common_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn home(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers);
    let response = match portal.login.resident(&headers) {
        Err(e) => portal.login_error(lang.lang, &e),
        Ok(None) => portal.login_wall(lang.lang, StatusCode::OK),
        Ok(Some(resident)) => match portal.gateway.timeline(&resident).await {
            Ok(timeline) => html(
                StatusCode::OK,
                page::timeline_page(
                    lang.lang,
                    portal.dev(),
                    &resident.id,
                    (&timeline, &portal.zone),
                    &VerifyHelp {
                        hint: portal.verify_hint.as_deref(),
                    },
                ),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "no timeline");
                portal.problem(
                    lang.lang,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &Problem::DiscoveryFailed(e.to_string()),
                )
            }
        },
    };
    with_lang_cookie(jar, response, lang)
}

#[derive(Debug, Deserialize)]
struct DevLoginForm {
    resident: String,
}

async fn dev_login(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
    form: Result<Form<DevLoginForm>, FormRejection>,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers).lang;
    if !portal.login.has_form() {
        return portal.problem(lang, StatusCode::NOT_FOUND, &Problem::NotFound);
    }
    let refused = || {
        html(
            StatusCode::BAD_REQUEST,
            page::login_page(lang, Some(page::invalid_resident_message(lang))),
        )
    };
    let Ok(Form(form)) = form else {
        return refused();
    };
    let Ok(resident) = ResidentId::parse(form.resident.trim()) else {
        return refused();
    };
    match portal.login.start_session(resident) {
        Ok(cookie) => (jar.add(cookie), Redirect::to("/")).into_response(),
        Err(LoginError::TooManySessions) => portal.problem(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            &Problem::TooManySessions,
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a session");
            portal.problem(lang, StatusCode::INTERNAL_SERVER_ERROR, &Problem::Internal)
        }
    }
}

/// `GET /login`: to the identity provider, remembering the login in a sealed cookie.
async fn oidc_login(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers).lang;
    let Some(oidc) = &portal.oidc else {
        return Redirect::to("/").into_response();
    };
    match oidc.begin().await {
        Ok((url, cookie)) => (jar.add(cookie), Redirect::to(&url)).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start an OpenID Connect login");
            portal.problem(
                lang,
                StatusCode::BAD_GATEWAY,
                &Problem::BadLogin(e.to_string()),
            )
        }
    }
}

/// `GET /login/callback`: the provider's answer; a session, or why not.
async fn oidc_callback(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers).lang;
    let Some(oidc) = &portal.oidc else {
        return portal.problem(lang, StatusCode::NOT_FOUND, &Problem::NotFound);
    };
    let callback = query.map(|Query(q)| q).unwrap_or_default();
    match oidc.finish(callback, &headers).await {
        Ok((resident, [session, done])) => {
            tracing::info!(
                resident_chars = resident.id.as_str().chars().count(),
                "a resident logged in"
            );
            (jar.add(session).add(done), Redirect::to("/")).into_response()
        }
        Err(e) => {
            tracing::info!(error = %e, "an OpenID Connect login failed");
            let status = match e {
                OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            portal.problem(lang, status, &Problem::BadLogin(e.to_string()))
        }
    }
}

async fn logout(State(portal): State<Portal>, jar: CookieJar, headers: HeaderMap) -> Response {
    let jar = match portal.login.end_session(&headers) {
        Some(cookie) => jar.add(cookie),
        None => jar,
    };
    (jar, Redirect::to("/")).into_response()
}

#[derive(Debug, Deserialize)]
struct EvidenceQuery {
    provider: String,
    id: String,
    /// The provider's security server that holds the record, when it has several.
    #[serde(default)]
    server: Option<String>,
}

async fn evidence(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers).lang;
    let resident = match portal.login.resident(&headers) {
        Err(e) => return portal.login_error(lang, &e),
        Ok(None) => return portal.login_wall(lang, StatusCode::UNAUTHORIZED),
        Ok(Some(r)) => r,
    };
    let bad = |detail: String| {
        portal.problem(lang, StatusCode::BAD_REQUEST, &Problem::BadRequest(detail))
    };
    let Ok(Query(query)) = query else {
        return bad(
            "expected /evidence?provider=INSTANCE/CLASS/MEMBER/SUBSYSTEM&id=X-ROAD-ID".into(),
        );
    };
    let provider: SubsystemId = match query.provider.parse() {
        Ok(p) => p,
        Err(e) => return bad(format!("provider: {e}")),
    };
    let server: Option<SecurityServerId> = match query.server.as_deref().map(str::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return bad(format!("server: {e}")),
    };
    if !is_message_id(&query.id) {
        return bad("id: an X-Road-Id is 1 to 255 visible ASCII characters".into());
    }
    if !portal.gateway.may_ask(&provider) {
        return bad(format!(
            "{provider} is not one of the organisations this portal asks"
        ));
    }
    match portal
        .gateway
        .evidence(&resident, &provider, server.as_ref(), &query.id)
        .await
    {
        Ok(bundle) => {
            let disposition = format!(
                "attachment; filename=\"{}.evidence\"",
                evidence_filename(&query.id)
            );
            let mut response = (StatusCode::OK, bundle).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => {
            tracing::info!(%provider, id = %query.id, error = %e, "evidence not delivered");
            let (status, problem) = match e {
                EvidenceError::NotYetSealed => {
                    (StatusCode::SERVICE_UNAVAILABLE, Problem::EvidenceNotSealed)
                }
                EvidenceError::NotFound => (StatusCode::NOT_FOUND, Problem::EvidenceNotFound),
                EvidenceError::NotShared(t) => {
                    (StatusCode::FORBIDDEN, Problem::EvidenceNotShared(t))
                }
                EvidenceError::Failed(d) => (StatusCode::BAD_GATEWAY, Problem::EvidenceFailed(d)),
            };
            let mut response = portal.problem(lang, status, &problem);
            if problem == Problem::EvidenceNotSealed {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            response
        }
    }
}

/// A file name made of the X-Road-Id's safe characters only.
pub fn evidence_filename(message_id: &str) -> String {
    let name: String = message_id
        .chars()
        .take(MAX_FILENAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "record".to_owned()
    } else {
        name.to_owned()
    }
}

#[derive(Serialize)]
struct ApiTimeline<'a> {
    resident: &'a ResidentId,
    #[serde(flatten)]
    timeline: &'a Timeline,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn api_timeline(State(portal): State<Portal>, headers: HeaderMap) -> Response {
    let resident = match portal.login.resident(&headers) {
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "login required"),
        Ok(Some(r)) => r,
    };
    match portal.gateway.timeline(&resident).await {
        Ok(timeline) => axum::Json(ApiTimeline {
            resident: &resident.id,
            timeline: &timeline,
        })
        .into_response(),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /about`: what purpose and legal basis mean (no login needed).
async fn about(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers);
    let response = html(StatusCode::OK, page::about_page(lang.lang));
    with_lang_cookie(jar, response, lang)
}

async fn health() -> Response {
    runtime::health::Health::Ok.response(serde_json::Map::new())
}

async fn not_found(
    State(portal): State<Portal>,
    uri: Uri,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = portal.page_lang(&uri, &jar, &headers).lang;
    portal.problem(lang, StatusCode::NOT_FOUND, &Problem::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_file_names_are_safe() {
        assert_eq!(evidence_filename("0b6c-11aa"), "0b6c-11aa");
        assert_eq!(evidence_filename("a\"b/../c;d"), "a_b_.._c_d");
        assert_eq!(evidence_filename("..."), "record");
        assert_eq!(
            evidence_filename(&"x".repeat(300)).len(),
            MAX_FILENAME_CHARS
        );
    }
}
