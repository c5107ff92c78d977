//! Unpacking a downloaded archive safely, whatever the archive holds.
//!
//! Every entry is checked before it touches the disk: paths must be relative with no `..`;
//! only regular files, directories, symbolic links and hard links are allowed (no devices or
//! pipes); a symbolic link's target must stay inside the release, read from the link's place;
//! a hard link must name a member already extracted; no setuid or setgid bits; and nothing is
//! written through a link (every parent of an entry must be a real directory), which is what
//! makes the lexical checks of link targets sound. Owners are never restored; modes are.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::collections::HashSet;
use std::fs::Permissions;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};

/// Archive compression, from the object name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.tar`.
    Tar,
    /// `.tar.gz` / `.tgz`.
    Gzip,
    /// `.tar.zst`.
    Zstd,
}

impl Format {
    /// The format an archive's name says it has.
    pub fn of(name: &str) -> Result<Self> {
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
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks `input` into `dest` (which must exist and be empty). Returns the reader afterwards,
/// so the caller can read any trailing bytes (the digest covers the whole object).
pub fn unpack<R: Read>(input: R, format: Format, dest: &Path) -> Result<(Unpacked, R)> {
    match format {
        Format::Tar => unpack_tar(input, dest),
        Format::Gzip => {
            let (unpacked, decoder) = unpack_tar(flate2::read::MultiGzDecoder::new(input), dest)?;
            Ok((unpacked, decoder.into_inner()))
        }
        Format::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(io::BufReader::new(input))?;
            let (unpacked, decoder) = unpack_tar(decoder, dest)?;
            Ok((unpacked, decoder.finish().into_inner()))
        }
    }
}

fn unpack_tar<R: Read>(input: R, dest: &Path) -> Result<(Unpacked, R)> {
    let mut archive = tar::Archive::new(input);
    let mut unpacked = Unpacked::default();
    let mut dirs = Dirs::default();
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry
            .path()
            .context("reading an entry's path")?
            .into_owned();
        unpack_entry(&mut entry, &path, dest, &mut unpacked, &mut dirs)
            .with_context(|| format!("refusing archive entry `{}`", path.display()))?;
    }
    // Directory modes last, so a read-only directory does not stop its own children.
    for (dir, mode) in dirs.modes.iter().rev() {
        fs_err::set_permissions(dir, Permissions::from_mode(*mode))?;
    }
    Ok((unpacked, archive.into_inner()))
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    dest: &Path,
    unpacked: &mut Unpacked,
    dirs: &mut Dirs,
) -> Result<()> {
    let relative = checked_relative(path)?;
    if relative.as_os_str().is_empty() {
        return Ok(()); // `./` itself
    }
    let header = entry.header().clone();
    let mode = header.mode().context("bad mode")?;
    if mode & 0o6000 != 0 {
        bail!("it has the setuid or setgid bit (mode {mode:o})");
    }
    let target = dest.join(&relative);
    ensure_real_parents(dest, &relative, dirs)?;
    let kind = header.entry_type();
    match kind {
        tar::EntryType::Directory => {
            if !target.is_dir() {
                fs_err::create_dir(&target)?;
            }
            dirs.modes.push((target, mode & 0o777));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_existing(&target)?;
            let mut file = fs_err::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&target)?;
            unpacked.bytes += io::copy(entry, &mut file)?;
            unpacked.files += 1;
            if let Ok(mtime) = header.mtime() {
                let _ = file
                    .file()
                    .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            }
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()?
                .context("a symbolic link without a target")?;
            check_link_target(&relative, &link)?;
            remove_existing(&target)?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating link `{}`", target.display()))?;
        }
        tar::EntryType::Link => {
            let link = entry.link_name()?.context("a hard link without a target")?;
            let source = dest.join(checked_relative(&link)?);
            ensure_real_parents(dest, &checked_relative(&link)?, dirs)?;
            let meta = fs_err::symlink_metadata(&source)
                .context("a hard link to a member that is not there (or comes later)")?;
            if !meta.is_file() {
                bail!("a hard link to something that is not a regular file");
            }
            remove_existing(&target)?;
            fs_err::hard_link(&source, &target)?;
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

/// A symbolic link at `link_path` (relative to the release) pointing at `target` must stay
/// inside the release.
fn check_link_target(link_path: &Path, target: &Path) -> Result<()> {
    if target.is_absolute() {
        bail!("a link to the absolute path `{}`", target.display());
    }
    let mut depth: usize = link_path.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1).with_context(|| {
                    format!("a link to `{}`, outside the release", target.display())
                })?;
            }
            Component::RootDir | Component::Prefix(_) => bail!("a link to an absolute path"),
        }
    }
    Ok(())
}

/// Directories seen while unpacking.
#[derive(Debug, Default)]
struct Dirs {
    /// Directory entries and their modes, applied at the end.
    modes: Vec<(PathBuf, u32)>,
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
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs_err::create_dir(&dir)?,
            Err(err) => return Err(err.into()),
        }
        dirs.real.insert(seen.clone());
    }
    Ok(())
}

/// A later entry replaces an earlier one of the same name (as tar does), but never a directory.
fn remove_existing(target: &Path) -> Result<()> {
    match fs_err::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => bail!("it would replace a directory"),
        Ok(_) => Ok(fs_err::remove_file(target)?),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_must_stay_inside() {
        assert!(check_link_target(Path::new("a/b"), Path::new("../c")).is_ok());
        assert!(check_link_target(Path::new("a/b"), Path::new("c/../../d")).is_ok());
        assert!(check_link_target(Path::new("a/b"), Path::new("../../c")).is_err());
        assert!(check_link_target(Path::new("b"), Path::new("..")).is_err());
        assert!(check_link_target(Path::new("b"), Path::new("/etc/passwd")).is_err());
        assert!(check_link_target(Path::new("b"), Path::new(".")).is_ok());
    }

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
}
