//! The replay cache of a server proxy (DESIGN §5.2): which requests each client subsystem sent
//! within the replay window, by their X-Road-Request-Id (the client's security server makes one
//! per request; [`crate::message::replay_key`]). No I/O, no clock: every call is given `now`.
//!
//! The window is measured on the message's signed `created_at`: a message older than
//! `now - window` is refused as [`ReplayError::Expired`] (it could no longer be checked), so an
//! entry can be forgotten once `now > created_at + window`. Entries are kept ordered by that
//! expiry and pruned from the front on every call, so memory stays bounded by `max_entries`;
//! when the cache is full of unexpired entries, new messages are refused ([`ReplayError::Full`])
//! rather than weakening the check.
//!
//! An entry is a 16-byte digest of the client and the request id, not the two strings: at a
//! thousand requests a second a ten-minute window holds 600,000 entries, which as strings took
//! about half a kilobyte each and now take under a hundred bytes. Two different requests share
//! a digest with a probability of about 2⁻⁶⁴ even with a full cache, and since a collision could
//! only refuse a request as a duplicate, never accept a replay, that is no weakening.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use globalconf::ClientId;

/// Why a message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("this request was already received from this client within the replay window")]
    Duplicate,
    #[error("the message was created before the replay window and cannot be checked")]
    Expired,
    #[error("the replay cache is full")]
    Full,
}

/// The first 16 bytes of SHA-256 over the client and the request id, each length-prefixed so
/// that no two (client, id) pairs give the same input.
type Key = [u8; 16];

fn key(client: &ClientId, request_id: &str) -> Key {
    use sha2::Digest as _;
    let client = client.to_string();
    let mut hasher = sha2::Sha256::new();
    for part in [client.as_bytes(), request_id.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<Key>,
    /// The same entries with their expiry (`created_at + window`), ordered by it for pruning.
    by_expiry: BTreeSet<(i64, Key)>,
}

/// Thread-safe set of `(client, request id)` pairs seen within the window.
#[derive(Debug)]
pub struct ReplayCache {
    window_secs: i64,
    max_entries: usize,
    inner: Mutex<Inner>,
}

impl ReplayCache {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            window_secs: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Accepts the message and remembers it, or says why not. `created_at` is the signed
    /// creation time of the message, `now` the receiver's clock (Unix seconds).
    pub fn check_and_insert(
        &self,
        client: &ClientId,
        request_id: &str,
        created_at: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let mut inner = self.lock();
        inner.prune(now);
        let expiry = created_at.saturating_add(self.window_secs);
        if expiry < now {
            return Err(ReplayError::Expired);
        }
        let key = key(client, request_id);
        if inner.seen.contains(&key) {
            return Err(ReplayError::Duplicate);
        }
        if inner.seen.len() >= self.max_entries {
            return Err(ReplayError::Full);
        }
        inner.by_expiry.insert((expiry, key));
        inner.seen.insert(key);
        Ok(())
    }

    /// How long a request id is remembered.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.window_secs).unwrap_or(0))
    }

    /// How many entries are held (after the last pruning).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Both maps are updated without any call that can panic in between, so a poisoned
        // lock still guards a consistent cache.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Forgets every entry whose message would now be refused as expired anyway.
    fn prune(&mut self, now: i64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn client(code: &str) -> ClientId {
        format!("JP/GOV/digital-agency/{code}").parse().unwrap()
    }

    fn cache(max: usize) -> ReplayCache {
        ReplayCache::new(Duration::from_secs(300), max)
    }

    #[test]
    fn duplicate_from_the_same_client_is_refused() {
        let c = cache(10);
        c.check_and_insert(&client("a"), "id-1", NOW, NOW).unwrap();
        assert_eq!(
            c.check_and_insert(&client("a"), "id-1", NOW, NOW + 1),
            Err(ReplayError::Duplicate)
        );
        // Another client may use the same id; the same client another id.
        c.check_and_insert(&client("b"), "id-1", NOW, NOW).unwrap();
        c.check_and_insert(&client("a"), "id-2", NOW, NOW).unwrap();
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn where_the_client_ends_and_the_id_begins_matters() {
        let c = cache(10);
        let a: ClientId = "JP/GOV/x/a".parse().unwrap();
        let ab: ClientId = "JP/GOV/x/ab".parse().unwrap();
        c.check_and_insert(&a, "b1", NOW, NOW).unwrap();
        c.check_and_insert(&ab, "1", NOW, NOW).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_are_pruned_after_the_window() {
        let c = cache(10);
        c.check_and_insert(&client("a"), "id-1", NOW, NOW).unwrap();
        // Still inside the window at exactly created_at + window.
        assert_eq!(
            c.check_and_insert(&client("a"), "id-1", NOW, NOW + 300),
            Err(ReplayError::Duplicate)
        );
        // One second later the message itself is too old to be accepted...
        assert_eq!(
            c.check_and_insert(&client("a"), "id-1", NOW, NOW + 301),
            Err(ReplayError::Expired)
        );
        // ...and its entry was dropped.
        assert!(c.is_empty());
        // A fresh message with a reused id is accepted again.
        c.check_and_insert(&client("a"), "id-1", NOW + 301, NOW + 301)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn too_old_message_is_refused() {
        let c = cache(10);
        assert_eq!(
            c.check_and_insert(&client("a"), "id-1", NOW - 301, NOW),
            Err(ReplayError::Expired)
        );
        assert!(c.is_empty());
        c.check_and_insert(&client("a"), "id-1", NOW - 300, NOW)
            .unwrap();
    }

    #[test]
    fn full_cache_refuses_until_entries_expire() {
        let c = cache(2);
        c.check_and_insert(&client("a"), "1", NOW, NOW).unwrap();
        c.check_and_insert(&client("a"), "2", NOW + 10, NOW + 10)
            .unwrap();
        assert_eq!(
            c.check_and_insert(&client("a"), "3", NOW + 10, NOW + 10),
            Err(ReplayError::Full)
        );
        // A duplicate is still reported as such.
        assert_eq!(
            c.check_and_insert(&client("a"), "1", NOW, NOW + 10),
            Err(ReplayError::Duplicate)
        );
        // Once the first entry expires there is room again.
        c.check_and_insert(&client("a"), "3", NOW + 301, NOW + 301)
            .unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn future_created_at_is_remembered_longer() {
        let c = cache(10);
        c.check_and_insert(&client("a"), "f", NOW + 60, NOW)
            .unwrap();
        assert_eq!(
            c.check_and_insert(&client("a"), "f", NOW + 60, NOW + 350),
            Err(ReplayError::Duplicate)
        );
    }

    #[test]
    fn shared_between_threads() {
        let c = std::sync::Arc::new(cache(1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| {
                            c.check_and_insert(&client("a"), &i.to_string(), NOW, NOW)
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 100, "each id accepted exactly once");
    }
}
