//! Message bodies of any size in bounded memory (DESIGN §5.2).
//!
//! A body is read as it arrives (from an information system, from a peer server's `Exchange`
//! stream, from the provider's system) and must be whole before it is signed or checked, because
//! the signed header carries its SHA-256. A body of up to `exchange.in_memory_body_bytes` stays
//! in memory, in room reserved from `exchange.body_memory_budget_bytes`, which all exchanges
//! share (a body waits for room before it is read). A larger one is written to a **spool file**
//! as it arrives, so a body's size costs disk, not memory: a few chunks of it are in memory at
//! any time. `exchange.max_body_bytes` bounds both.
//!
//! # Spool files
//! A spool file is made in `data_dir/spool` without a name (`O_TMPFILE`, or unlinked at once),
//! readable only by the server's user: nothing is left behind when the exchange ends, nor after
//! a crash. It holds the body in chunks of [`CHUNK`] bytes (the last one shorter), each sealed
//! with ChaCha20-Poly1305 under a key made for that one body and kept only in memory; the nonce
//! is the chunk's index (u64 big-endian after four zero bytes), and chunk `i` lies at
//! `i × (CHUNK + 16)`. So the disk never holds a body in the clear, and a chunk that was altered
//! or moved does not open.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use exchange::HashedBody;
use futures_util::stream::{self, BoxStream, Stream, StreamExt as _};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of a body in one spool chunk, and in one part of it on the wire between servers.
pub const CHUNK: usize = 256 * 1024;
/// The Poly1305 tag after each sealed chunk.
const TAG: usize = 16;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body cannot be read: {0}")]
    Broken(String),
    #[error("the body cannot be written to the spool: {0}")]
    Storage(#[from] io::Error),
}

/// Whether reading a body may wait for room in the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Wait for room: a request as it arrives (backpressure on whoever sends it).
    Wait,
    /// Never wait: without room at once, go to the spool. For an answer, read while its
    /// exchange holds the room of its request: if answers waited, exchanges holding all the
    /// room would wait for each other.
    OrSpool,
}

/// Where bodies are read into: memory within the budget, or spool files.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    dir: PathBuf,
    in_memory: usize,
    max_body: u64,
    /// Bytes of bodies held in memory at once, in KiB permits.
    budget: Arc<Semaphore>,
}

impl Spool {
    /// A spool in `dir` (made if missing, mode 0700). Bodies up to `in_memory` bytes stay in
    /// memory, `memory_budget` bytes of them at once; none may be larger than `max_body`.
    pub fn new(
        dir: &Path,
        in_memory: usize,
        memory_budget: usize,
        max_body: u64,
    ) -> io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let permits = (memory_budget / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Ok(Spool {
            inner: Arc::new(Settings {
                dir: dir.to_owned(),
                in_memory,
                max_body,
                budget: Arc::new(Semaphore::new(permits)),
            }),
        })
    }

    pub fn max_body(&self) -> u64 {
        self.inner.max_body
    }

    /// Reads a body from its parts, hashing it. `declared`: the length its sender announced, if
    /// any; a body longer than the limit is refused before it is read, and one that turns out
    /// longer or shorter than announced is broken.
    pub async fn read<S, E>(
        &self,
        (declared, room): (Option<u64>, Room),
        parts: S,
    ) -> Result<MessageBody, ReadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut reader = self.reader(declared, room).await?;
        let mut parts = std::pin::pin!(parts);
        while let Some(part) = parts.next().await {
            reader
                .push(&part.map_err(|e| ReadError::Broken(e.to_string()))?)
                .await?;
        }
        reader.finish().await
    }

    /// A body to be read part by part ([`BodyReader::push`]), as [`Spool::read`] does; for
    /// sources that are not a stream. Waits for room in the memory budget, or not ([`Room`]).
    pub async fn reader(&self, declared: Option<u64>, room: Room) -> Result<BodyReader, ReadError> {
        let settings = &self.inner;
        if declared.is_some_and(|n| n > settings.max_body) {
            return Err(ReadError::TooLarge(settings.max_body));
        }
        // Room for the part kept in memory: all of a body announced as small enough, else the
        // in-memory limit (a body that outgrows its room goes to the spool).
        let room_bytes = declared
            .and_then(|n| usize::try_from(n).ok())
            .map_or(settings.in_memory, |n| n.min(settings.in_memory));
        let permits = u32::try_from(room_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let budget = Arc::clone(&settings.budget);
        let (room, room_bytes) = match room {
            Room::Wait => (
                Some(
                    budget
                        .acquire_many_owned(permits)
                        .await
                        .map_err(|_| io::Error::other("the server is shutting down"))?,
                ),
                room_bytes,
            ),
            Room::OrSpool => match budget.try_acquire_many_owned(permits) {
                Ok(permit) => (Some(permit), room_bytes),
                // No room: every byte goes to the spool.
                Err(_) => (None, 0),
            },
        };
        Ok(BodyReader {
            settings: Arc::clone(settings),
            declared,
            room_bytes,
            room,
            memory: BytesMut::new(),
            spooling: None,
            len: 0,
        })
    }
}

/// A body being read into memory or the spool ([`Spool::reader`]).
#[derive(Debug)]
pub struct BodyReader {
    settings: Arc<Settings>,
    declared: Option<u64>,
    room_bytes: usize,
    room: Option<OwnedSemaphorePermit>,
    memory: BytesMut,
    spooling: Option<(SpoolWriter, Sha256)>,
    len: u64,
}

impl BodyReader {
    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the next part of the body.
    pub async fn push(&mut self, part: &[u8]) -> Result<(), ReadError> {
        self.len += part.len() as u64;
        if self.len > self.settings.max_body {
            return Err(ReadError::TooLarge(self.settings.max_body));
        }
        if self.declared.is_some_and(|n| self.len > n) {
            return Err(announced(self.declared, self.len));
        }
        match &mut self.spooling {
            Some((writer, hasher)) => {
                hasher.update(part);
                writer.push(part).await?;
            }
            None if self.memory.len() + part.len() <= self.room_bytes => {
                self.memory.extend_from_slice(part);
            }
            None => {
                let mut writer = SpoolWriter::create(&self.settings.dir).await?;
                let mut hasher = Sha256::new();
                hasher.update(&self.memory);
                hasher.update(part);
                writer.push(&self.memory).await?;
                writer.push(part).await?;
                self.memory = BytesMut::new();
                // A spooled body keeps a chunk or two in memory, not its room.
                self.room = None;
                self.spooling = Some((writer, hasher));
            }
        }
        Ok(())
    }

    /// The whole body, once every part was pushed.
    pub async fn finish(self) -> Result<MessageBody, ReadError> {
        let len = self.len;
        if self.declared.is_some_and(|n| len != n) {
            return Err(announced(self.declared, len));
        }
        match self.spooling {
            None => {
                let body = HashedBody::new(self.memory.freeze());
                Ok(MessageBody {
                    len,
                    sha256: *body.sha256(),
                    content: Content::Memory {
                        body,
                        _room: self.room,
                    },
                })
            }
            Some((writer, hasher)) => Ok(MessageBody {
                len,
                sha256: hasher.finalize().into(),
                content: Content::Spooled(Arc::new(writer.finish(len).await?)),
            }),
        }
    }
}

fn announced(declared: Option<u64>, len: u64) -> ReadError {
    ReadError::Broken(format!(
        "{len} bytes arrived, {} were announced",
        declared.unwrap_or_default()
    ))
}

/// A whole body with its SHA-256: in memory, or in a spool file.
#[derive(Debug)]
pub struct MessageBody {
    len: u64,
    sha256: [u8; 32],
    content: Content,
}

#[derive(Debug)]
enum Content {
    /// With the room it holds in the memory budget, if it was read within it.
    Memory {
        body: HashedBody,
        _room: Option<OwnedSemaphorePermit>,
    },
    Spooled(Arc<SpoolFile>),
}

impl MessageBody {
    /// A body made here in memory (a metaservice's answer), outside the budget.
    pub fn in_memory(body: HashedBody) -> MessageBody {
        MessageBody {
            len: body.bytes().len() as u64,
            sha256: *body.sha256(),
            content: Content::Memory { body, _room: None },
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The body, if it is held in memory (then the message log may store it).
    pub fn memory(&self) -> Option<&HashedBody> {
        match &self.content {
            Content::Memory { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The body's bytes in parts of at most [`CHUNK`] bytes (a body in memory: in one), read
    /// again from the start on every call.
    pub fn parts(&self) -> BoxStream<'static, io::Result<Bytes>> {
        match &self.content {
            Content::Memory { body, .. } => {
                let bytes = body.bytes().clone();
                if bytes.is_empty() {
                    stream::empty().boxed()
                } else {
                    stream::once(async move { Ok(bytes) }).boxed()
                }
            }
            Content::Spooled(file) => {
                let file = Arc::clone(file);
                let chunks = file.len.div_ceil(CHUNK as u64);
                stream::iter(0..chunks)
                    .then(move |i| {
                        let file = Arc::clone(&file);
                        async move {
                            tokio::task::spawn_blocking(move || file.chunk(i))
                                .await
                                .map_err(io::Error::other)?
                        }
                    })
                    .boxed()
            }
        }
    }

    /// The body as an HTTP body of known length (so it is sent with `Content-Length`).
    pub fn into_http(self) -> axum::body::Body {
        match &self.content {
            Content::Memory { body, .. } => axum::body::Body::from(body.bytes().clone()),
            _ => axum::body::Body::new(Sized {
                parts: self.parts(),
                remaining: self.len,
            }),
        }
    }
}

/// A streamed body whose length is known in advance.
struct Sized {
    parts: BoxStream<'static, io::Result<Bytes>>,
    remaining: u64,
}

impl hyper::body::Body for Sized {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        match std::task::ready!(self.parts.poll_next_unpin(cx)) {
            Some(Ok(part)) => {
                self.remaining = self.remaining.saturating_sub(part.len() as u64);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(part))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// A body's sealed chunks in an unnamed file, and the key that opens them.
struct SpoolFile {
    file: File,
    key: LessSafeKey,
    len: u64,
}

impl std::fmt::Debug for SpoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolFile").field("len", &self.len).finish()
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn offset(index: u64) -> u64 {
    index * (CHUNK + TAG) as u64
}

impl SpoolFile {
    /// Chunk `index`, opened.
    fn chunk(&self, index: u64) -> io::Result<Bytes> {
        let start = index * CHUNK as u64;
        let plain = usize::try_from(self.len.saturating_sub(start).min(CHUNK as u64))
            .map_err(io::Error::other)?;
        let mut sealed = vec![0u8; plain + TAG];
        self.file.read_exact_at(&mut sealed, offset(index))?;
        let opened = self
            .key
            .open_in_place(nonce(index), Aad::empty(), &mut sealed)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a chunk of a spooled body does not open: the spool file was altered",
                )
            })?
            .len();
        sealed.truncate(opened);
        Ok(Bytes::from(sealed))
    }
}

/// Seals a body into a spool file a chunk at a time, as it arrives.
#[derive(Debug)]
struct SpoolWriter {
    file: Arc<SpoolFile>,
    pending: BytesMut,
    chunks: u64,
}

impl SpoolWriter {
    async fn create(dir: &Path) -> io::Result<SpoolWriter> {
        let dir = dir.to_owned();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(io::Error::other)??;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map(LessSafeKey::new)
            .map_err(|_| io::Error::other("cannot make a spool key"))?;
        Ok(SpoolWriter {
            file: Arc::new(SpoolFile { file, key, len: 0 }),
            pending: BytesMut::new(),
            chunks: 0,
        })
    }

    async fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= CHUNK {
            let chunk = self.pending.split_to(CHUNK);
            self.seal(chunk).await?;
        }
        Ok(())
    }

    async fn seal(&mut self, chunk: BytesMut) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        let index = self.chunks;
        tokio::task::spawn_blocking(move || {
            let mut sealed = Vec::with_capacity(chunk.len() + TAG);
            sealed.extend_from_slice(&chunk);
            file.key
                .seal_in_place_append_tag(nonce(index), Aad::empty(), &mut sealed)
                .map_err(|_| io::Error::other("cannot seal a spool chunk"))?;
            file.file.write_all_at(&sealed, offset(index))
        })
        .await
        .map_err(io::Error::other)??;
        self.chunks += 1;
        Ok(())
    }

    /// Seals what is left and hands over the file, `len` bytes long.
    async fn finish(mut self, len: u64) -> io::Result<SpoolFile> {
        if !self.pending.is_empty() {
            let last = self.pending.split();
            self.seal(last).await?;
        }
        let file = Arc::try_unwrap(self.file)
            .map_err(|_| io::Error::other("a spool chunk is still being written"))?;
        Ok(SpoolFile { len, ..file })
    }
}

#[cfg(test)]
mod tests;
