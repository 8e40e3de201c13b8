use super::*;

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const WELFARE: &str = "JP/MUN/271004/welfare";
const RECORDS: &str = "JP/MUN/131016/records";

fn sub(s: &str) -> SubsystemId {
    s.parse().unwrap()
}

fn client(s: &str) -> globalconf::ClientId {
    s.parse().unwrap()
}

fn rule(client: &str, delay_secs: Option<u64>) -> Suppression {
    Suppression {
        client: client.parse().unwrap(),
        delay_secs,
        reason: "捜査 (investigation)".into(),
    }
}

#[test]
fn a_hiding_rule_covers_every_subsystem_of_the_organisation_and_nobody_else() {
    let r = rule("JP/MUN/271004", None);
    assert!(r.suppresses(&client(WELFARE), 0, 10));
    assert!(r.suppresses(&client("JP/MUN/271004/tax"), 0, i64::MAX));
    assert!(!r.suppresses(&client(PORTAL), 0, 10));
    let r = rule(WELFARE, None);
    assert!(r.suppresses(&client(WELFARE), 0, 10));
    assert!(!r.suppresses(&client("JP/MUN/271004/tax"), 0, 10));
}

#[test]
fn a_delaying_rule_reveals_a_record_once_it_is_as_old_as_the_delay() {
    let r = rule("JP/MUN/271004", Some(3600));
    let logged_ms = 1_000_000_500;
    let logged = 1_000_000;
    assert!(r.suppresses(&client(WELFARE), logged_ms, logged));
    assert!(r.suppresses(&client(WELFARE), logged_ms, logged + 3599));
    assert!(!r.suppresses(&client(WELFARE), logged_ms, logged + 3600));
    assert!(!suppressed(
        &[rule(PORTAL, None), r.clone()],
        &client(WELFARE),
        logged_ms,
        logged + 3600
    ));
    assert!(suppressed(
        &[r, rule(WELFARE, None)],
        &client(WELFARE),
        logged_ms,
        logged + 3600
    ));
}

#[test]
fn rules_are_validated_and_keep_their_json_shape() {
    let json = r#"{"client":"JP/GOV/npa","delay_secs":7776000,"reason":"investigations"}"#;
    let r: Suppression = serde_json::from_str(json).unwrap();
    assert!(matches!(r.client, SuppressedClient::Member(_)));
    assert_eq!(serde_json::to_string(&r).unwrap(), json);
    assert!(r.validate().is_ok());
    let hide: Suppression =
        serde_json::from_str(r#"{"client":"JP/GOV/npa/cases","reason":"x"}"#).unwrap();
    assert!(matches!(hide.client, SuppressedClient::Subsystem(_)));
    assert_eq!(hide.delay_secs, None);
    for bad in [
        r#"{"client":"JP/GOV","reason":"x"}"#,
        r#"{"client":"JP/GOV/npa","reason":"x","extra":1}"#,
        r#"{"client":"JP/GOV/npa"}"#,
    ] {
        assert!(serde_json::from_str::<Suppression>(bad).is_err(), "{bad}");
    }
    assert!(rule(PORTAL, Some(0)).validate().is_err());
    let mut r = rule(PORTAL, None);
    r.reason = "  ".into();
    assert!(r.validate().is_err());
    r.reason = "a\nb".into();
    assert!(r.validate().is_err());
}

fn request_record(
    side: pb::LogSide,
    client: &str,
    service: &str,
    id: &str,
    subject: &str,
    logged_at_ms: i64,
) -> pb::LogRecord {
    let header = pb::RequestHeader {
        message_id: id.into(),
        client: client.into(),
        service: service.into(),
        method: "GET".into(),
        data_subject: subject.into(),
        purpose: format!("purpose of {id}"),
        ..Default::default()
    };
    pb::LogRecord {
        kind: pb::LogKind::Request as i32,
        side: side as i32,
        message_id: id.into(),
        client: client.into(),
        service: service.into(),
        signed_header: header.encode_to_vec(),
        body_sha256: vec![0; 32],
        logged_at_ms,
        ..Default::default()
    }
}

fn response_record(client: &str, service: &str, id: &str, status: u32) -> pb::LogRecord {
    let header = pb::ResponseHeader {
        message_id: id.into(),
        status,
        ..Default::default()
    };
    pb::LogRecord {
        kind: pb::LogKind::Response as i32,
        side: pb::LogSide::Server as i32,
        message_id: id.into(),
        client: client.into(),
        service: service.into(),
        signed_header: header.encode_to_vec(),
        body_sha256: vec![0; 32],
        ..Default::default()
    }
}

#[test]
fn only_served_requests_for_the_provider_count_as_accesses() {
    let tax = format!("{RECORDS}/taxCertificate");
    let served = request_record(pb::LogSide::Server, WELFARE, &tax, "a", "R1", 5);
    let a = access_of(7, &served, &sub(RECORDS)).unwrap();
    assert_eq!(a.client, client(WELFARE));
    assert_eq!(a.service.code(), "taxCertificate");
    assert_eq!(a.purpose.as_deref(), Some("purpose of a"));
    assert_eq!((a.index, a.logged_at_ms), (7, 5));
    // Sent by this server's clients, not served by it.
    let sent = request_record(pb::LogSide::Client, WELFARE, &tax, "a", "R1", 5);
    assert_eq!(access_of(7, &sent, &sub(RECORDS)), None);
    // Another provider's service.
    assert_eq!(access_of(7, &served, &sub("JP/MUN/131016/other")), None);
    // The portal asking is not an access.
    let asked = request_record(
        pb::LogSide::Server,
        PORTAL,
        &format!("{RECORDS}/findUsage"),
        "b",
        "R1",
        5,
    );
    assert_eq!(access_of(7, &asked, &sub(RECORDS)), None);
    let response = response_record(WELFARE, &tax, "a", 200);
    assert_eq!(access_of(8, &response, &sub(RECORDS)), None);
    // A member that called as itself, without a subsystem, is shown to residents too.
    let member = sub(WELFARE).member().to_string();
    let by_member = request_record(pb::LogSide::Server, &member, &tax, "c", "R1", 5);
    let a = access_of(9, &by_member, &sub(RECORDS)).unwrap();
    assert_eq!(a.client, client(&member));
}

fn open_log(dir: &std::path::Path) -> MessageLog {
    MessageLog::open(
        &dir.join("log.redb"),
        msglog::LogOptions {
            subject_key: [7; 32],
            ..Default::default()
        },
    )
    .unwrap()
}

async fn append(log: &MessageLog, record: pb::LogRecord, subject: Option<&str>) {
    log.append(msglog::Entry {
        record,
        body: None,
        data_subject: subject.map(str::to_owned),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn find_usage_pages_newest_first_and_applies_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let tax = format!("{RECORDS}/taxCertificate");
    let resident = format!("{RECORDS}/residentRecord");
    // Five accesses to R1 (one by the welfare office), one to R2, and noise.
    for (i, client, service) in [
        (1, PORTAL, &resident),
        (2, WELFARE, &tax),
        (3, PORTAL, &tax),
        (4, PORTAL, &resident),
        (5, PORTAL, &resident),
    ] {
        let id = format!("m{i}");
        append(
            &log,
            request_record(pb::LogSide::Server, client, service, &id, "R1", i * 1000),
            Some("R1"),
        )
        .await;
        append(
            &log,
            response_record(client, service, &id, 200 + i as u32),
            None,
        )
        .await;
    }
    append(
        &log,
        request_record(pb::LogSide::Server, PORTAL, &resident, "other", "R2", 9000),
        Some("R2"),
    )
    .await;
    append(
        &log,
        request_record(
            pb::LogSide::Server,
            PORTAL,
            &format!("{RECORDS}/findUsage"),
            "ask",
            "R1",
            9500,
        ),
        Some("R1"),
    )
    .await;

    let ids = |p: &UsagePage| -> Vec<String> {
        p.accesses
            .iter()
            .map(|(a, _)| a.message_id.clone())
            .collect()
    };
    let provider = sub(RECORDS);
    let page = find_usage(&log, &provider, "R1", 0, 2, &[], 10).unwrap();
    assert_eq!(ids(&page), ["m5", "m4"]);
    assert_eq!(page.accesses[0].1, Some(205));
    assert!(page.more);
    let page = find_usage(&log, &provider, "R1", 2, 10, &[], 10).unwrap();
    assert_eq!(ids(&page), ["m3", "m2", "m1"]);
    assert!(!page.more);
    assert_eq!(
        ids(&find_usage(&log, &provider, "R2", 0, 10, &[], 10).unwrap()),
        ["other"]
    );
    assert!(
        find_usage(&log, &provider, "R3", 0, 10, &[], 10)
            .unwrap()
            .accesses
            .is_empty()
    );

    // Hidden: the welfare office's access disappears, paging counts only what is shown.
    let hide = [rule("JP/MUN/271004", None)];
    let page = find_usage(&log, &provider, "R1", 2, 10, &hide, 10).unwrap();
    assert_eq!(ids(&page), ["m3", "m1"]);
    // Delayed by 100 s: hidden at 101 s after 1970 (logged at 2 s), shown at 102 s.
    let delay = [rule("JP/MUN/271004", Some(100))];
    let page = find_usage(&log, &provider, "R1", 0, 10, &delay, 101).unwrap();
    assert!(!ids(&page).contains(&"m2".to_owned()));
    let page = find_usage(&log, &provider, "R1", 0, 10, &delay, 102).unwrap();
    assert!(ids(&page).contains(&"m2".to_owned()));
}
