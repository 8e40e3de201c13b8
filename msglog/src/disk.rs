//! The log's files on disk: the database is opened here, and with the `fault-injection` feature
//! both it and the write-ahead segments can be made to fail as a full disk does, so that tests
//! can watch the log fail closed and recover when space returns.

use std::io;
use std::path::Path;

use redb::Database;

use crate::LogError;

/// Whether writes fail as on a full disk. Without the `fault-injection` feature it is empty and
/// never fails.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(any(test, feature = "fault-injection"))]
    full: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Faults {
    /// Fails as `write(2)` or `fdatasync(2)` on a full disk does, while the disk is "full".
    pub(crate) fn check(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "fault-injection"))]
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        Ok(())
    }

    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn set_full(&self, full: bool) {
        self.full.store(full, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Opens (or creates) the database file at `path`, its page cache at most `cache_bytes`.
pub(crate) fn open_database(
    path: &Path,
    cache_bytes: usize,
    faults: &Faults,
) -> Result<Database, LogError> {
    #[cfg(any(test, feature = "fault-injection"))]
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LogError::io(path))?;
        let backend = Faulty {
            file: redb::backends::FileBackend::new(file)?,
            faults: faults.clone(),
        };
        Ok(Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)?)
    }
    #[cfg(not(any(test, feature = "fault-injection")))]
    {
        let _ = faults;
        Ok(Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?)
    }
}

/// The database file, failing writes while [`Faults`] says the disk is full.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Debug)]
struct Faulty {
    file: redb::backends::FileBackend,
    faults: Faults,
}

#[cfg(any(test, feature = "fault-injection"))]
impl redb::StorageBackend for Faulty {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        if len > self.file.len()? {
            self.faults.check()?;
        }
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.faults.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.faults.check()?;
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use prost::Message as _;
    use proto::v1 as pb;

    use crate::store::REOPEN_MAX_DELAY;
    use crate::{Entry, LogOptions, MessageLog};

    fn entry(writer: usize, n: usize) -> Entry {
        Entry {
            record: pb::LogRecord {
                kind: pb::LogKind::Request as i32,
                message_id: format!("w{writer}-{n}"),
                signed_header: vec![7; 100 + n % 50],
                logged_at_ms: 1_800_000_000_000,
                ..pb::LogRecord::default()
            },
            body: None,
            data_subject: None,
        }
    }

    /// Waits until an append succeeds again (the recovery thread reopened the log).
    async fn until_it_takes_records(log: &MessageLog) -> u64 {
        let deadline = Instant::now() + REOPEN_MAX_DELAY * 3;
        loop {
            match log.append(entry(99, 0)).await {
                Ok(index) => return index,
                Err(e) if Instant::now() > deadline => panic!("never recovered: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The disk fills up under appenders that keep appending: the log fails closed (every
    /// append errs, none is acknowledged, `failure` says why) and stays closed while the disk
    /// is full; when space returns it opens itself again, and every record acknowledged before,
    /// during or after is there, at the index it was acknowledged with, once more after a
    /// reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_fails_closed_and_the_log_recovers_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let log = MessageLog::open(&path, LogOptions::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (log, stop) = (log.clone(), Arc::clone(&stop));
            writers.push(tokio::spawn(async move {
                let (mut acked, mut refused) = (BTreeMap::new(), 0);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let e = entry(w, n);
                    let bytes = e.record.encode_to_vec();
                    match log.append(e).await {
                        Ok(index) => assert!(acked.insert(index, bytes).is_none()),
                        Err(_) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                (acked, refused)
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        log.simulate_disk_full(true);
        // Refused at once from the first failed commit on, and for as long as the disk is full
        // (the recovery thread tries to reopen it meanwhile, and fails).
        let failed = Instant::now() + Duration::from_secs(10);
        while log.failure().is_none() {
            assert!(
                Instant::now() < failed,
                "the log never noticed the full disk"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reason = log.failure().unwrap().to_string();
        assert!(reason.contains("No space left on device"), "{reason}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(log.failure().is_some());
        assert!(log.append(entry(98, 0)).await.is_err());
        let committed_while_full = log.stats().entries_committed;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(log.stats().entries_committed, committed_while_full);

        log.simulate_disk_full(false);
        let after = until_it_takes_records(&log).await;
        assert!(log.failure().is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        let mut acked = BTreeMap::new();
        let mut refused = 0;
        for w in writers {
            let (a, r) = w.await.unwrap();
            acked.extend(a);
            refused += r;
        }
        assert!(refused > 0, "no append was refused while the disk was full");
        assert!(acked.keys().any(|&i| i < after) && acked.keys().any(|&i| i > after));

        let check = |log: &MessageLog| {
            for (&index, bytes) in &acked {
                let stored = log
                    .record(index)
                    .unwrap()
                    .expect("an acknowledged record is gone");
                assert_eq!(&stored.record_bytes, bytes, "record {index}");
            }
            let size = log.size().unwrap();
            assert!(acked.keys().all(|&i| i < size));
            log.root(size).unwrap()
        };
        let root = check(&log);
        let size = log.size().unwrap();
        drop(log);
        let log = MessageLog::open(&path, LogOptions::default()).unwrap();
        assert_eq!(log.size().unwrap(), size);
        assert_eq!(check(&log), root);
    }
}
