#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 3, end to end: a real HTTP client, through two security servers, to a real HTTP backend
//! and back; every error class; tampering, forgery, replay and unknown peers; failover; 10 MiB.
//! One file, because every case shares one federation set-up, its backend and the raw peer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use base64::Engine as _;
use exchange::access::{Grant, Subject};
use http::Method;
use integration_tests::{RawPeer, eventually};
use prost::Message as _;
use proto::v1 as pb;
use sandbox::{Federation, FederationSpec, ServerSpec};
use security_server::serverconf::ServiceEntry;
use sha2::{Digest, Sha256};

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const WELFARE: &str = "JP/MUN/271004/welfare";
const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const CHIYODA2: &str = "JP/MUN/131016/ss2";
const OSAKA: &str = "JP/MUN/271004/ss1";
const RECORDS: &str = "JP/MUN/131016/records";

/// A provider information system: `/echo/...` describes the request it got; `/raw` returns the
/// body; `/slow` answers after 3 s; `/teapot` is an application error of its own.
async fn backend() -> String {
    async fn echo(request: Request) -> impl IntoResponse {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let headers: BTreeMap<String, String> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        (
            [("x-backend", "records"), ("cache-control", "max-age=5")],
            axum::Json(serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body_len": body.len(),
                "body_sha256": hex::encode(Sha256::digest(&body)),
            })),
        )
    }
    let router = Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/raw", any(|body: Bytes| async move { body }))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/teapot",
            get(|| async {
                (
                    http::StatusCode::IM_A_TEAPOT,
                    [("content-type", "text/plain")],
                    "short and stout",
                )
            }),
        );
    serve_on_loopback(router).await
}

/// Serves `router` over plain HTTP on `127.0.0.1:0` for the rest of the test; its URL.
async fn serve_on_loopback(router: Router) -> String {
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

/// The OpenAPI description every test service is registered with: YAML, naming the provider's
/// internal host, which `getOpenAPI` must not pass on.
const OPENAPI: &str = "\
openapi: 3.0.0
info:
  title: records
  version: '1'
servers:
  - url: http://10.1.2.3:8080/records
paths:
  /residents/{id}:
    get:
      summary: one resident
    delete:
      summary: remove one
  /residents:
    get:
      summary: search
";

fn register(f: &Federation, server: &str, service: &str, url: String, timeout_secs: u64) {
    let s = f.server(server).unwrap().running().unwrap();
    s.serverconf
        .add_service(ServiceEntry {
            id: service.parse().unwrap(),
            url,
            timeout_secs,
            openapi: Some(OPENAPI.into()),
            names: Default::default(),
        })
        .unwrap();
}

fn grant(f: &Federation, server: &str, service: &str, client: &str) {
    let s = f.server(server).unwrap().running().unwrap();
    s.serverconf
        .grant(Grant {
            service: service.parse().unwrap(),
            subject: Subject::Subsystem(client.parse().unwrap()),
            method: None,
            path: None,
        })
        .unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    f: Federation,
    backend: String,
}

/// The sandbox federation plus, on Chiyoda's server, `residentRecord` (→ /echo) granted to the
/// portal, `raw` (→ /raw), `slow` (1 s timeout), `teapot` and `down` (nothing listening).
async fn setup(mut spec: FederationSpec, provider_servers: &[&str]) -> Setup {
    // These tests count exchanges: none but their own.
    spec.samples.clear();
    let (dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let backend = backend().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for server in provider_servers {
        for (code, url, timeout) in [
            ("residentRecord", format!("{backend}/echo"), 10),
            ("raw", format!("{backend}/raw"), 10),
            ("slow", format!("{backend}/slow"), 1),
            ("teapot", format!("{backend}/teapot"), 10),
            ("down", closed.clone(), 10),
        ] {
            let service = format!("{RECORDS}/{code}");
            register(&f, server, &service, url, timeout);
            grant(&f, server, &service, PORTAL);
        }
    }
    Setup {
        _dir: dir,
        f,
        backend,
    }
}

async fn call(
    f: &Federation,
    via: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> runtime::Response {
    let url = format!(
        "{}{path}",
        f.server(via).unwrap().client_proxy_url().unwrap()
    );
    runtime::HttpClient::plain()
        .with_timeout(Duration::from_secs(30))
        .request(method, &url, headers, body.into())
        .await
        .unwrap()
}

fn error_type(r: &runtime::Response) -> String {
    let header = r
        .headers
        .get("x-road-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if !header.is_empty() {
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["type"], header, "the JSON body and X-Road-Error agree");
    }
    header
}

#[tokio::test]
async fn get_and_post_through_two_security_servers() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let r = call(
        &s.f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/residentRecord/residents/131016000001?year=2025",
        &[
            ("X-Road-Client", PORTAL),
            ("X-Road-Id", "test-get-1"),
            ("X-Road-UserId", "JP1234567"),
            ("X-Road-Data-Subject", "131016000001"),
            ("X-Road-Purpose", "児童手当の認定"),
            ("Accept", "application/json"),
            ("X-Custom", "kept"),
            ("User-Agent", "dropped/1.0"),
            ("Connection", "keep-alive, x-hop"),
            ("X-Hop", "dropped"),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let echo: serde_json::Value = r.json().unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/echo/residents/131016000001");
    assert_eq!(echo["query"], "year=2025");
    let h = &echo["headers"];
    assert_eq!(h["x-road-client"], PORTAL);
    assert_eq!(h["x-road-service"], "JP/MUN/131016/records/residentRecord");
    assert_eq!(h["x-road-id"], "test-get-1");
    assert_eq!(h["x-road-userid"], "JP1234567");
    assert_eq!(h["x-road-data-subject"], "131016000001");
    assert_eq!(h["x-road-purpose"], "児童手当の認定");
    assert_eq!(h["accept"], "application/json");
    assert_eq!(h["x-custom"], "kept");
    assert!(h.get("user-agent").is_none(), "User-Agent is dropped: {h}");
    assert!(
        h.get("x-hop").is_none(),
        "headers named by Connection are dropped: {h}"
    );
    assert_eq!(h["host"], s.backend.trim_start_matches("http://"));

    let rh = &r.headers;
    assert_eq!(rh["x-road-client"], PORTAL);
    assert_eq!(rh["x-road-service"], "JP/MUN/131016/records/residentRecord");
    assert_eq!(rh["x-road-id"], "test-get-1");
    assert_eq!(rh["x-road-security-server"], CHIYODA);
    // The provider's system sees the X-Road-Request-Id the client gets back.
    assert!(!rh["x-road-request-id"].is_empty());
    assert_eq!(
        h["x-road-request-id"],
        rh["x-road-request-id"].to_str().unwrap()
    );
    assert_eq!(rh["x-backend"], "records");
    assert_eq!(rh["cache-control"], "max-age=5");
    let hash = base64::engine::general_purpose::STANDARD
        .decode(rh["x-road-request-hash"].as_bytes())
        .unwrap();
    assert_eq!(hash.len(), 64, "SHA-512 of the signed request");

    // POST with a body; a second call has its own id and request hash.
    let body: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let r2 = call(
        &s.f,
        MINISTRY,
        Method::POST,
        "/r1/JP/MUN/131016/records/residentRecord/residents",
        &[
            ("X-Road-Client", PORTAL),
            ("Content-Type", "application/octet-stream"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r2.status.as_u16(), 200, "{}", r2.text());
    let echo: serde_json::Value = r2.json().unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 1024);
    assert_eq!(echo["body_sha256"], hex::encode(Sha256::digest(&body)));
    assert_eq!(echo["headers"]["content-type"], "application/octet-stream");
    let generated_id = r2.headers["x-road-id"].to_str().unwrap();
    assert_eq!(
        generated_id.len(),
        36,
        "a UUID was generated: {generated_id}"
    );
    assert_eq!(echo["headers"]["x-road-id"], generated_id);
    assert_ne!(r2.headers["x-road-request-hash"], rh["x-road-request-hash"]);

    // A provider IS's own error passes through as it is.
    let r3 = call(
        &s.f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/teapot",
        &[("X-Road-Client", PORTAL)],
        vec![],
    )
    .await;
    assert_eq!(r3.status.as_u16(), 418);
    assert_eq!(r3.text(), "short and stout");
    assert!(r3.headers.get("x-road-error").is_none());

    // Both ends counted the exchanges.
    for (server, proxy) in [(MINISTRY, "client_proxy"), (CHIYODA, "server_proxy")] {
        let (_, _, metrics) = health_and_metrics(&s.f, server).await;
        let line = format!("xroad_exchanges_total{{proxy=\"{proxy}\",outcome=\"ok\"}} 3");
        assert!(
            metrics.contains(&line),
            "{server}: {line} not in\n{metrics}"
        );
    }
    s.f.stop().await;
}

/// Calls `path` from the ministry until it is answered 200 (a log reopens within seconds once
/// its disk has space again).
async fn serves_again(f: &Federation, path: &str, portal: &[(&str, &str)]) -> runtime::Response {
    eventually("exchanges are served again", || async {
        let r = call(f, MINISTRY, Method::GET, path, portal, vec![]).await;
        (r.status.as_u16() == 200).then_some(r)
    })
    .await
}

/// `/health` (status and JSON) and `/metrics` of a server's admin API.
async fn health_and_metrics(f: &Federation, server: &str) -> (u16, serde_json::Value, String) {
    let admin = f.server(server).unwrap().running().unwrap().admin_addr;
    let http = runtime::HttpClient::plain();
    let health = http
        .get(&format!("http://{admin}/health"), None)
        .await
        .unwrap();
    let metrics = http
        .get(&format!("http://{admin}/metrics"), None)
        .await
        .unwrap()
        .text();
    (health.status.as_u16(), health.json().unwrap(), metrics)
}

/// A server whose disk fills up under its message log refuses exchanges with `LoggingFailed`
/// (once the log has failed, the provider's before calling its system and the client's before
/// sending anything), says so on `/health` (for load balancers) and `/metrics` (for alerts),
/// and serves again by itself once space returns, with every acknowledged exchange logged.
#[tokio::test]
async fn a_server_whose_disk_fills_refuses_exchanges_reports_it_and_recovers() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        Router::new().route(
            "/counted",
            get(move || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "counted" }
            }),
        )
    };
    let url = format!("{}/counted", serve_on_loopback(counted).await);
    let service = format!("{RECORDS}/counted");
    register(&s.f, CHIYODA, &service, url, 10);
    grant(&s.f, CHIYODA, &service, PORTAL);
    let path = format!("/r1/{service}");
    let portal = [("X-Road-Client", PORTAL)];
    let called = || calls.load(std::sync::atomic::Ordering::SeqCst);

    let r = call(&s.f, MINISTRY, Method::GET, &path, &portal, vec![]).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(called(), 1);
    for server in [MINISTRY, CHIYODA] {
        let (status, _, metrics) = health_and_metrics(&s.f, server).await;
        assert_eq!(status, 200, "{server}");
        assert!(metrics.contains("xroad_messagelog_failed 0"), "{metrics}");
    }

    let first_id = r.headers["x-road-id"].to_str().unwrap().to_owned();

    // The provider's disk fills up. The first exchange may reach its system before the failed
    // commit is seen (its request record was queued, not yet synced), and fails; from then on
    // the system is not called while the log cannot be written.
    let chiyoda = s.f.server(CHIYODA).unwrap().running().unwrap().log.clone();
    chiyoda.simulate_disk_full(true);
    for _ in 0..3 {
        let r = call(&s.f, MINISTRY, Method::GET, &path, &portal, vec![]).await;
        assert_eq!(
            error_type(&r),
            "Server.ServerProxy.LoggingFailed",
            "{}",
            r.text()
        );
    }
    assert!(
        called() <= 2,
        "the provider's system was called without a log"
    );
    let refused_from = called();
    let r = call(&s.f, MINISTRY, Method::GET, &path, &portal, vec![]).await;
    assert_eq!(error_type(&r), "Server.ServerProxy.LoggingFailed");
    assert_eq!(
        called(),
        refused_from,
        "the provider's system was called without a log"
    );
    let (status, health, metrics) = health_and_metrics(&s.f, CHIYODA).await;
    assert_eq!(status, 503, "{health}");
    let reason = health["reason"].as_str().unwrap();
    assert!(
        reason.contains("message log") && reason.contains("No space left on device"),
        "{reason}"
    );
    assert!(metrics.contains("xroad_messagelog_failed 1"), "{metrics}");
    let (status, _, _) = health_and_metrics(&s.f, MINISTRY).await;
    assert_eq!(status, 200);

    // Space returns: the log opens itself again, and the server serves.
    chiyoda.simulate_disk_full(false);
    let again = serves_again(&s.f, &path, &portal).await;
    let (status, _, metrics) = health_and_metrics(&s.f, CHIYODA).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("xroad_messagelog_failed 0"), "{metrics}");

    // The client's disk fills up: once its log has failed, its server refuses before sending
    // anything.
    let ministry = s.f.server(MINISTRY).unwrap().running().unwrap().log.clone();
    ministry.simulate_disk_full(true);
    for _ in 0..3 {
        let r = call(&s.f, MINISTRY, Method::GET, &path, &portal, vec![]).await;
        assert_eq!(
            error_type(&r),
            "Server.ClientProxy.LoggingFailed",
            "{}",
            r.text()
        );
    }
    let before = called();
    let r = call(&s.f, MINISTRY, Method::GET, &path, &portal, vec![]).await;
    assert_eq!(error_type(&r), "Server.ClientProxy.LoggingFailed");
    assert_eq!(called(), before, "sent on without a log");
    let (status, _, metrics) = health_and_metrics(&s.f, MINISTRY).await;
    assert_eq!(status, 503);
    assert!(metrics.contains("xroad_messagelog_failed 1"), "{metrics}");
    ministry.simulate_disk_full(false);
    let last = serves_again(&s.f, &path, &portal).await;

    // Nothing acknowledged was lost: each answered exchange has its request and response
    // records at both ends.
    let again_id = again.headers["x-road-id"].to_str().unwrap().to_owned();
    let last_id = last.headers["x-road-id"].to_str().unwrap().to_owned();
    for log in [&chiyoda, &ministry] {
        for id in [&first_id, &again_id, &last_id] {
            let (log, key) = (log.clone(), id.clone());
            let records = tokio::task::spawn_blocking(move || log.find_by_message_id(&key))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(records.len(), 2, "{id}");
        }
    }
    s.f.stop().await;
}

#[tokio::test]
async fn each_error_class_has_its_x_road_type() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let f = &s.f;
    let get = |via: &'static str, path: &'static str, client: Option<&'static str>| async move {
        let headers: Vec<(&str, &str)> = client
            .map(|c| vec![("X-Road-Client", c)])
            .unwrap_or_default();
        call(f, via, Method::GET, path, &headers, vec![]).await
    };
    let cases: Vec<(runtime::Response, &str, u16)> = vec![
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/records/residentRecord",
                Some("JP/GOV/nobody/x"),
            )
            .await,
            "Server.ClientProxy.UnknownMember",
            500,
        ),
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/records/residentRecord",
                Some(WELFARE),
            )
            .await,
            "Server.ClientProxy.ClientNotHosted",
            500,
        ),
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/records/noSuchService",
                Some(PORTAL),
            )
            .await,
            "Server.ServerProxy.UnknownService",
            500,
        ),
        (
            get(MINISTRY, "/r1/JP/MUN/999999/x/residentRecord", Some(PORTAL)).await,
            "Server.ClientProxy.UnknownService",
            500,
        ),
        (
            get(
                OSAKA,
                "/r1/JP/MUN/131016/records/residentRecord",
                Some(WELFARE),
            )
            .await,
            "Server.ServerProxy.AccessDenied",
            500,
        ),
        (
            get(MINISTRY, "/r1/JP/MUN/131016/records/down", Some(PORTAL)).await,
            "Server.ServerProxy.ServiceFailed",
            500,
        ),
        (
            get(MINISTRY, "/r1/JP/MUN/131016/records/slow", Some(PORTAL)).await,
            "Server.ServerProxy.ServiceTimeout",
            500,
        ),
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/rec%20ords/residentRecord",
                Some(PORTAL),
            )
            .await,
            "Client.InvalidServiceIdentifier",
            400,
        ),
        (
            get(MINISTRY, "/r1/JP/MUN/131016/records/residentRecord", None).await,
            "Client.InvalidClientIdentifier",
            400,
        ),
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/records/residentRecord",
                Some("JP/GOV/digital agency/portal"),
            )
            .await,
            "Client.InvalidClientIdentifier",
            400,
        ),
        (
            get(
                MINISTRY,
                "/r2/JP/MUN/131016/records/residentRecord",
                Some(PORTAL),
            )
            .await,
            "Client.InvalidProtocolVersion",
            400,
        ),
        (
            get(
                MINISTRY,
                "/r1/JP/MUN/131016/records/residentRecord/../x",
                Some(PORTAL),
            )
            .await,
            "Client.BadRequest",
            400,
        ),
    ];
    for (i, (r, expected, status)) in cases.iter().enumerate() {
        assert_eq!(&error_type(r), expected, "case {i}: {}", r.text());
        assert_eq!(r.status.as_u16(), *status, "case {i}");
    }
    let r = call(
        f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/residentRecord",
        &[
            ("X-Road-Client", PORTAL),
            ("X-Road-Id", "bad id with spaces"),
        ],
        vec![],
    )
    .await;
    assert_eq!(error_type(&r), "Client.InvalidHeaderField");
    s.f.stop().await;
}

/// PR-REST §4.6: an error answers in the form `Accept` asks for (X-Road's
/// `shouldRespectAcceptHeaderInErrorResponse`), JSON by default, with its `Content-Type`; from
/// the client's server (a bad request) and from the provider's (access denied) alike.
#[tokio::test]
async fn errors_answer_in_the_form_accept_asks_for() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let cases = [
        (None, "application/json;charset=utf-8"),
        (Some("foobarbaz"), "application/json;charset=utf-8"),
        (Some("application/xml"), "application/xml;charset=utf-8"),
        (
            Some("text/xml, application/xml, application/json"),
            "text/xml;charset=utf-8",
        ),
        (Some("text/*"), "text/xml;charset=utf-8"),
    ];
    for (path, client, expected) in [
        (
            "/r1/JP/MUN/131016/rec%20ords/residentRecord",
            PORTAL,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "/r1/JP/MUN/131016/records/residentRecord",
            WELFARE,
            "Server.ServerProxy.AccessDenied",
        ),
    ] {
        let via = if client == WELFARE { OSAKA } else { MINISTRY };
        for (accept, content_type) in cases {
            let mut headers = vec![("X-Road-Client", client), ("X-Road-Id", "accept-1")];
            headers.extend(accept.map(|a| ("Accept", a)));
            let r = call(&s.f, via, Method::GET, path, &headers, vec![]).await;
            assert_eq!(r.headers["x-road-error"], expected, "{accept:?}");
            assert_eq!(r.headers["content-type"], content_type, "{accept:?}");
            let text = r.text();
            if content_type.starts_with("application/json") {
                let body: serde_json::Value = r.json().unwrap();
                assert_eq!(body["type"], expected);
                assert_eq!(body["detail"], "accept-1");
            } else {
                assert!(
                    text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                        && text.contains(&format!("<error><type>{expected}</type><message>"))
                        && text.contains("<detail>accept-1</detail></error>"),
                    "{text}"
                );
            }
        }
    }
    s.f.stop().await;
}

#[tokio::test]
async fn metaservices_list_clients_methods_and_openapi() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let f = &s.f;
    // PR-META: the XML clientList unless JSON is asked for.
    let r = call(f, MINISTRY, Method::GET, "/listClients", &[], vec![]).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.headers["content-type"], "text/xml;charset=utf-8");
    let xml = r.text();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>")
            && xml.contains("<ns2:clientList xmlns:ns1=\"http://x-road.eu/xsd/identifiers\"")
            && xml.contains(
                "<ns2:member><ns2:id ns1:objectType=\"SUBSYSTEM\"><ns1:xRoadInstance>JP\
                 </ns1:xRoadInstance><ns1:memberClass>MUN</ns1:memberClass><ns1:memberCode>\
                 131016</ns1:memberCode><ns1:subsystemCode>records</ns1:subsystemCode></ns2:id>\
                 <ns2:name>"
            )
            && !xml.contains("security_servers"),
        "{xml}"
    );
    let r = call(
        f,
        MINISTRY,
        Method::GET,
        "/listClients",
        &[("Accept", "application/json")],
        vec![],
    )
    .await;
    assert_eq!(r.headers["content-type"], "application/json;charset=utf-8");
    let v: serde_json::Value = r.json().unwrap();
    let member_name = v["member"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"]["object_type"] == "MEMBER" && m["id"]["member_code"] == "131016")
        .unwrap()["name"]
        .clone();
    let records = v["member"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"]["subsystem_code"] == "records")
        .unwrap_or_else(|| panic!("records not in {v}"));
    // A subsystem's `name` is its member's; its own is `subsystem_name`.
    assert_eq!(records["name"], member_name);
    assert!(records["subsystem_name"].is_string(), "{records}");
    // Our extension: the servers hosting the subsystem.
    assert_eq!(
        records["security_servers"],
        serde_json::json!([{"object_type": "SERVER", "xroad_instance": "JP",
            "member_class": "MUN", "member_code": "131016", "server_code": "ss1"}]),
        "{records}"
    );

    let r = call(
        f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/listMethods",
        &[("X-Road-Client", PORTAL)],
        vec![],
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let v: serde_json::Value = r.json().unwrap();
    let codes: Vec<&str> = v["service"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"residentRecord") && codes.contains(&"raw"),
        "{codes:?}"
    );
    // A service with an OpenAPI description is OPENAPI and lists its operations.
    let resident = v["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_code"] == "residentRecord")
        .unwrap();
    assert_eq!(resident["service_type"], "OPENAPI", "{resident}");
    assert_eq!(
        resident["endpoint_list"],
        serde_json::json!([
            {"method": "GET", "path": "/residents/*"},
            {"method": "DELETE", "path": "/residents/*"},
            {"method": "GET", "path": "/residents"},
        ])
    );

    // Welfare is not granted residentRecord: it is not among its allowed methods, and it gets
    // no OpenAPI document for it; the portal is granted it.
    let allowed = |r: runtime::Response| -> Vec<String> {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        let v: serde_json::Value = r.json().unwrap();
        v["service"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["service_code"].as_str().unwrap().to_owned())
            .collect()
    };
    let welfare = allowed(
        call(
            f,
            OSAKA,
            Method::GET,
            "/r1/JP/MUN/131016/records/allowedMethods",
            &[("X-Road-Client", WELFARE)],
            vec![],
        )
        .await,
    );
    assert!(
        !welfare.contains(&"residentRecord".to_owned()),
        "{welfare:?}"
    );
    let portal = allowed(
        call(
            f,
            MINISTRY,
            Method::GET,
            "/r1/JP/MUN/131016/records/allowedMethods",
            &[("X-Road-Client", PORTAL)],
            vec![],
        )
        .await,
    );
    assert!(portal.contains(&"residentRecord".to_owned()), "{portal:?}");

    let r = call(
        f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/getOpenAPI?serviceCode=residentRecord",
        &[("X-Road-Client", PORTAL)],
        vec![],
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // Served as it came (YAML), its server URL cut to the path: no internal host.
    assert_eq!(r.headers["content-type"], "application/yaml");
    let served = r.text();
    assert!(
        !served.contains("10.1.2.3") && served.contains("url: /records"),
        "{served}"
    );
    assert!(served.contains("/residents/{id}"), "{served}");
    let r = call(
        f,
        OSAKA,
        Method::GET,
        "/r1/JP/MUN/131016/records/getOpenAPI?serviceCode=residentRecord",
        &[("X-Road-Client", WELFARE)],
        vec![],
    )
    .await;
    assert_eq!(error_type(&r), "Server.ServerProxy.AccessDenied");
    s.f.stop().await;
}

#[tokio::test]
async fn grants_by_group_method_and_path_apply_without_restart() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let f = &s.f;
    let path = "/r1/JP/MUN/131016/records/residentRecord/residents/1";
    let welfare = [("X-Road-Client", WELFARE)];
    assert_eq!(
        error_type(&call(f, OSAKA, Method::GET, path, &welfare, vec![]).await),
        "Server.ServerProxy.AccessDenied"
    );

    // A global group that contains the welfare office, granted GET on /residents/* only.
    f.registry()
        .add_group("JP/municipal-welfare".parse().unwrap(), "Welfare offices")
        .await
        .unwrap();
    f.registry()
        .add_group_member(
            "JP/municipal-welfare".parse().unwrap(),
            WELFARE.parse().unwrap(),
        )
        .await
        .unwrap();
    for id in [CHIYODA, OSAKA] {
        f.server(id)
            .unwrap()
            .running()
            .unwrap()
            .conf
            .refresh()
            .await
            .unwrap();
    }
    let chiyoda = f.server(CHIYODA).unwrap().running().unwrap();
    let g = Grant {
        service: format!("{RECORDS}/residentRecord").parse().unwrap(),
        subject: Subject::Group("JP/municipal-welfare".parse().unwrap()),
        method: Some(Method::GET),
        path: Some("/residents/*".into()),
    };
    chiyoda.serverconf.grant(g.clone()).unwrap();
    assert_eq!(
        call(f, OSAKA, Method::GET, path, &welfare, vec![])
            .await
            .status
            .as_u16(),
        200
    );
    // allowedMethods lists the operations of the description the grant covers in full.
    let r = call(
        f,
        OSAKA,
        Method::GET,
        "/r1/JP/MUN/131016/records/allowedMethods",
        &welfare,
        vec![],
    )
    .await;
    let v: serde_json::Value = r.json().unwrap();
    let resident = v["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_code"] == "residentRecord")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        resident["endpoint_list"],
        serde_json::json!([{"method": "GET", "path": "/residents/*"}]),
        "{resident}"
    );
    let post = call(f, OSAKA, Method::POST, path, &welfare, b"x".to_vec()).await;
    assert_eq!(error_type(&post), "Server.ServerProxy.AccessDenied");
    let deeper = call(
        f,
        OSAKA,
        Method::GET,
        "/r1/JP/MUN/131016/records/residentRecord/residents/1/tax",
        &welfare,
        vec![],
    )
    .await;
    assert_eq!(error_type(&deeper), "Server.ServerProxy.AccessDenied");
    chiyoda.serverconf.revoke(&g).unwrap();
    assert_eq!(
        error_type(&call(f, OSAKA, Method::GET, path, &welfare, vec![]).await),
        "Server.ServerProxy.AccessDenied"
    );
    s.f.stop().await;
}

/// A body larger than the servers keep in memory goes through both servers' spools: it
/// arrives unchanged both ways, the message logs keep its hash (which the signature covers) and
/// not the body, the evidence still verifies, and one larger than `max_body_bytes` is refused.
#[tokio::test]
async fn a_body_larger_than_memory_is_spooled_both_ways_logged_by_hash_and_a_too_large_one_refused()
{
    let mut s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    const MAX: u64 = 12 << 20;
    for server in [MINISTRY, CHIYODA] {
        let exchange = &mut s.f.server_mut(server).unwrap().config.exchange;
        exchange.in_memory_body_bytes = 64 << 10;
        exchange.max_body_bytes = MAX;
        s.f.restart_server(server).await.unwrap();
    }
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let r = call(
        &s.f,
        MINISTRY,
        Method::POST,
        "/r1/JP/MUN/131016/records/raw",
        &[("X-Road-Client", PORTAL), ("X-Road-Id", "spooled-1")],
        body.clone(),
    )
    .await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
    );
    assert_eq!(
        r.headers.get("content-length").unwrap().to_str().unwrap(),
        body.len().to_string(),
        "a spooled answer is sent with its length"
    );
    assert!(
        r.body.as_ref() == body.as_slice(),
        "the body came back unchanged"
    );

    let digest = Sha256::digest(&body).to_vec();
    for server in [MINISTRY, CHIYODA] {
        let bundle = integration_tests::export_evidence(&s.f, server, "spooled-1", 1).await;
        let report = integration_tests::verify_offline(&s.f, &bundle);
        assert!(report.passed(), "{server}: {report}");
        let bundle = pb::EvidenceBundle::decode(bundle.as_slice()).unwrap();
        let exchanged: Vec<_> = bundle
            .records
            .iter()
            .map(|r| (r, pb::LogRecord::decode(r.record.as_slice()).unwrap()))
            .filter(|(_, record)| record.kind != pb::LogKind::Failure as i32)
            .collect();
        assert_eq!(exchanged.len(), 2, "{server}: request and response");
        for (evidence, record) in exchanged {
            assert_eq!(record.body_sha256, digest, "{server}: the hash of the body");
            assert!(
                !record.body_stored && !evidence.has_body,
                "{server}: no body kept"
            );
        }
    }

    let larger = vec![7u8; MAX as usize + 1];
    let r = call(
        &s.f,
        MINISTRY,
        Method::POST,
        "/r1/JP/MUN/131016/records/raw",
        &[("X-Road-Client", PORTAL)],
        larger,
    )
    .await;
    assert_eq!(error_type(&r), "Client.BodyTooLarge");
    s.f.stop().await;
}

fn two_chiyoda_servers() -> FederationSpec {
    let mut spec = FederationSpec::sandbox();
    spec.servers.push(ServerSpec {
        id: CHIYODA2.parse().unwrap(),
        hosts: vec![RECORDS.parse().unwrap()],
        system_certificates: false,
    });
    spec
}

#[tokio::test]
async fn fails_over_when_one_of_two_provider_servers_is_down() {
    let mut s = setup(two_chiyoda_servers(), &[CHIYODA, CHIYODA2]).await;
    let path = "/r1/JP/MUN/131016/records/residentRecord";
    let portal = [("X-Road-Client", PORTAL)];
    // Both serve while both are up (load is spread).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = call(&s.f, MINISTRY, Method::GET, path, &portal, vec![]).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        seen.insert(
            r.headers["x-road-security-server"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 2, "both provider servers answered: {seen:?}");

    s.f.stop_server(CHIYODA).await;
    for _ in 0..6 {
        let r = call(&s.f, MINISTRY, Method::GET, path, &portal, vec![]).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        assert_eq!(r.headers["x-road-security-server"], CHIYODA2);
    }
    // Pinning the server that is down fails instead of going elsewhere.
    let r = call(
        &s.f,
        MINISTRY,
        Method::GET,
        path,
        &[
            ("X-Road-Client", PORTAL),
            ("X-Road-Security-Server", CHIYODA),
        ],
        vec![],
    )
    .await;
    assert_eq!(error_type(&r), "Server.ClientProxy.NetworkError");
    s.f.stop().await;
}

/// The X-Road-Id is the client's to choose: sent twice, as X-Road's own REST proxy test does,
/// it gets two answers, each with its own X-Road-Request-Id and request hash (the replay window
/// is keyed on the X-Road-Request-Id the client's server makes).
#[tokio::test]
async fn a_repeated_x_road_id_gets_two_answers() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = call(
            &s.f,
            MINISTRY,
            Method::GET,
            "/r1/JP/MUN/131016/records/residentRecord/residents",
            &[
                ("X-Road-Client", PORTAL),
                ("X-Road-Id", "reused-by-the-client"),
            ],
            vec![],
        )
        .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        assert_eq!(r.headers["x-road-id"], "reused-by-the-client");
        let echo: serde_json::Value = r.json().unwrap();
        assert_eq!(
            echo["headers"]["x-road-request-id"],
            r.headers["x-road-request-id"].to_str().unwrap()
        );
        answers.push(r);
    }
    assert_ne!(
        answers[0].headers["x-road-request-id"],
        answers[1].headers["x-road-request-id"]
    );
    assert_ne!(
        answers[0].headers["x-road-request-hash"],
        answers[1].headers["x-road-request-hash"]
    );
    s.f.stop().await;
}

#[tokio::test]
async fn tampered_forged_replayed_and_unlisted_exchanges_are_rejected() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let peer = RawPeer::new(&s.f);

    let ok = peer.signed("raw-1", b"hello");
    assert!(peer.send(ok.clone(), b"hello").await.is_ok());
    // The same message again: a replay.
    assert_eq!(
        peer.send(ok, b"hello").await.unwrap_err(),
        "Server.ServerProxy.DuplicateMessage"
    );
    // The body altered in transit.
    let h = peer.signed("raw-2", b"hello");
    assert_eq!(
        peer.send(h, b"hellO").await.unwrap_err(),
        "Server.ServerProxy.InvalidBody"
    );
    // A forged signature: one bit of it flipped, or the header changed after signing.
    let mut h = peer.signed("raw-3", b"hello");
    h.signature[10] ^= 1;
    assert_eq!(
        peer.send(h, b"hello").await.unwrap_err(),
        "Server.ServerProxy.InvalidSignature"
    );
    let mut h = peer.signed("raw-4", b"hello");
    let mut decoded = pb::RequestHeader::decode(h.header.as_slice()).unwrap();
    decoded.service = format!("{RECORDS}/residentRecord");
    h.header = decoded.encode_to_vec();
    assert_eq!(
        peer.send(h, b"hello").await.unwrap_err(),
        "Server.ServerProxy.InvalidSignature"
    );
    // Signed by a key the configuration does not list for the client's member.
    let stranger = certs::SigningKey::generate().unwrap();
    let h = exchange::message::sign_request(
        &pb::RequestHeader::decode(peer.signed("raw-5", b"x").header.as_slice()).unwrap(),
        &stranger,
    );
    assert_eq!(
        peer.send(h, b"x").await.unwrap_err(),
        "Server.ServerProxy.UnknownSigningKey"
    );

    // A peer whose certificate the configuration does not list cannot even connect.
    let ca = certs::CertificateAuthority::load(
        &s.f.dir().join("registry/data/ca.pem"),
        &s.f.dir().join("registry/data/ca.key"),
    )
    .unwrap();
    let rogue_key = certs::SigningKey::generate().unwrap();
    let rogue_cert = ca
        .issue(
            MINISTRY,
            &rogue_key.public_key().to_spki_der(),
            &["127.0.0.1".into()],
            Duration::from_secs(3600),
            &certs::SystemClock,
        )
        .unwrap();
    let rogue = RawPeer {
        pool: security_server::peer::PeerPool::new(
            certs::LiveIdentity::new(
                certs::TlsIdentity::new(vec![rogue_cert], rogue_key),
                Arc::new(certs::SystemClock),
            )
            .unwrap(),
            Duration::from_secs(2),
            1 << 20,
        ),
        key: peer.key.clone(),
        conf: peer.conf.clone(),
    };
    let err = rogue
        .send(rogue.signed("raw-6", b"x"), b"x")
        .await
        .unwrap_err();
    assert!(
        !err.starts_with("Server."),
        "refused at the TLS handshake, not by a handler: {err}"
    );
    s.f.stop().await;
}

/// Issue 17: a signed request captured in transit and sent again after the provider's server
/// restarted (its replay cache is in memory) is still a replay: the window is rebuilt from the
/// message log before the server proxy serves again, so the provider's system sees it once.
#[tokio::test]
async fn a_request_captured_before_the_provider_restarted_is_still_a_replay() {
    let mut s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let peer = RawPeer::new(&s.f);
    let captured = peer.signed("captured-before-restart", b"hello");
    assert!(peer.send(captured.clone(), b"hello").await.is_ok());

    s.f.restart_server(CHIYODA).await.unwrap();
    let peer = RawPeer::new(&s.f);
    assert_eq!(
        peer.send(captured, b"hello").await.unwrap_err(),
        "Server.ServerProxy.DuplicateMessage"
    );
    let fresh = peer.signed("new-after-restart", b"hello");
    assert!(
        peer.send(fresh, b"hello").await.is_ok(),
        "new requests are served"
    );
    s.f.stop().await;
}

/// Metaservice calls with queries the client proxy would have refused, from a client's server
/// that did not check them: the provider answers its own `BadRequest`, which the client's
/// server passes on (a `Client.*` error from a peer would reach the client as
/// `Server.ClientProxy.InvalidResponse`).
#[tokio::test]
async fn a_malformed_metaservice_query_from_a_peer_is_the_providers_bad_request() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let peer = RawPeer::new(&s.f);
    let cases = [
        ("getOpenAPI", "serviceCode=a%20b"),
        ("getOpenAPI", "serviceCode=%zz"),
        ("getOpenAPI", "serviceCode=raw&serviceCode=raw"),
        ("getOpenAPI", ""),
        ("findUsage", "offset=%zz"),
        ("findUsage", "limit=ten"),
        ("usageEvidence", "id=%zz"),
    ];
    for (n, (metaservice, query)) in cases.into_iter().enumerate() {
        let signed = peer.signed(&format!("query-{n}"), b"");
        let mut header = pb::RequestHeader::decode(signed.header.as_slice()).unwrap();
        header.service = format!("{RECORDS}/{metaservice}");
        header.method = "GET".into();
        header.query = query.into();
        header.data_subject = "131016000001".into();
        let signed = exchange::message::sign_request(&header, &peer.key);
        assert_eq!(
            peer.send(signed, b"").await.unwrap_err(),
            "Server.ServerProxy.BadRequest",
            "{metaservice}?{query}"
        );
    }
    // A well-formed one still answers.
    let signed = peer.signed("query-ok", b"");
    let mut header = pb::RequestHeader::decode(signed.header.as_slice()).unwrap();
    header.service = format!("{RECORDS}/getOpenAPI");
    header.method = "GET".into();
    header.query = "serviceCode=residentRecord".into();
    let answer = peer
        .send(exchange::message::sign_request(&header, &peer.key), b"")
        .await
        .unwrap();
    let served = String::from_utf8(answer.body).unwrap();
    assert!(served.contains("openapi: 3.0.0"), "{served}");
    assert!(!served.contains("10.1.2.3"), "{served}");
    s.f.stop().await;
}

#[tokio::test]
async fn a_member_key_removed_from_the_configuration_is_rejected() {
    let s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let peer = RawPeer::new(&s.f);
    assert!(peer.send(peer.signed("key-1", b"a"), b"a").await.is_ok());

    s.f.registry()
        .remove_key("JP/GOV/digital-agency".parse().unwrap(), peer.key.key_id())
        .await
        .unwrap();
    s.f.server(CHIYODA)
        .unwrap()
        .running()
        .unwrap()
        .conf
        .refresh()
        .await
        .unwrap();
    assert_eq!(
        peer.send(peer.signed("key-2", b"a"), b"a")
            .await
            .unwrap_err(),
        "Server.ServerProxy.UnknownSigningKey"
    );
    // The ministry's own server, once it has the configuration, has no valid key to sign with.
    s.f.server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .conf
        .refresh()
        .await
        .unwrap();
    let r = call(
        &s.f,
        MINISTRY,
        Method::GET,
        "/r1/JP/MUN/131016/records/residentRecord",
        &[("X-Road-Client", PORTAL)],
        vec![],
    )
    .await;
    assert_eq!(error_type(&r), "Server.ClientProxy.NoSigningKey");
    s.f.stop().await;
}

/// A backend whose `/hold` tells the test it has the request (`arrived`), then answers once the
/// test lets it (`release`).
async fn holding_backend() -> (String, Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (signal, go) = (Arc::clone(&arrived), Arc::clone(&release));
    let router = Router::new().route(
        "/hold",
        get(move || {
            let (signal, go) = (Arc::clone(&signal), Arc::clone(&go));
            async move {
                signal.notify_one();
                go.notified().await;
                "finished"
            }
        }),
    );
    (serve_on_loopback(router).await, arrived, release)
}

#[tokio::test]
async fn https_client_proxy_and_graceful_shutdown_finishes_in_flight_exchanges() {
    let mut s = setup(FederationSpec::sandbox(), &[CHIYODA]).await;
    let (hold_url, arrived, release) = holding_backend().await;
    register(
        &s.f,
        CHIYODA,
        &format!("{RECORDS}/hold"),
        format!("{hold_url}/hold"),
        10,
    );
    grant(&s.f, CHIYODA, &format!("{RECORDS}/hold"), PORTAL);

    // Restart the ministry's server with HTTPS on its client proxy.
    let mut config = s.f.server(MINISTRY).unwrap().config.clone();
    config.client_proxy.tls = true;
    s.f.stop_server(MINISTRY).await;
    let listeners = security_server::Listeners {
        client_proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        client_proxy_tls: None,
        server_proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let server = security_server::start(&config, listeners, Arc::new(certs::SystemClock))
        .await
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/r1/JP/MUN/131016/records/hold",
        server.client_proxy_addr.port()
    );
    let anchor = globalconf::Anchor::load(&s.f.description().anchor).unwrap();
    let https = runtime::HttpClient::https(
        certs::client_config_trusting(&anchor.ca_certificates_der(), &[]).unwrap(),
    );

    let in_flight = {
        let https = https.clone();
        let url = url.clone();
        tokio::spawn(async move {
            https
                .request(
                    Method::GET,
                    &url,
                    &[("X-Road-Client", PORTAL)],
                    Bytes::new(),
                )
                .await
        })
    };
    arrived.notified().await;
    let addr = server.client_proxy_addr;
    // The backend holds the exchange until the client proxy has stopped accepting connections,
    // so the exchange is in flight while the server shuts down.
    tokio::join!(server.shutdown(), async {
        eventually("the client proxy to refuse new connections", || async {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        })
        .await;
        release.notify_one();
    });
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight exchange finished");
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.text());
    assert_eq!(answer.text(), "finished");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    s.f.stop().await;
}

/// Chiyoda's server as far as the ministry's server can tell (its TLS identity, address and
/// member key), answering every exchange with a correctly signed response at once, and then
/// ending the call OK or, while `keep` is off, as a provider whose log failed after the
/// answer was sent.
struct EarlyAnswerProvider {
    this: globalconf::SecurityServerId,
    key: certs::SigningKey,
    conf: globalconf::VerifiedConf,
    replay: exchange::replay::ReplayCache,
    keep: std::sync::atomic::AtomicBool,
}

#[tonic::async_trait]
impl pb::peer_server::Peer for EarlyAnswerProvider {
    type ExchangeStream = security_server::peer::AnswerThenConfirm;

    async fn exchange(
        &self,
        request: tonic::Request<tonic::Streaming<pb::ExchangeRequest>>,
    ) -> Result<tonic::Response<Self::ExchangeStream>, tonic::Status> {
        use exchange::HashedBody;
        use exchange::message;
        let peer = request
            .extensions()
            .get::<runtime::PeerCertificate>()
            .unwrap()
            .0;
        // The ministry's requests here are small: their bodies come whole with the header.
        let request = request.into_inner().message().await.unwrap().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let verified = message::verify_request(
            &request.header.unwrap(),
            HashedBody::new(Bytes::from(request.body)).sha256(),
            self.conf.conf(),
            &peer,
            &self.this,
            now,
            Duration::from_secs(60),
            &self.replay,
        )
        .unwrap();
        let body = HashedBody::new(Bytes::from_static(b"early answer"));
        let header = message::build_response_header(
            &verified,
            http::StatusCode::OK,
            &[],
            body.sha256(),
            &self.key.key_id(),
            now,
            &self.this,
        );
        let keep = self.keep.load(std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(
            security_server::peer::AnswerThenConfirm::new(
                message::sign_response(&header, &self.key),
                security_server::spool::MessageBody::in_memory(body),
                async move {
                    if keep {
                        Ok(())
                    } else {
                        Err(exchange::XRoadError::new(
                            exchange::ServerProxyCode::LoggingFailed,
                            "the provider's disk failed",
                        ))
                    }
                },
            ),
        ))
    }

    async fn get_configuration(
        &self,
        _: tonic::Request<pb::GetConfigurationRequest>,
    ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn offer_configuration(
        &self,
        _: tonic::Request<pb::OfferConfigurationRequest>,
    ) -> Result<tonic::Response<pb::OfferConfigurationResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn add_checkpoint(
        &self,
        _: tonic::Request<pb::AddCheckpointRequest>,
    ) -> Result<tonic::Response<pb::AddCheckpointResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

#[tokio::test]
async fn an_answer_the_provider_did_not_log_is_not_returned_to_the_client() {
    let mut s = setup(FederationSpec::sandbox(), &[]).await;
    let chiyoda = s.f.server(CHIYODA).unwrap();
    let identity = security_server::identity::Identity::load(&chiyoda.config).unwrap();
    let address = chiyoda.running().unwrap().server_proxy_addr;
    let conf =
        s.f.server(MINISTRY)
            .unwrap()
            .running()
            .unwrap()
            .conf
            .current()
            .unwrap();
    s.f.stop_server(CHIYODA).await;

    // The stand-in takes over Chiyoda's address, certificate and member key.
    let fake = Arc::new(EarlyAnswerProvider {
        this: CHIYODA.parse().unwrap(),
        key: identity.signing_keys.into_iter().next().unwrap().1,
        conf: conf.clone(),
        replay: exchange::replay::ReplayCache::new(Duration::from_secs(600), 1000),
        keep: std::sync::atomic::AtomicBool::new(true),
    });
    let tls = security_server::peer::server_tls(
        &certs::LiveIdentity::new(identity.tls, Arc::new(certs::SystemClock)).unwrap(),
        tokio::sync::watch::channel(Some(conf)).1,
    )
    .unwrap();
    let router =
        tonic::service::Routes::new(pb::peer_server::PeerServer::from_arc(Arc::clone(&fake)))
            .into_axum_router();
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let server = tokio::spawn(runtime::serve_http(
        listener,
        Some(tls),
        router,
        std::future::pending(),
    ));

    let path = "/r1/JP/MUN/131016/records/residentRecord";
    let headers = |id: &'static str| {
        [
            ("X-Road-Client", PORTAL),
            ("X-Road-Security-Server", CHIYODA),
            ("X-Road-Id", id),
        ]
    };
    // Confirmed: the client gets the answer.
    let r = call(
        &s.f,
        MINISTRY,
        Method::GET,
        path,
        &headers("early-1"),
        vec![],
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.text(), "early answer");

    // The provider's log did not keep its answer: the client gets the provider's error, not
    // the answer, although the ministry's server had it verified and logged.
    fake.keep.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = call(
        &s.f,
        MINISTRY,
        Method::GET,
        path,
        &headers("early-2"),
        vec![],
    )
    .await;
    assert_eq!(error_type(&r), "Server.ServerProxy.LoggingFailed");
    let ministry_log = &s.f.server(MINISTRY).unwrap().running().unwrap().log;
    let kinds: Vec<i32> = ministry_log
        .find_by_message_id("early-2")
        .unwrap()
        .into_iter()
        .map(|i| {
            ministry_log
                .record(i)
                .unwrap()
                .unwrap()
                .decode()
                .unwrap()
                .kind
        })
        .collect();
    assert_eq!(
        kinds,
        [pb::LogKind::Request as i32, pb::LogKind::Response as i32]
    );

    server.abort();
    s.f.stop().await;
}
