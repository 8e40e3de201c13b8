//! Group commit (DESIGN §6): one thread owns every append. It waits for the first pending job,
//! takes whatever else is already queued (up to `max_batch` entries), writes all of it in ONE
//! redb write transaction with immediate durability (one fsync), and only then answers each
//! appender. Concurrent appends therefore share an fsync, and an appender that got `Ok` has its
//! record on disk. When the previous commit served more than one append, the writer lingers up
//! to `group_commit_linger` for the appenders it just answered to come back (stopping at the
//! first 50 µs without a new one), so that a steady crowd of appenders is not split into two
//! half-size groups that take turns. If anything in the batch fails, the transaction is dropped (nothing of the
//! batch is visible) and every appender in it gets the error.
//!
//! Everything that does not need the leaf index (encoding, leaf hash, subject HMAC, body hash
//! check) is done by the appender before it queues the job, so the writer does only the inserts,
//! the Merkle parents of each leaf and the body encryption.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability};
use tlog::{CompactRange, Hash};
use tokio::sync::oneshot;

use crate::LogError;
use crate::crypto::BodyCipher;
use crate::tables::{BODIES, BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, NODES, RECORDS};

/// While lingering, the writer stops waiting when no job arrived for this long.
const LINGER_GAP: Duration = Duration::from_micros(50);

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

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
}

pub(crate) struct Writer {
    /// Set after a failed commit: every later job fails too, so that no record can become
    /// durable after an earlier one (perhaps enqueued without waiting) was lost.
    pub(crate) poisoned: Arc<std::sync::OnceLock<Arc<LogError>>>,
    pub(crate) db: Arc<Database>,
    pub(crate) frontier: CompactRange,
    pub(crate) cipher: Arc<BodyCipher>,
    pub(crate) max_batch: usize,
    pub(crate) linger: Duration,
    pub(crate) counters: Arc<Counters>,
}

impl Writer {
    /// Runs until every sender is gone (the last `MessageLog` clone was dropped).
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        let max_batch = self.max_batch.max(1);
        let mut concurrent = false;
        while let Ok(first) = jobs.recv() {
            let mut pending = first.entries.len();
            let mut batch = vec![first];
            let now = Instant::now();
            let deadline = now.checked_add(self.linger).unwrap_or(now);
            while pending < max_batch {
                let next = match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Disconnected) => None,
                    // Appenders answered by the last commit are about to come back: when there
                    // is concurrency, wait a moment (while they keep coming) to take them along.
                    Err(TryRecvError::Empty) if concurrent => {
                        let now = Instant::now();
                        if now >= deadline {
                            None
                        } else {
                            jobs.recv_timeout(LINGER_GAP.min(deadline - now)).ok()
                        }
                    }
                    Err(TryRecvError::Empty) => None,
                };
                let Some(job) = next else { break };
                pending += job.entries.len();
                batch.push(job);
            }
            concurrent = batch.len() > 1;
            self.commit_and_answer(batch);
        }
    }

    fn commit_and_answer(&mut self, batch: Vec<Job>) {
        if let Some(e) = self.poisoned.get() {
            for job in batch {
                let _ = job.reply.send(Err(LogError::BatchFailed(Arc::clone(e))));
            }
            return;
        }
        let before = self.frontier.clone();
        let mut firsts = Vec::with_capacity(batch.len());
        let result = self.commit(&batch, &mut firsts);
        match result {
            Ok(()) => {
                let entries: usize = batch.iter().map(|j| j.entries.len()).sum();
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .entries
                    .fetch_add(entries as u64, Ordering::Relaxed);
                for (job, first) in batch.into_iter().zip(firsts) {
                    // An appender that stopped waiting still has its record logged.
                    let _ = job.reply.send(Ok(first));
                }
            }
            Err(e) => {
                self.frontier = before;
                self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, jobs = batch.len(), "message log group commit failed");
                let e = Arc::new(e);
                let _ = self.poisoned.set(Arc::clone(&e));
                for job in batch {
                    let _ = job.reply.send(Err(LogError::BatchFailed(Arc::clone(&e))));
                }
            }
        }
    }

    fn commit(&mut self, batch: &[Job], firsts: &mut Vec<u64>) -> Result<(), LogError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut nodes = txn.open_table(NODES)?;
            let mut bodies = txn.open_table(BODIES)?;
            let mut by_id = txn.open_table(BY_MESSAGE_ID)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut by_subject = txn.open_table(BY_SUBJECT)?;
            for job in batch {
                firsts.push(self.frontier.size());
                for e in &job.entries {
                    let index = self.frontier.size();
                    records.insert(index, e.record_bytes.as_slice())?;
                    for (level, i, hash) in self.frontier.append(e.leaf) {
                        nodes.insert((level, i), &hash)?;
                    }
                    if let Some(body) = &e.body {
                        bodies.insert(index, self.cipher.seal(index, body)?.as_slice())?;
                    }
                    by_id.insert((e.message_id.as_str(), index), ())?;
                    by_time.insert((e.logged_at_ms, index), ())?;
                    if let Some(subject) = &e.subject {
                        by_subject.insert((subject, index), ())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

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

    #[test]
    fn a_failed_commit_fails_every_appender_of_the_batch_and_writes_nothing() {
        let fail = Arc::new(AtomicBool::new(false));
        let db = Database::builder()
            .create_with_backend(FlakyDisk {
                inner: InMemoryBackend::new(),
                fail: Arc::clone(&fail),
            })
            .unwrap();
        let counters = Arc::new(Counters::default());
        let mut writer = Writer {
            poisoned: Arc::new(std::sync::OnceLock::new()),
            db: Arc::new(db),
            frontier: CompactRange::new(),
            cipher: Arc::new(BodyCipher::new(None, &[0; 32]).unwrap()),
            max_batch: 16,
            linger: Duration::ZERO,
            counters: Arc::clone(&counters),
        };
        let (ok, ok_answer) = job(0);
        writer.commit_and_answer(vec![ok]);
        assert_eq!(ok_answer.blocking_recv().unwrap().unwrap(), 0);

        fail.store(true, Ordering::SeqCst);
        let (a, a_answer) = job(1);
        let (b, b_answer) = job(2);
        writer.commit_and_answer(vec![a, b]);
        for answer in [a_answer, b_answer] {
            assert!(matches!(
                answer.blocking_recv().unwrap(),
                Err(LogError::BatchFailed(_))
            ));
        }
        assert_eq!(writer.frontier.size(), 1);
        assert_eq!(counters.failed_batches.load(Ordering::Relaxed), 1);
        assert_eq!(counters.batches.load(Ordering::Relaxed), 1);
        let txn = writer.db.begin_read().unwrap();
        assert_eq!(txn.open_table(RECORDS).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(NODES).unwrap().len().unwrap(), 1);
        drop(txn);

        // The disk recovers, but the log stays failed: a record enqueued before the failure
        // (and lost with it) must never be followed by a durable one.
        fail.store(false, Ordering::SeqCst);
        let (c, c_answer) = job(1);
        writer.commit_and_answer(vec![c]);
        assert!(matches!(
            c_answer.blocking_recv().unwrap(),
            Err(LogError::BatchFailed(_))
        ));
        let txn = writer.db.begin_read().unwrap();
        assert_eq!(txn.open_table(RECORDS).unwrap().len().unwrap(), 1);
    }
}
