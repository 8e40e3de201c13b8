//! Request bodies that must keep arriving, so that a client cannot hold a request (and the
//! connection it is on) open by sending its body a byte at a time.
//!
//! Only the time the server spends waiting for the client counts: the time between a handler
//! asking for more of the body and the client sending it. Two limits apply to that time:
//!
//! - the **gap**: one wait may last at most this long;
//! - the **rate**: all the waits of one body together may last at most the gap, plus one second
//!   for every `min_bytes_per_sec` bytes received so far. A body that arrives at that rate or
//!   faster is never cut off, however large; a slow drip is, after at most the gap.
//!
//! A body that breaks a limit ends with [`BodyTooSlow`], which handlers see as a body that cannot
//! be read (X-Road's `Client.BrokenBody` at the client proxy).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// Longest wait for the next part of a body.
    pub gap: Duration,
    /// Bytes a second a body must average over the server's waits, beyond the first `gap`;
    /// 0 turns the rate limit off.
    pub min_bytes_per_sec: u64,
}

/// A request body arrived more slowly than [`BodyPace`] allows.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the request body arrived too slowly (none for {waited:?}, {received} bytes so far)")]
pub struct BodyTooSlow {
    waited: Duration,
    received: u64,
}

pin_project_lite::pin_project! {
    /// A body cut off with [`BodyTooSlow`] when it arrives more slowly than its [`BodyPace`].
    pub struct Paced<B> {
        #[pin]
        inner: B,
        pace: BodyPace,
        received: u64,
        // Time spent waiting for the client in earlier waits.
        waited: Duration,
        // When the current wait began, if the handler is waiting.
        waiting_since: Option<Instant>,
        failed: bool,
        #[pin]
        timer: Sleep,
    }
}

impl<B> Paced<B> {
    /// `inner`, cut off when it arrives more slowly than `pace`.
    pub fn new(inner: B, pace: BodyPace) -> Self {
        Self {
            inner,
            pace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            failed: false,
            timer: tokio::time::sleep(Duration::ZERO),
        }
    }
}

impl BodyPace {
    /// When a wait that began at `since` must end, given what came before it.
    fn deadline(&self, since: Instant, waited: Duration, received: u64) -> Instant {
        // Gaps come from checked configuration (at most a day); a far future stands in for
        // one that would overflow all the same.
        let gap = since
            .checked_add(self.gap)
            .unwrap_or_else(|| since + Duration::from_secs(86_400 * 365));
        if self.min_bytes_per_sec == 0 {
            return gap;
        }
        let earned_ms = u128::from(received) * 1000 / u128::from(self.min_bytes_per_sec);
        let earned = Duration::from_millis(u64::try_from(earned_ms).unwrap_or(u64::MAX));
        let allowed = self.gap.max(earned).saturating_sub(waited);
        gap.min(since.checked_add(allowed).unwrap_or(gap))
    }
}

impl<B> Body for Paced<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    *this.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    *this.received = this
                        .received
                        .saturating_add(u64::try_from(data.remaining()).unwrap_or(u64::MAX));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let deadline = this.pace.deadline(since, *this.waited, *this.received);
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                ready!(this.timer.poll(cx));
                *this.failed = true;
                let error = BodyTooSlow {
                    waited: since.elapsed(),
                    received: *this.received,
                };
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body the test feeds a chunk at a time; it ends when the sender is dropped.
    struct Fed(mpsc::Receiver<Chunk>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
            self.0.poll_recv(cx)
        }
    }

    fn fed() -> (mpsc::Sender<Chunk>, Fed) {
        let (tx, rx) = mpsc::channel(16);
        (tx, Fed(rx))
    }

    fn pace(gap_secs: u64, rate: u64) -> BodyPace {
        BodyPace {
            gap: Duration::from_secs(gap_secs),
            min_bytes_per_sec: rate,
        }
    }

    fn chunk(n: usize) -> Chunk {
        Ok(Frame::data(Bytes::from(vec![b'x'; n])))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_cut_off_after_the_gap() {
        let (tx, body) = fed();
        let mut body = std::pin::pin!(Paced::new(body, pace(30, 0)));
        tx.send(chunk(10)).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTooSlow>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(body.frame().await.is_none(), "nothing after the error");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drip_under_the_gap_is_cut_off_by_the_rate() {
        let (tx, body) = fed();
        let mut body = std::pin::pin!(Paced::new(body, pace(30, 1024)));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(9)).await;
                if tx.send(chunk(1)).await.is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let err = loop {
            match body.frame().await.unwrap() {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(err.is::<BodyTooSlow>(), "{err}");
        // Three bytes at 9 s each earn nothing beyond the 30 s of grace.
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_rate_is_never_cut_off_and_the_handlers_own_time_does_not_count() {
        let (tx, body) = fed();
        let mut body = std::pin::pin!(Paced::new(body, pace(30, 1024)));
        tokio::spawn(async move {
            for _ in 0..100 {
                // 2 KiB every 2 s, as slow as allowed, for longer than the gap.
                tokio::time::sleep(Duration::from_secs(2)).await;
                tx.send(chunk(2048)).await.unwrap();
            }
        });
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().into_data().unwrap().len();
            // The handler is busy for a minute: not the client's fault.
            if received == 2048 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        assert_eq!(received, 100 * 2048);
    }
}
