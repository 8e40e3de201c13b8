//! [`Load`]: exchanges made one after another while a test changes something underneath (a
//! certificate renewal, a key rotation), counting what succeeded and keeping what failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;

/// The portal asks Chiyoda's `residentRecord` through the ministry's server (`proxy`, its client
/// proxy's URL), with `id` as X-Road-Id. `Err` names the status and the X-Road error.
pub async fn resident_record(proxy: &str, id: &str) -> Result<(), String> {
    let answer = runtime::HttpClient::plain()
        .with_timeout(Duration::from_secs(30))
        .request(
            Method::GET,
            &format!("{proxy}/r1/JP/MUN/131016/records/residentRecord/131016000001"),
            &[
                ("X-Road-Client", "JP/GOV/digital-agency/portal"),
                ("X-Road-Id", id),
                ("X-Road-Data-Subject", "131016000001"),
                ("X-Road-Purpose", "load under test"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .map_err(|e| format!("{id}: {e}"))?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{id}: {} {}",
            answer.status,
            crate::x_road_error(&answer)
        ))
    }
}

/// [`resident_record`] one after another (10 ms apart) until [`Load::stop`].
#[derive(Debug, Default)]
pub struct Load {
    stop: AtomicBool,
    ok: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
    /// Held during each exchange, so a test can change something between two of them.
    turn: tokio::sync::Mutex<()>,
}

impl Load {
    /// Starts the exchanges through the client proxy at `proxy`.
    pub fn start(proxy: String) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let load = Arc::new(Self::default());
        let task = tokio::spawn(Arc::clone(&load).run(proxy));
        (load, task)
    }

    async fn run(self: Arc<Self>, proxy: String) {
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let turn = self.turn.lock().await;
            match resident_record(&proxy, &format!("load-{n}")).await {
                Ok(()) => {
                    self.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self
                    .failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(e),
            }
            drop(turn);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the exchange under way to end; none starts until the guard is dropped (a jump
    /// of an injected clock in the middle of an exchange is a clock skew, refused as it should be).
    pub async fn between(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// How many exchanges succeeded so far: `load-1` … `load-N` when none failed.
    pub fn succeeded(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further exchanges have succeeded.
    pub async fn go_on(&self, more: usize) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        crate::eventually("more exchanges to succeed", || async {
            (self.ok.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    /// Stops after the exchange under way; panics naming every failure if any exchange failed.
    /// Returns how many succeeded.
    pub async fn stop_with_none_failed(&self, task: tokio::task::JoinHandle<()>) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = task.await;
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {} exchanges failed: {failures:?}",
            failures.len(),
            failures.len() + ok
        );
        ok
    }
}
