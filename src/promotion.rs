//! `release promote`: make a build the stable one and tag its commit.
//!
//! The order is DESIGN.md's, and every failure leaves a state that is safe to retry:
//! 1. read latest-stable.txt (its ETag is the compare-and-swap's expectation) and resolve the
//!    build, reading at most its manifest or, for an old build, the tail of its archive;
//! 2. checks, before anything moves: the archive exists and matches SIZE; the commit is in the
//!    repository, fetched from the remote if it is missing;
//! 3. latest-stable.txt moves by compare-and-swap (a lost race changes nothing: exit 3), and one
//!    history record is written;
//! 4. the annotated tag is force-moved to the commit in one step and that one ref is pushed.
//!
//! The pointer is what instances install from, so it moves even when git fails afterwards; the
//! error then says so (exit 4), and the same promote run again writes nothing to the bucket and
//! retries only the tag.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::bucket::history::{self, Record};
use crate::bucket::layout::Layout;
use crate::bucket::resolve::{Build, Origin};
use crate::bucket::store::{Precondition, Store, StoreError};
use crate::commands::Context;
use crate::config::promote::{DEFAULT_REMOTE, RepoPaths, TagConfig};
use crate::error::ExitError;
use crate::git;
use crate::identity;
use crate::manifest::{self, Manifest};
use crate::output::{Outcome, short_commit};
use crate::signals::{self, Cleanup};

/// latest-stable.txt as read at the start.
#[derive(Debug, Clone)]
pub(crate) struct Stable {
    /// The build it names, if it names one.
    pub(crate) version: Option<u64>,
    /// The archive name of that build (`{artifact}-{N}.tar` for an old job's build).
    pub(crate) archive: Option<String>,
    /// The version tag to compare-and-swap against.
    pub(crate) etag: String,
}

/// Reads latest-stable.txt. A garbled or lying one does not block a promotion (it will be
/// replaced by compare-and-swap like any other); it only has no build number. A failure to
/// read it is an error: only a missing pointer means "nothing is stable".
pub(crate) async fn read_stable(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
) -> Result<Option<Stable>> {
    let key = layout.latest_stable();
    let Some(object) = store
        .get(&key)
        .await
        .with_context(|| format!("reading `{}`", store.url(&key)))?
    else {
        return Ok(None);
    };
    let url = store.url(&key);
    // A pointer that does not prove to be the build it names (a lying VERSION, ARCHIVE or
    // MODULE) counts as naming none, so that promoting that very build still rewrites it.
    let mut archive = None;
    let version = match Manifest::parse_build(&object.body) {
        Ok(manifest) => {
            let number = manifest.version().unwrap_or(0);
            match Build::checked(layout, number, manifest.clone(), Origin::Pointer, &url) {
                Ok(build) => {
                    archive = Some(build.archive_name(layout));
                    Some(number)
                }
                Err(_) => {
                    let mismatch = manifest
                        .check_is(layout.artifact(), number)
                        .err()
                        .map(|m| m.to_string())
                        .unwrap_or_default();
                    ctx.printer.warn(&format!(
                        "`{url}` is not a manifest of build {number} of {}: {mismatch}; it \
                         will be replaced",
                        layout.artifact()
                    ));
                    None
                }
            }
        }
        Err(err) => {
            ctx.printer.warn(&format!(
                "`{url}` is not a RELEASE manifest ({err}); it will be replaced"
            ));
            None
        }
    };
    Ok(Some(Stable {
        version,
        archive,
        etag: object.etag,
    }))
}

/// What one promotion works with.
pub(crate) struct Promotion<'a> {
    /// The command's context.
    pub(crate) ctx: &'a Context,
    pub(crate) store: &'a Store,
    pub(crate) layout: &'a Layout,
    /// Git settings.
    pub(crate) tagging: &'a TagConfig,
    /// This is a rollback: its history record says so.
    pub(crate) rollback: bool,
    /// `--allow-format-change`: the old boot scripts may break (see `check_format`).
    pub(crate) allow_format_change: bool,
}

/// What happened, for the report (see docs/output.md).
#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    artifact: String,
    stage: String,
    version: u64,
    build: Option<String>,
    commit: Option<String>,
    from_version: Option<u64>,
    already_stable: bool,
    pointer: String,
    pointer_moved: bool,
    history: Option<String>,
    tag: Option<String>,
    remote: Option<String>,
    tag_moved: bool,
    tag_pushed: bool,
}

/// Why the tag step failed.
enum TagFailure {
    NotCreated(anyhow::Error),
    NotPushed(anyhow::Error),
}

/// With trusted keys configured, the build as its signed manifest says, or the refusal (exit
/// 2): latest-stable never points at a build that no trusted key signed. Shared by rollback.
pub(crate) async fn signed_if_required(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    build: Build,
    trusted: &[crate::signing::TrustedKey],
) -> Result<Build> {
    if trusted.is_empty() {
        return Ok(build);
    }
    let number = build.number;
    let (build, key_id) = crate::signing::verified(store, layout, number, trusted).await?;
    ctx.printer
        .status(&format!("build {number} is signed by trusted key {key_id}"));
    Ok(build)
}

impl Promotion<'_> {
    /// Checks, then moves the pointer (unless the build is already stable), records it, and
    /// moves and pushes the tag.
    pub(crate) async fn promote(&self, build: Build, stable: Option<Stable>) -> Result<Outcome> {
        self.check_format(&build, stable.as_ref())?;
        let commit = self.commit_to_tag(&build)?;
        self.check_archive(&build).await?;
        if let Some(commit) = &commit {
            self.ensure_commit(&build, commit)?;
        }
        let from_version = stable.as_ref().and_then(|s| s.version);
        let mut report = self.report(&build, commit.clone(), from_version);
        if self.ctx.settings.dry_run {
            return Ok(plan(&report));
        }
        let mut history_error = None;
        let number = build.number;
        if !report.already_stable {
            signals::step(
                format!("moving latest-stable to build {number}"),
                format!(
                    "latest-stable may or may not have moved to {number} (`release show \
                     latest-stable` tells); running the same promote again finishes it"
                ),
                Cleanup::None,
            );
            self.move_pointer(&build, stable.as_ref()).await?;
            report.pointer_moved = true;
            signals::step(
                "writing the history record",
                format!(
                    "latest-stable moved to {number}; its history record and tag may be \
                     missing: run the same promote again to push the tag"
                ),
                Cleanup::None,
            );
            match self.record(&build, from_version, commit.as_deref()).await {
                Ok(key) => report.history = Some(key),
                Err(err) => history_error = Some(err),
            }
        }
        if commit.is_some() {
            signals::step(
                format!("moving and pushing the tag `{}`", self.tagging.name),
                format!(
                    "latest-stable is on {number}; the tag may not be pushed: run the same promote \
                 again to retry it"
                ),
                Cleanup::None,
            );
        }
        let tag_error = match &commit {
            Some(commit) => match self.tag_and_push(&build, commit) {
                Ok(moved) => {
                    report.tag_moved = moved;
                    report.tag_pushed = true;
                    None
                }
                Err(failure) => Some(failure),
            },
            None => None,
        };
        if history_error.is_some() || tag_error.is_some() {
            return Err(self.partial(&report, history_error, tag_error).into());
        }
        Ok(done(&report))
    }

    /// Boot scripts of the old jobs read latest-stable's VERSION and download `{artifact}-{N}.tar`:
    /// while the stable build is such a `.tar`, making a build of another format stable would
    /// break every instance that boots next, so it takes `--allow-format-change`.
    fn check_format(&self, build: &Build, stable: Option<&Stable>) -> Result<()> {
        let Some(stable_archive) = stable.and_then(|s| s.archive.as_deref()) else {
            return Ok(());
        };
        let archive = build.archive_name(self.layout);
        let tar = format!("{}-{}.tar", self.layout.artifact(), build.number);
        if self.allow_format_change || !stable_archive.ends_with(".tar") || archive == tar {
            return Ok(());
        }
        Err(ExitError::Usage(format!(
            "the stable build is `{stable_archive}`, a plain .tar, and build {} is `{archive}`: \
             boot scripts of the old jobs download `{tar}` and untar it, so every instance that \
             boots after this promotion would fail. Build with `--compression none` until the \
             boot scripts run `release install` (docs/migration.md), or pass \
             --allow-format-change once they do; nothing was changed",
            build.number
        ))
        .into())
    }

    /// The commit to tag, or `None` with `--no-tag`; a build without one needs `--no-tag`.
    fn commit_to_tag(&self, build: &Build) -> Result<Option<String>> {
        if self.tagging.repo.is_none() {
            return Ok(None);
        }
        let commit = build
            .manifest
            .get(manifest::GIT_COMMIT)
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let Some(commit) = commit else {
            return Err(ExitError::Usage(format!(
                "build {} has no GIT_COMMIT (it was made by the old jobs), so there is no commit \
                 to tag: run again with --no-tag to move latest-stable only; nothing was changed",
                build.number
            ))
            .into());
        };
        if !git::check_commit_id(commit) {
            return Err(ExitError::Usage(format!(
                "build {}'s GIT_COMMIT `{commit}` is not a full commit id: run again with \
                 --no-tag to move latest-stable only; nothing was changed",
                build.number
            ))
            .into());
        }
        Ok(Some(commit.to_lowercase()))
    }

    /// The archive exists and has the size the manifest records (old builds have none).
    async fn check_archive(&self, build: &Build) -> Result<()> {
        let (store, layout) = (self.store, self.layout);
        let key = build.archive_key(layout);
        let url = store.url(&key);
        if build.origin == Origin::LegacyArchive {
            // Its RELEASE was just read from the archive's tail: the archive is there.
            self.warn_unchecked(build);
            return Ok(());
        }
        let Some(meta) = store
            .head(&key)
            .await
            .with_context(|| format!("checking the archive `{url}`"))?
        else {
            return Err(ExitError::Usage(format!(
                "build {}'s archive `{url}` does not exist, so it cannot be installed: promote \
                 another build (`release list`); nothing was changed",
                build.number
            ))
            .into());
        };
        match build.manifest.size() {
            Some(size) if size != meta.size => Err(ExitError::Usage(format!(
                "build {}'s archive `{url}` is {} bytes but its manifest says SIZE={size}: the \
                 archive was replaced or damaged; promote another build; nothing was changed",
                build.number, meta.size
            ))
            .into()),
            Some(_) => Ok(()),
            None => {
                self.warn_unchecked(build);
                Ok(())
            }
        }
    }

    fn warn_unchecked(&self, build: &Build) {
        self.ctx.printer.warn(&format!(
            "build {} was made by the old jobs (no SIZE or SHA256): its archive's size is not \
             checked",
            build.number
        ));
    }

    /// The commit is in the repository, fetched from the remote if it is missing (a Jenkins
    /// workspace may be a shallow or older clone). A dry run only says it would fetch.
    fn ensure_commit(&self, build: &Build, commit: &str) -> Result<()> {
        let Some(paths) = &self.tagging.repo else {
            return Ok(());
        };
        let remote = &self.tagging.remote;
        if git::has_commit(&open(paths)?, commit) {
            return Ok(());
        }
        let where_ = paths.workdir.display();
        if self.ctx.settings.dry_run {
            self.ctx.printer.status(&format!(
                "commit {commit} is not in `{where_}`; promote would fetch it from {remote}"
            ));
            return Ok(());
        }
        self.ctx.printer.status(&format!(
            "commit {commit} is not in `{where_}`; fetching it from {remote}"
        ));
        git::fetch_commit(&paths.workdir, remote, commit).with_context(|| {
            format!(
                "fetching commit {commit} of build {} from {remote} failed; nothing was \
                 changed: check the remote and its credentials, or pass --no-tag to move \
                 latest-stable without tagging",
                build.number
            )
        })?;
        if git::has_commit(&open(paths)?, commit) {
            return Ok(());
        }
        Err(ExitError::Usage(format!(
            "commit {commit} of build {} is neither in `{where_}` nor on {remote}; nothing was \
             changed: push it to {remote}, pass --repo DIR for the repository it was built from, \
             or pass --no-tag to move latest-stable without tagging",
            build.number
        ))
        .into())
    }

    /// Compare-and-swap of latest-stable.txt against what was read at the start.
    async fn move_pointer(&self, build: &Build, stable: Option<&Stable>) -> Result<()> {
        let key = self.layout.latest_stable();
        let url = self.store.url(&key);
        let condition = match stable {
            Some(stable) => Precondition::IfMatch(stable.etag.clone()),
            None => Precondition::IfAbsent,
        };
        let body = Bytes::from(build.manifest.to_text());
        match self.store.put(&key, body, condition).await {
            Ok(()) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => Err(ExitError::Conflict(format!(
                "`{url}` was moved by someone else meanwhile; nothing changed: see `release \
                 history`, then promote {} again if it should still be stable",
                build.number
            ))
            .into()),
            Err(err) => Err(anyhow::Error::new(err).context(format!(
                "moving `{url}` to build {} failed; latest-stable was not moved and nothing \
                 else was changed",
                build.number
            ))),
        }
    }

    /// One history record of this promotion.
    async fn record(
        &self,
        build: &Build,
        from: Option<u64>,
        commit: Option<&str>,
    ) -> Result<String> {
        let mut record = Record::now(history::Kind::Promote, self.layout);
        record.from_version = from;
        record.to_version = Some(build.number);
        record.tag = commit.map(|_| self.tagging.name.clone());
        record.commit = commit.map(str::to_owned);
        if self.rollback {
            record.extra.insert(history::ROLLBACK.into(), true.into());
        }
        if let Some(key_id) = crate::signing::signer_of(self.store, self.layout, build.number).await
        {
            record.extra.insert("signed_by".into(), key_id.into());
        }
        history::append(self.store, self.layout, &record).await
    }

    /// Moves the tag to `commit` unless it is already there, then pushes it; returns whether the
    /// tag moved.
    fn tag_and_push(&self, build: &Build, commit: &str) -> Result<bool, TagFailure> {
        let Some(paths) = &self.tagging.repo else {
            return Ok(false);
        };
        let name = &self.tagging.name;
        let moved = (|| -> Result<bool> {
            let repo = open(paths)?;
            if git::tag_commit(&repo, name).as_deref() == Some(commit) {
                return Ok(false);
            }
            let (user, host) = (identity::user(), identity::hostname());
            let tagger = git::tagger(&repo, (&user, &format!("{user}@{host}")))?;
            let message = tag_message(self.layout, build, commit, &user, &host);
            git::force_tag(&repo, name, commit, &message, &tagger)?;
            Ok(true)
        })()
        .map_err(TagFailure::NotCreated)?;
        git::push_tag(&paths.workdir, &self.tagging.remote, name).map_err(TagFailure::NotPushed)?;
        Ok(moved)
    }

    /// The exit-4 error: which steps happened, which did not, and what to run.
    fn partial(
        &self,
        report: &Report,
        history_error: Option<anyhow::Error>,
        tag_error: Option<TagFailure>,
    ) -> ExitError {
        let n = report.version;
        let mut parts = vec![if report.pointer_moved {
            format!("latest-stable moved to {n}")
        } else {
            format!("latest-stable was already {n} (nothing changed in the bucket)")
        }];
        if let Some(err) = history_error {
            parts.push(format!("the history record was not written: {err:#}"));
        }
        let (name, remote) = (&self.tagging.name, &self.tagging.remote);
        match tag_error {
            Some(TagFailure::NotCreated(err)) => parts.push(format!(
                "tag {name} not moved, so not pushed to {remote}: {err:#} — re-run `release \
                 promote {n}` to retry the tag"
            )),
            Some(TagFailure::NotPushed(err)) => parts.push(format!(
                "tag {name} not pushed to {remote}: {err:#} — re-run `release promote {n}` to \
                 retry the tag"
            )),
            None if report.tag.is_some() => parts.push(format!("tag {name} pushed to {remote}")),
            None => {}
        }
        ExitError::Partial(parts.join("; "))
    }

    fn report(&self, build: &Build, commit: Option<String>, from: Option<u64>) -> Report {
        let tagging = self.tagging.repo.is_some();
        Report {
            dry_run: self.ctx.settings.dry_run,
            artifact: self.layout.artifact().to_owned(),
            stage: self.layout.stage().to_owned(),
            version: build.number,
            build: build.manifest.get(manifest::BUILD).map(str::to_owned),
            commit: commit.or_else(|| build.manifest.get(manifest::GIT_COMMIT).map(str::to_owned)),
            from_version: from,
            already_stable: from == Some(build.number),
            pointer: self.store.url(&self.layout.latest_stable()),
            pointer_moved: false,
            history: None,
            tag: tagging.then(|| self.tagging.name.clone()),
            remote: tagging.then(|| self.tagging.remote.clone()),
            tag_moved: false,
            tag_pushed: false,
        }
    }
}

fn open(paths: &RepoPaths) -> Result<git2::Repository> {
    git2::Repository::open(&paths.git_dir)
        .with_context(|| format!("opening the repository `{}`", paths.git_dir.display()))
}

/// The annotated tag's message: artifact, version, build and who promoted it.
fn tag_message(layout: &Layout, build: &Build, commit: &str, user: &str, host: &str) -> String {
    let artifact = layout.artifact();
    let mut message = format!(
        "{artifact} {} promoted to stable\n\nartifact: {artifact}\nversion: {}\nbuild: {}\n",
        build.number,
        build.number,
        build.manifest.get(manifest::BUILD).unwrap_or("unknown")
    );
    if let Some(semver) = build.manifest.get(manifest::SEMVER) {
        message.push_str(&format!("semver: {semver}\n"));
    }
    message.push_str(&format!(
        "commit: {commit}\nstage: {}\npromoted by: {user} on {host}\n",
        layout.stage()
    ));
    message
}

fn plan(report: &Report) -> Outcome {
    let n = report.version;
    let pointer = if report.already_stable {
        format!("latest-stable is already {n}: nothing to write to the bucket")
    } else {
        format!(
            "would move {} from {} to {n} and write one history record",
            report.pointer,
            describe(report.from_version)
        )
    };
    let git = match (&report.tag, &report.commit) {
        (Some(tag), Some(commit)) => format!(
            "would tag {} with {tag} and push it to {}",
            short_commit(commit),
            report.remote.as_deref().unwrap_or(DEFAULT_REMOTE)
        ),
        _ => "git not touched (--no-tag)".to_owned(),
    };
    Outcome {
        text: format!(
            "dry run: promote {} {n}: {pointer}; {git}; nothing was written",
            report.artifact
        ),
        json: serde_json::to_value(report).unwrap_or_default(),
    }
}

fn done(report: &Report) -> Outcome {
    let n = report.version;
    let pointer = if report.pointer_moved {
        format!(
            "promoted {} {n} to latest-stable (was {})",
            report.artifact,
            describe(report.from_version)
        )
    } else {
        format!(
            "{} {n} is already latest-stable: nothing changed in the bucket",
            report.artifact
        )
    };
    let git = match (&report.tag, &report.commit) {
        (Some(tag), Some(commit)) => format!(
            "tag {tag} {} {} and pushed to {}",
            if report.tag_moved {
                "moved to"
            } else {
                "already at"
            },
            short_commit(commit),
            report.remote.as_deref().unwrap_or(DEFAULT_REMOTE)
        ),
        _ => "git not touched (--no-tag)".to_owned(),
    };
    Outcome {
        text: format!("{pointer}; {git}"),
        json: serde_json::to_value(report).unwrap_or_default(),
    }
}

fn describe(version: Option<u64>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}
