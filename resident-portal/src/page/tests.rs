use super::*;
use crate::usage::{Provider, ProviderResult, UsageRecord};

#[test]
fn escapes_markup() {
    // maud escapes & < > " (every attribute it writes is double-quoted, so ' needs none).
    let html = problem_page(
        Lang::En,
        false,
        &Problem::BadRequest("<script>alert('x')</script>&\"".into()),
    );
    assert!(html.contains("<code>&lt;script&gt;alert('x')&lt;/script&gt;&amp;&quot;</code>"));
    assert!(!html.contains("<script>"));
}

#[test]
fn formats_utc_times() {
    assert_eq!(
        format_time(0, &TimeZone::UTC, Lang::En),
        "1970-01-01 00:00:00 UTC"
    );
    assert_eq!(
        format_time(1_795_338_000_123, &TimeZone::UTC, Lang::En),
        "2026-11-22 09:00:00 UTC"
    );
    assert_eq!(
        runtime::time::rfc3339_millis(1_795_338_000_123),
        "2026-11-22T09:00:00.123Z"
    );
    assert_eq!(
        format_time(951_782_400_000, &TimeZone::UTC, Lang::En),
        "2000-02-29 00:00:00 UTC"
    );
    assert_eq!(
        runtime::time::rfc3339_millis(-1),
        "1969-12-31T23:59:59.999Z"
    );
    // Extreme values do not panic.
    let _ = format_time(i64::MAX, &TimeZone::UTC, Lang::Ja);
    let _ = format_time(i64::MIN, &TimeZone::UTC, Lang::Ja);
}

#[test]
fn japan_time_needs_no_system_time_zone_files() {
    // The bundled database (jiff's `tzdb-bundle-always`) answers where tzdata is missing.
    let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
    assert_eq!(format_time(0, &tokyo, Lang::En), "1970-01-01 09:00:00 JST");
    // The Japanese page writes dates the Japanese way.
    assert_eq!(
        format_time(0, &tokyo, Lang::Ja),
        "1970年1月1日 09:00:00 JST"
    );
    assert_eq!(
        format_time(1_795_338_000_123, &tokyo, Lang::En),
        "2026-11-22 18:00:00 JST"
    );
}

fn with_lang(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::ACCEPT_LANGUAGE,
        http::HeaderValue::from_str(v).unwrap(),
    );
    h
}

#[test]
fn picks_the_language_from_accept_language() {
    assert_eq!(Lang::from_accept_language(&HeaderMap::new()), Lang::Ja);
    assert_eq!(
        Lang::from_accept_language(&with_lang("en-US,en;q=0.9")),
        Lang::En
    );
    assert_eq!(
        Lang::from_accept_language(&with_lang("en;q=0.5, ja")),
        Lang::Ja
    );
    assert_eq!(
        Lang::from_accept_language(&with_lang("fr, en;q=0.3")),
        Lang::En
    );
    assert_eq!(Lang::from_accept_language(&with_lang("de")), Lang::Ja);
    assert_eq!(
        Lang::from_accept_language(&with_lang("en;q=0, ja;q=x")),
        Lang::Ja
    );
}

#[test]
fn timeline_page_escapes_network_text() {
    let provider = Provider {
        id: "JP/MUN/131016/records".parse().unwrap(),
        member_name: "<b>Chiyoda</b>".into(),
        subsystem_name: "r\"ecords".into(),
        member_names: Default::default(),
        subsystem_names: Default::default(),
    };
    let record = UsageRecord {
        time: String::new(),
        time_ms: 0,
        message_id: "id\"><script>".into(),
        client: "JP/MUN/271004/welfare".into(),
        client_member_name: "<img src=x>".into(),
        client_member_names: [("en".to_owned(), "<u>Welfare</u>".to_owned())].into(),
        client_privacy_contact: Some("javascript:alert(2)".into()),
        provider_member_names: Default::default(),
        client_subsystem_names: Default::default(),
        client_subsystem_name: "".into(),
        service: String::new(),
        service_code: "<i>svc</i>".into(),
        service_names: Default::default(),
        method: "GET".into(),
        purpose: Some("<script>alert(1)</script>".into()),
        status: Some(403),
        server: Some("JP/MUN/131016/ss2".parse().unwrap()),
    };
    let timeline = Timeline::merge(vec![ProviderResult {
        source: SourceStatus {
            provider,
            state: SourceState::Unavailable {
                reason: "<x>".into(),
                partial_records: 1,
            },
        },
        records: vec![record],
    }]);
    let resident = ResidentId::parse("<me>").unwrap();
    let html = timeline_page(
        Lang::En,
        true,
        &resident,
        (&timeline, &TimeZone::get("Asia/Tokyo").unwrap()),
        &VerifyHelp { hint: Some("<a>") },
    );
    for bad in [
        "<script>",
        "<img",
        "<b>",
        "<i>",
        "<x>",
        "<me>",
        "<a>",
        "r\"e",
        "<u>",
        "javascript:",
    ] {
        assert!(!html.contains(bad), "{bad} not escaped in:\n{html}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("id=\"dev-banner\""));
    // Times in the configured zone, with its abbreviation.
    assert!(html.contains("1970-01-01 09:00:00 JST"), "{html}");
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("id=\"incomplete\""));
    assert!(html.contains("(answer 403)"));
    assert!(html.contains(
        "href=\"/evidence?provider=JP%2FMUN%2F131016%2Frecords&amp;id=id%22%3E%3Cscript%3E&amp;server=JP%2FMUN%2F131016%2Fss2\""
    ));
}
