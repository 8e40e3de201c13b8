//! What the registry's tasks and handlers share: the configuration, the keys it serves and
//! signs with, the current publication, and the state machine ([`Core`]) behind one lock.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use certs::Clock;
use globalconf::{Anchor, InstanceId};
use tokio::sync::watch;

use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::ops::Core;
use crate::store::Publication;

pub(crate) struct Shared {
    pub(crate) config: RegistryConfig,
    pub(crate) instance: InstanceId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) anchor: Anchor,
    pub(crate) anchor_toml: String,
    pub(crate) ca_pem: String,
    pub(crate) admin_token: certs::Zeroizing<String>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// What `tls` presents; replaced when the registry renews its certificate.
    pub(crate) tls_identity: certs::LiveIdentity,
    pub(crate) publication: watch::Sender<Arc<Publication>>,
    pub(crate) core: Mutex<Core>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("instance", &self.instance)
            .field("data_dir", &self.config.data_dir)
            .field("serial", &self.publication.borrow().serial)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic mid-operation may have left memory ahead of the database: reload.
                let mut guard = poisoned.into_inner();
                self.core.clear_poison();
                if let Err(e) = guard.reload() {
                    tracing::error!(error = %e, "reloading the registry state failed");
                }
                guard
            }
        }
    }

    /// Renews the registry's own TLS certificate when it is due
    /// ([`crate::datadir::renew_own_certificate`]); the public endpoint presents the new one from
    /// the next handshake.
    pub(crate) fn renew_own_certificate(&self) -> Result<(), RegistryError> {
        let dir = crate::datadir::DataDir::new(&self.config.data_dir);
        let hosts = self.config.public_hosts()?;
        let current = self.tls_identity.current();
        let renewed = {
            let core = self.lock();
            crate::datadir::renew_own_certificate(
                &dir,
                &self.instance,
                &core.ca,
                &hosts,
                &current,
                &*self.clock,
            )?
        };
        if let Some(identity) = renewed {
            self.tls_identity.replace(identity)?;
        }
        Ok(())
    }

    /// Runs one operation under the lock at the clock's current time, and announces a new
    /// publication if it made one.
    pub(crate) fn with_core<T>(
        &self,
        op: impl FnOnce(&mut Core, i64) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut core = self.lock();
        let now = self.clock.unix_now();
        let result = op(&mut core, now);
        if let Some(p) = &core.publication
            && p.serial != self.publication.borrow().serial
        {
            tracing::info!(serial = p.serial, "published a new global configuration");
            self.publication.send_replace(Arc::clone(p));
        }
        result
    }
}
