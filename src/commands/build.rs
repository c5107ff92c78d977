//! `release build`: version the workspace, pack it, upload it, move `latest`.
//!
//! Order matters for the guarantees: the number is claimed first (so concurrent builds never
//! share one), the archive is uploaded with `If-None-Match` (never overwriting), the manifest is
//! written only once the archive is complete (so a visible manifest always has its archive), and
//! `latest.txt` moves last, by compare-and-swap and never backwards.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::Context;
use crate::archive::{self, Compression, PackSpec, Packed};
use crate::bucket::layout::Layout;
use crate::bucket::pointers::{self, Moved};
use crate::bucket::store::{Precondition, Store, StoreError};
use crate::cli::BuildArgs;
use crate::config::build::BuildConfig;
use crate::env_vars;
use crate::error::ExitError;
use crate::git;
use crate::identity::{self, non_empty_env};
use crate::links::{self, LinkError};
use crate::manifest::{self, Manifest};
use crate::output::{self, BytesProgress, Outcome, human_bytes, short_commit};
use crate::signals::{self, Cleanup};
use crate::signing::{self, SignWith};
use crate::walk;

/// Parts waiting for an upload slot, here and in `counted`'s queue (one each): with the parts
/// in flight, this bounds memory.
const PARTS_QUEUED: usize = 1;

/// Where the sources come from: commit, branch, and the mtime every archive member gets.
#[derive(Debug)]
struct Source {
    commit: String,
    branch: Option<String>,
    mtime: u64,
}

impl Source {
    /// Jenkins' variables first, then the repository containing `dir`.
    fn detect(dir: &Path) -> Result<Self> {
        let repo = git::discover(dir);
        let commit = match non_empty_env(env_vars::GIT_COMMIT) {
            Some(commit) => commit,
            None => match &repo {
                Some(repo) => git::head_commit(repo)?,
                None => {
                    return Err(ExitError::Usage(format!(
                        "no git repository contains `{}` and GIT_COMMIT is not set: run the \
                         build in a clone, or set GIT_COMMIT",
                        dir.display()
                    ))
                    .into());
                }
            },
        };
        let branch = non_empty_env(env_vars::GIT_BRANCH)
            .map(|b| b.strip_prefix("origin/").map(str::to_owned).unwrap_or(b))
            .or_else(|| repo.as_ref().and_then(git::current_branch));
        let mtime = match non_empty_env(env_vars::SOURCE_DATE_EPOCH) {
            Some(text) => text.parse().map_err(|_| {
                ExitError::Usage(format!(
                    "SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"
                ))
            })?,
            None => repo
                .as_ref()
                .and_then(|repo| git::commit_time(repo, &commit))
                .map_or(0, |t| t.max(0) as u64),
        };
        Ok(Self {
            commit,
            branch,
            mtime,
        })
    }
}

/// Refuses (exit 2, before anything is written) a build with a link that every install would
/// refuse: install's rule (`links`) applied to the selected tree. Resolving in the working
/// directory instead of the archive can only refuse more: every selected member is there, the
/// same.
fn check_links(root: &Path, entries: &[walk::Entry]) -> Result<()> {
    let links: Vec<(&Path, &Path)> = entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            walk::EntryKind::Symlink(target) => Some((entry.path.as_path(), target.as_path())),
            _ => None,
        })
        .collect();
    for (path, target) in &links {
        links::check_text(path, target).map_err(|err| link_refused(path, &err))?;
    }
    links::check_resolved(root, links.iter().map(|(path, _)| *path))
        .map_err(|(path, err)| link_refused(&path, &err))?;
    Ok(())
}

fn link_refused(path: &Path, err: &LinkError) -> anyhow::Error {
    let glob = globset::escape(&path.to_string_lossy());
    ExitError::Usage(format!(
        "`{}` is {err}, which every install refuses; nothing was built: leave it out with \
         `--exclude {}`, or make it a relative link that stays inside the tree",
        path.display(),
        shlex::try_quote(&glob).unwrap_or_else(|_| glob.clone().into())
    ))
    .into()
}

/// Runs `release build`.
pub(crate) async fn run(ctx: &Context, args: BuildArgs) -> Result<Outcome> {
    let started = Instant::now();
    let start_time = jiff::Timestamp::now();
    let layout = ctx.layout()?;
    let config = BuildConfig::resolve(args, &ctx.settings.file.build)?;
    let root = std::env::current_dir().context("cannot read the working directory")?;
    let entries = select(ctx, &root, &config)?;
    if config.list {
        return Ok(listing(&entries));
    }
    check_not_empty(&root, &config, &entries)?;
    check_links(&root, &entries)?;
    let source = Source::detect(&root)?;
    check_clean(ctx, &root, &source, &config, &entries)?;

    let store = ctx.store(config.storage_class.clone()).await;
    let candidate = pointers::next_candidate(&store, &layout).await?;
    if ctx.settings.dry_run {
        return Ok(plan(&store, &layout, &config, &source, candidate, &entries));
    }
    let number = claim(&store, &layout, candidate).await?;
    ctx.printer.status(&format!(
        "building {} {number} from {} entries at {}",
        layout.artifact(),
        entries.len(),
        short_commit(&source.commit)
    ));
    let mut manifest = release_manifest(ctx, &layout, number, &source, &config, start_time);
    let archive_key = layout.archive(number, config.compression);
    let spec = PackSpec {
        root,
        entries,
        release: manifest.to_text(),
        mtime: source.mtime,
        compression: config.compression,
        level: config.level,
    };
    let keep_local = config.keep_local.as_deref();
    let packed = upload(ctx, &store, &archive_key, spec, keep_local).await?;
    let archive_name = layout.archive_name(number, config.compression);
    set_archive_keys(&mut manifest, &archive_name, &packed);
    let sign = config.sign.as_ref();
    let signed = publish(ctx, &store, &layout, &archive_key, &manifest, sign).await?;
    let moved = move_latest(ctx, &store, &layout, &manifest, &archive_key).await?;
    let compression = config.compression;
    let (text, doc) = report(
        &store,
        &archive_key,
        &manifest,
        &packed,
        compression,
        moved,
        started,
    );
    Ok(with_signer(text, doc, signed))
}

/// The keys only known once the archive is stored: its name, digest and size.
fn set_archive_keys(manifest: &mut Manifest, archive_name: &str, packed: &Packed) {
    manifest.set(manifest::ARCHIVE, archive_name);
    manifest.set(manifest::SHA256, &packed.sha256);
    manifest.set(manifest::SIZE, &packed.size.to_string());
}

/// The build's report with the key that signed it (`signed_by`, null when unsigned).
fn with_signer(mut text: String, mut doc: Built, signed: Option<String>) -> Outcome {
    if let Some(key_id) = &signed {
        text.push_str(&format!(", signed by key {key_id}"));
    }
    doc.signed_by = signed;
    Outcome::new(text, &doc)
}

/// The files the build packs (`--path`, `--exclude`, .gitignore), warning about surprises.
fn select(ctx: &Context, root: &Path, config: &BuildConfig) -> Result<Vec<walk::Entry>> {
    let rules = walk::Rules {
        excludes: config.exclude.clone(),
        gitignore: !config.include_ignored,
    };
    let selection = walk::select(root, &config.paths, &rules)?;
    for warning in &selection.warnings {
        ctx.printer.warn(warning);
    }
    Ok(selection.entries)
}

/// Claims the next free build number, then marks the upload as the step a signal interrupts.
async fn claim(store: &Store, layout: &Layout, candidate: u64) -> Result<u64> {
    let token = format!(
        "{}@{} {}",
        std::process::id(),
        identity::hostname(),
        uuid::Uuid::new_v4()
    );
    signals::step(
        "claiming a build number",
        "no build was written (a number may have been claimed and will be skipped)",
        Cleanup::None,
    );
    let number = pointers::claim(store, layout, candidate, &token).await?;
    signals::step(
        format!("uploading build {number}"),
        format!(
            "no build {number} was written (its upload is aborted; an abort cut short is \
             removed by the bucket's lifecycle rule, docs/iam.md)"
        ),
        Cleanup::Within,
    );
    Ok(number)
}

/// Moves latest.txt to the stored build; failing here is partial (exit 4): the build is stored.
async fn move_latest(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    manifest: &Manifest,
    archive_key: &str,
) -> Result<Moved> {
    let number = manifest.version().unwrap_or(0);
    signals::step(
        "moving latest.txt",
        format!("build {number} is stored; latest.txt may still name an older build"),
        Cleanup::None,
    );
    let moved = pointers::advance(store, &layout.latest(), manifest)
        .await
        .map_err(|e| {
            ExitError::Partial(format!(
                "build {number} is stored ({}) but `latest.txt` was not moved: {e:#}; \
                 the next build will still continue after {number}",
                store.url(archive_key)
            ))
        })?;
    if let Moved::AlreadyNewer(newer) = moved {
        ctx.printer.warn(&format!(
            "latest.txt already names build {newer}, newer than {number}: left as it is"
        ));
    }
    Ok(moved)
}

/// The RELEASE manifest of build `number`, before the archive's own keys are known.
fn release_manifest(
    ctx: &Context,
    layout: &Layout,
    number: u64,
    source: &Source,
    config: &BuildConfig,
    start_time: jiff::Timestamp,
) -> Manifest {
    let timestamp = non_empty_env(env_vars::BUILD_TIMESTAMP).unwrap_or_else(|| {
        start_time
            .round(jiff::Unit::Second)
            .unwrap_or(start_time)
            .to_string()
    });
    let build = non_empty_env(env_vars::BUILD_NUMBER).unwrap_or_else(|| "manual".into());
    let mut manifest = Manifest::new();
    let mut warnings = vec![
        manifest.set(manifest::MODULE, layout.artifact()),
        manifest.set(manifest::VERSION, &number.to_string()),
        manifest.set(manifest::BUILD, &build),
        manifest.set(manifest::GIT_COMMIT, &source.commit),
        manifest.set(manifest::TIMESTAMP, &timestamp),
    ];
    if let Some(branch) = &source.branch {
        warnings.push(manifest.set(manifest::GIT_BRANCH, branch));
    }
    if let Some(version) = &config.semver {
        warnings.push(manifest.set(manifest::SEMVER, &version.to_string()));
    }
    for warning in warnings.into_iter().flatten() {
        ctx.printer.warn(&warning);
    }
    manifest
}

/// Packs and uploads in one stream. On any failure or signal nothing is left at `key`.
async fn upload(
    ctx: &Context,
    store: &Store,
    key: &str,
    spec: PackSpec,
    keep_local: Option<&Path>,
) -> Result<Packed> {
    let local = keep_local
        .map(|path| fs_err::File::create(path).context("cannot create the --keep-local file"))
        .transpose()?;
    let (parts_tx, parts_rx) = mpsc::channel::<Bytes>(PARTS_QUEUED);
    let abandon = ctx.cancel.child_token();
    let pack_abandon = abandon.clone();
    let packing =
        tokio::task::spawn_blocking(move || archive::pack(&spec, parts_tx, pack_abandon, local));
    let progress = ctx
        .printer
        .bytes_progress(&format!("uploading {}", store.url(key)), None);
    let parts_rx = counted(parts_rx, progress.clone());
    let (packed, uploaded) = tokio::join!(packing, store.upload(key, parts_rx, &abandon));
    progress.finish();
    let packed = packed.context("the archive thread failed")?;
    let result = match (packed, uploaded) {
        (Ok(packed), Ok(size)) if size == packed.size => Ok(packed),
        (Ok(packed), Ok(size)) => Err(anyhow::anyhow!(
            "uploaded {size} bytes but packed {}",
            packed.size
        )),
        _ if ctx.cancel.is_cancelled() => Err(interrupted(store, key)),
        // The upload's own failure is the cause when both stop.
        (_, Err(err)) if !matches!(err, StoreError::Interrupted { .. }) => Err(err.into()),
        (Err(err), _) => Err(err),
        (Ok(_), Err(err)) => Err(err.into()),
    };
    if result.is_err()
        && let Some(path) = keep_local
    {
        let _ = fs_err::remove_file(path);
    }
    result.with_context(|| format!("uploading `{}`: no build was written", store.url(key)))
}

/// The parts, counted as the uploader's queue takes them. The forwarding task takes a part only
/// once the uploader's queue has room for it, so it holds none itself: with one slot in each
/// queue, as many parts wait as before it existed.
fn counted(mut parts: mpsc::Receiver<Bytes>, progress: BytesProgress) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        // Either side gone (the upload failed, the packer finished or failed) ends the loop.
        while let Ok(slot) = tx.reserve().await {
            let Some(part) = parts.recv().await else {
                break;
            };
            progress.inc(part.len() as u64);
            slot.send(part);
        }
    });
    rx
}

/// Writes the signature (if signing), then the manifest; an interruption or failure here
/// deletes what was written again, so that a build is only visible complete, and signed
/// before its manifest is visible.
async fn publish(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    archive_key: &str,
    manifest: &Manifest,
    sign: Option<&SignWith>,
) -> Result<Option<String>> {
    let number = manifest.version().unwrap_or(0);
    let key = layout.manifest(number);
    let body = Bytes::from(manifest.to_text());
    let result = if ctx.cancel.is_cancelled() {
        Err(interrupted(store, archive_key))
    } else {
        let signed = match sign {
            Some(with) => write_signature(ctx, store, layout, number, with, &body).await,
            None => Ok(None),
        };
        match signed {
            Ok(signed) => store
                .put(&key, body, Precondition::IfAbsent)
                .await
                .with_context(|| format!("writing the manifest `{}`", store.url(&key)))
                .map(|()| signed),
            Err(e) => Err(e),
        }
    };
    if result.is_err() {
        let signature = sign.map(|_| layout.signature(number));
        for doomed in std::iter::once(archive_key).chain(signature.as_deref()) {
            if let Err(err) = store.delete(doomed).await {
                ctx.printer.warn(&format!(
                    "could not remove `{}` of the failed build: {err:#}",
                    store.url(doomed)
                ));
            }
        }
    }
    result
}

/// Signs the manifest's bytes and stores the signature; the signing key's id.
async fn write_signature(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    number: u64,
    with: &SignWith,
    manifest: &[u8],
) -> Result<Option<String>> {
    let signed = signing::sign(
        with,
        async || ctx.aws_config().await,
        manifest,
        layout.artifact(),
        number,
    )
    .await
    .with_context(|| format!("signing build {number}; nothing of it was published"))?;
    let key = layout.signature(number);
    store
        .put(&key, Bytes::from(signed.text), Precondition::IfAbsent)
        .await
        .with_context(|| format!("writing the signature `{}`", store.url(&key)))?;
    Ok(Some(signed.key_id))
}

fn interrupted(store: &Store, key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "build interrupted by {}: the upload of `{}` was aborted; no archive, manifest or \
         latest.txt was written",
        signals::received(),
        store.url(key)
    )
}

/// `--list`: the members, one a line, directories ending in `/`.
fn listing(entries: &[walk::Entry]) -> Outcome {
    let paths: Vec<String> = entries
        .iter()
        .map(|entry| {
            let path = entry.path.to_string_lossy();
            match entry.kind {
                walk::EntryKind::Dir => format!("{path}/"),
                _ => path.into_owned(),
            }
        })
        .collect();
    Outcome::new(paths.join("\n"), &paths)
}

/// An archive of nothing (or of empty directories) would become `latest` and install an empty
/// service: almost always a wrong directory, PATH or exclude.
fn check_not_empty(root: &Path, config: &BuildConfig, entries: &[walk::Entry]) -> Result<()> {
    let has_content = entries
        .iter()
        .any(|e| !matches!(e.kind, walk::EntryKind::Dir));
    if has_content || config.allow_empty {
        return Ok(());
    }
    let rules = if config.include_ignored {
        "--exclude"
    } else {
        "--exclude and .gitignore"
    };
    let what = if config.paths.is_empty() {
        format!("`{}`", root.display())
    } else {
        let names: Vec<String> = config
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("{} in `{}`", names.join(", "), root.display())
    };
    Err(ExitError::Usage(format!(
        "nothing to archive: no file or link in {what} after {rules}; nothing was written. \
         Check the working directory and PATHs (`release build --list` shows the members), \
         or pass --allow-empty to build it anyway"
    ))
    .into())
}

/// Warns (or with `--require-clean` refuses) when members differ from the recorded commit: the
/// manifest would name a commit that does not hold what was shipped.
fn check_clean(
    ctx: &Context,
    root: &Path,
    source: &Source,
    config: &BuildConfig,
    entries: &[walk::Entry],
) -> Result<()> {
    let repo = git::discover(root);
    let changed = match &repo {
        Some(repo) => git::changed_since(repo, &source.commit)?,
        None => None,
    };
    let (Some(repo), Some(changed)) = (repo, changed) else {
        if config.require_clean {
            return Err(ExitError::Usage(format!(
                "--require-clean cannot check the tree: no git work tree containing `{}` has \
                 commit {}; nothing was written. Build in a checkout of that commit",
                root.display(),
                short_commit(&source.commit)
            ))
            .into());
        }
        return Ok(());
    };
    let dirty = dirty_members(&repo, root, changed, entries)?;
    if dirty.is_empty() {
        return Ok(());
    }
    let message = dirty_message(&dirty, &source.commit);
    if config.require_clean {
        return Err(ExitError::Usage(format!(
            "{message}; --require-clean refuses such a build: nothing was written. Commit \
             them, or ignore them in .gitignore"
        ))
        .into());
    }
    ctx.printer.warn(&format!(
        "{message}; the build records that commit all the same (--require-clean makes this \
         an error)"
    ));
    Ok(())
}

/// The members of the build among `changed` (paths in the repository), relative to `root`
/// and sorted; none when `root` is outside the work tree.
fn dirty_members(
    repo: &git2::Repository,
    root: &Path,
    changed: Vec<PathBuf>,
    entries: &[walk::Entry],
) -> Result<Vec<String>> {
    let workdir = repo.workdir().map(fs_err::canonicalize).transpose()?;
    let root = fs_err::canonicalize(root)?;
    let Some(prefix) = workdir.and_then(|w| root.strip_prefix(w).ok().map(Path::to_owned)) else {
        return Ok(Vec::new());
    };
    let members: std::collections::HashSet<PathBuf> = entries
        .iter()
        .filter(|e| !matches!(e.kind, walk::EntryKind::Dir))
        .map(|e| prefix.join(&e.path))
        .collect();
    let mut dirty: Vec<String> = changed
        .into_iter()
        .filter(|path| members.contains(path))
        .map(|path| {
            path.strip_prefix(&prefix)
                .unwrap_or(&path)
                .display()
                .to_string()
        })
        .collect();
    dirty.sort();
    Ok(dirty)
}

/// "3 files differ from commit abc: a, b, c" with at most five names.
fn dirty_message(dirty: &[String], commit: &str) -> String {
    const SHOWN: usize = 5;
    let mut names = dirty[..dirty.len().min(SHOWN)].join(", ");
    if dirty.len() > SHOWN {
        names.push_str(&format!(" and {} more", dirty.len() - SHOWN));
    }
    format!(
        "{} file(s) in the archive differ from commit {} (modified or not committed): {names}",
        dirty.len(),
        short_commit(commit)
    )
}

fn plan(
    store: &Store,
    layout: &Layout,
    config: &BuildConfig,
    source: &Source,
    number: u64,
    entries: &[walk::Entry],
) -> Outcome {
    let object = store.url(&layout.archive(number, config.compression));
    let text = format!(
        "dry run: would build {} {number} as {object} from {} entries (commit {}); \
         nothing was written",
        layout.artifact(),
        entries.len(),
        short_commit(&source.commit)
    );
    let doc = BuildPlan {
        dry_run: true,
        artifact: layout.artifact(),
        version: number,
        object: &object,
        entries: entries.len(),
        git_commit: &source.commit,
        git_branch: source.branch.as_deref(),
        compression: config.compression,
    };
    Outcome::new(text, &doc)
}

/// `build --dry-run`'s document (docs/output.md).
#[derive(Serialize)]
struct BuildPlan<'a> {
    dry_run: bool,
    artifact: &'a str,
    version: u64,
    /// The archive's URL it would write.
    object: &'a str,
    /// Files, links and directories it would pack.
    entries: usize,
    git_commit: &'a str,
    git_branch: Option<&'a str>,
    compression: Compression,
}

/// `build`'s document (docs/output.md).
#[derive(Serialize)]
struct Built {
    dry_run: bool,
    artifact: Option<String>,
    version: u64,
    /// The archive's URL.
    object: String,
    /// Archive bytes.
    size: u64,
    /// Bytes of the tar before compression.
    tar_size: u64,
    sha256: String,
    compression: Compression,
    git_commit: Option<String>,
    git_branch: Option<String>,
    build: Option<String>,
    latest_moved: bool,
    /// Wall time, to the millisecond.
    seconds: f64,
    /// The key id that signed the manifest, `null` when unsigned.
    signed_by: Option<String>,
}

fn report(
    store: &Store,
    key: &str,
    manifest: &Manifest,
    packed: &Packed,
    compression: Compression,
    moved: Moved,
    started: Instant,
) -> (String, Built) {
    let seconds = started.elapsed().as_secs_f64();
    let version = manifest.version().unwrap_or(0);
    let object = store.url(key);
    let text = format!(
        "built {} {version}: {object} ({}, sha256 {}) in {seconds:.1}s",
        manifest.get(manifest::MODULE).unwrap_or_default(),
        human_bytes(packed.size),
        packed.sha256
    );
    let owned = |key| manifest.get(key).map(str::to_owned);
    let doc = Built {
        dry_run: false,
        artifact: owned(manifest::MODULE),
        version,
        object,
        size: packed.size,
        tar_size: packed.tar_size,
        sha256: packed.sha256.clone(),
        compression,
        git_commit: owned(manifest::GIT_COMMIT),
        git_branch: owned(manifest::GIT_BRANCH),
        build: owned(manifest::BUILD),
        latest_moved: moved == Moved::Yes,
        seconds: output::seconds_since(started),
        signed_by: None,
    };
    (text, doc)
}
