//! Group commit (DESIGN §6), in two threads.
//!
//! Appenders write their entries straight into the **frame being filled**, a buffer shared
//! through [`Queue`]: under its lock an appender takes the next leaf indexes, copies its
//! record in and seals its body into place (the nonce needs the index). Nothing an appender
//! allocates is handed to another thread to free, and no entry is copied again on its way to
//! the disk.
//!
//! The **writer** owns the segment. It waits until some appender is queued, takes the whole
//! frame (leaving an empty one in its place), completes it with header and checksum, writes it
//! to the write-ahead log and `fdatasync`s it (`wal`), and only then answers each appender.
//! Concurrent appends therefore share an fsync, and an appender that got `Ok` has its record on
//! disk. When the previous commit served more than one append (there is concurrency), the
//! writer lets the next one gather until `group_commit_interval` after the previous one started,
//! or until as many appends wait as the previous commit took, much as PostgreSQL's
//! `commit_delay` does: a sync costs the same for one record as for fifty, and on a virtual
//! machine each one also costs the other threads interrupts and context switches. A lone
//! appender is never delayed. If the write fails, every appender in the batch gets the error and
//! the log refuses everything after it.
//!
//! The **indexer** applies the frames the writer committed to the redb tables, many group
//! commits per transaction: when [`INDEX_INTERVAL`] has passed since the oldest entry not yet
//! applied, when [`INDEX_MAX_ENTRIES`] are waiting, or at once when a reader asks
//! ([`IndexMsg::Sync`]; every read of the log does, so a read sees every append acknowledged
//! before it). The bodies stay where the writer put them: the `bodies` table gets their place in
//! the segment. Recovery at open applies the frames left in the segments the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
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
    BODIES, BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, META, META_WAL_APPLIED, NODES, RECORDS,
};
use crate::wal::{self, BodyLocation, OwnedFrame, Segment};

/// Appenders stop gathering for a group commit once its frame reaches this many bytes.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// The longest an acknowledged entry waits before the indexer applies it to the database
/// (unless a reader asks for it sooner).
pub(crate) const INDEX_INTERVAL: Duration = Duration::from_millis(100);
/// The indexer applies what it holds once this many entries wait.
pub(crate) const INDEX_MAX_ENTRIES: usize = 16_384;
/// Group commits the writer may hand on before the indexer has taken them (then it waits).
pub(crate) const INDEX_QUEUE: usize = 256;

/// One entry, checked and encoded by its appender before it takes the queue's lock.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) record_bytes: Vec<u8>,
    pub(crate) subject: Option<[u8; 32]>,
    pub(crate) body: Option<Bytes>,
}

/// Where an appender learns the first leaf index of its entries once they are durable.
pub(crate) type Reply = oneshot::Sender<Result<u64, LogError>>;

/// The frame being filled by appenders, and who waits for it.
#[derive(Debug)]
pub(crate) struct Queue {
    filling: Mutex<Filling>,
    /// Signalled when the first appender of a frame arrives, and when the log closes.
    arrived: Condvar,
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
    /// While the writer gathers a commit: how many appenders it waits for (it is woken when
    /// they are there); zero otherwise.
    wanted: usize,
    /// Set when the last `MessageLog` goes: the writer commits what is queued and ends.
    closed: bool,
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
                wanted: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
            cipher,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Filling>, LogError> {
        // Nothing panics while holding the lock; if something did, its frame may be torn.
        self.filling.lock().map_err(|_| LogError::Closed)
    }

    /// Puts `entries` at the next consecutive indexes of the frame being filled; `reply` gets
    /// the first once they are durable. All or none: on an error nothing was queued.
    pub(crate) fn push(&self, entries: &[Prepared], reply: Reply) -> Result<(), LogError> {
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
        f.replies.push((reply, first));
        // The writer waits for the first appender, or for as many as it wants.
        if f.replies.len() == 1
            || f.replies.len() == f.wanted
            || (mark < MAX_BATCH_BYTES && f.frame.len() >= MAX_BATCH_BYTES)
        {
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
    pub(crate) counters: Counters,
}

/// What the indexer is told, in the order it must act.
#[derive(Debug)]
pub(crate) enum IndexMsg {
    /// A frame that is durable in the write-ahead log.
    Frame(OwnedFrame),
    /// A reader waits until everything sent before this is in the database.
    Sync(SyncSender<Result<(), LogError>>),
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) segment: Segment,
    pub(crate) queue: Arc<Queue>,
    pub(crate) indexer: SyncSender<IndexMsg>,
    /// How long after the start of one group commit the next may gather appends while there
    /// is concurrency.
    pub(crate) interval: Duration,
}

impl Writer {
    /// Runs until the queue is closed and everything queued before is answered.
    pub(crate) fn run(mut self) {
        // Jobs in the previous commit, and when it started.
        let mut last: Option<(usize, Instant)> = None;
        while let Some(batch) = self.take(last) {
            last = Some((batch.replies.len(), Instant::now()));
            self.commit_and_answer(batch);
        }
    }

    /// Waits for the next group commit and takes it from the queue; `None` once the queue is
    /// closed and empty.
    fn take(&self, last: Option<(usize, Instant)>) -> Option<Batch> {
        let mut f = self.queue.lock().ok()?;
        while f.replies.is_empty() {
            if f.closed {
                return None;
            }
            f = self.queue.arrived.wait(f).ok()?;
        }
        // Under concurrency, the appenders just answered are about to come back and others
        // are on the way: let them gather until the interval since the previous commit has
        // passed, or as many appenders wait as that commit took (then they are all back, as
        // in a closed loop of appenders, and waiting longer would only idle). The appender that
        // makes the number wakes the writer; the others do not.
        if let Some((last_jobs, last_start)) = last
            && last_jobs > 1
        {
            let deadline = last_start.checked_add(self.interval).unwrap_or(last_start);
            f.wanted = last_jobs;
            while f.replies.len() < last_jobs && f.frame.len() < MAX_BATCH_BYTES && !f.closed {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                f = self.queue.arrived.wait_timeout(f, deadline - now).ok()?.0;
            }
            f.wanted = 0;
        }
        // The next frame starts with room for about as much as this one holds (up to 4 MiB), so
        // that appenders seldom grow it under the lock.
        let mut next_frame = Vec::with_capacity(f.frame.len().next_power_of_two().min(4 << 20));
        wal::begin_frame(&mut next_frame);
        let batch = Batch {
            first: f.first,
            count: f.next - f.first,
            frame: std::mem::replace(&mut f.frame, next_frame),
            replies: std::mem::take(&mut f.replies),
        };
        f.first = f.next;
        Some(batch)
    }

    fn commit_and_answer(&mut self, batch: Batch) {
        let Batch {
            first,
            count,
            frame,
            replies,
        } = batch;
        if let Some(e) = self.shared.poisoned.get() {
            for (reply, _) in replies {
                let _ = reply.send(Err(LogError::BatchFailed(Arc::clone(e))));
            }
            return;
        }
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        match self.commit(first, count, frame) {
            Ok(()) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.entries.fetch_add(count, Ordering::Relaxed);
                for (reply, first) in replies {
                    // An appender that stopped waiting still has its record logged.
                    let _ = reply.send(Ok(first));
                }
            }
            Err(e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, jobs = replies.len(), "message log group commit failed");
                let e = Arc::new(e);
                let _ = shared.poisoned.set(Arc::clone(&e));
                for (reply, _) in replies {
                    let _ = reply.send(Err(LogError::BatchFailed(Arc::clone(&e))));
                }
            }
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
        self.indexer
            .send(IndexMsg::Frame(OwnedFrame {
                first,
                bytes: frame,
                segment,
                offset,
            }))
            .map_err(|_| LogError::Closed)?;
        self.shared
            .acked
            .store(first + u64::from(count), Ordering::Release);
        Ok(())
    }
}

pub(crate) struct Indexer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) db: Arc<Database>,
    pub(crate) frontier: CompactRange,
    /// Group commits received and not yet applied, in index order.
    pub(crate) pending: Vec<OwnedFrame>,
    /// The entries they hold.
    pub(crate) pending_entries: u64,
}

impl Indexer {
    /// Runs until the writer and every reader are gone, applying what is left before it ends.
    pub(crate) fn run(mut self, messages: Receiver<IndexMsg>) {
        let mut oldest: Option<Instant> = None;
        loop {
            let message = match oldest {
                None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(since) => {
                    let waited = since.elapsed();
                    if waited >= INDEX_INTERVAL {
                        Err(RecvTimeoutError::Timeout)
                    } else {
                        messages.recv_timeout(INDEX_INTERVAL - waited)
                    }
                }
            };
            match message {
                Ok(IndexMsg::Frame(frame)) => {
                    debug_assert_eq!(frame.first, self.frontier.size() + self.pending_entries);
                    self.pending_entries += frame.count();
                    self.pending.push(frame);
                    oldest.get_or_insert_with(Instant::now);
                    if self.pending_entries >= INDEX_MAX_ENTRIES as u64 {
                        // A failure is kept in `shared`, where appenders and readers find it.
                        let _ = self.apply_pending();
                        oldest = None;
                    }
                }
                Ok(IndexMsg::Sync(reply)) => {
                    let _ = reply.send(self.apply_pending());
                    oldest = None;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.apply_pending();
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.apply_pending();
                    return;
                }
            }
        }
    }

    /// Applies the pending entries in one durable transaction. After a failure nothing more is
    /// applied: the entries stay in the write-ahead log, and the next open applies them.
    fn apply_pending(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.shared.index_failed.get() {
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
                self.pending.clear();
                self.pending_entries = 0;
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
        let mut bodies = txn.open_table(BODIES)?;
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
                records.insert(index, e.record_bytes)?;
                for (level, i, hash) in frontier.append(tlog::leaf_hash(e.record_bytes)) {
                    nodes.insert((level, i), &hash)?;
                }
                if let Some(body) = e.stored_body {
                    // The body stays where the write-ahead log wrote it.
                    let location = BodyLocation {
                        segment: frame.segment,
                        offset: frame.offset + e.body_at as u64,
                        len: body.len() as u32,
                    };
                    bodies.insert(index, location.to_value().as_slice())?;
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
    use std::sync::mpsc;

    use redb::backends::InMemoryBackend;
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _, StorageBackend};

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

    /// Queues entry `n` (with a body) as one appender.
    fn push(queue: &Queue, n: u8) -> Answer {
        let (reply, answer) = oneshot::channel();
        let entry = Prepared {
            record_bytes: record(n),
            subject: None,
            body: Some(Bytes::from_static(b"body")),
        };
        queue.push(&[entry], reply).unwrap();
        answer
    }

    /// A writer over a new segment in `dir`, its queue, and what it hands the indexer.
    fn writer_in(
        dir: &std::path::Path,
        body_key: Option<&[u8; 32]>,
        interval: Duration,
    ) -> (Writer, Arc<Queue>, mpsc::Receiver<IndexMsg>) {
        let (index, messages) = mpsc::sync_channel(64);
        let cipher = Arc::new(BodyCipher::new(body_key, &[0; 32], 1).unwrap());
        let queue = Arc::new(Queue::new(0, cipher));
        let writer = Writer {
            shared: Arc::new(Shared::default()),
            segment: Segment::create(dir, 0).unwrap(),
            queue: Arc::clone(&queue),
            indexer: index,
            interval,
        };
        (writer, queue, messages)
    }

    /// Takes what is queued and commits it, as one turn of the writer's loop.
    fn commit_queued(writer: &mut Writer) {
        let batch = writer.take(None).unwrap();
        writer.commit_and_answer(batch);
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
        let (mut writer, queue, messages) = writer_in(dir.path(), None, Duration::ZERO);
        let shared = Arc::clone(&writer.shared);
        let ok_answer = push(&queue, 0);
        commit_queued(&mut writer);
        assert_eq!(ok_answer.blocking_recv().unwrap().unwrap(), 0);
        assert!(matches!(
            messages.try_recv(),
            Ok(IndexMsg::Frame(frame)) if frame.first == 0 && frame.count() == 1
        ));

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
        assert!(messages.try_recv().is_err());
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
        assert!(messages.try_recv().is_err());
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
        let (mut writer, queue, messages) = writer_in(dir.path(), Some(&[7; 32]), Duration::ZERO);
        let one = push(&queue, 0);
        let (reply, three) = oneshot::channel();
        let batch: Vec<_> = (1..4)
            .map(|n| Prepared {
                record_bytes: record(n),
                subject: Some([n; 32]),
                body: None,
            })
            .collect();
        queue.push(&batch, reply).unwrap();
        let last = push(&queue, 4);
        commit_queued(&mut writer);
        assert_eq!(one.blocking_recv().unwrap().unwrap(), 0);
        assert_eq!(three.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(last.blocking_recv().unwrap().unwrap(), 4);

        let Ok(IndexMsg::Frame(frame)) = messages.try_recv() else {
            panic!("no frame handed on");
        };
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
        assert!(matches!(queue.push(&[], reply), Err(LogError::Closed)));
        assert!(writer.take(None).is_none());
    }

    #[test]
    fn a_full_segment_is_closed_before_the_next_frame_and_recovery_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, queue, messages) = writer_in(dir.path(), Some(&[7; 32]), Duration::ZERO);
        writer.segment = Segment::create(dir.path(), 0).unwrap().with_limit(150);
        for n in 0..6 {
            let answer = push(&queue, n);
            commit_queued(&mut writer);
            assert_eq!(answer.blocking_recv().unwrap().unwrap(), u64::from(n));
        }
        let mut segments = Vec::new();
        let mut batches = 0;
        while let Ok(message) = messages.try_recv() {
            let IndexMsg::Frame(frame) = message else {
                panic!("only frames are handed on");
            };
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
    fn under_concurrency_a_commit_gathers_for_the_interval_or_until_as_many_as_the_last_one() {
        let interval = Duration::from_millis(600);
        let dir = tempfile::tempdir().unwrap();
        let (writer, queue, messages) = writer_in(dir.path(), None, interval);
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

        let sizes: Vec<u64> = messages
            .try_iter()
            .filter_map(|m| match m {
                IndexMsg::Frame(frame) => Some(frame.count()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [12, 10, 10, 1, 1, 1, 1]);
        assert!(
            as_many < interval / 2,
            "a full gathering waited {as_many:?}"
        );
        assert!(lone < interval, "lone appends took {lone:?}");
    }

    fn indexer_over(
        fail: &Arc<AtomicBool>,
    ) -> (
        Arc<Shared>,
        mpsc::SyncSender<IndexMsg>,
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
            pending_entries: 0,
        };
        let (index, messages) = mpsc::sync_channel(16);
        let thread = std::thread::spawn(move || indexer.run(messages));
        (shared, index, thread, db)
    }

    fn sync(index: &mpsc::SyncSender<IndexMsg>) -> Result<(), LogError> {
        let (reply, done) = mpsc::sync_channel(1);
        index.send(IndexMsg::Sync(reply)).unwrap();
        done.recv().unwrap()
    }

    fn records_in(db: &Database) -> u64 {
        let txn = db.begin_read().unwrap();
        txn.open_table(RECORDS).unwrap().len().unwrap()
    }

    #[test]
    fn the_indexer_applies_on_request_and_on_its_own() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, index, thread, db) = indexer_over(&fail);

        index.send(IndexMsg::Frame(frame_of(0, &[0, 1]))).unwrap();
        sync(&index).unwrap();
        assert_eq!(shared.indexed.load(Ordering::SeqCst), 2);
        assert_eq!(records_in(&db), 2);

        // Without a reader asking, within INDEX_INTERVAL.
        index.send(IndexMsg::Frame(frame_of(2, &[2]))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.indexed.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "the indexer never applied entry 2"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(records_in(&db), 3);
        assert_eq!(shared.counters.index_commits.load(Ordering::SeqCst), 2);

        // The last entries are applied when the channel closes.
        index.send(IndexMsg::Frame(frame_of(3, &[3]))).unwrap();
        drop(index);
        thread.join().unwrap();
        assert_eq!(records_in(&db), 4);
    }

    #[test]
    fn a_failed_index_commit_fails_reads_and_appends_and_applies_nothing_more() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, index, thread, db) = indexer_over(&fail);
        index.send(IndexMsg::Frame(frame_of(0, &[0]))).unwrap();
        sync(&index).unwrap();

        fail.store(true, Ordering::SeqCst);
        index.send(IndexMsg::Frame(frame_of(1, &[1]))).unwrap();
        assert!(matches!(sync(&index), Err(LogError::BatchFailed(_))));
        assert!(shared.poisoned.get().is_some());
        assert!(shared.index_failed.get().is_some());
        assert_eq!(shared.indexed.load(Ordering::SeqCst), 1);

        fail.store(false, Ordering::SeqCst);
        assert!(matches!(sync(&index), Err(LogError::BatchFailed(_))));
        drop(index);
        thread.join().unwrap();
        assert_eq!(records_in(&db), 1);
    }
}
