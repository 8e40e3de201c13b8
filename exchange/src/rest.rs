//! The client-facing X-Road Message Protocol for REST, version `r1` (DESIGN §5.1). No I/O.
//!
//! This module owns the recognition of what an information system sends to its security
//! server ([`parse_call`], [`parse_request`]), the header rules in both directions
//! ([`filter_headers`], [`apply_headers`]) and the X-Road headers a security server writes
//! ([`write_response_headers`]; the provider's side is [`crate::access::Authorized::provider_request_headers`]).
//!
//! # The request
//!
//! `{METHOD} /r1/{INSTANCE}/{CLASS}/{MEMBER}/{SUBSYSTEM}/{SERVICECODE}[/path][?query]`
//!
//! Each identifier part is percent-decoded on its own (the spec's "URI sanitation": `/` only
//! separates parts) and must then pass the strict identifier rule (`A-Z a-z 0-9 ' ( ) + , - . = ?`,
//! 1–255 characters). The service URL carries no version. The remainder after the service code
//! (`path`) and the query are passed on exactly as received, still percent-encoded; a path with a
//! dot segment (`.`/`..`, also encoded or with `;` parameters) or a broken `%` escape is refused.
//! Methods are X-Road's eight: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE.
//!
//! # X-Road request headers
//!
//! Header names are case-insensitive. Every header below may appear at most once
//! (`Client.DuplicateHeaderField`; the spec lets a server take the last `X-Road-Client`, we refuse
//! the ambiguity: docs/errors.md says why). Leading and trailing spaces and tabs of a value are ignored.
//!
//! | header | rule |
//! |---|---|
//! | `X-Road-Client` | required; `INSTANCE/CLASS/MEMBER/SUBSYSTEM`, each part percent-decoded. The spec allows a member without subsystem; here the subsystem is the unit that calls (DESIGN §2), so it is required. |
//! | `X-Road-Id` | optional; 1–255 visible ASCII characters (`!`..`~`, no spaces). Generated as a time-ordered UUID v7 when absent. |
//! | `X-Road-Security-Server` | optional; `INSTANCE/CLASS/MEMBER/SERVERCODE`, parts percent-decoded. |
//! | `X-Road-Represented-Party` | optional; `[CLASS/]CODE`, parts percent-decoded and checked like identifiers; kept in that canonical form. |
//! | `X-Road-UserId`, `X-Road-Issue`, `X-Road-Data-Subject`, `X-Road-Purpose` | optional free text: UTF-8, at most 1024 bytes, no control characters; raw UTF-8 is accepted and kept as is (no percent-decoding). Empty means absent. |
//!
//! Any header value that is not UTF-8 is refused with `Client.InvalidHeaderField`.
//!
//! # Headers passed through ([`filter_headers`])
//!
//! The same filter serves requests (client IS → provider IS) and responses (provider IS → client
//! IS). Dropped: the hop-by-hop headers (`Connection` and every header it names, `Keep-Alive`,
//! `Proxy-Authenticate`, `Proxy-Authorization`, `Proxy-Connection`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`), the headers that leak the origin host (`Host`, `User-Agent`,
//! `Server`), the ones the security server handles itself (`Content-Length`, recomputed, and
//! `Expect`), and the X-Road headers of this protocol ([`is_xroad_header`]), which travel as
//! typed, signed fields and are written fresh at the far end. Everything else passes unchanged:
//! `Content-Type`, `Accept`, caching headers, `Date` (a provider's `Date` is the origin's, which an
//! intermediary keeps), and user-defined headers, including X-Road extension headers this
//! protocol does not define (the spec says they are handled like any user header).
//!
//! # Errors
//!
//! All `Client.*` (HTTP 400); the codes and when each is raised are [`ClientCode`]'s, listed
//! in `docs/errors.md`.

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use globalconf::id::{decode_part, validate_part};
use globalconf::{ClientId, InstanceId, MemberId, SecurityServerId, ServiceId};

use crate::error::{ClientCode, XRoadError};
use crate::metaservice::{self, MetaCall};
use crate::uri::{path_segments, query_param};

/// The protocol version segment of every service URL.
pub const PROTOCOL_VERSION: &str = "r1";

/// Longest accepted free-text X-Road header value, in bytes.
pub const MAX_TEXT_HEADER_BYTES: usize = 1024;

/// Longest accepted `X-Road-Id`, in bytes.
pub const MAX_MESSAGE_ID_BYTES: usize = 255;

/// X-Road header names, lowercase as `http` stores them.
pub mod header {
    pub const CLIENT: &str = "x-road-client";
    pub const SERVICE: &str = "x-road-service";
    pub const ID: &str = "x-road-id";
    pub const USER_ID: &str = "x-road-userid";
    pub const ISSUE: &str = "x-road-issue";
    pub const REPRESENTED_PARTY: &str = "x-road-represented-party";
    pub const SECURITY_SERVER: &str = "x-road-security-server";
    pub const REQUEST_ID: &str = "x-road-request-id";
    pub const REQUEST_HASH: &str = "x-road-request-hash";
    pub const ERROR: &str = "x-road-error";
    /// Our extension (DESIGN §7): the person the data is about.
    pub const DATA_SUBJECT: &str = "x-road-data-subject";
    /// Our extension (DESIGN §7): legal basis or procedure name.
    pub const PURPOSE: &str = "x-road-purpose";

    /// Every X-Road header this protocol defines.
    pub const ALL: [&str; 12] = [
        CLIENT,
        SERVICE,
        ID,
        USER_ID,
        ISSUE,
        REPRESENTED_PARTY,
        SECURITY_SERVER,
        REQUEST_ID,
        REQUEST_HASH,
        ERROR,
        DATA_SUBJECT,
        PURPOSE,
    ];
}

/// One service call from an information system, fully recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub message_id: String,
    /// A subsystem, or a member calling without one.
    pub client: ClientId,
    pub service: ServiceId,
    pub method: Method,
    /// The remainder after the service code: `""` or starting with `/`, still percent-encoded as
    /// received (free of dot segments).
    pub path: String,
    /// The raw query after `?`, as received.
    pub query: Option<String>,
    /// Pass-through headers after [`filter_headers`], names lowercase, in arrival order per name.
    pub headers: Vec<(String, String)>,
    pub user_id: Option<String>,
    pub issue: Option<String>,
    /// `CLASS/CODE` or `CODE`.
    pub represented_party: Option<String>,
    pub data_subject: Option<String>,
    pub purpose: Option<String>,
    /// The provider security server the client asked for, if any.
    pub target_server: Option<SecurityServerId>,
}

/// What an information system asked its security server for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCall {
    /// A call of a service (or of a subsystem's metaservice), to be forwarded to a server
    /// hosting the provider.
    Service(Box<ClientRequest>),
    /// `GET /listClients[?xRoadInstance=X]`; needs no `X-Road-Client`.
    ListClients { instance: Option<InstanceId> },
}

/// A header name or value that cannot travel: not UTF-8, or not valid in HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name:?} has an invalid name or value")]
pub struct InvalidHeader {
    pub name: String,
}

impl InvalidHeader {
    fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// The X-Road headers a security server puts on the response to the client IS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub message_id: String,
    /// The client's server's own id for this request, when it keeps one.
    pub request_id: Option<String>,
    pub client: ClientId,
    pub service: ServiceId,
    /// Standard base64 of the request hash (see [`crate::message::request_hash_b64`]).
    pub request_hash_b64: String,
    /// The provider security server that answered.
    pub security_server: SecurityServerId,
}

/// A new X-Road-Id: a UUID of version 7 (RFC 9562) in its lowercase text form: the Unix time in
/// milliseconds, then random bits. Ids made later sort later, so the message log's index by
/// X-Road-Id grows at its end instead of rewriting a random page of the index for every record
/// (docs/performance.md). The id reveals when it was made, which the exchange's headers and log
/// records say anyway.
pub fn new_message_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Recognises a call: `listClients`, or a service call. A metaservice call of a subsystem
/// (`listMethods`, `getOpenAPI`, `findUsage`, …) travels to the provider's server like any
/// service call; what a client can get wrong in one is refused here already, with the rules of
/// [`MetaCall::parse`], which the provider's server applies again.
pub fn parse_call(parts: &Parts) -> Result<ClientCall, XRoadError> {
    if parts.uri.path() == metaservice::LIST_CLIENTS_PATH {
        if parts.method != Method::GET {
            return Err(XRoadError::new(
                ClientCode::InvalidHttpMethod,
                "listClients takes GET only",
            ));
        }
        let instance = match query_param(parts.uri.query(), "xRoadInstance")
            .map_err(|e| XRoadError::new(ClientCode::BadRequest, e.to_string()))?
        {
            None => None,
            Some(v) => Some(v.parse::<InstanceId>().map_err(|e| {
                XRoadError::new(ClientCode::BadRequest, format!("xRoadInstance: {e}"))
            })?),
        };
        return Ok(ClientCall::ListClients { instance });
    }

    let request = parse_request(parts)?;
    let meta = MetaCall::parse(
        &request.service,
        &request.method,
        &request.path,
        request.query.as_deref(),
        request.data_subject.as_deref(),
    );
    if let Some(Err(e)) = meta {
        return Err(e.to_client_error().with_id(request.message_id));
    }
    Ok(ClientCall::Service(Box::new(request)))
}

/// Recognises a service call: URL, method, X-Road headers and pass-through headers.
///
/// The X-Road-Id is read (or generated) first, so that every later error carries it.
pub fn parse_request(parts: &Parts) -> Result<ClientRequest, XRoadError> {
    let message_id = match single_header(&parts.headers, header::ID)? {
        Some(id) => {
            check_message_id(id).map_err(|m| XRoadError::new(ClientCode::InvalidHeaderField, m))?;
            id.to_owned()
        }
        None => new_message_id(),
    };
    parse_request_with_id(parts, &message_id).map_err(|e| e.with_id(message_id.clone()))
}

fn parse_request_with_id(parts: &Parts, message_id: &str) -> Result<ClientRequest, XRoadError> {
    let (service, path) = parse_service_url(parts.uri.path())?;
    if !is_supported_method(&parts.method) {
        return Err(XRoadError::new(
            ClientCode::InvalidHttpMethod,
            format!("method {} is not supported", parts.method),
        ));
    }
    let h = &parts.headers;
    let client = match single_header(h, header::CLIENT)? {
        None => {
            return Err(XRoadError::new(
                ClientCode::InvalidClientIdentifier,
                "the X-Road-Client header is missing",
            ));
        }
        Some(v) => parse_client_header(v)?,
    };
    let target_server = single_header(h, header::SECURITY_SERVER)?
        .map(parse_server_header)
        .transpose()?;
    let represented_party = single_header(h, header::REPRESENTED_PARTY)?
        .map(parse_represented_party)
        .transpose()?;
    let text = |name: &'static str| -> Result<Option<String>, XRoadError> {
        match single_header(h, name)? {
            None => Ok(None),
            Some(v) => free_text(name, v),
        }
    };
    let headers = filter_headers(h).map_err(|e| {
        XRoadError::new(
            ClientCode::InvalidHeaderField,
            format!("header {} is not valid UTF-8", e.name),
        )
    })?;
    Ok(ClientRequest {
        message_id: message_id.to_owned(),
        client,
        service,
        method: parts.method.clone(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        user_id: text(header::USER_ID)?,
        issue: text(header::ISSUE)?,
        represented_party,
        data_subject: text(header::DATA_SUBJECT)?,
        purpose: text(header::PURPOSE)?,
        target_server,
    })
}

/// X-Road's REST verbs.
pub fn is_supported_method(method: &Method) -> bool {
    [
        Method::DELETE,
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::POST,
        Method::PUT,
        Method::TRACE,
    ]
    .contains(method)
}

/// `/r1/I/C/M/S/CODE[/rest]` → the service and `""` or `/rest`.
fn parse_service_url(path: &str) -> Result<(ServiceId, String), XRoadError> {
    let bad = |msg: &str| {
        XRoadError::new(
            ClientCode::BadRequest,
            format!("{msg}; expected /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE[/path]"),
        )
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("the path is not absolute"))?;
    let mut pieces = rest.splitn(7, '/');
    let version = pieces.next().unwrap_or("");
    if version != PROTOCOL_VERSION {
        let numbered = version.len() > 1
            && version.starts_with('r')
            && version[1..].bytes().all(|b| b.is_ascii_digit());
        if numbered {
            return Err(XRoadError::new(
                ClientCode::InvalidProtocolVersion,
                format!("protocol version {version} is not supported; use r1"),
            ));
        }
        return Err(bad("not an X-Road REST URL"));
    }
    let mut ids = Vec::with_capacity(5);
    for what in [
        "instance",
        "member class",
        "member code",
        "subsystem code",
        "service code",
    ] {
        let raw = pieces
            .next()
            .ok_or_else(|| bad(&format!("the {what} is missing")))?;
        let part = decode_id_part(raw).map_err(|m| {
            XRoadError::new(ClientCode::InvalidServiceIdentifier, format!("{what}: {m}"))
        })?;
        ids.push(part);
    }
    let service = MemberId::new(&ids[0], &ids[1], &ids[2])
        .and_then(|m| m.subsystem(&ids[3]))
        .and_then(|s| s.service(&ids[4], None))
        .map_err(|e| XRoadError::new(ClientCode::InvalidServiceIdentifier, e.to_string()))?;
    let path = match pieces.next() {
        Some(r) => format!("/{r}"),
        None => String::new(),
    };
    path_segments(&path).map_err(|e| XRoadError::new(ClientCode::BadRequest, e.to_string()))?;
    Ok((service, path))
}

/// One identifier part of a URL or header: percent-decoded, then the strict identifier rule.
fn decode_id_part(raw: &str) -> Result<String, String> {
    let part =
        decode_part(raw).ok_or_else(|| format!("{raw:?} is not valid percent-encoded UTF-8"))?;
    validate_part(&part).map_err(|e| e.to_string())?;
    Ok(part)
}

fn decode_id_parts(value: &str) -> Result<Vec<String>, String> {
    value.split('/').map(decode_id_part).collect()
}

fn parse_client_header(value: &str) -> Result<ClientId, XRoadError> {
    let err = |m: String| {
        XRoadError::new(
            ClientCode::InvalidClientIdentifier,
            format!("X-Road-Client: {m}"),
        )
    };
    let parts = decode_id_parts(value).map_err(err)?;
    match parts.as_slice() {
        [i, c, m, s] => MemberId::new(i, c, m)
            .and_then(|m| m.subsystem(s))
            .map(ClientId::Subsystem)
            .map_err(|e| err(e.to_string())),
        // PR-REST: the subsystem is optional; a member may call as itself.
        [i, c, m] => MemberId::new(i, c, m)
            .map(ClientId::Member)
            .map_err(|e| err(e.to_string())),
        _ => Err(err(format!(
            "{} parts, expected INSTANCE/CLASS/MEMBER[/SUBSYSTEM]",
            parts.len()
        ))),
    }
}

fn parse_server_header(value: &str) -> Result<SecurityServerId, XRoadError> {
    let err = |m: String| {
        XRoadError::new(
            ClientCode::InvalidSecurityServer,
            format!("X-Road-Security-Server: {m}"),
        )
    };
    let parts = decode_id_parts(value).map_err(err)?;
    match parts.as_slice() {
        [i, c, m, s] => MemberId::new(i, c, m)
            .and_then(|m| m.server(s))
            .map_err(|e| err(e.to_string())),
        _ => Err(err(format!(
            "{} parts, expected INSTANCE/CLASS/MEMBER/SERVERCODE",
            parts.len()
        ))),
    }
}

fn parse_represented_party(value: &str) -> Result<String, XRoadError> {
    let err = |m: String| {
        XRoadError::new(
            ClientCode::InvalidHeaderField,
            format!("X-Road-Represented-Party: {m}"),
        )
    };
    let parts = decode_id_parts(value).map_err(err)?;
    if parts.is_empty() || parts.len() > 2 {
        return Err(err(format!("{} parts, expected [CLASS/]CODE", parts.len())));
    }
    Ok(parts.join("/"))
}

fn check_message_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_BYTES {
        return Err(format!(
            "X-Road-Id must be 1–{MAX_MESSAGE_ID_BYTES} characters"
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("X-Road-Id must be visible ASCII without spaces".into());
    }
    Ok(())
}

/// Whether a message id is acceptable as an X-Road-Id (1–255 visible ASCII characters).
pub fn is_valid_message_id(id: &str) -> bool {
    check_message_id(id).is_ok()
}

/// Free-text X-Road header: empty → absent; UTF-8, ≤ 1024 bytes, no control characters.
fn free_text(name: &str, value: &str) -> Result<Option<String>, XRoadError> {
    if value.is_empty() {
        return Ok(None);
    }
    if !is_valid_free_text(value) {
        return Err(XRoadError::new(
            ClientCode::InvalidHeaderField,
            format!(
                "{name} must be at most {MAX_TEXT_HEADER_BYTES} bytes of UTF-8 without control characters"
            ),
        ));
    }
    Ok(Some(value.to_owned()))
}

/// The rule for free-text X-Road fields: at most 1024 bytes, no control characters.
pub fn is_valid_free_text(value: &str) -> bool {
    value.len() <= MAX_TEXT_HEADER_BYTES && !value.chars().any(char::is_control)
}

/// The one value of a header, as UTF-8 with surrounding spaces and tabs removed.
fn single_header<'a>(map: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, XRoadError> {
    let mut values = map.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(XRoadError::new(
            ClientCode::DuplicateHeaderField,
            format!("header {name} given more than once"),
        ));
    }
    let value = std::str::from_utf8(first.as_bytes()).map_err(|_| {
        XRoadError::new(
            ClientCode::InvalidHeaderField,
            format!("header {name} is not valid UTF-8"),
        )
    })?;
    Ok(Some(value.trim_matches([' ', '\t'])))
}

// ---------------------------------------------------------------------------------------------
// Header filtering
// ---------------------------------------------------------------------------------------------

/// Headers that never pass, besides the X-Road ones and those `Connection` names.
const DROPPED: [&str; 14] = [
    // hop-by-hop (RFC 9110 §7.6.1, and the spec's list)
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // could leak the origin host
    "host",
    "user-agent",
    "server",
    // handled by the security server itself
    "content-length",
    "expect",
];

/// Whether `name` (lowercase) is an X-Road header this protocol defines.
pub fn is_xroad_header(name: &str) -> bool {
    header::ALL.contains(&name)
}

fn is_dropped(name: &str) -> bool {
    DROPPED.contains(&name) || is_xroad_header(name)
}

/// The headers that pass through a security server, in either direction (see the module
/// documentation for the rule). Names come out lowercase. A value that is not UTF-8 cannot be
/// carried in the signed header and is an error, never silently altered.
pub fn filter_headers(map: &HeaderMap) -> Result<Vec<(String, String)>, InvalidHeader> {
    let mut named = Vec::new();
    for v in map.get_all(http::header::CONNECTION) {
        let v = std::str::from_utf8(v.as_bytes()).map_err(|_| InvalidHeader::new("connection"))?;
        named.extend(
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty()),
        );
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let n = name.as_str();
        if is_dropped(n) || named.iter().any(|x| x == n) {
            continue;
        }
        let v = std::str::from_utf8(value.as_bytes()).map_err(|_| InvalidHeader::new(n))?;
        out.push((n.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Appends pass-through headers (from a signed header) to an outgoing request or response.
/// Anything [`filter_headers`] would drop is skipped again here, so a peer cannot smuggle
/// `Host`, `Transfer-Encoding` or an X-Road header in.
pub fn apply_headers<'a, I>(map: &mut HeaderMap, headers: I) -> Result<(), InvalidHeader>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    for (name, value) in headers {
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeader::new(name))?;
        if is_dropped(header_name.as_str()) {
            continue;
        }
        let header_value =
            HeaderValue::from_bytes(value.as_bytes()).map_err(|_| InvalidHeader::new(name))?;
        map.append(header_name, header_value);
    }
    Ok(())
}

/// Sets one header, replacing any of that name.
pub fn set_header(
    map: &mut HeaderMap,
    name: &'static str,
    value: &str,
) -> Result<(), InvalidHeader> {
    let v = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| InvalidHeader::new(name))?;
    map.insert(HeaderName::from_static(name), v);
    Ok(())
}

/// Writes the X-Road response headers, replacing any the provider IS set (the spec says they
/// are overwritten): `X-Road-Client`, `X-Road-Service` (`INSTANCE/CLASS/MEMBER/SUBSYSTEM/CODE`),
/// `X-Road-Id`, `X-Road-Request-Id` (when known), `X-Road-Request-Hash` (base64) and
/// `X-Road-Security-Server`.
pub fn write_response_headers(
    map: &mut HeaderMap,
    meta: &ResponseMeta,
) -> Result<(), InvalidHeader> {
    set_header(map, header::CLIENT, &meta.client.to_string())?;
    set_header(map, header::SERVICE, &meta.service.to_string())?;
    set_header(map, header::ID, &meta.message_id)?;
    match &meta.request_id {
        Some(id) => set_header(map, header::REQUEST_ID, id)?,
        None => {
            map.remove(header::REQUEST_ID);
        }
    }
    set_header(map, header::REQUEST_HASH, &meta.request_hash_b64)?;
    set_header(
        map,
        header::SECURITY_SERVER,
        &meta.security_server.to_string(),
    )?;
    map.remove(header::ERROR);
    Ok(())
}

#[cfg(test)]
mod tests;
