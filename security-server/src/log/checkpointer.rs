//! The periodic signed checkpoint of this server's log (DESIGN §6): sign the tree head as a
//! C2SP `tlog-checkpoint`, ask the configured number of peer witnesses to cosign it (with a
//! consistency proof from the size each saw last), and keep the cosigned note.

use std::sync::Arc;
use std::time::Duration;

use certs::Clock;
use globalconf::{GlobalConf, SecurityServerId};
use msglog::MessageLog;
use proto::v1 as pb;
use tlog::{Checkpoint, NoteSigner};

use crate::confclient::ConfClient;
use crate::keys::MemberKeys;
use crate::metrics::Metrics;
use crate::peer::PeerPool;

/// How often (in checkpoint rounds) the stored checkpoints are thinned.
pub const THIN_EVERY_ROUNDS: u64 = 600;

/// Signs checkpoints of this server's log and has peers cosign them.
#[derive(Debug)]
pub struct Checkpointer {
    pub log: MessageLog,
    pub this: SecurityServerId,
    pub conf: Arc<ConfClient>,
    pub keys: Arc<MemberKeys>,
    pub peers: Arc<PeerPool>,
    pub clock: Arc<dyn Clock>,
    pub interval_override: Option<Duration>,
    pub witness_count_override: Option<u32>,
    pub metrics: Arc<Metrics>,
}

/// What one checkpoint round achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub size: u64,
    pub cosigned_by: Vec<SecurityServerId>,
}

/// The k servers after `this` in identifier order (wrapping), so witnessing load spreads evenly
/// and each server's witnesses are stable.
pub fn choose_witnesses(
    conf: &GlobalConf,
    this: &SecurityServerId,
    k: usize,
) -> Vec<SecurityServerId> {
    let ids: Vec<&SecurityServerId> = conf.servers().map(|s| &s.id).collect();
    let start = ids.iter().position(|id| *id > this).unwrap_or(0);
    ids.iter()
        .cycle()
        .skip(start)
        .take(ids.len())
        .filter(|id| **id != this)
        .take(k)
        .map(|id| (*id).clone())
        .collect()
}

/// Runs a blocking message-log call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, msglog::LogError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl Checkpointer {
    fn interval(&self) -> Duration {
        self.interval_override.unwrap_or_else(|| {
            self.conf
                .current()
                .map_or(globalconf::Parameters::DEFAULT_CHECKPOINT_INTERVAL, |c| {
                    c.conf().parameters().checkpoint_interval
                })
        })
    }

    /// Checkpoints every interval while there are new records, until shutdown. Every
    /// [`THIN_EVERY_ROUNDS`] rounds (and at the first) it also thins the stored checkpoints
    /// ([`msglog::history::Thinning`]).
    pub async fn run(self, shutdown: runtime::Shutdown) {
        let mut stop = std::pin::pin!(shutdown.wait());
        let mut rounds = 0u64;
        loop {
            if rounds.is_multiple_of(THIN_EVERY_ROUNDS) {
                let log = self.log.clone();
                match blocking(move || log.thin_checkpoints(msglog::history::Thinning::DEFAULT))
                    .await
                {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "thinned the stored checkpoints"),
                    Err(e) => tracing::warn!(error = %e, "thinning the stored checkpoints failed"),
                }
            }
            rounds += 1;
            let started = std::time::Instant::now();
            match self.round().await {
                Ok(Some(round)) => self.metrics.log.record_round(
                    round.size,
                    self.clock.unix_now(),
                    started.elapsed(),
                    round.cosigned_by.len(),
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint round failed"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.interval()) => {}
            }
        }
    }

    /// One round: sign a checkpoint of the current size if it grew, then ask the witnesses.
    pub async fn round(&self) -> Result<Option<Round>, String> {
        let log = self.log.clone();
        let (size, latest) = blocking(move || Ok((log.size()?, log.latest_checkpoint()?))).await?;
        if size == 0 {
            return Ok(None);
        }
        let conf = self.conf.valid_now()?;
        let conf = conf.conf();
        let now = self.clock.unix_now();
        let owner = self.this.owner();
        let key = self
            .keys
            .signer(owner, conf, now)
            .ok_or_else(|| format!("no signing key of {owner} is valid now"))?;
        let mut note = match latest {
            Some((s, text)) if s == size => tlog::note::parse(&text).map_err(|e| e.to_string())?,
            _ => {
                let log = self.log.clone();
                let root = blocking(move || log.root(size)).await?;
                let cp = Checkpoint::new(self.this.to_string(), size, root)
                    .map_err(|e| e.to_string())?;
                let signer = NoteSigner::new(
                    tlog::log_key_name(&self.this.to_string()),
                    certs::SigningKey::clone(&key),
                )
                .map_err(|e| e.to_string())?;
                tlog::sign_checkpoint(&cp, &signer)
            }
        };
        let cp = Checkpoint::parse_body(note.text()).map_err(|e| e.to_string())?;
        let k = self
            .witness_count_override
            .unwrap_or(conf.parameters().witness_count) as usize;
        let mut cosigned_by = Vec::new();
        for witness in choose_witnesses(conf, &self.this, k) {
            let name = witness.to_string();
            if note.signatures().iter().any(|s| s.name() == name) {
                cosigned_by.push(witness);
                continue;
            }
            match self.ask(conf, &witness, &cp, &note).await {
                Ok(line) => {
                    let sig = tlog::NoteSignature::from_line(&line).map_err(|e| e.to_string())?;
                    note.push_signature(sig).map_err(|e| e.to_string())?;
                    cosigned_by.push(witness);
                }
                Err(e) => {
                    tracing::info!(witness = %witness, error = %e, "witness did not cosign (will retry)")
                }
            }
        }
        let log = self.log.clone();
        let text = note.render();
        blocking(move || log.store_checkpoint(size, &text)).await?;
        Ok(Some(Round { size, cosigned_by }))
    }

    /// Asks one witness, starting from the size it last cosigned; retries once from the size it
    /// says it holds.
    async fn ask(
        &self,
        conf: &GlobalConf,
        witness: &SecurityServerId,
        cp: &Checkpoint,
        note: &tlog::Note,
    ) -> Result<String, String> {
        let server = conf
            .server(witness)
            .ok_or("witness not in the configuration")?;
        let address = server.addresses.first().ok_or("witness has no address")?;
        let mut client = self
            .peers
            .connect(server, address)
            .await
            .map_err(|e| e.to_string())?;
        let log = self.log.clone();
        let w = witness.to_string();
        let mut old_size = blocking(move || log.witnessed_size(&w)).await?;
        for _ in 0..2 {
            let log = self.log.clone();
            let new_size = cp.size();
            let proof = if old_size == 0 || old_size >= new_size {
                Vec::new()
            } else {
                blocking(move || log.consistency_proof(old_size, new_size)).await?
            };
            let request = pb::AddCheckpointRequest {
                old_size,
                consistency_proof: proof.iter().map(|h| h.to_vec()).collect(),
                checkpoint: note.render(),
            };
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.add_checkpoint(request))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|s| s.message().to_owned())?
                    .into_inner();
            match answer.result {
                Some(pb::add_checkpoint_response::Result::Cosignature(line)) => {
                    let log = self.log.clone();
                    let w = witness.to_string();
                    blocking(move || log.set_witnessed_size(&w, new_size)).await?;
                    return Ok(line);
                }
                Some(pb::add_checkpoint_response::Result::ConflictKnownSize(known)) => {
                    old_size = known
                }
                None => return Err("empty answer".into()),
            }
        }
        Err("the witness's size kept changing".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use globalconf::testing::ConfBuilder;

    use super::*;

    const CLIENT_SERVER: &str = "JP/GOV/digital-agency/ss1";
    const PROVIDER_SERVER: &str = "JP/MUN/131016/ss1";
    const OTHER_SERVER: &str = "JP/MUN/131024/ss1";

    fn conf() -> GlobalConf {
        ConfBuilder::new("JP", 1_700_000_000)
            .server(OTHER_SERVER, [3; 32], &[])
            .server(CLIENT_SERVER, [1; 32], &[])
            .server(PROVIDER_SERVER, [2; 32], &[])
            .build()
    }

    #[test]
    fn witnesses_are_the_next_servers_in_order_without_self() {
        let conf = conf();
        let id = |s: &str| s.parse::<SecurityServerId>().unwrap();
        // In identifier order: CLIENT_SERVER < PROVIDER_SERVER < OTHER_SERVER.
        assert_eq!(
            choose_witnesses(&conf, &id(CLIENT_SERVER), 1),
            vec![id(PROVIDER_SERVER)]
        );
        assert_eq!(
            choose_witnesses(&conf, &id(OTHER_SERVER), 1),
            vec![id(CLIENT_SERVER)]
        );
        assert_eq!(
            choose_witnesses(&conf, &id(PROVIDER_SERVER), 9),
            vec![id(OTHER_SERVER), id(CLIENT_SERVER)]
        );
    }
}
