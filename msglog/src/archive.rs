//! Retention (DESIGN §6): old records move out of the database into hash-linked archive files;
//! the Merkle nodes and the indexes stay, so proofs for archived records keep working and
//! [`MessageLog::record`] reads archived records back transparently.
//!
//! The file format is [`crate::archive_file`]'s.
//!
//! A file is written to a temporary name, fsync'd, renamed into place and its directory fsync'd
//! BEFORE the records are deleted from the database (in one transaction that also registers
//! the file): a crash in between leaves the records in both places, never in neither. The next
//! run replaces such an unregistered file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use redb::ReadableTable as _;
use sha2::{Digest as _, Sha256};

use crate::LogError;
use crate::archive_file::{
    ArchiveHeader, HashingWriter, LoadedArchive, ParsedArchive, archive_error, file_name,
    header_bytes, parse_file_name, read_and_hash, write_entry,
};
use crate::store::{MessageLog, decode_record};
use crate::tables::{ARCHIVES, BODIES, NODES, RECORDS};
use crate::wal;

/// One archive file, as written or as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: PathBuf,
    pub first: u64,
    pub last: u64,
    pub sha256: [u8; 32],
}

/// What [`MessageLog::archive_before`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The files written, oldest first (none if nothing was old enough).
    pub files: Vec<ArchiveFile>,
    /// Records moved out of the database.
    pub records: u64,
}

/// What [`MessageLog::verify_archives`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveVerification {
    /// The files of the chain, oldest first.
    pub files: Vec<ArchiveFile>,
    /// Archived records whose leaf hash matched the log's Merkle tree.
    pub records: u64,
    /// Files beyond the registered ones, left by an interrupted run (their records are still in
    /// the database; the next run replaces them).
    pub unregistered: Vec<PathBuf>,
}

impl MessageLog {
    /// The archive file registered for `first..=last`, checked against its registered SHA-256
    /// (kept in memory for the next read of the same file).
    pub(crate) fn load_archive(
        &self,
        path: &Path,
        first: u64,
        last: u64,
        sha256: &[u8; 32],
    ) -> Result<Arc<LoadedArchive>, LogError> {
        let mut cache = self
            .inner
            .archive_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = cache.as_ref()
            && loaded.is(path, sha256)
        {
            return Ok(Arc::clone(loaded));
        }
        let loaded = Arc::new(LoadedArchive::load(path, first, last, sha256)?);
        *cache = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    // --- archiving ----------------------------------------------------------------------------

    /// Moves every record below the first one logged at or after `cutoff_ms` (Unix ms) — with
    /// its stored body, still encrypted — into archive files in `dir` (at most
    /// `archive_file_records` records per file), then deletes them from the database. The
    /// Merkle nodes and the indexes stay. `progress(done, total)` is called per record.
    pub fn archive_before(
        &self,
        cutoff_ms: i64,
        dir: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ArchiveReport, LogError> {
        let _running = self
            .inner
            .archiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.sync()?;
        let Some((start, end)) = self.archivable_range(cutoff_ms)? else {
            return Ok(ArchiveReport::default());
        };
        fs::create_dir_all(dir).map_err(LogError::io(dir))?;
        let dir = fs::canonicalize(dir).map_err(LogError::io(dir))?;
        let total = end - start;
        let per_file = self.inner.core.options.archive_file_records.max(1);
        let mut report = ArchiveReport::default();
        let mut first = start;
        while first < end {
            let last = (first + per_file).min(end) - 1;
            let file = self.archive_range(first, last, &dir, |done| {
                progress(first - start + done, total);
            })?;
            report.records += last - first + 1;
            report.files.push(file);
            first = last + 1;
        }
        Ok(report)
    }

    /// `[start, end)`: from the oldest record still in the database to the first one logged at
    /// or after the cutoff (in index order).
    fn archivable_range(&self, cutoff_ms: i64) -> Result<Option<(u64, u64)>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let records = txn.open_table(RECORDS)?;
        let bodies = txn.open_table(BODIES)?;
        let mut segments = self.segments();
        let Some(start) = records.first()?.map(|(k, _)| k.value()) else {
            return Ok(None);
        };
        let mut end = start;
        for row in records.range(start..)? {
            let (k, v) = row?;
            let index = k.value();
            if index != end {
                return Err(LogError::corrupt(format!(
                    "record {end} is missing from the database"
                )));
            }
            let entry = self.stored_entry(index, v.value(), &bodies, &mut segments)?;
            if decode_record(index, &entry.record_bytes)?.logged_at_ms >= cutoff_ms {
                break;
            }
            end = index + 1;
        }
        Ok((end > start).then_some((start, end)))
    }

    fn archive_range(
        &self,
        first: u64,
        last: u64,
        dir: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<ArchiveFile, LogError> {
        let path = dir.join(file_name(first, last));
        let path_str = path
            .to_str()
            .ok_or_else(|| archive_error(&path, "the path is not UTF-8"))?
            .to_owned();
        let prev_sha256 = {
            let (_open, txn) = self.read_txn()?;
            let archives = txn.open_table(ARCHIVES)?;
            let last_row = archives.last()?;
            match last_row {
                None => [0u8; 32],
                Some((_, row)) => {
                    let (prev_last, _, sha) = row.value();
                    if prev_last.checked_add(1) != Some(first) {
                        return Err(LogError::corrupt(format!(
                            "the last archive ends at {prev_last}, the next would start at {first}"
                        )));
                    }
                    *sha
                }
            }
        };
        remove_unregistered(dir, first)?;

        // Write and make durable under a temporary name, then rename into place.
        let tmp = dir.join(format!(".{}.tmp", file_name(first, last)));
        let sha256 = {
            let file = File::create(&tmp).map_err(LogError::io(&tmp))?;
            let mut w = HashingWriter {
                inner: BufWriter::with_capacity(1 << 20, file),
                hasher: Sha256::new(),
            };
            let header = ArchiveHeader {
                prev_sha256,
                first,
                last,
            };
            w.write_all(&header_bytes(&header))
                .map_err(LogError::io(&tmp))?;
            let (_open, txn) = self.read_txn()?;
            let records = txn.open_table(RECORDS)?;
            let bodies = txn.open_table(BODIES)?;
            let mut segments = self.segments();
            let mut expected = first;
            for row in records.range(first..=last)? {
                let (k, v) = row?;
                let index = k.value();
                if index != expected {
                    return Err(LogError::corrupt(format!("record {expected} is missing")));
                }
                let entry = self.stored_entry(index, v.value(), &bodies, &mut segments)?;
                write_entry(
                    &mut w,
                    index,
                    &entry.record_bytes,
                    entry.stored_body.as_deref(),
                )
                .map_err(LogError::io(&tmp))?;
                expected += 1;
                progress(expected - first);
            }
            if expected != last + 1 {
                return Err(LogError::corrupt(format!("record {expected} is missing")));
            }
            let sha256: [u8; 32] = w.hasher.finalize().into();
            let file = w
                .inner
                .into_inner()
                .map_err(|e| LogError::io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(LogError::io(&tmp))?;
            sha256
        };
        fs::rename(&tmp, &path).map_err(LogError::io(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(LogError::io(dir))?;

        // Only now that the file is durable: delete the records and register the file.
        let (_open, txn) = self.write_txn()?;
        {
            txn.open_table(RECORDS)?
                .retain_in(first..=last, |_, _| false)?;
            txn.open_table(BODIES)?
                .retain_in(first..=last, |_, _| false)?;
            txn.open_table(ARCHIVES)?
                .insert(first, (last, path_str.as_str(), &sha256))?;
        }
        txn.commit()?;
        tracing::info!(path = %path.display(), first, last, "archived message log records");
        // The bodies of archived records are in the archive file now: the write-ahead segments
        // that hold only archived entries can go.
        let keep_from = {
            let (_open, txn) = self.read_txn()?;
            let first_kept = txn.open_table(RECORDS)?.first()?.map(|(k, _)| k.value());
            first_kept.unwrap_or(last + 1)
        };
        wal::remove_segments_below(&wal::dir_of(&self.inner.core.path), keep_from)?;
        Ok(ArchiveFile {
            path,
            first,
            last,
            sha256,
        })
    }

    // --- verification -------------------------------------------------------------------------

    /// Checks the archives in `dir`: the hash chain ([`verify_archive_chain`]); that every file
    /// the database registered is there with its registered SHA-256; and that every archived
    /// record is the leaf the Merkle tree holds at its index. `progress(done, total)` counts
    /// records.
    pub fn verify_archives(
        &self,
        dir: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ArchiveVerification, LogError> {
        let chain = verify_archive_chain(dir, |_, _| {})?;
        let (_open, txn) = self.read_txn()?;
        let archives = txn.open_table(ARCHIVES)?;
        let mut registered = Vec::new();
        for row in archives.iter()? {
            let (k, v) = row?;
            let (last, path, sha) = v.value();
            registered.push((k.value(), last, PathBuf::from(path), *sha));
        }
        let registered_end = registered.last().map_or(0, |r| r.1 + 1);
        let total = registered_end;
        let mut verification = ArchiveVerification::default();
        for (i, file) in chain.iter().enumerate() {
            match registered.get(i) {
                Some((first, last, path, sha)) => {
                    let same_name = path.file_name() == file.path.file_name();
                    if (*first, *last, *sha) != (file.first, file.last, file.sha256) || !same_name {
                        return Err(archive_error(
                            &file.path,
                            format!(
                                "does not match the registered archive {} ({first}..={last})",
                                path.display()
                            ),
                        ));
                    }
                }
                None if file.first >= registered_end => {
                    verification.unregistered.push(file.path.clone());
                    continue;
                }
                None => {
                    return Err(archive_error(
                        &file.path,
                        "is not registered in the database",
                    ));
                }
            }
            let (bytes, _) = read_and_hash(&file.path)?;
            let parsed = ParsedArchive::parse(bytes).map_err(|e| archive_error(&file.path, e))?;
            let nodes = txn.open_table(NODES)?;
            for (index, record) in parsed.iter() {
                let leaf = nodes.get((0u8, index))?.map(|v| *v.value());
                if leaf != Some(tlog::leaf_hash(record)) {
                    return Err(archive_error(
                        &file.path,
                        format!("record {index} is not the leaf the log's Merkle tree holds"),
                    ));
                }
                verification.records += 1;
                progress(index + 1, total);
            }
            verification.files.push(file.clone());
        }
        if let Some((_, _, path, _)) = registered.get(verification.files.len()) {
            return Err(archive_error(
                path,
                "is registered but missing from the directory",
            ));
        }
        Ok(verification)
    }
}

/// Checks the hash chain of the archive files in `dir` without the database: each file parses,
/// holds the range its name says, starts where the previous one ended (the first at index 0),
/// and its header holds the SHA-256 of the previous file (zeros for the first). Returns the
/// files oldest first. `progress(done, total)` counts files.
pub fn verify_archive_chain(
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<ArchiveFile>, LogError> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(LogError::io(dir))?;
                if let Some((first, last)) = entry.file_name().to_str().and_then(parse_file_name) {
                    names.push((first, last, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(dir)(e)),
    }
    names.sort();
    let total = names.len() as u64;
    let mut files: Vec<ArchiveFile> = Vec::with_capacity(names.len());
    for (done, (first, last, path)) in names.into_iter().enumerate() {
        let (bytes, sha256) = read_and_hash(&path)?;
        let parsed = ParsedArchive::parse(bytes).map_err(|e| archive_error(&path, e))?;
        let h = parsed.header;
        if (h.first, h.last) != (first, last) {
            return Err(archive_error(
                &path,
                "holds another range than its name says",
            ));
        }
        let (expected_first, expected_prev) = match files.last() {
            None => (0, [0u8; 32]),
            Some(prev) => (prev.last + 1, prev.sha256),
        };
        if h.first != expected_first {
            return Err(archive_error(
                &path,
                format!(
                    "starts at {}, the chain continues at {expected_first}",
                    h.first
                ),
            ));
        }
        if h.prev_sha256 != expected_prev {
            return Err(archive_error(
                &path,
                "does not link to the previous archive file (its SHA-256 differs)",
            ));
        }
        files.push(ArchiveFile {
            path,
            first,
            last,
            sha256,
        });
        progress(done as u64 + 1, total);
    }
    Ok(files)
}

/// Removes files in `dir` that start at or after `first`: left by a run interrupted between
/// writing a file and registering it (their records are still in the database).
fn remove_unregistered(dir: &Path, first: u64) -> Result<(), LogError> {
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let leftover_tmp = name.starts_with(".archive-") && name.ends_with(".xlog.tmp");
        let unregistered = parse_file_name(name).is_some_and(|(f, _)| f >= first);
        if leftover_tmp || unregistered {
            tracing::warn!(file = name, "removing an unregistered archive file");
            fs::remove_file(entry.path()).map_err(LogError::io(entry.path()))?;
        }
    }
    Ok(())
}
