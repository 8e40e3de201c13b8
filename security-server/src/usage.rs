//! Resident transparency (DESIGN §7): the `findUsage` and `usageEvidence` metaservices, and the
//! suppression rules an operator sets for them.
//!
//! # What a resident is shown
//!
//! `findUsage`, addressed to a provider subsystem `S` this server hosts, answers with the
//! requests this server **served** for `S` (server-side request records: the provider's own
//! evidence that a client reached its service) about one data subject, newest first, paged. The
//! subject comes from the caller's `X-Road-Data-Subject`; records are found through the log's
//! HMAC subject index. Left out are:
//!
//! - the transparency metaservices' own calls (they are logged like every exchange, but a
//!   resident asking is not somebody accessing their data);
//! - records a [`Suppression`] rule hides now: all records whose client is the rule's
//!   organisation (or subsystem) when the rule hides, or those newer than the rule's delay.
//!
//! `usageEvidence?id=X-Road-Id` answers with the evidence bundle (docs/evidence.md) of one such
//! record, without bodies, under the same conditions; for any other id it answers
//! `UsageRecordNotFound`, whether the record does not exist, is about somebody else or is
//! suppressed, so the answer tells nothing about other people's records.
//!
//! Both are granted like a service: a grant of `PROVIDER/findUsage` to the portal's subsystem
//! covers both.
//!
//! Everything here but [`find_usage`] and [`usage_evidence`] is pure.

use std::fmt;
use std::str::FromStr;

use certs::Clock;
use globalconf::{GlobalConf, IdError, MemberId, SecurityServerId, ServiceId, SubsystemId};
use msglog::{LogError, MessageLog};
use prost::Message as _;
use proto::v1 as pb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use exchange::metaservice;

/// The most records one `findUsage` page holds.
pub const MAX_PAGE: usize = 500;
/// A page's size when the caller gives none.
pub const DEFAULT_PAGE: usize = 50;
/// The longest suppression reason.
pub const MAX_REASON_BYTES: usize = 1024;

/// Whose accesses a suppression rule covers: an organisation (every subsystem of a member) or
/// one subsystem. Written `INSTANCE/CLASS/MEMBER` or `INSTANCE/CLASS/MEMBER/SUBSYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuppressedClient {
    Member(MemberId),
    Subsystem(SubsystemId),
}

impl SuppressedClient {
    pub fn covers(&self, client: &SubsystemId) -> bool {
        match self {
            SuppressedClient::Member(m) => client.member() == m,
            SuppressedClient::Subsystem(s) => s == client,
        }
    }
}

impl FromStr for SuppressedClient {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.split('/').count() == 3 {
            s.parse().map(SuppressedClient::Member)
        } else {
            s.parse().map(SuppressedClient::Subsystem)
        }
    }
}

impl fmt::Display for SuppressedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuppressedClient::Member(m) => m.fmt(f),
            SuppressedClient::Subsystem(s) => s.fmt(f),
        }
    }
}

impl Serialize for SuppressedClient {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SuppressedClient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One suppression rule (as in Estonia's Data Tracker): records whose client it covers are not
/// shown to residents, either until the rule is removed (`delay_secs` absent: hidden) or until
/// they are `delay_secs` old (delayed). Stored as JSON:
/// `{"client": "JP/GOV/npa", "delay_secs": 7776000, "reason": "investigations (刑事訴訟法)"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    pub client: SuppressedClient,
    /// Absent: hidden while the rule exists. Else: shown once the record is this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<u64>,
    /// Why (the legal basis); required, for the audit log.
    pub reason: String,
}

impl Suppression {
    pub fn validate(&self) -> Result<(), String> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err("a suppression rule needs a reason".into());
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(format!(
                "the reason is longer than {MAX_REASON_BYTES} bytes"
            ));
        }
        if self.reason.chars().any(char::is_control) {
            return Err("the reason may not contain control characters".into());
        }
        if self.delay_secs == Some(0) {
            return Err("a delay of 0 suppresses nothing; remove the rule instead".into());
        }
        Ok(())
    }

    /// Whether this rule keeps a record of `client`, logged at `logged_at_ms`, from residents
    /// at `now` (Unix seconds).
    pub fn suppresses(&self, client: &SubsystemId, logged_at_ms: i64, now: i64) -> bool {
        if !self.client.covers(client) {
            return false;
        }
        match self.delay_secs {
            None => true,
            Some(delay) => {
                let delay = i64::try_from(delay).unwrap_or(i64::MAX);
                logged_at_ms.div_euclid(1000).saturating_add(delay) > now
            }
        }
    }
}

/// Whether any rule keeps the record from residents now.
pub fn suppressed(
    rules: &[Suppression],
    client: &SubsystemId,
    logged_at_ms: i64,
    now: i64,
) -> bool {
    rules
        .iter()
        .any(|r| r.suppresses(client, logged_at_ms, now))
}

/// Whether `code` is one of the transparency metaservices.
pub fn is_transparency_service(code: &str) -> bool {
    code == metaservice::FIND_USAGE || code == metaservice::USAGE_EVIDENCE
}

/// One access to a resident's data, as a provider's server recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub index: u64,
    pub logged_at_ms: i64,
    pub message_id: String,
    pub client: SubsystemId,
    pub service: ServiceId,
    pub method: String,
    pub purpose: Option<String>,
    pub data_subject: String,
}

/// Recognises a record as an access to `provider`'s data that `findUsage` may show: a
/// server-side request record for a service of `provider` other than the transparency
/// metaservices, whose signed request header decodes. `None` for anything else.
pub fn access_of(index: u64, record: &pb::LogRecord, provider: &SubsystemId) -> Option<Access> {
    if record.kind != pb::LogKind::Request as i32 || record.side != pb::LogSide::Server as i32 {
        return None;
    }
    let service: ServiceId = record.service.parse().ok()?;
    if service.subsystem() != provider || is_transparency_service(service.code()) {
        return None;
    }
    let client: SubsystemId = record.client.parse().ok()?;
    let header = pb::RequestHeader::decode(record.signed_header.as_slice()).ok()?;
    Some(Access {
        index,
        logged_at_ms: record.logged_at_ms,
        message_id: record.message_id.clone(),
        client,
        service,
        method: header.method,
        purpose: Some(header.purpose).filter(|p| !p.is_empty()),
        data_subject: header.data_subject,
    })
}

/// One page of a subject's accesses, before names are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    pub accesses: Vec<(Access, Option<u32>)>,
    /// Whether there are records after this page.
    pub more: bool,
}

/// Reads one page of `subject`'s accesses to `provider` from the log, newest first, leaving out
/// what [`access_of`] does not recognise and what `rules` suppress at `now`. Each access comes
/// with the HTTP status of its response, if this server recorded one. Blocking (redb reads).
pub fn find_usage(
    log: &MessageLog,
    provider: &SubsystemId,
    subject: &str,
    offset: usize,
    limit: usize,
    rules: &[Suppression],
    now: i64,
) -> Result<UsagePage, LogError> {
    let mut indexes = log.find_by_subject(subject)?;
    indexes.reverse();
    let mut shown = indexes
        .into_iter()
        .map(|index| visible_access(log, index, provider, subject, rules, now))
        .filter_map(Result::transpose)
        .skip(offset);
    let mut accesses = Vec::new();
    for access in shown.by_ref().take(limit) {
        let access = access?;
        let status = response_status(log, &access)?;
        accesses.push((access, status));
    }
    let more = shown.next().transpose()?.is_some();
    Ok(UsagePage { accesses, more })
}

/// Record `index` as an access residents may see now, or `None`.
fn visible_access(
    log: &MessageLog,
    index: u64,
    provider: &SubsystemId,
    subject: &str,
    rules: &[Suppression],
    now: i64,
) -> Result<Option<Access>, LogError> {
    let Some(stored) = log.record(index)? else {
        return Ok(None);
    };
    let record = stored.decode()?;
    Ok(access_of(index, &record, provider).filter(|a| {
        // The index is keyed by an HMAC; comparing the signed subject rules out a collision
        // or a record indexed under another subject.
        a.data_subject == subject && !suppressed(rules, &a.client, a.logged_at_ms, now)
    }))
}

/// The status of the response this server signed for `access`, if it recorded one.
fn response_status(log: &MessageLog, access: &Access) -> Result<Option<u32>, LogError> {
    for index in log.find_by_message_id(&access.message_id)? {
        if index <= access.index {
            continue;
        }
        let Some(stored) = log.record(index)? else {
            continue;
        };
        let record = stored.decode()?;
        if record.kind == pb::LogKind::Response as i32
            && record.side == pb::LogSide::Server as i32
            && record.client == access.client.to_string()
        {
            return Ok(pb::ResponseHeader::decode(record.signed_header.as_slice())
                .ok()
                .map(|h| h.status));
        }
    }
    Ok(None)
}

/// The `findUsage` answer, in JSON (docs/transparency.md).
pub fn page_json(
    page: &UsagePage,
    server: &SecurityServerId,
    provider: &SubsystemId,
    offset: usize,
    limit: usize,
    conf: &GlobalConf,
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = page
        .accesses
        .iter()
        .map(|(a, status)| {
            serde_json::json!({
                "time": runtime::time::rfc3339_millis(a.logged_at_ms),
                "time_ms": a.logged_at_ms,
                "message_id": a.message_id,
                "client": a.client.to_string(),
                "client_member_name": conf
                    .member(a.client.member())
                    .map(|m| m.name.as_str())
                    .unwrap_or_default(),
                "client_subsystem_name": conf.subsystem_name(&a.client).unwrap_or_default(),
                "service": a.service.to_string(),
                "service_code": a.service.code(),
                "method": a.method,
                "purpose": a.purpose,
                "status": status,
            })
        })
        .collect();
    serde_json::json!({
        "server": server.to_string(),
        "provider": provider.to_string(),
        "offset": offset,
        "limit": limit,
        "more": page.more,
        "records": records,
    })
}

/// Why `usageEvidence` gave no bundle.
#[derive(Debug, thiserror::Error)]
pub enum UsageEvidenceError {
    /// No access by that id that the caller may see (also: about somebody else, suppressed).
    #[error("no access record {0} for this data subject")]
    NotFound(String),
    #[error("{0}")]
    Evidence(#[from] msglog::EvidenceError),
    #[error("{0}")]
    Log(#[from] LogError),
}

/// The evidence bundle (without bodies) of the exchange `message_id`, if it is an access to
/// `provider`'s data about `subject` that residents may see now. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn usage_evidence(
    log: &MessageLog,
    server: &SecurityServerId,
    provider: &SubsystemId,
    subject: &str,
    message_id: &str,
    rules: &[Suppression],
    now: i64,
    clock: &dyn Clock,
) -> Result<pb::EvidenceBundle, UsageEvidenceError> {
    let mut selected = Vec::new();
    let mut found: Option<Access> = None;
    for index in log.find_by_message_id(message_id)? {
        let Some(stored) = log.record(index)? else {
            continue;
        };
        let record = stored.decode()?;
        if record.side != pb::LogSide::Server as i32 {
            continue;
        }
        if found.is_none()
            && let Some(a) = access_of(index, &record, provider)
        {
            if a.data_subject != subject || suppressed(rules, &a.client, a.logged_at_ms, now) {
                break;
            }
            found = Some(a);
        }
        selected.push((index, record.client));
    }
    let Some(access) = found else {
        return Err(UsageEvidenceError::NotFound(message_id.to_owned()));
    };
    // The request record and the response to the same client: nothing else by that id.
    let client = access.client.to_string();
    let indexes: Vec<u64> = selected
        .into_iter()
        .filter(|(i, c)| *i >= access.index && *c == client)
        .map(|(i, _)| i)
        .take(2)
        .collect();
    Ok(msglog::export(
        log,
        server,
        &indexes,
        false,
        clock,
        |_, _| {},
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTAL: &str = "JP/GOV/digital-agency/portal";
    const WELFARE: &str = "JP/MUN/271004/welfare";
    const RECORDS: &str = "JP/MUN/131016/records";

    fn sub(s: &str) -> SubsystemId {
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
        assert!(r.suppresses(&sub(WELFARE), 0, 10));
        assert!(r.suppresses(&sub("JP/MUN/271004/tax"), 0, i64::MAX));
        assert!(!r.suppresses(&sub(PORTAL), 0, 10));
        let r = rule(WELFARE, None);
        assert!(r.suppresses(&sub(WELFARE), 0, 10));
        assert!(!r.suppresses(&sub("JP/MUN/271004/tax"), 0, 10));
    }

    #[test]
    fn a_delaying_rule_reveals_a_record_once_it_is_as_old_as_the_delay() {
        let r = rule("JP/MUN/271004", Some(3600));
        let logged_ms = 1_000_000_500;
        let logged = 1_000_000;
        assert!(r.suppresses(&sub(WELFARE), logged_ms, logged));
        assert!(r.suppresses(&sub(WELFARE), logged_ms, logged + 3599));
        assert!(!r.suppresses(&sub(WELFARE), logged_ms, logged + 3600));
        assert!(!suppressed(
            &[rule(PORTAL, None), r.clone()],
            &sub(WELFARE),
            logged_ms,
            logged + 3600
        ));
        assert!(suppressed(
            &[r, rule(WELFARE, None)],
            &sub(WELFARE),
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
        assert_eq!(a.client, sub(WELFARE));
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
}
