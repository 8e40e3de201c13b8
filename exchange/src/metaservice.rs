//! The metaservices (X-Road's PR-MREST, and our resident transparency ones, DESIGN §7): which
//! service codes they are and what a well-formed call of each looks like. No I/O.
//!
//! Both proxies recognise a call with the one [`MetaCall::parse`]: the client's server to
//! refuse a malformed call before signing it (as `Client.*`), the provider's server to refuse
//! one from a client's server that did not (as `Server.ServerProxy.BadRequest`: the client's
//! server passes on only `Server.ServerProxy.*` errors from a peer, so a `Client.*` one would
//! reach the client as `InvalidResponse`).
//!
//! | service code | method, path | query | other |
//! |---|---|---|---|
//! | `listMethods`, `allowedMethods` | GET, none | ignored | |
//! | `getOpenAPI` | GET, none | `serviceCode` (required, a valid service code) | |
//! | `findUsage` | GET, none | `offset`, `limit` (optional, non-negative integers) | `X-Road-Data-Subject` |
//! | `usageEvidence` | GET, none | `id` (required, not empty) | `X-Road-Data-Subject` |
//!
//! Unknown query parameters are ignored; a known one given twice is refused. `listClients` is
//! not a service of a subsystem: it is `GET /listClients`, answered by the client's own server
//! ([`crate::rest::ClientCall::ListClients`]).

use http::Method;

use globalconf::{GlobalConf, InstanceId, ServiceId};

use crate::error::{ClientCode, ServerProxyCode, XRoadError};
use crate::uri::{QueryError, query_param};

pub const LIST_METHODS: &str = "listMethods";
pub const ALLOWED_METHODS: &str = "allowedMethods";
pub const GET_OPENAPI: &str = "getOpenAPI";
/// Resident transparency (DESIGN §7): a data subject's accesses.
pub const FIND_USAGE: &str = "findUsage";
/// Resident transparency: the evidence bundle of one access (granted with `findUsage`).
pub const USAGE_EVIDENCE: &str = "usageEvidence";
/// `GET /listClients`: answered by the client's own server from the global configuration.
pub const LIST_CLIENTS_PATH: &str = "/listClients";

/// The most records one `findUsage` page holds.
pub const MAX_PAGE: usize = 500;
/// A `findUsage` page's size when the caller gives none.
pub const DEFAULT_PAGE: usize = 50;

/// Whether `code` is one of the transparency metaservices (`findUsage`, `usageEvidence`).
pub fn is_transparency_service(code: &str) -> bool {
    code == FIND_USAGE || code == USAGE_EVIDENCE
}

/// A metaservice call, recognised and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaCall {
    ListMethods,
    AllowedMethods,
    /// `getOpenAPI?serviceCode=X`: `service` is the provider subsystem's service `X`.
    GetOpenApi {
        service: ServiceId,
    },
    /// `findUsage`: `limit` is clamped to 1..=[`MAX_PAGE`], [`DEFAULT_PAGE`] when not given.
    FindUsage {
        offset: usize,
        limit: usize,
    },
    /// `usageEvidence?id=X-Road-Id`.
    UsageEvidence {
        id: String,
    },
}

/// What was wrong with a metaservice call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaErrorKind {
    /// The method is not GET.
    Method,
    /// `serviceCode` is not a valid service code.
    ServiceCode,
    /// Anything else: a path, a missing or malformed parameter, no data subject.
    Request,
}

/// Why a metaservice call is refused; each side reports it with its own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    pub kind: MetaErrorKind,
    pub message: String,
}

impl MetaError {
    fn request(message: impl Into<String>) -> Self {
        Self {
            kind: MetaErrorKind::Request,
            message: message.into(),
        }
    }

    /// As the client's server reports it to the information system (`Client.*`).
    pub fn to_client_error(&self) -> XRoadError {
        let code = match self.kind {
            MetaErrorKind::Method => ClientCode::InvalidHttpMethod,
            MetaErrorKind::ServiceCode => ClientCode::InvalidServiceIdentifier,
            MetaErrorKind::Request => ClientCode::BadRequest,
        };
        XRoadError::new(code, self.message.clone())
    }

    /// As the provider's server reports it to the client's server.
    pub fn to_server_proxy_error(&self) -> XRoadError {
        XRoadError::new(ServerProxyCode::BadRequest, self.message.clone())
    }
}

impl From<QueryError> for MetaError {
    fn from(e: QueryError) -> Self {
        MetaError::request(e.to_string())
    }
}

impl MetaCall {
    /// Recognises a call of `service` as a metaservice call: `None` when its code is not a
    /// metaservice's, else the call or why it is malformed. `path` is the remainder after the
    /// service code, `query` the raw query, `data_subject` the `X-Road-Data-Subject` (empty or
    /// absent: none).
    pub fn parse(
        service: &ServiceId,
        method: &Method,
        path: &str,
        query: Option<&str>,
        data_subject: Option<&str>,
    ) -> Option<Result<MetaCall, MetaError>> {
        let code = service.code();
        let known = [
            LIST_METHODS,
            ALLOWED_METHODS,
            GET_OPENAPI,
            FIND_USAGE,
            USAGE_EVIDENCE,
        ];
        if !known.contains(&code) {
            return None;
        }
        Some(Self::parse_known(
            service,
            method,
            path,
            query,
            data_subject,
        ))
    }

    fn parse_known(
        service: &ServiceId,
        method: &Method,
        path: &str,
        query: Option<&str>,
        data_subject: Option<&str>,
    ) -> Result<MetaCall, MetaError> {
        let code = service.code();
        if *method != Method::GET {
            return Err(MetaError {
                kind: MetaErrorKind::Method,
                message: format!("metaservice {code} takes GET only"),
            });
        }
        if !path.is_empty() {
            return Err(MetaError::request(format!(
                "metaservice {code} takes no path after the service code"
            )));
        }
        if is_transparency_service(code) && data_subject.is_none_or(str::is_empty) {
            return Err(MetaError::request(format!(
                "metaservice {code} needs X-Road-Data-Subject"
            )));
        }
        match code {
            LIST_METHODS => Ok(MetaCall::ListMethods),
            ALLOWED_METHODS => Ok(MetaCall::AllowedMethods),
            GET_OPENAPI => {
                let wanted = query_param(query, "serviceCode")?.ok_or_else(|| {
                    MetaError::request("getOpenAPI needs the query parameter serviceCode")
                })?;
                let service =
                    service
                        .subsystem()
                        .service(&wanted, None)
                        .map_err(|e| MetaError {
                            kind: MetaErrorKind::ServiceCode,
                            message: format!("serviceCode: {e}"),
                        })?;
                Ok(MetaCall::GetOpenApi { service })
            }
            FIND_USAGE => {
                let number = |name: &str| -> Result<Option<usize>, MetaError> {
                    match query_param(query, name)? {
                        None => Ok(None),
                        Some(v) => v.parse().map(Some).map_err(|_| {
                            MetaError::request(format!("{name} must be a non-negative integer"))
                        }),
                    }
                };
                let offset = number("offset")?.unwrap_or(0);
                let limit = number("limit")?.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
                Ok(MetaCall::FindUsage { offset, limit })
            }
            _ => {
                let id = query_param(query, "id")?
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        MetaError::request(format!(
                            "metaservice {code} needs the query parameter id"
                        ))
                    })?;
                Ok(MetaCall::UsageEvidence { id })
            }
        }
    }
}

/// Whether a `listClients` caller asked for JSON: PR-META says JSON when `Accept` is
/// `application/json`, the XML `clientList` otherwise (any of the listed media types counts).
pub fn list_clients_wants_json<'a>(accept: impl IntoIterator<Item = &'a str>) -> bool {
    accept
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or_default().trim())
        .any(|media| media.eq_ignore_ascii_case("application/json"))
}

/// The `listClients` answer (PR-META §2, Annex C.1) and its `Content-Type`: every member and
/// subsystem of the instance (none when `instance` names another), with the member's name as
/// `name` and the subsystem's as `subsystem_name` / `subsystemName`.
///
/// In JSON each subsystem also names the security servers that host it (`security_servers`, an
/// extension of ours in the identifier shape, `object_type` `SERVER`; parsers ignore fields they
/// do not know): each server logs only the exchanges it served, so a client that wants all of a
/// subsystem's records (the resident portal's `findUsage`) asks each of them with
/// `X-Road-Security-Server`. The XML form follows the schema exactly and has no such extension.
pub fn list_clients(
    conf: &GlobalConf,
    instance: Option<&InstanceId>,
    json: bool,
) -> (&'static str, Vec<u8>) {
    let listed = instance.is_none_or(|i| i == conf.instance());
    let members = conf.members().filter(|_| listed);
    if json {
        let mut out = Vec::new();
        for m in members {
            let id = |object_type: &str| {
                serde_json::json!({
                    "object_type": object_type,
                    "xroad_instance": m.id.instance(),
                    "member_class": m.id.class(),
                    "member_code": m.id.code(),
                })
            };
            out.push(serde_json::json!({ "id": id("MEMBER"), "name": m.name }));
            for s in &m.subsystems {
                let mut sid = id("SUBSYSTEM");
                sid["subsystem_code"] = s.code().into();
                let servers: Vec<_> = conf
                    .servers_hosting(s)
                    .iter()
                    .map(|server| {
                        serde_json::json!({
                            "object_type": "SERVER",
                            "xroad_instance": server.owner().instance(),
                            "member_class": server.owner().class(),
                            "member_code": server.owner().code(),
                            "server_code": server.code(),
                        })
                    })
                    .collect();
                out.push(serde_json::json!({
                    "id": sid,
                    "name": m.name,
                    "subsystem_name": conf.subsystem_name(s).unwrap_or_default(),
                    "security_servers": servers,
                }));
            }
        }
        let body = serde_json::json!({ "member": out }).to_string();
        return ("application/json;charset=utf-8", body.into_bytes());
    }
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
         <ns2:clientList xmlns:ns1=\"http://x-road.eu/xsd/identifiers\" \
         xmlns:ns2=\"http://x-road.eu/xsd/xroad.xsd\">",
    );
    let text = crate::error::xml_text;
    for m in members {
        let member_id = |object_type: &str| {
            format!(
                "<ns2:id ns1:objectType=\"{object_type}\"><ns1:xRoadInstance>{}</ns1:xRoadInstance>\
                 <ns1:memberClass>{}</ns1:memberClass><ns1:memberCode>{}</ns1:memberCode>",
                text(m.id.instance()),
                text(m.id.class()),
                text(m.id.code()),
            )
        };
        xml.push_str(&format!(
            "<ns2:member>{}</ns2:id><ns2:name>{}</ns2:name></ns2:member>",
            member_id("MEMBER"),
            text(&m.name)
        ));
        for s in &m.subsystems {
            xml.push_str(&format!(
                "<ns2:member>{}<ns1:subsystemCode>{}</ns1:subsystemCode></ns2:id>\
                 <ns2:name>{}</ns2:name>",
                member_id("SUBSYSTEM"),
                text(s.code()),
                text(&m.name)
            ));
            if let Some(name) = conf.subsystem_name(s).filter(|n| !n.is_empty()) {
                xml.push_str(&format!(
                    "<ns2:subsystemName>{}</ns2:subsystemName>",
                    text(name)
                ));
            }
            xml.push_str("</ns2:member>");
        }
    }
    xml.push_str("</ns2:clientList>\n");
    ("text/xml;charset=utf-8", xml.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        code: &str,
        method: Method,
        path: &str,
        query: &str,
        subject: &str,
    ) -> Option<Result<MetaCall, MetaError>> {
        let service: ServiceId = format!("JP/MUN/131016/records/{code}").parse().unwrap();
        let query = Some(query).filter(|q| !q.is_empty());
        let subject = Some(subject).filter(|s| !s.is_empty());
        MetaCall::parse(&service, &method, path, query, subject)
    }

    fn ok(code: &str, query: &str, subject: &str) -> MetaCall {
        call(code, Method::GET, "", query, subject)
            .unwrap()
            .unwrap()
    }

    fn kind(code: &str, method: Method, path: &str, query: &str, subject: &str) -> MetaErrorKind {
        call(code, method, path, query, subject)
            .unwrap()
            .unwrap_err()
            .kind
    }

    #[test]
    fn ordinary_services_are_not_metaservices() {
        assert_eq!(call("residentRecord", Method::POST, "/x", "", ""), None);
    }

    #[test]
    fn every_metaservice_takes_get_without_a_path() {
        for code in [
            LIST_METHODS,
            ALLOWED_METHODS,
            GET_OPENAPI,
            FIND_USAGE,
            USAGE_EVIDENCE,
        ] {
            assert_eq!(
                kind(code, Method::POST, "", "serviceCode=a&id=1", "s"),
                MetaErrorKind::Method,
                "{code}"
            );
            assert_eq!(
                kind(code, Method::GET, "/x", "serviceCode=a&id=1", "s"),
                MetaErrorKind::Request,
                "{code}"
            );
        }
        assert_eq!(ok(LIST_METHODS, "anything=1", ""), MetaCall::ListMethods);
        assert_eq!(ok(ALLOWED_METHODS, "", ""), MetaCall::AllowedMethods);
    }

    #[test]
    fn get_openapi_needs_a_valid_service_code() {
        match ok(GET_OPENAPI, "serviceCode=resident%52ecord", "") {
            MetaCall::GetOpenApi { service } => {
                assert_eq!(service.to_string(), "JP/MUN/131016/records/residentRecord")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            kind(GET_OPENAPI, Method::GET, "", "", ""),
            MetaErrorKind::Request
        );
        assert_eq!(
            kind(GET_OPENAPI, Method::GET, "", "serviceCode=a%20b", ""),
            MetaErrorKind::ServiceCode
        );
        assert_eq!(
            kind(
                GET_OPENAPI,
                Method::GET,
                "",
                "serviceCode=a&serviceCode=b",
                ""
            ),
            MetaErrorKind::Request
        );
        assert_eq!(
            kind(GET_OPENAPI, Method::GET, "", "serviceCode=%zz", ""),
            MetaErrorKind::Request
        );
    }

    #[test]
    fn transparency_calls_need_a_subject_and_well_formed_parameters() {
        assert_eq!(
            ok(FIND_USAGE, "", "s"),
            MetaCall::FindUsage {
                offset: 0,
                limit: DEFAULT_PAGE
            }
        );
        assert_eq!(
            ok(FIND_USAGE, "offset=5&limit=100000", "s"),
            MetaCall::FindUsage {
                offset: 5,
                limit: MAX_PAGE
            }
        );
        assert_eq!(
            ok(FIND_USAGE, "limit=0", "s"),
            MetaCall::FindUsage {
                offset: 0,
                limit: 1
            }
        );
        assert_eq!(
            kind(FIND_USAGE, Method::GET, "", "", ""),
            MetaErrorKind::Request
        );
        assert_eq!(
            kind(FIND_USAGE, Method::GET, "", "offset=-1", "s"),
            MetaErrorKind::Request
        );
        assert_eq!(
            kind(FIND_USAGE, Method::GET, "", "limit=x", "s"),
            MetaErrorKind::Request
        );
        assert_eq!(
            ok(USAGE_EVIDENCE, "id=abc", "s"),
            MetaCall::UsageEvidence { id: "abc".into() }
        );
        assert_eq!(
            kind(USAGE_EVIDENCE, Method::GET, "", "id=", "s"),
            MetaErrorKind::Request
        );
        assert_eq!(
            kind(USAGE_EVIDENCE, Method::GET, "", "id=abc", ""),
            MetaErrorKind::Request
        );
    }

    #[test]
    fn each_side_reports_with_its_own_code() {
        let e = MetaError {
            kind: MetaErrorKind::ServiceCode,
            message: "m".into(),
        };
        assert_eq!(
            e.to_client_error().error_type(),
            "Client.InvalidServiceIdentifier"
        );
        assert_eq!(
            e.to_server_proxy_error().error_type(),
            "Server.ServerProxy.BadRequest"
        );
        let e = MetaError {
            kind: MetaErrorKind::Method,
            message: "m".into(),
        };
        assert_eq!(e.to_client_error().error_type(), "Client.InvalidHttpMethod");
    }
}
