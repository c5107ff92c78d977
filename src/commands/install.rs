//! `release install`: on a host, put a build in place and switch to it atomically.
//!
//! Steps, each safe to interrupt: lock the install directory; resolve the build; if it is not
//! on disk, stream the archive from the store into an unpacker while hashing it, and keep the
//! result only if SHA-256 and size match the manifest; run the before-switch hooks; mark the
//! install unfinished and switch `current`; run the after-switch hooks (switching back if they
//! fail) and write the health file; only then is the install finished; prune old releases.
//!
//! An install killed between its switch and the end of its after-switch hooks is finished by
//! the next run for the same build: it runs those hooks again, under the same rules.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use bytes::{Buf, Bytes};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::Context;
use crate::bucket::layout::Layout;
use crate::bucket::resolve::{self, Build};
use crate::bucket::store::Store;
use crate::cli::InstallArgs;
use crate::config::install::InstallConfig;
use crate::error::ExitError;
use crate::extract::{self, Format, Unpacked};
use crate::hooks::{HookEnv, Hooks};
use crate::host_report::{self, Reporting};
use crate::install_dir::{InstallDir, InstallView, Pending};
use crate::manifest::{self, Manifest};
use crate::output::{self, BytesProgress, Outcome};
use crate::signals::{self, Cleanup};
use crate::signing;

/// Downloaded chunks waiting for the unpacker: bounds memory whatever the archive's size.
const CHUNKS_QUEUED: usize = 32;
/// The directory says which artifact it holds: another one is refused before anything is read
/// from the bucket, dry runs included (the locked install checks it again, `claim_for`).
fn check_artifact(layout: &Layout, config: &InstallConfig) -> Result<()> {
    match InstallView::new(&config.dir).artifact() {
        Some(held) if held != layout.artifact() && !config.force => Err(ExitError::Usage(format!(
            "`{}` holds artifact `{held}`, not `{}`: use another --dir (one directory holds \
             one artifact), or --force",
            config.dir.display(),
            layout.artifact()
        ))
        .into()),
        _ => Ok(()),
    }
}

/// What an install would do, read from the directory without locking or changing it.
fn dry_run(layout: &Layout, config: &InstallConfig, build: &Build) -> Outcome {
    let number = build.number;
    let view = InstallView::new(&config.dir);
    let installed = view.current() == Some(number)
        && view
            .manifest(number)
            .is_some_and(|m| same_build(&m, &build.manifest));
    let text = if installed && !config.force {
        format!(
            "dry run: {} {number} is already installed in {}: install would change nothing \
             (--force reinstalls it)",
            layout.artifact(),
            config.dir.display()
        )
    } else {
        format!(
            "dry run: would install {} {number} into {}; nothing was changed",
            layout.artifact(),
            config.dir.display()
        )
    };
    let doc = InstallPlan {
        dry_run: true,
        artifact: layout.artifact(),
        version: number,
        dir: &config.dir,
        already_installed: installed,
    };
    Outcome::new(text, &doc)
}

/// `install --dry-run`'s document (docs/output.md).
#[derive(Serialize)]
struct InstallPlan<'a> {
    dry_run: bool,
    artifact: &'a str,
    version: u64,
    dir: &'a Path,
    /// The build is installed and current: install would change nothing (without `--force`).
    already_installed: bool,
}

/// `install`'s document (docs/output.md).
#[derive(Serialize)]
struct Installed<'a> {
    dry_run: bool,
    artifact: &'a str,
    version: u64,
    /// The build current before, `null` if none.
    previous: Option<u64>,
    status: InstallStatus,
    dir: &'a Path,
    /// Whether the archive was fetched (false when already installed).
    downloaded: bool,
    /// Files unpacked, `null` when nothing was.
    files: Option<u64>,
    /// The installed manifest's SHA256.
    sha256: Option<String>,
    /// Wall time, to the millisecond.
    seconds: f64,
}

/// The build as its signed manifest says when trusted keys are configured (or the refusal);
/// else the build as resolved, with a note that nothing was verified.
async fn trusted_or_noted(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    build: Build,
    trusted_keys: &[signing::TrustedKey],
) -> Result<Build> {
    let number = build.number;
    Ok(if trusted_keys.is_empty() {
        // A note, not a warning: installing unsigned builds is today's normal, and `-q` (boot
        // scripts, pushes) asks for silence unless something goes wrong.
        ctx.printer.status(
            "note: builds are not verified: no trusted key is configured (trusted_keys, \
             --trusted-key; docs/signing.md)",
        );
        build
    } else {
        let (build, key_id) = signing::verified(store, layout, number, trusted_keys).await?;
        ctx.printer
            .status(&format!("build {number} is signed by trusted key {key_id}"));
        build
    })
}

/// What an install did (`status` in its document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum InstallStatus {
    /// Downloaded, unpacked and switched to.
    Installed,
    /// An unpacked release was reused and switched to.
    Switched,
    /// A switch an earlier run left pending was completed.
    Finished,
    /// Nothing to do.
    AlreadyInstalled,
}

impl InstallStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::Switched => "switched",
            Self::Finished => "finished",
            Self::AlreadyInstalled => "already-installed",
        }
    }
}

/// Runs `release install`; once the build is resolved, whatever happens next is written to
/// the bucket as this host's report (`host_report`), unless `--no-report`.
pub(crate) async fn run(ctx: &Context, args: InstallArgs) -> Result<Outcome> {
    let started = Instant::now();
    let layout = ctx.layout()?;
    let reporting = Reporting::from_args(&args, ctx.settings.file.install.report)?;
    let config = InstallConfig::resolve(&ctx.settings, args)?;
    check_artifact(&layout, &config)?;
    let store = ctx.store(None).await;
    let build = resolve::resolve(&store, &layout, &config.reference).await?;
    if ctx.settings.dry_run {
        let build = trusted_or_noted(ctx, &store, &layout, build, &config.trusted_keys).await?;
        return Ok(dry_run(&layout, &config, &build));
    }
    let before = InstallView::new(&config.dir).current();
    let told = Told {
        step: StepTracker::default(),
        reporting: reporting.as_ref(),
    };
    let result = install_resolved(ctx, &store, &layout, &config, build, started, &told).await;
    let key = match &reporting {
        Some(reporting) => {
            let ended = ended(&config, before, &result, told.step.get());
            host_report::write(&ctx.printer, &store, &layout, reporting, ended).await
        }
        None => None,
    };
    result.map(|mut outcome| {
        outcome.json["report"] = key.map_or(serde_json::Value::Null, Into::into);
        outcome
    })
}

/// The install's end, for its report: `after` is what `current` points to now.
fn ended(
    config: &InstallConfig,
    before: Option<u64>,
    result: &Result<Outcome>,
    step: &'static str,
) -> host_report::Ended {
    let view = InstallView::new(&config.dir);
    let after = view.current();
    let sha256 = after
        .and_then(|n| view.manifest(n))
        .and_then(|m| m.get(manifest::SHA256).map(|s| s.trim().to_owned()));
    host_report::Ended {
        before,
        after,
        sha256,
        failed: result.as_ref().err().map(|e| (step, format!("{e:#}"))),
    }
}

/// What the bucket is told while an install runs: the step it is at (named in its report when
/// it fails there) and, right before the switch, that it started (not with `--no-report`).
struct Told<'a> {
    step: StepTracker,
    reporting: Option<&'a Reporting>,
}

/// The step an install is at, named in its report when it fails there.
#[derive(Debug)]
struct StepTracker(Mutex<&'static str>);

impl Default for StepTracker {
    fn default() -> Self {
        Self(Mutex::new("verify"))
    }
}

impl StepTracker {
    fn set(&self, step: &'static str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = step;
    }

    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The install proper, from the resolved build to the outcome.
async fn install_resolved(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    config: &InstallConfig,
    build: Build,
    started: Instant,
    told: &Told<'_>,
) -> Result<Outcome> {
    let number = build.number;
    let build = trusted_or_noted(ctx, store, layout, build, &config.trusted_keys).await?;
    told.step.set("lock");
    let dir = locked_dir(ctx, config, layout)?;
    let install = Install {
        ctx,
        config,
        layout,
        dir: &dir,
        hooks: Hooks::new(dir.hook_log(), ctx.cancel.clone()),
        store,
        told,
    };
    let previous = dir.current();
    let same_build = dir
        .manifest(number)
        .as_ref()
        .is_some_and(|m| same_build(m, &build.manifest));
    if previous == Some(number) && same_build && !config.force {
        return match dir.pending() {
            Some(pending) => install.finish_pending(pending, started).await,
            None => Ok(install.outcome(
                number,
                previous,
                InstallStatus::AlreadyInstalled,
                None,
                started,
            )),
        };
    }

    let unpacked = if same_build && !config.force && install.reusable(number) {
        None
    } else {
        told.step.set("download");
        let unpacked = download(ctx, store, layout, &build, &dir)
            .await
            .map_err(|err| discarded(&dir, number, err))?;
        dir.finish(number, &build.manifest)?;
        Some(unpacked)
    };
    install.switch(number, previous).await?;
    install.prune(number, previous);
    let status = if unpacked.is_some() {
        InstallStatus::Installed
    } else {
        InstallStatus::Switched
    };
    Ok(install.outcome(number, previous, status, unpacked, started))
}

/// The install directory, locked against other installs (waiting for one that runs), with a
/// `current` that is a link and no other artifact in it.
fn locked_dir(ctx: &Context, config: &InstallConfig, layout: &Layout) -> Result<InstallDir> {
    let dir = InstallDir::lock(&config.dir, || {
        ctx.printer.status(&format!(
            "waiting for another install in {} to finish",
            config.dir.display()
        ));
    })?;
    dir.check_current_is_a_link()?;
    dir.claim_for(layout.artifact(), config.force)?;
    Ok(dir)
}

/// One install's settings and directory, for the steps after the download.
struct Install<'a> {
    ctx: &'a Context,
    config: &'a InstallConfig,
    layout: &'a Layout,
    dir: &'a InstallDir,
    hooks: Hooks,
    store: &'a Store,
    told: &'a Told<'a>,
}

impl Install<'_> {
    fn env(&self, build: u64, previous: Option<u64>) -> HookEnv {
        HookEnv {
            artifact: self.layout.artifact().to_owned(),
            build,
            dir: self.dir.release_dir(build),
            previous,
        }
    }

    /// Release `n` is on disk with the build's manifest: may it be switched to as it is?
    fn reusable(&self, n: u64) -> bool {
        if !self.dir.release_dir(n).is_dir() {
            return false;
        }
        let Some(why) = self.dir.untrusted_reason(n) else {
            return true;
        };
        self.ctx.printer.warn(&format!(
            "build {n} on disk in {} is not trusted as it is: {why}; downloading it again",
            self.dir.release_dir(n).display()
        ));
        false
    }

    /// A signal received since the download stops the install before the switch.
    fn check_interrupted(&self, number: u64, previous: Option<u64>) -> Result<()> {
        if !self.ctx.cancel.is_cancelled() {
            return Ok(());
        }
        Err(anyhow!(
            "install interrupted by {} before the switch; nothing was switched: {}; build \
             {number} stays on disk, verified, for the next install",
            signals::received(),
            still_current(previous)
        ))
    }

    /// Before-switch hooks, the switch, then [`Install::complete`].
    async fn switch(&self, number: u64, previous: Option<u64>) -> Result<()> {
        self.check_interrupted(number, previous)?;
        self.told.step.set("check");
        let env = self.env(number, previous);
        let check = self.config.check.as_deref();
        tokio::task::block_in_place(|| self.hooks.before_switch(&env, check))
            .map_err(|e| anyhow!("{e:#}; not switched: {}", still_current(previous)))?;
        self.tell_started(number).await;
        self.check_interrupted(number, previous)?;
        let pending = Pending {
            build: number,
            previous,
            switched_back: false,
        };
        signals::step(
            format!("switching to build {number} and running its after-switch hooks"),
            "`current` may point at the new build with its hooks unfinished: the same install \
             run again finishes them",
            Cleanup::Within,
        );
        self.told.step.set("switch");
        self.dir.set_pending(pending)?;
        self.dir.switch_to(number)?;
        self.complete(pending)
    }

    /// `current` points at `pending.build`: runs its after-switch hooks (switching back if
    /// they fail) and writes the health file; then the install is finished.
    fn complete(&self, pending: Pending) -> Result<()> {
        self.told.step.set("run");
        let env = self.env(pending.build, pending.previous);
        let run = self.config.run.as_deref();
        if let Err(err) = tokio::task::block_in_place(|| self.hooks.after_switch(&env, run)) {
            if pending.switched_back {
                return Err(anyhow!(
                    "the hooks of build {} failed again after it was switched back to: {err:#}; \
                     it stays current, as there is nothing to go back to",
                    pending.build
                ));
            }
            return Err(self.switch_back(&env, err));
        }
        if let Some(path) = &self.config.health_file {
            self.told.step.set("health-file");
            fs_err::write(
                path,
                format!("{} {}\n", self.layout.artifact(), pending.build),
            )
            .with_context(|| {
                format!(
                    "build {} is current and its hooks succeeded, but writing the \
                         --health-file failed; the next install runs the hooks and writes it \
                         again",
                    pending.build
                )
            })?;
        }
        self.dir.clear_pending()
    }

    /// The bucket's start marker, written as the install is about to leave the host half-way
    /// (the pending mark): if it is killed there, `status` from the bucket says so. The end of
    /// the install (its report) removes it.
    async fn tell_started(&self, build: u64) {
        if let Some(reporting) = self.told.reporting {
            host_report::write_started(
                &self.ctx.printer,
                self.store,
                self.layout,
                reporting,
                build,
            )
            .await;
        }
    }

    /// A previous run switched to `pending.build` and was stopped before its after-switch
    /// hooks succeeded: run them now, under the same rules.
    async fn finish_pending(&self, pending: Pending, started: Instant) -> Result<Outcome> {
        self.ctx.printer.status(&format!(
            "the install of {} {} stopped after its switch: running its after-switch hooks again",
            self.layout.artifact(),
            pending.build
        ));
        // The host is half-way again, whether or not the interrupted run's marker got written.
        self.tell_started(pending.build).await;
        self.complete(pending)?;
        self.prune(pending.build, pending.previous);
        Ok(self.outcome(
            pending.build,
            pending.previous,
            InstallStatus::Finished,
            None,
            started,
        ))
    }

    /// The after-switch hooks failed: point `current` back and run the hooks for the previous
    /// release (even after a signal: the previous release must not stay down); the error
    /// names both outcomes.
    fn switch_back(&self, env: &HookEnv, err: anyhow::Error) -> anyhow::Error {
        let failed = format!("build {} failed after the switch: {err:#}", env.build);
        let dir = self.dir;
        let Some(previous) = env.previous else {
            return match dir.clear_current().and_then(|()| dir.clear_pending()) {
                Ok(()) => {
                    anyhow!("{failed}; there was no previous build, so nothing is current now")
                }
                Err(e) => anyhow!("{failed}; removing `current` also failed: {e:#}"),
            };
        };
        let back = Pending {
            build: previous,
            previous: Some(env.build),
            switched_back: true,
        };
        if let Err(e) = dir.set_pending(back) {
            tracing::warn!("cannot mark the switch back as unfinished: {e:#}");
        }
        if let Err(e) = dir.switch_to(previous) {
            return anyhow!("{failed}; switching back to {previous} ALSO FAILED: {e:#}");
        }
        self.ctx
            .printer
            .warn(&format!("{failed}; switching back to {previous}"));
        let back_env = self.env(previous, Some(env.build));
        let run = self.config.run.as_deref();
        let hooks = self.hooks.unstoppable();
        match tokio::task::block_in_place(|| hooks.after_switch(&back_env, run)) {
            Ok(()) => match dir.clear_pending() {
                Ok(()) => anyhow!("{failed}; switched back to {previous}, whose hooks succeeded"),
                Err(e) => anyhow!(
                    "{failed}; switched back to {previous}, whose hooks succeeded (but marking \
                     that done failed: {e:#})"
                ),
            },
            Err(e) => {
                anyhow!("{failed}; switched back to {previous}, but its hooks failed too: {e:#}")
            }
        }
    }

    /// Removes old releases and leftovers; a failure is a warning: the switch stands.
    fn prune(&self, number: u64, previous: Option<u64>) {
        let pruned = self.dir.prune(self.config.keep, previous);
        if !pruned.removed.is_empty() {
            tracing::info!("removed old releases {:?}", pruned.removed);
        }
        for failure in pruned.failed {
            self.ctx.printer.warn(&format!(
                "{} {number} is current (the switch succeeded), but cleaning up did not: \
                 {failure}; the next install tries again",
                self.layout.artifact()
            ));
        }
    }

    /// The install's report (docs/output.md, `install`).
    fn outcome(
        &self,
        number: u64,
        previous: Option<u64>,
        status: InstallStatus,
        unpacked: Option<Unpacked>,
        started: Instant,
    ) -> Outcome {
        let seconds = started.elapsed().as_secs_f64();
        let sha256 = self
            .dir
            .manifest(number)
            .and_then(|m| m.get(manifest::SHA256).map(str::to_owned));
        let text = match status {
            InstallStatus::AlreadyInstalled => format!(
                "{} {number} is already installed in {}; nothing to do",
                self.layout.artifact(),
                self.dir.root().display()
            ),
            _ => format!(
                "{} {} {number} in {}{} in {seconds:.1}s",
                status.as_str(),
                self.layout.artifact(),
                self.dir.root().display(),
                previous.map_or(String::new(), |p| format!(" (was {p})"))
            ),
        };
        let doc = Installed {
            dry_run: false,
            artifact: self.layout.artifact(),
            version: number,
            previous,
            status,
            dir: self.dir.root(),
            downloaded: unpacked.is_some(),
            files: unpacked.map(|u| u.files),
            sha256,
            seconds: output::seconds_since(started),
        };
        Outcome::new(text, &doc)
    }
}

/// "build P is still current", or that nothing is.
fn still_current(previous: Option<u64>) -> String {
    match previous {
        Some(p) => format!("build {p} is still current"),
        None => "nothing is current".to_owned(),
    }
}

/// The same build: same MODULE, VERSION and SHA256.
fn same_build(a: &Manifest, b: &Manifest) -> bool {
    [manifest::MODULE, manifest::VERSION, manifest::SHA256]
        .iter()
        .all(|key| a.get(key).map(str::trim) == b.get(key).map(str::trim))
}
/// `err` after removing build `number`'s partial download: a partial that stays would make
/// every later install of this build fail.
fn discarded(dir: &InstallDir, number: u64, err: anyhow::Error) -> anyhow::Error {
    match dir.discard_partial(number) {
        Ok(()) => err,
        Err(e) => err.context(format!(
            "the partial download of build {number} could not be removed ({e:#}); the next \
             install removes it"
        )),
    }
}

/// Streams the archive into `releases/{N}.partial`, verifying it; on failure the caller
/// discards the partial (`discarded`).
async fn download(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    build: &Build,
    dir: &InstallDir,
) -> Result<Unpacked> {
    let number = build.number;
    let key = build.archive_key(layout);
    let url = store.url(&key);
    let format = Format::of(&key)?;
    let partial = dir.fresh_partial(number)?;
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_QUEUED);
    let progress = ctx.printer.bytes_progress(
        &format!("downloading {}", key.rsplit('/').next().unwrap_or(&key)),
        build.manifest.size(),
    );
    let counter = progress.clone();
    signals::step(
        format!("downloading build {number}"),
        "nothing was switched (the partial download is removed)",
        Cleanup::Within,
    );
    let limit = build.manifest.size();
    let unpacking =
        tokio::task::spawn_blocking(move || unpack(rx, format, &partial, counter, limit));
    ctx.printer.status(&format!("downloading {url}"));
    let downloaded = tokio::select! {
        result = store.download(&key, tx) => Some(result),
        () = ctx.cancel.cancelled() => None,
    };
    // The download (and its sender) is gone now, so the unpacker ends too.
    let unpacked = unpacking.await.context("the unpack thread failed")?;
    progress.finish();
    match (downloaded, unpacked) {
        (None, _) => Err(anyhow!(
            "install interrupted by {} while downloading {url}; nothing was switched",
            signals::received()
        )),
        // The unpacker stopped reading an object longer than its manifest says (whether or not
        // the download had ended by then, and with or without a SHA256 to compare).
        (Some(_), Ok(result)) if result.too_long => Err(anyhow!(
            "{url} does not match its manifest: it is longer than its SIZE of {} bytes (reading \
             stopped after {} bytes); the download was discarded and nothing was switched",
            limit.unwrap_or_default(),
            result.size
        )),
        (Some(Err(err)), _) => Err(anyhow::Error::from(err)
            .context(format!("downloading {url} failed; nothing was switched"))),
        (Some(Ok(None)), _) => Err(anyhow!(
            "build {number}'s archive {url} does not exist; nothing was switched"
        )),
        (Some(Ok(Some(_))), Err(err)) => Err(err.context("the unpack thread failed")),
        (Some(Ok(Some(_))), Ok(result)) => verify(ctx, &url, build, result),
    }
}

/// What the unpacker saw: the files (or why it stopped), and the digest and size of every
/// byte downloaded.
struct UnpackResult {
    unpacked: Result<Unpacked>,
    sha256: String,
    size: u64,
    /// More bytes than the manifest's SIZE arrived, and reading stopped there.
    too_long: bool,
}

fn unpack(
    rx: mpsc::Receiver<Bytes>,
    format: Format,
    dest: &Path,
    progress: BytesProgress,
    limit: Option<u64>,
) -> Result<UnpackResult> {
    let mut reader = HashingReader {
        rx,
        chunk: Bytes::new(),
        hasher: Sha256::new(),
        size: 0,
        limit,
        progress,
    };
    let unpacked = extract::unpack(&mut reader, format, dest);
    // Whatever follows the tar's end (compressor trailer, padding) is part of the digest; and
    // when unpacking failed, the digest still tells a corrupt download from a hostile archive.
    let drained = io::copy(&mut reader, &mut io::sink());
    let too_long = reader.too_long();
    if !too_long {
        drained?;
    }
    Ok(UnpackResult {
        unpacked,
        sha256: hex::encode(reader.hasher.finalize()),
        size: reader.size,
        too_long,
    })
}

fn verify(ctx: &Context, url: &str, build: &Build, got: UnpackResult) -> Result<Unpacked> {
    let expected_sha = build.manifest.get(manifest::SHA256).map(str::trim);
    let expected_size = build.manifest.size();
    match expected_sha {
        None => ctx.printer.warn(&format!(
            "build {} has no SHA256 (made by the old jobs): installed without verification",
            build.number
        )),
        Some(expected)
            if expected != got.sha256 || expected_size.is_some_and(|s| s != got.size) =>
        {
            return Err(anyhow!(
                "{url} does not match its manifest: expected sha256 {expected} and {} bytes, got \
                 sha256 {} and {} bytes; the download was discarded and nothing was switched",
                expected_size.map_or("?".into(), |s| s.to_string()),
                got.sha256,
                got.size
            ));
        }
        Some(_) => {}
    }
    got.unpacked
        .with_context(|| format!("unpacking {url} failed; nothing was switched"))
}

/// Reads the downloaded chunks in order, hashing and counting them; fails once more than
/// `limit` bytes (the manifest's SIZE) arrived, so an object cannot be longer than it says.
struct HashingReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    hasher: Sha256,
    size: u64,
    limit: Option<u64>,
    progress: BytesProgress,
}

impl HashingReader {
    fn too_long(&self) -> bool {
        self.limit.is_some_and(|limit| self.size > limit)
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.too_long() {
                return Err(io::Error::other(format!(
                    "the archive is longer than its manifest's SIZE ({} bytes)",
                    self.limit.unwrap_or_default()
                )));
            }
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.hasher.update(&chunk);
                    self.size += chunk.len() as u64;
                    self.progress.inc(chunk.len() as u64);
                    if !self.too_long() {
                        self.chunk = chunk; // else: not handed on; the next turn fails
                    }
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
