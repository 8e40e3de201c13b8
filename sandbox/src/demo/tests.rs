use super::*;
use axum::body::Body;
use axum::body::Bytes;
use axum::http::Request;
use tower::ServiceExt;

async fn call(request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body)
}

async fn get_json(uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = call(Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn the_data_set_is_big_enough_and_ids_are_unique_twelve_digits() {
    assert!(RESIDENTS.len() >= 8);
    let mut ids: Vec<_> = RESIDENTS.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RESIDENTS.len());
    for r in RESIDENTS {
        assert_eq!(r.id.len(), 12);
        assert!(r.id.bytes().all(|b| b.is_ascii_digit()));
        assert!(r.id.starts_with(MUNICIPALITY_CODE));
        assert!(r.address.starts_with(MUNICIPALITY_NAME));
    }
}

#[tokio::test]
async fn a_resident_record_echoes_the_x_road_headers() {
    let request = Request::get("/residents/131016000001")
        .header("X-Road-Client", "JP/GOV/digital-agency/portal")
        .header("X-Road-Id", "abc-123")
        .header("X-Road-Data-Subject", "131016000001")
        .header(
            "X-Road-Purpose",
            HeaderValue::from_bytes("児童手当の認定".as_bytes()).unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["residentId"], "131016000001");
    assert_eq!(v["name"]["romaji"], "Yamada Taro");
    assert_eq!(v["household"]["members"].as_array().unwrap().len(), 4);
    assert_eq!(v["household"]["head"], "山田 太郎");
    assert_eq!(v["_meta"]["X-Road-Client"], "JP/GOV/digital-agency/portal");
    assert_eq!(v["_meta"]["X-Road-Id"], "abc-123");
    assert_eq!(v["_meta"]["X-Road-Data-Subject"], "131016000001");
    assert_eq!(v["_meta"]["X-Road-Purpose"], "児童手当の認定");
}

#[tokio::test]
async fn absent_headers_are_null_in_meta() {
    let (status, v) = get_json("/residents/131016000005").await;
    assert_eq!(status, StatusCode::OK);
    for name in META_HEADERS {
        assert_eq!(v["_meta"][name], Value::Null, "{name}");
    }
}

#[tokio::test]
async fn an_unknown_resident_is_a_404_problem() {
    let (status, headers, body) = call(
        Request::get("/residents/131016999999")
            .header("X-Road-Id", "id-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["title"], "Not Found");
    assert!(v["detail"].as_str().unwrap().contains("131016999999"));
    assert_eq!(v["_meta"]["X-Road-Id"], "id-1");

    let (status, v) = get_json("/tax-certificates/000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["status"], 404);
    let (status, v) = get_json("/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"], "no such resource: /nothing/here");
}

#[tokio::test]
async fn search_matches_kanji_kana_and_romaji() {
    // 山田 in percent-encoded UTF-8, as the gateway passes the query on.
    let (status, v) = get_json("/residents?name=%E5%B1%B1%E7%94%B0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["count"], 4);
    let (_, v) = get_json("/residents?name=suzuki").await;
    assert_eq!(v["count"], 2);
    let (_, v) = get_json("/residents?name=yamada%20taro").await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["residents"][0]["residentId"], "131016000001");
    let (_, v) = get_json("/residents/?name=%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E").await;
    assert_eq!(v["count"], 1, "山田太郎 without the space");
    let (_, v) = get_json("/residents?name=nobody").await;
    assert_eq!(v["count"], 0);
    let (_, v) = get_json("/residents").await;
    assert_eq!(v["count"], RESIDENTS.len());
}

#[tokio::test]
async fn tax_certificates_follow_the_demo_rules() {
    let (status, v) = get_json("/tax-certificates/131016000001?year=2025").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["fiscalYear"], 2025);
    assert_eq!(v["incomeYear"], 2024);
    assert_eq!(v["totalIncome"], 6_200_000);
    // 6,200,000 − 430,000 − 930,000 = 4,840,000; 6 % and 4 % of it, plus 5,000.
    assert_eq!(v["taxableIncome"], 4_840_000);
    assert_eq!(v["residentTax"]["municipal"], 290_400);
    assert_eq!(v["residentTax"]["prefectural"], 193_600);
    assert_eq!(v["residentTax"]["total"], 489_000);
    assert_eq!(v["taxExempt"], false);

    let (_, default_year) = get_json("/tax-certificates/131016000001").await;
    assert_eq!(default_year["fiscalYear"], 2025);
    let (_, older) = get_json("/tax-certificates/131016000001?year=2024").await;
    assert_eq!(older["totalIncome"], 6_000_000);

    let (_, child) = get_json("/tax-certificates/131016000003?year=2025").await;
    assert_eq!(child["taxExempt"], true);
    assert_eq!(child["residentTax"]["total"], 0);

    let (status, _) = get_json("/tax-certificates/131016000001?year=1999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = get_json("/tax-certificates/131016000001?year=next").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["status"], 400);
}

#[tokio::test]
async fn echo_returns_the_body_and_its_content_type() {
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (status, headers, got) = call(
        Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/x-test")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-test");
    assert_eq!(got.as_ref(), body.as_slice());

    let (status, headers, got) = call(Request::post("/echo").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert!(got.is_empty());
}

#[test]
fn openapi_documents_are_json_with_the_service_url() {
    let service: ServiceId = "JP/MUN/131016/records/residentRecord".parse().unwrap();
    for api in [
        DemoApi::ResidentRecord,
        DemoApi::TaxCertificate,
        DemoApi::Echo,
    ] {
        let doc: Value = serde_json::from_str(&api.openapi(&service)).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(
            doc["servers"][0]["url"],
            "/r1/JP/MUN/131016/records/residentRecord"
        );
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
