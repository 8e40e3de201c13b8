//! The global configuration client (DESIGN §4): starts from the copy stored on disk, polls the
//! registries, falls back to peer security servers when no registry answers, and accepts only a
//! correctly signed configuration that is not older than the one it holds.
//!
//! The decision itself (signature, instance, serial) is `globalconf`'s; this module does the I/O
//! around it and publishes the current configuration on a `watch` channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certs::{CaRoots, Clock};
use globalconf::{Anchor, ConfError, SecurityServerId, Succession, VerifiedConf};
use proto::v1 as pb;
use proto::v1::peer_client::PeerClient;
use tokio::sync::{Mutex, watch};
use tonic::transport::Channel;

use crate::peer::PeerPool;

/// How many peers a refresh asks when no registry provided a configuration.
pub const PEERS_ASKED: usize = 8;
/// How many peers are told of a newly accepted configuration.
pub const PEERS_OFFERED: usize = 4;

/// Why a refresh found nothing to accept.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("no registry or peer provided an acceptable configuration: {0}")]
    NoSource(String),
    #[error("cannot store the configuration: {0}")]
    Store(#[from] certs::Error),
}

/// Where an accepted configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Registry(String),
    Peer(SecurityServerId),
}

/// The outcome of a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub source: Source,
    pub serial: u64,
    pub succession: Succession,
}

/// Holds the current configuration and keeps it fresh.
#[derive(Debug)]
pub struct ConfClient {
    anchor: Anchor,
    store_path: PathBuf,
    own_id: SecurityServerId,
    current: watch::Sender<Option<VerifiedConf>>,
    registries: runtime::HttpClient,
    peers: Arc<PeerPool>,
    // Serialises offers, so that check-then-store cannot interleave.
    offer_lock: Mutex<()>,
    // Serialises peers' offers, so that several offering the same new configuration at once
    // cause one download.
    take_lock: Mutex<()>,
    /// The CAs HTTPS to the registry trusts: the held configuration's.
    roots: Arc<CaRoots>,
    poll_override: Option<Duration>,
    /// How long one download from a registry or a peer may take.
    fetch_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// For a federated instance's configuration: this server's own instance's configuration,
    /// whose servers relay the other instance's too (DESIGN §4 (b)).
    relays: Option<watch::Receiver<Option<VerifiedConf>>>,
}

impl ConfClient {
    /// Starts from the stored copy when there is a valid one. A stored copy that no longer
    /// verifies (altered on disk, or the anchor changed) is ignored and logged.
    pub fn open(
        anchor: Anchor,
        store_path: PathBuf,
        own_id: SecurityServerId,
        peers: Arc<PeerPool>,
        fetch_timeout: Duration,
        poll_override: Option<Duration>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, certs::Error> {
        let stored = match std::fs::read(&store_path) {
            Ok(bytes) => match globalconf::signed::verify(&bytes, &anchor) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(path = %store_path.display(), error = %e, "stored configuration is not valid; ignoring it");
                    None
                }
            },
            Err(_) => None,
        };
        // HTTPS to the registry trusts the CAs the configuration lists (they change at a CA
        // rollover), or the anchor's before there is one that lists them.
        let listed = stored.as_ref().map(|conf| conf.conf().trusted_cas(&anchor));
        let roots = match listed.map(|cas| CaRoots::new(&cas)) {
            Some(Ok(roots)) => roots,
            Some(Err(e)) => {
                tracing::error!(error = %e, "the stored configuration's CA certificates are unusable; trusting the anchor's");
                CaRoots::new(&anchor.ca_certificates_der())?
            }
            None => CaRoots::new(&anchor.ca_certificates_der())?,
        };
        let tls = roots.client_config(&[b"h2", b"http/1.1"], Arc::clone(&clock))?;
        let registries = runtime::HttpClient::https(tls)
            .with_timeout(fetch_timeout)
            .with_max_body(256 * 1024 * 1024);
        let (current, _) = watch::channel(stored);
        Ok(Self {
            anchor,
            store_path,
            own_id,
            current,
            registries,
            peers,
            offer_lock: Mutex::new(()),
            take_lock: Mutex::new(()),
            roots,
            poll_override,
            fetch_timeout,
            clock,
            relays: None,
        })
    }

    /// Makes this the client of a federated instance's configuration: when its registries do
    /// not answer, the servers of `own` (this server's instance) are asked for it as well as
    /// the other instance's servers.
    pub fn relayed_by(mut self, own: watch::Receiver<Option<VerifiedConf>>) -> Self {
        self.relays = Some(own);
        self
    }

    pub fn current(&self) -> Option<VerifiedConf> {
        self.current.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<VerifiedConf>> {
        self.current.subscribe()
    }

    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// The CAs HTTPS to the registry trusts now.
    pub fn registry_roots(&self) -> &Arc<CaRoots> {
        &self.roots
    }

    /// The configuration if it is usable for exchanges now: present and not expired.
    pub fn valid_now(&self) -> Result<VerifiedConf, String> {
        let now = self.clock.unix_now();
        match self.current() {
            None => Err("this security server holds no global configuration".into()),
            Some(c) if c.conf().is_expired(now) => Err(format!(
                "the global configuration (serial {}) expired at {} (Unix time); the registry and all peers have been unreachable",
                c.serial(),
                c.conf().expires_at()
            )),
            Some(c) => Ok(c),
        }
    }

    /// Verifies an envelope, checks it may replace the current one, stores it atomically and
    /// publishes it.
    pub async fn offer(&self, envelope: &[u8]) -> Result<Succession, OfferError> {
        // The one held, offered again (peers pass a new one on to each other): nothing to check.
        if self
            .current
            .borrow()
            .as_ref()
            .is_some_and(|held| held.envelope() == envelope)
        {
            return Ok(Succession::Same);
        }
        let candidate = globalconf::signed::verify(envelope, &self.anchor)?;
        let _guard = self.offer_lock.lock().await;
        let succession = match self.current.borrow().as_ref() {
            Some(held) => held.check_successor(&candidate)?,
            None => Succession::Newer,
        };
        if succession == Succession::Newer {
            certs::write_file_atomic(&self.store_path, candidate.envelope())?;
            self.peers.retain(candidate.conf());
            match self
                .roots
                .replace(&candidate.conf().trusted_cas(&self.anchor))
            {
                Ok(true) => tracing::info!(
                    serial = candidate.serial(),
                    "the instance CAs changed: HTTPS to the registry trusts the new list"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the configuration's CA certificates are unusable")
                }
            }
            tracing::info!(
                serial = candidate.serial(),
                expires_at = candidate.conf().expires_at(),
                "accepted global configuration"
            );
            self.current.send_replace(Some(candidate));
        }
        Ok(succession)
    }

    /// Registry URLs to try: the anchor's first, then any the configuration adds.
    fn registry_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.anchor.registry_urls().to_vec();
        if let Some(c) = self.current.borrow().as_ref() {
            for u in c.conf().registry_urls() {
                if !urls.contains(u) {
                    urls.push(u.clone());
                }
            }
        }
        urls
    }

    /// One refresh: the registries in order; if none provides an acceptable configuration, the
    /// peer servers the held configuration lists.
    pub async fn refresh(&self) -> Result<Refreshed, RefreshError> {
        let mut failures = Vec::new();
        for base in self.registry_urls() {
            let url = format!("{}/v1/global-configuration", base.trim_end_matches('/'));
            // The serial is the configuration's entity tag: a registry answers 304 and no body
            // when this server already holds the newest one.
            let held = self.current().map(|c| c.serial());
            let etag = held.map(|serial| format!("\"{serial}\""));
            let headers: Vec<(&str, &str)> = etag
                .as_deref()
                .map(|tag| ("if-none-match", tag))
                .into_iter()
                .collect();
            let answer = self
                .registries
                .request(http::Method::GET, &url, &headers, bytes::Bytes::new())
                .await;
            match answer {
                Ok(r) if r.status == http::StatusCode::NOT_MODIFIED && held.is_some() => {
                    return Ok(Refreshed {
                        source: Source::Registry(base),
                        serial: held.unwrap_or_default(),
                        succession: Succession::Same,
                    });
                }
                Ok(r) if r.is_success() => match self.offer(&r.body).await {
                    Ok(succession) => {
                        return Ok(Refreshed {
                            source: Source::Registry(base),
                            serial: self.current().map_or(0, |c| c.serial()),
                            succession,
                        });
                    }
                    Err(OfferError::Store(e)) => return Err(RefreshError::Store(e)),
                    Err(e) => failures.push(format!("{base}: {e}")),
                },
                Ok(r) => failures.push(format!("{base}: HTTP {}", r.status)),
                Err(e) => failures.push(format!("{base}: {e}")),
            }
        }
        tracing::warn!(failures = %failures.join("; "), "no registry provided a configuration; asking peers");
        match self.refresh_from_peers(&mut failures).await? {
            Some(r) => Ok(r),
            None => Err(RefreshError::NoSource(failures.join("; "))),
        }
    }

    /// The servers that may relay this configuration: those it lists, then (for a federated
    /// instance's) this server's own instance's, never this server itself.
    fn relaying_servers(&self) -> Vec<globalconf::ServerInfo> {
        let mut servers: Vec<globalconf::ServerInfo> = self
            .current()
            .map(|held| held.conf().servers().cloned().collect())
            .unwrap_or_default();
        if let Some(own) = self.relays.as_ref().and_then(|r| r.borrow().clone()) {
            servers.extend(own.conf().servers().cloned());
        }
        servers.retain(|s| s.id != self.own_id);
        servers
    }

    /// Asks [`PEERS_ASKED`] peers chosen at random, all at once, for anything newer than the
    /// configuration held. Asking every peer in turn, as this did before, cost each server a
    /// download from every other at each poll while the registries were down: traffic growing
    /// with the square of the instance. A new configuration still reaches every server quickly
    /// because the servers that accept it tell others of it ([`ConfClient::spread`]).
    async fn refresh_from_peers(
        &self,
        failures: &mut Vec<String>,
    ) -> Result<Option<Refreshed>, RefreshError> {
        let servers = self.relaying_servers();
        if servers.is_empty() {
            failures.push("no configuration held, so no peers known".into());
            return Ok(None);
        }
        let asked = random_sample(servers, PEERS_ASKED);
        let have = self.current().map_or(0, |c| c.serial());
        let answers =
            futures_util::future::join_all(asked.iter().map(|s| self.fetch_from(s, have))).await;
        let mut best: Option<Refreshed> = None;
        for (server, answer) in asked.iter().zip(answers) {
            let succession = match answer {
                Err(e) => {
                    failures.push(format!("{}: {e}", server.id));
                    continue;
                }
                // The peer holds nothing newer.
                Ok(None) => Succession::Same,
                Ok(Some(envelope)) => match self.offer(&envelope).await {
                    Ok(succession) => succession,
                    Err(OfferError::Store(e)) => return Err(RefreshError::Store(e)),
                    Err(e) => {
                        failures.push(format!("{}: {e}", server.id));
                        continue;
                    }
                },
            };
            let serial = self.current().map_or(0, |c| c.serial());
            if best
                .as_ref()
                .is_none_or(|b| serial > b.serial || succession == Succession::Newer)
            {
                best = Some(Refreshed {
                    source: Source::Peer(server.id.clone()),
                    serial,
                    succession,
                });
            }
        }
        Ok(best)
    }

    /// One peer's configuration if it is newer than `have` (`None`: it holds nothing newer).
    async fn fetch_from(
        &self,
        server: &globalconf::ServerInfo,
        have: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        let request = pb::GetConfigurationRequest {
            have_serial: have,
            instance: self.anchor.instance().to_string(),
        };
        let signed = self
            .call_peer(server, |mut client| {
                let request = request.clone();
                async move { client.get_configuration(request).await }
            })
            .await?;
        Ok((signed != pb::SignedConfiguration::default())
            .then(|| prost::Message::encode_to_vec(&signed)))
    }

    /// Makes `call` to the first of `server`'s addresses that answers, each within the fetch
    /// timeout; the last failure if none does.
    async fn call_peer<T, F, Fut>(
        &self,
        server: &globalconf::ServerInfo,
        call: F,
    ) -> Result<T, String>
    where
        F: Fn(PeerClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = "no address".to_owned();
        for address in &server.addresses {
            let client = match self.peers.client(server, address) {
                Ok(c) => c,
                Err(e) => {
                    last = format!("at {address}: {e}");
                    continue;
                }
            };
            match tokio::time::timeout(self.fetch_timeout, call(client)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => last = format!("at {address}: {}", status.message()),
                Err(_) => last = format!("at {address}: timed out"),
            }
        }
        Err(last)
    }

    /// Tells [`PEERS_OFFERED`] servers of the instance, chosen at random, of every
    /// configuration this client newly accepts, from wherever it came; those that hold an older
    /// one fetch it from this server, verify it and tell others in turn ([`ConfClient::take_offer`]:
    /// rumour spreading). A configuration one server fetched so reaches nearly all in a few
    /// round trips, also while the registries are down, and the few it misses fetch it from a
    /// peer at their next poll. For the own instance's configuration; the stored copy this
    /// client started from is not news.
    pub async fn spread(self: Arc<Self>, shutdown: runtime::Shutdown) {
        let mut updates = self.subscribe();
        updates.borrow_and_update();
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            tokio::select! {
                _ = &mut stop => return,
                changed = updates.changed() => if changed.is_err() { return },
            }
            let Some(conf) = updates.borrow_and_update().clone() else {
                continue;
            };
            let servers: Vec<globalconf::ServerInfo> = conf
                .conf()
                .servers()
                .filter(|s| s.id != self.own_id)
                .cloned()
                .collect();
            let chosen = random_sample(servers, PEERS_OFFERED);
            let offers = chosen.iter().map(|s| self.offer_to(s, conf.serial()));
            for (server, result) in chosen
                .iter()
                .zip(futures_util::future::join_all(offers).await)
            {
                match result {
                    Ok(serial) => {
                        tracing::debug!(peer = %server.id, offered = conf.serial(), holds = serial, "configuration offered")
                    }
                    Err(e) => {
                        tracing::debug!(peer = %server.id, error = %e, "configuration not offered")
                    }
                }
            }
        }
    }

    /// Tells one peer this server holds `serial`; the serial the peer holds afterwards.
    async fn offer_to(&self, server: &globalconf::ServerInfo, serial: u64) -> Result<u64, String> {
        let answer = self
            .call_peer(server, |mut client| async move {
                client
                    .offer_configuration(pb::OfferConfigurationRequest { serial })
                    .await
            })
            .await?;
        Ok(answer.serial)
    }

    /// A server of the instance, `from`, says it holds `serial`: when that is newer than the
    /// configuration held, fetches it from `from` and offers it to this client (verified and
    /// checked as any other). Does nothing otherwise, so that the many offers of a
    /// configuration already held cost no download.
    pub async fn take_offer(
        &self,
        from: &globalconf::ServerInfo,
        serial: u64,
    ) -> Result<Succession, TakeOfferError> {
        let held = || self.current().map_or(0, |c| c.serial());
        if serial <= held() {
            return Ok(Succession::Same);
        }
        let _guard = self.take_lock.lock().await;
        // Another offer may have brought it meanwhile.
        let have = held();
        if serial <= have {
            return Ok(Succession::Same);
        }
        match self
            .fetch_from(from, have)
            .await
            .map_err(TakeOfferError::Fetch)?
        {
            // It offered more than it holds (or holds it no longer).
            None => Ok(Succession::Same),
            Some(envelope) => Ok(self.offer(&envelope).await?),
        }
    }

    /// How long to wait between polls.
    pub fn poll_interval(&self) -> Duration {
        self.poll_override.unwrap_or_else(|| {
            self.current()
                .map_or(globalconf::Parameters::DEFAULT_POLL_INTERVAL, |c| {
                    c.conf().parameters().poll_interval
                })
        })
    }

    /// Polls until shutdown. A failed refresh is logged and retried at the next poll.
    pub async fn run(self: Arc<Self>, shutdown: runtime::Shutdown) {
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            match self.refresh().await {
                Ok(r) if r.succession == Succession::Newer => {
                    tracing::info!(serial = r.serial, source = ?r.source, "configuration updated");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "configuration refresh failed"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.poll_interval()) => {}
            }
        }
    }
}

/// Why a configuration a peer offered was not taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeOfferError {
    #[error("cannot fetch it from the offering server: {0}")]
    Fetch(String),
    #[error(transparent)]
    Offer(#[from] OfferError),
}

/// Why an offered configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error(transparent)]
    Refused(#[from] ConfError),
    #[error("cannot store the configuration: {0}")]
    Store(#[from] certs::Error),
}

/// Up to `k` of `items`, chosen uniformly at random (a partial Fisher–Yates shuffle). Should
/// the system's random source fail, the first `k`.
fn random_sample<T>(mut items: Vec<T>, k: usize) -> Vec<T> {
    let k = k.min(items.len());
    for i in 0..k {
        let Ok(r) = getrandom::u64() else { break };
        let span = (items.len() - i) as u64;
        let j = i + usize::try_from(r % span).unwrap_or(0);
        items.swap(i, j);
    }
    items.truncate(k);
    items
}

#[cfg(test)]
mod tests {
    use super::random_sample;

    #[test]
    fn a_random_sample_is_k_distinct_items_and_varies() {
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut sample = random_sample((0..300).collect::<Vec<u32>>(), 8);
            firsts.insert(sample[0]);
            assert_eq!(sample.len(), 8);
            sample.sort_unstable();
            sample.dedup();
            assert_eq!(sample.len(), 8, "no item twice");
        }
        // 200 draws of one of 300: all the same would mean no randomness.
        assert!(firsts.len() > 50, "{firsts:?}");
        assert_eq!(random_sample(vec![1, 2], 8).len(), 2);
        assert!(random_sample(Vec::<u8>::new(), 8).is_empty());
    }
}
