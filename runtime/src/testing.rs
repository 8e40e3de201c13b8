//! Waiting in tests (feature `testing`): the workspace's one way to wait for something that
//! happens in another task, thread or process, instead of sleeping for a guessed time.
//!
//! A condition returns `Some(value)` once it holds (`cond.then_some(())` for a plain yes or
//! no); it is asked again, with a short growing pause, until it holds or the deadline passes.
//!
//! ```
//! # async fn example() {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! let done = Arc::new(AtomicU64::new(0));
//! let worker = Arc::clone(&done);
//! tokio::spawn(async move { worker.store(3, Ordering::SeqCst) });
//! let n = runtime::testing::eventually("the worker to finish", || async {
//!     let n = done.load(Ordering::SeqCst);
//!     (n > 0).then_some(n)
//! })
//! .await;
//! assert_eq!(n, 3);
//! # }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits before it fails the test: far longer than anything a test
/// waits for takes on a loaded machine, so only a condition that never holds reaches it.
pub const PATIENCE: Duration = Duration::from_secs(30);

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// Asks `condition` until it returns `Some`, and returns that value.
///
/// # Panics
/// When [`PATIENCE`] passes first, with a message naming `what` was awaited. A panic inside
/// `condition` (an assertion on what it saw meanwhile) fails the test at once.
pub async fn eventually<T, F, Fut>(what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    awaited(what, PATIENCE, within(PATIENCE, condition).await)
}

/// Asks `condition` until it returns `Some` or `timeout` passes; `None` then. For harness code
/// that reports a timeout as its own error instead of failing the test (the sandbox's start,
/// the WebDriver's `wait_for`).
///
/// The deadline is on the system's clock, so a test that paused tokio's clock still gets real
/// time for work done elsewhere.
pub async fn within<T, F, Fut>(timeout: Duration, mut condition: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(value) = condition().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// [`eventually`] for tests without an async runtime (another thread does the work): the
/// calling thread sleeps between the questions.
///
/// # Panics
/// When [`PATIENCE`] passes first, with a message naming `what` was awaited.
pub fn eventually_blocking<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut pause = FIRST_PAUSE;
    let outcome = loop {
        if let Some(value) = condition() {
            break Some(value);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(LONGEST_PAUSE);
    };
    awaited(what, PATIENCE, outcome)
}

fn awaited<T>(what: &str, waited: Duration, outcome: Option<T>) -> T {
    match outcome {
        Some(value) => value,
        None => panic!("gave up after {waited:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_value_once_the_condition_holds() {
        let asked = AtomicU32::new(0);
        let n = eventually("the third question", || async {
            let n = asked.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn within_gives_up_with_none() {
        let never = within(Duration::from_millis(30), || async { None::<()> }).await;
        assert_eq!(never, None);
    }

    #[tokio::test]
    #[should_panic(expected = "gave up after 30ms waiting for the impossible")]
    async fn giving_up_names_what_was_awaited() {
        let timeout = Duration::from_millis(30);
        let outcome = within(timeout, || async { None::<()> }).await;
        awaited("the impossible", timeout, outcome);
    }

    #[test]
    fn eventually_blocking_waits_for_another_thread() {
        let done = Arc::new(AtomicU32::new(0));
        let worker = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || done.store(7, Ordering::SeqCst))
        };
        let n = eventually_blocking("the worker thread", || {
            let n = done.load(Ordering::SeqCst);
            (n != 0).then_some(n)
        });
        assert_eq!(n, 7);
        worker.join().unwrap();
    }
}
