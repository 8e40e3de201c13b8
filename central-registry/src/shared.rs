//! What the registry's tasks and handlers share: the configuration, the keys it serves and
//! signs with, the current publication, and the state machine ([`Core`]) behind one lock.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use certs::Clock;
use globalconf::{Anchor, InstanceId};
use tokio::sync::watch;

use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::ops::{Core, Served};
use crate::store::Publication;

pub(crate) struct Shared {
    pub(crate) config: RegistryConfig,
    pub(crate) instance: InstanceId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) anchor: Anchor,
    /// The anchor and CA certificates served (they change with a CA rollover).
    pub(crate) served: Arc<RwLock<Served>>,
    pub(crate) admin_token: certs::Zeroizing<String>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) publication: watch::Sender<Arc<Publication>>,
    pub(crate) core: Mutex<Core>,
    pub(crate) metrics: crate::metrics::RegistryMetrics,
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

    /// Renews the registry's own TLS certificate when it is due ([`Core::renew_own_certificate`]).
    pub(crate) fn renew_own_certificate(&self) -> Result<(), RegistryError> {
        self.lock().renew_own_certificate()
    }

    /// What the public endpoint serves besides the configuration.
    pub(crate) fn served(&self) -> Served {
        self.served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
