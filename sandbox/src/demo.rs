//! The demo provider information system: a municipality's resident-records and tax systems, in the
//! spirit of Japan's standard linkage between municipal systems (自治体標準準拠システム, queried
//! through the 中間サーバー). Everything here is synthetic: the people, their addresses and their
//! incomes are invented, and the tax figures follow simplified rules, not the real tax law.
//!
//! It is what the sandbox registers behind `JP/MUN/131016/records/*`, and what benchmarks call
//! directly to compare with the gateway path.
//!
//! | route | service | answer |
//! |---|---|---|
//! | `GET /residents/{id}` | `residentRecord` (住民票) | one resident's record |
//! | `GET /residents?name=…` | `residentRecord` | residents whose name (kanji, kana or romaji) contains the text; all without `name` |
//! | `GET /tax-certificates/{id}?year=2025` | `taxCertificate` (課税証明書) | income and resident tax of one fiscal year (2024 or 2025; default 2025) |
//! | `POST /echo` | `echo` | the request body, byte for byte, with its content type |
//!
//! JSON answers carry a `_meta` object echoing the `X-Road-Client`, `X-Road-Id`,
//! `X-Road-Data-Subject` and `X-Road-Purpose` headers the backend received (`null` when absent),
//! so a demo or a test sees what the gateway passed on. Unknown residents and routes get a 404 with
//! an RFC 9457 problem body (`application/problem+json`), which the gateway passes through as is.

use std::future::Future;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use globalconf::ServiceId;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The X-Road headers echoed in `_meta`, under these exact names.
pub const META_HEADERS: [&str; 4] = [
    "X-Road-Client",
    "X-Road-Id",
    "X-Road-Data-Subject",
    "X-Road-Purpose",
];

/// The demo backend's routes.
pub fn router() -> Router {
    Router::new()
        .route("/residents", get(search_residents))
        .route("/residents/", get(search_residents))
        .route("/residents/{id}", get(resident_record))
        .route("/tax-certificates/{id}", get(tax_certificate))
        .route("/echo", post(echo))
        .fallback(not_found)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    runtime::serve_http(listener, None, router(), shutdown).await
}

/// The APIs of the demo backend, one per sample service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoApi {
    /// 住民票: `GET /residents/{id}`, `GET /residents?name=…`.
    ResidentRecord,
    /// 課税証明書: `GET /tax-certificates/{id}?year=…`.
    TaxCertificate,
    /// `POST /echo`.
    Echo,
}

impl DemoApi {
    /// What residents see the service as, in Japanese and English.
    pub fn names(self) -> [(&'static str, &'static str); 2] {
        match self {
            DemoApi::ResidentRecord => [("ja", "住民票"), ("en", "Resident record")],
            DemoApi::TaxCertificate => [("ja", "課税証明書"), ("en", "Tax certificate")],
            DemoApi::Echo => [("ja", "エコー (試験用)"), ("en", "Echo (for testing)")],
        }
    }

    /// The path on the backend that the service's base URL points at.
    pub fn path(self) -> &'static str {
        match self {
            DemoApi::ResidentRecord => "/residents",
            DemoApi::TaxCertificate => "/tax-certificates",
            DemoApi::Echo => "/echo",
        }
    }

    /// A small OpenAPI 3 document of the service as clients see it (paths below the service's
    /// `/r1/...` URL), for the `getOpenAPI` metaservice.
    pub fn openapi(self, service: &ServiceId) -> String {
        let server = json!([{ "url": format!("/r1/{service}"),
                              "description": "through the client's security server" }]);
        let problem = json!({
            "description": "unknown resident or year",
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
        });
        let components = json!({
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": { "type": "string" }, "title": { "type": "string" },
                        "status": { "type": "integer" }, "detail": { "type": "string" }
                    }
                },
                "Name": {
                    "type": "object",
                    "properties": {
                        "kanji": { "type": "string", "example": "山田 太郎" },
                        "kana": { "type": "string", "example": "ヤマダ タロウ" },
                        "romaji": { "type": "string", "example": "Yamada Taro" }
                    }
                }
            }
        });
        let resident_id = json!({
            "name": "residentId", "in": "path", "required": true,
            "schema": { "type": "string", "pattern": "^[0-9]{12}$" }, "example": "131016000001"
        });
        let doc = match self {
            DemoApi::ResidentRecord => json!({
                "openapi": "3.0.3",
                "info": {
                    "title": "住民票 (resident record), Chiyoda City — synthetic demo",
                    "version": "1.0.0",
                    "description": "Resident records of the sandbox's demo municipality. All data is fictitious."
                },
                "servers": server,
                "paths": {
                    "/": {
                        "get": {
                            "summary": "Search residents by name (kanji, kana or romaji; substring)",
                            "parameters": [{ "name": "name", "in": "query", "schema": { "type": "string" } }],
                            "responses": { "200": { "description": "matching residents" } }
                        }
                    },
                    "/{residentId}": {
                        "get": {
                            "summary": "One resident's record (住民票)",
                            "parameters": [resident_id],
                            "responses": { "200": { "description": "the record" }, "404": problem }
                        }
                    }
                },
                "components": components
            }),
            DemoApi::TaxCertificate => json!({
                "openapi": "3.0.3",
                "info": {
                    "title": "課税証明書 (tax certificate), Chiyoda City — synthetic demo",
                    "version": "1.0.0",
                    "description": "Income and resident tax of one fiscal year. Fictitious figures, simplified rules."
                },
                "servers": server,
                "paths": {
                    "/{residentId}": {
                        "get": {
                            "summary": "The tax certificate of one fiscal year",
                            "parameters": [
                                resident_id,
                                { "name": "year", "in": "query",
                                  "schema": { "type": "integer", "enum": [2024, 2025], "default": 2025 } }
                            ],
                            "responses": { "200": { "description": "the certificate" }, "404": problem }
                        }
                    }
                },
                "components": components
            }),
            DemoApi::Echo => json!({
                "openapi": "3.0.3",
                "info": { "title": "Echo (round-trip and benchmark service)", "version": "1.0.0" },
                "servers": server,
                "paths": {
                    "/": {
                        "post": {
                            "summary": "Returns the request body unchanged",
                            "requestBody": { "content": { "*/*": {} } },
                            "responses": { "200": { "description": "the same bytes", "content": { "*/*": {} } } }
                        }
                    }
                }
            }),
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------------

/// One fictitious resident of Chiyoda City.
#[derive(Debug)]
struct Resident {
    id: &'static str,
    kanji: &'static str,
    kana: &'static str,
    romaji: &'static str,
    birth_date: &'static str,
    sex: &'static str,
    address: &'static str,
    household: &'static str,
    relationship: &'static str,
    resident_since: &'static str,
    /// Total income (総所得金額, yen) on which fiscal year 2024 and 2025 taxes are based.
    income: [(u16, u64); 2],
}

const MUNICIPALITY_CODE: &str = "131016";
const MUNICIPALITY_NAME: &str = "東京都千代田区";

const RESIDENTS: &[Resident] = &[
    Resident {
        id: "131016000001",
        kanji: "山田 太郎",
        kana: "ヤマダ タロウ",
        romaji: "Yamada Taro",
        birth_date: "1980-04-12",
        sex: "male",
        address: "東京都千代田区麹町2丁目3-4 サンプルレジデンス501",
        household: "H131016-0001",
        relationship: "世帯主 (head of household)",
        resident_since: "2012-04-01",
        income: [(2024, 6_000_000), (2025, 6_200_000)],
    },
    Resident {
        id: "131016000002",
        kanji: "山田 花子",
        kana: "ヤマダ ハナコ",
        romaji: "Yamada Hanako",
        birth_date: "1982-09-03",
        sex: "female",
        address: "東京都千代田区麹町2丁目3-4 サンプルレジデンス501",
        household: "H131016-0001",
        relationship: "妻 (wife)",
        resident_since: "2012-04-01",
        income: [(2024, 2_300_000), (2025, 2_400_000)],
    },
    Resident {
        id: "131016000003",
        kanji: "山田 一郎",
        kana: "ヤマダ イチロウ",
        romaji: "Yamada Ichiro",
        birth_date: "2014-06-21",
        sex: "male",
        address: "東京都千代田区麹町2丁目3-4 サンプルレジデンス501",
        household: "H131016-0001",
        relationship: "子 (child)",
        resident_since: "2014-06-21",
        income: [(2024, 0), (2025, 0)],
    },
    Resident {
        id: "131016000004",
        kanji: "山田 さくら",
        kana: "ヤマダ サクラ",
        romaji: "Yamada Sakura",
        birth_date: "2018-03-30",
        sex: "female",
        address: "東京都千代田区麹町2丁目3-4 サンプルレジデンス501",
        household: "H131016-0001",
        relationship: "子 (child)",
        resident_since: "2018-03-30",
        income: [(2024, 0), (2025, 0)],
    },
    Resident {
        id: "131016000005",
        kanji: "佐藤 健",
        kana: "サトウ ケン",
        romaji: "Sato Ken",
        birth_date: "1975-11-30",
        sex: "male",
        address: "東京都千代田区神田神保町1丁目9-9 見本ビル3F",
        household: "H131016-0002",
        relationship: "世帯主 (head of household)",
        resident_since: "2003-10-15",
        income: [(2024, 8_300_000), (2025, 8_500_000)],
    },
    Resident {
        id: "131016000006",
        kanji: "鈴木 美咲",
        kana: "スズキ ミサキ",
        romaji: "Suzuki Misaki",
        birth_date: "1990-01-15",
        sex: "female",
        address: "東京都千代田区外神田3丁目8-8 テストコーポ202",
        household: "H131016-0003",
        relationship: "世帯主 (head of household)",
        resident_since: "2019-07-01",
        income: [(2024, 3_600_000), (2025, 3_800_000)],
    },
    Resident {
        id: "131016000007",
        kanji: "鈴木 大翔",
        kana: "スズキ ヒロト",
        romaji: "Suzuki Hiroto",
        birth_date: "2020-08-08",
        sex: "male",
        address: "東京都千代田区外神田3丁目8-8 テストコーポ202",
        household: "H131016-0003",
        relationship: "子 (child)",
        resident_since: "2020-08-08",
        income: [(2024, 0), (2025, 0)],
    },
    Resident {
        id: "131016000008",
        kanji: "高橋 陽子",
        kana: "タカハシ ヨウコ",
        romaji: "Takahashi Yoko",
        birth_date: "1948-02-29",
        sex: "female",
        address: "東京都千代田区九段北4丁目5-6 例示ハイツ1F",
        household: "H131016-0004",
        relationship: "世帯主 (head of household)",
        resident_since: "1975-03-20",
        income: [(2024, 400_000), (2025, 420_000)],
    },
    Resident {
        id: "131016000009",
        kanji: "田中 誠",
        kana: "タナカ マコト",
        romaji: "Tanaka Makoto",
        birth_date: "1999-07-07",
        sex: "male",
        address: "東京都千代田区飯田橋2丁目7-1 サンプルタワー1204",
        household: "H131016-0005",
        relationship: "世帯主 (head of household)",
        resident_since: "2022-04-01",
        income: [(2024, 3_900_000), (2025, 4_200_000)],
    },
    Resident {
        id: "131016000010",
        kanji: "伊藤 翔太",
        kana: "イトウ ショウタ",
        romaji: "Ito Shota",
        birth_date: "1986-12-01",
        sex: "male",
        address: "東京都千代田区一番町6-2 見本マンション303",
        household: "H131016-0006",
        relationship: "世帯主 (head of household)",
        resident_since: "2016-11-01",
        income: [(2024, 5_000_000), (2025, 5_100_000)],
    },
];

fn find(id: &str) -> Option<&'static Resident> {
    RESIDENTS.iter().find(|r| r.id == id)
}

fn name_json(r: &Resident) -> Value {
    json!({ "kanji": r.kanji, "kana": r.kana, "romaji": r.romaji })
}

fn record_json(r: &Resident) -> Value {
    let members: Vec<Value> = RESIDENTS
        .iter()
        .filter(|m| m.household == r.household)
        .map(|m| json!({ "residentId": m.id, "name": m.kanji, "relationship": m.relationship }))
        .collect();
    let head = RESIDENTS
        .iter()
        .find(|m| m.household == r.household && m.relationship.starts_with("世帯主"))
        .map(|m| m.kanji);
    json!({
        "residentId": r.id,
        "name": name_json(r),
        "birthDate": r.birth_date,
        "sex": r.sex,
        "address": r.address,
        "municipality": { "code": MUNICIPALITY_CODE, "name": MUNICIPALITY_NAME },
        "household": {
            "id": r.household,
            "head": head,
            "relationship": r.relationship,
            "members": members,
        },
        "residentSince": r.resident_since,
        "synthetic": true,
    })
}

/// The basic deduction (基礎控除) and the non-taxable limit of the simplified demo rules.
const BASIC_DEDUCTION: u64 = 430_000;
const NON_TAXABLE_LIMIT: u64 = 450_000;
/// Per-capita levy: 区民税 3,000 + 都民税 1,000 + 森林環境税 1,000.
const PER_CAPITA: u64 = 5_000;

fn tax_json(r: &Resident, fiscal_year: u16, total_income: u64) -> Value {
    // Simplified, synthetic rules: social insurance is taken as 15 % of income; the taxable
    // income is rounded down to 1,000 yen and taxed at 10 % (区民税 6 %, 都民税 4 %), rounded
    // down to 100 yen.
    let social_insurance = total_income * 15 / 100;
    let deductions = if total_income == 0 {
        0
    } else {
        BASIC_DEDUCTION + social_insurance
    };
    let taxable = total_income.saturating_sub(deductions) / 1_000 * 1_000;
    let exempt = total_income <= NON_TAXABLE_LIMIT;
    let (municipal, prefectural, per_capita) = if exempt {
        (0, 0, 0)
    } else {
        (
            taxable * 6 / 100 / 100 * 100,
            taxable * 4 / 100 / 100 * 100,
            PER_CAPITA,
        )
    };
    json!({
        "residentId": r.id,
        "name": name_json(r),
        "address": r.address,
        "fiscalYear": fiscal_year,
        "incomeYear": fiscal_year - 1,
        "totalIncome": total_income,
        "deductions": deductions,
        "taxableIncome": taxable,
        "taxExempt": exempt,
        "residentTax": {
            "municipal": municipal,
            "prefectural": prefectural,
            "perCapita": per_capita,
            "total": municipal + prefectural + per_capita,
        },
        "currency": "JPY",
        "issuer": "千代田区長 (synthetic demo)",
        "synthetic": true,
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// The X-Road headers as received; raw UTF-8 (as X-Road-Purpose may be) is shown as text.
fn meta(headers: &HeaderMap) -> Value {
    let map = META_HEADERS
        .iter()
        .map(|name| {
            let value = headers
                .get(*name)
                .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .unwrap_or(Value::Null);
            ((*name).to_owned(), value)
        })
        .collect();
    Value::Object(map)
}

fn with_meta(mut body: Value, headers: &HeaderMap) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert("_meta".into(), meta(headers));
    }
    body
}

/// An RFC 9457 problem answer.
fn problem(status: StatusCode, detail: String, headers: &HeaderMap) -> Response {
    let body = with_meta(
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        }),
        headers,
    );
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    name: Option<String>,
}

async fn search_residents(Query(params): Query<SearchParams>, headers: HeaderMap) -> Response {
    let needle = params.name.unwrap_or_default();
    let needle = needle.trim().to_lowercase();
    let compact = |s: &str| s.replace([' ', '\u{3000}'], "").to_lowercase();
    let needle_compact = compact(&needle);
    let residents: Vec<Value> = RESIDENTS
        .iter()
        .filter(|r| {
            needle.is_empty()
                || [r.kanji, r.kana, r.romaji].iter().any(|n| {
                    n.to_lowercase().contains(&needle) || compact(n).contains(&needle_compact)
                })
        })
        .map(record_json)
        .collect();
    let body = json!({ "count": residents.len(), "residents": residents });
    axum::Json(with_meta(body, &headers)).into_response()
}

async fn resident_record(Path(id): Path<String>, headers: HeaderMap) -> Response {
    match find(&id) {
        Some(r) => axum::Json(with_meta(record_json(r), &headers)).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no resident with id {id:?} in {MUNICIPALITY_NAME}"),
            &headers,
        ),
    }
}

#[derive(Debug, Deserialize)]
struct TaxParams {
    year: Option<String>,
}

async fn tax_certificate(
    Path(id): Path<String>,
    Query(params): Query<TaxParams>,
    headers: HeaderMap,
) -> Response {
    let year = match params.year.as_deref().map(str::parse::<u16>) {
        None => 2025,
        Some(Ok(y)) => y,
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "year must be a number, e.g. year=2025".into(),
                &headers,
            );
        }
    };
    let Some(r) = find(&id) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no resident with id {id:?} in {MUNICIPALITY_NAME}"),
            &headers,
        );
    };
    match r.income.iter().find(|(y, _)| *y == year) {
        Some((_, income)) => {
            axum::Json(with_meta(tax_json(r, year, *income), &headers)).into_response()
        }
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no tax certificate for fiscal year {year} (2024 and 2025 exist)"),
            &headers,
        ),
    }
}

/// Streams the body back as it arrives, of any size, with its length and content type.
async fn echo(request: axum::extract::Request) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(request.into_body());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

async fn not_found(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("no such resource: {}", uri.path()),
        &headers,
    )
}

#[cfg(test)]
mod tests;
