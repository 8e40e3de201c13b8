//! The write-ahead log in front of the database: what makes an append durable.
//!
//! A group commit writes its entries as ONE frame to the current segment file and `fdatasync`s
//! it; only then are the appenders answered. The entries go on to the indexer thread, which
//! applies them to redb in large transactions (see `writer`). A redb commit costs about the same
//! for 10 records as for 1,000 (it rewrites the root-to-leaf path of every table it touches), so
//! durability is paid once per group commit in a file that is only appended to, and the B-tree
//! work once per few hundred records.
//!
//! The segments are also where records and bodies live: the `records` table holds an
//! [`EntryLocation`] in a segment rather than a second copy, so each record and body is written
//! to the disk once (and the indexer's B-tree stays small). A segment is deleted only when every
//! record in it is archived ([`remove_segments_below`]). The previous version kept the record
//! in `records` and a [`BodyLocation`] in `bodies`; both are still read.
//!
//! When the log is opened, every frame after the point the database was applied up to
//! ([`Position`], `meta.wal_applied`) is applied ([`recover`]); then a new segment begins. A
//! frame cut short at the end of the last segment (power loss during the write) was never
//! acknowledged and is dropped; a damaged frame anywhere else is an error, never silently
//! skipped.
//!
//! A segment is extended with zeros [`PREALLOCATE`] bytes at a time, ahead of the frames, so
//! that syncing a frame writes data into blocks the file already has: `fdatasync` of a file
//! that grows must also commit the file system's journal (new blocks, new size), which costs
//! more than the frame itself. Zeros after the last frame are the segment's clean end.
//!
//! The segments live in `<database file>-wal/`, named by the index of their first entry
//! (`00000000000000001234.wal`), mode 0600 in a 0700 directory. Bodies are already sealed
//! (encrypted when the log has a body key) when they are written here.
//!
//! ```text
//! frame   = "XRW2" | payload length u64 | first index u64 | entry count u32 | payload
//!           | CRC-32C of everything before it (u32)
//! entry   = record length u32 | record bytes | flags u8 (1: subject, 2: body)
//!           | [subject HMAC (32)] | [stored body length u32 | stored body]
//! ```
//! Integers are little-endian. Frames written by earlier versions begin with "XRWL" and end in
//! the SHA-256 of everything before them (32 bytes); they are read as before. The checksum only
//! tells a frame cut short or damaged by the disk from an intact one (tampering is what the
//! Merkle tree and its signed checkpoints detect), and a CRC does that at a small part of the
//! cost of a hash of every byte the writer syncs.
//!
//! # Why one long file
//! The frame format, the segment files and recovery at open are one contract: what recovery
//! accepts is exactly what a frame write can leave behind after a crash, torn or not. They are
//! kept together, with the tests of every torn shape, so that a change to one shows the others.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::LogError;
use crate::disk::Faults;

/// Frames with a CRC-32C, as this version writes them.
const MAGIC: [u8; 4] = *b"XRW2";
/// Frames with a SHA-256, as earlier versions wrote them.
const MAGIC_SHA256: [u8; 4] = *b"XRWL";
const HEADER_LEN: usize = 4 + 8 + 8 + 4;

/// The length of the checksum of a frame that begins with `magic`, if it is a frame header.
fn sum_len(magic: &[u8]) -> Option<usize> {
    if magic == MAGIC {
        Some(4)
    } else if magic == MAGIC_SHA256 {
        Some(32)
    } else {
        None
    }
}

/// Whether `sum` is the checksum of `covered`, in the frame kind `magic` names.
fn sum_matches(magic: &[u8], covered: &[u8], sum: &[u8]) -> bool {
    if magic == MAGIC {
        crc32c::crc32c(covered).to_le_bytes() == sum
    } else {
        Sha256::digest(covered).as_slice() == sum
    }
}
const FLAG_SUBJECT: u8 = 1;
const FLAG_BODY: u8 = 2;
/// A segment is closed, and a new one begun, once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// The largest record or stored body an entry may hold (its length is a u32).
pub(crate) const MAX_ENTRY_PART: usize = u32::MAX as usize - 64;
/// How far ahead of the frames a segment is filled with zeros, and in what steps.
pub(crate) const PREALLOCATE: u64 = 4 << 20;

/// Begins a frame in `out` (cleared): room for its header, filled in by [`finish_frame`].
pub(crate) fn begin_frame(out: &mut Vec<u8>) {
    out.clear();
    out.resize(HEADER_LEN, 0);
}

/// Appends one entry to the frame being filled in `out`. `write_body`, when the entry has a
/// body, appends the stored body (format byte first, sealed or plain) to `out`. On an error
/// `out` may hold part of the entry: the caller cuts it back.
pub(crate) fn push_entry(
    out: &mut Vec<u8>,
    record: &[u8],
    subject: Option<&[u8; 32]>,
    write_body: Option<impl FnOnce(&mut Vec<u8>) -> Result<(), LogError>>,
) -> Result<(), LogError> {
    let record_len = part_len(record.len())?;
    out.extend_from_slice(&record_len.to_le_bytes());
    out.extend_from_slice(record);
    let flags = if subject.is_some() { FLAG_SUBJECT } else { 0 }
        | if write_body.is_some() { FLAG_BODY } else { 0 };
    out.push(flags);
    if let Some(subject) = subject {
        out.extend_from_slice(subject);
    }
    if let Some(write_body) = write_body {
        let at = out.len();
        out.extend_from_slice(&[0; 4]); // its length, filled in below
        write_body(out)?;
        let body_len = part_len(out.len() - at - 4)?;
        out[at..at + 4].copy_from_slice(&body_len.to_le_bytes());
    }
    Ok(())
}

/// The length field of a record or stored body of `len` bytes; refused from [`MAX_ENTRY_PART`] on.
pub(crate) fn part_len(len: usize) -> Result<u32, LogError> {
    u32::try_from(len)
        .ok()
        .filter(|&n| n as usize <= MAX_ENTRY_PART)
        .ok_or_else(|| {
            LogError::InvalidEntry("a record or body of 4 GiB or more cannot be logged".into())
        })
}

/// Completes the frame begun in `out` with [`begin_frame`], holding `count` entries from index
/// `first` on: fills in its header and appends its checksum.
pub(crate) fn finish_frame(out: &mut Vec<u8>, first: u64, count: u32) {
    let payload_len = (out.len() - HEADER_LEN) as u64;
    out[..4].copy_from_slice(&MAGIC);
    out[4..12].copy_from_slice(&payload_len.to_le_bytes());
    out[12..20].copy_from_slice(&first.to_le_bytes());
    out[20..24].copy_from_slice(&count.to_le_bytes());
    let sum = crc32c::crc32c(out);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// One whole frame as written (header, entries, checksum): what the indexer applies.
#[derive(Debug)]
pub(crate) struct OwnedFrame {
    /// The index of its first entry.
    pub(crate) first: u64,
    pub(crate) bytes: Vec<u8>,
    /// The segment it is in (by its first index), and where in it.
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

impl OwnedFrame {
    /// The number of entries it holds.
    pub(crate) fn count(&self) -> u64 {
        self.bytes
            .get(..HEADER_LEN)
            .map_or(0, |h| u64::from(u32_at(h, 20)))
    }

    /// Its entries. The frame was made by the writer or read back with its checksum checked,
    /// so this does not check the checksum again.
    pub(crate) fn entries(&self) -> Result<Vec<RawEntry<'_>>, LogError> {
        let sum = self.bytes.get(..4).and_then(sum_len).unwrap_or(0);
        let payload = self
            .bytes
            .get(HEADER_LEN..self.bytes.len().saturating_sub(sum))
            .unwrap_or_default();
        parse_entries(payload, HEADER_LEN, self.count()).map_err(|reason| {
            LogError::corrupt(format!(
                "the write-ahead frame at index {} does not parse: {reason}",
                self.first
            ))
        })
    }
}

/// A frame read back: its first index and its entries' parts as stored.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) first: u64,
    pub(crate) entries: Vec<RawEntry<'a>>,
    /// The whole frame, header and checksum included.
    pub(crate) bytes: &'a [u8],
    /// Where it begins in the bytes parsed.
    pub(crate) offset: usize,
}

#[derive(Debug)]
pub(crate) struct RawEntry<'a> {
    pub(crate) record_bytes: &'a [u8],
    pub(crate) subject: Option<[u8; 32]>,
    pub(crate) stored_body: Option<&'a [u8]>,
    /// Where the entry begins in its frame, and its length.
    pub(crate) at: usize,
    pub(crate) len: usize,
}

/// How the frames of a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Every byte belongs to a whole, intact frame, or is a zero after the last one.
    Clean,
    /// From this offset on, the bytes are not an intact frame (cut short or damaged).
    Broken { offset: usize, reason: &'static str },
}

/// The intact frames at the start of `bytes`, and where (and why) they stopped.
pub(crate) fn parse_frames(bytes: &[u8]) -> (Vec<Frame<'_>>, Tail) {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match parse_frame(&bytes[offset..]) {
            Ok((mut frame, len)) => {
                frame.offset = offset;
                frames.push(frame);
                offset += len;
            }
            Err(_) if bytes[offset..].iter().all(|&b| b == 0) => break,
            Err(reason) => return (frames, Tail::Broken { offset, reason }),
        }
    }
    (frames, Tail::Clean)
}

/// One frame at the start of `bytes`, and its length.
fn parse_frame(bytes: &[u8]) -> Result<(Frame<'_>, usize), &'static str> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or("cut short in a frame header")?;
    let magic = &header[..4];
    let sum_len = sum_len(magic).ok_or("not a frame header")?;
    let payload_len = usize::try_from(u64_at(header, 4)).map_err(|_| "impossible frame length")?;
    let first = u64_at(header, 12);
    let count = u32_at(header, 20);
    let total = HEADER_LEN
        .checked_add(payload_len)
        .and_then(|n| n.checked_add(sum_len))
        .ok_or("impossible frame length")?;
    let frame = bytes.get(..total).ok_or("cut short in a frame")?;
    let (covered, sum) = frame.split_at(total - sum_len);
    if !sum_matches(magic, covered, sum) {
        return Err("frame checksum mismatch");
    }
    let entries = parse_entries(&covered[HEADER_LEN..], HEADER_LEN, u64::from(count))?;
    Ok((
        Frame {
            first,
            entries,
            bytes: frame,
            offset: 0,
        },
        total,
    ))
}

/// The `count` entries that make up `payload`, all of it; `payload` begins at `base` in its
/// frame.
fn parse_entries(
    payload: &[u8],
    base: usize,
    count: u64,
) -> Result<Vec<RawEntry<'_>>, &'static str> {
    let mut rest = payload;
    // Each entry takes at least five bytes.
    let mut entries =
        Vec::with_capacity(usize::try_from(count).map_or(0, |n| n.min(payload.len() / 5 + 1)));
    for _ in 0..count {
        let at = base + payload.len() - rest.len();
        let record_len = u32_at(take(&mut rest, 4)?, 0) as usize;
        let record_bytes = take(&mut rest, record_len)?;
        let flags = take(&mut rest, 1)?[0];
        if flags & !(FLAG_SUBJECT | FLAG_BODY) != 0 {
            return Err("unknown entry flags");
        }
        let subject = if flags & FLAG_SUBJECT != 0 {
            let s: [u8; 32] = take(&mut rest, 32)?
                .try_into()
                .map_err(|_| "subject length")?;
            Some(s)
        } else {
            None
        };
        let stored_body = if flags & FLAG_BODY != 0 {
            let len = u32_at(take(&mut rest, 4)?, 0) as usize;
            Some(take(&mut rest, len)?)
        } else {
            None
        };
        entries.push(RawEntry {
            record_bytes,
            subject,
            stored_body,
            at,
            len: base + payload.len() - rest.len() - at,
        });
    }
    if !rest.is_empty() {
        return Err("bytes after the last entry of a frame");
    }
    Ok(entries)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if rest.len() < n {
        return Err("an entry runs past its frame");
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The directory of the segments of the database at `db_path`.
pub(crate) fn dir_of(db_path: &Path) -> PathBuf {
    let mut name = db_path.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    db_path.with_file_name(name)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// The segments in `dir`, by first index. Files of other names are left alone.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates the segment directory (mode 0700) if there is none.
pub(crate) fn create_dir(dir: &Path) -> Result<(), LogError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(LogError::io(dir))
}

/// Makes the directory's entries (a created or deleted segment) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io(dir))
}

/// The segment being written.
#[derive(Debug)]
pub(crate) struct Segment {
    dir: PathBuf,
    path: PathBuf,
    /// The index of its first entry (its name).
    first: u64,
    file: File,
    /// Bytes of frames written.
    len: u64,
    /// Bytes of the file (frames, then zeros).
    allocated: u64,
    /// The segment is full at this many bytes of frames ([`SEGMENT_BYTES`] but in tests).
    limit: u64,
    /// Injected failures, in tests of a full disk.
    faults: Faults,
}

impl Segment {
    /// Starts the segment whose first entry will have index `first` (replacing any file of that
    /// name), and makes its directory entry durable.
    pub(crate) fn create(dir: &Path, first: u64) -> Result<Segment, LogError> {
        let path = segment_path(dir, first);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(LogError::io(&path))?;
        sync_dir(dir)?;
        Ok(Segment::over(dir, path, first, file))
    }

    /// A new segment over an open, empty file.
    pub(crate) fn over(dir: &Path, path: PathBuf, first: u64, file: File) -> Segment {
        Segment {
            dir: dir.to_owned(),
            path,
            first,
            file,
            len: 0,
            allocated: 0,
            limit: SEGMENT_BYTES,
            faults: Faults::default(),
        }
    }

    /// The same, failing its writes whenever `faults` says the disk is full.
    pub(crate) fn with_faults(mut self, faults: Faults) -> Segment {
        self.faults = faults;
        self
    }

    /// The same with another size limit, so that tests can fill segments.
    #[cfg(test)]
    pub(crate) fn with_limit(mut self, limit: u64) -> Segment {
        self.limit = limit;
        self
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one frame and waits until it is on disk.
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), LogError> {
        let end = self.len + frame.len() as u64;
        if end + PREALLOCATE / 4 > self.allocated && self.allocated < self.limit {
            self.preallocate(end)?;
        }
        self.faults
            .check()
            .and_then(|()| self.file.write_all_at(frame, self.len))
            .and_then(|()| self.file.sync_data())
            .map_err(LogError::io(&self.path))?;
        self.len = end;
        self.allocated = self.allocated.max(end);
        Ok(())
    }

    /// Fills the file with zeros up to [`PREALLOCATE`] bytes past `end`. The frame's sync makes
    /// them durable with it.
    fn preallocate(&mut self, end: u64) -> Result<(), LogError> {
        const STEP: usize = 1 << 20;
        let zeros = vec![0; STEP];
        let target = end + PREALLOCATE;
        let mut at = self.allocated.max(end);
        while at < target {
            let n = (target - at).min(STEP as u64) as usize;
            self.faults
                .check()
                .and_then(|()| self.file.write_all_at(&zeros[..n], at))
                .map_err(LogError::io(&self.path))?;
            at += n as u64;
        }
        self.allocated = target;
        Ok(())
    }

    /// The index of its first entry.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Where the next frame goes.
    pub(crate) fn end(&self) -> u64 {
        self.len
    }

    /// Whether this segment is full, so the next frame begins a new one.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// Begins the next segment at index `first`; returns the path of the one closed.
    pub(crate) fn rotate(&mut self, first: u64) -> Result<PathBuf, LogError> {
        self.faults.check().map_err(LogError::io(&self.dir))?;
        let mut next = Segment::create(&self.dir, first)?.with_faults(self.faults.clone());
        next.limit = self.limit;
        let old = std::mem::replace(self, next);
        Ok(old.path)
    }
}

/// The frames of the segments in `dir` that hold entries from index `size` on, in index order,
/// as the indexer applies them (it skips the entries below `size` of the first one).
///
/// Each segment's frames must continue the index sequence from its name on, and each segment
/// must begin where the one before it ended (or within what the database holds). A segment
/// ends at zeros (preallocated space) or, in the last segment only, at a frame cut short or
/// damaged by a crash during its write; such a frame was never acknowledged. Damage anywhere
/// else, or a gap, is an error: acknowledged records would be lost.
pub(crate) fn recover(
    dir: &Path,
    size: u64,
    applied: Option<Position>,
) -> Result<Vec<OwnedFrame>, LogError> {
    let mut segments = list_segments(dir)?;
    // The segments before the one the database was applied up to hold nothing it lacks (they
    // stay for their bodies until archived; one may end in a frame a crash cut short, never
    // acknowledged, and superseded by the next segment). Without that position (a database
    // written by an earlier version, which deleted applied segments), the same holds for
    // segments followed by one that begins within the database.
    let before = match applied {
        Some(p) => segments.iter().take_while(|(f, _)| *f < p.segment).count(),
        None => segments
            .iter()
            .skip(1)
            .take_while(|(f, _)| *f <= size)
            .count(),
    };
    segments.drain(..before);
    // The index the next entry must have; entries below `size` are already in the database.
    let mut next: Option<u64> = None;
    let mut out = Vec::new();
    for (n, (first, path)) in segments.iter().enumerate() {
        let corrupt = |what: String| {
            LogError::corrupt(format!("write-ahead segment {}: {what}", path.display()))
        };
        match next {
            Some(expected) if *first != expected && expected > size => {
                return Err(corrupt(format!(
                    "begins at index {first}, but the segment before it ends at {expected}"
                )));
            }
            None if *first > size => {
                return Err(corrupt(format!(
                    "begins at index {first}, but the database ends at {size}"
                )));
            }
            _ => {}
        }
        let bytes = fs::read(path).map_err(LogError::io(path))?;
        // In the segment the database was applied up to, only what follows that point.
        let (start, mut expected) = match applied {
            Some(p) if p.segment == *first => {
                let start = usize::try_from(p.offset)
                    .ok()
                    .filter(|&at| at <= bytes.len())
                    .ok_or_else(|| {
                        corrupt(format!(
                            "the database was applied up to byte {}, past its end",
                            p.offset
                        ))
                    })?;
                (start, size)
            }
            _ => (0, *first),
        };
        let (frames, tail) = parse_frames(&bytes[start..]);
        for frame in frames {
            if frame.first != expected {
                return Err(corrupt(format!(
                    "holds index {} where {expected} should follow",
                    frame.first
                )));
            }
            let end = expected + frame.entries.len() as u64;
            if end > size {
                out.push(OwnedFrame {
                    first: frame.first,
                    bytes: frame.bytes.to_vec(),
                    segment: *first,
                    offset: (start + frame.offset) as u64,
                });
            }
            expected = end;
        }
        if let Tail::Broken { offset, reason } = tail {
            let offset = start + offset;
            if n + 1 != segments.len() {
                return Err(corrupt(format!(
                    "damaged at byte {offset} ({reason}), and it is not the last segment"
                )));
            }
            if let Some(later) = intact_frame_after(&bytes, offset) {
                return Err(corrupt(format!(
                    "damaged at byte {offset} ({reason}), with an intact frame (index {later}) \
                     after it"
                )));
            }
            tracing::warn!(
                segment = %path.display(),
                offset,
                reason,
                "the write-ahead log ends in an incomplete frame (being written when the server \
                 stopped, never acknowledged); it is dropped"
            );
        }
        next = Some(expected);
    }
    Ok(out)
}

/// The first index of an intact frame that starts after `offset`, if there is one.
pub(crate) fn intact_frame_after(bytes: &[u8], offset: usize) -> Option<u64> {
    let mut at = offset + 1;
    while let Some(found) = bytes
        .get(at..)?
        .windows(MAGIC.len())
        .position(|w| sum_len(w).is_some())
    {
        let start = at + found;
        if let Ok((frame, _)) = parse_frame(&bytes[start..]) {
            return Some(frame.first);
        }
        at = start + 1;
    }
    None
}

/// Deletes the segments in `dir` all of whose entries are below `keep_from` (archived: their
/// bodies are in archive files now), and makes that durable. The newest segment is never
/// deleted: the writer may be filling it.
pub(crate) fn remove_segments_below(dir: &Path, keep_from: u64) -> Result<(), LogError> {
    let segments = list_segments(dir)?;
    let mut removed = false;
    for pair in segments.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first > keep_from {
            break;
        }
        fs::remove_file(path).map_err(LogError::io(path))?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A place in the write-ahead log: the segment (by its first index) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

impl Position {
    /// `segment (u64 BE) ‖ offset (u64 BE)`, as the `meta` table holds it.
    pub(crate) fn to_value(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    pub(crate) fn from_value(value: &[u8]) -> Result<Position, LogError> {
        let v = <[u8; 16]>::try_from(value)
            .map_err(|_| LogError::corrupt("meta.wal_applied is not 16 bytes"))?;
        let (segment, offset) = v.split_at(8);
        Ok(Position {
            segment: u64::from_be_bytes(segment.try_into().unwrap_or_default()),
            offset: u64::from_be_bytes(offset.try_into().unwrap_or_default()),
        })
    }
}

/// The place in a write-ahead segment where a stored body lies: the `bodies` table of the
/// previous version holds this (format byte [`BODY_IN_SEGMENT`]) instead of the stored body
/// itself. This version writes an [`EntryLocation`] to `records` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLocation {
    /// The segment, by its first index.
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// The format byte of a `bodies` value that is a [`BodyLocation`] (the stored body formats of
/// `crypto` are 0 to 2).
pub(crate) const BODY_IN_SEGMENT: u8 = 3;
const LOCATION_LEN: usize = 1 + 8 + 8 + 4;

impl BodyLocation {
    /// `BODY_IN_SEGMENT ‖ segment (u64 BE) ‖ offset (u64 BE) ‖ length (u32 BE)`.
    #[cfg(test)]
    pub(crate) fn to_value(self) -> [u8; LOCATION_LEN] {
        let mut out = [0; LOCATION_LEN];
        out[0] = BODY_IN_SEGMENT;
        out[1..9].copy_from_slice(&self.segment.to_be_bytes());
        out[9..17].copy_from_slice(&self.offset.to_be_bytes());
        out[17..21].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// The location a `bodies` value holds, or `None` when the value is a stored body itself.
    pub(crate) fn from_value(value: &[u8]) -> Option<Result<BodyLocation, LogError>> {
        if value.first() != Some(&BODY_IN_SEGMENT) {
            return None;
        }
        let Ok(v) = <[u8; LOCATION_LEN]>::try_from(value) else {
            return Some(Err(LogError::corrupt(format!(
                "a body location of {} bytes",
                value.len()
            ))));
        };
        let u64_be = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().unwrap_or_default());
        Some(Ok(BodyLocation {
            segment: u64_be(1),
            offset: u64_be(9),
            len: u32::from_be_bytes(v[17..21].try_into().unwrap_or_default()),
        }))
    }

    /// Reads the stored body from its segment.
    pub(crate) fn read(self, segments: &mut SegmentReader) -> Result<Vec<u8>, LogError> {
        segments.read(self.segment, self.offset, u64::from(self.len))
    }
}

/// Where a whole entry (record, subject, stored body) lies in a write-ahead segment: the
/// `records` table holds this (format byte [`ENTRY_IN_SEGMENT`]) instead of the record bytes,
/// so that the indexer writes 25 bytes per record where it wrote the record (and, in a second
/// table, the body's location) before. Earlier versions stored the `LogRecord` bytes there: a
/// protobuf encoding never begins with a zero byte (there is no field number 0), so the first
/// byte tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryLocation {
    /// The segment, by its first index.
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// The format byte of a `records` value that is an [`EntryLocation`].
pub(crate) const ENTRY_IN_SEGMENT: u8 = 0;
const ENTRY_LOCATION_LEN: usize = 1 + 8 + 8 + 8;

impl EntryLocation {
    /// Where entry `e` of `frame` lies.
    pub(crate) fn of(frame: &OwnedFrame, e: &RawEntry<'_>) -> EntryLocation {
        EntryLocation {
            segment: frame.segment,
            offset: frame.offset + e.at as u64,
            len: e.len as u64,
        }
    }

    /// `ENTRY_IN_SEGMENT ‖ segment (u64 BE) ‖ offset (u64 BE) ‖ length (u64 BE)`.
    pub(crate) fn to_value(self) -> [u8; ENTRY_LOCATION_LEN] {
        let mut out = [0; ENTRY_LOCATION_LEN];
        out[0] = ENTRY_IN_SEGMENT;
        out[1..9].copy_from_slice(&self.segment.to_be_bytes());
        out[9..17].copy_from_slice(&self.offset.to_be_bytes());
        out[17..25].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// The location a `records` value holds, or `None` when the value is the record itself (as
    /// earlier versions stored it).
    pub(crate) fn from_value(value: &[u8]) -> Option<Result<EntryLocation, LogError>> {
        if value.first() != Some(&ENTRY_IN_SEGMENT) {
            return None;
        }
        let Ok(v) = <[u8; ENTRY_LOCATION_LEN]>::try_from(value) else {
            return Some(Err(LogError::corrupt(format!(
                "a record location of {} bytes",
                value.len()
            ))));
        };
        let u64_be = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().unwrap_or_default());
        Some(Ok(EntryLocation {
            segment: u64_be(1),
            offset: u64_be(9),
            len: u64_be(17),
        }))
    }

    /// Reads the entry back: its record bytes and its stored body, if it has one.
    pub(crate) fn read(self, segments: &mut SegmentReader) -> Result<StoredEntry, LogError> {
        let bytes = segments.read(self.segment, self.offset, self.len)?;
        let entry = match parse_entries(&bytes, 0, 1) {
            Ok(mut entries) => entries.pop(),
            Err(_) => None,
        };
        let Some(entry) = entry else {
            return Err(LogError::corrupt(format!(
                "no log entry at offset {} of write-ahead segment {}",
                self.offset, self.segment
            )));
        };
        Ok(StoredEntry {
            record_bytes: entry.record_bytes.to_vec(),
            stored_body: entry.stored_body.map(<[u8]>::to_vec),
        })
    }
}

/// An entry read back from its segment.
#[derive(Debug)]
pub(crate) struct StoredEntry {
    pub(crate) record_bytes: Vec<u8>,
    pub(crate) stored_body: Option<Vec<u8>>,
}

/// Reads byte ranges from the segments of one directory, keeping the last segment it read
/// open (readers in index order touch one segment after another).
#[derive(Debug)]
pub(crate) struct SegmentReader {
    dir: PathBuf,
    open: Option<OpenSegment>,
}

/// The segment a [`SegmentReader`] read last, and its size when last looked at.
#[derive(Debug)]
struct OpenSegment {
    first: u64,
    path: PathBuf,
    file: File,
    size: u64,
}

impl SegmentReader {
    pub(crate) fn new(dir: PathBuf) -> SegmentReader {
        SegmentReader { dir, open: None }
    }

    /// `len` bytes from `offset` on in the segment that begins at index `segment`.
    pub(crate) fn read(
        &mut self,
        segment: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, LogError> {
        let open = match &mut self.open {
            Some(open) if open.first == segment => open,
            slot => {
                let path = segment_path(&self.dir, segment);
                let file = File::open(&path).map_err(LogError::io(&path))?;
                slot.insert(OpenSegment {
                    first: segment,
                    path,
                    file,
                    size: 0,
                })
            }
        };
        // A damaged location must not make us allocate what the segment does not hold. The
        // newest segment grows, so its size is looked at again when a read goes past it.
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > open.size) {
            open.size = open
                .file
                .metadata()
                .map_err(LogError::io(&open.path))?
                .len();
        }
        let len = match end {
            Some(end) if end <= open.size => len as usize,
            _ => {
                return Err(LogError::corrupt(format!(
                    "bytes {offset}+{len} lie beyond the end of write-ahead segment {segment}"
                )));
            }
        };
        let mut out = vec![0; len];
        open.file
            .read_exact_at(&mut out, offset)
            .map_err(LogError::io(&open.path))?;
        Ok(out)
    }
}

/// An entry as the tests write it into a frame.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestEntry {
    pub(crate) record_bytes: Vec<u8>,
    pub(crate) subject: Option<[u8; 32]>,
    /// Format byte and body, as the `bodies` table holds it.
    pub(crate) stored_body: Option<Vec<u8>>,
}

/// Appends the frame of `entries` (at indexes `first..`) to `out`, as the writer makes it.
#[cfg(test)]
pub(crate) fn encode_frame(first: u64, entries: &[TestEntry], out: &mut Vec<u8>) {
    let mut frame = Vec::new();
    begin_frame(&mut frame);
    for e in entries {
        let body = e.stored_body.as_deref().map(|b| {
            move |out: &mut Vec<u8>| {
                out.extend_from_slice(b);
                Ok(())
            }
        });
        push_entry(&mut frame, &e.record_bytes, e.subject.as_ref(), body).unwrap();
    }
    finish_frame(&mut frame, first, entries.len() as u32);
    out.extend_from_slice(&frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, subject: bool, body: bool) -> TestEntry {
        TestEntry {
            record_bytes: vec![n; 3 + n as usize],
            subject: subject.then_some([n; 32]),
            stored_body: body.then(|| vec![0, n, n]),
        }
    }

    /// The entries from index `size` on that recovery hands to the indexer.
    fn recovered(dir: &Path, size: u64) -> Result<Vec<TestEntry>, LogError> {
        let mut out = Vec::new();
        for frame in recover(dir, size, None)? {
            for (index, e) in (frame.first..).zip(frame.entries()?) {
                if index >= size {
                    out.push(TestEntry {
                        record_bytes: e.record_bytes.to_vec(),
                        subject: e.subject,
                        stored_body: e.stored_body.map(<[u8]>::to_vec),
                    });
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_with_and_without_subject_and_body() {
        let a = [entry(1, true, true), entry(2, false, false)];
        let b = [entry(3, false, true), entry(4, true, false)];
        let mut bytes = Vec::new();
        encode_frame(10, &a, &mut bytes);
        encode_frame(12, &b, &mut bytes);
        let (frames, tail) = parse_frames(&bytes);
        assert_eq!(tail, Tail::Clean);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].first, frames[1].first), (10, 12));
        let e = &frames[1].entries[0];
        assert_eq!(e.record_bytes, b[0].record_bytes.as_slice());
        assert_eq!(e.subject, None);
        assert_eq!(e.stored_body, Some([0, 3, 3].as_slice()));
        assert_eq!(frames[0].entries[0].subject, Some([1; 32]));
    }

    #[test]
    fn every_cut_and_every_flipped_bit_ends_the_intact_frames_there() {
        let mut bytes = Vec::new();
        encode_frame(0, &[entry(1, true, true)], &mut bytes);
        let first_len = bytes.len();
        encode_frame(
            1,
            &[entry(2, true, true), entry(3, false, true)],
            &mut bytes,
        );
        for cut in first_len..bytes.len() {
            let (frames, tail) = parse_frames(&bytes[..cut]);
            assert_eq!(frames.len(), 1, "cut at {cut}");
            let expected_offset = if cut == first_len {
                None
            } else {
                Some(first_len)
            };
            match tail {
                Tail::Clean => assert_eq!(expected_offset, None),
                Tail::Broken { offset, .. } => assert_eq!(Some(offset), expected_offset),
            }
        }
        for byte in first_len..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let (frames, tail) = parse_frames(&damaged);
                assert_eq!(frames.len(), 1, "flip at {byte}.{bit}");
                assert!(matches!(tail, Tail::Broken { offset, .. } if offset == first_len));
            }
        }
    }

    fn write_segment(dir: &Path, first: u64, frames: &[(u64, Vec<TestEntry>)], extra: &[u8]) {
        let mut bytes = Vec::new();
        for (first, entries) in frames {
            encode_frame(*first, entries, &mut bytes);
        }
        bytes.extend_from_slice(extra);
        fs::write(segment_path(dir, first), bytes).unwrap();
    }

    #[test]
    fn frames_with_the_sha256_of_earlier_versions_are_still_read_and_checked() {
        // The frame of entries 0 and 1 as an earlier version wrote it, then one as this one does.
        let mut old = Vec::new();
        encode_frame(0, &[entry(0, true, false), entry(1, false, true)], &mut old);
        old.truncate(old.len() - 4);
        old[..4].copy_from_slice(&MAGIC_SHA256);
        let sum = Sha256::digest(&old);
        old.extend_from_slice(&sum);
        let mut bytes = old.clone();
        encode_frame(2, &[entry(2, false, false)], &mut bytes);

        let (frames, tail) = parse_frames(&bytes);
        assert_eq!(tail, Tail::Clean);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].first, frames[0].bytes.len()), (0, old.len()));
        assert_eq!(frames[1].first, 2);
        let owned = OwnedFrame {
            first: 0,
            bytes: old.clone(),
            segment: 0,
            offset: 0,
        };
        let entries = owned.entries().unwrap();
        assert_eq!(entries[1].stored_body, Some(&[0, 1, 1][..]));

        // A byte changed in either kind of frame is found.
        for at in [HEADER_LEN + 2, old.len() + HEADER_LEN + 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            let (_, tail) = parse_frames(&damaged);
            assert!(
                matches!(
                    tail,
                    Tail::Broken {
                        reason: "frame checksum mismatch",
                        ..
                    }
                ),
                "{tail:?}"
            );
        }
    }

    #[test]
    fn recovery_skips_what_the_database_has_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(
            dir.path(),
            0,
            &[
                (0, vec![entry(0, false, false), entry(1, true, false)]),
                (2, vec![entry(2, false, true)]),
            ],
            &[],
        );
        let mut torn = Vec::new();
        encode_frame(4, &[entry(4, false, false)], &mut torn);
        torn.truncate(torn.len() - 1);
        write_segment(dir.path(), 3, &[(3, vec![entry(3, true, true)])], &torn);
        let entries = recovered(dir.path(), 1).unwrap();
        assert_eq!(
            entries,
            vec![
                entry(1, true, false),
                entry(2, false, true),
                entry(3, true, true)
            ]
        );
        assert!(recovered(dir.path(), 4).unwrap().is_empty());
        fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
        assert_eq!(recovered(dir.path(), 0).unwrap().len(), 4);

        // The next open starts a segment at 4; the torn one stays (for its bodies) and is no
        // longer the last, which recovery from 4 on must not hold against it.
        write_segment(dir.path(), 4, &[(4, vec![entry(5, false, true)])], &[]);
        assert_eq!(
            recovered(dir.path(), 4).unwrap(),
            vec![entry(5, false, true)]
        );
        assert!(recovered(dir.path(), 5).unwrap().is_empty());

        // Once everything below 4 is archived, the segments holding only that go; the newest
        // segment and other files stay.
        remove_segments_below(dir.path(), 3).unwrap();
        assert_eq!(
            list_segments(dir.path()).unwrap().len(),
            2,
            "segment 3 holds entry 3"
        );
        remove_segments_below(dir.path(), 100).unwrap();
        let left: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(first, _)| first)
            .collect();
        assert_eq!(left, [4]);
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn recovery_starts_where_the_database_was_applied_up_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode_frame(0, &[entry(0, false, true)], &mut bytes);
        let damaged_at = bytes.len();
        encode_frame(1, &[entry(1, false, true)], &mut bytes);
        let applied = bytes.len() as u64;
        encode_frame(2, &[entry(2, true, true)], &mut bytes);
        // Damage before the applied point (a body read back later fails its own checks) does
        // not stop recovery, which never reads that far back.
        bytes[damaged_at + HEADER_LEN + 1] ^= 1;
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        let at = |offset| Some(Position { segment: 0, offset });
        let frames = recover(dir.path(), 2, at(applied)).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].first, frames[0].offset), (2, applied));
        assert_eq!(frames[0].entries().unwrap()[0].subject, Some([2; 32]));
        // Without the position, the damage is found: an intact frame follows it.
        assert!(recover(dir.path(), 2, None).is_err());
        // A frame after the point must continue the database.
        let e = recover(dir.path(), 3, at(applied)).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds index 2 where 3 should follow"),
            "{e}"
        );
        // A point past the segment's end is an error, not an empty recovery.
        let e = recover(dir.path(), 3, at(bytes.len() as u64 + 1)).unwrap_err();
        assert!(e.to_string().contains("past its end"), "{e}");
        // Everything applied: nothing to recover.
        assert!(
            recover(dir.path(), 3, at(bytes.len() as u64))
                .unwrap()
                .is_empty()
        );
        let round_trip = Position::from_value(&at(applied).unwrap().to_value()).unwrap();
        assert_eq!(round_trip, at(applied).unwrap());
    }

    #[test]
    fn a_body_location_reads_back_the_stored_body_from_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(
            dir.path(),
            7,
            &[(7, vec![entry(7, true, true), entry(8, false, true)])],
            &[],
        );
        let frames = recover(dir.path(), 7, None).unwrap();
        let entries = frames[0].entries().unwrap();
        let e = &entries[1];
        let body_len = e.stored_body.unwrap().len();
        let location = BodyLocation {
            segment: frames[0].segment,
            offset: frames[0].offset + (e.at + e.len - body_len) as u64,
            len: body_len as u32,
        };
        let value = location.to_value();
        let parsed = BodyLocation::from_value(&value).unwrap().unwrap();
        assert_eq!(parsed, location);
        assert_eq!(
            parsed
                .read(&mut SegmentReader::new(dir.path().to_owned()))
                .unwrap(),
            vec![0, 8, 8]
        );
        // A stored body itself (formats 0 to 2) is not a location; a cut location is an error.
        assert!(BodyLocation::from_value(&[0, 8, 8]).is_none());
        assert!(BodyLocation::from_value(&value[..20]).unwrap().is_err());
    }

    #[test]
    fn an_entry_location_reads_back_the_record_and_stored_body_from_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let written = [
            entry(7, true, true),
            entry(8, false, false),
            entry(9, false, true),
        ];
        write_segment(
            dir.path(),
            7,
            &[(7, written[..1].to_vec()), (8, written[1..].to_vec())],
            &[],
        );
        let frames = recover(dir.path(), 7, None).unwrap();
        let mut segments = SegmentReader::new(dir.path().to_owned());
        let mut read = Vec::new();
        for frame in &frames {
            for e in frame.entries().unwrap() {
                let value = EntryLocation::of(frame, &e).to_value();
                let location = EntryLocation::from_value(&value).unwrap().unwrap();
                assert_eq!(location, EntryLocation::of(frame, &e));
                let stored = location.read(&mut segments).unwrap();
                read.push(TestEntry {
                    record_bytes: stored.record_bytes,
                    subject: e.subject,
                    stored_body: stored.stored_body,
                });
            }
        }
        assert_eq!(read, written);

        // Record bytes as earlier versions stored them are not a location; a cut location,
        // one past the segment's end or one that does not hold an entry is an error.
        assert!(EntryLocation::from_value(&written[0].record_bytes).is_none());
        let e = frames[1].entries().unwrap();
        let good = EntryLocation::of(&frames[1], &e[1]);
        assert!(
            EntryLocation::from_value(&good.to_value()[..24])
                .unwrap()
                .is_err()
        );
        let past_end = EntryLocation {
            len: u64::MAX - 3,
            ..good
        };
        let e = past_end.read(&mut segments).unwrap_err();
        assert!(e.to_string().contains("beyond the end"), "{e}");
        let shifted = EntryLocation {
            offset: good.offset + 1,
            ..good
        };
        assert!(shifted.read(&mut segments).is_err());
    }

    #[test]
    fn damage_before_the_last_segment_or_a_gap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, &[(0, vec![entry(0, false, false)])], b"XRWL");
        write_segment(dir.path(), 1, &[(1, vec![entry(1, false, false)])], &[]);
        let e = recovered(dir.path(), 0).unwrap_err();
        assert!(e.to_string().contains("not the last segment"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, &[(0, vec![entry(0, false, false)])], &[]);
        write_segment(dir.path(), 2, &[(2, vec![entry(2, false, false)])], &[]);
        let e = recovered(dir.path(), 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("begins at index 2, but the segment before it ends at 1"),
            "{e}"
        );
        // A database already past the gap needs nothing from before it.
        assert_eq!(recovered(dir.path(), 2).unwrap().len(), 1);
        // Nor may the first segment begin past the database.
        let e = recovered(dir.path(), 0).unwrap_err();
        assert!(e.to_string().contains("begins at index 2"), "{e}");
        fs::remove_file(segment_path(dir.path(), 0)).unwrap();
        let e = recovered(dir.path(), 1).unwrap_err();
        assert!(
            e.to_string()
                .contains("begins at index 2, but the database ends at 1"),
            "{e}"
        );

        // Damage in the last segment with an intact frame after it: acknowledged entries
        // would be dropped.
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode_frame(0, &[entry(0, false, false)], &mut bytes);
        let damaged_at = bytes.len();
        encode_frame(1, &[entry(1, false, false)], &mut bytes);
        encode_frame(2, &[entry(2, false, false)], &mut bytes);
        bytes[damaged_at + HEADER_LEN + 1] ^= 1;
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        let e = recovered(dir.path(), 0).unwrap_err();
        assert!(
            e.to_string().contains("with an intact frame (index 2)"),
            "{e}"
        );

        // A frame that does not continue its segment's sequence.
        let dir = tempfile::tempdir().unwrap();
        write_segment(
            dir.path(),
            0,
            &[
                (0, vec![entry(0, false, false)]),
                (5, vec![entry(5, false, false)]),
            ],
            &[],
        );
        let e = recovered(dir.path(), 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds index 5 where 1 should follow"),
            "{e}"
        );
    }

    #[test]
    fn zeros_after_the_frames_are_a_clean_end_in_any_segment() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(
            dir.path(),
            0,
            &[(0, vec![entry(0, false, false)])],
            &[0; 4096],
        );
        write_segment(dir.path(), 1, &[(1, vec![entry(1, true, true)])], &[0; 10]);
        write_segment(dir.path(), 2, &[], &[0; 100]);
        let entries = recovered(dir.path(), 0).unwrap();
        assert_eq!(entries, vec![entry(0, false, false), entry(1, true, true)]);
    }

    #[test]
    fn a_segment_is_preallocated_ahead_of_its_frames_and_reads_back_clean() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 7).unwrap();
        let mut total = 0;
        for n in 0..3u8 {
            let mut frame = Vec::new();
            encode_frame(7 + u64::from(n), &[entry(n, true, true)], &mut frame);
            total += frame.len() as u64;
            segment.append(&frame).unwrap();
        }
        let file_len = fs::metadata(segment.path()).unwrap().len();
        assert!(file_len >= total + PREALLOCATE / 2, "{file_len}");
        let bytes = fs::read(segment.path()).unwrap();
        let (frames, tail) = parse_frames(&bytes);
        assert_eq!((frames.len(), tail), (3, Tail::Clean));
        assert_eq!(recovered(dir.path(), 7).unwrap().len(), 3);
    }

    #[test]
    fn the_segment_directory_sits_beside_the_database() {
        assert_eq!(
            dir_of(Path::new("/var/lib/xroad/messagelog.redb")),
            Path::new("/var/lib/xroad/messagelog.redb-wal")
        );
    }
}
