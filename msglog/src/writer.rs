//! Group commit (DESIGN §6), in two threads.
//!
//! The **writer** owns every append. It waits for the first pending job, takes whatever else is
//! already queued (up to `max_batch` entries), seals the bodies, writes all of it as ONE frame
//! of the write-ahead log and `fdatasync`s it (`wal`), and only then answers each appender.
//! Concurrent appends therefore share an fsync, and an appender that got `Ok` has its record on
//! disk. When the previous commit served more than one append (there is concurrency), the
//! writer lets the next one gather until `group_commit_interval` after the previous one started,
//! or until as many appends wait as the previous commit took, much as PostgreSQL's
//! `commit_delay` does: a sync costs the same for one record as for fifty, and on a virtual
//! machine each one also costs the other threads interrupts and context switches. A lone
//! appender is never delayed. If the write fails, every appender in the batch gets the error and
//! the log refuses everything after it.
//!
//! The **indexer** applies what the writer committed to the redb tables, many group commits per
//! transaction: when [`INDEX_INTERVAL`] has passed since the oldest entry not yet applied, when
//! [`INDEX_MAX_ENTRIES`] are waiting, or at once when a reader asks ([`IndexMsg::Sync`]; every
//! read of the log does, so a read sees every append acknowledged before it). Once a
//! transaction is durable, the write-ahead segments it covers are deleted.
//!
//! Everything that does not need the leaf index (encoding, leaf hash, subject HMAC, body hash
//! check) is done by the appender before it queues the job.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability};
use tlog::{CompactRange, Hash};
use tokio::sync::oneshot;

use crate::LogError;
use crate::crypto::BodyCipher;
use crate::tables::{BODIES, BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, NODES, RECORDS};
use crate::wal::{self, IndexEntry, Segment};

/// A group commit takes no further jobs once its records and bodies reach this many bytes.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// How many times per group-commit interval a gathering writer looks at its queue.
const GATHER_CHECKS: u32 = 4;
/// The longest an acknowledged entry waits before the indexer applies it to the database
/// (unless a reader asks for it sooner).
pub(crate) const INDEX_INTERVAL: Duration = Duration::from_millis(100);
/// The indexer applies what it holds once this many entries wait.
pub(crate) const INDEX_MAX_ENTRIES: usize = 16_384;
/// Group commits the writer may hand on before the indexer has taken them (then it waits).
pub(crate) const INDEX_QUEUE: usize = 256;

/// One entry, prepared by its appender.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) record_bytes: Vec<u8>,
    pub(crate) leaf: Hash,
    pub(crate) message_id: String,
    pub(crate) logged_at_ms: i64,
    pub(crate) subject: Option<[u8; 32]>,
    pub(crate) body: Option<Bytes>,
}

/// Entries that go in together (consecutive indexes), and where to send the first index.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) entries: Vec<Prepared>,
    pub(crate) reply: oneshot::Sender<Result<u64, LogError>>,
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
    /// Entries at `first..` that are durable in the write-ahead log.
    Batch {
        first: u64,
        entries: Vec<IndexEntry>,
    },
    /// A segment the writer closed; every entry in it is below `end`.
    Closed { path: PathBuf, end: u64 },
    /// A reader waits until everything sent before this is in the database.
    Sync(SyncSender<Result<(), LogError>>),
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) segment: Segment,
    /// The index of the next entry.
    pub(crate) next: u64,
    pub(crate) cipher: Arc<BodyCipher>,
    pub(crate) indexer: SyncSender<IndexMsg>,
    pub(crate) max_batch: usize,
    /// How long after the start of one group commit the next may gather appends while there
    /// is concurrency.
    pub(crate) interval: Duration,
    /// The frame being written, kept to reuse its allocation.
    pub(crate) frame: Vec<u8>,
}

impl Writer {
    /// Runs until every sender is gone (the last `MessageLog` clone was dropped).
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        let max_batch = self.max_batch.max(1);
        // Jobs in the previous commit, and when it started.
        let mut last: Option<(usize, Instant)> = None;
        while let Ok(first) = jobs.recv() {
            let mut batch = Gathering::new(first);
            batch.take_queued(&jobs, max_batch);
            // Under concurrency, the appenders just answered are about to come back and others
            // are on the way: let them gather until the interval since the previous commit has
            // passed, or as many jobs wait as that commit took (then they are all back, as in a
            // closed loop of appenders, and waiting longer would only idle). The writer checks
            // a few times per interval rather than being woken by every arrival.
            if let Some((last_jobs, last_start)) = last
                && last_jobs > 1
            {
                let deadline = last_start.checked_add(self.interval).unwrap_or(last_start);
                let step = self.interval / GATHER_CHECKS;
                while batch.jobs.len() < last_jobs && !batch.is_full(max_batch) {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep(step.min(deadline - now));
                    batch.take_queued(&jobs, max_batch);
                }
            }
            last = Some((batch.jobs.len(), Instant::now()));
            self.commit_and_answer(batch.jobs);
        }
    }

    fn commit_and_answer(&mut self, batch: Vec<Job>) {
        if let Some(e) = self.shared.poisoned.get() {
            for job in batch {
                let _ = job.reply.send(Err(LogError::BatchFailed(Arc::clone(e))));
            }
            return;
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut prepared = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push(job.reply);
            prepared.push(job.entries);
        }
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        match self.commit(prepared) {
            Ok((firsts, entries)) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.entries.fetch_add(entries, Ordering::Relaxed);
                for (reply, first) in replies.into_iter().zip(firsts) {
                    // An appender that stopped waiting still has its record logged.
                    let _ = reply.send(Ok(first));
                }
            }
            Err(e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, jobs = replies.len(), "message log group commit failed");
                let e = Arc::new(e);
                let _ = shared.poisoned.set(Arc::clone(&e));
                for reply in replies {
                    let _ = reply.send(Err(LogError::BatchFailed(Arc::clone(&e))));
                }
            }
        }
    }

    /// Writes the batch to the write-ahead log, hands it to the indexer and returns the first
    /// index of each job and the number of entries.
    fn commit(&mut self, batch: Vec<Vec<Prepared>>) -> Result<(Vec<u64>, u64), LogError> {
        let first = self.next;
        // Before the frame, so that a failure here fails a batch that was not written.
        if self.segment.is_full() {
            let path = self.segment.rotate(first)?;
            self.indexer
                .send(IndexMsg::Closed { path, end: first })
                .map_err(|_| LogError::Closed)?;
        }
        let mut index = first;
        let mut firsts = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.iter().map(Vec::len).sum());
        for job in batch {
            firsts.push(index);
            for e in job {
                let stored_body = match &e.body {
                    Some(body) => Some(self.cipher.seal(index, body)?),
                    None => None,
                };
                entries.push(IndexEntry {
                    record_bytes: e.record_bytes,
                    leaf: e.leaf,
                    message_id: e.message_id,
                    logged_at_ms: e.logged_at_ms,
                    subject: e.subject,
                    stored_body,
                });
                index += 1;
            }
        }
        self.frame.clear();
        wal::encode_frame(first, &entries, &mut self.frame);
        let started = Instant::now();
        self.segment.append(&self.frame)?;
        self.shared
            .counters
            .sync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.indexer
            .send(IndexMsg::Batch { first, entries })
            .map_err(|_| LogError::Closed)?;
        self.next = index;
        self.shared.acked.store(index, Ordering::Release);
        Ok((firsts, index - first))
    }
}

/// The jobs of the next group commit while the writer collects them.
struct Gathering {
    jobs: Vec<Job>,
    entries: usize,
    bytes: usize,
}

impl Gathering {
    fn new(first: Job) -> Self {
        Gathering {
            entries: first.entries.len(),
            bytes: job_bytes(&first),
            jobs: vec![first],
        }
    }

    fn is_full(&self, max_batch: usize) -> bool {
        self.entries >= max_batch || self.bytes >= MAX_BATCH_BYTES
    }

    /// Takes what is already queued, up to the limits of one commit.
    fn take_queued(&mut self, jobs: &Receiver<Job>, max_batch: usize) {
        while !self.is_full(max_batch) {
            let Ok(job) = jobs.try_recv() else { return };
            self.entries += job.entries.len();
            self.bytes += job_bytes(&job);
            self.jobs.push(job);
        }
    }
}

/// The bytes of a job's records and bodies.
fn job_bytes(job: &Job) -> usize {
    job.entries
        .iter()
        .map(|e| e.record_bytes.len() + e.body.as_ref().map_or(0, Bytes::len))
        .sum()
}

pub(crate) struct Indexer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) db: Arc<Database>,
    pub(crate) frontier: CompactRange,
    /// Group commits received and not yet applied, in index order.
    pub(crate) pending: Vec<IndexEntry>,
    /// Segments closed by the writer, with the end of their entries.
    pub(crate) closed: Vec<(PathBuf, u64)>,
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
                Ok(IndexMsg::Batch { first, entries }) => {
                    debug_assert_eq!(first, self.frontier.size() + self.pending.len() as u64);
                    self.pending.extend(entries);
                    oldest.get_or_insert_with(Instant::now);
                    if self.pending.len() >= INDEX_MAX_ENTRIES {
                        // A failure is kept in `shared`, where appenders and readers find it.
                        let _ = self.apply_pending();
                        oldest = None;
                    }
                }
                Ok(IndexMsg::Closed { path, end }) => self.closed.push((path, end)),
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

    /// Applies the pending entries in one durable transaction, then deletes the segments it
    /// covered. After a failure nothing more is applied: the entries stay in the write-ahead
    /// log, and the next open applies them.
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
                let size = self.frontier.size();
                self.shared.indexed.store(size, Ordering::Release);
                self.shared
                    .counters
                    .index_commits
                    .fetch_add(1, Ordering::Relaxed);
                self.delete_covered_segments(size);
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

    fn delete_covered_segments(&mut self, size: u64) {
        self.closed.retain(|(path, end)| {
            if *end > size {
                return true;
            }
            // A segment left behind is applied again (as a no-op) and deleted at the next open.
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(segment = %path.display(), error = %e, "could not delete a write-ahead segment");
            }
            false
        });
    }
}

/// Inserts `entries` (the next indexes of the tree `frontier` describes) into the tables in one
/// transaction with immediate durability.
pub(crate) fn apply(
    db: &Database,
    frontier: &mut CompactRange,
    entries: &[IndexEntry],
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
        for e in entries {
            let index = frontier.size();
            records.insert(index, e.record_bytes.as_slice())?;
            for (level, i, hash) in frontier.append(e.leaf) {
                nodes.insert((level, i), &hash)?;
            }
            if let Some(body) = &e.stored_body {
                bodies.insert(index, body.as_slice())?;
            }
            by_id.insert((e.message_id.as_str(), index), ())?;
            by_time.insert((e.logged_at_ms, index), ())?;
            if let Some(subject) = &e.subject {
                by_subject.insert((subject, index), ())?;
            }
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

    fn job(n: u8) -> (Job, oneshot::Receiver<Result<u64, LogError>>) {
        let record_bytes = vec![n; 10];
        let (reply, answer) = oneshot::channel();
        let entry = Prepared {
            leaf: tlog::leaf_hash(&record_bytes),
            record_bytes,
            message_id: format!("m{n}"),
            logged_at_ms: 0,
            subject: None,
            body: Some(Bytes::from_static(b"body")),
        };
        (
            Job {
                entries: vec![entry],
                reply,
            },
            answer,
        )
    }

    fn index_entry(n: u8) -> IndexEntry {
        let record_bytes = vec![n; 10];
        IndexEntry {
            leaf: tlog::leaf_hash(&record_bytes),
            record_bytes,
            message_id: format!("m{n}"),
            logged_at_ms: 0,
            subject: None,
            stored_body: None,
        }
    }

    #[test]
    fn a_failed_write_fails_every_appender_of_the_batch_and_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (index, messages) = mpsc::sync_channel(16);
        let shared = Arc::new(Shared::default());
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            segment: Segment::create(dir.path(), 0).unwrap(),
            next: 0,
            cipher: Arc::new(BodyCipher::new(None, &[0; 32], 1).unwrap()),
            indexer: index,
            max_batch: 16,
            interval: Duration::ZERO,
            frame: Vec::new(),
        };
        let (ok, ok_answer) = job(0);
        writer.commit_and_answer(vec![ok]);
        assert_eq!(ok_answer.blocking_recv().unwrap().unwrap(), 0);
        assert!(matches!(
            messages.try_recv(),
            Ok(IndexMsg::Batch { first: 0, entries }) if entries.len() == 1
        ));

        // A disk that is full: the write fails, and nothing is acknowledged or handed on.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let good = std::mem::replace(
            &mut writer.segment,
            Segment::over(dir.path(), "/dev/full".into(), full),
        );
        let (a, a_answer) = job(1);
        let (b, b_answer) = job(2);
        writer.commit_and_answer(vec![a, b]);
        for answer in [a_answer, b_answer] {
            assert!(matches!(
                answer.blocking_recv().unwrap(),
                Err(LogError::BatchFailed(_))
            ));
        }
        assert!(messages.try_recv().is_err());
        assert_eq!(shared.acked.load(Ordering::SeqCst), 1);
        assert_eq!(writer.next, 1);
        assert_eq!(shared.counters.failed_batches.load(Ordering::Relaxed), 1);
        assert_eq!(shared.counters.batches.load(Ordering::Relaxed), 1);

        // The disk recovers, but the log stays failed: a record enqueued before the failure
        // (and lost with it) must never be followed by a durable one.
        writer.segment = good;
        let (c, c_answer) = job(1);
        writer.commit_and_answer(vec![c]);
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
    fn a_full_segment_is_closed_before_the_next_frame_and_recovery_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (index, messages) = mpsc::sync_channel(64);
        let mut writer = Writer {
            shared: Arc::new(Shared::default()),
            segment: Segment::create(dir.path(), 0).unwrap().with_limit(150),
            next: 0,
            cipher: Arc::new(BodyCipher::new(Some(&[7; 32]), &[0; 32], 1).unwrap()),
            indexer: index,
            max_batch: 16,
            interval: Duration::ZERO,
            frame: Vec::new(),
        };
        for n in 0..6 {
            let (j, answer) = job(n);
            writer.commit_and_answer(vec![j]);
            assert_eq!(answer.blocking_recv().unwrap().unwrap(), u64::from(n));
        }
        let mut closed = Vec::new();
        let mut batches = 0;
        while let Ok(message) = messages.try_recv() {
            match message {
                IndexMsg::Batch { first, entries } => {
                    assert_eq!((first, entries.len()), (batches, 1));
                    batches += 1;
                }
                IndexMsg::Closed { path, end } => {
                    assert_eq!(end, batches, "closed before the next frame");
                    closed.push(path);
                }
                IndexMsg::Sync(_) => unreachable!(),
            }
        }
        assert_eq!(batches, 6);
        assert!(closed.len() >= 2, "{closed:?}");
        assert_eq!(
            wal::list_segments(dir.path()).unwrap().len(),
            closed.len() + 1
        );
        let recovered = wal::recover(dir.path(), 0, |i, _| Ok((format!("m{i}"), 0))).unwrap();
        assert_eq!(recovered.len(), 6);
        let cipher = BodyCipher::new(Some(&[7; 32]), &[0; 32], 2).unwrap();
        for (i, e) in recovered.iter().enumerate() {
            assert_eq!(e.record_bytes, vec![i as u8; 10]);
            let body = cipher
                .open(i as u64, e.stored_body.as_ref().unwrap())
                .unwrap();
            assert_eq!(body, b"body");
        }
    }

    #[test]
    fn under_concurrency_a_commit_gathers_for_the_interval_or_until_as_many_as_the_last_one() {
        let interval = Duration::from_millis(600);
        let dir = tempfile::tempdir().unwrap();
        let (index, messages) = mpsc::sync_channel(64);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            shared: Arc::clone(&shared),
            segment: Segment::create(dir.path(), 0).unwrap(),
            next: 0,
            cipher: Arc::new(BodyCipher::new(None, &[0; 32], 1).unwrap()),
            indexer: index,
            max_batch: 1024,
            interval,
            frame: Vec::new(),
        };
        let (submit, jobs) = mpsc::channel();
        let send = |n: u8| {
            let (j, answer) = job(n);
            submit.send(j).unwrap();
            answer
        };
        let wait = |answers: Vec<oneshot::Receiver<Result<u64, LogError>>>, first: u64| {
            for (n, answer) in (first..).zip(answers) {
                assert_eq!(answer.blocking_recv().unwrap().unwrap(), n);
            }
        };
        // Twelve appends queued before the writer starts share its first commit.
        let twelve: Vec<_> = (0..12).map(send).collect();
        let thread = std::thread::spawn(move || writer.run(jobs));
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
        drop(submit);
        thread.join().unwrap();

        let sizes: Vec<usize> = messages
            .try_iter()
            .filter_map(|m| match m {
                IndexMsg::Batch { entries, .. } => Some(entries.len()),
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
            closed: Vec::new(),
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
    fn the_indexer_applies_on_request_on_its_own_and_deletes_covered_segments() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, index, thread, db) = indexer_over(&fail);
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.wal");
        std::fs::write(&old, b"").unwrap();

        index
            .send(IndexMsg::Batch {
                first: 0,
                entries: vec![index_entry(0), index_entry(1)],
            })
            .unwrap();
        index
            .send(IndexMsg::Closed {
                path: old.clone(),
                end: 3,
            })
            .unwrap();
        sync(&index).unwrap();
        assert_eq!(shared.indexed.load(Ordering::SeqCst), 2);
        assert_eq!(records_in(&db), 2);
        assert!(old.exists(), "the closed segment still holds entry 2");

        // Without a reader asking, within INDEX_INTERVAL.
        index
            .send(IndexMsg::Batch {
                first: 2,
                entries: vec![index_entry(2)],
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.indexed.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "the indexer never applied entry 2"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(records_in(&db), 3);
        assert!(!old.exists(), "a segment the database covers is deleted");
        assert_eq!(shared.counters.index_commits.load(Ordering::SeqCst), 2);

        // The last entries are applied when the channel closes.
        index
            .send(IndexMsg::Batch {
                first: 3,
                entries: vec![index_entry(3)],
            })
            .unwrap();
        drop(index);
        thread.join().unwrap();
        assert_eq!(records_in(&db), 4);
    }

    #[test]
    fn a_failed_index_commit_fails_reads_and_appends_and_applies_nothing_more() {
        let fail = Arc::new(AtomicBool::new(false));
        let (shared, index, thread, db) = indexer_over(&fail);
        index
            .send(IndexMsg::Batch {
                first: 0,
                entries: vec![index_entry(0)],
            })
            .unwrap();
        sync(&index).unwrap();

        fail.store(true, Ordering::SeqCst);
        index
            .send(IndexMsg::Batch {
                first: 1,
                entries: vec![index_entry(1)],
            })
            .unwrap();
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
