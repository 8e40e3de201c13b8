//! Operational data of every exchange (X-Road's operational monitoring): which client called
//! which service, when, how big the request and the answer were, how long it took and how it
//! ended, kept for `opmon.retention_days` in `data_dir/opmon.redb` and queried by time range
//! (`security-server operational`, `GET /v1/operational`).
//!
//! It is not evidence (the message log is) and never holds an exchange up: records go through a
//! bounded queue to a writer thread, which stores them in batches; when the queue is full a
//! record is dropped and counted (`dropped` in the answer to a query).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase as _, TableDefinition};
use serde::{Deserialize, Serialize};

/// The store's file in the data directory.
pub const FILE: &str = "opmon.redb";
/// (start of the exchange in Unix ms, sequence) → JSON [`OpRecord`].
const RECORDS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("operational");
/// Records waiting for the writer; beyond it they are dropped, never waited for.
const QUEUE: usize = 10_000;
/// The most records a query answers.
pub const MAX_QUERY: usize = 10_000;
/// How long the writer gathers records after the first before it commits them, and at most
/// how many: a record can be queried this much later than its exchange ended.
const GATHER: Duration = Duration::from_millis(200);
const MAX_BATCH: usize = 2_000;
/// The most memory the store's page cache may take.
const CACHE_BYTES: usize = 4 << 20;
/// How often old records are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One exchange as one side saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// When the request arrived (Unix ms).
    pub at_ms: i64,
    /// `client_proxy` or `server_proxy`.
    pub proxy: String,
    pub client: String,
    pub service: String,
    pub message_id: String,
    /// `ok`, or the X-Road error type.
    pub outcome: String,
    /// Body sizes, when the exchange got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    pub duration_ms: u64,
}

/// What a query answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpQueryAnswer {
    pub records: Vec<OpRecord>,
    /// Whether more records lie in the range than `limit`.
    pub truncated: bool,
    /// Records dropped since the server started because the writer fell behind.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("operational data: {0}")]
pub struct OpmonError(String);

fn fail(e: impl std::fmt::Display) -> OpmonError {
    OpmonError(e.to_string())
}

/// The store and its writer.
#[derive(Debug)]
pub struct Opmon {
    db: Arc<Database>,
    queue: Mutex<Option<SyncSender<OpRecord>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
}

impl Opmon {
    /// Opens (or creates) the store at `path`, keeping records `retention_days`.
    pub fn open(path: &Path, retention_days: u64) -> Result<Arc<Opmon>, OpmonError> {
        // Written in batches and read by the occasional query: a small cache does (redb's
        // default, 1 GiB, would let memory grow with the store).
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(fail)?,
        );
        let txn = db.begin_write().map_err(fail)?;
        txn.open_table(RECORDS).map_err(fail)?;
        txn.commit().map_err(fail)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let retention_ms =
            i64::try_from(retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("opmon-writer".into())
            .spawn(move || write_loop(&writer_db, &rx, retention_ms))
            .map_err(fail)?;
        Ok(Arc::new(Opmon {
            db,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Queues one record; never waits.
    pub fn record(&self, record: OpRecord) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = queue.as_ref().is_some_and(|tx| {
            !matches!(
                tx.try_send(record),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            )
        });
        if !taken {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The records of exchanges that began in `[from_ms, to_ms)`, oldest first, at most `limit`.
    pub fn query(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<OpQueryAnswer, OpmonError> {
        let limit = limit.min(MAX_QUERY);
        let txn = self.db.begin_read().map_err(fail)?;
        let table = txn.open_table(RECORDS).map_err(fail)?;
        let mut records = Vec::new();
        let mut truncated = false;
        if from_ms < to_ms {
            for row in table.range((from_ms, 0)..(to_ms, 0)).map_err(fail)? {
                let (_, value) = row.map_err(fail)?;
                if records.len() == limit {
                    truncated = true;
                    break;
                }
                records.push(serde_json::from_slice(value.value()).map_err(fail)?);
            }
        }
        Ok(OpQueryAnswer {
            records,
            truncated,
            dropped: self.dropped.load(Ordering::Relaxed),
        })
    }

    /// Waits until every record queued so far is stored (tests; a clean stop).
    pub fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            && writer.join().is_err()
        {
            tracing::error!("the operational data writer panicked");
        }
    }
}

impl Drop for Opmon {
    fn drop(&mut self) {
        self.close();
    }
}

/// Stores what arrives, in one transaction per batch, until the queue closes; deletes records
/// older than the retention every [`PRUNE_EVERY`].
fn write_loop(db: &Database, rx: &Receiver<OpRecord>, retention_ms: i64) {
    // Unique across restarts too: two records of the same millisecond never share a key.
    let mut seq: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut last_prune: Option<Instant> = None;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Gathered for a while, so that a busy server commits a few times a second rather than
        // once per exchange or two (each commit rewrites and checksums the table's last pages).
        let mut batch: Vec<OpRecord> = first.into_iter().collect();
        let mut closed = false;
        if !batch.is_empty() {
            let until = Instant::now() + GATHER;
            while batch.len() < MAX_BATCH {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(r) => batch.push(r),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let prune = last_prune
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            .then(|| unix_ms_now().saturating_sub(retention_ms));
        if let Err(e) = store(db, &batch, &mut seq, prune) {
            tracing::warn!(error = %e, records = batch.len(), "operational data not stored");
        } else if prune.is_some() {
            last_prune = Some(Instant::now());
        }
        if closed {
            return;
        }
    }
}

/// Now, in Unix milliseconds (records are stamped with the wall clock).
pub(crate) fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn store(
    db: &Database,
    batch: &[OpRecord],
    seq: &mut u64,
    prune_before_ms: Option<i64>,
) -> Result<(), OpmonError> {
    let txn = db.begin_write().map_err(fail)?;
    {
        let mut table = txn.open_table(RECORDS).map_err(fail)?;
        for record in batch {
            *seq = seq.wrapping_add(1);
            let json = serde_json::to_vec(record).map_err(fail)?;
            table
                .insert((record.at_ms, *seq), json.as_slice())
                .map_err(fail)?;
        }
        if let Some(before) = prune_before_ms {
            table
                .retain_in((i64::MIN, 0)..(before, 0), |_, _| false)
                .map_err(fail)?;
        }
    }
    txn.commit().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, outcome: &str) -> OpRecord {
        OpRecord {
            at_ms,
            proxy: "server_proxy".into(),
            client: "JP/GOV/digital-agency/portal".into(),
            service: "JP/MUN/131016/records/residentRecord".into(),
            message_id: format!("m{at_ms}"),
            outcome: outcome.into(),
            request_bytes: Some(10),
            response_bytes: Some(200),
            duration_ms: 3,
        }
    }

    #[test]
    fn records_are_kept_and_found_by_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opmon.redb");
        let now = unix_ms_now();
        {
            let opmon = Opmon::open(&path, 7).unwrap();
            for i in 0..5 {
                opmon.record(record(
                    now + i,
                    if i == 2 {
                        "Server.ServerProxy.AccessDenied"
                    } else {
                        "ok"
                    },
                ));
            }
            opmon.close();
            let all = opmon.query(now, now + 5, 100).unwrap();
            assert_eq!(all.records.len(), 5);
            assert!(!all.truncated);
            assert_eq!(all.records[2].outcome, "Server.ServerProxy.AccessDenied");
            let some = opmon.query(now + 1, now + 3, 100).unwrap();
            assert_eq!(
                some.records.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
                [now + 1, now + 2]
            );
            let first = opmon.query(now, now + 5, 2).unwrap();
            assert_eq!(first.records.len(), 2);
            assert!(first.truncated);
            assert!(opmon.query(now + 5, now, 10).unwrap().records.is_empty());
            // Closed: nothing more is taken, and that is counted.
            opmon.record(record(now + 9, "ok"));
            assert_eq!(opmon.query(now, now + 10, 100).unwrap().dropped, 1);
        }
        // Kept across a restart; old ones pruned by the next batch.
        let opmon = Opmon::open(&path, 0).unwrap();
        assert_eq!(opmon.query(now, now + 5, 100).unwrap().records.len(), 5);
        opmon.record(record(unix_ms_now() + 60_000, "ok"));
        opmon.close();
        assert!(
            opmon.query(now, now + 5, 100).unwrap().records.is_empty(),
            "pruned"
        );
    }
}
