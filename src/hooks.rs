//! Install hooks: commands run around the switch of `current`.
//!
//! Before the switch: `deploy/before-switch` if the archive ships it, then `--check CMD`.
//! After: `deploy/after-switch`, then `--run CMD`. Each runs in the release directory with
//! `sh` (commands with `sh -c`) and these variables: RELEASE_ARTIFACT, RELEASE_BUILD,
//! RELEASE_DIR (absolute), RELEASE_PREVIOUS_BUILD (empty if none).
//!
//! A hook's stdout and stderr go to a pipe of its own that release drains: into the install
//! directory's `hooks.log` (bounded, see [`HookLog`]) and on to release's stderr while that is
//! open (stdout carries results only). So a closed stderr (a dropped ssh session) never kills a
//! hook with SIGPIPE. A SIGINT/SIGTERM that release receives while a watched hook runs is passed
//! on to the hook as SIGTERM; the hook then fails as any failing hook does.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::install_dir;
use crate::output;
use crate::signals;

/// How often a running hook is checked for its end and for a signal to pass on.
const POLL: Duration = Duration::from_millis(20);
/// How long the output pipe is drained after the hook ended: a process the hook left in the
/// background may hold it open forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// `hooks.log` is moved to `hooks.log.1` when a hook starts and it is larger than this.
const LOG_ROTATE_AT: u64 = 1 << 20;
/// `hooks.log` never grows past this: further output is only forwarded.
const LOG_MAX: u64 = 2 << 20;

/// What a hook is told.
#[derive(Debug, Clone)]
pub(crate) struct HookEnv {
    pub(crate) artifact: String,
    /// The build the hook is for.
    pub(crate) build: u64,
    /// That build's release directory (absolute).
    pub(crate) dir: PathBuf,
    /// The build that was current before, if any.
    pub(crate) previous: Option<u64>,
}

/// Runs hooks: where their output is kept, and which signal token stops them.
#[derive(Debug, Clone)]
pub(crate) struct Hooks {
    log: PathBuf,
    cancel: CancellationToken,
}

impl Hooks {
    /// Hooks logging to `log`, stopped (SIGTERM) once `cancel` is cancelled.
    pub(crate) fn new(log: PathBuf, cancel: CancellationToken) -> Self {
        Self { log, cancel }
    }

    /// The same hooks, but never stopped by a signal already received: the hooks of the
    /// build switched back to must run, or the previous release stays down.
    pub(crate) fn unstoppable(&self) -> Self {
        Self {
            log: self.log.clone(),
            cancel: CancellationToken::new(),
        }
    }

    /// The hooks run before switching; an error means: do not switch.
    pub(crate) fn before_switch(&self, env: &HookEnv, check: Option<&str>) -> Result<()> {
        self.run_shipped(env, "deploy/before-switch")?;
        if let Some(command) = check {
            self.run(env, "--check", command)?;
        }
        Ok(())
    }

    /// The hooks run after switching; an error means: switch back.
    pub(crate) fn after_switch(&self, env: &HookEnv, run_command: Option<&str>) -> Result<()> {
        self.run_shipped(env, "deploy/after-switch")?;
        if let Some(command) = run_command {
            self.run(env, "--run", command)?;
        }
        Ok(())
    }

    fn run_shipped(&self, env: &HookEnv, relative: &str) -> Result<()> {
        let script = env.dir.join(relative);
        if !script.is_file() {
            return Ok(());
        }
        let mut command = Command::new("sh");
        command.arg(&script);
        self.execute(env, relative, command)
    }

    fn run(&self, env: &HookEnv, what: &str, shell_command: &str) -> Result<()> {
        let mut command = Command::new("sh");
        command.arg("-c").arg(shell_command);
        self.execute(env, &format!("{what} `{shell_command}`"), command)
    }

    fn execute(&self, env: &HookEnv, what: &str, mut command: Command) -> Result<()> {
        if self.cancel.is_cancelled() {
            bail!(
                "{what} was not started for build {}: {} received",
                env.build,
                signals::received()
            );
        }
        let (reader, writer) = io::pipe().context("creating a pipe for a hook")?;
        command
            .current_dir(&env.dir)
            .env("RELEASE_ARTIFACT", &env.artifact)
            .env("RELEASE_BUILD", env.build.to_string())
            .env("RELEASE_DIR", &env.dir)
            .env(
                "RELEASE_PREVIOUS_BUILD",
                env.previous.map(|p| p.to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(writer.try_clone().context("creating a pipe for a hook")?)
            .stderr(writer);
        let mut log = HookLog::open(&self.log, &format!("build {}: {what}", env.build));
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {what} for build {}", env.build))?;
        // The command holds our copy of the pipe's write end: without dropping it, the pipe
        // would never reach its end.
        drop(command);
        let log_copy = log.try_clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            drain(reader, log_copy);
            let _ = done_tx.send(());
        });
        let (status, stopped) = self.wait(&mut child)?;
        if done_rx.recv_timeout(DRAIN_GRACE).is_err() {
            tracing::info!("{what} left a process holding its output open; no longer reading it");
        }
        log.note(&format!("{what} ended: {status}"));
        if stopped {
            bail!(
                "{what} for build {} was stopped: {} received (passed on to the hook as \
                 SIGTERM; it ended with {status})",
                env.build,
                signals::received()
            );
        }
        if !status.success() {
            bail!("{what} failed for build {} ({status})", env.build);
        }
        Ok(())
    }

    /// Waits for the hook; passes a signal release received on to it. Returns its status and
    /// whether it was signalled.
    fn wait(&self, child: &mut Child) -> Result<(ExitStatus, bool)> {
        let mut stopped = false;
        loop {
            if let Some(status) = child.try_wait().context("waiting for a hook")? {
                return Ok((status, stopped));
            }
            if !stopped && self.cancel.is_cancelled() {
                // Not yet reaped, so the pid is still the hook's.
                let pid = rustix::process::Pid::from_child(child);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                stopped = true;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Copies the hook's output into the log and on to stderr until the pipe ends.
fn drain(mut reader: io::PipeReader, mut log: HookLog) {
    let mut buf = [0u8; 8192];
    let mut forward = true;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        log.write(&buf[..n]);
        // Once stderr is gone, the log alone keeps the output.
        forward = forward && output::forward_to_stderr(&buf[..n]).is_ok();
    }
}

/// `{dir}/hooks.log`: every hook's output, each run headed by a line naming it; created `0644`
/// whatever the umask (the install directory's file policy). Rotated to
/// `hooks.log.1` once over 1 MiB when a hook starts, and never written past 2 MiB, so the two
/// files stay under ~3 MiB whatever the hooks print. Failing to log never stops a hook.
#[derive(Debug)]
struct HookLog {
    file: Option<fs_err::File>,
}

impl HookLog {
    fn open(path: &Path, heading: &str) -> Self {
        if fs_err::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_AT) {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            let _ = fs_err::rename(path, old);
        }
        let file = install_dir::open_or_create(path, fs_err::File::options().append(true));
        let mut log = Self {
            file: file
                .map_err(|e| tracing::warn!("hook output is not logged: {e}"))
                .ok(),
        };
        log.note(&format!("{} {heading}", jiff::Timestamp::now()));
        log
    }

    fn try_clone(&self) -> Self {
        Self {
            file: self.file.as_ref().and_then(|f| f.try_clone().ok()),
        }
    }

    fn note(&mut self, line: &str) {
        self.write(format!("--- {line}\n").as_bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some(file) = &mut self.file else { return };
        let size = file.file().metadata().map_or(0, |m| m.len());
        if size + bytes.len() as u64 > LOG_MAX {
            let _ = file.write_all(b"--- the rest is not logged: hooks.log is full\n");
            self.file = None;
            return;
        }
        let _ = file.write_all(bytes);
    }
}
