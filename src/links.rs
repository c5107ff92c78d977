//! The one rule for symbolic links in a release, shared by `build` (which refuses to store a
//! link that every host would refuse) and `install` (which refuses to unpack one).
//!
//! A link is allowed when both hold:
//! - its text alone stays inside the release, read from the link's place: not absolute, and
//!   its `..` steps never climb above the release's top (checked per entry, before anything is
//!   created);
//! - its resolution stays inside once the whole tree is there, following the other links of the
//!   tree: `l1 -> .` plus `esc -> l1/l1/../../` passes the first check but resolves to the
//!   release's parent. This is decided by the kernel (`openat2` with `RESOLVE_BENEATH`), or, where
//!   the kernel lacks `openat2` (before Linux 5.6, or a seccomp filter that hides it), by a walk
//!   that resolves component by component the same way. A link that dangles inside the tree is
//!   allowed (its target may be made later, and resolving it reaches nothing); a loop is not.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The kernel's limit on links followed in one resolution (`MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Why a link is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The target is an absolute path.
    #[error("a link to the absolute path `{}`", .0.display())]
    Absolute(PathBuf),
    /// The target's own `..` steps climb above the release.
    #[error("a link to `{}`, outside the release", .0.display())]
    Climbs(PathBuf),
    /// Following the tree's other links, the target resolves outside the release.
    #[error(
        "a link to `{}` that resolves outside the release through other links of the tree",
        .0.display()
    )]
    EscapesThroughLinks(PathBuf),
    /// Following the tree's links never ends (or takes more than 40 of them).
    #[error("a link to `{}` that loops (more than 40 links to follow)", .0.display())]
    Loops(PathBuf),
    /// Resolving the link failed for another reason.
    #[error("a link to `{}` that cannot be resolved ({})", .0.display(), .1)]
    Unresolvable(PathBuf, io::Error),
}

/// The first check: a link at `link_path` (relative to the release's top) pointing at `target`
/// must stay inside by its text alone.
pub(crate) fn check_text(link_path: &Path, target: &Path) -> Result<(), LinkError> {
    if target.has_root() {
        return Err(LinkError::Absolute(target.to_owned()));
    }
    let mut depth: usize = link_path.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| LinkError::Climbs(target.to_owned()))?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(LinkError::Absolute(target.to_owned()));
            }
        }
    }
    Ok(())
}

/// The second check, for every link of a finished tree: each of `links` (paths relative to
/// `root`, which must be a real directory) resolves inside `root`. Returns the first link
/// refused, with why.
pub(crate) fn check_resolved<'a>(
    root: &Path,
    links: impl IntoIterator<Item = &'a Path>,
) -> Result<(), (PathBuf, LinkError)> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        let err = LinkError::Unresolvable(root.to_owned(), e.into());
        (root.to_owned(), err)
    })?;
    for link in links {
        let target = || fs_err::read_link(root.join(link)).unwrap_or_default();
        let verdict = match resolve_by_kernel(&dir, link) {
            Some(verdict) => verdict,
            None => resolve_by_walk(root, link),
        };
        let refused = match verdict {
            Resolved::Inside => continue,
            Resolved::Outside => LinkError::EscapesThroughLinks(target()),
            Resolved::Loop => LinkError::Loops(target()),
            Resolved::Failed(err) => LinkError::Unresolvable(target(), err),
        };
        return Err((link.to_owned(), refused));
    }
    Ok(())
}

/// Where resolving a path from the release's top ends.
#[derive(Debug)]
enum Resolved {
    /// At something inside, or at nothing (a dangling link stays dangling inside).
    Inside,
    /// Above the top, or at an absolute path.
    Outside,
    /// In a loop of links.
    Loop,
    /// Resolution failed otherwise (permissions, a name too long).
    Failed(io::Error),
}

/// The kernel's verdict, or `None` where it has no `openat2`.
fn resolve_by_kernel(dir: &OwnedFd, link: &Path) -> Option<Resolved> {
    // Renames elsewhere on the system make `RESOLVE_BENEATH` answer EAGAIN; the tree itself
    // does not change, so a few tries settle it.
    for _ in 0..8 {
        let opened = rustix::fs::openat2(
            dir.as_fd(),
            link,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        return Some(match opened {
            Ok(_) | Err(Errno::NOENT | Errno::NOTDIR) => Resolved::Inside,
            Err(Errno::XDEV) => Resolved::Outside,
            Err(Errno::LOOP) => Resolved::Loop,
            Err(Errno::AGAIN) => continue,
            // Not there, or hidden by a seccomp filter (older container runtimes answer EPERM).
            Err(Errno::NOSYS | Errno::PERM) => return None,
            Err(err) => Resolved::Failed(err.into()),
        });
    }
    Some(Resolved::Failed(io::Error::other(
        "the kernel kept answering EAGAIN",
    )))
}

/// Resolves `link` below `root` one component at a time, following links as the kernel does,
/// and says whether it stays inside.
fn resolve_by_walk(root: &Path, link: &Path) -> Resolved {
    // Components still to resolve, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, link);
    // Real directories below `root` reached so far.
    let mut at = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if !at.pop() {
                return Resolved::Outside;
            }
            continue;
        }
        let here = root.join(&at).join(&name);
        let meta = match fs_err::symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Resolved::Inside,
            Err(err) if err.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                return Resolved::Inside;
            }
            Err(err) => return Resolved::Failed(err),
        };
        if meta.is_symlink() {
            hops += 1;
            if hops > MAX_HOPS {
                return Resolved::Loop;
            }
            let target = match fs_err::read_link(&here) {
                Ok(target) => target,
                Err(err) => return Resolved::Failed(err),
            };
            if target.has_root() {
                return Resolved::Outside;
            }
            push_components(&mut pending, &target);
        } else if meta.is_dir() {
            at.push(&name);
        } else {
            // A file: the end of the path, or a component used as a directory (ENOTDIR).
            return Resolved::Inside;
        }
    }
    Resolved::Inside
}

/// Pushes `path`'s components so that its first is popped next; `.` is dropped.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn link_texts_must_stay_inside() {
        let ok = |link: &str, target: &str| check_text(Path::new(link), Path::new(target)).is_ok();
        assert!(ok("a/b", "../c"));
        assert!(ok("a/b", "c/../../d"));
        assert!(!ok("a/b", "../../c"));
        assert!(!ok("b", ".."));
        assert!(!ok("b", "/etc/passwd"));
        assert!(ok("b", "."));
    }

    /// A tree of `links` (path, target) and `dirs`, checked both ways: kernel and walk agree.
    fn verdicts(dirs: &[&str], links: &[(&str, &str)]) -> Vec<String> {
        let root = tempfile::tempdir().unwrap();
        for dir in dirs {
            fs_err::create_dir_all(root.path().join(dir)).unwrap();
        }
        fs_err::write(root.path().join("file"), "x").unwrap();
        for (path, target) in links {
            symlink(target, root.path().join(path)).unwrap();
        }
        let dir =
            rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        links
            .iter()
            .map(|(path, _)| {
                let kernel = resolve_by_kernel(&dir, Path::new(path)).expect("openat2");
                let walk = resolve_by_walk(root.path(), Path::new(path));
                let (kernel, walk) = (format!("{kernel:?}"), format!("{walk:?}"));
                assert_eq!(kernel, walk, "{path}");
                kernel
            })
            .collect()
    }

    #[test]
    fn chains_of_links_that_leave_the_tree_are_outside() {
        let up8 = "l1/l1/l1/l1/l1/l1/l1/l1/../../../../../../../../";
        assert_eq!(
            verdicts(&[], &[("l1", "."), ("esc", up8)]),
            ["Inside", "Outside"]
        );
        assert_eq!(
            verdicts(
                &["a/b"],
                &[("a/b/up", "../.."), ("host", "a/b/up/../etc/hostname")]
            ),
            ["Inside", "Outside"]
        );
        assert_eq!(
            verdicts(
                &["a/b"],
                &[("a/b/up", "../.."), ("x", "a/b/up/a/b/up/file")]
            ),
            ["Inside", "Inside"]
        );
    }

    #[test]
    fn dangling_links_inside_are_fine_and_loops_are_not() {
        assert_eq!(
            verdicts(
                &["d"],
                &[
                    ("gone", "d/missing/../../x"),
                    ("through-file", "file/.."),
                    ("loop-a", "loop-b"),
                    ("loop-b", "loop-a"),
                    ("abs", "d/../abs2"),
                    ("abs2", "/etc"),
                ]
            ),
            ["Inside", "Inside", "Loop", "Loop", "Outside", "Outside"]
        );
    }

    #[test]
    fn the_first_link_refused_is_named() {
        let root = tempfile::tempdir().unwrap();
        symlink(".", root.path().join("l1")).unwrap();
        symlink("l1/l1/../..", root.path().join("esc")).unwrap();
        let links = [Path::new("l1"), Path::new("esc")];
        let (link, err) = check_resolved(root.path(), links).unwrap_err();
        assert_eq!(link, Path::new("esc"));
        assert!(err.to_string().contains("through other links"), "{err}");
    }
}
