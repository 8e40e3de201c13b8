//! The archive file format (DESIGN §6, retention): pure encoding and strict parsing, and
//! reading one file back checked against its registered SHA-256. Writing files and moving
//! records are [`crate::archive`]'s.
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

use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::LogError;

/// The first bytes of every archive file (format version 1).
pub const MAGIC: [u8; 8] = *b"XRLOGAR1";
pub(crate) const HEADER_LEN: usize = 8 + 32 + 8 + 8;

/// What one archive file holds: its range and its link to the previous file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub prev_sha256: [u8; 32],
    pub first: u64,
    pub last: u64,
}

pub(crate) fn header_bytes(h: &ArchiveHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..40].copy_from_slice(&h.prev_sha256);
    out[40..48].copy_from_slice(&h.first.to_be_bytes());
    out[48..56].copy_from_slice(&h.last.to_be_bytes());
    out
}

pub(crate) fn write_entry(
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

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        // `first + i` stays within `first..=last`, as parsed: no overflow, even at u64::MAX
        // (where a `first..` range would overflow past its last entry).
        self.entries
            .iter()
            .enumerate()
            .map(|(i, (record, _))| (self.header.first + i as u64, &self.bytes[record.clone()]))
    }
}

pub(crate) struct Reader<'a> {
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

pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
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
    /// Reads the archive file registered for `first..=last` and checks it against its
    /// registered SHA-256 and range.
    pub(crate) fn load(
        path: &Path,
        first: u64,
        last: u64,
        sha256: &[u8; 32],
    ) -> Result<LoadedArchive, LogError> {
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
        Ok(LoadedArchive {
            path: path.to_owned(),
            sha256: actual,
            parsed,
        })
    }

    /// Whether this is the file at `path` with the registered `sha256`.
    pub(crate) fn is(&self, path: &Path, sha256: &[u8; 32]) -> bool {
        self.path == path && &self.sha256 == sha256
    }

    pub(crate) fn entry(&self, index: u64) -> Result<(&[u8], Option<&[u8]>), LogError> {
        self.parsed.get(index).ok_or_else(|| LogError::Archive {
            path: self.path.clone(),
            reason: format!("holds no record {index}"),
        })
    }
}

pub(crate) fn read_and_hash(path: &Path) -> Result<(Vec<u8>, [u8; 32]), LogError> {
    let bytes = fs::read(path).map_err(LogError::io(path))?;
    let sha = Sha256::digest(&bytes).into();
    Ok((bytes, sha))
}

pub(crate) fn archive_error(path: &Path, reason: impl Into<String>) -> LogError {
    LogError::Archive {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
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
