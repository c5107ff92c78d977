//! What the build needs from the local git repository, through libgit2.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The repository containing `dir`, if there is one.
pub fn discover(dir: &Path) -> Option<git2::Repository> {
    git2::Repository::discover(dir).ok()
}

/// HEAD's commit id.
pub fn head_commit(repo: &git2::Repository) -> Result<String> {
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
pub fn commit_time(repo: &git2::Repository, commit: &str) -> Option<i64> {
    let id = git2::Oid::from_str(commit).ok()?;
    Some(repo.find_commit(id).ok()?.time().seconds())
}

/// The checked-out branch, if HEAD is on one.
pub fn current_branch(repo: &git2::Repository) -> Option<String> {
    let head = repo.head().ok()?;
    head.is_branch()
        .then(|| head.shorthand().map(str::to_owned))
        .flatten()
}
