#![allow(clippy::unwrap_used, clippy::expect_used)]
//! X-Road REST conformance, case by case: what an information system that already talks to
//! X-Road sends, and what it must get back, through two security servers (the ministry's client
//! proxy, Chiyoda's server proxy). The cases come from X-Road's own proxy tests
//! (`RestProxyTest`, cited by method name) and from the specifications, PR-REST (the X-Road
//! Message Protocol for REST) and PR-MREST / PR-META (the service metadata protocols), cited by
//! section. Where we answer differently on purpose, the case says so and `docs/errors.md` says
//! why.
//!
//! Every case runs, and a failure lists every case that differs.
//!
//! One file, because the cases are one table read top to bottom against the specifications.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use exchange::access::{Grant, Subject};
use http::Method;
use sandbox::{Federation, FederationSpec};
use security_server::serverconf::ServiceEntry;
use serde_json::{Value, json};

const PORTAL: &str = "JP/GOV/digital-agency/portal";
/// The ministry's member, which owns the ministry's server.
const MEMBER: &str = "JP/GOV/digital-agency";
const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const RECORDS: &str = "JP/MUN/131016/records";

/// The provider's system: `/echo...` describes the request it got (method, path, query,
/// headers, body length); `/redirect` answers 302; `/forge` sets X-Road headers of its own;
/// `/refuse` is an application error of its own (405 with a JSON body).
async fn backend() -> String {
    async fn echo(request: Request) -> impl IntoResponse {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let headers: BTreeMap<String, String> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        (
            [("cache-control", "max-age=5"), ("x-powered-by", "demo/1")],
            axum::Json(json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body_len": body.len(),
                "body": String::from_utf8_lossy(&body),
            })),
        )
    }
    let router = Router::new()
        .route("/echo", any(echo))
        .route("/echo/", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route(
            "/redirect",
            get(|| async { (http::StatusCode::FOUND, [("location", "/r1/elsewhere")]) }),
        )
        .route(
            "/forge",
            get(|| async {
                (
                    [
                        ("x-road-client", "JP/GOV/forged/x"),
                        ("x-road-id", "forged-id"),
                        ("x-road-error", "Server.ServerProxy.Forged"),
                    ],
                    "forged headers",
                )
            }),
        )
        .route(
            "/refuse",
            any(|| async {
                (
                    http::StatusCode::METHOD_NOT_ALLOWED,
                    [("content-type", "application/json;charset=utf-8")],
                    r#"{"status":405,"error":"Method Not Allowed"}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(runtime::serve_http(
        listener,
        None,
        router,
        std::future::pending(),
    ));
    url
}

/// The sandbox federation with, on Chiyoda's server, the services above granted to the portal
/// (`getOnly` for GET only) and `down` (nothing listening).
async fn setup() -> (tempfile::TempDir, Federation, String) {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let backend = backend().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let chiyoda = f.server(CHIYODA).unwrap().running().unwrap();
    for (code, url, method) in [
        ("echo", format!("{backend}/echo"), None),
        ("redirect", format!("{backend}/redirect"), None),
        ("forge", format!("{backend}/forge"), None),
        ("refuse", format!("{backend}/refuse"), None),
        ("getOnly", format!("{backend}/echo"), Some(Method::GET)),
        ("down", closed.clone(), None),
    ] {
        let service = format!("{RECORDS}/{code}");
        chiyoda
            .serverconf
            .add_service(ServiceEntry {
                id: service.parse().unwrap(),
                url,
                timeout_secs: 10,
                openapi: (code == "echo").then(|| {
                    "openapi: 3.0.0\nservers:\n  - url: http://10.9.8.7/api\npaths:\n  /items/{id}:\n    get: {}\n"
                        .to_owned()
                }),
                names: Default::default(),
            })
            .unwrap();
        chiyoda
            .serverconf
            .grant(Grant {
                service: service.parse().unwrap(),
                subject: Subject::Subsystem(PORTAL.parse().unwrap()),
                method,
                path: None,
            })
            .unwrap();
    }
    chiyoda
        .serverconf
        .grant(Grant {
            service: format!("{RECORDS}/echo").parse().unwrap(),
            subject: Subject::Member(MEMBER.parse().unwrap()),
            method: None,
            path: None,
        })
        .unwrap();
    (dir, f, backend.trim_start_matches("http://").to_owned())
}

/// What one case expects of the answer.
#[derive(Debug, Clone)]
enum Check {
    Status(u16),
    /// `X-Road-Error` and the body's `type` (JSON or XML) are this type.
    Error(&'static str),
    /// No `X-Road-Error`: the answer is the provider system's.
    NoError,
    Header(&'static str, &'static str),
    HeaderPresent(&'static str),
    NoHeader(&'static str),
    /// The header appears exactly this many times.
    HeaderCount(&'static str, usize),
    BodyContains(&'static str),
    BodyLacks(&'static str),
    /// The echoed request, at a JSON pointer, is this value.
    Echo(&'static str, Value),
    /// The echoed request has nothing at this JSON pointer.
    EchoLacks(&'static str),
}

struct Case {
    name: &'static str,
    source: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    checks: Vec<Check>,
}

fn case(name: &'static str, source: &'static str, path: impl Into<String>) -> Case {
    Case {
        name,
        source,
        method: "GET",
        path: path.into(),
        headers: vec![("X-Road-Client", PORTAL)],
        body: "",
        checks: Vec::new(),
    }
}

impl Case {
    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn no_client(mut self) -> Self {
        self.headers.retain(|(n, _)| *n != "X-Road-Client");
        self
    }
    fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }
    fn expect(mut self, checks: impl IntoIterator<Item = Check>) -> Self {
        self.checks.extend(checks);
        self
    }
}

fn svc(code_and_path: &str) -> String {
    format!("/r1/{RECORDS}/{code_and_path}")
}

fn cases(backend_host: &str) -> Vec<Case> {
    use Check::*;
    let ok = || [Status(200), NoError];
    let mut cases = vec![
        // --- RestProxyTest -------------------------------------------------------------
        case(
            "simple POST",
            "RestProxyTest.shouldHandleSimplePost",
            svc("echo"),
        )
        .method("POST")
        .header("Content-Type", "application/json")
        .body(r#"{"value" : 42}"#)
        .expect(ok())
        .expect([Echo("/body", json!(r#"{"value" : 42}"#))]),
        case(
            "X-Road-Id kept",
            "RestProxyTest.shouldKeepQueryId",
            svc("echo"),
        )
        .header("X-Road-Id", "8a1c3e0e-kept")
        .expect(ok())
        .expect([
            Header("x-road-id", "8a1c3e0e-kept"),
            Echo("/headers/x-road-id", json!("8a1c3e0e-kept")),
        ]),
        case(
            "Content-Length reaches the provider",
            "RestProxyTest.shouldHaveContentLengthHeader",
            svc("echo"),
        )
        .method("POST")
        .body(r#"{"value" : 42}"#)
        .expect(ok())
        .expect([Echo("/headers/content-length", json!("14"))]),
        case(
            "one Date header",
            "RestProxyTest.shouldHaveOnlyOneDateHeader",
            svc("echo"),
        )
        .method("POST")
        .body("{}")
        .expect(ok())
        .expect([HeaderCount("date", 1)]),
        case(
            "percent-encoded client identifier",
            "RestProxyTest.shouldAcceptPercentEncodedIdentifiers",
            svc("echo/path%3B/"),
        )
        .no_client()
        .header("X-Road-Client", "JP/GOV/digital%2Dagency/portal")
        .expect(ok())
        .expect([
            Echo("/path", json!("/echo/path%3B/")),
            Header("x-road-client", PORTAL),
        ]),
        case(
            "percent-encoded service identifier",
            "RestProxyTest.shouldAcceptPercentEncodedIdentifiers",
            "/r1/JP/MUN/131016/rec%6Frds/echo",
        )
        .expect(ok())
        .expect([Header("x-road-service", "JP/MUN/131016/records/echo")]),
        case(
            "empty path, with slash",
            "RestProxyTest.shouldAcceptEmptyPath",
            svc("echo/"),
        )
        .expect(ok())
        .expect([Echo("/path", json!("/echo/"))]),
        case("empty path", "PR-REST 4.2", svc("echo"))
            .expect(ok())
            .expect([Echo("/path", json!("/echo"))]),
        case(
            "302 not followed",
            "RestProxyTest.shouldNotFollow302Redirects",
            svc("redirect"),
        )
        .expect([Status(302), NoError, Header("location", "/r1/elsewhere")]),
        case(
            "PATCH not granted",
            "RestProxyTest.shouldNotAllowPATCH",
            svc("getOnly"),
        )
        .method("PATCH")
        .expect([Status(500), Error("Server.ServerProxy.AccessDenied")]),
        case(
            "GET granted",
            "RestProxyTest.shouldNotAllowPATCH",
            svc("getOnly"),
        )
        .expect(ok()),
        // Ours is 400, as PR-REST 4.6 says for a request that does not follow the protocol;
        // X-Road's implementation answers 500 (docs/errors.md).
        case(
            "no X-Road-Client",
            "RestProxyTest.shouldFailIfClientHeaderMissing; PR-REST 4.6 (400)",
            svc("echo"),
        )
        .no_client()
        .expect([Status(400), Error("Client.InvalidClientIdentifier")]),
        case(
            "malformed request URI",
            "RestProxyTest.shouldFailIfMalformedRequestURI; PR-REST 4.6 (400)",
            "/r1/invalid",
        )
        .expect([Status(400), Error("Client.BadRequest")]),
        // --- errors in the form Accept asks for ----------------------------------------
        case(
            "error JSON by default",
            "RestProxyTest.shouldRespectAcceptHeaderInErrorResponse",
            svc("down"),
        )
        .expect([
            Error("Server.ServerProxy.ServiceFailed"),
            Header("content-type", "application/json;charset=utf-8"),
        ]),
    ];
    for (accept, content_type) in [
        (
            "application/json;charset=utf-8",
            "application/json;charset=utf-8",
        ),
        ("foobarbaz", "application/json;charset=utf-8"),
        ("application/xml", "application/xml;charset=utf-8"),
        ("text/xml", "text/xml;charset=utf-8"),
        ("application/xml, text/xml", "application/xml;charset=utf-8"),
        ("text/xml, application/xml", "text/xml;charset=utf-8"),
        ("text/xml-patch+xml", "application/json;charset=utf-8"),
        ("application/xml; q=0.2", "application/xml;charset=utf-8"),
        (
            "text/xml, application/xml, application/json",
            "text/xml;charset=utf-8",
        ),
        ("text/*", "text/xml;charset=utf-8"),
    ] {
        cases.push(
            case(
                "error in the form Accept asks for",
                "RestProxyTest.shouldRespectAcceptHeaderInErrorResponse",
                svc("down"),
            )
            .header("Accept", accept)
            .expect([
                Status(500),
                Error("Server.ServerProxy.ServiceFailed"),
                Header("content-type", content_type),
            ]),
        );
    }
    cases.extend([
        // --- PR-REST 4.1 / 4.2: methods, paths and queries ------------------------------
        case(
            "PUT reaches the provider",
            "PR-REST 4.1",
            svc("echo/items/1"),
        )
        .method("PUT")
        .body("x")
        .expect(ok())
        .expect([
            Echo("/method", json!("PUT")),
            Echo("/path", json!("/echo/items/1")),
        ]),
        case(
            "DELETE reaches the provider",
            "PR-REST 4.1",
            svc("echo/items/1"),
        )
        .method("DELETE")
        .expect(ok())
        .expect([Echo("/method", json!("DELETE"))]),
        case("PATCH reaches the provider", "PR-REST 4.1", svc("echo"))
            .method("PATCH")
            .body("{}")
            .expect(ok())
            .expect([Echo("/method", json!("PATCH"))]),
        case("OPTIONS reaches the provider", "PR-REST 4.1", svc("echo"))
            .method("OPTIONS")
            .expect(ok())
            .expect([Echo("/method", json!("OPTIONS"))]),
        case("HEAD reaches the provider", "PR-REST 4.1", svc("echo"))
            .method("HEAD")
            .expect(ok()),
        case("a method X-Road does not know", "PR-REST 4.1", svc("echo"))
            .method("PROPFIND")
            .expect([Status(400), Error("Client.InvalidHttpMethod")]),
        case(
            "query passed unmodified",
            "PR-REST 4.5",
            svc("echo?b=2&a=1&a=3"),
        )
        .expect(ok())
        .expect([Echo("/query", json!("b=2&a=1&a=3"))]),
        case(
            "encoded query passed unmodified",
            "PR-REST 4.5",
            svc("echo?q=%E5%8D%83%20x+y&e=%26"),
        )
        .expect(ok())
        .expect([Echo("/query", json!("q=%E5%8D%83%20x+y&e=%26"))]),
        case(
            "encoded path passed unmodified",
            "PR-REST 4.2",
            svc("echo/a%2Fb/%E5%8D%83"),
        )
        .expect(ok())
        .expect([Echo("/path", json!("/echo/a%2Fb/%E5%8D%83"))]),
        case(
            "dot segment refused",
            "PR-REST 4.2 (SSRF)",
            svc("echo/../x"),
        )
        .expect([Status(400), Error("Client.BadRequest")]),
        case(
            "encoded dot segment refused",
            "PR-REST 4.2 (SSRF)",
            svc("echo/%2e%2e/x"),
        )
        .expect([Status(400), Error("Client.BadRequest")]),
        case(
            "unknown protocol version",
            "PR-REST 4.2",
            "/r2/JP/MUN/131016/records/echo",
        )
        .expect([Status(400), Error("Client.InvalidProtocolVersion")]),
        // --- PR-REST 4.3: headers -------------------------------------------------------
        case("user headers pass", "PR-REST 4.3", svc("echo"))
            .header("X-Custom", "kept")
            .header("Authorization", "Bearer abc.def.ghi")
            .expect(ok())
            .expect([
                Echo("/headers/x-custom", json!("kept")),
                Echo("/headers/authorization", json!("Bearer abc.def.ghi")),
            ]),
        case("cache headers pass", "PR-REST 4.3", svc("echo"))
            .header("Cache-Control", "no-cache, no-store")
            .header("Pragma", "no-cache")
            .expect(ok())
            .expect([
                Echo("/headers/cache-control", json!("no-cache, no-store")),
                Echo("/headers/pragma", json!("no-cache")),
                Header("cache-control", "max-age=5"),
            ]),
        case("content type and accept pass", "PR-REST 4.3", svc("echo"))
            .method("POST")
            .header("Content-Type", "application/xml;charset=utf-8")
            .header("Accept", "application/json")
            .body("<a/>")
            .expect(ok())
            .expect([
                Echo(
                    "/headers/content-type",
                    json!("application/xml;charset=utf-8"),
                ),
                Echo("/headers/accept", json!("application/json")),
            ]),
        case(
            "provider's own headers pass back",
            "PR-REST 4.3",
            svc("echo"),
        )
        .expect(ok())
        .expect([Header("x-powered-by", "demo/1")]),
        case("User-Agent dropped", "PR-REST 4.3 (filtered)", svc("echo"))
            .header("User-Agent", "agency-client/1.0")
            .expect(ok())
            .expect([EchoLacks("/headers/user-agent")]),
        case("Server dropped", "PR-REST 4.3 (filtered)", svc("echo"))
            .header("Server", "client-side")
            .expect(ok())
            .expect([EchoLacks("/headers/server")]),
        case(
            "hop-by-hop headers dropped",
            "PR-REST 4.3 (filtered)",
            svc("echo"),
        )
        .header("Connection", "keep-alive, x-hop")
        .header("X-Hop", "named by Connection")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic eA==")
        .header("TE", "trailers")
        .header("Upgrade", "h2c")
        .expect(ok())
        .expect([
            EchoLacks("/headers/x-hop"),
            EchoLacks("/headers/keep-alive"),
            EchoLacks("/headers/proxy-authorization"),
            EchoLacks("/headers/te"),
            EchoLacks("/headers/upgrade"),
        ]),
        case(
            "Host is the provider's",
            "PR-REST 4.3 (filtered)",
            svc("echo"),
        )
        .header("Host", "client-side.example")
        .expect(ok())
        .expect([Echo("/headers/host", json!(backend_host))]),
        case(
            "X-Road headers reach the provider",
            "PR-REST 4.3",
            svc("echo"),
        )
        .header("X-Road-UserId", "EE12345678901")
        .header("X-Road-Issue", "case 42")
        .header("X-Road-Represented-Party", "COM/0170121212121")
        .expect(ok())
        .expect([
            Echo("/headers/x-road-client", json!(PORTAL)),
            Echo("/headers/x-road-service", json!(format!("{RECORDS}/echo"))),
            Echo("/headers/x-road-userid", json!("EE12345678901")),
            Echo("/headers/x-road-issue", json!("case 42")),
            Echo(
                "/headers/x-road-represented-party",
                json!("COM/0170121212121"),
            ),
        ]),
        case("X-Road response headers", "PR-REST 4.3", svc("echo"))
            .expect(ok())
            .expect([
                Header("x-road-client", PORTAL),
                Header("x-road-service", "JP/MUN/131016/records/echo"),
                HeaderPresent("x-road-id"),
                HeaderPresent("x-road-request-id"),
                HeaderPresent("x-road-request-hash"),
                Header("x-road-security-server", CHIYODA),
                NoHeader("x-road-error"),
            ]),
        case(
            "provider's X-Road headers overwritten",
            "PR-REST 4.3",
            svc("forge"),
        )
        .header("X-Road-Id", "real-id")
        .expect(ok())
        .expect([
            Header("x-road-client", PORTAL),
            Header("x-road-id", "real-id"),
            NoHeader("x-road-error"),
        ]),
        case(
            "X-Road-Security-Server picks the server",
            "PR-REST 4.3",
            svc("echo"),
        )
        .header("X-Road-Security-Server", CHIYODA)
        .expect(ok())
        .expect([Header("x-road-security-server", CHIYODA)]),
        case(
            "X-Road-Security-Server not hosting it",
            "PR-REST 4.3",
            svc("echo"),
        )
        .header("X-Road-Security-Server", "JP/MUN/271004/ss1")
        .expect([Status(500), Error("Server.ClientProxy.UnknownService")]),
        case("X-Road-Id twice", "PR-REST 4.3", svc("echo"))
            .header("X-Road-Id", "a")
            .header("X-Road-Id", "b")
            .expect([Status(400), Error("Client.DuplicateHeaderField")]),
        // PR-REST lets a server take the last of two X-Road-Client headers; we refuse
        // (docs/errors.md, Client.DuplicateHeaderField).
        case("X-Road-Client twice", "PR-REST 4.3 (differs)", svc("echo"))
            .header("X-Road-Client", PORTAL)
            .expect([Status(400), Error("Client.DuplicateHeaderField")]),
        case("X-Road-Client of five parts", "PR-REST 4.3", svc("echo"))
            .no_client()
            .header("X-Road-Client", "JP/GOV/digital-agency/portal/extra")
            .expect([Status(400), Error("Client.InvalidClientIdentifier")]),
        // PR-REST 4.3: the subsystem part of X-Road-Client is optional. A member calls as
        // itself through a security server it owns, under grants to the member.
        case(
            "a member calls without a subsystem",
            "PR-REST 4.3",
            svc("echo"),
        )
        .no_client()
        .header("X-Road-Client", MEMBER)
        .expect(ok())
        .expect([
            Header("x-road-client", MEMBER),
            Echo("/headers/x-road-client", json!(MEMBER)),
        ]),
        case(
            "a member's grant is not its subsystem's",
            "PR-REST 4.3; PR-MREST access rights",
            svc("getOnly"),
        )
        .no_client()
        .header("X-Road-Client", MEMBER)
        .expect([Status(500), Error("Server.ServerProxy.AccessDenied")]),
        case(
            "a member that does not own this server",
            "PR-REST 4.3",
            svc("echo"),
        )
        .no_client()
        .header("X-Road-Client", "JP/MUN/131016")
        .expect([Status(500), Error("Server.ClientProxy.ClientNotHosted")]),
        case("X-Road-Id with a space", "PR-REST 4.3", svc("echo"))
            .header("X-Road-Id", "has space")
            .expect([Status(400), Error("Client.InvalidHeaderField")]),
        // --- PR-REST 4.6: error categories ----------------------------------------------
        case(
            "category 1: the provider's error passes as it is",
            "PR-REST 4.6 example 1",
            svc("refuse"),
        )
        .expect([
            Status(405),
            NoError,
            Header("content-type", "application/json;charset=utf-8"),
            BodyContains(r#""error":"Method Not Allowed""#),
        ]),
        case(
            "category 2: the provider's system is down",
            "PR-REST 4.6 example 2",
            svc("down"),
        )
        .expect([Status(500), Error("Server.ServerProxy.ServiceFailed")]),
        case(
            "category 3: not the protocol",
            "PR-REST 4.6 example 3",
            "/r1/JP/MUN",
        )
        .expect([Status(400), Error("Client.BadRequest")]),
        case("unknown service", "PR-REST 4.6", svc("noSuchService"))
            .expect([Status(500), Error("Server.ServerProxy.UnknownService")]),
        case("unknown member", "PR-REST 4.6", "/r1/JP/MUN/999999/x/echo")
            .expect([Status(500), Error("Server.ClientProxy.UnknownService")]),
        // --- PR-META / PR-MREST: metaservices -------------------------------------------
        case(
            "listClients: XML by default",
            "PR-META 2, C.1",
            "/listClients",
        )
        .no_client()
        .expect([
            Status(200),
            Header("content-type", "text/xml;charset=utf-8"),
            BodyContains("<ns2:clientList"),
            BodyContains("<ns1:subsystemCode>records</ns1:subsystemCode>"),
        ]),
        case("listClients: XML for text/xml", "PR-META 2", "/listClients")
            .no_client()
            .header("Accept", "text/xml")
            .expect([
                Status(200),
                Header("content-type", "text/xml;charset=utf-8"),
            ]),
        case("listClients: JSON", "PR-META 2, C.1", "/listClients")
            .no_client()
            .header("Accept", "application/json")
            .expect([
                Status(200),
                Header("content-type", "application/json;charset=utf-8"),
                BodyContains(r#""object_type":"SUBSYSTEM""#),
                BodyContains(r#""subsystem_name":"#),
            ]),
        case(
            "listClients of this instance",
            "PR-META 2",
            "/listClients?xRoadInstance=JP",
        )
        .no_client()
        .header("Accept", "application/json")
        .expect([Status(200), BodyContains(r#""member_code":"131016""#)]),
        case(
            "listClients of another instance",
            "PR-META 2",
            "/listClients?xRoadInstance=EE",
        )
        .no_client()
        .expect([Status(200), BodyLacks("<ns2:member>")]),
        case("listMethods", "PR-MREST 4, B.1", svc("listMethods"))
            .expect(ok())
            .expect([
                BodyContains(r#""service_type":"OPENAPI""#),
                BodyContains(r#""endpoint_list":[{"method":"GET","path":"/items/*"}]"#),
                BodyContains(r#""service_type":"REST""#),
                BodyLacks("listMethods"),
            ]),
        case("allowedMethods", "PR-MREST 4, B.2", svc("allowedMethods"))
            .expect(ok())
            .expect([
                BodyContains(r#""service_code":"getOnly""#),
                BodyContains(r#"{"method":"GET","path":"**"}"#),
            ]),
        case(
            "getOpenAPI",
            "PR-MREST 5, B.3",
            svc("getOpenAPI?serviceCode=echo"),
        )
        .expect(ok())
        .expect([
            Header("content-type", "application/yaml"),
            BodyContains("/items/{id}"),
            BodyContains("url: /api"),
            BodyLacks("10.9.8.7"),
        ]),
        case(
            "getOpenAPI without serviceCode",
            "PR-MREST 5",
            svc("getOpenAPI"),
        )
        .expect([Status(400), Error("Client.BadRequest")]),
        case(
            "getOpenAPI without serviceCode, XML error",
            "PR-MREST 5; PR-REST 4.6",
            svc("getOpenAPI"),
        )
        .header("Accept", "application/xml")
        .expect([
            Status(400),
            Error("Client.BadRequest"),
            Header("content-type", "application/xml;charset=utf-8"),
        ]),
        case(
            "getOpenAPI of a service without one",
            "PR-MREST 5",
            svc("getOpenAPI?serviceCode=redirect"),
        )
        .expect([Status(500), Error("Server.ServerProxy.UnknownService")]),
        case(
            "a metaservice takes only GET",
            "PR-MREST 4",
            svc("listMethods"),
        )
        .method("POST")
        .expect([Status(400), Error("Client.InvalidHttpMethod")]),
    ]);
    cases
}

/// The type an error body names, JSON or XML.
fn body_type(body: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v["type"].as_str().map(str::to_owned);
    }
    let start = body.find("<type>")? + "<type>".len();
    let end = body[start..].find("</type>")? + start;
    Some(body[start..end].to_owned())
}

/// What differs from `checks` in `r`, one line each.
fn differences(r: &runtime::Response, checks: &[Check]) -> Vec<String> {
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok());
    let echo: Option<Value> = serde_json::from_str(&body).ok();
    let mut out = Vec::new();
    for check in checks {
        let wrong = match check {
            Check::Status(s) => {
                (r.status.as_u16() != *s).then(|| format!("status {}, not {s}", r.status))
            }
            Check::Error(t) => {
                let in_header = header("x-road-error");
                let in_body = body_type(&body);
                (in_header != Some(t) || in_body.as_deref() != Some(t))
                    .then(|| format!("X-Road-Error {in_header:?}, body type {in_body:?}, not {t}"))
            }
            Check::NoError => header("x-road-error").map(|e| format!("X-Road-Error {e}")),
            Check::Header(n, v) => {
                (header(n) != Some(v)).then(|| format!("{n}: {:?}, not {v:?}", header(n)))
            }
            Check::HeaderPresent(n) => header(n).is_none().then(|| format!("no {n}")),
            Check::NoHeader(n) => header(n).map(|v| format!("{n}: {v:?} present")),
            Check::HeaderCount(n, c) => {
                let count = r.headers.get_all(*n).iter().count();
                (count != *c).then(|| format!("{count} {n} headers, not {c}"))
            }
            Check::BodyContains(s) => (!body.contains(s)).then(|| format!("body lacks {s:?}")),
            Check::BodyLacks(s) => body.contains(s).then(|| format!("body has {s:?}")),
            Check::Echo(pointer, v) => {
                let got = echo.as_ref().and_then(|e| e.pointer(pointer));
                (got != Some(v)).then(|| format!("echoed {pointer}: {got:?}, not {v}"))
            }
            Check::EchoLacks(pointer) => echo
                .as_ref()
                .and_then(|e| e.pointer(pointer))
                .map(|g| format!("echoed {pointer}: {g} present")),
        };
        out.extend(wrong);
    }
    out
}

#[tokio::test]
async fn an_x_road_rest_client_sees_what_x_road_specifies() {
    let (_dir, f, backend_host) = setup().await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let http = runtime::HttpClient::plain();
    let cases = cases(&backend_host);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failed = Vec::new();
    for c in &cases {
        let headers: Vec<(&str, &str)> = c.headers.clone();
        let r = http
            .request(
                Method::from_bytes(c.method.as_bytes()).unwrap(),
                &format!("{proxy}{}", c.path),
                &headers,
                bytes::Bytes::from_static(c.body.as_bytes()),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let wrong = differences(&r, &c.checks);
        if !wrong.is_empty() {
            failed.push(format!(
                "{} ({}, {} {}): {}",
                c.name,
                c.source,
                c.method,
                c.path,
                wrong.join("; ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases differ:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    f.stop().await;
}

/// `RestProxyTest.requestHashShouldBeUnique`: one X-Road-Id twice is two requests, each with
/// its own request hash and request id.
#[tokio::test]
async fn one_x_road_id_twice_is_two_requests() {
    let (_dir, f, _) = setup().await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let http = runtime::HttpClient::plain();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = http
            .request(
                Method::POST,
                &format!("{proxy}{}", svc("echo")),
                &[("X-Road-Client", PORTAL), ("X-Road-Id", "queryid")],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 200);
        seen.push((
            r.headers["x-road-request-hash"].clone(),
            r.headers["x-road-request-id"].clone(),
        ));
    }
    assert_ne!(seen[0].0, seen[1].0);
    assert_ne!(seen[0].1, seen[1].1);
    f.stop().await;
}
