//! Access rights of a provider's server (DESIGN §5.3): which subsystems may call which services.
//! Deny by default: a call is allowed only when a grant names it. No I/O; storing the grants is
//! the caller's business.
//!
//! # Grants
//!
//! A [`Grant`] gives one service to one [`Subject`] (a subsystem, or every member of a global
//! group as the global configuration lists it), optionally narrowed to one method and one path
//! pattern:
//!
//! - **Service**: matched on subsystem and service code. A grant without a version covers every
//!   version; a grant naming a version covers only calls naming that version. (REST calls carry
//!   no version, so a versioned grant never matches one.)
//! - **Method**: `None` is any method; methods are X-Road's eight (stored as upper-case strings;
//!   lower case is accepted on input).
//! - **Path**: `None` is the whole service. A pattern starts with `/`; its segments are literals
//!   (percent-decoded before comparison), `*` (exactly one non-empty segment) or, as the last
//!   segment only, `**` (any remainder, including none: `/records/**` covers `/records`,
//!   `/records/` and `/records/a/b`). A literal is compared with the request's percent-decoded
//!   segment byte for byte; `*` never matches a segment that decodes to contain `/` or `\`, so
//!   `a%2Fb` cannot pass for one segment.
//!
//! A request path with any dot segment (see [`crate::uri::path_segments`]) or a broken escape
//! is never allowed, whatever the grants say. A grant with an invalid method or pattern
//! ([`Grant::validate`]) never matches.
//!
//! # Stored form
//!
//! `serde` gives, e.g.
//! `{"service": "JP/MUN/131016/records/residentRecord", "subject": "JP/GOV/digital-agency/portal",
//! "method": "GET", "path": "/persons/*"}`; a subject of four parts is a subsystem, of two parts a
//! global group (`"JP/portals"`). `method` and `path` may be left out.

use std::fmt;
use std::str::FromStr;

use http::Method;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use globalconf::{ClientId, GlobalConf, GlobalGroupId, IdError, MemberId, ServiceId, SubsystemId};
use http::HeaderMap;

use crate::error::{ServerProxyCode, XRoadError};
use crate::message::VerifiedRequest;
use crate::metaservice;
use crate::rest::{self, InvalidHeader, header};
use globalconf::id::decode_bytes;

use crate::uri::path_segments;

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// `INSTANCE/CLASS/MEMBER/SUBSYSTEM`
    Subsystem(SubsystemId),
    /// `INSTANCE/CLASS/MEMBER`: the member calling as itself, without a subsystem (not its
    /// subsystems, which are clients of their own, as in X-Road).
    Member(MemberId),
    /// `INSTANCE/GROUPCODE`: every subsystem the global configuration lists in the group.
    Group(GlobalGroupId),
}

impl Subject {
    /// Whether `client` is, or is in, this subject.
    pub fn includes(&self, client: &ClientId, conf: &GlobalConf) -> bool {
        match (self, client) {
            (Subject::Subsystem(s), ClientId::Subsystem(c)) => s == c,
            (Subject::Member(m), ClientId::Member(c)) => m == c,
            (Subject::Group(g), ClientId::Subsystem(c)) => conf.is_in_group(g, c),
            _ => false,
        }
    }
}

impl FromStr for Subject {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.split('/').count() {
            2 => s.parse().map(Subject::Group),
            3 => s.parse().map(Subject::Member),
            _ => s.parse().map(Subject::Subsystem),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Subsystem(s) => s.fmt(f),
            Subject::Member(m) => m.fmt(f),
            Subject::Group(g) => g.fmt(f),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One access right.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub service: ServiceId,
    pub subject: Subject,
    /// `None`: any method.
    #[serde(default, with = "method_text", skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// `None`: the whole service; else a pattern (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Why a grant can never match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("method {0} is not one of X-Road's REST methods")]
    Method(String),
    #[error("path pattern {0:?}: {1}")]
    Path(String, &'static str),
}

impl Grant {
    /// Checks the method and the path pattern; an invalid grant is ignored by [`AccessRights`].
    pub fn validate(&self) -> Result<(), GrantError> {
        if let Some(m) = &self.method
            && !rest::is_supported_method(m)
        {
            return Err(GrantError::Method(m.to_string()));
        }
        if let Some(p) = &self.path {
            parse_pattern(p).map_err(|why| GrantError::Path(p.clone(), why))?;
        }
        Ok(())
    }

    fn covers_service(&self, service: &ServiceId) -> bool {
        self.service.subsystem() == service.subsystem()
            && self.service.code() == service.code()
            && self
                .service
                .version()
                .is_none_or(|v| service.version() == Some(v))
    }

    fn covers_call(&self, method: &Method, segments: &[Vec<u8>]) -> bool {
        if self.validate().is_err() {
            return false;
        }
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path {
            None => true,
            Some(p) => parse_pattern(p).is_ok_and(|pattern| matches(&pattern, segments)),
        }
    }
}

/// One method + path an allowed service may be called with (`None` = any), for the
/// `allowedMethods` metaservice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub method: Option<String>,
    pub path: Option<String>,
}

/// The access rights a provider's server holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessRights {
    grants: Vec<Grant>,
}

impl AccessRights {
    /// The rights given by `grants` (duplicates kept once).
    pub fn new(grants: Vec<Grant>) -> Self {
        let mut rights = Self::default();
        for g in grants {
            rights.add(g);
        }
        rights
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Adds a grant; `false` if it was already there.
    pub fn add(&mut self, grant: Grant) -> bool {
        if self.grants.contains(&grant) {
            return false;
        }
        self.grants.push(grant);
        true
    }

    /// Removes a grant; `false` if it was not there.
    pub fn remove(&mut self, grant: &Grant) -> bool {
        let before = self.grants.len();
        self.grants.retain(|g| g != grant);
        self.grants.len() != before
    }

    /// Whether `client` may call `method path` of `service`. `path` is the request's remainder
    /// after the service code, still percent-encoded (`""` or starting with `/`).
    pub fn allows(
        &self,
        client: &ClientId,
        service: &ServiceId,
        method: &Method,
        path: &str,
        conf: &GlobalConf,
    ) -> bool {
        let Ok(segments) = path_segments(path) else {
            return false;
        };
        self.grants.iter().any(|g| {
            g.covers_service(service)
                && g.subject.includes(client, conf)
                && g.covers_call(method, &segments)
        })
    }

    /// The access decision for a verified request: the proof that the provider's system may
    /// be called with it, or `AccessDenied`. The transparency metaservices are granted as one:
    /// a grant of the provider's `findUsage` covers `usageEvidence` too.
    pub fn authorize<'r>(
        &self,
        request: &'r VerifiedRequest,
        conf: &GlobalConf,
    ) -> Result<Authorized<'r>, XRoadError> {
        let service = request.service();
        let granted_as = if service.code() == metaservice::USAGE_EVIDENCE {
            service
                .subsystem()
                .service(metaservice::FIND_USAGE, None)
                .map_err(|e| XRoadError::new(ServerProxyCode::InternalError, e.to_string()))?
        } else {
            service.clone()
        };
        let path = request.path();
        if self.allows(request.client(), &granted_as, request.method(), path, conf) {
            return Ok(Authorized { request });
        }
        Err(XRoadError::new(
            ServerProxyCode::AccessDenied,
            format!(
                "{} may not call {} {service} {}",
                request.client(),
                request.method(),
                if path.is_empty() { "/" } else { path }
            ),
        )
        .with_id(request.message_id()))
    }

    /// For `allowedMethods`: the services of `provider` that `client` has any grant for, each
    /// with its endpoints, sorted and without repeats.
    pub fn allowed_methods(
        &self,
        client: &ClientId,
        provider: &SubsystemId,
        conf: &GlobalConf,
    ) -> Vec<(ServiceId, Vec<Endpoint>)> {
        let mut out: Vec<(ServiceId, Vec<Endpoint>)> = Vec::new();
        for g in &self.grants {
            if g.service.subsystem() != provider
                || !g.subject.includes(client, conf)
                || g.validate().is_err()
            {
                continue;
            }
            let endpoint = Endpoint {
                method: g.method.as_ref().map(|m| m.as_str().to_owned()),
                path: g.path.clone(),
            };
            match out.iter_mut().find(|(s, _)| s == &g.service) {
                Some((_, endpoints)) => endpoints.push(endpoint),
                None => out.push((g.service.clone(), vec![endpoint])),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, endpoints) in &mut out {
            endpoints.sort();
            endpoints.dedup();
        }
        out
    }
}

/// A verified request the access rights allow: only [`AccessRights::authorize`] makes one, and
/// calling the provider's system asks for it, so a request forwarded without the access check
/// does not compile (as one without the signature checks does not, [`VerifiedRequest`]).
#[derive(Debug, Clone, Copy)]
pub struct Authorized<'r> {
    request: &'r VerifiedRequest,
}

impl<'r> Authorized<'r> {
    pub fn request(&self) -> &'r VerifiedRequest {
        self.request
    }

    /// The headers of the request the provider's server sends to the provider IS: the signed
    /// pass-through headers, then the X-Road headers from the verified header (`X-Road-Client`,
    /// `X-Road-Service`, `X-Road-Id`, and `X-Road-Request-Id`, `X-Road-UserId`, `X-Road-Issue`,
    /// `X-Road-Represented-Party`, `X-Road-Data-Subject`, `X-Road-Purpose` when set), as X-Road
    /// shows them to a provider.
    pub fn provider_request_headers(&self, map: &mut HeaderMap) -> Result<(), InvalidHeader> {
        let request = self.request;
        let h = request.header();
        rest::apply_headers(
            map,
            h.headers
                .iter()
                .map(|x| (x.name.as_str(), x.value.as_str())),
        )?;
        rest::set_header(map, header::CLIENT, &request.client().to_string())?;
        rest::set_header(map, header::SERVICE, &request.service().to_string())?;
        rest::set_header(map, header::ID, request.message_id())?;
        for (name, value) in [
            (header::REQUEST_ID, &h.request_id),
            (header::USER_ID, &h.user_id),
            (header::ISSUE, &h.issue),
            (header::REPRESENTED_PARTY, &h.represented_party),
            (header::DATA_SUBJECT, &h.data_subject),
            (header::PURPOSE, &h.purpose),
        ] {
            if !value.is_empty() {
                rest::set_header(map, name, value)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(Vec<u8>),
    /// `*`
    One,
    /// `**`, last only
    Rest,
}

fn parse_pattern(p: &str) -> Result<Vec<PatternSegment>, &'static str> {
    let body = p.strip_prefix('/').ok_or("must start with '/'")?;
    let raw: Vec<&str> = body.split('/').collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        let s = match *seg {
            "**" if i + 1 == raw.len() => PatternSegment::Rest,
            "**" => return Err("'**' may only be the last segment"),
            "*" => PatternSegment::One,
            lit if lit.contains('*') => return Err("'*' must be a whole segment"),
            lit => {
                let bytes = decode_bytes(lit).ok_or("malformed percent-escape")?;
                if bytes.contains(&b'/') || bytes.contains(&b'\\') {
                    return Err("a literal segment may not contain '/' or '\\'");
                }
                PatternSegment::Literal(bytes)
            }
        };
        out.push(s);
    }
    // The literal segments, joined back, must be a path without dot segments.
    path_segments(p).map_err(|_| "dot segments are not allowed")?;
    Ok(out)
}

fn matches(pattern: &[PatternSegment], path: &[Vec<u8>]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((PatternSegment::Rest, _)) => true,
        Some((PatternSegment::One, rest)) => path.split_first().is_some_and(|(seg, tail)| {
            !seg.is_empty() && !seg.iter().any(|&b| b == b'/' || b == b'\\') && matches(rest, tail)
        }),
        Some((PatternSegment::Literal(lit), rest)) => path
            .split_first()
            .is_some_and(|(seg, tail)| seg == lit && matches(rest, tail)),
    }
}

/// `Option<Method>` as an optional upper-case string.
mod method_text {
    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_some(m.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Method>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let m = Method::from_bytes(text.to_ascii_uppercase().as_bytes())
            .map_err(serde::de::Error::custom)?;
        if !crate::rest::is_supported_method(&m) {
            return Err(serde::de::Error::custom(format!(
                "method {text} is not one of X-Road's REST methods"
            )));
        }
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests;
