//! Injected time, so that certificate validity and anything else time-bound
//! can be tested at fixed instants.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> SystemTime;

    /// Unix seconds; times before 1970 saturate at 0.
    fn unix_now(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock tests can set and move; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock at `secs` seconds after (or, if negative, before) the Unix epoch.
    pub fn at_unix(secs: i64) -> Self {
        let offset = Duration::from_secs(secs.unsigned_abs());
        let start = if secs >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        };
        Self::new(start.unwrap_or(UNIX_EPOCH))
    }

    pub fn set(&self, t: SystemTime) {
        *self.lock() = t;
    }

    /// Moves the clock forward; a move past what `SystemTime` can hold leaves it unchanged.
    pub fn advance(&self, d: Duration) {
        let mut now = self.lock();
        if let Some(later) = now.checked_add(d) {
            *now = later;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SystemTime> {
        // A SystemTime cannot be left half-written, so a poisoned lock is still a valid time.
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_set_and_advance() {
        let clock = ManualClock::at_unix(1_700_000_000);
        assert_eq!(clock.unix_now(), 1_700_000_000);

        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.unix_now(), 1_700_000_090);

        clock.set(UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(clock.unix_now(), 42);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::at_unix(1000);
        let b = a.clone();
        a.advance(Duration::from_secs(5));
        assert_eq!(b.unix_now(), 1005);
        b.set(UNIX_EPOCH);
        assert_eq!(a.unix_now(), 0);
    }

    #[test]
    fn unix_now_saturates_before_epoch() {
        let clock = ManualClock::at_unix(-100);
        assert!(clock.now() < UNIX_EPOCH);
        assert_eq!(clock.unix_now(), 0);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.unix_now() > 1_577_836_800);
    }
}
