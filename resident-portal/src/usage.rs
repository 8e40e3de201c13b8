//! Access records and the timeline, with no I/O: recognising `listClients` and `findUsage`
//! answers and X-Road errors, paging through one provider, and merging every provider's answer
//! into one timeline in which a provider that did not answer stays visible.

use std::collections::{HashMap, HashSet};

use globalconf::{ClientId, MemberId, SecurityServerId, SubsystemId};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest `X-Road-Id` (visible ASCII), as the security server accepts it.
pub const MAX_MESSAGE_ID_BYTES: usize = 255;

/// Longest error message kept from a security server's answer, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why an answer from the security server cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not the expected JSON: {0}")]
    Json(String),
    #[error("the answer is about {found}, not {expected}")]
    OtherProvider { expected: String, found: String },
    #[error("a record has an invalid message id {0:?}")]
    MessageId(String),
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn as_display<S: serde::Serializer>(
    server: &Option<SecurityServerId>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match server {
        Some(server) => s.collect_str(server),
        None => s.serialize_none(),
    }
}

/// One access record as `findUsage` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub time: String,
    pub time_ms: i64,
    pub message_id: String,
    /// The client subsystem that made the request.
    pub client: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub client_member_name: String,
    /// The client's member's names per language, from the global configuration.
    #[serde(default)]
    pub client_member_names: std::collections::BTreeMap<String, String>,
    /// Where residents ask the client's member about its use of their data, as the member
    /// published it; shown only when it is an `https:` or `mailto:` URL.
    #[serde(default)]
    pub client_privacy_contact: Option<String>,
    /// The provider's member's names per language.
    #[serde(default)]
    pub provider_member_names: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub client_subsystem_name: String,
    /// The client subsystem's names per language, from the global configuration.
    #[serde(default)]
    pub client_subsystem_names: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub service: String,
    pub service_code: String,
    /// What the provider calls the service for residents, by language (`ja`, `en`).
    #[serde(default)]
    pub service_names: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub method: String,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    /// The security server asked for this record, when the portal chose one (a subsystem hosted
    /// by several servers: each holds only the exchanges it served); its evidence is asked of
    /// the same server. Not part of the `findUsage` answer.
    #[serde(
        skip_deserializing,
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_display"
    )]
    pub server: Option<SecurityServerId>,
}

impl UsageRecord {
    /// The service as a resident reading `lang` (`ja`, `en`) sees it: its name in that
    /// language, else in another, else its code.
    pub fn service_name(&self, lang: &str) -> &str {
        self.service_names
            .get(lang)
            .or_else(|| self.service_names.values().next())
            .map_or(self.service_code.as_str(), String::as_str)
    }

    /// The client's organisation for a reader of `lang`: its name in that language, else its
    /// name, else its member identifier.
    pub fn client_organisation_in(&self, lang: &str) -> &str {
        match self.client_member_names.get(lang) {
            Some(name) if !name.trim().is_empty() => name,
            _ => self.client_organisation(),
        }
    }

    /// Where to ask the client's organisation about this access: its published contact, when
    /// it is a URL a page may link to (`https:` or `mailto:`; anything else, such as a
    /// `javascript:` URL from a provider's server, is not shown).
    pub fn privacy_contact(&self) -> Option<&str> {
        self.client_privacy_contact
            .as_deref()
            .filter(|c| globalconf::conf::is_contact_url(c))
    }

    /// The client's organisation: its name, or its member identifier when it has none.
    pub fn client_organisation(&self) -> &str {
        if !self.client_member_name.trim().is_empty() {
            return &self.client_member_name;
        }
        // INSTANCE/CLASS/MEMBER of INSTANCE/CLASS/MEMBER/SUBSYSTEM.
        match self.client.rsplit_once('/') {
            Some((member, _)) if member.matches('/').count() == 2 => member,
            _ => &self.client,
        }
    }

    /// The client subsystem for a reader of `lang`: its name in that language, else its name,
    /// else its identifier.
    pub fn client_subsystem_in(&self, lang: &str) -> &str {
        match self.client_subsystem_names.get(lang) {
            Some(name) if !name.trim().is_empty() => name,
            _ => self.client_subsystem(),
        }
    }

    /// The client subsystem: its name, or its identifier when it has none.
    pub fn client_subsystem(&self) -> &str {
        if self.client_subsystem_name.trim().is_empty() {
            &self.client
        } else {
            &self.client_subsystem_name
        }
    }

    /// The purpose, when one was stated.
    pub fn stated_purpose(&self) -> Option<&str> {
        self.purpose.as_deref().filter(|p| !p.trim().is_empty())
    }
}

/// One page of a `findUsage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UsagePage {
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub limit: u64,
    pub more: bool,
    pub records: Vec<UsageRecord>,
    /// The provider's member and subsystem names per language, as published.
    #[serde(default)]
    pub provider_member_names: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub provider_subsystem_names: std::collections::BTreeMap<String, String>,
}

impl UsagePage {
    /// Recognises a whole page asked of `provider`: JSON shape, the provider it is about, and
    /// message ids that can name evidence.
    pub fn parse(body: &[u8], provider: &SubsystemId) -> Result<Self, AnswerError> {
        let page: Self =
            serde_json::from_slice(body).map_err(|e| AnswerError::Json(e.to_string()))?;
        if let Some(found) = &page.provider
            && *found != provider.to_string()
        {
            return Err(AnswerError::OtherProvider {
                expected: provider.to_string(),
                found: found.clone(),
            });
        }
        if let Some(r) = page.records.iter().find(|r| !is_message_id(&r.message_id)) {
            return Err(AnswerError::MessageId(r.message_id.clone()));
        }
        Ok(page)
    }
}

/// An `X-Road-Id`: 1–255 visible ASCII characters.
pub fn is_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, Deserialize)]
struct ListClients {
    member: Vec<ClientEntry>,
}

#[derive(Debug, Deserialize)]
struct ClientEntry {
    id: ClientIdJson,
    /// The member's name (for a subsystem too).
    #[serde(default, deserialize_with = "null_as_empty")]
    name: String,
    /// A subsystem's own name.
    #[serde(default, deserialize_with = "null_as_empty")]
    subsystem_name: String,
    /// Our security server's extension: the servers hosting a subsystem.
    #[serde(default)]
    security_servers: Vec<ServerIdJson>,
}

#[derive(Debug, Deserialize)]
struct ServerIdJson {
    xroad_instance: String,
    member_class: String,
    member_code: String,
    server_code: String,
}

#[derive(Debug, Deserialize)]
struct ClientIdJson {
    object_type: String,
    xroad_instance: String,
    member_class: String,
    member_code: String,
    #[serde(default)]
    subsystem_code: Option<String>,
}

/// Who is in the federation, from `listClients`: member and subsystem names, and the subsystems
/// the portal can ask.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    members: HashMap<MemberId, String>,
    subsystems: Vec<(SubsystemId, String)>,
    /// The servers hosting each subsystem, where the answer named them.
    servers: HashMap<SubsystemId, Vec<SecurityServerId>>,
}

impl Directory {
    /// Recognises a `listClients` answer. Entries whose identifiers break the identifier rule
    /// are left out (they could not be asked anyway).
    pub fn parse(body: &[u8]) -> Result<Self, AnswerError> {
        let list: ListClients =
            serde_json::from_slice(body).map_err(|e| AnswerError::Json(e.to_string()))?;
        let mut directory = Self::default();
        for entry in list.member {
            let id = entry.id;
            let Ok(member) = MemberId::new(&id.xroad_instance, &id.member_class, &id.member_code)
            else {
                continue;
            };
            match (id.object_type.as_str(), id.subsystem_code) {
                ("MEMBER", _) => {
                    directory.members.insert(member, entry.name);
                }
                ("SUBSYSTEM", Some(code)) => {
                    if let Ok(subsystem) = member.subsystem(&code)
                        && !directory.subsystems.iter().any(|(s, _)| *s == subsystem)
                    {
                        let servers: Vec<SecurityServerId> = entry
                            .security_servers
                            .iter()
                            .filter_map(|s| {
                                MemberId::new(&s.xroad_instance, &s.member_class, &s.member_code)
                                    .and_then(|owner| owner.server(&s.server_code))
                                    .ok()
                            })
                            .collect();
                        if !servers.is_empty() {
                            directory.servers.insert(subsystem.clone(), servers);
                        }
                        directory.subsystems.push((subsystem, entry.subsystem_name));
                    }
                }
                _ => {}
            }
        }
        directory.subsystems.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(directory)
    }

    /// Adds another instance's `listClients` answer (a federated instance's members).
    pub fn extend(&mut self, other: Directory) {
        self.members.extend(other.members);
        self.servers.extend(other.servers);
        for (id, name) in other.subsystems {
            if !self.subsystems.iter().any(|(s, _)| *s == id) {
                self.subsystems.push((id, name));
            }
        }
        self.subsystems.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// The security servers that host `id`, as `listClients` named them (none when it did not).
    pub fn servers_of(&self, id: &SubsystemId) -> &[SecurityServerId] {
        self.servers.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every subsystem listed, in identifier order.
    pub fn subsystems(&self) -> impl Iterator<Item = &SubsystemId> {
        self.subsystems.iter().map(|(s, _)| s)
    }

    /// How a provider is shown: names from the directory, identifiers where it has none.
    pub fn provider(&self, id: &SubsystemId) -> Provider {
        let member_name = self
            .members
            .get(id.member())
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| id.member().to_string());
        // Sorted by identifier (`parse`, `extend`); thousands of providers per page.
        let at = self.subsystems.binary_search_by(|(s, _)| s.cmp(id)).ok();
        let subsystem_name = at
            .and_then(|at| self.subsystems.get(at))
            .map(|(_, n)| n.clone())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| id.code().to_owned());
        Provider {
            id: id.clone(),
            member_name,
            subsystem_name,
            member_names: Default::default(),
            subsystem_names: Default::default(),
        }
    }
}

/// A provider subsystem the portal asks, with the names shown for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    pub id: SubsystemId,
    pub member_name: String,
    pub subsystem_name: String,
    /// Names per language, from the provider's own `findUsage` answer (empty until it answers).
    pub member_names: std::collections::BTreeMap<String, String>,
    pub subsystem_names: std::collections::BTreeMap<String, String>,
}

impl Provider {
    /// The provider's organisation for a reader of `lang`.
    pub fn member_name_in(&self, lang: &str) -> &str {
        self.member_names
            .get(lang)
            .filter(|n| !n.trim().is_empty())
            .map_or(self.member_name.as_str(), String::as_str)
    }

    /// The provider's subsystem for a reader of `lang`.
    pub fn subsystem_name_in(&self, lang: &str) -> &str {
        self.subsystem_names
            .get(lang)
            .filter(|n| !n.trim().is_empty())
            .map_or(self.subsystem_name.as_str(), String::as_str)
    }
}

/// An X-Road error answer (or any non-2xx answer) from the security server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoadFailure {
    pub status: u16,
    /// From `X-Road-Error`, else from the JSON body's `type`.
    pub error_type: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl XRoadFailure {
    pub fn from_answer(status: u16, x_road_error: Option<&str>, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (body_type, message) = match parsed {
            Some(b) => (b.error_type, b.message),
            None => (None, None),
        };
        let error_type = x_road_error
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .or(body_type)
            .map(|t| shorten(&t));
        Self {
            status,
            error_type,
            message: message.map(|m| shorten(&m)),
        }
    }

    /// Whether the error type ends in `.{suffix}` (e.g. `AccessDenied`).
    pub fn is(&self, suffix: &str) -> bool {
        self.error_type.as_deref().is_some_and(|t| {
            t.strip_suffix(suffix)
                .is_some_and(|head| head.is_empty() || head.ends_with('.'))
        })
    }

    /// The provider does not let this portal see its usage data (a decision, not a fault).
    pub fn is_not_shared(&self) -> bool {
        self.is("AccessDenied") || self.is("UnknownService")
    }

    /// The error type, or `HTTP {status}` when the answer named none.
    pub fn kind(&self) -> String {
        self.error_type
            .clone()
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    /// One line: the type and, when given, the message.
    pub fn describe(&self) -> String {
        match &self.message {
            Some(m) if !m.trim().is_empty() => format!("{}: {m}", self.kind()),
            _ => self.kind(),
        }
    }

    /// What this error means for the provider's place in the timeline.
    pub fn source_state(&self, partial_records: usize) -> SourceState {
        if self.is_not_shared() && partial_records == 0 {
            SourceState::NotShared {
                error_type: self.kind(),
            }
        } else {
            // The error type only: the message may name hosts and ports of the federation,
            // which residents have no use for (the portal's log has it, see gateway).
            SourceState::Unavailable {
                reason: self.kind(),
                partial_records,
            }
        }
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if s.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Paging through one provider's `findUsage`, following `more` up to a record limit.
#[derive(Debug, Clone)]
pub struct ProviderPaging {
    page_size: u32,
    max_records: usize,
    next_offset: u64,
    records: Vec<UsageRecord>,
    truncated: bool,
    done: bool,
}

impl ProviderPaging {
    pub fn new(page_size: u32, max_records: usize) -> Self {
        Self {
            page_size: page_size.max(1),
            max_records: max_records.max(1),
            next_offset: 0,
            records: Vec::new(),
            truncated: false,
            done: false,
        }
    }

    /// The next page to ask for, as `(offset, limit)`; `None` when done.
    pub fn next_request(&self) -> Option<(u64, u32)> {
        if self.done {
            return None;
        }
        let remaining = self.max_records.saturating_sub(self.records.len());
        let limit = u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .min(self.page_size);
        Some((self.next_offset, limit))
    }

    /// Takes the page answered to the last [`Self::next_request`].
    pub fn accept(&mut self, page: UsagePage) {
        let received = page.records.len();
        let remaining = self.max_records.saturating_sub(self.records.len());
        if received > remaining {
            self.truncated = true;
        }
        self.records
            .extend(page.records.into_iter().take(remaining));
        self.next_offset = self.next_offset.saturating_add(received as u64);
        if !page.more {
            self.done = true;
        } else if self.records.len() >= self.max_records || received == 0 {
            // More exists, but we stop here: at the limit, or the server made no progress.
            self.truncated = true;
            self.done = true;
        }
        if self.truncated {
            self.done = true;
        }
    }

    pub fn records_so_far(&self) -> usize {
        self.records.len()
    }

    /// The records and whether more exist than were taken.
    pub fn finish(self) -> (Vec<UsageRecord>, bool) {
        (self.records, self.truncated)
    }
}

/// What became of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SourceState {
    /// Answered; `truncated` when it holds more than the portal shows.
    Ok { records: usize, truncated: bool },
    /// Does not share its usage data with this portal (`AccessDenied`, `UnknownService`).
    NotShared { error_type: String },
    /// Could not be asked: the timeline lacks (some of) its records.
    Unavailable {
        reason: String,
        /// Records received before the failure (they are in the timeline).
        partial_records: usize,
    },
}

/// One provider's line in the list of sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    #[serde(flatten)]
    pub provider: Provider,
    #[serde(flatten)]
    pub state: SourceState,
}

/// One provider's answer: its status and the records it gave.
#[derive(Debug, Clone)]
pub struct ProviderResult {
    pub source: SourceStatus,
    pub records: Vec<UsageRecord>,
}

/// One access to the resident's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// The subsystem whose data was accessed (and whose server holds the record).
    pub provider: SubsystemId,
    pub provider_member_name: String,
    pub provider_subsystem_name: String,
    #[serde(flatten)]
    pub record: UsageRecord,
}

impl AccessEntry {
    /// The provider's organisation for a reader of `lang`: its name in that language, else its
    /// name.
    pub fn provider_name_in(&self, lang: &str) -> &str {
        match self.record.provider_member_names.get(lang) {
            Some(name) if !name.trim().is_empty() => name,
            _ => &self.provider_member_name,
        }
    }
}

/// Every provider's records as one list, newest first, and how each provider answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub entries: Vec<AccessEntry>,
    pub sources: Vec<SourceStatus>,
}

impl Timeline {
    /// Merges providers' answers: newest first by `time_ms`, each (provider, message id) once.
    pub fn merge(results: Vec<ProviderResult>) -> Self {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        let mut sources = Vec::with_capacity(results.len());
        for result in results {
            let provider = &result.source.provider;
            for record in result.records {
                if seen.insert((provider.id.clone(), record.message_id.clone())) {
                    entries.push(AccessEntry {
                        provider: provider.id.clone(),
                        provider_member_name: provider.member_name.clone(),
                        provider_subsystem_name: provider.subsystem_name.clone(),
                        record,
                    });
                }
            }
            sources.push(result.source);
        }
        entries.sort_by(|a, b| {
            b.record
                .time_ms
                .cmp(&a.record.time_ms)
                .then_with(|| a.provider.cmp(&b.provider))
                .then_with(|| a.record.message_id.cmp(&b.record.message_id))
        });
        sources.sort_by(|a, b| a.provider.id.cmp(&b.provider.id));
        Self { entries, sources }
    }

    /// Gives clients the directory's names where a record carries none (identifiers remain the
    /// last resort, see [`UsageRecord::client_organisation`]).
    pub fn fill_names(&mut self, directory: &Directory) {
        for entry in &mut self.entries {
            let r = &mut entry.record;
            // A subsystem, or a member that called as itself.
            let Ok(client) = r.client.parse::<ClientId>() else {
                continue;
            };
            if r.client_member_name.trim().is_empty()
                && let Some(name) = directory.members.get(client.member())
            {
                r.client_member_name.clone_from(name);
            }
            if r.client_subsystem_name.trim().is_empty()
                && let Some((_, name)) = directory.subsystems.iter().find(|(s, _)| client == *s)
            {
                r.client_subsystem_name.clone_from(name);
            }
        }
    }

    /// Providers whose records are missing from the timeline, wholly or partly.
    pub fn unavailable(&self) -> impl Iterator<Item = &SourceStatus> {
        self.sources
            .iter()
            .filter(|s| matches!(s.state, SourceState::Unavailable { .. }))
    }
}

#[cfg(test)]
mod tests;
