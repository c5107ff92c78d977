//! SIGINT and SIGTERM (Ctrl-C, Jenkins' Abort) stop every command, in every phase.
//!
//! The first signal cancels a token. What happens next depends on the step the command said it
//! is in (`step`): a step that cleans up after itself (an upload that must be aborted, a partial
//! download to remove, a push that must still write its report) is given time to do so; any
//! other step is abandoned at once, and the error names the step and what it leaves behind. A
//! second signal ends the process at once, whatever it is doing. An install hook running
//! meanwhile gets SIGTERM (src/hooks.rs), and an install stops before its switch.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::output;

static RECEIVED: OnceLock<&'static str> = OnceLock::new();
static STEP: Mutex<Option<Step>> = Mutex::new(None);

/// How long a step that cleans up after itself may take to do so once a signal arrived, when
/// it has no limit of its own (`Cleanup::Within`).
pub(crate) const CLEANUP_GRACE: Duration = Duration::from_secs(30);

/// What the command is doing, for the message a signal leaves.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// What is going on, e.g. "moving latest-stable to build 5".
    pub(crate) doing: String,
    /// What an interruption here leaves behind, e.g. "nothing was changed".
    pub(crate) leaves: String,
    /// Whether the step reacts to the signal by itself.
    pub(crate) cleanup: Cleanup,
}

/// How a step reacts to a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cleanup {
    /// It does not watch the token: abandon it at once.
    None,
    /// It stops and cleans up by itself, given at most `CLEANUP_GRACE`.
    Within,
    /// It stops starting new work and finishes what runs (a push's batch), however long that
    /// takes; a second signal still ends the process.
    Finish,
}

/// Says what the command is doing now; replaces the previous step.
pub(crate) fn step(doing: impl Into<String>, leaves: impl Into<String>, cleanup: Cleanup) {
    let step = Step {
        doing: doing.into(),
        leaves: leaves.into(),
        cleanup,
    };
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
}

/// The step the command last said it is in, if any.
pub(crate) fn current_step() -> Option<Step> {
    STEP.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The name of the signal that cancelled the command (`"a signal"` if none did).
pub(crate) fn received() -> &'static str {
    RECEIVED.get().copied().unwrap_or("a signal")
}

/// Starts listening; the returned token is cancelled on the first SIGINT or SIGTERM, and the
/// process exits (status 1) on the second.
pub(crate) fn install() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let listeners =
        signal(SignalKind::interrupt()).and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
    match listeners {
        Ok((mut int, mut term)) => {
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                let _ = RECEIVED.set(name);
                tracing::info!("{name} received: stopping");
                cancel.cancel();
                // tokio keeps its handler installed for the life of the process, so the
                // default action never comes back by itself: the second signal is ours to obey.
                let second = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                let during = current_step().map_or(String::new(), |s| {
                    let short = match s.cleanup {
                        Cleanup::None => "",
                        Cleanup::Within | Cleanup::Finish => ", its clean-up cut short",
                    };
                    format!(" while {}{short}; {}", s.doing, s.leaves)
                });
                output::error_now(&format!("{second} received again: exiting at once{during}"));
                std::process::exit(1);
            });
        }
        Err(err) => tracing::warn!("cannot listen for signals: {err}"),
    }
    token
}

/// The error of a command abandoned after a signal: the signal, the step, what it leaves.
pub(crate) fn interrupted(default: &Step, cleanup_timed_out: bool) -> anyhow::Error {
    let step = current_step().unwrap_or_else(|| default.clone());
    let late = if cleanup_timed_out {
        format!(
            " (its clean-up did not finish within {}s)",
            CLEANUP_GRACE.as_secs()
        )
    } else {
        String::new()
    };
    anyhow::anyhow!(
        "interrupted by {} while {}{late}; {}",
        received(),
        step.doing,
        step.leaves
    )
}
