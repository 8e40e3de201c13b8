//! A consistent copy of the log while it runs ([`MessageLog::snapshot`]), and what a restore
//! changes in it ([`relocate_archives`]).
//!
//! The database cannot be copied as a file while it is written (redb's pages change under the
//! copy); its tables are copied instead, in one read transaction, into a new database file.
//! That copy says where the write-ahead log was applied up to (`meta.wal_applied`). The
//! write-ahead segments are only ever appended to, so reading them after the copy gives every
//! frame the copy needs and the frames acknowledged since, perhaps with the last one cut short,
//! exactly what a crash leaves behind. Opening the restored log applies those frames, as it does
//! after a crash. Archiving, the one thing that deletes segments, waits until the snapshot is
//! dropped.
//!
//! So every record acknowledged before [`MessageLog::snapshot`] was called is in the restored
//! log, and records acknowledged while the segments were read may be too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{MutexGuard, PoisonError};

use redb::{
    Database, Key, ReadTransaction, ReadableTable as _, TableDefinition, Value, WriteTransaction,
};

use crate::tables::{
    ARCHIVES, BODIES, BY_MESSAGE_ID, BY_SUBJECT, BY_TIME, CHECKPOINTS, CONF_BY_TIME,
    CONFIGURATIONS, FEDERATED_CONF_BY_TIME, FEDERATED_CONFIGURATIONS, META, NODES, RECORDS,
    WITNESS_STATE, WITNESSED, read_size,
};
use crate::{LogError, MessageLog, wal};

/// A copy of the log's database taken while the log runs, with its write-ahead segments still to
/// be read ([`Snapshot::segments`]). Archiving waits while it exists.
#[derive(Debug)]
pub struct Snapshot<'a> {
    _no_archiving: MutexGuard<'a, ()>,
    wal_dir: PathBuf,
    size: u64,
}

/// One write-ahead segment: its file name in `<database>-wal/` and its length when listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub name: String,
    pub path: PathBuf,
}

impl MessageLog {
    /// Copies every table of the database, as one read transaction sees it, into a new database
    /// at `db_copy` (which must not exist), durably. Read the segments with
    /// [`Snapshot::segments`] afterwards, and store them in `<db_copy>-wal/` under their names.
    pub fn snapshot(&self, db_copy: &Path) -> Result<Snapshot<'_>, LogError> {
        let no_archiving = self
            .inner
            .archiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if db_copy.exists() {
            return Err(LogError::Io {
                path: db_copy.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        // Every record acknowledged so far is then in the copy itself, not only in the segments.
        self.sync()?;
        let (_open, from) = self.read_txn()?;
        let size = read_size(&from.open_table(NODES)?)?;
        let copy = Database::create(db_copy)?;
        let mut to = copy.begin_write()?;
        to.set_durability(redb::Durability::Immediate)?;
        copy_table(&from, &to, RECORDS)?;
        copy_table(&from, &to, BODIES)?;
        copy_table(&from, &to, NODES)?;
        copy_table(&from, &to, BY_MESSAGE_ID)?;
        copy_table(&from, &to, BY_TIME)?;
        copy_table(&from, &to, BY_SUBJECT)?;
        copy_table(&from, &to, META)?;
        copy_table(&from, &to, CHECKPOINTS)?;
        copy_table(&from, &to, WITNESS_STATE)?;
        copy_table(&from, &to, WITNESSED)?;
        copy_table(&from, &to, CONFIGURATIONS)?;
        copy_table(&from, &to, CONF_BY_TIME)?;
        copy_table(&from, &to, FEDERATED_CONFIGURATIONS)?;
        copy_table(&from, &to, FEDERATED_CONF_BY_TIME)?;
        copy_table(&from, &to, ARCHIVES)?;
        to.commit()?;
        Ok(Snapshot {
            _no_archiving: no_archiving,
            wal_dir: wal::dir_of(&self.inner.core.path),
            size,
        })
    }
}

impl Snapshot<'_> {
    /// How many records the copied database holds: at least every record acknowledged before
    /// [`MessageLog::snapshot`] was called.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The write-ahead segments now, oldest first. Read each to its end after this call (a
    /// segment is only ever appended to; its last frame may be cut short, as after a crash).
    pub fn segments(&self) -> Result<Vec<SegmentFile>, LogError> {
        Ok(wal::list_segments(&self.wal_dir)?
            .into_iter()
            .filter_map(|(_, path)| {
                let name = path.file_name()?.to_str()?.to_owned();
                Some(SegmentFile { name, path })
            })
            .collect())
    }
}

impl SegmentFile {
    /// The segment, open for reading, and its length now.
    pub fn open(&self) -> Result<(File, u64), LogError> {
        let file = File::open(&self.path).map_err(LogError::io(&self.path))?;
        let len = file.metadata().map_err(LogError::io(&self.path))?.len();
        Ok((file, len))
    }
}

/// The directory the segments of the database at `db_path` go in.
pub fn wal_dir_of(db_path: &Path) -> PathBuf {
    wal::dir_of(db_path)
}

/// Points the archive files registered in the (closed) database at `db_path` to the files of the
/// same names in `archive_dir`, where a restore put them. Returns how many were changed.
pub fn relocate_archives(db_path: &Path, archive_dir: &Path) -> Result<u64, LogError> {
    let db = Database::open(db_path)?;
    let txn = db.begin_write()?;
    let mut changed = 0;
    {
        let mut archives = txn.open_table(ARCHIVES)?;
        let mut rows = Vec::new();
        for row in archives.iter()? {
            let (first, value) = row?;
            let (last, path, sha256) = value.value();
            rows.push((first.value(), last, PathBuf::from(path), *sha256));
        }
        for (first, last, path, sha256) in rows {
            let name = path.file_name().ok_or_else(|| {
                LogError::corrupt(format!("archive path {} has no file name", path.display()))
            })?;
            let moved = archive_dir.join(name);
            if moved != path {
                let moved = moved.to_str().ok_or_else(|| {
                    LogError::corrupt(format!("{} is not UTF-8", moved.display()))
                })?;
                archives.insert(first, (last, moved, &sha256))?;
                changed += 1;
            }
        }
    }
    txn.commit()?;
    Ok(changed)
}

/// Copies one table, if the source has it (an older log may lack a later table).
fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), LogError> {
    let source = match from.open_table(table) {
        Ok(source) => source,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut target = to.open_table(table)?;
    for row in source.iter()? {
        let (key, value) = row?;
        target.insert(key.value(), value.value())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proto::v1 as pb;

    use super::*;
    use crate::{Entry, LogOptions};

    fn entry(i: u64) -> Entry {
        Entry {
            record: pb::LogRecord {
                kind: pb::LogKind::Request as i32,
                message_id: format!("m{i}"),
                logged_at_ms: 1_800_000_000_000,
                ..pb::LogRecord::default()
            },
            body: None,
            data_subject: None,
        }
    }

    /// What a restore does: the copied database and the segments read after it.
    fn copy_segments(snapshot: &Snapshot<'_>, db_copy: &Path) {
        let wal = wal_dir_of(db_copy);
        wal::create_dir(&wal).unwrap();
        for segment in snapshot.segments().unwrap() {
            let (file, len) = segment.open().unwrap();
            let mut out = File::create(wal.join(&segment.name)).unwrap();
            std::io::copy(&mut std::io::Read::take(file, len), &mut out).unwrap();
        }
    }

    #[tokio::test]
    async fn a_snapshot_holds_what_was_acknowledged_before_it_and_after_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let log = MessageLog::open(&dir.path().join("log.redb"), LogOptions::default()).unwrap();
        for i in 0..50 {
            log.append(entry(i)).await.unwrap();
        }
        let copy = dir.path().join("copy").join("log.redb");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        let snapshot = log.snapshot(&copy).unwrap();
        assert_eq!(snapshot.size(), 50);
        // Acknowledged after the tables were copied, before the segments are read: in the
        // segments, so in the restored log too.
        for i in 50..60 {
            log.append(entry(i)).await.unwrap();
        }
        copy_segments(&snapshot, &copy);
        // The copy never overwrites.
        drop(snapshot);
        assert!(log.snapshot(&copy).is_err());

        let restored = MessageLog::open(&copy, LogOptions::default()).unwrap();
        assert_eq!(restored.size().unwrap(), 60);
        for i in 0..60 {
            let found = restored.find_by_message_id(&format!("m{i}")).unwrap();
            assert_eq!(found.len(), 1, "m{i}");
        }
        assert_eq!(
            restored.root(60).unwrap(),
            log.root(60).unwrap(),
            "the same tree"
        );
    }

    #[tokio::test]
    async fn archiving_waits_for_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let log = MessageLog::open(&dir.path().join("log.redb"), LogOptions::default()).unwrap();
        log.append(entry(0)).await.unwrap();
        let copy = dir.path().join("copy.redb");
        let snapshot = log.snapshot(&copy).unwrap();
        assert!(log.inner.archiving.try_lock().is_err());
        drop(snapshot);
        assert!(log.inner.archiving.try_lock().is_ok());
    }
}
