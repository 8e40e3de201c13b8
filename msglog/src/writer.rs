//! Group commit (DESIGN §6), in two threads.
//!
//! Appenders write their entries straight into the **frame being filled**, a buffer shared
//! through [`Queue`]: under its lock an appender takes the next leaf indexes, copies its
//! record in and seals its body into place (the nonce needs the index). Nothing an appender
//! allocates is handed to another thread to free, and no entry is copied again on its way to
//! the disk.
//!
//! The **writer** owns the segment. It waits until an appender that waits for durability is
//! queued, takes the whole frame (leaving an empty one in its place), completes it with header
//! and checksum, writes it to the write-ahead log and `fdatasync`s it (`wal`), and only then
//! answers each appender. Concurrent appends therefore share an fsync, and an appender that got
//! `Ok` has its record on disk. Entries that nobody waits for (a request record enqueued before
//! the request is passed on) do not start a commit of their own unless no append comes within
//! [`LAZY_COMMIT_DELAY`], and for that long after a commit they do not even wake the writer.
//! Under concurrency the writer lets a commit gather appends for up to
//! `group_commit_interval` (see [`Writer::take`]). If the write fails, every appender in the
//! batch gets the error and the log refuses everything after it.
//!
//! The **indexer** applies the frames the writer committed to the redb tables, many group
//! commits per transaction: when [`INDEX_INTERVAL`] has passed since it was handed the first of
//! them, when [`INDEX_MAX_ENTRIES`] are waiting, or at once when a reader asks (every read of
//! the log does, so a read sees every append acknowledged before it). Records and bodies stay
//! where the writer put them: the `records` table gets the place of each entry in the segment.
//! Recovery at open applies the frames left in the segments the same way.
//!
//! Both threads are woken only when they must act ([`WriterState`], [`Inbox`]): every wake-up
//! takes a CPU from the threads that serve exchanges.
//!
//! # Why one long file
//! The frame being filled, the appenders' side and the writer's and indexer's threads share one
//! invariant: an entry is in the frame in commit order and answered only once that frame is
//! durable. Split apart, each part would reach into the others' private state; kept together,
//! the invariant is checked in one place. The unit tests of the interleavings follow it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use redb::{Database, Durability};
use tlog::CompactRange;
use tokio::sync::oneshot;

use crate::LogError;
use crate::crypto::BodyCipher;
use crate::tables::{
    BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, META, META_WAL_APPLIED, NODES, RECORDS, stores_level,
};
use crate::wal::{self, EntryLocation, OwnedFrame, Segment};

/// Appenders stop gathering for a group commit once its frame reaches this many bytes.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// The longest entries that nobody waits for ([`MessageLog::enqueue`]) stay in the frame before
/// the writer commits them on their own; an append that waits commits them at once with it.
///
/// [`MessageLog::enqueue`]: crate::MessageLog::enqueue
pub(crate) const LAZY_COMMIT_DELAY: Duration = Duration::from_millis(20);
/// The longest an acknowledged entry waits before the indexer applies it to the database
/// (unless a reader asks for it sooner).
pub(crate) const INDEX_INTERVAL: Duration = Duration::from_millis(100);
/// The indexer applies what it holds once this many entries wait.
pub(crate) const INDEX_MAX_ENTRIES: u64 = 16_384;
/// The writer waits before handing on more once this many entries, or this many bytes, wait for
/// the indexer.
pub(crate) const INDEX_BACKLOG_ENTRIES: u64 = 4 * INDEX_MAX_ENTRIES;
pub(crate) const INDEX_BACKLOG_BYTES: usize = 256 << 20;

/// The most replies a kept list has room for (16 bytes each).
const SPARE_REPLIES_MAX: usize = 4096;

/// One entry, checked and encoded by its appender before it takes the queue's lock.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) record_bytes: Vec<u8>,
    pub(crate) subject: Option<[u8; 32]>,
    pub(crate) body: Option<Bytes>,
}

/// Where an appender learns the first leaf index of its entries once they are durable.
pub(crate) type Reply = oneshot::Sender<Result<u64, LogError>>;

/// Whether an appender waits for its entries to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// It waits: the writer commits soon ([`MessageLog::append`](crate::MessageLog::append)).
    Yes,
    /// It goes on; a later append that waits makes its entries durable too
    /// ([`MessageLog::enqueue`](crate::MessageLog::enqueue)), or [`LAZY_COMMIT_DELAY`] does.
    No,
}

/// The frame being filled by appenders, and who waits for it.
#[derive(Debug)]
pub(crate) struct Queue {
    filling: Mutex<Filling>,
    /// Signalled when the writer has something to do (see [`WriterState`]).
    arrived: Condvar,
    /// Appenders so far; the writer compares it before and after a sync to tell whether
    /// appends arrive independently of its answers.
    pushes: AtomicU64,
    cipher: Arc<BodyCipher>,
}

#[derive(Debug)]
struct Filling {
    /// Begun with `wal::begin_frame`; the entries at `first..next`.
    frame: Vec<u8>,
    first: u64,
    next: u64,
    /// Each appender's reply and the index of its first entry, in index order.
    replies: Vec<(Reply, u64)>,
    /// How many of them wait ([`Wait::Yes`]).
    waiting: usize,
    /// When the first of them was queued.
    since: Option<Instant>,
    /// What the writer does, so that an appender wakes it only when it must.
    writer: WriterState,
    /// Set when the last `MessageLog` goes: the writer commits what is queued and ends.
    closed: bool,
}

/// What the writer is doing. Each wake-up of the writer costs the appenders' threads a
/// preemption, so an appender signals only when the writer waits for what it brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Writing, syncing or answering: it looks at the queue when done.
    Busy,
    /// Waiting for any entry: nothing came for [`LAZY_COMMIT_DELAY`] after the last commit.
    Idle,
    /// Waiting for an appender that waits, or a deadline; entries nobody waits for do not wake
    /// it. So it waits after a commit (a request record enqueued is mostly followed within
    /// milliseconds by its response record, which waits: waking for both cost a context switch
    /// per group commit), and while the frame holds only such entries.
    Lazy,
    /// Gathering a group commit: waiting until this many appenders wait.
    Gathering { wanted: usize },
}

impl Queue {
    /// A queue whose next entry gets leaf index `next`.
    pub(crate) fn new(next: u64, cipher: Arc<BodyCipher>) -> Queue {
        let mut frame = Vec::new();
        wal::begin_frame(&mut frame);
        Queue {
            filling: Mutex::new(Filling {
                frame,
                first: next,
                next,
                replies: Vec::new(),
                waiting: 0,
                since: None,
                writer: WriterState::Busy,
                closed: false,
            }),
            arrived: Condvar::new(),
            pushes: AtomicU64::new(0),
            cipher,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Filling>, LogError> {
        // Nothing panics while holding the lock; if something did, its frame may be torn.
        self.filling.lock().map_err(|_| LogError::Closed)
    }

    /// Puts `entries` at the next consecutive indexes of the frame being filled; `reply` gets
    /// the first once they are durable. All or none: on an error nothing was queued.
    pub(crate) fn push(
        &self,
        entries: &[Prepared],
        reply: Reply,
        wait: Wait,
    ) -> Result<(), LogError> {
        let mut filling = self.lock()?;
        let f = &mut *filling;
        if f.closed {
            return Err(LogError::Closed);
        }
        let mark = f.frame.len();
        let first = f.next;
        for (index, e) in (first..).zip(entries) {
            let body = e.body.as_deref().map(|body| {
                let cipher = &self.cipher;
                move |out: &mut Vec<u8>| cipher.seal_into(index, body, out)
            });
            if let Err(e) = wal::push_entry(&mut f.frame, &e.record_bytes, e.subject.as_ref(), body)
            {
                f.frame.truncate(mark);
                return Err(e);
            }
        }
        f.next = first + entries.len() as u64;
        if f.replies.is_empty() {
            f.since = Some(Instant::now());
        }
        f.replies.push((reply, first));
        self.pushes.fetch_add(1, Ordering::Relaxed);
        let waits = wait == Wait::Yes;
        f.waiting += usize::from(waits);
        let wake = match f.writer {
            WriterState::Busy => false,
            WriterState::Idle => true,
            WriterState::Lazy => waits,
            WriterState::Gathering { wanted } => waits && f.waiting >= wanted,
        } || (mark < MAX_BATCH_BYTES && f.frame.len() >= MAX_BATCH_BYTES);
        if wake {
            f.writer = WriterState::Busy;
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Lets the writer commit what is queued and end.
    pub(crate) fn close(&self) {
        if let Ok(mut f) = self.lock() {
            f.closed = true;
        }
        self.arrived.notify_all();
    }
}

/// What the writer took from the queue for one group commit.
struct Batch {
    first: u64,
    count: u64,
    frame: Vec<u8>,
    replies: Vec<(Reply, u64)>,
    /// How many appenders wait for it.
    waiting: usize,
}

/// What the writer remembers of its previous group commit.
#[derive(Debug, Clone, Copy)]
struct Last {
    started: Instant,
    /// Appenders that waited for it.
    waiting: usize,
    /// Whether appenders arrived while it was written and synced, before any was answered:
    /// appends come independently of the writer's answers (as from a server's many exchanges),
    /// rather than only from appenders that wait for it (a closed loop).
    traffic: bool,
    /// The bytes of its frame.
    frame_len: usize,
}

/// Counters of the writer and the indexer, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) index_commits: AtomicU64,
    /// Time spent writing and syncing write-ahead frames, in microseconds.
    pub(crate) sync_micros: AtomicU64,
    /// Time spent in database transactions of the indexer, in microseconds.
    pub(crate) index_micros: AtomicU64,
}

/// State both threads and the readers share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set after a failed write or index commit: every later append fails too, so that no
    /// record can become durable after an earlier one (perhaps enqueued without waiting) was lost.
    pub(crate) poisoned: OnceLock<Arc<LogError>>,
    /// Set when the indexer failed: reads fail from then on rather than miss records.
    pub(crate) index_failed: OnceLock<Arc<LogError>>,
    /// The log's size as acknowledged to appenders (durable in the write-ahead log).
    pub(crate) acked: AtomicU64,
    /// The log's size in the database.
    pub(crate) indexed: AtomicU64,
    pub(crate) counters: Arc<Counters>,
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) segment: Segment,
    pub(crate) queue: Arc<Queue>,
    pub(crate) inbox: Arc<Inbox>,
    /// How long after the start of one group commit the next may gather appends while there
    /// is concurrency.
    pub(crate) interval: Duration,
    /// How long entries nobody waits for wait for an append that does ([`LAZY_COMMIT_DELAY`]).
    pub(crate) lazy_delay: Duration,
    /// The list of replies of the last group commit, emptied, for the frame after the next
    /// one: appenders then fill a list with room, and no list an appender began is freed by
    /// the writer.
    pub(crate) spare_replies: Vec<(Reply, u64)>,
}

impl Writer {
    /// Runs until the queue is closed and everything queued before is answered.
    pub(crate) fn run(mut self) {
        let mut last: Option<Last> = None;
        while let Some(batch) = self.take(last) {
            let started = Instant::now();
            let waiting = batch.waiting;
            let frame_len = batch.frame.len();
            let pushes = self.queue.pushes.load(Ordering::Relaxed);
            let traffic = self.commit_and_answer(batch, pushes);
            last = Some(Last {
                started,
                waiting,
                traffic,
                frame_len,
            });
        }
    }

    /// Waits for the next group commit and takes it from the queue; `None` once the queue is
    /// closed and empty.
    ///
    /// Entries nobody waits for wait up to [`LAZY_COMMIT_DELAY`] for an append that does, and
    /// for that long after a commit they do not wake the writer ([`WriterState::Lazy`]). Then,
    /// under concurrency (the previous commit had more than one appender waiting, or appends
    /// arrived during its sync), the commit gathers appends, as PostgreSQL's `commit_delay`
    /// does: a sync costs the same for one record as for fifty, and on a virtual machine each
    /// one also costs the other threads interrupts and context switches.
    /// - While appends arrive independently of the answers, it gathers until the interval since
    ///   the previous commit has passed.
    /// - In a closed loop (nothing arrived during the previous sync), it gathers until as many
    ///   appenders wait as that commit had: they are all back, and waiting longer would idle.
    fn take(&mut self, last: Option<Last>) -> Option<Batch> {
        // The buffer of the frame after this one, found before taking the queue's lock.
        let mut next_frame = self.inbox.spare(last.map_or(0, |l| l.frame_len));
        wal::begin_frame(&mut next_frame);
        let mut f = self.queue.lock().ok()?;
        let resting_until = Instant::now().checked_add(self.lazy_delay);
        while f.waiting == 0 && f.frame.len() < MAX_BATCH_BYTES {
            if f.closed {
                if f.replies.is_empty() {
                    return None;
                }
                break;
            }
            let now = Instant::now();
            let deadline = match f.since {
                Some(since) => since.checked_add(self.lazy_delay),
                None => resting_until,
            };
            match deadline {
                // Entries nobody waits for, due.
                Some(d) if now >= d && f.since.is_some() => break,
                Some(d) if now < d => {
                    f.writer = WriterState::Lazy;
                    f = self.queue.arrived.wait_timeout(f, d - now).ok()?.0;
                }
                _ => {
                    f.writer = WriterState::Idle;
                    f = self.queue.arrived.wait(f).ok()?;
                }
            }
        }
        if let Some(last) = last
            && f.waiting > 0
            && (last.waiting > 1 || last.traffic)
        {
            let deadline = last
                .started
                .checked_add(self.interval)
                .unwrap_or(last.started);
            let wanted = if last.traffic {
                usize::MAX
            } else {
                last.waiting
            };
            f = self.wait_while(f, deadline, WriterState::Gathering { wanted }, |f| {
                f.waiting < wanted
            })?;
        }
        f.writer = WriterState::Busy;
        let batch = Batch {
            first: f.first,
            count: f.next - f.first,
            frame: std::mem::replace(&mut f.frame, next_frame),
            replies: std::mem::replace(&mut f.replies, std::mem::take(&mut self.spare_replies)),
            waiting: std::mem::take(&mut f.waiting),
        };
        f.since = None;
        f.first = f.next;
        Some(batch)
    }

    /// Waits in `state` until `deadline` while `more` holds, the log is open and the frame is
    /// not full.
    fn wait_while<'a>(
        &self,
        mut f: MutexGuard<'a, Filling>,
        deadline: Instant,
        state: WriterState,
        more: impl Fn(&Filling) -> bool,
    ) -> Option<MutexGuard<'a, Filling>> {
        while more(&f) && f.frame.len() < MAX_BATCH_BYTES && !f.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            f.writer = state;
            f = self.queue.arrived.wait_timeout(f, deadline - now).ok()?.0;
        }
        Some(f)
    }

    /// Commits the batch and answers its appenders; returns whether appenders arrived while
    /// it was written and synced (the queue's push count moved from `pushes`).
    fn commit_and_answer(&mut self, batch: Batch, pushes: u64) -> bool {
        let Batch {
            first,
            count,
            frame,
            mut replies,
            waiting: _,
        } = batch;
        if let Some(e) = self.shared.poisoned.get() {
            for (reply, _) in replies.drain(..) {
                let _ = reply.send(Err(LogError::BatchFailed(Arc::clone(e))));
            }
            self.keep_replies(replies);
            return false;
        }
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let result = self.commit(first, count, frame);
        let traffic = self.queue.pushes.load(Ordering::Relaxed) != pushes;
        match result {
            Ok(()) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.entries.fetch_add(count, Ordering::Relaxed);
                for (reply, first) in replies.drain(..) {
                    // An appender that stopped waiting still has its record logged.
                    let _ = reply.send(Ok(first));
                }
            }
            Err(e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, jobs = replies.len(), "message log group commit failed");
                let e = Arc::new(e);
                let _ = shared.poisoned.set(Arc::clone(&e));
                for (reply, _) in replies.drain(..) {
                    let _ = reply.send(Err(LogError::BatchFailed(Arc::clone(&e))));
                }
            }
        }
        self.keep_replies(replies);
        traffic
    }

    /// Keeps an answered (empty) list of replies for a later frame, unless an unusual burst
    /// made it larger than [`SPARE_REPLIES_MAX`] entries.
    fn keep_replies(&mut self, replies: Vec<(Reply, u64)>) {
        if replies.capacity() <= SPARE_REPLIES_MAX {
            self.spare_replies = replies;
        }
    }

    /// Completes the frame of the `count` entries from `first` on, writes it to the write-ahead
    /// log and hands it to the indexer.
    fn commit(&mut self, first: u64, count: u64, mut frame: Vec<u8>) -> Result<(), LogError> {
        let count = u32::try_from(count).map_err(|_| {
            LogError::InvalidEntry("more than 2^32 entries in one group commit".into())
        })?;
        // Before the frame, so that a failure here fails a batch that was not written.
        if self.segment.is_full() {
            self.segment.rotate(first)?;
        }
        wal::finish_frame(&mut frame, first, count);
        let (segment, offset) = (self.segment.first(), self.segment.end());
        let started = Instant::now();
        self.segment.append(&frame)?;
        self.shared
            .counters
            .sync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.inbox.hand_on(OwnedFrame {
            first,
            bytes: frame,
            segment,
            offset,
        })?;
        self.shared
            .acked
            .store(first + u64::from(count), Ordering::Release);
        Ok(())
    }
}

/// What the writer hands the indexer, and what readers ask of it. The indexer is woken only when
/// it must act: for the first frame after it applied (it then waits up to [`INDEX_INTERVAL`] for
/// more), once [`INDEX_MAX_ENTRIES`] wait, when a reader asks, and when the log closes. A
/// wake-up per group commit would cost the appenders' threads as many preemptions.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    /// Signalled when the indexer must act.
    wake: Condvar,
    /// Signalled when the indexer took what waited, or ended (the writer may be waiting).
    taken: Condvar,
    /// Buffers of applied frames, for the writer to fill again: allocating and freeing a buffer
    /// of tens of kilobytes for every group commit, in different threads, sends the allocator
    /// down its slow paths for every thread's small allocations too.
    spares: Mutex<Spares>,
}

#[derive(Debug, Default)]
struct Spares {
    buffers: Vec<Vec<u8>>,
    /// Their capacity in all.
    bytes: usize,
}

/// Frame buffers are kept for reuse up to this capacity each, and this much in all.
const SPARE_MAX_CAPACITY: usize = 4 << 20;
const SPARES_MAX_BYTES: usize = 64 << 20;

#[derive(Debug, Default)]
struct InboxState {
    /// Frames durable in the write-ahead log, in index order.
    frames: Vec<OwnedFrame>,
    entries: u64,
    bytes: usize,
    /// When the oldest of them was handed on.
    since: Option<Instant>,
    /// Readers waiting until everything handed on before they asked is in the database.
    syncs: Vec<SyncSender<Result<(), LogError>>>,
    indexer: IndexerState,
    /// The writer is gone: the indexer applies what is left and ends.
    closed: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum IndexerState {
    #[default]
    Working,
    /// Waiting for a first frame.
    Idle,
    /// Holding frames, waiting for the interval to pass.
    Waiting,
    /// It ended; nothing will be applied any more.
    Gone,
}

/// What the indexer takes from its inbox in one turn.
struct Work {
    frames: Vec<OwnedFrame>,
    syncs: Vec<SyncSender<Result<(), LogError>>>,
    closed: bool,
}

impl Inbox {
    fn lock(&self) -> Result<MutexGuard<'_, InboxState>, LogError> {
        self.state.lock().map_err(|_| LogError::Closed)
    }

    /// Hands the indexer a durable frame (the writer). Waits while too much waits for it.
    pub(crate) fn hand_on(&self, frame: OwnedFrame) -> Result<(), LogError> {
        let mut s = self.lock()?;
        while (s.entries >= INDEX_BACKLOG_ENTRIES || s.bytes >= INDEX_BACKLOG_BYTES)
            && s.indexer != IndexerState::Gone
        {
            s = self.taken.wait(s).map_err(|_| LogError::Closed)?;
        }
        if s.indexer == IndexerState::Gone {
            return Err(LogError::Closed);
        }
        let below_max = s.entries < INDEX_MAX_ENTRIES;
        if s.frames.is_empty() {
            s.since = Some(Instant::now());
        }
        s.entries += frame.count();
        s.bytes += frame.bytes.len();
        s.frames.push(frame);
        let wake = match s.indexer {
            IndexerState::Idle => true,
            IndexerState::Waiting => below_max && s.entries >= INDEX_MAX_ENTRIES,
            IndexerState::Working | IndexerState::Gone => false,
        };
        if wake {
            s.indexer = IndexerState::Working;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until the database holds every frame handed on before (a reader).
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        let (reply, done) = mpsc::sync_channel(1);
        {
            let mut s = self.lock()?;
            if s.indexer == IndexerState::Gone {
                return Err(LogError::Closed);
            }
            s.syncs.push(reply);
            if s.indexer != IndexerState::Working {
                s.indexer = IndexerState::Working;
                self.wake.notify_one();
            }
        }
        done.recv().map_err(|_| LogError::Closed)?
    }

    /// Lets the indexer apply what is left and end (once the writer is gone).
    pub(crate) fn close(&self) {
        if let Ok(mut s) = self.lock() {
            s.closed = true;
        }
        self.wake.notify_all();
    }

    /// Waits until the indexer must act, and takes what waits (the indexer): the oldest frames,
    /// up to about [`INDEX_MAX_ENTRIES`] entries for one transaction (a larger one costs more per
    /// record, and redb's file grows by what one transaction writes), and, once no frame is
    /// left, the readers' requests.
    fn next(&self) -> Result<Work, LogError> {
        let mut s = self.lock()?;
        loop {
            if !s.syncs.is_empty() || s.closed || s.entries >= INDEX_MAX_ENTRIES {
                break;
            }
            let Some(since) = s.since.filter(|_| !s.frames.is_empty()) else {
                s.indexer = IndexerState::Idle;
                s = self.wake.wait(s).map_err(|_| LogError::Closed)?;
                continue;
            };
            let deadline = since.checked_add(INDEX_INTERVAL).unwrap_or(since);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s.indexer = IndexerState::Waiting;
            s = self
                .wake
                .wait_timeout(s, deadline - now)
                .map_err(|_| LogError::Closed)?
                .0;
        }
        s.indexer = IndexerState::Working;
        let (mut n, mut entries, mut bytes) = (0, 0, 0);
        for frame in &s.frames {
            if n > 0 && entries + frame.count() > INDEX_MAX_ENTRIES {
                break;
            }
            n += 1;
            entries += frame.count();
            bytes += frame.bytes.len();
        }
        let frames: Vec<OwnedFrame> = s.frames.drain(..n).collect();
        s.entries -= entries;
        s.bytes -= bytes;
        // Frames left over are overdue: `since` stays, and the next turn takes them at once.
        let done = s.frames.is_empty();
        if done {
            s.since = None;
        }
        let work = Work {
            frames,
            syncs: if done {
                std::mem::take(&mut s.syncs)
            } else {
                Vec::new()
            },
            closed: s.closed && done,
        };
        drop(s);
        self.taken.notify_all();
        Ok(work)
    }

    /// A buffer for a frame (the writer): one given back, or a new one with room for about
    /// `hint` bytes (up to 4 MiB), so that appenders seldom grow it under the queue's lock.
    fn spare(&self, hint: usize) -> Vec<u8> {
        let reused = self.spares.lock().ok().and_then(|mut s| {
            let buffer = s.buffers.pop()?;
            s.bytes -= buffer.capacity();
            Some(buffer)
        });
        reused
            .unwrap_or_else(|| Vec::with_capacity(hint.next_power_of_two().min(SPARE_MAX_CAPACITY)))
    }

    /// Gives the buffers of applied frames back for reuse (the indexer), as many as are kept.
    fn recycle(&self, frames: &mut Vec<OwnedFrame>) {
        let mut rest = Vec::new();
        if let Ok(mut s) = self.spares.lock() {
            for frame in frames.drain(..) {
                let capacity = frame.bytes.capacity();
                if capacity <= SPARE_MAX_CAPACITY && s.bytes + capacity <= SPARES_MAX_BYTES {
                    s.bytes += capacity;
                    s.buffers.push(frame.bytes);
                } else {
                    rest.push(frame);
                }
            }
        }
        // Freed outside the lock.
        drop(rest);
        frames.clear();
    }

    /// Marks the indexer gone: the writer and readers stop waiting for it.
    fn gone(&self) {
        let syncs = match self.state.lock() {
            Ok(mut s) => {
                s.indexer = IndexerState::Gone;
                std::mem::take(&mut s.syncs)
            }
            Err(_) => Vec::new(),
        };
        drop(syncs);
        self.taken.notify_all();
    }
}

pub(crate) struct Indexer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) db: Arc<Database>,
    pub(crate) frontier: CompactRange,
    /// Group commits received and not yet applied, in index order.
    pub(crate) pending: Vec<OwnedFrame>,
}

impl Indexer {
    /// Runs until the inbox is closed, applying what is left before it ends.
    pub(crate) fn run(mut self, inbox: Arc<Inbox>) {
        /// Whatever ends the loop (a panic too), the writer and readers must not wait on.
        struct Gone(Arc<Inbox>);
        impl Drop for Gone {
            fn drop(&mut self) {
                self.0.gone();
            }
        }
        let inbox = Gone(inbox);
        let inbox = &inbox.0;
        while let Ok(work) = inbox.next() {
            self.pending.extend(work.frames);
            // A failure is kept in `shared`, where appenders and readers find it.
            let _ = self.apply_pending();
            inbox.recycle(&mut self.pending);
            for reply in work.syncs {
                let answer = match self.shared.index_failed.get() {
                    None => Ok(()),
                    Some(e) => Err(LogError::BatchFailed(Arc::clone(e))),
                };
                let _ = reply.send(answer);
            }
            if work.closed {
                return;
            }
        }
    }

    /// Applies the pending entries in one durable transaction (the caller then empties
    /// `pending`). After a failure nothing more is applied: the entries stay in the write-ahead
    /// log, and the next open applies them.
    fn apply_pending(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.shared.index_failed.get() {
            self.pending.clear();
            return Err(LogError::BatchFailed(Arc::clone(e)));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let before = self.frontier.clone();
        let started = Instant::now();
        match apply(&self.db, &mut self.frontier, &self.pending) {
            Ok(()) => {
                self.shared
                    .counters
                    .index_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                let size = self.frontier.size();
                self.shared.indexed.store(size, Ordering::Release);
                self.shared
                    .counters
                    .index_commits
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.frontier = before;
                self.pending.clear();
                tracing::error!(error = %e, "applying the message log to its database failed");
                let e = Arc::new(e);
                let _ = self.shared.index_failed.set(Arc::clone(&e));
                let _ = self.shared.poisoned.set(Arc::clone(&e));
                Err(LogError::BatchFailed(e))
            }
        }
    }
}

/// The two fields of a log record the indexes need, decoded without the rest.
#[derive(Clone, PartialEq, prost::Message)]
struct RecordKeys {
    #[prost(string, tag = "3")]
    message_id: String,
    #[prost(int64, tag = "11")]
    logged_at_ms: i64,
}

/// Inserts the entries of `frames` into the tables in one transaction with immediate
/// durability, from the index after the tree `frontier` describes on (entries below it, which
/// the database already holds, are skipped; a gap is an error).
pub(crate) fn apply(
    db: &Database,
    frontier: &mut CompactRange,
    frames: &[OwnedFrame],
) -> Result<(), LogError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut records = txn.open_table(RECORDS)?;
        let mut nodes = txn.open_table(NODES)?;
        let mut by_id = txn.open_table(BY_MESSAGE_ID)?;
        let mut by_time = txn.open_table(BY_TIME)?;
        let mut by_subject = txn.open_table(BY_SUBJECT)?;
        for frame in frames {
            for (index, e) in (frame.first..).zip(frame.entries()?) {
                if index < frontier.size() {
                    continue;
                }
                if index > frontier.size() {
                    return Err(LogError::corrupt(format!(
                        "write-ahead entry {index} does not follow the log's {} records",
                        frontier.size()
                    )));
                }
                let keys = RecordKeys::decode(e.record_bytes).map_err(|err| {
                    LogError::corrupt(format!("record {index} does not decode: {err}"))
                })?;
                // The record and its body stay where the write-ahead log wrote them.
                let location = EntryLocation::of(frame, &e);
                records.insert(index, location.to_value().as_slice())?;
                for (level, i, hash) in frontier.append(tlog::leaf_hash(e.record_bytes)) {
                    if stores_level(level) {
                        nodes.insert((level, i), &hash)?;
                    }
                }
                by_id.insert((keys.message_id.as_str(), index), ())?;
                by_time.insert((keys.logged_at_ms, index), ())?;
                if let Some(subject) = &e.subject {
                    by_subject.insert((subject, index), ())?;
                }
            }
        }
        if let Some(last) = frames.last() {
            let applied = wal::Position {
                segment: last.segment,
                offset: last.offset + last.bytes.len() as u64,
            };
            txn.open_table(META)?
                .insert(META_WAL_APPLIED, applied.to_value().as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use redb::backends::InMemoryBackend;
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _, StorageBackend};
    use runtime::testing::eventually_blocking;

    use super::*;

    /// An in-memory database whose fsync fails while `fail` is set.
    #[derive(Debug)]
    struct FlakyDisk {
        inner: InMemoryBackend,
        fail: Arc<AtomicBool>,
    }

    impl StorageBackend for FlakyDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.inner.write(offset, data)
        }
    }

    type Answer = oneshot::Receiver<Result<u64, LogError>>;

    /// The record of test entry `n`: a real log record, as the indexer decodes it.
    fn record(n: u8) -> Vec<u8> {
        proto::v1::LogRecord {
            message_id: format!("m{n}"),
            logged_at_ms: i64::from(n),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// Queues entry `n` (with a body) as one appender that waits.
    fn push(queue: &Queue, n: u8) -> Answer {
        push_as(queue, n, Wait::Yes)
    }

    fn push_as(queue: &Queue, n: u8, wait: Wait) -> Answer {
        let (reply, answer) = oneshot::channel();
        let entry = Prepared {
            record_bytes: record(n),
            subject: None,
            body: Some(Bytes::from_static(b"body")),
        };
        queue.push(&[entry], reply, wait).unwrap();
        answer
    }

    impl Inbox {
        /// The frames handed on and not yet taken.
        fn take_frames(&self) -> Vec<OwnedFrame> {
            let mut s = self.lock().unwrap();
            s.entries = 0;
            s.bytes = 0;
            std::mem::take(&mut s.frames)
        }
    }

    /// A writer over a new segment in `dir`, its queue, and what it hands the indexer.
    fn writer_in(
        dir: &std::path::Path,
        body_key: Option<&[u8; 32]>,
        interval: Duration,
    ) -> (Writer, Arc<Queue>, Arc<Inbox>) {
        let inbox = Arc::new(Inbox::default());
        let cipher = Arc::new(BodyCipher::new(body_key, &[0; 32], 1).unwrap());
        let queue = Arc::new(Queue::new(0, cipher));
        let writer = Writer {
            shared: Arc::new(Shared::default()),
            segment: Segment::create(dir, 0).unwrap(),
            queue: Arc::clone(&queue),
            inbox: Arc::clone(&inbox),
            interval,
            lazy_delay: LAZY_COMMIT_DELAY,
            spare_replies: Vec::new(),
        };
        (writer, queue, inbox)
    }

    /// Takes what is queued and commits it, as one turn of the writer's loop.
    fn commit_queued(writer: &mut Writer) {
        let batch = writer.take(None).unwrap();
        writer.commit_and_answer(batch, 0);
    }

    /// The frame of entries `ns` (records of `record(n)`, no bodies) from index `first` on.
    fn frame_of(first: u64, ns: &[u8]) -> OwnedFrame {
        let entries: Vec<_> = ns
            .iter()
            .map(|&n| wal::TestEntry {
                record_bytes: record(n),
                subject: None,
                stored_body: None,
            })
            .collect();
        let mut bytes = Vec::new();
        wal::encode_frame(first, &entries, &mut bytes);
        OwnedFrame {
            first,
            bytes,
            segment: 0,
            offset: 0,
        }
    }

    #[test]
    fn a_failed_write_fails_every_appender_of_the_batch_and_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, inbox) = writer_in(dir.path(), None, Duration::ZERO);
        let shared = Arc::clone(&writer.shared);
        let ok_answer = push(&queue, 0);
        commit_queued(&mut writer);
        assert_eq!(ok_answer.blocking_recv().unwrap().unwrap(), 0);
        let frames = inbox.take_frames();
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].first, frames[0].count()), (0, 1));

        // A disk that is full: the write fails, and nothing is acknowledged or handed on.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let good = std::mem::replace(
            &mut writer.segment,
            Segment::over(dir.path(), "/dev/full".into(), 1, full),
        );
        let a_answer = push(&queue, 1);
        let b_answer = push(&queue, 2);
        commit_queued(&mut writer);
        for answer in [a_answer, b_answer] {
            assert!(matches!(
                answer.blocking_recv().unwrap(),
                Err(LogError::BatchFailed(_))
            ));
        }
        assert!(inbox.take_frames().is_empty());
        assert_eq!(shared.acked.load(Ordering::SeqCst), 1);
        assert_eq!(shared.counters.failed_batches.load(Ordering::Relaxed), 1);
        assert_eq!(shared.counters.batches.load(Ordering::Relaxed), 1);

        // The disk recovers, but the log stays failed: a record enqueued before the failure
        // (and lost with it) must never be followed by a durable one.
        writer.segment = good;
        let c_answer = push(&queue, 3);
        commit_queued(&mut writer);
        assert!(matches!(
            c_answer.blocking_recv().unwrap(),
            Err(LogError::BatchFailed(_))
        ));
        assert!(inbox.take_frames().is_empty());
        // What reached the segment is the one acknowledged entry.
        let bytes = std::fs::read(writer.segment.path()).unwrap();
        let (frames, tail) = wal::parse_frames(&bytes);
        assert_eq!(tail, wal::Tail::Clean);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].entries.len(), 1);
    }

    #[test]
    fn appenders_write_their_entries_into_one_frame_at_consecutive_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, inbox) = writer_in(dir.path(), Some(&[7; 32]), Duration::ZERO);
        let one = push(&queue, 0);
        let (reply, three) = oneshot::channel();
        let batch: Vec<_> = (1..4)
            .map(|n| Prepared {
                record_bytes: record(n),
                subject: Some([n; 32]),
                body: None,
            })
            .collect();
        queue.push(&batch, reply, Wait::Yes).unwrap();
        let last = push(&queue, 4);
        commit_queued(&mut writer);
        assert_eq!(one.blocking_recv().unwrap().unwrap(), 0);
        assert_eq!(three.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(last.blocking_recv().unwrap().unwrap(), 4);

        let mut frames = inbox.take_frames();
        assert_eq!(frames.len(), 1, "one frame handed on");
        let frame = frames.remove(0);
        assert_eq!((frame.first, frame.count()), (0, 5));
        let cipher = BodyCipher::new(Some(&[7; 32]), &[0; 32], 2).unwrap();
        for (n, e) in (0u8..).zip(frame.entries().unwrap()) {
            assert_eq!(e.record_bytes, record(n));
            let has_batch_parts = (1..4).contains(&n);
            assert_eq!(e.subject, has_batch_parts.then_some([n; 32]));
            match e.stored_body {
                // Sealed for its own index.
                Some(stored) => assert_eq!(cipher.open(u64::from(n), stored).unwrap(), b"body"),
                None => assert!(has_batch_parts),
            }
        }
        // The frame on disk is the one handed on.
        let bytes = std::fs::read(writer.segment.path()).unwrap();
        assert_eq!(&bytes[..frame.bytes.len()], frame.bytes.as_slice());

        // After the log closes nothing is queued.
        queue.close();
        let (reply, _) = oneshot::channel();
        assert!(matches!(
            queue.push(&[], reply, Wait::Yes),
            Err(LogError::Closed)
        ));
        assert!(writer.take(None).is_none());
    }

    #[test]
    fn a_full_segment_is_closed_before_the_next_frame_and_recovery_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, inbox) = writer_in(dir.path(), Some(&[7; 32]), Duration::ZERO);
        writer.segment = Segment::create(dir.path(), 0).unwrap().with_limit(100);
        for n in 0..6 {
            let answer = push(&queue, n);
            commit_queued(&mut writer);
            assert_eq!(answer.blocking_recv().unwrap().unwrap(), u64::from(n));
        }
        let mut segments = Vec::new();
        let mut batches = 0;
        for frame in inbox.take_frames() {
            assert_eq!((frame.first, frame.count()), (batches, 1));
            if frame.offset == 0 {
                // A new segment begins with the frame that follows the last full one.
                assert_eq!(frame.segment, frame.first);
                segments.push(frame.segment);
            }
            batches += 1;
        }
        assert_eq!(batches, 6);
        assert!(segments.len() >= 3, "{segments:?}");
        let on_disk: Vec<u64> = wal::list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(first, _)| first)
            .collect();
        assert_eq!(on_disk, segments);
        let recovered = wal::recover(dir.path(), 0, None).unwrap();
        assert_eq!(recovered.len(), 6);
        let cipher = BodyCipher::new(Some(&[7; 32]), &[0; 32], 2).unwrap();
        for (i, frame) in (0u8..).zip(&recovered) {
            assert_eq!(frame.first, u64::from(i));
            let entries = frame.entries().unwrap();
            assert_eq!(entries[0].record_bytes, record(i));
            let body = cipher
                .open(u64::from(i), entries[0].stored_body.unwrap())
                .unwrap();
            assert_eq!(body, b"body");
        }
    }

    #[test]
    fn the_indexer_takes_about_index_max_entries_per_transaction_and_answers_readers_after_all() {
        let inbox = Inbox::default();
        let big = |first: u64| {
            let mut bytes = Vec::new();
            wal::begin_frame(&mut bytes);
            wal::finish_frame(&mut bytes, first, 10_000);
            OwnedFrame {
                first,
                bytes,
                segment: 0,
                offset: 0,
            }
        };
        for first in [0, 10_000, 20_000] {
            inbox.hand_on(big(first)).unwrap();
        }
        let (reply, _done) = mpsc::sync_channel(1);
        inbox.lock().unwrap().syncs.push(reply);
        let turns: Vec<(Vec<u64>, usize)> = (0..3)
            .map(|_| {
                let work = inbox.next().unwrap();
                let firsts = work.frames.iter().map(|f| f.first).collect();
                (firsts, work.syncs.len())
            })
            .collect();
        // One frame per turn (two would pass INDEX_MAX_ENTRIES); the reader is answered with the
        // turn that takes the last frame handed on before it asked.
        assert_eq!(turns, [(vec![0], 0), (vec![10_000], 0), (vec![20_000], 1)]);
        let s = inbox.lock().unwrap();
        assert_eq!((s.entries, s.bytes, s.since), (0, 0, None));
    }

    #[test]
    fn applied_frame_buffers_are_reused_for_later_frames_within_bounds() {
        let inbox = Inbox::default();
        let frame = |capacity: usize| OwnedFrame {
            first: 0,
            bytes: Vec::with_capacity(capacity),
            segment: 0,
            offset: 0,
        };
        let mut applied = vec![frame(64 << 10), frame(SPARE_MAX_CAPACITY + 1)];
        inbox.recycle(&mut applied);
        assert!(applied.is_empty());
        // The small buffer is kept and handed out again; the oversized one was freed.
        let reused = inbox.spare(0);
        assert_eq!(reused.capacity(), 64 << 10);
        let fresh = inbox.spare(1000);
        assert_eq!(fresh.capacity(), 1024);
        // No more than SPARES_MAX_BYTES are kept.
        let mut many: Vec<_> = (0..=SPARES_MAX_BYTES / SPARE_MAX_CAPACITY)
            .map(|_| frame(SPARE_MAX_CAPACITY))
            .collect();
        inbox.recycle(&mut many);
        let kept = inbox.spares.lock().unwrap();
        assert_eq!(kept.buffers.len(), SPARES_MAX_BYTES / SPARE_MAX_CAPACITY);
        assert_eq!(kept.bytes, SPARES_MAX_BYTES);
    }

    #[test]
    fn in_a_closed_loop_a_commit_gathers_for_the_interval_or_until_as_many_as_the_last_one() {
        let interval = Duration::from_millis(600);
        let dir = tempfile::tempdir().unwrap();
        let (writer, queue, inbox) = writer_in(dir.path(), None, interval);
        let send = |n: u8| push(&queue, n);
        let wait = |answers: Vec<Answer>, first: u64| {
            for (n, answer) in (first..).zip(answers) {
                assert_eq!(answer.blocking_recv().unwrap().unwrap(), n);
            }
        };
        // Twelve appends queued before the writer starts share its first commit.
        let twelve: Vec<_> = (0..12).map(send).collect();
        let thread = std::thread::spawn(move || writer.run());
        wait(twelve, 0);
        // Ten come back, fewer than twelve: the writer gathers until the interval has passed
        // and takes them in one commit.
        let ten: Vec<_> = (12..22).map(send).collect();
        wait(ten, 12);
        // Ten again, as many as last time: committed without waiting out the interval.
        let started = Instant::now();
        let ten_again: Vec<_> = (22..32).map(send).collect();
        wait(ten_again, 22);
        let as_many = started.elapsed();
        // One after a commit of ten waits for the interval at most; after that commit of one
        // there is no concurrency, and each lone append is committed at once.
        wait(vec![send(32)], 32);
        let started = Instant::now();
        for n in 33..36 {
            wait(vec![send(n)], u64::from(n));
        }
        let lone = started.elapsed();
        queue.close();
        thread.join().unwrap();

        let sizes: Vec<u64> = inbox.take_frames().iter().map(OwnedFrame::count).collect();
        assert_eq!(sizes, [12, 10, 10, 1, 1, 1, 1]);
        assert!(
            as_many < interval / 2,
            "a full gathering waited {as_many:?}"
        );
        assert!(lone < interval, "lone appends took {lone:?}");
    }

    #[test]
    fn while_appends_arrive_during_syncs_a_commit_gathers_for_the_whole_interval() {
        let interval = Duration::from_millis(300);
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, _inbox) = writer_in(dir.path(), None, interval);
        let answers: Vec<_> = (0..3).map(|n| push(&queue, n)).collect();
        // The previous commit had three appenders, and appends arrived during its sync: three
        // waiting is not enough, the commit gathers until the interval has passed.
        let started = Instant::now();
        let last = Last {
            started,
            waiting: 3,
            traffic: true,
            frame_len: 0,
        };
        let batch = writer.take(Some(last)).unwrap();
        assert!(
            started.elapsed() >= interval,
            "took {:?}",
            started.elapsed()
        );
        assert_eq!((batch.count, batch.waiting), (3, 3));
        drop(answers);

        // The same without traffic (a closed loop of three): taken at once.
        let _answers: Vec<_> = (3..6).map(|n| push(&queue, n)).collect();
        let started = Instant::now();
        let last = Last {
            started,
            waiting: 3,
            traffic: false,
            frame_len: 0,
        };
        let batch = writer.take(Some(last)).unwrap();
        assert!(started.elapsed() < interval, "took {:?}", started.elapsed());
        assert_eq!((batch.first, batch.count), (3, 3));
    }

    #[test]
    fn entries_nobody_waits_for_wait_for_an_append_or_the_lazy_delay() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, queue, _inbox) = writer_in(dir.path(), None, Duration::ZERO);
        let writer = Arc::new(Mutex::new(writer));

        // Alone, an enqueued entry is committed after the lazy delay.
        let started = Instant::now();
        let _lazy = push_as(&queue, 0, Wait::No);
        let batch = writer.lock().unwrap().take(None).unwrap();
        assert!(started.elapsed() >= LAZY_COMMIT_DELAY);
        assert_eq!((batch.count, batch.waiting), (1, 0));

        // An append that waits takes it along at once. The writer waits first (with a delay no
        // test machine runs out), so the append wakes it.
        writer.lock().unwrap().lazy_delay = Duration::from_secs(600);
        let _lazy = push_as(&queue, 1, Wait::No);
        let taker = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || writer.lock().unwrap().take(None).unwrap())
        };
        until_writer_is(&queue, WriterState::Lazy);
        let _append = push(&queue, 2);
        let batch = taker.join().unwrap();
        assert_eq!((batch.first, batch.count, batch.waiting), (1, 2, 1));
    }

    #[test]
    fn reply_lists_go_back_to_the_queue_for_later_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, _inbox) = writer_in(dir.path(), None, Duration::ZERO);
        let first: Vec<_> = (0..5).map(|n| push(&queue, n)).collect();
        commit_queued(&mut writer);
        // The writer keeps the answered list, emptied, rather than freeing it.
        assert!(writer.spare_replies.is_empty());
        assert!(writer.spare_replies.capacity() >= 5);
        let second = push(&queue, 5);
        commit_queued(&mut writer);
        // Taking the next frame left that list in the queue, with its room.
        {
            let f = queue.lock().unwrap();
            assert!(f.replies.is_empty());
            assert!(f.replies.capacity() >= 5, "{}", f.replies.capacity());
        }
        let indexes: Vec<u64> = first
            .into_iter()
            .chain([second])
            .map(|a| a.blocking_recv().unwrap().unwrap())
            .collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
    }

    /// Waits until the writer (in another thread) waits in `state`.
    fn until_writer_is(queue: &Queue, state: WriterState) {
        eventually_blocking(&format!("the writer to wait in {state:?}"), || {
            (queue.lock().unwrap().writer == state).then_some(())
        });
    }

    #[test]
    fn after_a_commit_entries_nobody_waits_for_do_not_wake_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, _inbox) = writer_in(dir.path(), None, Duration::ZERO);
        // A delay no test machine runs out: only the append ends the wait.
        writer.lazy_delay = Duration::from_secs(600);
        let taker = std::thread::spawn(move || writer.take(None).unwrap());
        until_writer_is(&queue, WriterState::Lazy);
        let _lazy = push_as(&queue, 0, Wait::No);
        // Waking the writer marks it busy (under the queue's lock, as the signal goes out).
        assert_eq!(queue.lock().unwrap().writer, WriterState::Lazy);
        let _append = push(&queue, 1);
        let batch = taker.join().unwrap();
        assert_eq!((batch.first, batch.count, batch.waiting), (0, 2, 1));
    }

    #[test]
    fn once_nothing_came_for_the_lazy_delay_any_entry_wakes_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, _inbox) = writer_in(dir.path(), None, Duration::ZERO);
        let delay = Duration::from_millis(50);
        writer.lazy_delay = delay;
        let taker = std::thread::spawn(move || writer.take(None).unwrap());
        until_writer_is(&queue, WriterState::Idle);
        let started = Instant::now();
        let _lazy = push_as(&queue, 0, Wait::No);
        assert_ne!(queue.lock().unwrap().writer, WriterState::Idle);
        // Woken, it still leaves the entry the lazy delay to be joined by an append.
        let batch = taker.join().unwrap();
        assert!(started.elapsed() >= delay, "took {:?}", started.elapsed());
        assert_eq!((batch.first, batch.count, batch.waiting), (0, 1, 0));
    }

    fn indexer_over(
        fail: &Arc<AtomicBool>,
    ) -> (
        Arc<Shared>,
        Arc<Inbox>,
        std::thread::JoinHandle<()>,
        Arc<Database>,
    ) {
        let db = Arc::new(
            Database::builder()
                .create_with_backend(FlakyDisk {
                    inner: InMemoryBackend::new(),
                    fail: Arc::clone(fail),
                })
                .unwrap(),
        );
        let shared = Arc::new(Shared::default());
        let indexer = Indexer {
            shared: Arc::clone(&shared),
            db: Arc::clone(&db),
            frontier: CompactRange::new(),
            pending: Vec::new(),
        };
        let inbox = Arc::new(Inbox::default());
        let thread = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || indexer.run(inbox))
        };
        (shared, inbox, thread, db)
    }

    fn records_in(db: &Database) -> u64 {
        let txn = db.begin_read().unwrap();
        txn.open_table(RECORDS).unwrap().len().unwrap()
    }

    #[test]
    fn the_indexer_applies_on_request_and_on_its_own() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, inbox, thread, db) = indexer_over(&fail);

        inbox.hand_on(frame_of(0, &[0, 1])).unwrap();
        inbox.sync().unwrap();
        assert_eq!(shared.indexed.load(Ordering::SeqCst), 2);
        assert_eq!(records_in(&db), 2);

        // Without a reader asking, within INDEX_INTERVAL.
        inbox.hand_on(frame_of(2, &[2])).unwrap();
        eventually_blocking("the indexer to apply entry 2", || {
            (shared.indexed.load(Ordering::SeqCst) >= 3).then_some(())
        });
        assert_eq!(records_in(&db), 3);
        assert_eq!(shared.counters.index_commits.load(Ordering::SeqCst), 2);

        // The last entries are applied when the inbox closes.
        inbox.hand_on(frame_of(3, &[3])).unwrap();
        inbox.close();
        thread.join().unwrap();
        assert_eq!(records_in(&db), 4);
    }

    #[test]
    fn a_failed_index_commit_fails_reads_and_appends_and_applies_nothing_more() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, inbox, thread, db) = indexer_over(&fail);
        inbox.hand_on(frame_of(0, &[0])).unwrap();
        inbox.sync().unwrap();

        fail.store(true, Ordering::SeqCst);
        inbox.hand_on(frame_of(1, &[1])).unwrap();
        assert!(matches!(inbox.sync(), Err(LogError::BatchFailed(_))));
        assert!(shared.poisoned.get().is_some());
        assert!(shared.index_failed.get().is_some());
        assert_eq!(shared.indexed.load(Ordering::SeqCst), 1);

        fail.store(false, Ordering::SeqCst);
        assert!(matches!(inbox.sync(), Err(LogError::BatchFailed(_))));
        inbox.close();
        thread.join().unwrap();
        assert_eq!(records_in(&db), 1);
    }
}
