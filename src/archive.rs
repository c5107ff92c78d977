//! Packing a build: a reproducible tar, compressed, hashed and cut into upload parts, in one
//! streaming pass with bounded memory.
//!
//! Two threads share the work, because reading files and deflating are the slow stages and a
//! build host has at least two cores: one walks the files and writes tar bytes; the other
//! compresses them, hashes the compressed bytes and hands fixed-size parts to the uploader.
//! Reproducible: entries sorted by path bytes, owners 0 with empty names, every mtime the same
//! (the commit time), permission bits kept, and compressors with pinned settings.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use anyhow::{Context as _, Result, anyhow};
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::walk::{Entry, EntryKind};

/// Size of the parts handed to the multipart upload (S3 wants at least 5 MiB but the last).
pub(crate) const PART_SIZE: usize = 8 << 20;
/// Tar bytes move between the two threads in chunks of this size...
const CHUNK_SIZE: usize = 256 << 10;
/// ...at most this many queued.
const CHUNKS_QUEUED: usize = 16;

/// Archive compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compression {
    /// `.tar.gz`.
    Gzip,
    /// `.tar.zst`.
    Zstd,
    /// `.tar`.
    None,
}

impl Compression {
    /// The object name's ending.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".tar.gz",
            Self::Zstd => ".tar.zst",
            Self::None => ".tar",
        }
    }

    /// The level used when none is given. Gzip 1: on two cores it keeps deflate from being
    /// the bottleneck while still storing well under a third of the tar (see bench/).
    pub(crate) fn default_level(self) -> u32 {
        match self {
            Self::Gzip => 1,
            Self::Zstd => 3,
            Self::None => 0,
        }
    }

    /// Checks a level for this compression.
    pub(crate) fn check_level(self, level: u32) -> Result<(), String> {
        let range = match self {
            Self::Gzip => 0..=9,
            Self::Zstd => 1..=19,
            Self::None => 0..=0,
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(format!(
                "{self:?} takes a level from {} to {}, not {level}",
                range.start(),
                range.end()
            ))
        }
    }
}

/// What to pack.
#[derive(Debug)]
pub(crate) struct PackSpec {
    /// The working directory the entries are relative to.
    pub(crate) root: PathBuf,
    /// The members, in order.
    pub(crate) entries: Vec<Entry>,
    /// The RELEASE file, stored first.
    pub(crate) release: String,
    /// The mtime of every member.
    pub(crate) mtime: u64,
    /// Compression and level.
    pub(crate) compression: Compression,
    /// Compression level.
    pub(crate) level: u32,
}

/// What was packed.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    /// Hex SHA-256 of the archive bytes.
    pub(crate) sha256: String,
    /// Archive size in bytes.
    pub(crate) size: u64,
    /// Size of the uncompressed tar.
    pub(crate) tar_size: u64,
}

/// Packs `spec`, sending the archive in parts to `parts` (and a copy to `local`). Blocking:
/// run it on a blocking thread.
///
/// The upload completes when `parts` closes, so a failure must never look like the end:
/// whenever packing stops without finishing, `abandon` is cancelled before `parts` closes.
pub(crate) fn pack(
    spec: &PackSpec,
    parts: mpsc::Sender<Bytes>,
    abandon: CancellationToken,
    local: Option<fs_err::File>,
) -> Result<Packed> {
    let sink = PartWriter::new(parts, abandon, local);
    let (chunk_tx, chunk_rx) = std_mpsc::sync_channel::<Vec<u8>>(CHUNKS_QUEUED);
    std::thread::scope(|scope| {
        let tar_thread = scope.spawn(move || write_tar(spec, ChunkWriter::new(chunk_tx)));
        let mut encoder = Encoder::new(spec, sink)?;
        for chunk in chunk_rx {
            encoder.write_all(&chunk).context("uploading the archive")?;
        }
        // The tar writer closed the stream: finish only if it did so because it was done.
        let tar_size = tar_thread
            .join()
            .map_err(|_| anyhow!("the tar writer panicked"))??;
        let (sha256, size) = encoder
            .finish()
            .and_then(PartWriter::finish)
            .context("uploading the archive")?;
        Ok(Packed {
            sha256,
            size,
            tar_size,
        })
    })
}

/// The compressor in front of the part writer.
enum Encoder {
    Plain(PartWriter),
    Gzip(flate2::write::GzEncoder<PartWriter>),
    Zstd(zstd::Encoder<'static, PartWriter>),
}

impl Encoder {
    fn new(spec: &PackSpec, sink: PartWriter) -> Result<Self> {
        Ok(match spec.compression {
            Compression::None => Self::Plain(sink),
            // flate2's gzip header has no name and mtime 0: reproducible as it is.
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::new(spec.level),
            )),
            Compression::Zstd => {
                let mut encoder = zstd::Encoder::new(sink, spec.level as i32)?;
                // A fixed worker count: zstd's output then does not depend on the machine.
                encoder.multithread(2)?;
                Self::Zstd(encoder)
            }
        })
    }

    fn finish(self) -> io::Result<PartWriter> {
        match self {
            Self::Plain(sink) => Ok(sink),
            Self::Gzip(encoder) => encoder.finish(),
            Self::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(data),
            Self::Gzip(w) => w.write(data),
            Self::Zstd(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::Zstd(w) => w.flush(),
        }
    }
}

/// Writes the tar stream; returns its size.
fn write_tar(spec: &PackSpec, out: ChunkWriter) -> Result<u64> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut header = header(tar::EntryType::Regular, 0o644, spec.mtime);
    header.set_size(spec.release.len() as u64);
    builder
        .append_data(&mut header, "RELEASE", spec.release.as_bytes())
        .context("writing RELEASE into the archive")?;
    for entry in &spec.entries {
        append(&mut builder, &spec.root, entry, spec.mtime)
            .with_context(|| format!("archiving `{}`", entry.path.display()))?;
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out.written)
}

fn append(
    builder: &mut tar::Builder<ChunkWriter>,
    root: &Path,
    entry: &Entry,
    mtime: u64,
) -> Result<()> {
    match &entry.kind {
        EntryKind::File { size } => {
            let file = fs_err::File::open(root.join(&entry.path))?;
            let mut header = header(tar::EntryType::Regular, entry.mode, mtime);
            header.set_size(*size);
            let reader = ExactReader {
                inner: file.take(*size),
                remaining: *size,
            };
            builder.append_data(&mut header, &entry.path, reader)?;
        }
        EntryKind::Dir => {
            let mut header = header(tar::EntryType::Directory, entry.mode, mtime);
            builder.append_data(&mut header, &entry.path, io::empty())?;
        }
        EntryKind::Symlink(target) => {
            let mut header = header(tar::EntryType::Symlink, 0o777, mtime);
            builder.append_link(&mut header, &entry.path, target)?;
        }
    }
    Ok(())
}

/// A GNU header with every field that could vary fixed.
fn header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header
}

/// Reads exactly `remaining` bytes: a file that shrank while being archived is an error, not a
/// corrupt archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file changed size while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The tar thread's output: fixed-size chunks over a bounded channel.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: std_mpsc::SyncSender<Vec<u8>>,
    written: u64,
}

impl ChunkWriter {
    fn new(tx: std_mpsc::SyncSender<Vec<u8>>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK_SIZE),
            tx,
            written: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// The compressor's output: hashed, counted, copied to the local file, cut into parts.
struct PartWriter {
    part: BytesMut,
    abandon: CancellationToken,
    finished: bool,
    hasher: Sha256,
    size: u64,
    parts: mpsc::Sender<Bytes>,
    local: Option<io::BufWriter<fs_err::File>>,
}

impl PartWriter {
    fn new(
        parts: mpsc::Sender<Bytes>,
        abandon: CancellationToken,
        local: Option<fs_err::File>,
    ) -> Self {
        Self {
            part: BytesMut::with_capacity(PART_SIZE),
            abandon,
            finished: false,
            hasher: Sha256::new(),
            size: 0,
            parts,
            local: local.map(|f| io::BufWriter::with_capacity(1 << 20, f)),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.part, BytesMut::with_capacity(PART_SIZE));
        self.parts
            .blocking_send(part.freeze())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends the last part; returns the hex digest and size.
    fn finish(mut self) -> io::Result<(String, u64)> {
        // An empty archive cannot happen (RELEASE is always there), so the last part has bytes.
        if !self.part.is_empty() {
            self.send()?;
        }
        if let Some(local) = &mut self.local {
            local.flush()?;
            local.get_ref().sync_all()?;
        }
        self.finished = true;
        let hasher = std::mem::take(&mut self.hasher);
        Ok((hex::encode(hasher.finalize()), self.size))
    }
}

impl Drop for PartWriter {
    /// Runs before `parts` closes: an unfinished archive cancels the upload instead of ending it.
    fn drop(&mut self) {
        if !self.finished {
            self.abandon.cancel();
        }
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PART_SIZE - self.part.len());
        let data = &data[..n];
        self.hasher.update(data);
        self.size += n as u64;
        if let Some(local) = &mut self.local {
            local.write_all(data)?;
        }
        self.part.extend_from_slice(data);
        if self.part.len() == PART_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
