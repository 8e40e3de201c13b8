//! The connections one serving loop holds, so that no client can hold them hostage (DESIGN §8):
//! each is registered with its source address and its last activity (a byte read or written),
//! a source may hold only so many, a connection with no request in flight and no byte either
//! way for the idle timeout is closed, and when the loop is full the connection idle longest is
//! closed to make room for a new one. Connections with requests in flight are never evicted.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// One connection's shared state: what the watchdog and the eviction look at.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    source: IpAddr,
    /// Milliseconds since the table's epoch of the last byte read or written.
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// The task serving the connection: aborting it drops (closes) the connection.
    task: OnceLock<AbortHandle>,
    /// Notified when the connection is gone, so that its idle watch ends too.
    ended: Notify,
    epoch: Instant,
}

impl Conn {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// How long no byte has moved, if no request is in flight; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_active_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(now.saturating_sub(last)))
    }

    /// Names the task serving the connection, which [`Conn::close`] aborts.
    pub(crate) fn served_by(&self, task: AbortHandle) {
        let _ = self.task.set(task);
    }

    /// Closes the connection: its task is aborted, which drops it.
    pub(crate) fn close(&self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }

    /// Closes the connection once it has been idle (no request in flight, no byte either way)
    /// for `timeout`; returns when it is gone, whichever way.
    pub(crate) async fn close_when_idle(&self, timeout: Duration) {
        let mut wait = timeout;
        loop {
            tokio::select! {
                () = self.ended.notified() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.idle_for() {
                Some(idle) if idle >= timeout => {
                    tracing::debug!(source = %self.source, "idle connection closed");
                    self.close();
                    return;
                }
                Some(idle) => wait = timeout - idle,
                None => wait = timeout,
            }
        }
    }

    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(Arc::clone(self))
    }
}

/// A request in flight on a connection (see [`Conn::request`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a new connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source holds as many connections as one source may.
    PerSource,
    /// The loop is full and every connection has a request in flight.
    Full,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    live: HashMap<u64, Arc<Conn>>,
    by_source: HashMap<IpAddr, usize>,
}

/// The connections of one serving loop.
#[derive(Debug)]
pub(crate) struct Conns {
    max: usize,
    max_per_source: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

impl Conns {
    pub(crate) fn new(max: usize, max_per_source: usize) -> Self {
        Self {
            max: max.max(1),
            max_per_source: max_per_source.max(1),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update leaves the table consistent before anything that could panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection from `source`, closing the connection idle longest first if
    /// the loop is full; or says why it cannot be taken.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Registered, Refused> {
        let mut table = self.lock();
        if table.by_source.get(&source).copied().unwrap_or(0) >= self.max_per_source {
            return Err(Refused::PerSource);
        }
        if table.live.len() >= self.max {
            let idlest = table
                .live
                .values()
                .filter_map(|c| c.idle_for().map(|idle| (idle, c)))
                .max_by_key(|(idle, c)| (*idle, std::cmp::Reverse(c.id)))
                .map(|(_, c)| Arc::clone(c));
            let Some(victim) = idlest else {
                return Err(Refused::Full);
            };
            // Out of the table at once, so the room is this connection's; the victim's task
            // closes it.
            Self::remove(&mut table, victim.id);
            victim.close();
        }
        table.next_id += 1;
        let conn = Arc::new(Conn {
            id: table.next_id,
            source,
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            task: OnceLock::new(),
            ended: Notify::new(),
            epoch: self.epoch,
        });
        conn.touch();
        table.live.insert(conn.id, Arc::clone(&conn));
        *table.by_source.entry(source).or_insert(0) += 1;
        Ok(Registered {
            conns: Arc::clone(self),
            conn,
        })
    }

    fn remove(table: &mut Table, id: u64) {
        if let Some(conn) = table.live.remove(&id)
            && let Some(n) = table.by_source.get_mut(&conn.source)
        {
            *n -= 1;
            if *n == 0 {
                table.by_source.remove(&conn.source);
            }
        }
    }

    /// Connections held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }
}

/// A connection's place in the table, given up when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    conns: Arc<Conns>,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        Conns::remove(&mut self.conns.lock(), self.conn.id);
        // A permit stays if the watch is not waiting yet, so it ends either way.
        self.conn.ended.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, counting the request as in flight until it resolves.
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        in_flight: InFlight,
    }
}

impl<F: std::future::Future> std::future::Future for Counted<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// A service counting each request as in flight on its connection until the response is made
/// (the bytes of a streamed body count as activity through [`Tracked`]).
#[derive(Debug, Clone)]
pub(crate) struct Counting<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Counting<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<S, R> tower::Service<R> for Counting<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = self.conn.request();
        Counted {
            inner: self.inner.call(request),
            in_flight,
        }
    }
}

/// A stream that marks its connection active on every byte read or written.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn a_source_holds_at_most_its_share() {
        let conns = Arc::new(Conns::new(10, 2));
        let _a = conns.admit(ip(1)).unwrap();
        let b = conns.admit(ip(1)).unwrap();
        assert_eq!(conns.admit(ip(1)).unwrap_err(), Refused::PerSource);
        let _c = conns.admit(ip(2)).unwrap();
        drop(b);
        assert!(
            conns.admit(ip(1)).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_loop_closes_the_connection_idle_longest_never_a_busy_one() {
        let conns = Arc::new(Conns::new(2, 10));
        let oldest = conns.admit(ip(1)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let newer = conns.admit(ip(1)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;

        let served = tokio::spawn(std::future::pending::<()>());
        oldest.conn.served_by(served.abort_handle());
        let third = conns.admit(ip(2)).unwrap();
        assert!(
            served.await.unwrap_err().is_cancelled(),
            "its task was aborted"
        );
        assert_eq!(conns.len(), 2, "the oldest idle one made room");
        drop(oldest);
        assert_eq!(conns.len(), 2, "an evicted connection is not counted twice");

        let _busy = newer.conn.request();
        let _also_busy = third.conn.request();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(conns.admit(ip(3)).unwrap_err(), Refused::Full);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle() {
        let conns = Arc::new(Conns::new(3, 3));
        let r = conns.admit(ip(1)).unwrap();
        let request = r.conn.request();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(r.conn.idle_for(), None);
        drop(request);
        assert_eq!(r.conn.idle_for(), Some(Duration::ZERO));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(r.conn.idle_for(), Some(Duration::from_secs(5)));
    }
}
