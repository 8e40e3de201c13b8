#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The portal against a fake security server speaking the client-proxy contract (`listClients`,
//! `findUsage`, `usageEvidence`), both on `127.0.0.1:0`, driven with real HTTP requests.
//! One file, because every test shares the fake server and its recorded calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::Method;
use resident_portal::{Config, LoginConfig, LoginKind};
use runtime::{HttpClient, Shutdown, ShutdownTrigger};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const RECORDS: &str = "JP/MUN/131016/records";
const WELFARE: &str = "JP/MUN/271004/welfare";
const POLICE: &str = "JP/GOV/npa/cases";
const TAX: &str = "JP/MUN/011002/tax";
const SLOW: &str = "JP/MUN/012025/pension";

const ALICE: &str = "131016000001";
const BOB: &str = "131016000002";

// ---------------------------------------------------------------------------------------------
// The fake security server

#[derive(Clone)]
enum Behaviour {
    /// Answers findUsage from the records, and usageEvidence for them.
    Records,
    /// Answers with this X-Road error type and HTTP status.
    Error(&'static str, u16),
    /// Never answers.
    Hang,
    /// Answers the first findUsage page from the records, then never answers again.
    HangAfterFirstPage,
}

#[derive(Clone)]
struct FakeRecord {
    provider: String,
    subject: String,
    value: Value,
}

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    client: String,
    subject: String,
    purpose: String,
}

#[derive(Clone, Default)]
struct Fake {
    members: Vec<(String, String)>,
    subsystems: Vec<(String, String, Option<Behaviour>)>,
    records: Vec<FakeRecord>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// The sandbox-like federation: two providers with records, the portal itself (which does
    /// not offer findUsage).
    fn federation() -> Self {
        Fake::default()
            .member("JP/GOV/digital-agency", "Digital Agency (デジタル庁)")
            .member("JP/MUN/131016", "Chiyoda City (千代田区)")
            .member("JP/MUN/271004", "Osaka City (大阪市)")
            .subsystem(
                PORTAL,
                "Resident portal",
                Behaviour::Error("Server.ClientProxy.UnknownService", 404),
            )
            .subsystem(
                RECORDS,
                "Resident and tax records (住民・税務)",
                Behaviour::Records,
            )
            .subsystem(WELFARE, "Welfare office (福祉事務所)", Behaviour::Records)
            .record(
                RECORDS,
                ALICE,
                "a-tax-1",
                1_795_338_000_123,
                WELFARE,
                "taxCertificate",
                Some("生活保護の要否判定 (public assistance assessment)"),
            )
            .record(
                RECORDS,
                ALICE,
                "a-res-1",
                1_795_000_000_000,
                PORTAL,
                "residentRecord",
                Some("児童手当の認定 (child allowance eligibility)"),
            )
            .record(
                WELFARE,
                ALICE,
                "a-wel-1",
                1_795_200_000_000,
                RECORDS,
                "assistanceCase",
                None,
            )
            .record(
                RECORDS,
                BOB,
                "b-tax-1",
                1_795_400_000_000,
                WELFARE,
                "taxCertificate",
                Some("Bob's purpose"),
            )
    }

    fn member(mut self, id: &str, name: &str) -> Self {
        self.members.push((id.into(), name.into()));
        self
    }

    fn subsystem(mut self, id: &str, name: &str, behaviour: Behaviour) -> Self {
        self.subsystems
            .push((id.into(), name.into(), Some(behaviour)));
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        mut self,
        provider: &str,
        subject: &str,
        id: &str,
        time_ms: i64,
        client: &str,
        service_code: &str,
        purpose: Option<&str>,
    ) -> Self {
        let names: HashMap<&str, (&str, &str)> = [
            (
                WELFARE,
                ("Osaka City (大阪市)", "Welfare office (福祉事務所)"),
            ),
            (PORTAL, ("Digital Agency (デジタル庁)", "")),
            (RECORDS, ("", "Resident and tax records (住民・税務)")),
        ]
        .into_iter()
        .collect();
        let (member_name, subsystem_name) = names.get(client).copied().unwrap_or(("", ""));
        self.records.push(FakeRecord {
            provider: provider.into(),
            subject: subject.into(),
            value: json!({
                "time": "2026-11-22T09:00:00.123Z",
                "time_ms": time_ms,
                "message_id": id,
                "client": client,
                "client_member_name": member_name,
                "client_subsystem_name": subsystem_name,
                "service": format!("{provider}/{service_code}"),
                "service_code": service_code,
                // The provider names its tax certificate service for residents.
                "service_names": if service_code == "taxCertificate" {
                    json!({"ja": "課税証明書", "en": "Tax certificate"})
                } else {
                    json!({})
                },
                "method": "GET",
                "purpose": purpose,
                "status": 200,
            }),
        });
        self
    }

    fn behaviour(&self, provider: &str) -> Option<Behaviour> {
        self.subsystems
            .iter()
            .find(|(id, _, _)| id == provider)
            .and_then(|(_, _, b)| b.clone())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn start(self) -> (String, Fake, ShutdownTrigger) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/listClients", get(list_clients))
            .route(
                "/r1/{instance}/{class}/{member}/{subsystem}/{service}",
                get(service),
            )
            .with_state(self.clone());
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(runtime::serve_http(listener, None, router, shutdown.wait()));
        (url, self, trigger)
    }
}

fn id_json(id: &str) -> Value {
    let p: Vec<&str> = id.split('/').collect();
    if p.len() == 3 {
        json!({"object_type":"MEMBER","xroad_instance":p[0],"member_class":p[1],"member_code":p[2]})
    } else {
        json!({"object_type":"SUBSYSTEM","xroad_instance":p[0],"member_class":p[1],"member_code":p[2],"subsystem_code":p[3]})
    }
}

async fn list_clients(State(fake): State<Fake>) -> Response {
    let mut member: Vec<Value> = fake
        .members
        .iter()
        .map(|(id, name)| json!({"id": id_json(id), "name": name}))
        .collect();
    member.extend(
        fake.subsystems
            .iter()
            .map(|(id, name, _)| json!({"id": id_json(id), "name": name})),
    );
    axum::Json(json!({ "member": member })).into_response()
}

fn xroad_error(status: u16, error_type: &str, message: &str) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"type": error_type, "message": message, "detail": "fake-id"})),
    )
        .into_response();
    r.headers_mut()
        .insert("x-road-error", error_type.parse().unwrap());
    r
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
        .unwrap_or_default()
}

async fn service(
    State(fake): State<Fake>,
    Path((instance, class, member, subsystem, service)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let provider = format!("{instance}/{class}/{member}/{subsystem}");
    let client = header_text(&headers, "x-road-client");
    let subject = header_text(&headers, "x-road-data-subject");
    fake.seen.lock().unwrap().push(Seen {
        path: format!("{provider}/{service}"),
        query: uri.query().unwrap_or("").to_owned(),
        client: client.clone(),
        subject: subject.clone(),
        purpose: header_text(&headers, "x-road-purpose"),
    });
    if client != PORTAL {
        return xroad_error(400, "Client.InvalidClientIdentifier", "who are you?");
    }
    match fake.behaviour(&provider) {
        None => return xroad_error(404, "Server.ClientProxy.UnknownService", "no such provider"),
        Some(Behaviour::Error(t, status)) => return xroad_error(status, t, "fake failure"),
        Some(Behaviour::Hang) => std::future::pending::<()>().await,
        Some(Behaviour::HangAfterFirstPage) if query.get("offset").is_some_and(|o| o != "0") => {
            std::future::pending::<()>().await
        }
        Some(Behaviour::Records | Behaviour::HangAfterFirstPage) => {}
    }
    let mut mine: Vec<&FakeRecord> = fake
        .records
        .iter()
        .filter(|r| r.provider == provider && !subject.is_empty() && r.subject == subject)
        .collect();
    mine.sort_by_key(|r| std::cmp::Reverse(r.value["time_ms"].as_i64()));
    match service.as_str() {
        "findUsage" => {
            let offset: usize = query["offset"].parse().unwrap();
            let limit: usize = query["limit"].parse().unwrap();
            if limit == 0 || limit > 500 {
                return xroad_error(400, "Client.BadRequest", "limit");
            }
            let page: Vec<Value> = mine
                .iter()
                .skip(offset)
                .take(limit)
                .map(|r| r.value.clone())
                .collect();
            let more = offset + limit < mine.len();
            axum::Json(json!({"server": "JP/MUN/131016/ss1", "provider": provider,
                "offset": offset, "limit": limit, "more": more, "records": page}))
            .into_response()
        }
        "usageEvidence" => {
            let id = &query["id"];
            if id == "unsealed" {
                return xroad_error(503, "Server.ServerProxy.NotYetCheckpointed", "wait");
            }
            if !mine.iter().any(|r| r.value["message_id"] == *id) {
                return xroad_error(404, "Server.ServerProxy.UsageRecordNotFound", "none");
            }
            let mut r = (
                StatusCode::OK,
                format!("EVIDENCE {provider} {id} {subject}"),
            )
                .into_response();
            r.headers_mut()
                .insert("content-type", "application/x-protobuf".parse().unwrap());
            r
        }
        _ => xroad_error(404, "Server.ServerProxy.UnknownService", "unknown"),
    }
}

// ---------------------------------------------------------------------------------------------
// The portal and a browser-like client

fn config(security_server: &str, kind: LoginKind) -> Config {
    Config {
        security_server: security_server.into(),
        client: Some(PORTAL.parse().unwrap()),
        login: LoginConfig {
            kind: Some(kind),
            header: (kind == LoginKind::TrustedHeader).then(|| "X-Authenticated-Resident".into()),
            danger_development_login: kind == LoginKind::Development,
            ..LoginConfig::default()
        },
        ..Config::default()
    }
}

struct Portal {
    url: String,
    http: HttpClient,
    _stop: ShutdownTrigger,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

impl Portal {
    async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(resident_portal::serve(listener, config, shutdown.wait()));
        Self {
            url,
            http: HttpClient::plain(),
            _stop: trigger,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let r = self
            .http
            .request(
                method,
                &format!("{}{path}", self.url),
                headers,
                Bytes::from(body.to_owned()),
            )
            .await
            .unwrap();
        Answer {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, path, headers, "").await
    }

    /// Logs in with the development form; the `Cookie` header value of the session.
    async fn dev_login(&self, resident: &str) -> String {
        let a = self
            .call(
                Method::POST,
                "/login/dev",
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("resident={resident}"),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
        assert_eq!(a.header("location"), "/");
        let cookie = a
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("portal_session="))
            .expect("a session cookie");
        cookie.split(';').next().unwrap().to_owned()
    }
}

/// `(message id, provider)` of each timeline row, in page order.
fn rows(html: &str) -> Vec<(String, String)> {
    html.split("<tr class=\"access\"")
        .skip(1)
        .map(|row| (attr(row, "data-message-id"), attr(row, "data-provider")))
        .collect()
}

fn attr(fragment: &str, name: &str) -> String {
    let start = fragment.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = fragment[start..].find('"').unwrap();
    fragment[start..start + len].to_owned()
}

/// The `<li class="source …" data-provider="{provider}">…</li>` element.
fn source_item(html: &str, provider: &str) -> String {
    let marker = format!("data-provider=\"{provider}\"><span class=\"org\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no source {provider}:\n{html}"));
    let start = html[..at].rfind("<li ").unwrap();
    let end = at + html[at..].find("</li>").unwrap();
    html[start..end].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn development_login_shows_the_residents_own_timeline_newest_first() {
    let (ss, fake, _ss_stop) = Fake::federation().start().await;
    let portal = Portal::start(config(&ss, LoginKind::Development)).await;

    let login = portal.get("/", &[]).await;
    assert_eq!(login.status, StatusCode::OK);
    let html = login.text();
    assert!(html.contains("<form id=\"dev-login\" method=\"post\" action=\"/login/dev\">"));
    assert!(html.contains("<input id=\"resident\" name=\"resident\""));
    assert!(html.contains("<button id=\"login\" type=\"submit\">"));
    assert!(html.contains("id=\"dev-banner\""));
    assert!(html.contains("DEVELOPMENT LOGIN"));
    assert!(html.contains("<html lang=\"ja\">"));

    let set = portal
        .call(
            Method::POST,
            "/login/dev",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("resident={ALICE}"),
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER);
    let cookie = set
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("portal_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = portal.get("/", &[("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains(&format!("<span id=\"resident-id\">{ALICE}</span>")));
    assert!(html.contains("<table id=\"timeline\">"));
    assert_eq!(
        rows(&html),
        [
            ("a-tax-1".to_string(), RECORDS.to_string()),
            ("a-wel-1".to_string(), WELFARE.to_string()),
            ("a-res-1".to_string(), RECORDS.to_string()),
        ]
    );
    assert!(!html.contains("b-tax-1") && !html.contains("Bob's purpose"));

    let first = html.split("<tr class=\"access\"").nth(1).unwrap();
    assert!(first.contains("<td class=\"when\" data-label=\"日時\"><time datetime=\"2026-11-22T09:00:00.123Z\">2026年11月22日 18:00:00 JST</time></td>"));
    assert!(first.contains("<td class=\"who\" data-label=\"アクセスした機関\"><span class=\"org\">Osaka City (大阪市)</span>"));
    assert!(first.contains("Welfare office (福祉事務所)"));
    // The service as its provider names it in the page's language, its code beside it.
    assert!(first.contains(
        "<td class=\"what\" data-label=\"情報\"><span class=\"service\" title=\"taxCertificate\">課税証明書</span>"
    ));
    assert!(
        first.contains("Chiyoda City (千代田区)"),
        "provider organisation: {first}"
    );
    assert!(
        first.contains("<td class=\"why\" data-label=\"目的\"><span class=\"purpose\">生活保護の要否判定 (public assistance assessment)</span>")
    );
    assert!(first.contains(
        "<a class=\"evidence\" href=\"/evidence?provider=JP%2FMUN%2F131016%2Frecords&amp;id=a-tax-1\""
    ));
    let second = html.split("<tr class=\"access\"").nth(2).unwrap();
    // The record names no organisation: the directory's name stands in.
    assert!(
        second.contains("<span class=\"org\">Chiyoda City (千代田区)</span>"),
        "{second}"
    );
    assert!(
        second.contains("Osaka City (大阪市)"),
        "provider organisation: {second}"
    );
    assert!(second.contains(
        "<td class=\"why\" data-label=\"目的\"><span class=\"purpose\"><span class=\"not-stated\">記載なし</span></span>"
    ));

    assert!(html.contains("<ul id=\"sources\">"));
    assert!(source_item(&html, RECORDS).starts_with("<li class=\"source ok\""));
    assert!(source_item(&html, WELFARE).starts_with("<li class=\"source ok\""));
    assert!(source_item(&html, PORTAL).starts_with("<li class=\"source not-shared\""));
    assert!(!html.contains("id=\"incomplete\""));
    assert!(html.contains("security-server evidence verify FILE --anchor ANCHOR"));

    let seen = fake.seen();
    let usage: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/findUsage"))
        .collect();
    assert_eq!(usage.len(), 3, "{seen:?}");
    for s in usage {
        assert_eq!(s.client, PORTAL);
        assert_eq!(s.subject, ALICE);
        assert_eq!(s.purpose, resident_portal::config::DEFAULT_PURPOSE);
        assert_eq!(s.query, "offset=0&limit=100");
    }

    // Bob sees Bob's record only.
    let bob = portal.dev_login(BOB).await;
    let html = portal.get("/", &[("cookie", &bob)]).await.text();
    assert_eq!(rows(&html), [("b-tax-1".to_string(), RECORDS.to_string())]);
}

#[tokio::test]
async fn providers_that_refuse_or_do_not_answer_are_shown() {
    let fake = Fake::federation()
        .member("JP/GOV/npa", "National Police Agency (警察庁)")
        .subsystem(
            POLICE,
            "Cases",
            Behaviour::Error("Server.ServerProxy.AccessDenied", 403),
        )
        .subsystem(
            TAX,
            "Tax office",
            Behaviour::Error("Server.ClientProxy.NetworkError", 502),
        )
        .subsystem(SLOW, "Pensions", Behaviour::Hang);
    let (ss, _fake, _ss_stop) = fake.start().await;
    let mut c = config(&ss, LoginKind::Development);
    c.timeout_secs = 1;
    let portal = Portal::start(c).await;
    let session = portal.dev_login(ALICE).await;
    let page = portal.get("/", &[("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();

    assert_eq!(
        rows(&html).len(),
        3,
        "the answering providers' entries stay"
    );
    let police = source_item(&html, POLICE);
    assert!(
        police.starts_with("<li class=\"source not-shared\""),
        "{police}"
    );
    assert!(police.contains("National Police Agency (警察庁)"));
    let tax = source_item(&html, TAX);
    assert!(tax.starts_with("<li class=\"source unavailable\""), "{tax}");
    assert!(tax.contains("応答なし"));
    assert!(tax.contains("Server.ClientProxy.NetworkError"));
    // The error's message (it may name the federation's hosts) is for the log, not residents.
    assert!(!tax.contains("fake failure"), "{tax}");
    assert!(
        tax.contains("JP/MUN/011002"),
        "no member name: the identifier: {tax}"
    );
    let slow = source_item(&html, SLOW);
    assert!(
        slow.starts_with("<li class=\"source unavailable\""),
        "{slow}"
    );
    assert!(slow.contains("timeout"), "{slow}");
    let incomplete = &html[html.find("id=\"incomplete\"").unwrap()..];
    let incomplete = &incomplete[..incomplete.find("</div>").unwrap()];
    assert!(incomplete.contains(TAX) && incomplete.contains(SLOW));
    assert!(!incomplete.contains(POLICE), "not shared is no alarm");

    let api = portal.get("/api/timeline", &[("cookie", &session)]).await;
    assert_eq!(api.status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(json["resident"], ALICE);
    assert_eq!(json["entries"].as_array().unwrap().len(), 3);
    let state_of = |id: &str| {
        json["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of(POLICE), "not-shared");
    assert_eq!(state_of(TAX), "unavailable");
    assert_eq!(state_of(SLOW), "unavailable");
    assert_eq!(state_of(RECORDS), "ok");
}

#[tokio::test]
async fn providers_still_busy_at_member_timeout_are_unavailable_and_the_page_answers() {
    // Pensions never answers; the tax office answers its first page, then hangs.
    let mut fake = Fake::federation()
        .member("JP/MUN/011002", "Sapporo City (札幌市)")
        .subsystem(SLOW, "Pensions", Behaviour::Hang)
        .subsystem(TAX, "Tax office", Behaviour::HangAfterFirstPage);
    for i in 0..3 {
        fake = fake.record(
            TAX,
            ALICE,
            &format!("tax-{i}"),
            1_700_000_000_000 + i,
            RECORDS,
            "taxCertificate",
            Some("p"),
        );
    }
    let (ss, _fake, _ss_stop) = fake.start().await;
    let mut c = config(&ss, LoginKind::Development);
    // Far beyond the bound below: only member_timeout_ms can end these providers' calls.
    c.timeout_secs = 3600;
    c.member_timeout_ms = 200;
    c.page_size = 2;
    let portal = Portal::start(c).await;
    let session = portal.dev_login(ALICE).await;

    let api = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        portal.get("/api/timeline", &[("cookie", &session)]),
    )
    .await
    .expect("the page answers without waiting for the hanging providers");
    assert_eq!(api.status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&api.body).unwrap();
    let source = |id: &str| {
        json["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(source(SLOW)["state"], "unavailable");
    assert!(
        source(SLOW)["reason"].as_str().unwrap().contains("timeout"),
        "{}",
        source(SLOW)
    );
    assert_eq!(source(SLOW)["partial_records"], 0);
    assert_eq!(source(TAX)["state"], "unavailable");
    assert_eq!(source(TAX)["partial_records"], 2, "its first page is kept");
    assert_eq!(source(RECORDS)["state"], "ok");
    assert_eq!(source(WELFARE)["state"], "ok");
    let ids: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-tax-1", "a-wel-1", "a-res-1", "tax-2", "tax-1"]);
}

#[tokio::test]
async fn paging_follows_more_and_marks_truncation() {
    let mut fake = Fake::federation();
    for i in 0..5 {
        fake = fake.record(
            WELFARE,
            ALICE,
            &format!("page-{i}"),
            1_700_000_000_000 + i,
            RECORDS,
            "assistanceCase",
            Some("p"),
        );
    }
    let (ss, fake, _ss_stop) = fake.start().await;

    let mut c = config(&ss, LoginKind::Development);
    c.page_size = 2;
    c.targets = Some(vec![WELFARE.parse().unwrap()]);
    let portal = Portal::start(c).await;
    let session = portal.dev_login(ALICE).await;
    let html = portal.get("/", &[("cookie", &session)]).await.text();
    assert_eq!(rows(&html).len(), 6);
    let ids: Vec<String> = rows(&html).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids[1..], ["page-4", "page-3", "page-2", "page-1", "page-0"]);
    let queries: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.path == format!("{WELFARE}/findUsage"))
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(
        queries,
        ["offset=0&limit=2", "offset=2&limit=2", "offset=4&limit=2"]
    );
    assert!(
        !html.contains(&format!("data-provider=\"{RECORDS}\"")),
        "targets only"
    );
    let welfare = source_item(&html, WELFARE);
    assert!(welfare.starts_with("<li class=\"source ok\""));
    assert!(!welfare.contains("class=\"truncated\""));

    let mut c = config(&ss, LoginKind::Development);
    c.page_size = 2;
    c.max_records_per_provider = 3;
    c.targets = Some(vec![WELFARE.parse().unwrap()]);
    let portal = Portal::start(c).await;
    let session = portal.dev_login(ALICE).await;
    let html = portal
        .get("/?lang=en", &[("cookie", &session)])
        .await
        .text();
    assert_eq!(rows(&html).len(), 3);
    let welfare = source_item(&html, WELFARE);
    assert!(welfare.contains("class=\"truncated\""), "{welfare}");
    assert!(welfare.contains("Only the newest are shown"));
}

#[tokio::test]
async fn text_from_the_network_is_escaped() {
    let fake = Fake::federation()
        .member("JP/MUN/999999", "<b>Evil</b> & Co")
        .subsystem(
            "JP/MUN/999999/evil",
            "<img src=x onerror=alert(1)>",
            Behaviour::Records,
        )
        .record(
            "JP/MUN/999999/evil",
            ALICE,
            "evil-1",
            1_800_000_000_000,
            WELFARE,
            "<i>svc</i>",
            Some("<script>alert('purpose')</script>"),
        );
    let (ss, _fake, _ss_stop) = fake.start().await;
    let portal = Portal::start(config(&ss, LoginKind::Development)).await;
    let session = portal.dev_login(ALICE).await;
    let html = portal.get("/", &[("cookie", &session)]).await.text();
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>Evil"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<i>svc"));
    // maud leaves ' as it is: its attributes are always double-quoted.
    assert!(html.contains(
        "<td class=\"why\" data-label=\"目的\"><span class=\"purpose\">&lt;script&gt;alert('purpose')&lt;/script&gt;</span>"
    ));
    assert!(html.contains("&lt;b&gt;Evil&lt;/b&gt; &amp; Co"));
    assert_eq!(rows(&html)[0].0, "evil-1");
}

#[tokio::test]
async fn evidence_is_for_the_logged_in_resident_only() {
    let (ss, fake, _ss_stop) = Fake::federation().start().await;
    let portal = Portal::start(config(&ss, LoginKind::Development)).await;
    let path = "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=a-tax-1";

    let refused = portal.get(path, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.text().contains("id=\"dev-login\""));
    let forged = portal
        .get(
            path,
            &[("cookie", &format!("portal_session={}", "ab".repeat(32)))],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(
        fake.seen()
            .iter()
            .all(|s| !s.path.ends_with("usageEvidence"))
    );

    let session = portal.dev_login(ALICE).await;
    let ok = portal.get(path, &[("cookie", &session)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.header("content-type"), "application/octet-stream");
    assert_eq!(
        ok.header("content-disposition"),
        "attachment; filename=\"a-tax-1.evidence\""
    );
    assert_eq!(ok.text(), format!("EVIDENCE {RECORDS} a-tax-1 {ALICE}"));
    let asked: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("usageEvidence"))
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].subject, ALICE);
    assert_eq!(asked[0].client, PORTAL);
    assert_eq!(asked[0].path, format!("{RECORDS}/usageEvidence"));
    assert_eq!(asked[0].query, "id=a-tax-1");

    // Bob's record, asked with Alice's session: the provider finds none for her.
    let other = portal
        .get(
            "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=b-tax-1",
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(!other.text().contains("EVIDENCE"));

    let unsealed = portal
        .get(
            "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=unsealed&lang=en",
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(unsealed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unsealed.header("retry-after"), "5");
    assert!(unsealed.text().contains("not sealed in a checkpoint yet"));

    for bad in [
        "/evidence",
        "/evidence?provider=JP%2FMUN&id=x",
        "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=a%20b",
        "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=",
        "/evidence?provider=JP%2FMUN%2F131016%2Fother&id=a-tax-1%00",
        "/evidence?provider=JP%2FMUN%2F131016%2Frecords",
    ] {
        let a = portal.get(bad, &[("cookie", &session)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(a.text().contains("id=\"error\""));
    }
}

#[tokio::test]
async fn trusted_header_login_takes_the_proxy_header() {
    let (ss, fake, _ss_stop) = Fake::federation().start().await;
    // A real login: cookies are Secure without being asked to (issue 17).
    let c = config(&ss, LoginKind::TrustedHeader);
    assert!(!c.secure_cookies);
    let portal = Portal::start(c).await;

    let anonymous = portal.get("/", &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let html = anonymous.text();
    assert!(html.contains("id=\"login-required\""));
    assert!(!html.contains("dev-login") && !html.contains("dev-banner"));

    let header = [("x-authenticated-resident", ALICE)];
    let page = portal.get("/", &header).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains(&format!("<span id=\"resident-id\">{ALICE}</span>")));
    assert!(!html.contains("dev-banner"));
    assert_eq!(rows(&html).len(), 3);
    assert!(fake.seen().iter().all(|s| s.subject == ALICE));

    let api = portal.get("/api/timeline", &[]).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let evidence = portal
        .get(
            "/evidence?provider=JP%2FMUN%2F131016%2Frecords&id=a-tax-1",
            &[],
        )
        .await;
    assert_eq!(evidence.status, StatusCode::UNAUTHORIZED);
    let form = portal
        .call(
            Method::POST,
            "/login/dev",
            &[("content-type", "application/x-www-form-urlencoded")],
            "resident=x",
        )
        .await;
    assert_eq!(form.status, StatusCode::NOT_FOUND);

    let en = portal.get("/?lang=en", &header).await;
    let cookie = en.set_cookies().join("\n");
    assert!(
        cookie.contains("portal_lang=en") && cookie.contains("Secure"),
        "{cookie}"
    );
    let long = "x".repeat(65);
    let bad = portal
        .get("/", &[("x-authenticated-resident", long.as_str())])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sessions_end_and_forged_cookies_are_ignored() {
    let (ss, _fake, _ss_stop) = Fake::federation().start().await;
    let mut c = config(&ss, LoginKind::Development);
    c.secure_cookies = true;
    let portal = Portal::start(c).await;

    for cookie in [
        "portal_session=forged",
        &format!("portal_session={}", "0".repeat(64)),
        "portal_session",
        "=;=;;",
    ] {
        let a = portal.get("/", &[("cookie", cookie)]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.text().contains("id=\"dev-login\""), "{cookie}");
    }
    for body in [
        "",
        "resident=",
        "other=1",
        "resident=a%0Ab",
        "resident=%20%20",
    ] {
        let a = portal
            .call(
                Method::POST,
                "/login/dev",
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.set_cookies().is_empty());
        assert!(a.text().contains("id=\"login-error\""));
    }

    let session = portal.dev_login(ALICE).await;
    assert!(
        portal
            .get("/", &[("cookie", &session)])
            .await
            .text()
            .contains("resident-id")
    );
    let out = portal
        .call(Method::POST, "/logout", &[("cookie", &session)], "")
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let cleared = out.set_cookies().join("\n");
    assert!(cleared.contains("portal_session=;") && cleared.contains("Max-Age=0"));
    assert!(cleared.contains("Secure"));
    let after = portal.get("/", &[("cookie", &session)]).await;
    assert!(after.text().contains("id=\"dev-login\""));
}

#[tokio::test]
async fn language_follows_query_cookie_and_accept_language() {
    let (ss, _fake, _ss_stop) = Fake::federation().start().await;
    let portal = Portal::start(config(&ss, LoginKind::Development)).await;

    let ja = portal.get("/", &[]).await;
    assert!(ja.text().contains("<html lang=\"ja\">"));
    let en = portal.get("/?lang=en", &[]).await;
    assert!(en.text().contains("<html lang=\"en\">"));
    let cookie = en.set_cookies().join("\n");
    assert!(cookie.contains("portal_lang=en"), "{cookie}");
    let remembered = portal.get("/", &[("cookie", "portal_lang=en")]).await;
    assert!(remembered.text().contains("<html lang=\"en\">"));
    let accepted = portal
        .get("/", &[("accept-language", "en-GB,en;q=0.9,ja;q=0.5")])
        .await;
    assert!(accepted.text().contains("<html lang=\"en\">"));
    let unknown = portal.get("/?lang=xx&lang", &[]).await;
    assert!(unknown.text().contains("<html lang=\"ja\">"));
    assert_eq!(unknown.status, StatusCode::OK);

    let health = portal.get("/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let missing = portal.get("/nowhere", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("cache-control"), "no-store");
}

#[tokio::test]
async fn a_security_server_that_cannot_be_reached_gives_a_clear_error() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ss = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let mut c = config(&ss, LoginKind::Development);
    c.timeout_secs = 1;
    let portal = Portal::start(c.clone()).await;
    let session = portal.dev_login(ALICE).await;
    let page = portal.get("/", &[("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().contains("id=\"error\""));
    let api = portal.get("/api/timeline", &[("cookie", &session)]).await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);

    // With explicit targets, the portal still asks them and says which did not answer.
    c.targets = Some(vec![RECORDS.parse().unwrap()]);
    let portal = Portal::start(c).await;
    let session = portal.dev_login(ALICE).await;
    let page = portal.get("/", &[("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(source_item(&html, RECORDS).starts_with("<li class=\"source unavailable\""));
    assert!(html.contains("<p id=\"no-accesses\">"));
}

#[tokio::test]
async fn serve_refuses_an_invalid_configuration() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config("http://127.0.0.1:1", LoginKind::Development);
    c.login.kind = None;
    let err = resident_portal::serve(listener, c, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("kind is required"));
}
