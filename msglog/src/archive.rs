//! Retention (DESIGN §6): old records move out of the database into hash-linked archive files;
//! the Merkle nodes and the indexes stay, so proofs for archived records keep working and
//! [`MessageLog::record`] reads archived records back transparently.
//!
//! # File format (`archive-<first>-<last>.xlog`, all integers big-endian)
//!
//! ```text
//! header   magic "XRLOGAR1" (8) ‖ SHA-256 of the previous archive file (32; zeros for the first)
//!          ‖ first index (u64) ‖ last index (u64, inclusive)
//! entries  for each index from first to last, in order:
//!          index (u64) ‖ record length (u32) ‖ LogRecord bytes
//!          ‖ 0x00                                   (no body)
//!            or 0x01 ‖ body length (u32) ‖ body     (the stored body value, still encrypted)
//! ```
//!
//! Nothing may follow the last entry. The archives table keeps, per file, its range, path and
//! SHA-256, so the newest file is anchored in the database and every older one by its
//! successor's header.
//!
//! A file is written to a temporary name, fsync'd, renamed into place and its directory fsync'd
//! BEFORE the records are deleted from the database (in one transaction that also registers
//! the file): a crash in between leaves the records in both places, never in neither. The next
//! run replaces such an unregistered file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use redb::{ReadableDatabase as _, ReadableTable as _};
use sha2::{Digest as _, Sha256};

use crate::LogError;
use crate::store::{MessageLog, decode_record};
use crate::tables::{ARCHIVES, BODIES, NODES, RECORDS};
use crate::wal;

/// The first bytes of every archive file (format version 1).
pub const MAGIC: [u8; 8] = *b"XRLOGAR1";
const HEADER_LEN: usize = 8 + 32 + 8 + 8;

/// What one archive file holds: its range and its link to the previous file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub prev_sha256: [u8; 32],
    pub first: u64,
    pub last: u64,
}

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

// --- the format (pure) ---------------------------------------------------------------------------

fn header_bytes(h: &ArchiveHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..40].copy_from_slice(&h.prev_sha256);
    out[40..48].copy_from_slice(&h.first.to_be_bytes());
    out[48..56].copy_from_slice(&h.last.to_be_bytes());
    out
}

fn write_entry(
    w: &mut impl Write,
    index: u64,
    record: &[u8],
    body: Option<&[u8]>,
) -> std::io::Result<()> {
    let len = |n: usize| {
        u32::try_from(n)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "entry above 4 GiB"))
    };
    w.write_all(&index.to_be_bytes())?;
    w.write_all(&len(record.len())?.to_be_bytes())?;
    w.write_all(record)?;
    match body {
        None => w.write_all(&[0]),
        Some(body) => {
            w.write_all(&[1])?;
            w.write_all(&len(body.len())?.to_be_bytes())?;
            w.write_all(body)
        }
    }
}

/// A parsed archive file: its bytes and where each entry's parts are.
#[derive(Debug)]
pub(crate) struct ParsedArchive {
    pub(crate) header: ArchiveHeader,
    bytes: Vec<u8>,
    /// entries[i] is index `header.first + i`: (record bytes, body bytes).
    entries: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl ParsedArchive {
    /// Parses strictly: the magic, a non-empty range, every index in order, nothing after the
    /// last entry.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        if r.take(8)? != MAGIC {
            return Err("not an archive file (wrong magic)".into());
        }
        let mut prev_sha256 = [0u8; 32];
        prev_sha256.copy_from_slice(r.take(32)?);
        let first = r.u64()?;
        let last = r.u64()?;
        if last < first {
            return Err(format!("range {first}..={last} is empty"));
        }
        let mut entries = Vec::new();
        for expected in first..=last {
            let index = r.u64()?;
            if index != expected {
                return Err(format!("entry {index} where {expected} was expected"));
            }
            let len = r.u32()? as usize;
            let record = r.range(len)?;
            let body = match r.take(1)?[0] {
                0 => None,
                1 => {
                    let len = r.u32()? as usize;
                    Some(r.range(len)?)
                }
                other => return Err(format!("entry {index}: body marker {other}")),
            };
            entries.push((record, body));
        }
        if r.pos != bytes.len() {
            return Err("data after the last entry".into());
        }
        Ok(ParsedArchive {
            header: ArchiveHeader {
                prev_sha256,
                first,
                last,
            },
            bytes,
            entries,
        })
    }

    /// Record bytes and stored body of `index`.
    pub(crate) fn get(&self, index: u64) -> Option<(&[u8], Option<&[u8]>)> {
        let i = usize::try_from(index.checked_sub(self.header.first)?).ok()?;
        let (record, body) = self.entries.get(i)?;
        Some((
            &self.bytes[record.clone()],
            body.as_ref().map(|b| &self.bytes[b.clone()]),
        ))
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        (self.header.first..)
            .zip(&self.entries)
            .map(|(i, (record, _))| (i, &self.bytes[record.clone()]))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn range(&mut self, n: usize) -> Result<Range<usize>, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("truncated")?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let r = self.range(n)?;
        Ok(&self.bytes[r])
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }
}

/// `archive-<first>-<last>.xlog`
pub fn file_name(first: u64, last: u64) -> String {
    format!("archive-{first}-{last}.xlog")
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_prefix("archive-")?.strip_suffix(".xlog")?;
    let (first, last) = range.split_once('-')?;
    let canonical = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !canonical(first) || !canonical(last) {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

// --- reading archived records -------------------------------------------------------------------

/// An archive file whose SHA-256 matched the archives table when it was loaded.
#[derive(Debug)]
pub(crate) struct LoadedArchive {
    path: PathBuf,
    sha256: [u8; 32],
    parsed: ParsedArchive,
}

impl LoadedArchive {
    pub(crate) fn entry(&self, index: u64) -> Result<(&[u8], Option<&[u8]>), LogError> {
        self.parsed.get(index).ok_or_else(|| LogError::Archive {
            path: self.path.clone(),
            reason: format!("holds no record {index}"),
        })
    }
}

fn read_and_hash(path: &Path) -> Result<(Vec<u8>, [u8; 32]), LogError> {
    let bytes = fs::read(path).map_err(LogError::io(path))?;
    let sha = Sha256::digest(&bytes).into();
    Ok((bytes, sha))
}

fn archive_error(path: &Path, reason: impl Into<String>) -> LogError {
    LogError::Archive {
        path: path.to_owned(),
        reason: reason.into(),
    }
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
            && loaded.path == path
            && &loaded.sha256 == sha256
        {
            return Ok(Arc::clone(loaded));
        }
        let (bytes, actual) = read_and_hash(path)?;
        if &actual != sha256 {
            return Err(archive_error(
                path,
                "altered: its SHA-256 is not the one registered when it was written",
            ));
        }
        let parsed = ParsedArchive::parse(bytes).map_err(|e| archive_error(path, e))?;
        if (parsed.header.first, parsed.header.last) != (first, last) {
            return Err(archive_error(path, "holds another range than registered"));
        }
        let loaded = Arc::new(LoadedArchive {
            path: path.to_owned(),
            sha256: actual,
            parsed,
        });
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
        let per_file = self.inner.options.archive_file_records.max(1);
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
        let txn = self.inner.db.begin_read()?;
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
            let txn = self.inner.db.begin_read()?;
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
            let txn = self.inner.db.begin_read()?;
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
        let txn = self.inner.db.begin_write()?;
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
            let txn = self.inner.db.begin_read()?;
            let first_kept = txn.open_table(RECORDS)?.first()?.map(|(k, _)| k.value());
            first_kept.unwrap_or(last + 1)
        };
        wal::remove_segments_below(&wal::dir_of(&self.inner.path), keep_from)?;
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
        let txn = self.inner.db.begin_read()?;
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

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut bytes = header_bytes(&ArchiveHeader {
            prev_sha256: [7; 32],
            first: 5,
            last: 6,
        })
        .to_vec();
        write_entry(&mut bytes, 5, b"rec5", Some(b"\x01body")).unwrap();
        write_entry(&mut bytes, 6, b"rec6", None).unwrap();
        bytes
    }

    #[test]
    fn parses_what_it_writes() {
        let parsed = ParsedArchive::parse(sample()).unwrap();
        assert_eq!(parsed.header.prev_sha256, [7; 32]);
        assert_eq!((parsed.header.first, parsed.header.last), (5, 6));
        assert_eq!(parsed.get(5), Some((&b"rec5"[..], Some(&b"\x01body"[..]))));
        assert_eq!(parsed.get(6), Some((&b"rec6"[..], None)));
        assert_eq!(parsed.get(4), None);
        assert_eq!(parsed.get(7), None);
    }

    #[test]
    fn refuses_truncated_extended_or_reordered_files() {
        let good = sample();
        for cut in 0..good.len() {
            assert!(
                ParsedArchive::parse(good[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(ParsedArchive::parse(longer).is_err());
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert!(ParsedArchive::parse(bad_magic).is_err());
        let mut wrong_index = good;
        wrong_index[HEADER_LEN + 7] = 9;
        assert!(ParsedArchive::parse(wrong_index).is_err());
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_file_name(&file_name(0, 99_999)), Some((0, 99_999)));
        for bad in [
            "archive-1-2.xlo",
            "archive--2.xlog",
            "archive-1-+2.xlog",
            "x-1-2.xlog",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
