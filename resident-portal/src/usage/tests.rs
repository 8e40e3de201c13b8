use super::*;

fn sub(s: &str) -> SubsystemId {
    s.parse().unwrap()
}

fn record(id: &str, time_ms: i64) -> UsageRecord {
    UsageRecord {
        time: String::new(),
        time_ms,
        message_id: id.into(),
        client: "JP/MUN/271004/welfare".into(),
        client_member_name: String::new(),
        client_member_names: Default::default(),
        client_privacy_contact: None,
        provider_member_names: Default::default(),
        client_subsystem_names: Default::default(),
        client_subsystem_name: String::new(),
        service: String::new(),
        service_code: "taxCertificate".into(),
        service_names: Default::default(),
        method: "GET".into(),
        purpose: None,
        status: None,
        server: None,
    }
}

fn provider(id: &str) -> Provider {
    Provider {
        id: sub(id),
        member_name: id.into(),
        subsystem_name: id.into(),
        member_names: Default::default(),
        subsystem_names: Default::default(),
    }
}

fn ok(id: &str, records: Vec<UsageRecord>) -> ProviderResult {
    ProviderResult {
        source: SourceStatus {
            provider: provider(id),
            state: SourceState::Ok {
                records: records.len(),
                truncated: false,
            },
        },
        records,
    }
}

#[test]
fn parses_a_find_usage_page() {
    let body = r#"{"server":"JP/MUN/131016/ss1","provider":"JP/MUN/131016/records","offset":0,"limit":100,"more":false,
      "records":[{"time":"2026-11-22T09:00:00.123Z","time_ms":1795338000123,"message_id":"0b6c","client":"JP/MUN/271004/welfare",
      "client_member_name":"Osaka City (大阪市)","client_subsystem_name":"","service":"JP/MUN/131016/records/taxCertificate",
      "service_code":"taxCertificate","method":"GET","purpose":null,"status":null,"future_field":1},
      {"time_ms":1,"message_id":"x","client":"JP/MUN/271004/welfare","service_code":"s","client_member_name":null}]}"#;
    let page = UsagePage::parse(body.as_bytes(), &sub("JP/MUN/131016/records")).unwrap();
    assert!(!page.more);
    let r = &page.records[0];
    assert_eq!(r.client_organisation(), "Osaka City (大阪市)");
    assert_eq!(r.client_subsystem(), "JP/MUN/271004/welfare");
    assert_eq!(r.stated_purpose(), None);
    assert_eq!(page.records[1].client_organisation(), "JP/MUN/271004");

    assert!(matches!(
        UsagePage::parse(body.as_bytes(), &sub("JP/MUN/131016/other")),
        Err(AnswerError::OtherProvider { .. })
    ));
    assert!(matches!(
        UsagePage::parse(b"<html>", &sub("JP/MUN/131016/records")),
        Err(AnswerError::Json(_))
    ));
    let bad_id = br#"{"more":false,"records":[{"time_ms":1,"message_id":"a b","client":"c","service_code":"s"}]}"#;
    assert!(matches!(
        UsagePage::parse(bad_id, &sub("JP/MUN/131016/records")),
        Err(AnswerError::MessageId(_))
    ));
}

#[test]
fn directory_names_members_and_lists_subsystems() {
    let body = r#"{"member":[
      {"id":{"object_type":"MEMBER","xroad_instance":"JP","member_class":"MUN","member_code":"131016"},"name":"Chiyoda City (千代田区)"},
      {"id":{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"131016","subsystem_code":"records"},"name":"Chiyoda City (千代田区)","subsystem_name":"Records"},
      {"id":{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"271004","subsystem_code":"welfare"},"name":"Osaka City"},
      {"id":{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"bad code","subsystem_code":"x"},"name":"skipped"},
      {"id":{"object_type":"SERVER","xroad_instance":"JP","member_class":"MUN","member_code":"1"},"name":"skipped"}]}"#;
    let d = Directory::parse(body.as_bytes()).unwrap();
    let subs: Vec<String> = d.subsystems().map(ToString::to_string).collect();
    assert_eq!(subs, ["JP/MUN/131016/records", "JP/MUN/271004/welfare"]);
    let p = d.provider(&sub("JP/MUN/131016/records"));
    assert_eq!(p.member_name, "Chiyoda City (千代田区)");
    assert_eq!(p.subsystem_name, "Records");
    let p = d.provider(&sub("JP/MUN/271004/welfare"));
    assert_eq!(p.member_name, "JP/MUN/271004");
    assert_eq!(p.subsystem_name, "welfare");
    assert!(Directory::parse(b"[]").is_err());
    assert!(Directory::parse(b"{}").is_err());
}

#[test]
fn directory_keeps_the_servers_hosting_each_subsystem() {
    let server = |code: &str| {
        format!(
            r#"{{"object_type":"SERVER","xroad_instance":"JP","member_class":"MUN","member_code":"131016","server_code":"{code}"}}"#
        )
    };
    let body = format!(
        r#"{{"member":[
          {{"id":{{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"131016","subsystem_code":"records"}},"name":"Chiyoda","subsystem_name":"Records","security_servers":[{},{},{}]}},
          {{"id":{{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"271004","subsystem_code":"welfare"}},"name":"Osaka","subsystem_name":"Welfare"}}]}}"#,
        server("ss1"),
        server("ss2"),
        server("bad code"),
    );
    let d = Directory::parse(body.as_bytes()).unwrap();
    let servers: Vec<String> = d
        .servers_of(&sub("JP/MUN/131016/records"))
        .iter()
        .map(ToString::to_string)
        .collect();
    // An identifier that breaks the rule is left out.
    assert_eq!(servers, ["JP/MUN/131016/ss1", "JP/MUN/131016/ss2"]);
    // An answer without the extension (another security server): none known.
    assert!(d.servers_of(&sub("JP/MUN/271004/welfare")).is_empty());
}

#[test]
fn classifies_errors() {
    let denied = XRoadFailure::from_answer(
        403,
        Some("Server.ServerProxy.AccessDenied"),
        br#"{"type":"Server.ServerProxy.AccessDenied","message":"no","detail":"x"}"#,
    );
    assert!(denied.is_not_shared());
    assert!(matches!(
        denied.source_state(0),
        SourceState::NotShared { .. }
    ));
    assert!(matches!(
        denied.source_state(3),
        SourceState::Unavailable { .. }
    ));
    let unknown = XRoadFailure::from_answer(
        404,
        None,
        br#"{"type":"Server.ClientProxy.UnknownService","message":"m"}"#,
    );
    assert!(unknown.is_not_shared());
    let network = XRoadFailure::from_answer(
        502,
        Some("Server.ClientProxy.NetworkError"),
        br#"{"type":"Server.ClientProxy.NetworkError","message":"cannot connect"}"#,
    );
    assert!(!network.is_not_shared());
    assert_eq!(
        network.describe(),
        "Server.ClientProxy.NetworkError: cannot connect"
    );
    let plain = XRoadFailure::from_answer(500, None, b"oops");
    assert_eq!(plain.describe(), "HTTP 500");
    assert!(!XRoadFailure::from_answer(403, Some("Server.NotAccessDenied"), b"").is_not_shared());
    let sealed = XRoadFailure::from_answer(503, Some("Server.ServerProxy.NotYetCheckpointed"), b"");
    assert!(sealed.is("NotYetCheckpointed"));
}

fn page(n: usize, more: bool) -> UsagePage {
    UsagePage {
        server: None,
        provider: None,
        offset: 0,
        limit: 0,
        more,
        records: (0..n).map(|i| record(&format!("m{i}"), 0)).collect(),
        provider_member_names: Default::default(),
        provider_subsystem_names: Default::default(),
    }
}

#[test]
fn paging_follows_more_until_the_limit() {
    let mut p = ProviderPaging::new(2, 5);
    assert_eq!(p.next_request(), Some((0, 2)));
    p.accept(page(2, true));
    assert_eq!(p.next_request(), Some((2, 2)));
    p.accept(page(2, true));
    assert_eq!(p.next_request(), Some((4, 1)));
    p.accept(page(1, true));
    assert_eq!(p.next_request(), None);
    let (records, truncated) = p.finish();
    assert_eq!((records.len(), truncated), (5, true));

    let mut p = ProviderPaging::new(2, 5);
    p.accept(page(2, true));
    p.accept(page(1, false));
    assert_eq!(p.next_request(), None);
    assert_eq!(p.finish().0.len(), 3);

    // A server that ignores the limit is cut at the limit.
    let mut p = ProviderPaging::new(100, 3);
    p.accept(page(10, false));
    let (records, truncated) = p.finish();
    assert_eq!((records.len(), truncated), (3, true));

    // `more` without records does not loop.
    let mut p = ProviderPaging::new(2, 5);
    p.accept(page(0, true));
    assert_eq!(p.next_request(), None);
}

#[test]
fn merge_sorts_newest_first_and_dedups() {
    let a = ok(
        "JP/MUN/131016/records",
        vec![record("m1", 300), record("m2", 100), record("m1", 300)],
    );
    let b = ok("JP/MUN/271004/welfare", vec![record("m1", 200)]);
    let c = ProviderResult {
        source: SourceStatus {
            provider: provider("JP/GOV/x/y"),
            state: SourceState::Unavailable {
                reason: "timeout".into(),
                partial_records: 0,
            },
        },
        records: vec![],
    };
    let t = Timeline::merge(vec![a, b, c]);
    let got: Vec<(String, i64)> = t
        .entries
        .iter()
        .map(|e| (e.provider.to_string(), e.record.time_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("JP/MUN/131016/records".to_string(), 300),
            ("JP/MUN/271004/welfare".to_string(), 200),
            ("JP/MUN/131016/records".to_string(), 100),
        ]
    );
    assert_eq!(t.sources.len(), 3);
    assert_eq!(t.sources[0].provider.id.to_string(), "JP/GOV/x/y");
    assert_eq!(t.unavailable().count(), 1);
    let mut t = t;
    let directory = Directory::parse(
        br#"{"member":[{"id":{"object_type":"MEMBER","xroad_instance":"JP","member_class":"MUN","member_code":"271004"},"name":"Osaka"},
        {"id":{"object_type":"SUBSYSTEM","xroad_instance":"JP","member_class":"MUN","member_code":"271004","subsystem_code":"welfare"},"name":"Osaka","subsystem_name":"Welfare"}]}"#,
    )
    .unwrap();
    t.fill_names(&directory);
    assert_eq!(t.entries[0].record.client_organisation(), "Osaka");
    assert_eq!(t.entries[0].record.client_subsystem(), "Welfare");
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["sources"][0]["state"], "unavailable");
    assert_eq!(json["sources"][0]["id"], "JP/GOV/x/y");
    assert_eq!(json["entries"][0]["message_id"], "m1");
}

#[test]
fn organisations_are_named_in_the_readers_language_and_only_safe_contacts_are_linked() {
    let mut r = record("a", 1);
    r.client_member_name = "Osaka City (大阪市)".into();
    r.client_member_names = [("ja".to_owned(), "大阪市".to_owned())].into();
    assert_eq!(r.client_organisation_in("ja"), "大阪市");
    r.client_subsystem_name = "Welfare office (福祉事務所)".into();
    r.client_subsystem_names = [("ja".to_owned(), "福祉事務所".to_owned())].into();
    assert_eq!(r.client_subsystem_in("ja"), "福祉事務所");
    assert_eq!(r.client_subsystem_in("en"), "Welfare office (福祉事務所)");
    // No English name: the one name the member registered.
    assert_eq!(r.client_organisation_in("en"), "Osaka City (大阪市)");
    for (contact, shown) in [
        ("https://www.city.osaka.example.jp/privacy", true),
        ("mailto:kojinjoho@city.osaka.example.jp", true),
        ("javascript:alert(1)", false),
        ("http://plain.example.jp", false),
        ("https://x.example.jp/\"onclick=", false),
    ] {
        r.client_privacy_contact = Some(contact.into());
        assert_eq!(r.privacy_contact().is_some(), shown, "{contact}");
    }
}
