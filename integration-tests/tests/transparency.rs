//! Resident transparency (DESIGN §7) against a whole sandbox federation: the `findUsage` and
//! `usageEvidence` metaservices, their grants, and suppression rules with an injected clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certs::ManualClock;
use http::Method;
use integration_tests::eventually;
use sandbox::{Federation, FederationSpec};

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const OSAKA: &str = "JP/MUN/271004/ss1";
const PORTAL: &str = "JP/GOV/digital-agency/portal";
const WELFARE: &str = "JP/MUN/271004/welfare";
const BENEFITS: &str = "JP/GOV/digital-agency/benefits";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const FIND_USAGE: &str = "/r1/JP/MUN/131016/records/findUsage";

async fn start(clock: Arc<dyn certs::Clock>) -> (tempfile::TempDir, Federation) {
    integration_tests::start_federation(FederationSpec::sandbox(), clock).await
}

/// A GET through `server`'s client proxy as `client` about `subject`.
async fn ask(
    f: &Federation,
    server: &str,
    client: &str,
    path_and_query: &str,
    subject: Option<&str>,
) -> runtime::Response {
    let proxy = f.server(server).unwrap().client_proxy_url().unwrap();
    let mut headers = vec![
        ("X-Road-Client", client),
        ("X-Road-Purpose", "本人による利用履歴の確認"),
    ];
    if let Some(s) = subject {
        headers.push(("X-Road-Data-Subject", s));
    }
    runtime::HttpClient::plain()
        .request(
            Method::GET,
            &format!("{proxy}{path_and_query}"),
            &headers,
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
}

async fn usage(f: &Federation, subject: &str) -> serde_json::Value {
    let r = ask(f, MINISTRY, PORTAL, FIND_USAGE, Some(subject)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json().unwrap()
}

fn clients(page: &serde_json::Value) -> Vec<String> {
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client"].as_str().unwrap().to_owned())
        .collect()
}

async fn admin(
    f: &Federation,
    server: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> runtime::Response {
    let s = f.server(server).unwrap();
    let url = format!("http://{}{path}", s.running().unwrap().admin_addr);
    let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap().into()));
    runtime::HttpClient::plain()
        .send(method, &url, Some(&s.admin_token), body)
        .await
        .unwrap()
}

#[tokio::test]
async fn find_usage_lists_one_residents_accesses_newest_first_to_the_granted_portal_only() {
    let (_dir, f) = start(Arc::new(certs::SystemClock)).await;

    // Resident 1: the sample exchanges of the Digital Agency's benefits system, then Osaka's
    // welfare office; both recorded by Chiyoda's server, newest first, with names and purposes.
    let page = usage(&f, "131016000001").await;
    assert_eq!(page["server"], CHIYODA);
    assert_eq!(page["provider"], "JP/MUN/131016/records");
    assert_eq!(page["more"], false);
    assert_eq!(clients(&page), [WELFARE, BENEFITS]);
    let welfare = &page["records"][0];
    assert_eq!(welfare["client_member_name"], "Osaka City (大阪市)");
    assert_eq!(
        welfare["client_subsystem_name"],
        "Welfare office (福祉事務所)"
    );
    assert_eq!(welfare["service"], "JP/MUN/131016/records/taxCertificate");
    assert_eq!(welfare["service_code"], "taxCertificate");
    assert_eq!(
        welfare["purpose"],
        "生活保護の要否判定 (public assistance assessment)"
    );
    assert_eq!(welfare["method"], "GET");
    assert_eq!(welfare["status"], 200);
    assert!(
        welfare["time_ms"].as_i64().unwrap() >= page["records"][1]["time_ms"].as_i64().unwrap()
    );
    assert_eq!(page["records"][1]["service_code"], "residentRecord");

    // Paging.
    let r = ask(
        &f,
        MINISTRY,
        PORTAL,
        &format!("{FIND_USAGE}?limit=1&offset=1"),
        Some("131016000001"),
    )
    .await;
    let second: serde_json::Value = r.json().unwrap();
    assert_eq!(clients(&second), [BENEFITS]);
    assert_eq!(second["more"], false);
    let r = ask(
        &f,
        MINISTRY,
        PORTAL,
        &format!("{FIND_USAGE}?limit=1"),
        Some("131016000001"),
    )
    .await;
    assert_eq!(r.json::<serde_json::Value>().unwrap()["more"], true);

    // Other residents see only their own; the portal's own questions are not accesses.
    assert_eq!(clients(&usage(&f, "131016000002").await), [BENEFITS]);
    assert_eq!(clients(&usage(&f, "131016000003").await), [WELFARE]);
    assert!(clients(&usage(&f, "131016000009").await).is_empty());
    assert_eq!(clients(&usage(&f, "131016000001").await).len(), 2);

    // Without the grant: refused, and the refusal says so.
    let r = ask(&f, OSAKA, WELFARE, FIND_USAGE, Some("131016000001")).await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.AccessDenied"
    );
    let r = ask(&f, MINISTRY, BENEFITS, FIND_USAGE, Some("131016000001")).await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.AccessDenied"
    );
    // Without a data subject, or with a bad page number: the client's mistake.
    let r = ask(&f, MINISTRY, PORTAL, FIND_USAGE, None).await;
    assert_eq!(integration_tests::x_road_error(&r), "Client.BadRequest");
    let r = ask(
        &f,
        MINISTRY,
        PORTAL,
        &format!("{FIND_USAGE}?offset=-1"),
        Some("x"),
    )
    .await;
    assert_eq!(integration_tests::x_road_error(&r), "Client.BadRequest");

    // Each call was itself logged at the provider, under the resident's subject index.
    let log = f.server(CHIYODA).unwrap().running().unwrap().log.clone();
    let logged = log.find_by_subject("131016000001").unwrap();
    let mut find_usage_requests = 0;
    for i in logged {
        let record = log.record(i).unwrap().unwrap().decode().unwrap();
        if record.service.ends_with("/findUsage") {
            assert_eq!(record.client, PORTAL);
            find_usage_requests += 1;
        }
    }
    assert!(find_usage_requests >= 4, "{find_usage_requests}");
    f.stop().await;
}

#[tokio::test]
async fn usage_evidence_is_only_for_the_residents_own_records_and_verifies_offline() {
    let (_dir, f) = start(Arc::new(certs::SystemClock)).await;
    let page = usage(&f, "131016000003").await;
    let id = page["records"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/r1/JP/MUN/131016/records/usageEvidence?id={id}");

    // Another resident may not have it, whatever the id.
    let r = ask(&f, MINISTRY, PORTAL, &path, Some("131016000001")).await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.UsageRecordNotFound"
    );
    let r = ask(&f, OSAKA, WELFARE, &path, Some("131016000003")).await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.AccessDenied"
    );

    // Once a checkpoint covers it (1 s), the bundle verifies with the anchor alone.
    let bundle = eventually("a checkpoint covering the usage record", || async {
        let r = ask(&f, MINISTRY, PORTAL, &path, Some("131016000003")).await;
        if r.status.as_u16() == 200 {
            return Some(r.body.to_vec());
        }
        assert_eq!(
            integration_tests::x_road_error(&r),
            "Server.ServerProxy.NotYetCheckpointed",
            "{}",
            r.text()
        );
        None
    })
    .await;
    assert!(integration_tests::verify_offline(&f, &bundle).passed());
    let decoded: proto::v1::EvidenceBundle = prost::Message::decode(bundle.as_slice()).unwrap();
    assert_eq!(decoded.records.len(), 2, "the request and its response");
    assert!(
        decoded
            .records
            .iter()
            .all(|r| !r.has_body && r.body.is_empty()),
        "no bodies for residents"
    );
    f.stop().await;
}

#[tokio::test]
async fn suppression_hides_and_after_the_delay_reveals_with_the_change_audited() {
    let clock = ManualClock::new(SystemTime::now());
    let (_dir, f) = start(Arc::new(clock.clone())).await;
    assert_eq!(
        clients(&usage(&f, "131016000001").await),
        [WELFARE, BENEFITS]
    );
    let osaka_access = usage(&f, "131016000003").await["records"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Delay Osaka City's accesses by a day: hidden now.
    let rule = serde_json::json!({
        "client": "JP/MUN/271004",
        "delay_secs": 86_400,
        "reason": "捜査関係事項照会 (investigation)",
    });
    let r = admin(
        &f,
        CHIYODA,
        Method::POST,
        "/v1/suppressions",
        Some(rule.clone()),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_eq!(clients(&usage(&f, "131016000001").await), [BENEFITS]);
    assert!(clients(&usage(&f, "131016000003").await).is_empty());
    // Evidence of a suppressed access is not given either.
    let r = ask(
        &f,
        MINISTRY,
        PORTAL,
        &format!("/r1/JP/MUN/131016/records/usageEvidence?id={osaka_access}"),
        Some("131016000003"),
    )
    .await;
    assert_eq!(
        integration_tests::x_road_error(&r),
        "Server.ServerProxy.UsageRecordNotFound"
    );
    assert_eq!(clients(&usage(&f, "131016000002").await), [BENEFITS]);

    // A day later, the accesses are old enough to be shown.
    clock.advance(Duration::from_secs(86_400 - 5));
    assert_eq!(clients(&usage(&f, "131016000001").await), [BENEFITS]);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        clients(&usage(&f, "131016000001").await),
        [WELFARE, BENEFITS]
    );

    // Hiding lasts until the rule is removed.
    let hide = serde_json::json!({"client": BENEFITS, "reason": "audit"});
    let r = admin(&f, CHIYODA, Method::POST, "/v1/suppressions", Some(hide)).await;
    assert_eq!(r.status.as_u16(), 201);
    clock.advance(Duration::from_secs(365 * 86_400 / 100));
    assert_eq!(clients(&usage(&f, "131016000001").await), [WELFARE]);
    let r = admin(
        &f,
        CHIYODA,
        Method::POST,
        "/v1/suppressions/remove",
        Some(serde_json::json!({"client": BENEFITS})),
    )
    .await;
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(
        clients(&usage(&f, "131016000001").await),
        [WELFARE, BENEFITS]
    );

    // Every rule change is in the audit log, with the rule.
    let r = admin(&f, CHIYODA, Method::GET, "/v1/audit", None).await;
    let audit: Vec<serde_json::Value> = r.json().unwrap();
    let changes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("suppression."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["details"]["rule"]["client"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("suppression.add", "JP/MUN/271004"),
            ("suppression.add", BENEFITS),
            ("suppression.remove", BENEFITS)
        ]
    );
    let r = admin(&f, CHIYODA, Method::GET, "/v1/suppressions", None).await;
    assert_eq!(
        r.json::<serde_json::Value>().unwrap(),
        serde_json::json!([rule])
    );
    f.stop().await;
}
