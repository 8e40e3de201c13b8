//! [`MessageLog`]: opening the database, appending (through the group-commit writer), and the
//! reads: size, roots and proofs, records with their bodies, and the three indexes.
//!
//! Reads are blocking (each is one redb read transaction); async callers use `spawn_blocking`.
//! `append` is async: it returns when the group commit holding the entry is durable.
//!
//! # Why one long file
//! [`MessageLog`]'s read paths (records, bodies, proofs, the three indexes) all read through the
//! same locations in segments and archives; they are kept beside the open and append paths that
//! define those locations.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use exchange::HashedBody;
use prost::Message as _;
use proto::v1 as pb;
use redb::{Database, ReadableDatabase as _, ReadableTable};
use tlog::{CompactRange, Hash};
use tokio::sync::oneshot;

use crate::LogError;
use crate::archive_file::LoadedArchive;
use crate::crypto::{self, BodyCipher};
use crate::disk::{self, Faults};
use crate::tables::{
    ARCHIVES, BODIES, BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, CHECKPOINTS, CONF_BY_TIME,
    CONFIGURATIONS, FEDERATED_CONF_BY_TIME, FEDERATED_CONFIGURATIONS, FORMAT_VERSION,
    FORMAT_VERSION_RECORDS_INLINE, META, META_BODY_KEY_CHECK, META_FORMAT, META_OPEN_EPOCH,
    META_SALT, META_WAL_APPLIED, NODES, Nodes, RECORDS, WITNESS_STATE, WITNESSED, read_size,
    tree_error,
};
use crate::wal;
use crate::writer::{self, Counters, Inbox, Indexer, Prepared, Queue, Shared, Wait, Writer};

/// How a message log is opened.
#[derive(Clone)]
pub struct LogOptions {
    /// Encrypts bodies at rest (ChaCha20-Poly1305) when set; stores them plain when `None`.
    pub body_key: Option<[u8; 32]>,
    /// The HMAC key of the subject index. The default (all zeros) is for tests only: a server
    /// sets it from [`crate::load_or_create_key`], or anyone can compute the index keys.
    pub subject_key: [u8; 32],
    /// While there is concurrency (the previous group commit served more than one append, or
    /// appends arrived during its sync), how long after the start of one group commit the next
    /// one may gather appends before its sync; in a closed loop of appenders (none arrived during
    /// the sync) it goes as soon as as many wait as the previous commit took. It adds at most
    /// this much to an append's wait and saves syncs (each with its interrupts and context
    /// switches) under load; a lone appender is never delayed. Default 2 ms; zero commits as soon
    /// as the previous commit is done.
    pub group_commit_interval: Duration,
    /// The most records one archive file holds (default 100,000), so that reading an archived
    /// record back loads a bounded file.
    pub archive_file_records: u64,
    /// The most memory the database's page cache may take (default 32 MiB), pages read and
    /// pages written but not yet flushed together. redb's own default is 1 GiB, which a server
    /// running for months would fill with the log's pages.
    pub cache_bytes: usize,
}

impl LogOptions {
    pub const DEFAULT_GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(2);
    pub const DEFAULT_ARCHIVE_FILE_RECORDS: u64 = 100_000;
    pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            body_key: None,
            subject_key: [0; 32],
            group_commit_interval: Self::DEFAULT_GROUP_COMMIT_INTERVAL,
            archive_file_records: Self::DEFAULT_ARCHIVE_FILE_RECORDS,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("encrypt_bodies", &self.body_key.is_some())
            .field("group_commit_interval", &self.group_commit_interval)
            .field("archive_file_records", &self.archive_file_records)
            .finish_non_exhaustive()
    }
}

/// One record to append.
///
/// The caller fills in `record` completely, `logged_at_ms` and `body_stored` included:
/// `body_stored` must be `body.is_some()`, and a body's hash must be `record.body_sha256`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: pb::LogRecord,
    /// Stored beside the record (encrypted when the log has a body key); not part of the leaf.
    pub body: Option<HashedBody>,
    /// Indexed by its HMAC only; the raw value is not stored by the index.
    pub data_subject: Option<String>,
}

/// A record read back: its exact bytes (the Merkle leaf data) and, if stored, its body,
/// decrypted and checked against the record's `body_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub index: u64,
    pub record_bytes: Vec<u8>,
    pub body: Option<Vec<u8>>,
}

impl StoredRecord {
    pub fn decode(&self) -> Result<pb::LogRecord, LogError> {
        decode_record(self.index, &self.record_bytes)
    }
}

/// A record in the commit order; [`Pending::durable`] waits until it is on disk (a record from
/// [`MessageLog::enqueue`] goes with the next append that waits, or within 20 ms; one from
/// [`MessageLog::begin_append`] with the group commit it starts). Dropping it does not take
/// the record back.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<u64, LogError>>);

impl Pending {
    /// The record's leaf index, once it is durable.
    pub async fn durable(self) -> Result<u64, LogError> {
        self.0.await.map_err(|_| LogError::Closed)?
    }
}

/// Counters of the group-commit writer since the log was opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    /// Group commits made durable (each one write-ahead frame and one fsync).
    pub batches_committed: u64,
    /// Entries in them.
    pub entries_committed: u64,
    /// Group commits that failed (each failed all its appenders).
    pub batches_failed: u64,
    /// Database transactions that applied group commits to the tables and indexes.
    pub index_commits: u64,
    /// Time spent writing and syncing group commits (the wait an appender shares).
    pub sync_time: Duration,
    /// Time spent in the database transactions of the indexer.
    pub index_time: Duration,
}

/// A security server's message log in its own redb file. Cheap to clone; the writer thread
/// stops, and the file is released, when the last clone is dropped.
///
/// A log whose disk fails (full, I/O errors) refuses every record from the failed group commit
/// on, and its readers fail, rather than let a record become durable after an earlier one was
/// lost. A recovery thread then opens it again, as a restart would, every few seconds (1 s,
/// doubling up to [`REOPEN_MAX_DELAY`]); once that succeeds (space came back), the log takes
/// records again after the last durable one. [`MessageLog::failure`] says why it refuses
/// meanwhile.
#[derive(Debug, Clone)]
pub struct MessageLog {
    pub(crate) inner: Arc<Inner>,
}

/// The longest a failed log waits between two attempts to open it again.
pub const REOPEN_MAX_DELAY: Duration = Duration::from_secs(10);
const REOPEN_FIRST_DELAY: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub(crate) core: Arc<Core>,
    /// Opens the log again after a failure ([`supervise`]).
    recovery: Option<JoinHandle<()>>,
    /// Held by `archive_before`, so two runs never archive the same range.
    pub(crate) archiving: Mutex<()>,
    /// The archive file read last (verified against the archives table when loaded).
    pub(crate) archive_cache: Mutex<Option<Arc<LoadedArchive>>>,
}

/// What the log is opened from, and the open log: shared with the recovery thread.
pub(crate) struct Core {
    pub(crate) path: PathBuf,
    pub(crate) options: LogOptions,
    faults: Faults,
    /// Kept across reopens.
    counters: Arc<Counters>,
    state: RwLock<State>,
    /// Set when the last `MessageLog` goes; the recovery thread ends.
    stop: Mutex<bool>,
    wake: Condvar,
}

enum State {
    Open(Arc<Engine>),
    /// Closed after a failure; opening it again failed with this so far.
    Failed(Arc<LogError>),
}

/// One open of the log: the database, the writer and the indexer.
pub(crate) struct Engine {
    pub(crate) db: Arc<Database>,
    pub(crate) cipher: Arc<BodyCipher>,
    /// Where appenders put their entries for the writer.
    queue: Arc<Queue>,
    writer: Option<JoinHandle<()>>,
    /// The writer hands frames to the indexer here; readers ask it to apply what is
    /// acknowledged.
    inbox: Arc<Inbox>,
    indexer: Option<JoinHandle<()>>,
    /// Shared with the writer and the indexer.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageLog")
            .field("path", &self.core.path)
            .field("options", &self.core.options)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.core.stop.lock() {
            *stop = true;
        }
        self.core.wake.notify_all();
        if let Some(recovery) = self.recovery.take()
            && recovery.join().is_err()
        {
            tracing::error!("the message log recovery thread panicked");
        }
        // Closes the database before the last handle returns, so that it can be opened again.
        if let Ok(mut state) = self.core.state.write() {
            *state = State::Failed(Arc::new(LogError::Closed));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered what is queued; then
        // the indexer applies what the writer handed on and ends. Joining both releases their
        // handles on the database before ours goes.
        self.queue.close();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the message log writer thread panicked");
        }
        self.inbox.close();
        if let Some(indexer) = self.indexer.take()
            && indexer.join().is_err()
        {
            tracing::error!("the message log indexer thread panicked");
        }
    }
}

impl Engine {
    /// Opens the log at `path` and applies to it what its write-ahead log holds beyond it.
    fn open(core: &Core) -> Result<Engine, LogError> {
        let (path, options) = (&core.path, &core.options);
        let db = Arc::new(disk::open_database(
            path,
            options.cache_bytes,
            &core.faults,
        )?);
        let (salt, epoch) = initialise(&db, options.body_key.as_ref())?;
        let cipher = Arc::new(BodyCipher::new(options.body_key.as_ref(), &salt, epoch)?);

        let (mut frontier, applied) = {
            let txn = db.begin_read()?;
            let nodes = Nodes(txn.open_table(NODES)?);
            let frontier =
                CompactRange::from_source(&nodes, read_size(&nodes.0)?).map_err(tree_error)?;
            let applied = txn
                .open_table(META)?
                .get(META_WAL_APPLIED)?
                .map(|v| wal::Position::from_value(v.value()))
                .transpose()?;
            (frontier, applied)
        };
        let wal_dir = wal::dir_of(path);
        wal::create_dir(&wal_dir)?;
        let recovered = wal::recover(&wal_dir, frontier.size(), applied)?;
        if let Some(last) = recovered.last() {
            tracing::info!(
                records = last.first + last.count() - frontier.size(),
                from = frontier.size(),
                "applying the message log's write-ahead log to its database"
            );
            // In transactions of about INDEX_MAX_ENTRIES entries, as the indexer makes them.
            let mut start = 0;
            let mut entries = 0;
            for (i, frame) in recovered.iter().enumerate() {
                entries += frame.count();
                if entries >= writer::INDEX_MAX_ENTRIES || i + 1 == recovered.len() {
                    writer::apply(&db, &mut frontier, &recovered[start..=i])?;
                    start = i + 1;
                    entries = 0;
                }
            }
        }
        let size = frontier.size();
        // The tables hold everything before the new segment: later opens start there, and never
        // look again at a frame a crash cut short in an earlier segment. (Recorded before the
        // segment exists, so that no crash leaves the new segment behind an old torn frame.)
        let txn = db.begin_write()?;
        txn.open_table(META)?.insert(
            META_WAL_APPLIED,
            wal::Position {
                segment: size,
                offset: 0,
            }
            .to_value()
            .as_slice(),
        )?;
        txn.commit()?;
        let segment = wal::Segment::create(&wal_dir, size)?.with_faults(core.faults.clone());

        let shared = Arc::new(Shared {
            counters: Arc::clone(&core.counters),
            ..Shared::default()
        });
        shared.acked.store(size, AtomicOrdering::Release);
        shared.indexed.store(size, AtomicOrdering::Release);
        let inbox = Arc::new(Inbox::default());
        let indexer = Indexer {
            shared: Arc::clone(&shared),
            db: Arc::clone(&db),
            frontier,
            pending: Vec::new(),
        };
        let indexer_inbox = Arc::clone(&inbox);
        let indexer = std::thread::Builder::new()
            .name("msglog-indexer".into())
            .spawn(move || indexer.run(indexer_inbox))
            .map_err(LogError::io(path))?;
        let queue = Arc::new(Queue::new(size, Arc::clone(&cipher)));
        let writer = Writer {
            shared: Arc::clone(&shared),
            segment,
            queue: Arc::clone(&queue),
            inbox: Arc::clone(&inbox),
            interval: options.group_commit_interval,
            lazy_delay: writer::LAZY_COMMIT_DELAY,
            spare_replies: Vec::new(),
        };
        let writer = std::thread::Builder::new()
            .name("msglog-writer".into())
            .spawn(move || writer.run())
            .map_err(LogError::io(path));
        let writer = match writer {
            Ok(writer) => writer,
            Err(e) => {
                inbox.close();
                return Err(e);
            }
        };
        Ok(Engine {
            db,
            cipher,
            queue,
            writer: Some(writer),
            inbox,
            indexer: Some(indexer),
            shared,
        })
    }

    /// Why it stopped taking records, if it did.
    fn failure(&self) -> Option<Arc<LogError>> {
        self.shared.poisoned.get().cloned()
    }
}

impl Core {
    fn engine(&self) -> Result<Arc<Engine>, LogError> {
        match &*self.state.read().map_err(|_| LogError::Closed)? {
            State::Open(engine) => Ok(Arc::clone(engine)),
            State::Failed(e) => Err(LogError::BatchFailed(Arc::clone(e))),
        }
    }

    fn failure(&self) -> Option<Arc<LogError>> {
        match &*self.state.read().ok()? {
            State::Open(engine) => engine.failure(),
            State::Failed(e) => Some(Arc::clone(e)),
        }
    }

    /// Closes a failed engine and opens the log again (the recovery thread). Fails, leaving
    /// the log closed, while the disk still fails.
    fn reopen(&self) -> Result<(), Arc<LogError>> {
        let Some(failure) = self.failure() else {
            return Ok(());
        };
        let old = {
            let mut state = self.state.write().map_err(|_| Arc::new(LogError::Closed))?;
            std::mem::replace(&mut *state, State::Failed(Arc::clone(&failure)))
        };
        if let State::Open(mut engine) = old {
            // Readers hold the engine for one read each; the database must be closed before
            // it can be opened again.
            loop {
                match Arc::try_unwrap(engine) {
                    Ok(engine) => break drop(engine),
                    Err(held) => engine = held,
                }
                if self.stopping() {
                    return Err(failure);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let engine = Engine::open(self).map_err(Arc::new)?;
        let mut state = self.state.write().map_err(|_| Arc::new(LogError::Closed))?;
        *state = State::Open(Arc::new(engine));
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.stop.lock().map_or(true, |stop| *stop)
    }
}

/// The recovery thread: while the log has failed, tries to open it again, waiting
/// [`REOPEN_FIRST_DELAY`] after the failure is seen and twice as long after each failed
/// attempt, up to [`REOPEN_MAX_DELAY`]. Looks once a second while the log works.
fn supervise(core: Arc<Core>) {
    let mut delay = REOPEN_FIRST_DELAY;
    loop {
        {
            let Ok(stop) = core.stop.lock() else { return };
            let Ok((stop, _)) = core.wake.wait_timeout_while(stop, delay, |stop| !*stop) else {
                return;
            };
            if *stop {
                return;
            }
        }
        let Some(failure) = core.failure() else {
            delay = REOPEN_FIRST_DELAY;
            continue;
        };
        match core.reopen() {
            Ok(()) => {
                tracing::warn!(
                    path = %core.path.display(),
                    after = %failure,
                    "the message log is open again and takes records"
                );
                delay = REOPEN_FIRST_DELAY;
            }
            Err(e) => {
                tracing::error!(
                    path = %core.path.display(),
                    error = %e,
                    retry_in_secs = delay.as_secs(),
                    "the message log failed and cannot be opened again yet; it refuses records"
                );
                delay = (delay * 2).min(REOPEN_MAX_DELAY);
            }
        }
    }
}

impl MessageLog {
    /// Opens the log at `path`, creating the file if there is none, and applies to it what its
    /// write-ahead log (`<path>-wal/`) holds beyond it.
    pub fn open(path: &Path, options: LogOptions) -> Result<MessageLog, LogError> {
        let mut core = Core {
            path: path.to_owned(),
            options,
            faults: Faults::default(),
            counters: Arc::default(),
            state: RwLock::new(State::Failed(Arc::new(LogError::Closed))),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        };
        let engine = Engine::open(&core)?;
        core.state = RwLock::new(State::Open(Arc::new(engine)));
        let core = Arc::new(core);
        let supervised = Arc::clone(&core);
        let recovery = std::thread::Builder::new()
            .name("msglog-recovery".into())
            .spawn(move || supervise(supervised))
            .map_err(LogError::io(path))?;
        Ok(MessageLog {
            inner: Arc::new(Inner {
                core,
                recovery: Some(recovery),
                archiving: Mutex::new(()),
                archive_cache: Mutex::new(None),
            }),
        })
    }

    /// The open log (its database, writer and indexer); an error while it has failed and is
    /// not yet open again.
    pub(crate) fn engine(&self) -> Result<Arc<Engine>, LogError> {
        self.inner.core.engine()
    }

    /// A read transaction, with the open log it reads: held together, so that the recovery
    /// thread waits for it before it closes the database and opens it again.
    pub(crate) fn read_txn(&self) -> Result<(Arc<Engine>, redb::ReadTransaction), LogError> {
        let engine = self.engine()?;
        let txn = engine.db.begin_read()?;
        Ok((engine, txn))
    }

    /// A write transaction, held with its open log as [`MessageLog::read_txn`] is.
    pub(crate) fn write_txn(&self) -> Result<(Arc<Engine>, redb::WriteTransaction), LogError> {
        let engine = self.engine()?;
        let txn = engine.db.begin_write()?;
        Ok((engine, txn))
    }

    /// Waits until the database holds every record acknowledged so far (the indexer applies
    /// them in the background). Every read calls this first, so reads see every append that
    /// returned before them.
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        let engine = self.engine()?;
        let shared = &engine.shared;
        if let Some(e) = shared.index_failed.get() {
            return Err(LogError::BatchFailed(Arc::clone(e)));
        }
        let acked = shared.acked.load(AtomicOrdering::Acquire);
        if shared.indexed.load(AtomicOrdering::Acquire) >= acked {
            return Ok(());
        }
        engine.inbox.sync()
    }

    /// Appends one record; returns its leaf index once the record is durable.
    pub async fn append(&self, entry: Entry) -> Result<u64, LogError> {
        self.submit(vec![self.prepare(entry)?]).await
    }

    /// Puts one record in the log's commit order without waiting for it to be durable. Any later
    /// record that becomes durable implies this one is (one ordered writer; after a failed commit
    /// the log accepts nothing more), so a request can be enqueued before it is passed on and the
    /// exchange waits only for its response record. The record does not start a group commit of
    /// its own: the next append that waits makes it durable, or the writer does within 20 ms
    /// when none comes. Refused at once if the log has failed.
    pub fn enqueue(&self, entry: Entry) -> Result<Pending, LogError> {
        self.push_one(entry, Wait::No)
    }

    /// Puts one record in the log's commit order and has the writer commit it as if an
    /// appender waited for it; [`Pending::durable`] then waits. So the caller can pass a
    /// message on while its record is being synced and wait for the sync afterwards (the
    /// provider's server answers a peer that way, DESIGN §5.2). Refused at once if the log has
    /// failed.
    pub fn begin_append(&self, entry: Entry) -> Result<Pending, LogError> {
        self.push_one(entry, Wait::Yes)
    }

    fn push_one(&self, entry: Entry, wait: Wait) -> Result<Pending, LogError> {
        let engine = self.engine()?;
        if let Some(e) = engine.failure() {
            return Err(LogError::BatchFailed(e));
        }
        let prepared = self.prepare(entry)?;
        let (reply, answer) = oneshot::channel();
        engine
            .queue
            .push(std::slice::from_ref(&prepared), reply, wait)?;
        Ok(Pending(answer))
    }

    /// Appends records at consecutive indexes in one transaction (all or none); returns their
    /// indexes once durable.
    pub async fn append_batch(&self, entries: Vec<Entry>) -> Result<Range<u64>, LogError> {
        let n = entries.len() as u64;
        if n == 0 {
            let size = self.size()?;
            return Ok(size..size);
        }
        let prepared = entries
            .into_iter()
            .map(|e| self.prepare(e))
            .collect::<Result<Vec<_>, _>>()?;
        let first = self.submit(prepared).await?;
        Ok(first..first + n)
    }

    async fn submit(&self, entries: Vec<Prepared>) -> Result<u64, LogError> {
        let engine = self.engine()?;
        if let Some(e) = engine.failure() {
            return Err(LogError::BatchFailed(e));
        }
        let (reply, answer) = oneshot::channel();
        engine.queue.push(&entries, reply, Wait::Yes)?;
        drop((entries, engine));
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Checks an entry and does the work that does not need its index, outside the writer.
    fn prepare(&self, entry: Entry) -> Result<Prepared, LogError> {
        let Entry {
            record,
            body,
            data_subject,
        } = entry;
        if record.body_stored != body.is_some() {
            return Err(LogError::InvalidEntry(format!(
                "body_stored is {} but a body was {}given",
                record.body_stored,
                if body.is_some() { "" } else { "not " }
            )));
        }
        if let Some(body) = &body
            && body.sha256().as_slice() != record.body_sha256.as_slice()
        {
            return Err(LogError::InvalidEntry(
                "the body does not hash to the record's body_sha256".into(),
            ));
        }
        let record_bytes = record.encode_to_vec();
        // Refused here, before the queue's lock, rather than after copying it into the frame.
        wal::part_len(record_bytes.len())?;
        if let Some(body) = &body {
            wal::part_len(body.bytes().len())?;
        }
        Ok(Prepared {
            record_bytes,
            subject: data_subject.map(|s| self.subject_hash(&s)),
            body: body.map(HashedBody::into_bytes),
        })
    }

    /// The writer's counters since this log was opened.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.core.counters;
        LogStats {
            batches_committed: c.batches.load(AtomicOrdering::Relaxed),
            entries_committed: c.entries.load(AtomicOrdering::Relaxed),
            batches_failed: c.failed_batches.load(AtomicOrdering::Relaxed),
            index_commits: c.index_commits.load(AtomicOrdering::Relaxed),
            sync_time: Duration::from_micros(c.sync_micros.load(AtomicOrdering::Relaxed)),
            index_time: Duration::from_micros(c.index_micros.load(AtomicOrdering::Relaxed)),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.core.path
    }

    /// Why the log refuses records, if it does: a group commit or the database failed (disk
    /// full, I/O error). It refuses every record, and its reads fail, until it is open again
    /// (see [`MessageLog`]); then this is `None` again.
    pub fn failure(&self) -> Option<Arc<LogError>> {
        self.inner.core.failure()
    }

    /// Makes every write of the log's files fail as on a full disk (`true`) until called with
    /// `false`: for tests of a server whose disk fills up; not in release builds of the servers.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn simulate_disk_full(&self, full: bool) {
        self.inner.core.faults.set_full(full);
    }

    /// The number of records ever appended (archived ones included).
    pub fn size(&self) -> Result<u64, LogError> {
        self.sync()?;
        let (_open, txn) = self.read_txn()?;
        read_size(&txn.open_table(NODES)?)
    }

    /// The Merkle tree root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash, LogError> {
        self.sync()?;
        let (_open, txn) = self.read_txn()?;
        let nodes = Nodes(txn.open_table(NODES)?);
        check_size(read_size(&nodes.0)?, "tree size", size)?;
        tlog::root(&nodes, size).map_err(tree_error)
    }

    /// The inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.sync()?;
        let (_open, txn) = self.read_txn()?;
        let nodes = Nodes(txn.open_table(NODES)?);
        check_size(read_size(&nodes.0)?, "tree size", size)?;
        tlog::inclusion_proof(&nodes, index, size).map_err(tree_error)
    }

    /// The consistency proof from the tree of `old_size` records to the tree of `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError> {
        self.sync()?;
        let (_open, txn) = self.read_txn()?;
        let nodes = Nodes(txn.open_table(NODES)?);
        check_size(read_size(&nodes.0)?, "tree size", new_size)?;
        tlog::consistency_proof(&nodes, old_size, new_size).map_err(tree_error)
    }

    /// Record `index` with its body (decrypted), from the database or, once archived, from its
    /// archive file (whose hash is checked against the archives table). `None` if the log has
    /// no such index. A body that does not decrypt or does not match the record's hash is an
    /// error, never a missing body.
    pub fn record(&self, index: u64) -> Result<Option<StoredRecord>, LogError> {
        self.sync()?;
        match self.record_once(index) {
            // An archive run may have removed the segment after our transaction began: the
            // record is in its archive file now, and a new transaction says which.
            Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.record_once(index)
            }
            result => result,
        }
    }

    fn record_once(&self, index: u64) -> Result<Option<StoredRecord>, LogError> {
        let (_open, txn) = self.read_txn()?;
        if let Some(value) = txn.open_table(RECORDS)?.get(index)? {
            let bodies = txn.open_table(BODIES)?;
            let entry = self.stored_entry(index, value.value(), &bodies, &mut self.segments())?;
            return self
                .finish_record(index, entry.record_bytes, entry.stored_body)
                .map(Some);
        }
        if index >= read_size(&txn.open_table(NODES)?)? {
            return Ok(None);
        }
        let archives = txn.open_table(ARCHIVES)?;
        let row = archives.range(..=index)?.next_back().transpose()?;
        let Some((first, row)) = row else {
            return Err(LogError::corrupt(format!(
                "record {index} is neither in the database nor archived"
            )));
        };
        let (first, (last, path, sha256)) = (first.value(), row.value());
        if index > last {
            return Err(LogError::corrupt(format!(
                "record {index} is neither in the database nor archived"
            )));
        }
        let archive = self.load_archive(Path::new(path), first, last, sha256)?;
        drop(archives);
        drop(txn);
        let (record_bytes, stored_body) = archive.entry(index)?;
        self.finish_record(
            index,
            record_bytes.to_vec(),
            stored_body.map(<[u8]>::to_vec),
        )
        .map(Some)
    }

    /// A reader of this log's write-ahead segments.
    pub(crate) fn segments(&self) -> wal::SegmentReader {
        wal::SegmentReader::new(wal::dir_of(&self.inner.core.path))
    }

    /// The record bytes and stored body of the `records` value of `index`: the entry it locates
    /// in a write-ahead segment, or (as earlier versions stored them) the value itself and the
    /// `bodies` row.
    pub(crate) fn stored_entry(
        &self,
        index: u64,
        value: &[u8],
        bodies: &impl ReadableTable<u64, &'static [u8]>,
        segments: &mut wal::SegmentReader,
    ) -> Result<wal::StoredEntry, LogError> {
        if let Some(location) = wal::EntryLocation::from_value(value) {
            return location?.read(segments);
        }
        let stored_body = bodies
            .get(index)?
            .map(|b| stored_body(b.value(), segments))
            .transpose()?;
        Ok(wal::StoredEntry {
            record_bytes: value.to_vec(),
            stored_body,
        })
    }

    fn finish_record(
        &self,
        index: u64,
        record_bytes: Vec<u8>,
        stored_body: Option<Vec<u8>>,
    ) -> Result<StoredRecord, LogError> {
        let body = match stored_body {
            None => None,
            Some(stored) => {
                let body = self.engine()?.cipher.open(index, &stored).map_err(|e| {
                    LogError::BodyIntegrity {
                        index,
                        reason: e.reason(),
                    }
                })?;
                let record = decode_record(index, &record_bytes)?;
                if crypto::sha256(&body).as_slice() != record.body_sha256.as_slice() {
                    return Err(LogError::BodyIntegrity {
                        index,
                        reason: "the body does not hash to the record's body_sha256",
                    });
                }
                Some(body)
            }
        };
        Ok(StoredRecord {
            index,
            record_bytes,
            body,
        })
    }

    /// The records of one X-Road-Id (request and response, both sides), in index order.
    pub fn find_by_message_id(&self, message_id: &str) -> Result<Vec<u64>, LogError> {
        self.sync()?;
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(BY_MESSAGE_ID)?;
        let mut out = Vec::new();
        for row in table.range((message_id, 0u64)..=(message_id, u64::MAX))? {
            out.push(row?.0.value().1);
        }
        Ok(out)
    }

    /// The records logged in `[from_ms, to_ms)` (Unix milliseconds), in index order.
    pub fn find_by_time(&self, from_ms: i64, to_ms: i64) -> Result<Vec<u64>, LogError> {
        self.sync()?;
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(BY_TIME)?;
        let mut out = Vec::new();
        for row in table.range((from_ms, 0u64)..(to_ms, 0u64))? {
            out.push(row?.0.value().1);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The records about one data subject, in index order.
    pub fn find_by_subject(&self, subject: &str) -> Result<Vec<u64>, LogError> {
        self.subject_page_inner(subject, 0, usize::MAX, false)
    }

    /// One page of the records about a data subject, newest first (DESIGN §7).
    pub fn subject_page(
        &self,
        subject: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<u64>, LogError> {
        self.subject_page_inner(subject, offset, limit, true)
    }

    fn subject_page_inner(
        &self,
        subject: &str,
        offset: usize,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<u64>, LogError> {
        self.sync()?;
        let hash = self.subject_hash(subject);
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(BY_SUBJECT)?;
        let range = table.range((&hash, 0u64)..=(&hash, u64::MAX))?;
        let rows: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for row in rows.skip(offset).take(limit) {
            out.push(row?.0.value().1);
        }
        Ok(out)
    }

    /// The subject index key of `subject`: HMAC-SHA256 under the subject key.
    pub fn subject_hash(&self, subject: &str) -> [u8; 32] {
        crypto::subject_hash(&self.inner.core.options.subject_key, subject)
    }
}

/// The stored body a `bodies` value (written by earlier versions) stands for: the value itself,
/// or the bytes it locates in a write-ahead segment.
fn stored_body(value: &[u8], segments: &mut wal::SegmentReader) -> Result<Vec<u8>, LogError> {
    match wal::BodyLocation::from_value(value) {
        None => Ok(value.to_vec()),
        Some(location) => location?.read(segments),
    }
}

/// Creates the tables and the meta entries of a new database; checks those of an existing one.
/// Returns the database's salt and the epoch of this open (the previous one plus one, durable
/// before any body is sealed with it).
fn initialise(db: &Database, body_key: Option<&[u8; 32]>) -> Result<([u8; 32], u32), LogError> {
    let txn = db.begin_write()?;
    let (salt, epoch) = {
        txn.open_table(RECORDS)?;
        txn.open_table(BODIES)?;
        txn.open_table(NODES)?;
        txn.open_table(BY_MESSAGE_ID)?;
        txn.open_table(BY_TIME)?;
        txn.open_table(BY_SUBJECT)?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(WITNESS_STATE)?;
        txn.open_table(WITNESSED)?;
        txn.open_table(CONFIGURATIONS)?;
        txn.open_table(CONF_BY_TIME)?;
        txn.open_table(FEDERATED_CONFIGURATIONS)?;
        txn.open_table(FEDERATED_CONF_BY_TIME)?;
        txn.open_table(ARCHIVES)?;
        let mut meta = txn.open_table(META)?;
        let format = meta.get(META_FORMAT)?.map(|v| v.value().to_vec());
        match format.as_deref() {
            None | Some([FORMAT_VERSION_RECORDS_INLINE]) => {
                meta.insert(META_FORMAT, [FORMAT_VERSION].as_slice())?;
            }
            Some([FORMAT_VERSION]) => {}
            Some(other) => {
                return Err(LogError::corrupt(format!(
                    "storage format {other:?} is not {FORMAT_VERSION}, the one this version reads"
                )));
            }
        }
        let stored_salt = meta.get(META_SALT)?.map(|v| v.value().to_vec());
        let salt = match stored_salt {
            Some(s) => <[u8; 32]>::try_from(s.as_slice())
                .map_err(|_| LogError::corrupt("meta.salt is not 32 bytes"))?,
            None => {
                let salt = crypto::random_32()?;
                meta.insert(META_SALT, salt.as_slice())?;
                salt
            }
        };
        if let Some(key) = body_key {
            let check = crypto::body_key_check(key, &salt);
            let stored = meta.get(META_BODY_KEY_CHECK)?.map(|v| v.value().to_vec());
            match stored {
                Some(stored) if stored != check => return Err(LogError::WrongBodyKey),
                Some(_) => {}
                None => {
                    meta.insert(META_BODY_KEY_CHECK, check.as_slice())?;
                }
            }
        } else if meta.get(META_BODY_KEY_CHECK)?.is_some() {
            tracing::warn!(
                "message log opened without a body key although earlier bodies are encrypted: \
                 new bodies are stored plain, earlier ones cannot be read"
            );
        }
        let previous = match meta.get(META_OPEN_EPOCH)? {
            None => 0,
            Some(v) => <[u8; 4]>::try_from(v.value())
                .map(u32::from_be_bytes)
                .map_err(|_| LogError::corrupt("meta.open_epoch is not 4 bytes"))?,
        };
        let epoch = previous
            .checked_add(1)
            .ok_or_else(|| LogError::corrupt("meta.open_epoch has no successor"))?;
        meta.insert(META_OPEN_EPOCH, epoch.to_be_bytes().as_slice())?;
        (salt, epoch)
    };
    txn.commit()?;
    Ok((salt, epoch))
}

fn check_size(log_size: u64, what: &'static str, size: u64) -> Result<(), LogError> {
    if size > log_size {
        return Err(LogError::OutOfRange {
            what,
            value: size,
            size: log_size,
        });
    }
    Ok(())
}

pub(crate) fn decode_record(index: u64, bytes: &[u8]) -> Result<pb::LogRecord, LogError> {
    pb::LogRecord::decode(bytes)
        .map_err(|e| LogError::corrupt(format!("record {index} does not decode: {e}")))
}
