//! The portal as an X-Road client: calls to its own security server's client proxy (X-Road REST)
//! — `listClients`, `findUsage` on every provider in parallel, and `usageEvidence`. Every call
//! carries `X-Road-Client`, and the resident as `X-Road-Data-Subject` with the configured
//! `X-Road-Purpose`. What the answers mean is decided in [`crate::usage`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use globalconf::id::encode_part;
use globalconf::{InstanceId, SecurityServerId, SubsystemId};
use http::Method;
use runtime::{ClientError, HttpClient, Response};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Config, ConfigError};
use crate::login::{Resident, ResidentId};
use crate::usage::{
    Directory, Provider, ProviderPaging, ProviderResult, SourceState, SourceStatus, Timeline,
    UsagePage, UsageRecord, XRoadFailure,
};

/// The largest answer read from the security server (an evidence bundle is the largest).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Why no timeline could be built at all (single providers failing are part of the timeline).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot get the list of organisations from the security server: {0}")]
    Discovery(String),
}

/// Why an evidence bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the record is not sealed in a checkpoint yet")]
    NotYetSealed,
    #[error("the provider has no such record for this resident")]
    NotFound,
    #[error("the provider does not share evidence with this portal ({0})")]
    NotShared(String),
    #[error("the evidence could not be retrieved: {0}")]
    Failed(String),
}

/// The portal's client of its security server.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    base: String,
    client: String,
    purpose: String,
    page_size: u32,
    max_records: usize,
    max_parallel: usize,
    /// `member_timeout_ms`: every provider's whole `findUsage`, from when the first is asked.
    member_timeout: Duration,
    targets: Option<Vec<SubsystemId>>,
    /// `federated_instances`: whose members are listed and asked too.
    federated: Vec<InstanceId>,
    /// `[[identifiers]]`: member → the login claim it knows residents by.
    identifiers: Vec<crate::config::IdentifierRule>,
}

impl Gateway {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let client = config
            .client
            .as_ref()
            .ok_or_else(|| ConfigError::Invalid("client is required".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http: HttpClient::plain()
                    .with_timeout(config.timeout())
                    .with_max_body(MAX_ANSWER_BYTES),
                base: config.base_url().to_owned(),
                client: client.to_string(),
                purpose: config.purpose.clone(),
                page_size: config.page_size,
                max_records: config.max_records_per_provider,
                max_parallel: config.max_parallel,
                member_timeout: config.member_timeout(),
                targets: config.targets.clone(),
                federated: config.federated_instances.clone(),
                identifiers: config.identifiers.clone(),
            }),
        })
    }

    /// Whether `provider` may be asked: one of the configured targets, or any subsystem when the
    /// targets come from discovery (the provider's server decides what it shares).
    pub fn may_ask(&self, provider: &SubsystemId) -> bool {
        self.inner
            .targets
            .as_ref()
            .is_none_or(|targets| targets.contains(provider))
    }

    /// `GET /listClients`, and `GET /listClients?xRoadInstance=…` of each federated instance.
    /// A federated instance whose list cannot be had is left out (and logged): this
    /// instance's members are still asked.
    pub async fn directory(&self) -> Result<Directory, GatewayError> {
        let mut directory = self.list_clients(None).await?;
        for instance in &self.inner.federated {
            match self.list_clients(Some(instance)).await {
                Ok(theirs) => directory.extend(theirs),
                Err(e) => {
                    tracing::warn!(%instance, error = %e, "cannot list a federated instance's members; asking only the others")
                }
            }
        }
        Ok(directory)
    }

    async fn list_clients(&self, instance: Option<&InstanceId>) -> Result<Directory, GatewayError> {
        let url = match instance {
            None => format!("{}/listClients", self.inner.base),
            Some(i) => format!(
                "{}/listClients?xRoadInstance={}",
                self.inner.base,
                encode_part(i.as_str())
            ),
        };
        let answer = self
            .inner
            .http
            .request(
                Method::GET,
                &url,
                &[("accept", "application/json")],
                Bytes::new(),
            )
            .await
            .map_err(|e| GatewayError::Discovery(e.to_string()))?;
        if !answer.is_success() {
            let failure = failure_of(&answer);
            return Err(GatewayError::Discovery(failure.describe()));
        }
        Directory::parse(&answer.body).map_err(|e| GatewayError::Discovery(e.to_string()))
    }

    /// The identifier `provider`'s member knows the resident by: the login's claim its
    /// `[[identifiers]]` rule names, else the login's own identifier; `Err` with the claim when
    /// the login did not carry it.
    pub fn subject_at<'r>(
        &self,
        resident: &'r Resident,
        provider: &SubsystemId,
    ) -> Result<&'r ResidentId, String> {
        let rule = self
            .inner
            .identifiers
            .iter()
            .find(|r| r.members.contains(provider.member()));
        match rule {
            None => Ok(&resident.id),
            Some(rule) => resident
                .claims
                .get(&rule.claim)
                .ok_or_else(|| rule.claim.clone()),
        }
    }

    /// Asks every provider for the resident's access records, each by the identifier it knows
    /// the resident by ([`Gateway::subject_at`]), and merges the answers. Fails only when there
    /// is nobody to ask: the provider list could not be discovered.
    pub async fn timeline(&self, resident: &Resident) -> Result<Timeline, GatewayError> {
        let directory = match (&self.inner.targets, self.directory().await) {
            (_, Ok(directory)) => directory,
            (None, Err(e)) => return Err(e),
            (Some(_), Err(e)) => {
                // With explicit targets, names are a nicety: identifiers stand in.
                tracing::warn!(error = %e, "listClients failed; showing identifiers for names");
                Directory::default()
            }
        };
        let providers: Vec<(Provider, Vec<SecurityServerId>)> = match &self.inner.targets {
            Some(targets) => targets.iter().map(|s| asked(&directory, s)).collect(),
            None => directory
                .subsystems()
                .map(|s| asked(&directory, s))
                .collect(),
        };

        // One deadline for every provider, from when they are first asked: the page answers
        // by then whatever hangs, and a provider still waiting for a permit is late too.
        let deadline = Instant::now() + self.inner.member_timeout;
        let limit = Arc::new(Semaphore::new(self.inner.max_parallel));
        let mut tasks = JoinSet::new();
        for (index, (provider, servers)) in providers.iter().enumerate() {
            let gateway = self.clone();
            let subject = self.subject_at(resident, &provider.id).cloned();
            let provider = provider.clone();
            let servers = servers.clone();
            let limit = Arc::clone(&limit);
            tasks.spawn(async move {
                let subject = match subject {
                    Ok(s) => s,
                    Err(claim) => {
                        let reason = format!(
                            "the login did not give this resident's identifier at this \
                             organisation (claim {claim:?})"
                        );
                        let source = SourceStatus {
                            provider,
                            state: SourceState::Unavailable {
                                reason,
                                partial_records: 0,
                            },
                        };
                        let records = Vec::new();
                        return (index, ProviderResult { source, records });
                    }
                };
                // The semaphore is never closed; without a permit we would only run unbounded.
                let Ok(Ok(_permit)) =
                    tokio::time::timeout_at(deadline, limit.acquire_owned()).await
                else {
                    let source = SourceStatus {
                        provider,
                        state: SourceState::Unavailable {
                            reason: "timeout: not asked in time (too many organisations at once)"
                                .into(),
                            partial_records: 0,
                        },
                    };
                    let records = Vec::new();
                    return (index, ProviderResult { source, records });
                };
                (
                    index,
                    gateway
                        .provider_usage(&subject, provider, &servers, deadline)
                        .await,
                )
            });
        }
        let mut results: Vec<Option<ProviderResult>> = vec![None; providers.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => {
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(result);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a provider query task failed"),
            }
        }
        let results = results
            .into_iter()
            .zip(providers)
            .map(|(result, (provider, _))| {
                result.unwrap_or_else(|| ProviderResult {
                    source: SourceStatus {
                        provider,
                        state: SourceState::Unavailable {
                            reason: "internal error in the portal".into(),
                            partial_records: 0,
                        },
                    },
                    records: Vec::new(),
                })
            })
            .collect();
        let mut timeline = Timeline::merge(results);
        timeline.fill_names(&directory);
        Ok(timeline)
    }

    /// One provider's access records. When `listClients` named several servers hosting it,
    /// each is asked in turn (`X-Road-Security-Server`), since each logs only the exchanges it
    /// served; otherwise the provider is asked once, of whichever server the portal's security
    /// server picks. All of it by `deadline`. Never fails: a failure is the provider's state.
    async fn provider_usage(
        &self,
        resident: &ResidentId,
        mut provider: Provider,
        servers: &[SecurityServerId],
        deadline: Instant,
    ) -> ProviderResult {
        if servers.len() < 2 {
            let answer = self
                .server_usage(resident, &provider.id, None, deadline)
                .await;
            if let Some((member, subsystem)) = answer.names {
                (provider.member_names, provider.subsystem_names) = (member, subsystem);
            }
            let state = answer.failure.unwrap_or(SourceState::Ok {
                records: answer.records.len(),
                truncated: answer.truncated,
            });
            return ProviderResult {
                source: SourceStatus { provider, state },
                records: answer.records,
            };
        }
        let mut records = Vec::new();
        let mut truncated = false;
        let mut failures = Vec::new();
        for server in servers {
            let answer = self
                .server_usage(resident, &provider.id, Some(server), deadline)
                .await;
            if let Some((member, subsystem)) = answer.names {
                (provider.member_names, provider.subsystem_names) = (member, subsystem);
            }
            records.extend(answer.records);
            truncated |= answer.truncated;
            if let Some(failure) = answer.failure {
                failures.push((server, failure));
            }
        }
        // The newest up to the limit, as from a single server.
        records.sort_by_key(|r| std::cmp::Reverse(r.time_ms));
        if records.len() > self.inner.max_records {
            records.truncate(self.inner.max_records);
            truncated = true;
        }
        let state = if failures.is_empty() {
            SourceState::Ok {
                records: records.len(),
                truncated,
            }
        } else if failures.len() == servers.len()
            && failures
                .iter()
                .all(|(_, f)| matches!(f, SourceState::NotShared { .. }))
        {
            failures.swap_remove(0).1
        } else {
            // Also a server that does not share while another does: its records are missing.
            let reason = failures
                .iter()
                .filter_map(|(server, failure)| match failure {
                    SourceState::NotShared { error_type: why }
                    | SourceState::Unavailable { reason: why, .. } => {
                        Some(format!("{server}: {why}"))
                    }
                    SourceState::Ok { .. } => None,
                })
                .collect::<Vec<_>>()
                .join("; ");
            SourceState::Unavailable {
                reason,
                partial_records: records.len(),
            }
        };
        ProviderResult {
            source: SourceStatus { provider, state },
            records,
        }
    }

    /// Pages through one provider's `findUsage`, of `server` when given, until `deadline`.
    async fn server_usage(
        &self,
        resident: &ResidentId,
        provider: &SubsystemId,
        server: Option<&SecurityServerId>,
        deadline: Instant,
    ) -> ServerAnswer {
        let mut paging = ProviderPaging::new(self.inner.page_size, self.inner.max_records);
        let mut failure: Option<SourceState> = None;
        let mut names = None;
        while let Some((offset, limit)) = paging.next_request() {
            let url = format!(
                "{}/findUsage?offset={offset}&limit={limit}",
                self.service_base(provider)
            );
            let partial = paging.records_so_far();
            let call = tokio::time::timeout_at(deadline, self.call(&url, resident, server));
            let answer = match call.await {
                Ok(Ok(a)) => a,
                Err(_elapsed) => {
                    tracing::info!(%provider, "findUsage not done within member_timeout_ms");
                    failure = Some(SourceState::Unavailable {
                        reason: "timeout: the organisation did not answer in time".into(),
                        partial_records: partial,
                    });
                    break;
                }
                Ok(Err(e)) => {
                    failure = Some(SourceState::Unavailable {
                        reason: transport_reason(&e),
                        partial_records: partial,
                    });
                    break;
                }
            };
            if !answer.is_success() {
                let failure_of_answer = failure_of(&answer);
                tracing::info!(
                    %provider,
                    server = server.map(tracing::field::display),
                    error = %failure_of_answer.describe(),
                    "findUsage refused or failed"
                );
                failure = Some(failure_of_answer.source_state(partial));
                break;
            }
            match UsagePage::parse(&answer.body, provider) {
                Ok(page) => {
                    names = Some((
                        page.provider_member_names.clone(),
                        page.provider_subsystem_names.clone(),
                    ));
                    paging.accept(page);
                }
                Err(e) => {
                    tracing::info!(%provider, error = %e, "invalid findUsage answer");
                    failure = Some(SourceState::Unavailable {
                        reason: "invalid findUsage answer".into(),
                        partial_records: partial,
                    });
                    break;
                }
            }
        }
        if let Some(SourceState::Unavailable { reason, .. }) = &failure {
            tracing::info!(%provider, %reason, "provider unavailable");
        }
        let (mut records, truncated) = paging.finish();
        if let Some(server) = server {
            for record in &mut records {
                record.server = Some(server.clone());
            }
        }
        ServerAnswer {
            records,
            truncated,
            failure,
            names,
        }
    }

    /// `GET /r1/{provider}/usageEvidence?id=…` for the resident: the bundle's bytes.
    /// Asked of `server` when given: the one that answered with the record.
    pub async fn evidence(
        &self,
        resident: &Resident,
        provider: &SubsystemId,
        server: Option<&SecurityServerId>,
        message_id: &str,
    ) -> Result<Bytes, EvidenceError> {
        let resident = self
            .subject_at(resident, provider)
            .map_err(|claim| EvidenceError::Failed(format!("no identifier (claim {claim:?})")))?;
        let url = format!(
            "{}/usageEvidence?id={}",
            self.service_base(provider),
            globalconf::id::encode_text(message_id)
        );
        let answer = self
            .call(&url, resident, server)
            .await
            .map_err(|e| EvidenceError::Failed(transport_reason(&e)))?;
        if answer.is_success() {
            return Ok(answer.body);
        }
        let failure = failure_of(&answer);
        Err(if failure.is("NotYetCheckpointed") {
            EvidenceError::NotYetSealed
        } else if failure.is("UsageRecordNotFound") {
            EvidenceError::NotFound
        } else if failure.is_not_shared() {
            EvidenceError::NotShared(failure.kind())
        } else {
            EvidenceError::Failed(failure.describe())
        })
    }

    /// `{base}/r1/{INSTANCE}/{CLASS}/{MEMBER}/{SUBSYSTEM}`, each part percent-encoded.
    fn service_base(&self, provider: &SubsystemId) -> String {
        let m = provider.member();
        format!(
            "{}/r1/{}/{}/{}/{}",
            self.inner.base,
            encode_part(m.instance()),
            encode_part(m.class()),
            encode_part(m.code()),
            encode_part(provider.code())
        )
    }

    async fn call(
        &self,
        url: &str,
        resident: &ResidentId,
        server: Option<&SecurityServerId>,
    ) -> Result<Response, ClientError> {
        let pinned = server.map(server_header);
        let mut headers = vec![
            ("x-road-client", self.inner.client.as_str()),
            ("x-road-data-subject", resident.as_str()),
            ("x-road-purpose", self.inner.purpose.as_str()),
            ("accept", "application/json, application/x-protobuf"),
        ];
        if let Some(pinned) = &pinned {
            headers.push(("x-road-security-server", pinned.as_str()));
        }
        self.inner
            .http
            .request(Method::GET, url, &headers, Bytes::new())
            .await
    }
}

/// What one server answered: its records, whether it holds more, and how it failed if it did.
#[derive(Debug)]
struct ServerAnswer {
    records: Vec<UsageRecord>,
    truncated: bool,
    failure: Option<SourceState>,
    /// The provider's names per language (member, subsystem), from its answer.
    names: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

/// A provider and the servers `listClients` says host it.
fn asked(directory: &Directory, id: &SubsystemId) -> (Provider, Vec<SecurityServerId>) {
    (directory.provider(id), directory.servers_of(id).to_vec())
}

/// `X-Road-Security-Server: INSTANCE/CLASS/MEMBER/SERVER`, each part percent-encoded.
fn server_header(server: &SecurityServerId) -> String {
    let owner = server.owner();
    format!(
        "{}/{}/{}/{}",
        encode_part(owner.instance()),
        encode_part(owner.class()),
        encode_part(owner.code()),
        encode_part(server.code())
    )
}

fn failure_of(answer: &Response) -> XRoadFailure {
    let error_type = answer
        .headers
        .get("x-road-error")
        .and_then(|v| v.to_str().ok());
    XRoadFailure::from_answer(answer.status.as_u16(), error_type, &answer.body)
}

/// What residents are told; the details (addresses) go to the portal's log only.
fn transport_reason(e: &ClientError) -> String {
    tracing::info!(error = %e, "call to the security server failed");
    match e {
        ClientError::Timeout(_) => "timeout: the security server did not answer in time".into(),
        _ => "the portal's security server could not be reached".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_only_unreserved() {
        let encode = globalconf::id::encode_text;
        assert_eq!(encode("abc-._~019"), "abc-._~019");
        assert_eq!(encode("a b+c?d=e&f/g"), "a%20b%2Bc%3Fd%3De%26f%2Fg");
        assert_eq!(encode("住"), "%E4%BD%8F");
    }

    #[test]
    fn service_urls_encode_each_part() {
        let config = Config {
            security_server: "http://127.0.0.1:1/".into(),
            client: Some("JP/GOV/digital-agency/portal".parse().unwrap()),
            login: crate::config::LoginConfig {
                kind: Some(crate::config::LoginKind::Development),
                danger_development_login: true,
                ..crate::config::LoginConfig::default()
            },
            ..Config::default()
        };
        let g = Gateway::new(&config).unwrap();
        let p: SubsystemId = "JP/MUN/a?b/c+d".parse().unwrap();
        assert_eq!(
            g.service_base(&p),
            "http://127.0.0.1:1/r1/JP/MUN/a%3Fb/c%2Bd"
        );
        assert!(g.may_ask(&p));
    }
}
