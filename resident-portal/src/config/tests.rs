use super::*;

const MINIMAL: &str = r#"
    security_server = "http://127.0.0.1:41080"
    client = "JP/GOV/digital-agency/portal"
    [login]
    kind = "development"
    danger_development_login = true
"#;

#[test]
fn minimal_file_takes_the_defaults() {
    let c = Config::from_str(MINIMAL).unwrap();
    assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8200)));
    assert_eq!(c.purpose, DEFAULT_PURPOSE);
    assert_eq!(c.timeout_secs, 5);
    assert_eq!(c.member_timeout_ms, 1500);
    assert_eq!(c.max_parallel, 256);
    assert_eq!(c.page_size, 100);
    assert_eq!(c.max_records_per_provider, 1000);
    assert_eq!(c.session_ttl_secs, 1800);
    assert!(!c.secure_cookies);
    assert_eq!(c.targets, None);
    assert_eq!(c.time_zone, "Asia/Tokyo");
    assert_eq!(c.zone().unwrap().iana_name(), Some("Asia/Tokyo"));
    assert_eq!(c.login.kind, Some(LoginKind::Development));
    assert_eq!(
        c.client.unwrap().to_string(),
        "JP/GOV/digital-agency/portal"
    );
}

#[test]
fn full_file_parses() {
    let c = Config::from_str(
        r#"
        listen = "0.0.0.0:8443"
        security_server = "http://ss.example.jp:8080/"
        client = "JP/GOV/digital-agency/portal"
        purpose = "確認"
        timeout_secs = 2
        member_timeout_ms = 800
        max_parallel = 4
        page_size = 500
        max_records_per_provider = 50
        session_ttl_secs = 60
        secure_cookies = true
        targets = ["JP/MUN/131016/records"]
        verify_hint = "https://example.jp/anchor.toml"
        log_format = "json"
        [login]
        kind = "trusted-header"
        header = "X-Authenticated-Resident"
    "#,
    )
    .unwrap();
    assert_eq!(c.base_url(), "http://ss.example.jp:8080");
    assert_eq!(c.login.kind, Some(LoginKind::TrustedHeader));
    assert_eq!(c.targets.unwrap()[0].to_string(), "JP/MUN/131016/records");
}

#[test]
fn the_time_zone_is_any_iana_zone() {
    let utc = Config::from_str(&format!("time_zone = \"UTC\"\n{MINIMAL}")).unwrap();
    assert_eq!(utc.zone().unwrap(), jiff::tz::TimeZone::UTC);
    let err = Config::from_str(&format!("time_zone = \"Asia/Edo\"\n{MINIMAL}")).unwrap_err();
    assert!(err.to_string().contains("time_zone \"Asia/Edo\""), "{err}");
}

#[test]
fn validate_requires_an_explicit_login_kind() {
    let text = MINIMAL.replace("kind = \"development\"", "");
    let err = Config::from_str(&text).unwrap_err();
    assert!(err.to_string().contains("kind is required"), "{err}");
    let c = Config {
        security_server: "http://127.0.0.1:1".into(),
        client: Some("JP/GOV/digital-agency/portal".parse().unwrap()),
        ..Config::default()
    };
    assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));
}

#[test]
fn the_development_login_needs_its_danger_flag() {
    let text = MINIMAL.replace("danger_development_login = true", "");
    let err = Config::from_str(&text).unwrap_err();
    assert!(
        err.to_string().contains("danger_development_login"),
        "{err}"
    );
}

const OIDC: &str = r#"
    security_server = "http://127.0.0.1:41080"
    client = "JP/GOV/digital-agency/portal"
    [login]
    kind = "oidc"
    issuer = "https://id.example.jp"
    client_id = "portal"
    client_secret_file = "/etc/xroad-portal/client-secret"
    redirect_url = "https://portal.example.jp/login/callback"
    resident_claim = "resident_id"
    scopes = ["resident"]
    ca_file = "/etc/ssl/certs/ca-certificates.crt"
"#;

#[test]
fn an_openid_connect_login_is_checked_and_its_cookies_follow_the_portals_scheme() {
    let c = Config::from_str(OIDC).unwrap();
    assert_eq!(c.login.kind, Some(LoginKind::Oidc));
    assert!(c.cookies_secure());
    let loopback = OIDC
        .replace("https://id.example.jp", "http://127.0.0.1:9000")
        .replace("https://portal.example.jp", "http://127.0.0.1:8200");
    assert!(!Config::from_str(&loopback).unwrap().cookies_secure());
    for bad in [
        OIDC.replace("https://id.example.jp", "http://id.example.jp"),
        OIDC.replace("https://id.example.jp", "https://id.example.jp/?x"),
        OIDC.replace("ca_file = \"/etc/ssl/certs/ca-certificates.crt\"", ""),
        OIDC.replace("client_id = \"portal\"", ""),
        OIDC.replace(
            "client_secret_file = \"/etc/xroad-portal/client-secret\"",
            "",
        ),
        OIDC.replace("/login/callback", "/callback"),
        OIDC.replace("resident_claim = \"resident_id\"", "resident_claim = \"\""),
        OIDC.replace("[\"resident\"]", "[\"two words\"]"),
        OIDC.replace(
            "kind = \"oidc\"",
            "kind = \"trusted-header\"\nheader = \"X-R\"",
        ),
    ] {
        assert!(Config::from_str(&bad).is_err(), "accepted:\n{bad}");
    }
}

#[test]
fn identifier_rules_name_each_member_once_and_need_the_openid_connect_login() {
    let rule = |members: &str| {
        format!("{OIDC}\n[[identifiers]]\nmembers = [{members}]\nclaim = \"juki\"\n")
    };
    let c = Config::from_str(&rule("\"JP/MUN/131016\"")).unwrap();
    assert_eq!(c.claim_for(&"JP/MUN/131016".parse().unwrap()), Some("juki"));
    assert_eq!(c.claim_for(&"JP/MUN/271004".parse().unwrap()), None);
    for bad in [
        rule(""),
        rule("\"JP/MUN\""),
        format!(
            "{}{}",
            rule("\"JP/MUN/131016\""),
            "[[identifiers]]\nmembers = [\"JP/MUN/131016\"]\nclaim = \"x\"\n"
        ),
        rule("\"JP/MUN/131016\"").replace("claim = \"juki\"", "claim = \"\""),
        format!("{MINIMAL}\n[[identifiers]]\nmembers = [\"JP/MUN/131016\"]\nclaim = \"juki\"\n"),
    ] {
        assert!(Config::from_str(&bad).is_err(), "accepted:\n{bad}");
    }
}

#[test]
fn rejects_bad_values() {
    let bad = [
        MINIMAL.replace("client = \"JP/GOV/digital-agency/portal\"", ""),
        MINIMAL.replace("JP/GOV/digital-agency/portal", "JP/GOV/digital-agency"),
        MINIMAL.replace(
            "JP/GOV/digital-agency/portal",
            "JP/GOV/digital agency/portal",
        ),
        MINIMAL.replace("security_server = \"http://127.0.0.1:41080\"", ""),
        MINIMAL.replace("http://127.0.0.1:41080", "https://127.0.0.1:41080"),
        MINIMAL.replace("http://127.0.0.1:41080", "127.0.0.1:41080"),
        MINIMAL.replace("http://127.0.0.1:41080", "http://127.0.0.1:41080/?x=1"),
        format!("page_size = 501\n{MINIMAL}"),
        format!("page_size = 0\n{MINIMAL}"),
        format!("timeout_secs = 0\n{MINIMAL}"),
        format!("max_parallel = 0\n{MINIMAL}"),
        format!("member_timeout_ms = 0\n{MINIMAL}"),
        format!("purpose = \"a\\nb\"\n{MINIMAL}"),
        format!("targets = []\n{MINIMAL}"),
        format!("targets = [\"JP/MUN\"]\n{MINIMAL}"),
        format!("unknown_key = 1\n{MINIMAL}"),
        format!("{MINIMAL}\nheader = \"X-Resident\""),
        MINIMAL.replace("\"development\"", "\"trusted-header\""),
        MINIMAL.replace("\"development\"", "\"none\""),
        MINIMAL.replace(
            "\"development\"",
            "\"trusted-header\"\nheader = \"bad header\"",
        ),
    ];
    for text in bad {
        assert!(Config::from_str(&text).is_err(), "accepted:\n{text}");
    }
}
