//! SIGINT and SIGTERM (Jenkins' Abort) cancel the running command cleanly.
//!
//! The first signal cancels a token that long steps watch: they stop, undo what is not yet
//! visible (abort the multipart upload, remove partial files) and the command exits 1. An
//! install hook running meanwhile gets SIGTERM (src/hooks.rs), and an install stops before
//! its switch. A second signal is left to its default action, so a stuck process can still be
//! stopped.

use std::sync::OnceLock;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

static RECEIVED: OnceLock<&'static str> = OnceLock::new();

/// The name of the signal that cancelled the command (`"a signal"` if none did).
pub fn received() -> &'static str {
    RECEIVED.get().copied().unwrap_or("a signal")
}

/// Starts listening; the returned token is cancelled on the first SIGINT or SIGTERM.
pub fn install() -> CancellationToken {
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
                // Back to the default action for a second signal.
                drop((int, term));
            });
        }
        Err(err) => tracing::warn!("cannot listen for signals: {err}"),
    }
    token
}
