#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile requests, sent as raw bytes so that no client library tidies them first: each gets
//! its exact answer (status and X-Road error), and after each one the server still serves an
//! ordinary exchange. One federation for each test; the cases are tables, and a failure lists
//! every case that differs. (Hostile connections, idle, half-sent or dripping, are in
//! `runtime/tests/hostile_connections.rs`; forged, tampered and replayed exchanges in
//! `exchange.rs`.)
//!
//! One file, because its tables are one catalogue of attacks, read together.

use std::sync::Arc;
use std::time::Duration;

use sandbox::{Federation, FederationSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const PORTAL: &str = "JP/GOV/digital-agency/portal";
const SERVICE: &str = "/r1/JP/MUN/131016/records/residentRecord/131016000001";

/// What a server answered: its status (0 when it closed the connection without one) and the
/// `X-Road-Error` header (empty when there is none).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    error: String,
}

/// Sends `request` as it is on a new connection to `addr` and reads the answer's head.
async fn send_raw(addr: std::net::SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading all of a refused request: that is an answer too.
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "no answer within 20 s to {:?}",
        head_of(request)
    );
    let text = String::from_utf8_lossy(&got);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let error = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-road-error")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Answer { status, error }
}

fn head_of(request: &[u8]) -> String {
    String::from_utf8_lossy(&request[..request.len().min(120)]).into_owned()
}

/// A GET of `path` with `headers` (each a whole header line), closing the connection after it.
fn get(path: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn client(id: &str) -> String {
    format!("X-Road-Client: {id}")
}

async fn start() -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 3600;
    spec.samples.clear();
    integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await
}

async fn assert_still_serves(addr: std::net::SocketAddr, after: &str) {
    let ok = send_raw(addr, &get(SERVICE, &[&client(PORTAL)])).await;
    assert_eq!(
        ok,
        Answer {
            status: 200,
            error: String::new()
        },
        "an ordinary exchange after {after}"
    );
}

#[tokio::test]
async fn the_client_proxy_answers_each_hostile_request_exactly_and_keeps_serving() {
    let (_dir, f) = start().await;
    let addr = f
        .server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .client_proxy_addr;
    let portal = client(PORTAL);
    let long_id = format!("X-Road-Id: {}", "a".repeat(2000));
    let huge_header = format!("X-Pad: {}", "a".repeat(70_000));
    let big = "Content-Length: 999999999999".to_owned();
    let owned_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        // The client's identifier.
        (
            "no client",
            get(SERVICE, &[]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "a member (three parts) that does not own this server",
            get(SERVICE, &[&client("JP/MUN/131016")]),
            500,
            "Server.ClientProxy.ClientNotHosted",
        ),
        (
            "client of five parts",
            get(SERVICE, &[&client("JP/GOV/digital-agency/portal/x")]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "client with ..",
            get(SERVICE, &[&client("JP/GOV/../portal")]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "client with .",
            get(SERVICE, &[&client("JP/GOV/./portal")]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "empty client",
            get(SERVICE, &["X-Road-Client: "]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "client with an empty part",
            get(SERVICE, &[&client("JP//digital-agency/portal")]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "client with a space",
            get(SERVICE, &[&client("JP/GOV/digital agency/portal")]),
            400,
            "Client.InvalidClientIdentifier",
        ),
        (
            "client of another instance",
            get(SERVICE, &[&client("EE/GOV/digital-agency/portal")]),
            500,
            "Server.ClientProxy.UnknownMember",
        ),
        (
            "client not hosted here",
            get(SERVICE, &[&client("JP/MUN/271004/welfare")]),
            500,
            "Server.ClientProxy.ClientNotHosted",
        ),
        (
            "two clients",
            get(SERVICE, &[&portal, &client("JP/MUN/271004/welfare")]),
            400,
            "Client.DuplicateHeaderField",
        ),
        // The service's identifier, in the path.
        (
            "no service",
            get("/r1/", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "service of three parts",
            get("/r1/JP/MUN/131016", &[&portal]),
            400,
            "Client.BadRequest",
        ),
        (
            "service with ..",
            get("/r1/JP/../MUN/131016/records/residentRecord", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "service code .",
            get("/r1/JP/MUN/131016/records/.", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "service with an encoded space",
            get("/r1/JP/MUN/131016/rec%20ords/residentRecord", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "service with an encoded NUL",
            get("/r1/JP/MUN/131016/records/resident%00Record", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "service with bad percent-encoding",
            get("/r1/JP/MUN/131016/records/resident%zzRecord", &[&portal]),
            400,
            "Client.InvalidServiceIdentifier",
        ),
        (
            "unknown service provider",
            get("/r1/JP/MUN/999999/records/residentRecord", &[&portal]),
            500,
            "Server.ClientProxy.UnknownService",
        ),
        (
            "protocol r2",
            get("/r2/JP/MUN/131016/records/residentRecord", &[&portal]),
            400,
            "Client.InvalidProtocolVersion",
        ),
        (
            "no protocol",
            get("/JP/MUN/131016/records/residentRecord", &[&portal]),
            400,
            "Client.BadRequest",
        ),
        (
            "dot segments after the service",
            get(&format!("{SERVICE}/../../x"), &[&portal]),
            400,
            "Client.BadRequest",
        ),
        // X-Road headers.
        (
            "message id with spaces",
            get(SERVICE, &[&portal, "X-Road-Id: bad id"]),
            400,
            "Client.InvalidHeaderField",
        ),
        (
            "message id of 2000 characters",
            get(SERVICE, &[&portal, &long_id]),
            400,
            "Client.InvalidHeaderField",
        ),
        // HTTP itself.
        (
            "a body larger than allowed",
            get(SERVICE, &[&portal, &big]),
            400,
            "Client.BodyTooLarge",
        ),
        (
            "a content length that is not a number",
            get(SERVICE, &[&portal, "Content-Length: many"]),
            400,
            "",
        ),
        (
            "headers over 64 KiB",
            get(SERVICE, &[&portal, &huge_header]),
            431,
            "",
        ),
        (
            "a header line without a colon",
            get(SERVICE, &[&portal, "NoColonHere"]),
            400,
            "",
        ),
        (
            "a request line of garbage",
            b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
            400,
            "",
        ),
        (
            "HTTP/0.9",
            b"GET /r1/JP/MUN/131016/records/residentRecord\r\n\r\n".to_vec(),
            400,
            "",
        ),
        (
            "a chunked body with a bad chunk size",
            [
                format!("POST {SERVICE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
                    .as_bytes(),
                b"X-Road-Client: JP/GOV/digital-agency/portal\r\n",
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            ]
            .concat(),
            400,
            "Client.BrokenBody",
        ),
        (
            "a POST to a service that only reads",
            request("POST", SERVICE, &[&portal], b""),
            405,
            "",
        ),
        // The body's length given twice: hyper lets Transfer-Encoding win, drops Content-Length
        // and closes the connection after the answer (RFC 9112 §6.1), so no second request can
        // hide in the body; this one reaches the provider as a POST with an empty body, which
        // its `residentRecord` refuses with its own 405.
        (
            "both Content-Length and Transfer-Encoding",
            [
                format!("POST {SERVICE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
                    .as_bytes(),
                b"X-Road-Client: JP/GOV/digital-agency/portal\r\nContent-Length: 3\r\n",
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]
            .concat(),
            405,
            "",
        ),
        (
            "a header value that is not UTF-8",
            get(
                SERVICE,
                &["X-Road-Client: JP/GOV/digital-agency/p\u{ff}rtal"],
            ),
            400,
            "Client.InvalidClientIdentifier",
        ),
    ];
    // Every case runs, and a failure lists all that differ.
    let mut wrong = Vec::new();
    for (what, request, status, error) in owned_cases {
        let answer = send_raw(addr, &request).await;
        let expected = Answer {
            status,
            error: error.to_owned(),
        };
        if answer != expected {
            wrong.push(format!("{what}: got {answer:?}, expected {expected:?}"));
        }
        assert_still_serves(addr, what).await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    f.stop().await;
}

/// What a case sends to the registry (method, URL, headers, body) and the status it expects.
type RegistryCase<'a> = (
    &'a str,
    http::Method,
    String,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
);

/// A request with `method`, `path`, `headers` and `body`, closing the connection after it.
/// A request smuggled behind one whose body length is given twice: with keep-alive, the first
/// says `Transfer-Encoding: chunked` and a `Content-Length` as long as the second request that
/// follows, and its chunked body ends at once. A server that took the `Content-Length` would
/// read them as the body; one that took `Transfer-Encoding` and kept the connection would serve
/// them as a request of their own. Ours answers the first and closes the connection.
#[tokio::test]
async fn a_request_hidden_behind_a_twice_given_body_length_is_never_served() {
    let (_dir, f) = start().await;
    let addr = f
        .server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .client_proxy_addr;
    let hidden = "GET /listClients HTTP/1.1\r\nHost: smuggled\r\n\r\n";
    let first = format!(
        "POST {SERVICE} HTTP/1.1\r\nHost: localhost\r\n{}\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        client(PORTAL),
        hidden.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{first}{hidden}").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got))
        .await
        .expect("the connection is closed after the first answer")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(!text.contains("clientList"), "{text}");
    assert_still_serves(addr, "a smuggling attempt").await;
    f.stop().await;
}

fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn the_admin_api_server_proxy_and_registry_answer_hostile_requests_exactly_and_keep_serving()
{
    let (_dir, f) = start().await;
    let server = f.server(MINISTRY).unwrap();
    let running = server.running().unwrap();
    let (admin, proxy) = (running.admin_addr, running.client_proxy_addr);
    let token = format!("Authorization: Bearer {}", server.admin_token);
    let json = "Content-Type: application/json";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("no token", request("GET", "/v1/status", &[], b""), 401),
        (
            "a wrong token",
            request("GET", "/v1/status", &["Authorization: Bearer nope"], b""),
            401,
        ),
        (
            "a token of another scheme",
            request("GET", "/v1/status", &["Authorization: Basic YTpi"], b""),
            401,
        ),
        (
            "evidence without a token",
            request("POST", "/v1/evidence", &[json], b"{\"message_id\":\"x\"}"),
            401,
        ),
        (
            "a body that is not JSON",
            request("POST", "/v1/services", &[&token, json], b"{not json"),
            400,
        ),
        (
            "JSON of the wrong shape",
            request("POST", "/v1/services", &[&token, json], b"[1,2,3]"),
            400,
        ),
        (
            "a service of bad identifier",
            request(
                "POST",
                "/v1/services",
                &[&token, json],
                br#"{"id":"JP/../x/y","url":"http://127.0.0.1:1/","timeout_secs":5}"#,
            ),
            400,
        ),
        (
            "evidence for no such message",
            request(
                "POST",
                "/v1/evidence",
                &[&token, json],
                b"{\"message_id\":\"never-sent\"}",
            ),
            404,
        ),
        (
            "an unknown path",
            request("GET", "/v1/nothing", &[&token], b""),
            404,
        ),
        (
            "the wrong method",
            request("DELETE", "/v1/status", &[&token], b""),
            405,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, req, status) in cases {
        let answer = send_raw(admin, &req).await;
        if answer.status != status {
            wrong.push(format!("{what}: got {answer:?}, expected {status}"));
        }
        let health = send_raw(admin, &request("GET", "/health", &[], b"")).await;
        assert_eq!(health.status, 200, "health after {what}");
        assert_still_serves(proxy, what).await;
    }

    // The registry's public endpoint speaks only TLS: plain HTTP gets no answer, and it still
    // serves the configuration.
    let registry: std::net::SocketAddr = f
        .registry_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let answer = send_raw(registry, &get("/v1/global-configuration", &[])).await;
    if answer.status != 0 {
        wrong.push(format!("plain HTTP to the registry: got {answer:?}"));
    }
    // The server proxy speaks only mutual TLS: plain HTTP gets no answer either.
    let answer = send_raw(running.server_proxy_addr, &get("/", &[])).await;
    if answer.status != 0 {
        wrong.push(format!("plain HTTP to the server proxy: got {answer:?}"));
    }
    assert_still_serves(proxy, "plain HTTP to the server proxy").await;

    // The registry over TLS, as a server or a harvester reaches it.
    let anchor = globalconf::Anchor::load(&f.description().anchor).unwrap();
    let tls = certs::client_config_trusting(&anchor.ca_certificates_der(), &[b"http/1.1"]).unwrap();
    let https = runtime::HttpClient::https(tls).with_timeout(Duration::from_secs(20));
    let base = f.registry_url();
    let conf_url = format!("{base}/v1/global-configuration");
    let etag = https
        .request(http::Method::GET, &conf_url, &[], bytes::Bytes::new())
        .await
        .unwrap()
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let weak = format!("W/{etag}");
    let oversized = vec![0u8; 64 * 1024 + 1];
    let registry_cases: Vec<RegistryCase> = vec![
        (
            "an enrolment of garbage",
            http::Method::POST,
            format!("{base}/v1/enrollments"),
            vec![],
            b"\x00\xffnot a request".to_vec(),
            400,
        ),
        (
            "an enrolment over 64 KiB",
            http::Method::POST,
            format!("{base}/v1/enrollments"),
            vec![],
            oversized,
            413,
        ),
        (
            "the status of a server of bad identifier",
            http::Method::GET,
            format!("{base}/v1/enrollments/JP/GOV/../ss1"),
            vec![],
            vec![],
            400,
        ),
        (
            "the status of no such server",
            http::Method::GET,
            format!("{base}/v1/enrollments/JP/GOV/nobody/ss9"),
            vec![],
            vec![],
            404,
        ),
        (
            "the configuration with If-None-Match: *",
            http::Method::GET,
            conf_url.clone(),
            vec![("If-None-Match", "*")],
            vec![],
            304,
        ),
        (
            "the configuration with its weak tag",
            http::Method::GET,
            conf_url.clone(),
            vec![("If-None-Match", weak.as_str())],
            vec![],
            304,
        ),
        (
            "an unknown path",
            http::Method::GET,
            format!("{base}/v1/nothing"),
            vec![],
            vec![],
            404,
        ),
        (
            "the anchor deleted",
            http::Method::DELETE,
            format!("{base}/v1/anchor"),
            vec![],
            vec![],
            405,
        ),
    ];
    for (what, method, url, headers, body, status) in registry_cases {
        let r = https
            .request(method, &url, &headers, body.into())
            .await
            .unwrap();
        if r.status.as_u16() != status {
            wrong.push(format!(
                "{what}: got {} {}, expected {status}",
                r.status,
                r.text()
            ));
        }
    }
    let conf = Arc::clone(&running.conf);
    assert!(conf.refresh().await.is_ok(), "the registry still serves");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    f.stop().await;
}

#[tokio::test]
async fn the_portal_answers_hostile_requests_exactly_and_keeps_serving() {
    let (_dir, f) = start().await;
    let portal: std::net::SocketAddr = f
        .portal_url()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = f
        .server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .client_proxy_addr;
    let form = "Content-Type: application/x-www-form-urlencoded";
    let huge_cookie = format!("Cookie: session={}", "a".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "the timeline without a session",
            get("/api/timeline", &[]),
            401,
        ),
        (
            "the timeline with a forged session",
            get("/api/timeline", &["Cookie: session=forged"]),
            401,
        ),
        (
            "evidence without a session",
            get("/evidence?message_id=x", &[]),
            401,
        ),
        (
            "a development login of garbage",
            request("POST", "/login/dev", &[form], b"%%%=&&&"),
            400,
        ),
        (
            "a development login for a resident with a control character",
            request("POST", "/login/dev", &[form], b"resident=131016%01000001"),
            400,
        ),
        ("a cookie over 64 KiB", get("/", &[&huge_cookie]), 431),
        ("an unknown path", get("/admin", &[]), 404),
        ("a logout with GET", get("/logout", &[]), 405),
    ];
    let mut wrong = Vec::new();
    for (what, req, status) in cases {
        let answer = send_raw(portal, &req).await;
        if answer.status != status {
            wrong.push(format!("{what}: got {answer:?}, expected {status}"));
        }
        let health = send_raw(portal, &get("/health", &[])).await;
        assert_eq!(health.status, 200, "the portal's health after {what}");
    }
    assert_still_serves(proxy, "the portal cases").await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    f.stop().await;
}
