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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use certs::Clock;

use globalconf::{
    ClientId, GlobalConf, IdError, MemberId, SecurityServerId, ServiceId, SubsystemId,
};
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
    pub fn covers(&self, client: &ClientId) -> bool {
        match self {
            SuppressedClient::Member(m) => client.member() == m,
            SuppressedClient::Subsystem(s) => client == s,
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
    pub fn suppresses(&self, client: &ClientId, logged_at_ms: i64, now: i64) -> bool {
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
pub fn suppressed(rules: &[Suppression], client: &ClientId, logged_at_ms: i64, now: i64) -> bool {
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
    /// A subsystem, or a member that called as itself.
    pub client: ClientId,
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
    let client: ClientId = record.client.parse().ok()?;
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
    (server, provider): (&SecurityServerId, &SubsystemId),
    (offset, limit): (usize, usize),
    conf: &GlobalConf,
    service_names: impl Fn(&ServiceId) -> BTreeMap<String, String>,
) -> serde_json::Value {
    let provider_names = conf
        .member(provider.member())
        .map(|m| m.names.clone())
        .unwrap_or_default();
    let records: Vec<serde_json::Value> = page
        .accesses
        .iter()
        .map(|(a, status)| {
            let member = conf.member(a.client.member());
            serde_json::json!({
                "time": runtime::time::rfc3339_millis(a.logged_at_ms),
                "time_ms": a.logged_at_ms,
                "message_id": a.message_id,
                "client": a.client.to_string(),
                "client_member_name": member.map(|m| m.name.as_str()).unwrap_or_default(),
                // The member's own names per language and its privacy contact, from the
                // global configuration: what residents read and where they ask.
                "client_member_names": member.map(|m| m.names.clone()).unwrap_or_default(),
                "client_privacy_contact": member.and_then(|m| m.privacy_contact.as_deref()),
                "provider_member_names": provider_names,
                "client_subsystem_name": a
                    .client
                    .subsystem()
                    .and_then(|s| conf.subsystem_name(s))
                    .unwrap_or_default(),
                "client_subsystem_names": a
                    .client
                    .subsystem()
                    .map(|s| conf.subsystem_names(s))
                    .unwrap_or_default(),
                "service": a.service.to_string(),
                "service_code": a.service.code(),
                "service_names": service_names(&a.service),
                "method": a.method,
                "purpose": a.purpose,
                "status": status,
            })
        })
        .collect();
    serde_json::json!({
        "server": server.to_string(),
        "provider": provider.to_string(),
        // The provider's names per language, as published: residents see it by them.
        "provider_member_names": provider_names,
        "provider_subsystem_names": conf.subsystem_names(provider),
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
mod tests;
