//! Unpacking a downloaded archive safely, whatever the archive holds.
//!
//! Every entry is checked before it touches the disk: paths must be relative with no `..`;
//! only regular files, directories, symbolic links and hard links are allowed (no devices or
//! pipes); a hard link must name a member already extracted; no setuid or setgid bits; and
//! nothing is written through a link (every parent of an entry must be a real directory).
//! Symbolic links follow the rule of `links`: checked by their text as they come, and by their
//! resolution once the whole tree is there. Long-name and PAX headers are read only up to
//! [`MAX_EXTENSION`] bytes, since the archive is not yet verified while it is unpacked. Owners
//! are never restored; modes follow one policy for files and directories (`file_mode`).

use fs_err::os::unix::fs::OpenOptionsExt;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::Permissions;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};

use crate::links;

/// Archive compression, from the object name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.tar`.
    Tar,
    /// `.tar.gz` / `.tgz`.
    Gzip,
    /// `.tar.zst`.
    Zstd,
}

impl Format {
    /// The format an archive's name says it has.
    pub(crate) fn of(name: &str) -> Result<Self> {
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Ok(Self::Gzip)
        } else if name.ends_with(".tar.zst") {
            Ok(Self::Zstd)
        } else if name.ends_with(".tar") {
            Ok(Self::Tar)
        } else {
            bail!("`{name}` is not a .tar, .tar.gz or .tar.zst archive")
        }
    }
}

/// What was unpacked.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unpacked {
    /// Regular files written.
    pub(crate) files: u64,
    /// Bytes of file content written.
    pub(crate) bytes: u64,
}

/// Bytes per chunk handed from the decompressing thread to the unpacker.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the two: bounds memory (512 KiB) whatever the archive's size, and
/// keeps what the unpacker reads mostly in cache.
const CHUNKS_QUEUED: usize = 8;
/// Read chunks handed back for reuse, so buffers are not allocated and faulted in again for
/// every chunk (page faults per install of the push benchmark's build: ~3,600 → ~2,400).
const CHUNKS_RECYCLED: usize = 4;

/// Unpacks `input` into `dest` (which must exist and be empty). Reads `input` up to the end of
/// the archive, not always to its end: the caller reads what follows (the digest covers the
/// whole object). A compressed archive is inflated on a second thread, so that inflating and
/// creating files (about half of an install each) overlap.
pub(crate) fn unpack<R: Read + Send>(
    input: &mut R,
    format: Format,
    dest: &Path,
) -> Result<Unpacked> {
    if format == Format::Tar {
        return unpack_tar(input, dest);
    }
    let (sender, receiver) = mpsc::sync_channel(CHUNKS_QUEUED);
    let (recycle, recycled) = mpsc::sync_channel(CHUNKS_RECYCLED);
    std::thread::scope(|scope| {
        scope.spawn(move || decompress(input, format, &sender, &recycled));
        let mut chunks = ChunkReader {
            receiver,
            recycle,
            chunk: Vec::new(),
            read: 0,
        };
        // Returning drops the receiver, which stops the other thread at its next chunk.
        unpack_tar(&mut chunks, dest)
    })
}

/// Sends `input`'s decompressed bytes in chunks (reusing the buffers handed back), then an
/// error if decompressing failed; stops early once the unpacker is gone.
fn decompress<R: Read>(
    input: R,
    format: Format,
    sender: &SyncSender<io::Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
) {
    let decoder: io::Result<Box<dyn Read + '_>> = match format {
        Format::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(input))),
        Format::Zstd => zstd::stream::read::Decoder::new(input).map(|d| Box::new(d) as _),
        Format::Tar => Ok(Box::new(input)),
    };
    let mut decoder = match decoder {
        Ok(decoder) => decoder,
        Err(err) => {
            let _ = sender.send(Err(err));
            return;
        }
    };
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0); // zeroes only what was never written
        let filled = match read_full(&mut decoder, &mut chunk) {
            Ok(0) => return,
            Ok(filled) => filled,
            Err(err) => {
                let _ = sender.send(Err(err));
                return;
            }
        };
        chunk.truncate(filled);
        if sender.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The decompressed stream, from the other thread's chunks; read ones go back for reuse.
struct ChunkReader {
    receiver: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    read: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.read == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    let done = std::mem::replace(&mut self.chunk, chunk?);
                    self.read = 0;
                    if done.capacity() >= CHUNK {
                        let _ = self.recycle.try_send(done); // full or gone: dropped instead
                    }
                }
                Err(_) => return Ok(0), // the decompressor finished
            }
        }
        let n = buf.len().min(self.chunk.len() - self.read);
        buf[..n].copy_from_slice(&self.chunk[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

/// The largest GNU long name, long link name or PAX extension block read. A path on Linux is
/// at most 4 KiB, so no real archive comes near; the bound keeps a hostile header (read before
/// the archive's digest is known) from filling memory.
pub(crate) const MAX_EXTENSION: u64 = 64 << 10;

/// What unpacking has made so far.
struct Tree<'a> {
    dest: &'a Path,
    unpacked: Unpacked,
    dirs: Dirs,
    /// Every symbolic link created (relative), checked once the whole tree is there.
    links: Vec<PathBuf>,
}

fn unpack_tar(input: impl Read, dest: &Path) -> Result<Unpacked> {
    let mut archive = tar::Archive::new(input);
    let mut tree = Tree {
        dest,
        unpacked: Unpacked::default(),
        dirs: Dirs::default(),
        links: Vec::new(),
    };
    tree.dirs.modes.insert(dest.to_owned(), dir_mode(0o755));
    let mut extensions = Extensions::default();
    // Raw entries: the tar crate would read a long name or PAX block whole, whatever its
    // declared size; here each one is bounded first, then applied to the member it describes.
    for entry in archive.entries().context("reading the archive")?.raw(true) {
        let mut entry = entry.context("reading the archive")?;
        if extensions.read(&mut entry)? {
            continue;
        }
        let described = std::mem::take(&mut extensions);
        let path = described.path(&entry);
        let link = described.link(&entry);
        described
            .check_size(&entry)
            .and_then(|()| unpack_entry(&mut entry, &path, link, &mut tree))
            .with_context(|| format!("refusing archive entry `{}`", path.display()))?;
    }
    if !extensions.is_empty() {
        bail!("the archive ends with a long name or PAX header that describes no member");
    }
    // Links last: a link may resolve through links (or to members) that come after it.
    links::check_resolved(dest, tree.links.iter().map(PathBuf::as_path)).map_err(
        |(link, err)| {
            anyhow::Error::new(err).context(format!("refusing archive entry `{}`", link.display()))
        },
    )?;
    // Directory modes last, children first, so that no mode stops the unpacking of a child.
    for (dir, mode) in tree.dirs.modes.iter().rev() {
        fs_err::set_permissions(dir, Permissions::from_mode(*mode))?;
    }
    Ok(tree.unpacked)
}

/// The GNU long name, long link name and PAX extensions read for the next member.
#[derive(Debug, Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }

    /// Reads `entry` if it is an extension header (at most [`MAX_EXTENSION`] bytes); says
    /// whether it was one. Recognised as the tar crate does: only in GNU or ustar headers.
    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<bool> {
        let header = entry.header();
        if header.as_gnu().is_none() && header.as_ustar().is_none() {
            return Ok(false);
        }
        let kind = header.entry_type();
        let (slot, what) = if kind.is_gnu_longname() {
            (&mut self.long_name, "GNU long name")
        } else if kind.is_gnu_longlink() {
            (&mut self.long_link, "GNU long link name")
        } else if kind.is_pax_local_extensions() {
            (&mut self.pax, "PAX extension")
        } else {
            return Ok(false);
        };
        let size = entry.size();
        if size > MAX_EXTENSION {
            bail!(
                "refusing the archive: a {what} header of {size} bytes (at most {MAX_EXTENSION} \
                 are read from an archive not yet verified)"
            );
        }
        if slot.is_some() {
            bail!("refusing the archive: two {what} headers describe one member");
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .context("reading the archive")?;
        *slot = Some(data);
        Ok(true)
    }

    /// The member's path: a long name, else a PAX `path`, else the header's (as the tar crate
    /// reads them).
    fn path<R: Read>(&self, entry: &tar::Entry<'_, R>) -> PathBuf {
        let bytes = match (&self.long_name, self.pax_value(b"path")) {
            (Some(name), _) => Cow::Borrowed(without_nul(name)),
            (None, Some(value)) => Cow::Borrowed(value),
            (None, None) => entry.path_bytes(),
        };
        PathBuf::from(OsStr::from_bytes(&bytes))
    }

    /// The member's link target: a long link name, else a PAX `linkpath`, else the header's.
    fn link<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Option<PathBuf> {
        let bytes = match (&self.long_link, self.pax_value(b"linkpath")) {
            (Some(name), _) => Cow::Borrowed(without_nul(name)),
            (None, Some(value)) => Cow::Borrowed(value),
            (None, None) => entry.link_name_bytes()?,
        };
        Some(PathBuf::from(OsStr::from_bytes(&bytes)))
    }

    /// Raw entries are read with the header's size: a PAX `size` that says otherwise would
    /// make this unpacker and another tar see different members, so it is refused.
    fn check_size<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Result<()> {
        let Some(value) = self.pax_value(b"size") else {
            return Ok(());
        };
        let size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        if size != Some(entry.size()) {
            bail!("its PAX size differs from its header's (not supported)");
        }
        Ok(())
    }

    fn pax_value(&self, key: &[u8]) -> Option<&[u8]> {
        tar::PaxExtensions::new(self.pax.as_deref()?)
            .filter_map(Result::ok)
            .find(|record| record.key_bytes() == key)
            .map(|record| record.value_bytes())
    }
}

/// A GNU long name without its terminating NUL.
fn without_nul(name: &[u8]) -> &[u8] {
    name.strip_suffix(&[0]).unwrap_or(name)
}

/// The mode policy, the same for files and directories (docs/decisions.md): the archive's
/// permission bits without group and other write, whatever the umask; the owner can always
/// read and write (and enter a directory), so a release can always be pruned.
fn file_mode(archived: u32) -> u32 {
    archived & 0o755 | 0o600
}

/// [`file_mode`] for directories.
fn dir_mode(archived: u32) -> u32 {
    archived & 0o755 | 0o700
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    link: Option<PathBuf>,
    tree: &mut Tree<'_>,
) -> Result<()> {
    let relative = checked_relative(path)?;
    let header = entry.header().clone();
    let mode = header.mode().context("bad mode")?;
    if mode & 0o6000 != 0 {
        bail!("it has the setuid or setgid bit (mode {mode:o})");
    }
    if relative.as_os_str().is_empty() {
        if header.entry_type().is_dir() {
            tree.dirs.modes.insert(tree.dest.to_owned(), dir_mode(mode));
        }
        return Ok(()); // `./` itself
    }
    let target = tree.dest.join(&relative);
    ensure_real_parents(tree.dest, &relative, &mut tree.dirs)?;
    match header.entry_type() {
        tar::EntryType::Directory => {
            match fs_err::create_dir(&target) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs_err::symlink_metadata(&target)?.is_dir() {
                        bail!("it would replace a file or link with a directory");
                    }
                }
                other => other?,
            }
            tree.dirs.real.insert(relative);
            tree.dirs.modes.insert(target, dir_mode(mode));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mode = file_mode(mode);
            let create = |target: &Path| {
                fs_err::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(target)
            };
            let mut file = replacing(&target, create)?;
            // `open` applies the umask; the policy does not.
            file.set_permissions(Permissions::from_mode(mode))?;
            tree.unpacked.bytes += io::copy(entry, &mut file)?;
            tree.unpacked.files += 1;
            if let Ok(mtime) = header.mtime() {
                let _ = file
                    .file()
                    .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            }
        }
        tar::EntryType::Symlink => {
            let link = link.context("a symbolic link without a target")?;
            links::check_text(&relative, &link)?;
            replacing(&target, |target| std::os::unix::fs::symlink(&link, target))
                .with_context(|| format!("creating link `{}`", target.display()))?;
            tree.links.push(relative);
        }
        tar::EntryType::Link => {
            let link = link.context("a hard link without a target")?;
            let source = tree.dest.join(checked_relative(&link)?);
            ensure_real_parents(tree.dest, &checked_relative(&link)?, &mut tree.dirs)?;
            let meta = fs_err::symlink_metadata(&source)
                .context("a hard link to a member that is not there (or comes later)")?;
            if !meta.is_file() {
                bail!("a hard link to something that is not a regular file");
            }
            replacing(&target, |target| fs_err::hard_link(&source, target))?;
        }
        other => bail!("entries of type {other:?} (devices, pipes, …) are not allowed"),
    }
    Ok(())
}

/// The path without `.` components; refuses absolute paths and `..`.
fn checked_relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => bail!("the path contains `..`"),
            Component::RootDir | Component::Prefix(_) => bail!("the path is absolute"),
        }
    }
    Ok(out)
}

/// Directories seen while unpacking.
#[derive(Debug, Default)]
struct Dirs {
    /// Every directory made (entries and missing parents) and its mode, applied at the end.
    modes: BTreeMap<PathBuf, u32>,
    /// Directories known to be real (checked or created): a directory is never replaced (see
    /// `remove_existing`), so one check per directory is enough.
    real: HashSet<PathBuf>,
}

/// Every parent of `relative` below `dest` must be a real directory (created if missing): an
/// archive cannot write through a link it planted earlier.
fn ensure_real_parents(dest: &Path, relative: &Path, dirs: &mut Dirs) -> Result<()> {
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || dirs.real.contains(parent) {
        return Ok(());
    }
    let mut dir = dest.to_path_buf();
    let mut seen = PathBuf::new();
    for component in parent.components() {
        dir.push(component);
        seen.push(component);
        if dirs.real.contains(&seen) {
            continue;
        }
        match fs_err::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("its parent `{}` is a link or a file", dir.display()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir(&dir)?;
                dirs.modes.insert(dir.clone(), dir_mode(0o755));
            }
            Err(err) => return Err(err.into()),
        }
        dirs.real.insert(seen.clone());
    }
    Ok(())
}

/// Creates `target` with `create`, which must fail with `AlreadyExists` rather than follow or
/// overwrite anything there. A later entry replaces an earlier one of the same name (as tar
/// does), but never a directory. Trying first costs nothing in the usual case: nothing is there.
fn replacing<T>(target: &Path, create: impl Fn(&Path) -> io::Result<T>) -> Result<T> {
    match create(target) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            if fs_err::symlink_metadata(target)?.is_dir() {
                bail!("it would replace a directory");
            }
            fs_err::remove_file(target)?;
            Ok(create(target)?)
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_relative_without_parent_steps() {
        assert_eq!(
            checked_relative(Path::new("./a/./b")).unwrap(),
            Path::new("a/b")
        );
        assert!(checked_relative(Path::new("a/../b")).is_err());
        assert!(checked_relative(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(Format::of("web-3.tar.gz").unwrap(), Format::Gzip);
        assert_eq!(Format::of("web-3.tar.zst").unwrap(), Format::Zstd);
        assert_eq!(Format::of("web-3.tar").unwrap(), Format::Tar);
        assert!(Format::of("web-3.zip").is_err());
    }

    /// A tar of `entries` (path, bytes; a path ending in `/` is a directory, `name -> target`
    /// a symbolic link), compressed as `format` says.
    fn archive(format: Format, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            if let Some((name, target)) = path.split_once(" -> ") {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            } else if path.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty()).unwrap();
            } else if path.contains("..") {
                // tar refuses to write such a name; a hostile archive has it all the same.
                header.set_size(data.len() as u64);
                header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
        }
        let tar = builder.into_inner().unwrap();
        match format {
            Format::Tar => tar,
            Format::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut gz, &tar).unwrap();
                gz.finish().unwrap()
            }
            Format::Zstd => zstd::encode_all(&tar[..], 1).unwrap(),
        }
    }

    /// Bytes that do not compress to nothing: several chunks of the decompressing thread.
    fn noise(len: usize) -> Vec<u8> {
        let mut state: u32 = 0x9e37_79b9;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_format_unpacks_the_same_files_across_many_chunks() {
        let big = noise(3 * CHUNK + 17);
        for format in [Format::Tar, Format::Gzip, Format::Zstd] {
            let bytes = archive(
                format,
                &[
                    ("d/", b""),
                    ("d/big", &big),
                    ("d/small", b"hello"),
                    ("top", b"x"),
                ],
            );
            let dest = tempfile::tempdir().unwrap();
            let mut input = &bytes[..];
            let unpacked = unpack(&mut input, format, dest.path()).unwrap();
            assert_eq!(unpacked.files, 3, "{format:?}");
            assert_eq!(unpacked.bytes, big.len() as u64 + 6, "{format:?}");
            assert_eq!(
                fs_err::read(dest.path().join("d/big")).unwrap(),
                big,
                "{format:?}"
            );
            assert_eq!(fs_err::read(dest.path().join("d/small")).unwrap(), b"hello");
        }
    }

    #[test]
    fn a_truncated_archive_fails_on_the_unpacking_side() {
        let big = noise(2 * CHUNK);
        for format in [Format::Gzip, Format::Zstd] {
            let bytes = archive(format, &[("a", &big), ("b", &big)]);
            let dest = tempfile::tempdir().unwrap();
            let mut input = &bytes[..bytes.len() / 2];
            let err = unpack(&mut input, format, dest.path()).unwrap_err();
            assert!(
                format!("{err:#}").contains("reading the archive")
                    || format!("{err:#}").contains("refusing archive entry"),
                "{format:?}: {err:#}"
            );
        }
    }

    #[test]
    fn a_hostile_first_entry_stops_both_threads_and_leaves_the_rest_unread() {
        // 64 MiB of zeros after the hostile entry: far more than the chunks in flight, so the
        // decompressing thread must notice that the unpacker is gone.
        let zeros = vec![0; 64 << 20];
        let bytes = archive(Format::Gzip, &[("../escape", b"x"), ("later", &zeros)]);
        let dest = tempfile::tempdir().unwrap();
        let mut input = &bytes[..];
        let err = unpack(&mut input, Format::Gzip, dest.path()).unwrap_err();
        assert!(format!("{err:#}").contains("`..`"), "{err:#}");
        assert!(!dest.path().join("later").exists());
        assert!(!input.is_empty(), "the whole archive was read");
    }

    #[test]
    fn later_entries_replace_files_but_not_directories_and_never_follow_links() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = archive(Format::Gzip, &[("f", b"old"), ("f", b"new")]);
        unpack(&mut &bytes[..], Format::Gzip, dest.path()).unwrap();
        assert_eq!(fs_err::read(dest.path().join("f")).unwrap(), b"new");

        let dest = tempfile::tempdir().unwrap();
        let bytes = archive(Format::Gzip, &[("d/", b""), ("d", b"file")]);
        let err = unpack(&mut &bytes[..], Format::Gzip, dest.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("replace a directory"),
            "{err:#}"
        );

        let dest = tempfile::tempdir().unwrap();
        let bytes = archive(Format::Gzip, &[("f", b"x"), ("l -> f", b""), ("l/", b"")]);
        let err = unpack(&mut &bytes[..], Format::Gzip, dest.path()).unwrap_err();
        assert!(format!("{err:#}").contains("with a directory"), "{err:#}");
        assert!(dest.path().join("l").is_symlink());
    }

    #[test]
    fn one_mode_policy_never_writable_by_others_and_always_owned() {
        assert_eq!(file_mode(0o777), 0o755);
        assert_eq!(file_mode(0o666), 0o644);
        assert_eq!(file_mode(0o444), 0o644);
        assert_eq!(file_mode(0o600), 0o600);
        assert_eq!(file_mode(0o000), 0o600);
        assert_eq!(dir_mode(0o777), 0o755);
        assert_eq!(dir_mode(0o555), 0o755);
        assert_eq!(dir_mode(0o700), 0o700);
        assert_eq!(dir_mode(0o000), 0o700);
    }

    /// A raw header of `kind` announcing `size` bytes, followed by `data`.
    fn raw_member(name: &str, kind: tar::EntryType, size: u64, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn extension_headers_are_bounded_before_they_are_read() {
        // Announces 1 GiB but holds nothing: refused from the header alone.
        let mut tar = raw_member("././@LongLink", tar::EntryType::GNULongName, 1 << 30, b"");
        tar.resize(tar.len() + 1024, 0);
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(&mut &tar[..], Format::Tar, dest.path()).unwrap_err();
        assert!(format!("{err:#}").contains("GNU long name header of 1073741824 bytes"));

        // Within the bound, a long name names the next member.
        let name = format!("{}/{}", "d".repeat(200), "f".repeat(95));
        let mut tar = raw_member(
            "././@LongLink",
            tar::EntryType::GNULongName,
            name.len() as u64 + 1,
            &[name.as_bytes(), b"\0"].concat(),
        );
        tar.extend(raw_member("short", tar::EntryType::Regular, 2, b"hi"));
        tar.resize(tar.len() + 1024, 0);
        let dest = tempfile::tempdir().unwrap();
        unpack(&mut &tar[..], Format::Tar, dest.path()).unwrap();
        assert_eq!(fs_err::read(dest.path().join(&name)).unwrap(), b"hi");

        // An extension header with no member after it.
        let mut tar = raw_member("pax", tar::EntryType::XHeader, 12, b"12 path=abc\n");
        tar.resize(tar.len() + 1024, 0);
        let err = unpack(&mut &tar[..], Format::Tar, dest.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("describes no member"),
            "{err:#}"
        );
    }
}
