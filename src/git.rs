//! What the commands need from git.
//!
//! Local work (reading commits, creating tags) goes through libgit2. Talking to a remote (fetch,
//! push) runs the `git` program instead, with an argv and never a shell string: libgit2 ignores
//! ssh config, `GIT_SSH_COMMAND`, credential helpers and `GIT_ASKPASS`, which is how Jenkins hands
//! out credentials (sshagent, ssh key files, https tokens). Its exit status decides success: a
//! rejected push is a failure, never silence.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

use crate::error::ExitError;
use crate::redact;

/// The repository containing `dir`, if there is one.
pub(crate) fn discover(dir: &Path) -> Option<git2::Repository> {
    git2::Repository::discover(dir).ok()
}

/// The repository at or containing `dir`, or an input error saying how to name one.
pub(crate) fn open(dir: &Path) -> Result<git2::Repository> {
    git2::Repository::discover(dir).map_err(|err| {
        ExitError::Usage(format!(
            "no git repository at or above `{}` ({}): pass --repo DIR to tag another \
             repository, or --no-tag to move the pointer only",
            dir.display(),
            err.message()
        ))
        .into()
    })
}

/// Where to run the `git` program for `repo`: its working tree, or the repository itself.
pub(crate) fn dir_of(repo: &git2::Repository) -> PathBuf {
    repo.workdir().unwrap_or(repo.path()).to_owned()
}

/// HEAD's commit id.
pub(crate) fn head_commit(repo: &git2::Repository) -> Result<String> {
    let dir = repo.workdir().unwrap_or(repo.path());
    if repo
        .head()
        .is_err_and(|e| e.code() == git2::ErrorCode::UnbornBranch)
    {
        return Err(ExitError::Usage(format!(
            "the repository at `{}` has no commits yet: commit first, or set GIT_COMMIT",
            dir.display()
        ))
        .into());
    }
    let head = repo
        .head()
        .and_then(|head| head.peel_to_commit())
        .with_context(|| {
            format!(
                "the repository at `{}` has no commit at HEAD",
                repo.workdir().unwrap_or(repo.path()).display()
            )
        })?;
    Ok(head.id().to_string())
}

/// The commit time of `commit` (seconds since the epoch), if the repository has it.
pub(crate) fn commit_time(repo: &git2::Repository, commit: &str) -> Option<i64> {
    let id = git2::Oid::from_str(commit).ok()?;
    Some(repo.find_commit(id).ok()?.time().seconds())
}

/// The checked-out branch, if HEAD is on one.
pub(crate) fn current_branch(repo: &git2::Repository) -> Option<String> {
    let head = repo.head().ok()?;
    head.is_branch()
        .then(|| head.shorthand().map(str::to_owned))
        .flatten()
}

/// Checks a tag name against git's ref-format rules (`git check-ref-format refs/tags/NAME`).
pub(crate) fn check_tag_name(name: &str) -> Result<(), ExitError> {
    let valid =
        !name.starts_with('-') && git2::Reference::is_valid_name(&format!("refs/tags/{name}"));
    if valid {
        Ok(())
    } else {
        Err(ExitError::Usage(format!(
            "`{name}` is not a valid git tag name (see `git check-ref-format`: no spaces, `~`, \
             `^`, `:`, `?`, `*`, `[`, `\\`, `..`, `@{{`, no leading `-` or trailing `.lock`)"
        )))
    }
}

/// Checks a remote: a configured remote's name, or a URL or path that `git` accepts as one.
pub(crate) fn check_remote(repo: &git2::Repository, remote: &str) -> Result<(), ExitError> {
    let looks_like_url = remote.contains(['/', ':']);
    if !remote.starts_with('-') && (looks_like_url || repo.find_remote(remote).is_ok()) {
        return Ok(());
    }
    Err(ExitError::Usage(format!(
        "the repository at `{}` has no remote `{remote}`: pass --remote NAME (see `git remote -v`), \
         or --no-tag to move the pointer only",
        dir_of(repo).display()
    )))
}

/// Checks that `commit` is a full commit id (hex, 40 or 64 digits).
pub(crate) fn check_commit_id(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the repository holds `commit` as a commit.
pub(crate) fn has_commit(repo: &git2::Repository, commit: &str) -> bool {
    git2::Oid::from_str(commit).is_ok_and(|id| repo.find_commit(id).is_ok())
}

/// The commit tag `name` points at (an annotated tag peeled), if the tag exists.
pub(crate) fn tag_commit(repo: &git2::Repository, name: &str) -> Option<String> {
    let reference = repo.find_reference(&format!("refs/tags/{name}")).ok()?;
    Some(reference.peel_to_commit().ok()?.id().to_string())
}

/// Who a tag is by: the repository's `user.name`/`user.email`, else `fallback` (name, email).
pub(crate) fn tagger(
    repo: &git2::Repository,
    fallback: (&str, &str),
) -> Result<git2::Signature<'static>> {
    repo.signature()
        .or_else(|_| git2::Signature::now(fallback.0, fallback.1))
        .context("cannot make a tagger signature")
}

/// Points annotated tag `name` at `commit`, replacing the tag if it exists: libgit2 writes the
/// new tag object, then swaps the reference in one locked rename, so there is no moment
/// without the tag.
pub(crate) fn force_tag(
    repo: &git2::Repository,
    name: &str,
    commit: &str,
    message: &str,
    tagger: &git2::Signature<'_>,
) -> Result<()> {
    let id =
        git2::Oid::from_str(commit).with_context(|| format!("`{commit}` is not a commit id"))?;
    let target = repo
        .find_object(id, Some(git2::ObjectType::Commit))
        .with_context(|| format!("commit {commit} is not in the repository"))?;
    repo.tag(name, &target, tagger, message, true)
        .with_context(|| format!("creating tag `{name}` in `{}`", dir_of(repo).display()))?;
    Ok(())
}

/// `git fetch REMOTE COMMIT`, then, if the remote refuses to send a commit by its id (old
/// servers without protocol v2), `git fetch REMOTE` (its branches and tags).
pub(crate) fn fetch_commit(dir: &Path, remote: &str, commit: &str) -> Result<()> {
    if run(dir, ["fetch", "--quiet", remote, commit]).is_ok() {
        return Ok(());
    }
    run(dir, ["fetch", "--quiet", remote])
}

/// `git push REMOTE +refs/tags/NAME:refs/tags/NAME`: that one ref, with force (never `--tags`).
pub(crate) fn push_tag(dir: &Path, remote: &str, name: &str) -> Result<()> {
    let refspec = format!("+refs/tags/{name}:refs/tags/{name}");
    run(dir, ["push", "--porcelain", remote, &refspec])
}

/// Runs the `git` program in `dir` with `args`; its exit status decides, its stderr explains.
fn run<I, S>(dir: &Path, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("git")
        .args(&args)
        .current_dir(dir)
        // The repository is the one opened, whatever the caller's environment names.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run `git {}`: is git installed and on PATH?",
                redact::urls(&shown)
            )
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && *line != "Done")
        .collect();
    // git quotes the remote's URL in its errors, credentials and all; the message is printed
    // and may be kept, so they are masked here already.
    anyhow::bail!(
        "`git {}` in `{}` failed ({}): {}",
        redact::urls(&shown),
        dir.display(),
        output.status,
        redact::urls(&said.join("; "))
    )
}

/// Work-tree paths whose content differs from `commit`: modified, added, retyped or untracked
/// files that git does not ignore. Ignored files are not listed: a build that includes them asked
/// for them (build output, `--include-ignored`). `None` when the repository lacks the commit or
/// has no work tree.
pub(crate) fn changed_since(repo: &git2::Repository, commit: &str) -> Result<Option<Vec<PathBuf>>> {
    let Some(commit) = git2::Oid::from_str(commit)
        .ok()
        .and_then(|id| repo.find_commit(id).ok())
    else {
        return Ok(None);
    };
    if repo.workdir().is_none() {
        return Ok(None);
    }
    let tree = commit.tree().context("cannot read the commit's tree")?;
    let mut options = git2::DiffOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_typechange(true);
    let diff = repo
        .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut options))
        .context("cannot compare the work tree with its commit")?;
    let paths = diff
        .deltas()
        .filter(|delta| delta.status() != git2::Delta::Deleted)
        .filter_map(|delta| delta.new_file().path().map(Path::to_owned))
        .collect();
    Ok(Some(paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_follow_ref_format() {
        for ok in [
            "web-stable",
            "obelix-appengine-stable",
            "release/prod",
            "v1.2.3",
        ] {
            assert!(check_tag_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a b", "a..b", "a~1", "a^", "a:b", "a?", "a*", "a[", "-x", "a.lock", "a/", "@{x",
            "a\\b",
        ] {
            assert!(check_tag_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_ids_are_full_hex() {
        assert!(check_commit_id(&"a".repeat(40)));
        assert!(check_commit_id(&"0".repeat(64)));
        assert!(!check_commit_id("abc123"));
        assert!(!check_commit_id(&format!("-{}", "a".repeat(39))));
    }
}
