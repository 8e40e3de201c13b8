//! Which of the servers hosting a provider the client proxy tries first: healthy ones in turn,
//! those that recently could not be reached last (DESIGN §5.2 failover).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use globalconf::SecurityServerId;

/// How long a provider server that could not be reached is tried last.
const UNHEALTHY_FOR: Duration = Duration::from_secs(30);

/// Provider servers ranked by recent connection failures; healthy ones share the load.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failed_at: Mutex<HashMap<SecurityServerId, Instant>>,
    next: AtomicUsize,
}

impl Health {
    /// Healthy servers first, rotated for each call so they share the load; then those that
    /// recently failed, longest-ago failure first.
    pub(crate) fn order(&self, servers: &[SecurityServerId]) -> Vec<SecurityServerId> {
        if servers.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % servers.len();
        let rotated = servers[start..].iter().chain(&servers[..start]);
        let failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        let (mut healthy, mut sick) = (Vec::new(), Vec::new());
        for s in rotated {
            match failed.get(s) {
                Some(at) if at.elapsed() < UNHEALTHY_FOR => sick.push((*at, s.clone())),
                _ => healthy.push(s.clone()),
            }
        }
        sick.sort_by_key(|(at, _)| *at);
        healthy.extend(sick.into_iter().map(|(_, s)| s));
        healthy
    }

    pub(crate) fn failed(&self, server: &SecurityServerId) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(server.clone(), Instant::now());
    }

    pub(crate) fn succeeded(&self, server: &SecurityServerId) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.remove(server);
    }
}
