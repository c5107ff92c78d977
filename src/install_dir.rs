//! The install directory on a host, and every change made to it.
//!
//! ```text
//! {dir}/.release.lock        held while an install runs (serialises installs on one host)
//! {dir}/.release-artifact    the artifact this directory belongs to
//! {dir}/current -> releases/{N}
//! {dir}/releases/{N}/        an unpacked, verified build
//! {dir}/releases/{N}.release its full manifest
//! {dir}/releases/{N}.partial an unpack in progress (or left by a killed install)
//! ```
//!
//! `current` only ever changes by renaming a new symlink over it, so a reader (or a crash)
//! sees the old release or the new one, never neither.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::error::Problem;
use crate::manifest::Manifest;

const LOCK: &str = ".release.lock";
const ARTIFACT_MARK: &str = ".release-artifact";
const CURRENT: &str = "current";
const RELEASES: &str = "releases";

/// An install directory, locked for the lifetime of this value.
#[derive(Debug)]
pub struct InstallDir {
    root: PathBuf,
    _lock: fs_err::File,
}

/// A read-only view, for `release current` (no lock, no changes).
#[derive(Debug)]
pub struct InstallView {
    root: PathBuf,
}

impl InstallView {
    /// A view of `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The build `current` points to, if any.
    pub fn current(&self) -> Option<u64> {
        current_of(&self.root)
    }

    /// The manifest kept beside release `n`.
    pub fn manifest(&self, n: u64) -> Option<Manifest> {
        manifest_of(&self.root, n)
    }

    /// Release numbers on disk, ascending.
    pub fn releases(&self) -> Vec<u64> {
        releases_of(&self.root)
    }
}

impl InstallDir {
    /// Creates `root` if needed and takes its lock, waiting for another install to finish.
    pub fn lock(root: &Path, waiting: impl FnOnce()) -> Result<Self> {
        fs_err::create_dir_all(root.join(RELEASES))
            .with_context(|| format!("cannot create the install directory `{}`", root.display()))?;
        let lock = fs_err::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))?;
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

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refuses a directory that belongs to another artifact (unless `force`); marks it ours.
    pub fn claim_for(&self, artifact: &str, force: bool) -> Result<()> {
        let mark = self.root.join(ARTIFACT_MARK);
        match fs_err::read_to_string(&mark) {
            Ok(owner) if owner.trim() == artifact => return Ok(()),
            Ok(owner) if !force => {
                return Err(Problem::Usage(format!(
                    "`{}` holds artifact `{}`, not `{artifact}`: use another --dir (one \
                     directory holds one artifact), or --force",
                    self.root.display(),
                    owner.trim()
                ))
                .into());
            }
            _ => {}
        }
        fs_err::write(&mark, format!("{artifact}\n"))?;
        Ok(())
    }

    /// The build `current` points to, if any.
    pub fn current(&self) -> Option<u64> {
        current_of(&self.root)
    }

    /// The manifest kept beside release `n`.
    pub fn manifest(&self, n: u64) -> Option<Manifest> {
        manifest_of(&self.root, n)
    }

    /// The directory of release `n`.
    pub fn release_dir(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(n.to_string())
    }

    /// A fresh, empty directory to unpack release `n` into (any leftover is removed first).
    pub fn fresh_partial(&self, n: u64) -> Result<PathBuf> {
        let partial = self.partial_dir(n);
        remove_dir_if_present(&partial)?;
        fs_err::create_dir(&partial)?;
        Ok(partial)
    }

    /// Removes a partial directory (after a failed unpack).
    pub fn discard_partial(&self, n: u64) {
        let _ = remove_dir_if_present(&self.partial_dir(n));
    }

    /// Makes the verified partial directory release `n`, with its manifest beside it.
    pub fn finish(&self, n: u64, manifest: &Manifest) -> Result<PathBuf> {
        let dir = self.release_dir(n);
        let partial = self.partial_dir(n);
        // One syncfs instead of an fsync per file: the unpacked files reach the disk before
        // anything can point at them, so a crash after the switch never leaves empty files.
        rustix::fs::syncfs(fs_err::File::open(&partial)?.file())
            .with_context(|| format!("flushing `{}` to disk", partial.display()))?;
        fs_err::write(self.manifest_path(n), manifest.to_text())?;
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
            remove_dir_if_present(&partial)?;
        } else {
            fs_err::rename(&partial, &dir)?;
        }
        sync_dir(&self.root.join(RELEASES))?;
        Ok(dir)
    }

    /// Points `current` at release `n`: a new link renamed over the old one, then fsync.
    pub fn switch_to(&self, n: u64) -> Result<()> {
        let tmp = self.root.join(format!(".{CURRENT}.{}", std::process::id()));
        let _ = fs_err::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new(RELEASES).join(n.to_string()), &tmp)
            .with_context(|| format!("creating `{}`", tmp.display()))?;
        fs_err::rename(&tmp, self.root.join(CURRENT))?;
        sync_dir(&self.root)
    }

    /// Removes `current` (a failed first install leaves nothing running).
    pub fn clear_current(&self) -> Result<()> {
        match fs_err::remove_file(self.root.join(CURRENT)) {
            Ok(()) => sync_dir(&self.root),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Keeps the newest `keep` releases and always `current` and `previous`; removes the rest
    /// and any leftover partial directories. Returns the removed numbers.
    pub fn prune(&self, keep: usize, previous: Option<u64>) -> Result<Vec<u64>> {
        let current = self.current();
        let releases = releases_of(&self.root);
        let cut = releases.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for &n in &releases[..cut] {
            if Some(n) == current || Some(n) == previous {
                continue;
            }
            remove_dir_if_present(&self.release_dir(n))?;
            let _ = fs_err::remove_file(self.manifest_path(n));
            removed.push(n);
        }
        for entry in fs_err::read_dir(self.root.join(RELEASES))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "partial") {
                remove_dir_if_present(&path)?;
            }
        }
        Ok(removed)
    }

    fn partial_dir(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(format!("{n}.partial"))
    }

    fn manifest_path(&self, n: u64) -> PathBuf {
        self.root.join(RELEASES).join(format!("{n}.release"))
    }
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

fn remove_dir_if_present(path: &Path) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    fs_err::File::open(path)?.sync_all()?;
    Ok(())
}
