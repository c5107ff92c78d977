//! Which files go into a build: the PATHs, walked in a fixed order, minus exclusions.
//!
//! Never a `.git` directory (or file, in submodules), never a top-level `RELEASE` (the old job
//! leaves one behind; the tool writes its own). `--exclude` globs match paths relative to the
//! working directory: `*` stays within a directory, `**` crosses them; an excluded directory is
//! not entered. Links are stored as links, never followed.
//!
//! Building the whole working directory inside a git work tree honours git's ignore rules
//! (`.gitignore` files, the repository's `.git/info/exclude`), so that `.env` or `node_modules/`
//! never ship by accident; the user's global excludes file is not read, so the same commit builds
//! the same archive on every machine. PATHs named explicitly are taken whole: they are usually
//! build output, which is git-ignored by design. `--include-ignored` turns the rules off.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::ExitError;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Path relative to the working directory.
    pub(crate) path: PathBuf,
    /// What it is.
    pub(crate) kind: EntryKind,
    /// Permission bits (`0o777`; setuid, setgid and sticky are dropped).
    pub(crate) mode: u32,
}

/// Kinds of member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file of this size.
    File {
        /// Size when walked; a change before it is read is an error.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// The members, sorted by path bytes, and warnings about what was passed over.
#[derive(Debug)]
pub(crate) struct Selection {
    pub(crate) entries: Vec<Entry>,
    /// Things left out that the user may not expect.
    pub(crate) warnings: Vec<String>,
}

/// What to leave out besides `.git` and the top-level `RELEASE`.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// `--exclude` globs.
    pub(crate) excludes: Vec<String>,
    /// Honour git's ignore rules when walking the whole working directory.
    pub(crate) gitignore: bool,
}

/// Walks `paths` (all of `root` when empty) below `root`.
pub(crate) fn select(root: &Path, paths: &[PathBuf], rules: &Rules) -> Result<Selection> {
    let excludes = compile_excludes(&rules.excludes)?;
    let starts = if paths.is_empty() {
        vec![PathBuf::new()]
    } else {
        paths.iter().map(|p| normalize(p)).collect::<Result<_>>()?
    };
    let mut selection = Selection {
        entries: Vec::new(),
        warnings: Vec::new(),
    };
    for start in &starts {
        let full = root.join(start);
        if full.symlink_metadata().is_err() {
            return Err(ExitError::Usage(format!(
                "path `{}` does not exist in `{}`",
                start.display(),
                root.display()
            ))
            .into());
        }
        let whole = start.as_os_str().is_empty();
        let walker = ignore::WalkBuilder::new(&full)
            .standard_filters(false)
            .git_ignore(whole && rules.gitignore)
            .git_exclude(whole && rules.gitignore)
            .parents(true)
            .require_git(true)
            .follow_links(false)
            .filter_entry({
                let root = root.to_owned();
                let excludes = excludes.clone();
                move |e| {
                    let rel = e.path().strip_prefix(&root).unwrap_or(e.path());
                    !is_always_left_out(rel) && !excludes.is_match(rel)
                }
            })
            .build();
        for item in walker {
            let item = match item {
                Ok(item) => item,
                // A bad line in a .gitignore: git skips it too.
                Err(err) if err.is_partial() => {
                    selection.warnings.push(format!("{err}"));
                    continue;
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot read `{}`", full.display()));
                }
            };
            if whole && item.depth() == 0 {
                continue;
            }
            let rel = item.path().strip_prefix(root).unwrap_or(item.path());
            collect(&mut selection, item.path(), rel)?;
        }
    }
    selection.entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    selection.entries.dedup_by(|a, b| a.path == b.path);
    Ok(selection)
}

fn collect(selection: &mut Selection, full: &Path, rel: &Path) -> Result<()> {
    let meta = full
        .symlink_metadata()
        .with_context(|| format!("cannot read `{}`", full.display()))?;
    let kind = if meta.is_file() {
        EntryKind::File { size: meta.len() }
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.file_type().is_symlink() {
        let target = fs_err::read_link(full)?;
        EntryKind::Symlink(target)
    } else {
        selection.warnings.push(format!(
            "`{}` is not a file, directory or link (a socket, pipe or device): left out",
            rel.display()
        ));
        return Ok(());
    };
    selection.entries.push(Entry {
        path: rel.to_owned(),
        kind,
        mode: meta.permissions().mode() & 0o777,
    });
    Ok(())
}

/// `.git` anywhere, and the top-level `RELEASE`.
fn is_always_left_out(rel: &Path) -> bool {
    rel == Path::new("RELEASE") || rel.components().any(|c| c.as_os_str() == ".git")
}

/// A PATH relative to the working directory, without `.` components; no `..`, not absolute.
fn normalize(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(ExitError::Usage(format!(
                    "path `{}` must be relative to the working directory and stay inside it",
                    path.display()
                ))
                .into());
            }
        }
    }
    Ok(out)
}

fn compile_excludes(globs: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let compiled = GlobBuilder::new(glob.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| ExitError::Usage(format!("invalid --exclude glob `{glob}`: {e}")))?;
        set.add(compiled);
    }
    Ok(set.build()?)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn names(entries: &[Entry]) -> Vec<OsString> {
        entries
            .iter()
            .map(|e| e.path.clone().into_os_string())
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "RELEASE",
            "a/RELEASE",
            "a/x.log",
            "a/b/c.txt",
            "a/b/d.log",
            "a.txt",
            ".git/HEAD",
            "sub/.git",
            "z/keep",
        ] {
            let path = dir.path().join(file);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, file).unwrap();
        }
        std::os::unix::fs::symlink("../a.txt", dir.path().join("z/link")).unwrap();
        dir
    }

    fn selected(root: &Path, paths: &[&str], excludes: &[&str]) -> Vec<String> {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let rules = Rules {
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
            gitignore: true,
        };
        let selection = select(root, &paths, &rules).unwrap();
        names(&selection.entries)
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect()
    }

    #[test]
    fn everything_but_git_and_top_release_sorted_by_bytes() {
        let dir = tree();
        assert_eq!(
            selected(dir.path(), &[], &[]),
            [
                "a",
                "a.txt",
                "a/RELEASE",
                "a/b",
                "a/b/c.txt",
                "a/b/d.log",
                "a/x.log",
                "sub",
                "z",
                "z/keep",
                "z/link"
            ]
        );
    }

    #[test]
    fn star_stays_in_a_directory_and_double_star_crosses() {
        let dir = tree();
        assert_eq!(
            selected(dir.path(), &["a"], &["a/*.log"]),
            ["a", "a/RELEASE", "a/b", "a/b/c.txt", "a/b/d.log"]
        );
        assert_eq!(
            selected(dir.path(), &["a"], &["**/*.log"]),
            ["a", "a/RELEASE", "a/b", "a/b/c.txt"]
        );
        assert_eq!(
            selected(dir.path(), &["a", "./z"], &["a/b"]),
            ["a", "a/RELEASE", "a/x.log", "z", "z/keep", "z/link"]
        );
    }

    #[test]
    fn links_are_kept_as_links() {
        let dir = tree();
        let selection = select(dir.path(), &[PathBuf::from("z")], &Rules::default()).unwrap();
        let link = selection
            .entries
            .iter()
            .find(|e| e.path.ends_with("link"))
            .unwrap();
        assert_eq!(link.kind, EntryKind::Symlink(PathBuf::from("../a.txt")));
    }

    #[test]
    fn bad_paths_are_usage_errors() {
        let dir = tree();
        for bad in ["missing", "../x", "/etc"] {
            let err = select(dir.path(), &[PathBuf::from(bad)], &Rules::default()).unwrap_err();
            assert!(err.downcast_ref::<ExitError>().is_some(), "{bad}: {err}");
        }
        let rules = Rules {
            excludes: vec!["a/[".into()],
            gitignore: true,
        };
        let err = select(dir.path(), &[], &rules).unwrap_err();
        assert!(err.to_string().contains("a/["), "{err}");
    }

    #[test]
    fn git_ignore_rules_apply_to_the_whole_directory_only() {
        let dir = tree();
        fs_err::write(dir.path().join(".gitignore"), "*.log\n").unwrap();
        let whole = selected(dir.path(), &[], &[]);
        assert!(whole.contains(&".gitignore".to_owned()), "{whole:?}");
        assert!(!whole.iter().any(|n| n.ends_with(".log")), "{whole:?}");
        // Named, `a` is taken whole.
        assert!(selected(dir.path(), &["a"], &[]).contains(&"a/x.log".to_owned()));
        let all = select(dir.path(), &[], &Rules::default()).unwrap();
        assert!(names(&all.entries).contains(&OsString::from("a/x.log")));
    }
}
