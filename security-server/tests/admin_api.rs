#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin API changes services and access rights of the running configuration at once (no
//! restart), only with the bearer token, and refuses bad input with an `Admin.*` error.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use certs::{ManualClock, SigningKey, TlsIdentity};
use globalconf::{Anchor, InstanceId};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use security_server::admin::Admin;
use security_server::confclient::ConfClient;
use security_server::peer::PeerPool;
use security_server::serverconf::ServerConf;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const TOKEN: &str = "0123456789abcdef";
const RECORDS: &str = "JP/MUN/131016/records/residentRecord";
const PORTAL: &str = "JP/GOV/digital-agency/portal";

struct Fixture {
    router: Router,
    serverconf: Arc<ServerConf>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_unix(1_800_000_000);
    let ca =
        certs::CertificateAuthority::generate("JP", Duration::from_secs(86_400), &clock).unwrap();
    let anchor = Anchor::new(
        "JP".parse::<InstanceId>().unwrap(),
        vec!["https://127.0.0.1:1".into()],
        ca.certificate_pem(),
        vec![SigningKey::generate().unwrap().public_key()],
    )
    .unwrap();
    let peers = Arc::new(PeerPool::new(
        certs::LiveIdentity::new(
            TlsIdentity::new(vec![], SigningKey::generate().unwrap()),
            Arc::new(clock.clone()),
        )
        .unwrap(),
        Duration::from_secs(1),
        1 << 20,
    ));
    let conf = Arc::new(
        ConfClient::open(
            anchor,
            dir.path().join("globalconf.bin"),
            "JP/MUN/131016/ss1".parse().unwrap(),
            peers,
            Duration::from_secs(1),
            None,
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    let serverconf = Arc::new(
        ServerConf::open(&dir.path().join("serverconf.redb"))
            .unwrap()
            .with_clock(Arc::new(clock)),
    );
    let router = Admin::new(conf, Arc::clone(&serverconf), TOKEN).router();
    Fixture {
        router,
        serverconf,
        _dir: dir,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(TOKEN), body).await
    }
}

fn records_service() -> Value {
    json!({"id": RECORDS, "url": "http://127.0.0.1:9000/api", "timeout_secs": 30})
}

fn records_grant() -> Value {
    json!({"service": RECORDS, "subject": PORTAL, "method": "GET", "path": "/persons/*"})
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["type"], kind, "{}", answer.1);
    assert!(answer.1["message"].is_string(), "{}", answer.1);
}

#[tokio::test]
async fn every_v1_endpoint_needs_the_token() {
    let f = fixture();
    let endpoints = [
        (Method::GET, "/v1/status", None),
        (Method::POST, "/v1/globalconf/refresh", None),
        (Method::GET, "/v1/services", None),
        (Method::POST, "/v1/services", Some(records_service())),
        (
            Method::DELETE,
            "/v1/services/JP%2FMUN%2F131016%2Frecords%2FresidentRecord",
            None,
        ),
        (Method::GET, "/v1/access", None),
        (Method::POST, "/v1/access", Some(records_grant())),
        (Method::POST, "/v1/access/revoke", Some(records_grant())),
        (Method::GET, "/v1/audit", None),
        (Method::GET, "/v1/no-such-endpoint", None),
    ];
    for (method, path, body) in endpoints {
        for token in [None, Some("wrong"), Some("")] {
            let answer = f.call(method.clone(), path, token, body.clone()).await;
            assert_error(&answer, StatusCode::UNAUTHORIZED, "Admin.Unauthorized");
        }
    }
    assert!(f.serverconf.snapshot().services.is_empty());
    assert!(f.serverconf.audit(10).unwrap().is_empty());
    // /health is for load balancers: no token (503 here: no global configuration yet).
    let (status, body) = f.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
}

#[tokio::test]
async fn changes_apply_at_once_and_are_audited() {
    let f = fixture();
    let (status, body) = f
        .admin(Method::POST, "/v1/services", Some(records_service()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = RECORDS.parse().unwrap();
    assert_eq!(
        f.serverconf.snapshot().service(&id).unwrap().url,
        "http://127.0.0.1:9000/api"
    );
    // The same again replaces (nothing changes): 200.
    let (status, _) = f
        .admin(Method::POST, "/v1/services", Some(records_service()))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = f
        .admin(Method::POST, "/v1/access", Some(records_grant()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, records_grant());
    let snapshot = f.serverconf.snapshot();
    assert_eq!(snapshot.access.grants().len(), 1);
    assert_eq!(
        snapshot.access.grants()[0].path.as_deref(),
        Some("/persons/*")
    );
    let (status, _) = f
        .admin(Method::POST, "/v1/access", Some(records_grant()))
        .await;
    assert_eq!(status, StatusCode::OK, "already granted");

    let (status, body) = f.admin(Method::GET, "/v1/services", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["id"], RECORDS);
    let (status, body) = f.admin(Method::GET, "/v1/access", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([records_grant()]));
    let (_, body) = f.admin(Method::GET, "/v1/status", None).await;
    assert_eq!(
        (body["services"].clone(), body["grants"].clone()),
        (json!(1), json!(1))
    );

    let (status, body) = f
        .admin(Method::POST, "/v1/access/revoke", Some(records_grant()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(f.serverconf.snapshot().access.grants().is_empty());
    let answer = f
        .admin(Method::POST, "/v1/access/revoke", Some(records_grant()))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Admin.NotFound");

    f.admin(Method::POST, "/v1/access", Some(records_grant()))
        .await;
    let (status, _) = f
        .admin(
            Method::DELETE,
            "/v1/services/JP%2FMUN%2F131016%2Frecords%2FresidentRecord",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let snapshot = f.serverconf.snapshot();
    assert!(snapshot.services.is_empty());
    assert!(
        snapshot.access.grants().is_empty(),
        "the service's grants went with it"
    );
    let answer = f
        .admin(Method::DELETE, &format!("/v1/services/{RECORDS}"), None)
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Admin.NotFound");

    let (status, body) = f.admin(Method::GET, "/v1/audit?limit=10", None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "service.add",
            "access.grant",
            "access.revoke",
            "access.grant",
            "service.remove"
        ]
    );
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .all(|e| e["time"] == 1_800_000_000)
    );
    let (_, body) = f.admin(Method::GET, "/v1/audit?limit=2", None).await;
    assert_eq!(body[1]["action"], "service.remove");
    assert_eq!(body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_is_refused_with_an_admin_error() {
    let f = fixture();
    let bad_services = [
        json!({"id": "JP/MUN/131016/records", "url": "http://127.0.0.1:9000", "timeout_secs": 30}),
        json!({"id": "JP/MUN/131016/rec ords/x", "url": "http://127.0.0.1:9000", "timeout_secs": 30}),
        json!({"id": RECORDS, "url": "ftp://127.0.0.1:9000", "timeout_secs": 30}),
        json!({"id": RECORDS, "url": "http://", "timeout_secs": 30}),
        json!({"id": RECORDS, "url": "http://127.0.0.1:9000?x=1", "timeout_secs": 30}),
        json!({"id": RECORDS, "url": "http://127.0.0.1:9000", "timeout_secs": 0}),
        json!({"id": RECORDS, "url": "http://127.0.0.1:9000", "timeout_secs": 30, "extra": 1}),
        json!({"id": RECORDS, "timeout_secs": 30}),
        json!("not an object"),
    ];
    for body in bad_services {
        let answer = f
            .admin(Method::POST, "/v1/services", Some(body.clone()))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "Admin.BadRequest");
    }
    let answer = f
        .admin(
            Method::DELETE,
            "/v1/services/JP%2FMUN%2Fnot-a-service",
            None,
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "Admin.BadRequest");
    assert!(f.serverconf.snapshot().services.is_empty());

    // A grant for a service that is not there.
    let answer = f
        .admin(Method::POST, "/v1/access", Some(records_grant()))
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "Admin.UnknownService");
    f.admin(Method::POST, "/v1/services", Some(records_service()))
        .await;
    let bad_grants = [
        json!({"service": RECORDS, "subject": "JP/GOV/x/y/z"}),
        json!({"service": RECORDS, "subject": PORTAL, "method": "CONNECT"}),
        json!({"service": RECORDS, "subject": PORTAL, "path": "/a/**/b"}),
        json!({"service": RECORDS, "subject": PORTAL, "path": "/../admin"}),
        json!({"service": RECORDS, "subject": PORTAL, "extra": true}),
    ];
    for body in bad_grants {
        let answer = f
            .admin(Method::POST, "/v1/access", Some(body.clone()))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "Admin.BadRequest");
    }
    assert!(f.serverconf.snapshot().access.grants().is_empty());
    let answer = f.admin(Method::GET, "/v1/audit?limit=many", None).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "Admin.BadRequest");
    let answer = f.admin(Method::GET, "/v1/no-such-endpoint", None).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Admin.NotFound");
}
