//! The install directory on a host, and every change made to it.
//!
//! ```text
//! {dir}/.release.lock        held while an install runs (serialises installs on one host)
//! {dir}/.release-artifact    the artifact this directory belongs to
//! {dir}/current -> releases/{N}
//! {dir}/releases/{N}/        an unpacked, verified build
//! {dir}/releases/{N}.release its full manifest
//! {dir}/releases/{N}.partial an unpack in progress (or left by a killed install)
//! {dir}/.release-pending     the install `current` points at is not finished: its
//!                            after-switch hooks have not succeeded yet
//! {dir}/hooks.log            the hooks' output (see `hooks`)
//! ```
//!
//! `current` only ever changes by renaming a new symlink over it, so a reader (or a crash)
//! sees the old release or the new one, never neither. Small files (the manifest, the pending
//! mark) are written whole to a temporary name, fsynced and renamed, so they are there entire
//! or not at all.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::error::ExitError;
use crate::manifest::Manifest;

const LOCK: &str = ".release.lock";
const ARTIFACT_MARK: &str = ".release-artifact";
const CURRENT: &str = "current";
const RELEASES: &str = "releases";
const PENDING: &str = ".release-pending";
const HOOK_LOG: &str = "hooks.log";
/// The mode of every file install creates in the directory (the lock, the marks, manifests,
/// `hooks.log`): the release files' policy (owner rw, nobody else writes), whatever the umask.
const FILE_MODE: u32 = 0o644;

/// An install whose switch happened but whose after-switch hooks have not succeeded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The build `current` was switched to.
    pub(crate) build: u64,
    /// The build current before (RELEASE_PREVIOUS_BUILD of its hooks).
    pub(crate) previous: Option<u64>,
    /// `current` was switched back to `build` after `previous` failed: if its hooks fail
    /// again there is nothing to go back to.
    pub(crate) switched_back: bool,
}

impl Pending {
    fn to_text(self) -> String {
        format!(
            "BUILD={}\nPREVIOUS={}\nSWITCHED_BACK={}\n",
            self.build,
            self.previous.map(|p| p.to_string()).unwrap_or_default(),
            u8::from(self.switched_back)
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        Some(Self {
            build: value("BUILD")?.parse().ok()?,
            previous: match value("PREVIOUS")? {
                "" => None,
                p => Some(p.parse().ok()?),
            },
            switched_back: value("SWITCHED_BACK")? == "1",
        })
    }
}

/// What pruning removed, and what it could not remove (each with the reason).
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    /// Release numbers removed.
    pub(crate) removed: Vec<u64>,
    /// What could not be removed, and why; the next install tries again.
    pub(crate) failed: Vec<String>,
}

/// An install directory, locked for the lifetime of this value.
#[derive(Debug)]
pub(crate) struct InstallDir {
    root: PathBuf,
    _lock: fs_err::File,
}

/// A read-only view, for `release current` (no lock, no changes).
#[derive(Debug)]
pub(crate) struct InstallView {
    root: PathBuf,
}

impl InstallView {
    /// A view of `root`.
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The build `current` points to, if any.
    pub(crate) fn current(&self) -> Option<u64> {
        current_of(&self.root)
    }

    /// The manifest kept beside release `n`.
    pub(crate) fn manifest(&self, n: u64) -> Option<Manifest> {
        manifest_of(&self.root, n)
    }

    /// Release numbers on disk, ascending.
    pub(crate) fn releases(&self) -> Vec<u64> {
        releases_of(&self.root)
    }

    /// The unfinished install `current` points at, if any (see [`InstallDir::pending`]).
    pub(crate) fn pending(&self) -> Option<Pending> {
        pending_of(&self.root)
    }

    /// The artifact this directory was claimed for by an install, if one was.
    pub(crate) fn artifact(&self) -> Option<String> {
        fs_err::read_to_string(self.root.join(ARTIFACT_MARK))
            .ok()
            .map(|owner| owner.trim().to_owned())
            .filter(|owner| !owner.is_empty())
    }
}

impl InstallDir {
    /// Creates `root` if needed and takes its lock, waiting for another install to finish.
    pub(crate) fn lock(root: &Path, waiting: impl FnOnce()) -> Result<Self> {
        create_readable_dirs(&root.join(RELEASES))
            .with_context(|| format!("cannot create the install directory `{}`", root.display()))?;
        let lock = open_or_create(&root.join(LOCK), fs_err::File::options().write(true))?;
        if lock.file().try_lock().is_err() {
            waiting();
            lock.file()
                .lock()
                .with_context(|| format!("locking `{}`", root.join(LOCK).display()))?;
        }
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where hook output is kept.
    pub(crate) fn hook_log(&self) -> PathBuf {
        self.root.join(HOOK_LOG)
    }

    /// Refuses (exit 2) a `current` that is not a symbolic link: it could never be switched,
    /// and finding out after the download helps nobody.
    pub(crate) fn check_current_is_a_link(&self) -> Result<()> {
        let path = self.root.join(CURRENT);
        let Ok(meta) = fs_err::symlink_metadata(&path) else {
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a file"
        };
        Err(ExitError::Usage(format!(
            "`{}` is {kind}, not a link: install points `current` at releases/N with a \
             symbolic link; move it out of the way and run the install again (nothing was \
             downloaded or changed)",
            path.display()
        ))
        .into())
    }

    /// The unfinished install `current` points at, if any. A mark naming another build is
    /// stale (the install stopped before its switch) and ignored.
    pub(crate) fn pending(&self) -> Option<Pending> {
        pending_of(&self.root)
    }

    /// Records, before a switch, that the install is unfinished until its hooks succeed.
    pub(crate) fn set_pending(&self, pending: Pending) -> Result<()> {
        write_atomic(&self.root.join(PENDING), pending.to_text().as_bytes())
    }

    /// The install is finished (or nothing is current any more).
    pub(crate) fn clear_pending(&self) -> Result<()> {
        match fs_err::remove_file(self.root.join(PENDING)) {
            Ok(()) => sync_dir(&self.root),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Why release `n`, already on disk, should not be switched to as it is: an entry not
    /// owned by this user or root, or writable by others (or by a group not this user's or
    /// root's), could have been changed since it was verified.
    pub(crate) fn untrusted_reason(&self, n: u64) -> Option<String> {
        let me = rustix::process::geteuid().as_raw();
        let my_group = rustix::process::getegid().as_raw();
        for entry in walkdir::WalkDir::new(self.release_dir(n)) {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => return Some(format!("it cannot be read: {err}")),
            };
            if entry.path_is_symlink() {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(err) => return Some(format!("it cannot be read: {err}")),
            };
            let (mode, path) = (meta.mode() & 0o7777, entry.path().display());
            if meta.uid() != me && meta.uid() != 0 {
                return Some(format!("`{path}` is owned by user {}", meta.uid()));
            }
            let group_ok = meta.gid() == my_group || meta.gid() == 0;
            if mode & 0o002 != 0 || (mode & 0o020 != 0 && !group_ok) {
                return Some(format!("`{path}` is writable by others (mode {mode:o})"));
            }
        }
        None
    }

    /// Refuses a directory that belongs to another artifact (unless `force`); marks it ours.
    pub(crate) fn claim_for(&self, artifact: &str, force: bool) -> Result<()> {
        let mark = self.root.join(ARTIFACT_MARK);
        match fs_err::read_to_string(&mark) {
            Ok(owner) if owner.trim() == artifact => return Ok(()),
            Ok(owner) if !force => {
                return Err(ExitError::Usage(format!(
                    "`{}` holds artifact `{}`, not `{artifact}`: use another --dir (one \
                     directory holds one artifact), or --force",
                    self.root.display(),
                    owner.trim()
                ))
                .into());
            }
            _ => {}
        }
        write_atomic(&mark, format!("{artifact}\n").as_bytes())
    }

    /// The build `current` points to, if any.
    pub(crate) fn current(&self) -> Option<u64> {
        current_of(&self.root)
    }

    /// The manifest kept beside release `n`.
    pub(crate) fn manifest(&self, n: u64) -> Option<Manifest> {
        manifest_of(&self.root, n)
    }

    /// The directory of release `n`.
    pub(crate) fn release_dir(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(n.to_string())
    }

    /// A fresh, empty directory to unpack release `n` into (any leftover is removed first).
    pub(crate) fn fresh_partial(&self, n: u64) -> Result<PathBuf> {
        let partial = self.partial_dir(n);
        remove_tree(&partial)
            .with_context(|| format!("removing the leftover `{}`", partial.display()))?;
        fs_err::create_dir(&partial)?;
        Ok(partial)
    }

    /// Removes a partial directory (after a failed unpack); read-only directories in it too.
    pub(crate) fn discard_partial(&self, n: u64) -> Result<()> {
        remove_tree(&self.partial_dir(n))
    }

    /// Makes the verified partial directory release `n`, then writes its manifest beside it:
    /// the manifest vouches for the files, so it never precedes them. A crash in between
    /// leaves no manifest, or the replaced release's, which does not match the build (a
    /// re-run then downloads it again).
    pub(crate) fn finish(&self, n: u64, manifest: &Manifest) -> Result<PathBuf> {
        let dir = self.release_dir(n);
        let partial = self.partial_dir(n);
        // One syncfs instead of an fsync per file: the unpacked files reach the disk before
        // anything can point at them, so a crash after the switch never leaves empty files.
        rustix::fs::syncfs(fs_err::File::open(&partial)?.file())
            .with_context(|| format!("flushing `{}` to disk", partial.display()))?;
        if dir.is_dir() {
            // A forced reinstall, maybe of the running release: swap the two directories in
            // one step (so `current` never dangles), then drop the old copy.
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &partial,
                rustix::fs::CWD,
                &dir,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .with_context(|| format!("replacing `{}`", dir.display()))?;
            // The old copy is garbage now; what cannot be removed, pruning retries and reports.
            let _ = remove_tree(&partial);
        } else {
            fs_err::rename(&partial, &dir)?;
        }
        sync_dir(&self.root.join(RELEASES))?;
        write_atomic(&self.manifest_path(n), manifest.to_text().as_bytes())?;
        Ok(dir)
    }

    /// Points `current` at release `n`: a new link renamed over the old one, then fsync.
    pub(crate) fn switch_to(&self, n: u64) -> Result<()> {
        let tmp = self.root.join(format!(".{CURRENT}.{}", std::process::id()));
        let _ = fs_err::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new(RELEASES).join(n.to_string()), &tmp)
            .with_context(|| format!("creating `{}`", tmp.display()))?;
        fs_err::rename(&tmp, self.root.join(CURRENT))?;
        sync_dir(&self.root)
    }

    /// Removes `current` (a failed first install leaves nothing running).
    pub(crate) fn clear_current(&self) -> Result<()> {
        match fs_err::remove_file(self.root.join(CURRENT)) {
            Ok(()) => sync_dir(&self.root),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Keeps the newest `keep` releases and always `current` and `previous`; removes the rest
    /// and the leftovers of killed installs (partial directories, temporary files). Never
    /// fails: what cannot be removed is listed, and the next install tries again.
    pub(crate) fn prune(&self, keep: usize, previous: Option<u64>) -> Pruned {
        let current = self.current();
        let releases = releases_of(&self.root);
        let cut = releases.len().saturating_sub(keep);
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        let mut remove = |path: &Path, result: Result<()>| match result {
            Ok(()) => true,
            Err(err) => {
                failed.push(format!("removing `{}` failed: {err:#}", path.display()));
                false
            }
        };
        for &n in &releases[..cut] {
            if Some(n) == current || Some(n) == previous {
                continue;
            }
            // The manifest goes last: a release dir without one is never trusted.
            let dir = self.release_dir(n);
            if remove(&dir, remove_tree(&dir)) {
                let _ = fs_err::remove_file(self.manifest_path(n));
                removed.push(n);
            }
        }
        for path in self.leftovers() {
            let result = if path.is_dir() && !path.is_symlink() {
                remove_tree(&path)
            } else {
                fs_err::remove_file(&path).map_err(Into::into)
            };
            remove(&path, result);
        }
        Pruned { removed, failed }
    }

    /// What killed installs leave: `releases/*.partial`, temporary links and files (`.*.tmp`,
    /// `.current.{pid}`). Safe to remove under the lock: no other install is running.
    fn leftovers(&self) -> Vec<PathBuf> {
        let in_dir = |dir: &Path| -> Vec<PathBuf> {
            fs_err::read_dir(dir)
                .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        };
        let releases = in_dir(&self.root.join(RELEASES))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "partial" || e == "tmp"));
        let root = in_dir(&self.root).into_iter().filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!(".{CURRENT}."))
                || (name.starts_with('.') && name.ends_with(".tmp"))
        });
        releases.chain(root).collect()
    }

    fn partial_dir(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(format!("{n}.partial"))
    }

    fn manifest_path(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(format!("{n}.release"))
    }
}

/// Creates `path` and its missing parents as `0755` whatever the umask: the releases below
/// follow one mode policy (docs/decisions.md), and a service user outside the installer's
/// group must reach them. Directories that exist already keep the modes they have.
fn create_readable_dirs(path: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut dir = path;
    while !dir.as_os_str().is_empty() && fs_err::symlink_metadata(dir).is_err() {
        missing.push(dir.to_owned());
        dir = dir.parent().unwrap_or(Path::new(""));
    }
    fs_err::create_dir_all(path)?;
    for dir in missing {
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Opens `path` with `options` (which must allow writing), creating it with [`FILE_MODE`] if
/// missing: `open` applies the umask, the policy does not. A file that exists keeps its mode
/// (as directories do), so a mode the operator chose is not undone, and a file another user
/// owns is still opened rather than failing on `chmod`.
pub(crate) fn open_or_create(
    path: &Path,
    options: &mut fs_err::OpenOptions,
) -> std::io::Result<fs_err::File> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    match options.clone().create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            Ok(file)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => options.open(path),
        Err(err) => Err(err),
    }
}

/// The pending mark, if it names the build `current` points to; a mark naming another build
/// is stale (its install stopped before the switch).
fn pending_of(root: &Path) -> Option<Pending> {
    let text = fs_err::read_to_string(root.join(PENDING)).ok()?;
    let pending = Pending::parse(&text)?;
    (current_of(root) == Some(pending.build)).then_some(pending)
}

fn current_of(root: &Path) -> Option<u64> {
    let target = fs_err::read_link(root.join(CURRENT)).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

fn manifest_of(root: &Path, n: u64) -> Option<Manifest> {
    let text = fs_err::read(root.join(RELEASES).join(format!("{n}.release"))).ok()?;
    Manifest::parse(&text).ok()
}

fn releases_of(root: &Path) -> Vec<u64> {
    let Ok(entries) = fs_err::read_dir(root.join(RELEASES)) else {
        return Vec::new();
    };
    let mut numbers: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// Removes a directory tree if present. Directories the release made read-only (`0555`,
/// `0000`) stop a non-root user, so on failure every directory is made `u+rwx`, walking down,
/// and the removal is tried again.
fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_removable(path)?;
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Gives the owner rwx on `dir` and every directory below it (links are not followed).
fn make_removable(dir: &Path) -> Result<()> {
    let meta = fs_err::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_removable(&entry.path())?;
        }
    }
    Ok(())
}

/// Writes `path` whole or not at all: a temporary file, fsynced, renamed over it, and the
/// directory fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = fs_err::File::create(&tmp)?;
    // `create` applies the umask; the policy does not.
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("writing `{}`", tmp.display()))?;
    file.sync_all()?;
    drop(file);
    fs_err::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(path: &Path) -> Result<()> {
    fs_err::File::open(path)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_marks_round_trip() {
        for pending in [
            Pending {
                build: 7,
                previous: Some(6),
                switched_back: false,
            },
            Pending {
                build: 1,
                previous: None,
                switched_back: true,
            },
        ] {
            assert_eq!(Pending::parse(&pending.to_text()), Some(pending));
        }
        assert_eq!(
            Pending::parse("BUILD=x\nPREVIOUS=\nSWITCHED_BACK=0\n"),
            None
        );
        assert_eq!(Pending::parse(""), None);
    }

    #[test]
    fn leftovers_are_partials_and_temporary_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = InstallDir::lock(tmp.path(), || {}).unwrap();
        for name in ["releases/3", "releases/4.partial"] {
            fs_err::create_dir_all(tmp.path().join(name)).unwrap();
        }
        for name in [
            "releases/3.release",
            "releases/.3.release.tmp",
            ".current.123",
            ".release-pending.tmp",
            ".release-pending",
            "hooks.log",
        ] {
            fs_err::write(tmp.path().join(name), "").unwrap();
        }
        let mut found: Vec<String> = dir
            .leftovers()
            .iter()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ".current.123",
                ".release-pending.tmp",
                "releases/.3.release.tmp",
                "releases/4.partial"
            ]
        );
    }
}
