//! The tag settings of `release promote` and `release rollback`: flags (and their env twins)
//! over `[promote]` over the defaults.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::PromoteFile;
use crate::cli::TagArgs;
use crate::git;
use crate::identity::non_empty;

/// Remote the tag is pushed to when none is given.
pub(crate) const DEFAULT_REMOTE: &str = "origin";

/// Git settings of promote and rollback after merging flags, env and release.toml.
#[derive(Debug, Clone)]
pub(crate) struct TagConfig {
    /// The tag's name.
    pub(crate) name: String,
    /// The remote to fetch from and push to.
    pub(crate) remote: String,
    /// The repository, if git is used (`None` with `--no-tag`).
    pub(crate) repo: Option<RepoPaths>,
}

/// Where the repository is: for libgit2 and for the `git` program.
#[derive(Debug, Clone)]
pub(crate) struct RepoPaths {
    /// The repository itself (`.git`, or the bare repository).
    pub(crate) git_dir: PathBuf,
    /// Where the `git` program runs.
    pub(crate) workdir: PathBuf,
}

impl TagConfig {
    /// Flag (or its env twin) > release.toml `[promote]` > default; names are checked and the
    /// repository is found before any request is made.
    pub(crate) fn resolve(args: TagArgs, file: &PromoteFile, artifact: &str) -> Result<Self> {
        let name = non_empty(args.tag)
            .or_else(|| non_empty(file.tag.clone()))
            .unwrap_or_else(|| format!("{artifact}-stable"));
        git::check_tag_name(&name)?;
        let remote = non_empty(args.remote)
            .or_else(|| non_empty(file.remote.clone()))
            .unwrap_or_else(|| DEFAULT_REMOTE.to_owned());
        if args.no_tag || file.no_tag.unwrap_or(false) {
            return Ok(Self {
                name,
                remote,
                repo: None,
            });
        }
        let dir = match args.repo.or(file.repo.clone()) {
            Some(dir) => dir,
            None => std::env::current_dir().context("cannot read the working directory")?,
        };
        let repo = git::open(&dir)?;
        git::check_remote(&repo, &remote)?;
        Ok(Self {
            name,
            remote,
            repo: Some(RepoPaths {
                git_dir: repo.path().to_owned(),
                workdir: git::dir_of(&repo),
            }),
        })
    }
}
