//! Renewal of this server's TLS certificate before it expires (DESIGN §3, lifecycle), without a
//! restart and without an exchange failing.
//!
//! 1. When the certificate has `tls.renew_before_days` left, when the configuration names another
//!    issuing CA (a CA rollover), or when the operator runs `renew`, the server makes a new key
//!    (`tls-next.key`, or `LABEL.next` in a token) and sends the registry a renewal request
//!    signed with the current key and the new one. The registry issues a certificate for the new
//!    key at once (`tls-next.pem`) and lists it beside the current one, so peers accept both.
//! 2. Once the configuration lists the new certificate, and has for `tls.install_delay_secs`
//!    (default twice the poll interval, so peers hold that configuration too), the server moves
//!    the new key and certificate into place and presents them from the next handshake.
//! 3. It tells the registry, which then lists the new certificate only.
//!
//! Each step is idempotent and repeated on the next check if it failed (registry unreachable,
//! crash), and the files say where a renewal stands, so a restart picks it up.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use certs::{Clock, Domain, LiveIdentity, SigningKey, TlsIdentity};
use globalconf::{Anchor, SecurityServerId};
use prost::Message as _;
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::confclient::ConfClient;
use crate::identity::{IdentityError, Paths, TlsKeys, certifies, post_to_registry};

/// Where the renewal of the TLS certificate stands, for `status`, `/health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsStatus {
    /// SHA-256 (hex) of the certificate presented now.
    pub cert_sha256: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
    /// When this server asks for a renewed one (Unix seconds).
    pub renew_at: i64,
    /// `none`, `issued` (a renewed certificate waits to be listed and installed), or `installed`
    /// (presented; the registry still lists the old one too).
    pub renewal: String,
    /// Why the last attempt failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl TlsStatus {
    /// An expired certificate, or one past its renewal time whose renewal failed or is a day
    /// overdue, needs the operator: the server's health is a warning.
    pub fn needs_attention(&self, now: i64) -> bool {
        let overdue = now >= self.renew_at
            && (self.last_error.is_some() || now >= self.renew_at.saturating_add(86_400));
        overdue || now > self.not_after
    }
}

/// The answer of the registry's `POST /v1/renewals`.
#[derive(Debug, Deserialize)]
struct RenewalAnswer {
    status: String,
    certificate_pem: String,
}

/// The renewal task and its handle (manual `renew`, status).
#[derive(Debug)]
pub struct Renewal {
    live: LiveIdentity,
    paths: Paths,
    /// Where the TLS key is, and where the next one is made.
    keys: TlsKeys,
    server_id: SecurityServerId,
    anchor: Anchor,
    conf: Arc<ConfClient>,
    clock: Arc<dyn Clock>,
    renew_before: i64,
    check_interval: Duration,
    install_delay: Option<Duration>,
    requested: Notify,
    state: Mutex<State>,
    /// One check at a time (the task's and the operator's).
    step_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// When the configuration was first seen listing the certificate in `tls-next.pem`.
    listed_since: Option<Instant>,
    last_error: Option<String>,
    forced: bool,
}

/// What one check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing due.
    Idle,
    /// A renewed certificate was asked for and stored.
    Issued,
    /// A renewed certificate waits to be listed long enough.
    Waiting,
    /// The renewed certificate is presented now.
    Installed,
    /// The registry lists only the renewed certificate.
    Completed,
}

impl Renewal {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        live: LiveIdentity,
        paths: Paths,
        keys: TlsKeys,
        server_id: SecurityServerId,
        anchor: Anchor,
        conf: Arc<ConfClient>,
        clock: Arc<dyn Clock>,
        settings: &crate::config::TlsConfig,
    ) -> Self {
        Self {
            live,
            paths,
            keys,
            server_id,
            anchor,
            conf,
            clock,
            renew_before: i64::try_from(settings.renew_before_days.saturating_mul(86_400))
                .unwrap_or(i64::MAX),
            check_interval: Duration::from_secs(settings.check_interval_secs),
            install_delay: (settings.install_delay_secs > 0)
                .then(|| Duration::from_secs(settings.install_delay_secs)),
            requested: Notify::new(),
            state: Mutex::new(State::default()),
            step_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a renewal now, whatever the certificate's expiry (the `renew` command), and takes
    /// its first step; the task goes on with the rest.
    pub async fn renew_now(&self) -> Result<TlsStatus, IdentityError> {
        self.state().forced = true;
        let outcome = self.step().await;
        self.record(&outcome);
        self.requested.notify_one();
        outcome?;
        self.status()
    }

    fn record(&self, outcome: &Result<Step, IdentityError>) {
        match outcome {
            Ok(step) => {
                if *step != Step::Idle && *step != Step::Waiting {
                    tracing::info!(?step, "TLS certificate renewal");
                }
                self.state().last_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate renewal failed; will retry");
                self.state().last_error = Some(e.to_string());
            }
        }
    }

    /// Why the certificate needs the operator, if it does (`/health` shows a warning).
    pub fn attention(&self) -> Option<String> {
        let status = self.status().ok()?;
        let now = self.clock.unix_now();
        status
            .needs_attention(now)
            .then(|| match &status.last_error {
                Some(e) => format!(
                    "the TLS certificate expires at {} and its renewal failed: {e}",
                    status.not_after
                ),
                None => format!(
                    "the TLS certificate expires at {} and is not renewed yet",
                    status.not_after
                ),
            })
    }

    /// Where the renewal stands.
    pub fn status(&self) -> Result<TlsStatus, IdentityError> {
        let current = self.live.current();
        let info = leaf_info(&current)?;
        let pin = current.leaf_sha256();
        let renewal = if self.listed_as_renewal(&pin) {
            "installed"
        } else if self.paths.tls_next_cert().exists() {
            "issued"
        } else {
            "none"
        };
        let renew_at = if self.issuer_superseded(&current) {
            self.clock.unix_now()
        } else {
            info.not_after.saturating_sub(self.renew_before)
        };
        Ok(TlsStatus {
            cert_sha256: hex::encode(pin),
            not_after: info.not_after,
            renew_at,
            renewal: renewal.to_owned(),
            last_error: self.state().last_error.clone(),
        })
    }

    /// Checks every `tls.check_interval_secs`, and at once when asked, until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: runtime::Shutdown) {
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            let outcome = self.step().await;
            let next = match &outcome {
                // Keep going promptly while a renewal is under way.
                Ok(Step::Issued | Step::Waiting | Step::Installed) => {
                    self.check_interval.min(Duration::from_secs(5))
                }
                _ => self.check_interval,
            };
            self.record(&outcome);
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(next) => {}
                () = self.requested.notified() => {}
            }
        }
    }

    fn listed_as_renewal(&self, pin: &[u8; 32]) -> bool {
        self.conf.current().is_some_and(|c| {
            c.conf()
                .server(&self.server_id)
                .is_some_and(|s| s.renewal_tls_cert_sha256.as_ref() == Some(pin))
        })
    }

    fn listed(&self, pin: &[u8; 32]) -> bool {
        self.conf.current().is_some_and(|c| {
            c.conf()
                .server(&self.server_id)
                .is_some_and(|s| s.pins().any(|p| &p == pin))
        })
    }

    /// One check: does whatever the renewal needs next.
    pub async fn step(&self) -> Result<Step, IdentityError> {
        let _one_at_a_time = self.step_lock.lock().await;
        let current = self.live.current();
        // 3. Presented, but the registry still lists the old certificate too.
        if self.listed_as_renewal(&current.leaf_sha256()) {
            self.ask(&current, current.key(), true).await?;
            return Ok(Step::Completed);
        }
        if let Some(next_key) = self.keys.next()? {
            match read_chain(&self.paths.tls_next_cert()) {
                // 2. Issued: install once listed long enough.
                Some(chain) if certifies(&chain, &next_key) => {
                    let pin = certs::cert_sha256(&chain[0]);
                    if !self.listed(&pin) {
                        self.state().listed_since = None;
                        return Ok(Step::Waiting);
                    }
                    let since = *self.state().listed_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < self.install_delay() {
                        return Ok(Step::Waiting);
                    }
                    self.install(chain, next_key)?;
                    self.state().listed_since = None;
                    return Ok(Step::Installed);
                }
                // 1. The key is made but its certificate not stored yet: ask (again).
                _ => {
                    self.ask(&current, &next_key, false).await?;
                    return Ok(Step::Issued);
                }
            }
        }
        let info = leaf_info(&current)?;
        let forced = std::mem::take(&mut self.state().forced);
        if !forced
            && self.clock.unix_now() < info.not_after.saturating_sub(self.renew_before)
            && !self.issuer_superseded(&current)
        {
            return Ok(Step::Idle);
        }
        let next_key = self.keys.make_next()?;
        self.ask(&current, &next_key, false).await?;
        Ok(Step::Issued)
    }

    /// Whether the configuration names an issuing CA that did not issue `identity`'s certificate:
    /// a CA rollover is under way, and this server renews under the new CA now.
    fn issuer_superseded(&self, identity: &TlsIdentity) -> bool {
        let Some(conf) = self.conf.current() else {
            return false;
        };
        match (
            conf.conf().ca_certificates().first(),
            identity.cert_chain.first(),
        ) {
            (Some(issuing), Some(leaf)) => !certs::issued_by(leaf, issuing),
            _ => false,
        }
    }

    fn install_delay(&self) -> Duration {
        self.install_delay
            .unwrap_or_else(|| 2 * self.conf.poll_interval())
    }

    /// Sends a renewal request for `new_key`, signed by it and by the current key; stores the
    /// certificate the registry issued for it as `tls-next.pem` (unless `in_use`).
    async fn ask(
        &self,
        current: &TlsIdentity,
        new_key: &SigningKey,
        in_use: bool,
    ) -> Result<(), IdentityError> {
        let request = pb::RenewalRequest {
            server_id: self.server_id.to_string(),
            new_tls_public_key_der: new_key.public_key().to_spki_der(),
            created_at: self.clock.unix_now(),
            in_use,
        }
        .encode_to_vec();
        let signed = pb::SignedRenewalRequest {
            current_key_signature: current
                .key()
                .sign(Domain::RenewalRequest, &request)
                .to_vec(),
            new_key_signature: new_key.sign(Domain::RenewalRequest, &request).to_vec(),
            request,
        };
        let answer: RenewalAnswer = post_to_registry(
            &self.anchor,
            self.conf.registry_roots(),
            "/v1/renewals",
            signed.encode_to_vec(),
            Arc::clone(&self.clock),
        )
        .await?;
        let chain = certs::certs_from_pem(&answer.certificate_pem)?;
        if !certifies(&chain, new_key) {
            return Err(IdentityError::CertificateMismatch);
        }
        if !in_use {
            certs::write_file_atomic(
                &self.paths.tls_next_cert(),
                answer.certificate_pem.as_bytes(),
            )?;
        }
        tracing::debug!(status = %answer.status, "registry answered the renewal request");
        Ok(())
    }

    /// Presents the new key and certificate from now on, then moves them into place (the key
    /// first: a crash in between is finished by [`crate::identity::Identity::load`]; a crash
    /// before either leaves the renewal to be installed again after the restart).
    fn install(&self, chain: Vec<Vec<u8>>, key: SigningKey) -> Result<(), IdentityError> {
        self.live.replace(TlsIdentity::new(chain, key))?;
        self.keys.install_next()?;
        rename(&self.paths.tls_next_cert(), &self.paths.tls_cert())?;
        sync_dir(self.paths.data_dir())?;
        Ok(())
    }
}

fn leaf_info(identity: &TlsIdentity) -> Result<certs::CertificateInfo, IdentityError> {
    let leaf = identity
        .cert_chain
        .first()
        .ok_or(IdentityError::CertificateMismatch)?;
    Ok(certs::certificate_info(leaf)?)
}

fn read_chain(path: &Path) -> Option<Vec<Vec<u8>>> {
    let pem = std::fs::read_to_string(path).ok()?;
    certs::certs_from_pem(&pem).ok()
}

fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    std::fs::rename(from, to).map_err(|source| IdentityError::Io {
        path: to.display().to_string(),
        source,
    })
}

fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| IdentityError::Io {
            path: dir.display().to_string(),
            source,
        })
}
