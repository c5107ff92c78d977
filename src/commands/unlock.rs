//! `release unlock`: remove a stale (or, with `--force`, any) push lock, including a damaged
//! one. Only the version read is removed: a lock renewed or taken by a push meanwhile stays.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::bucket::lock::{self, Current, LockInfo};
use crate::bucket::store::{Store, StoreError};
use crate::cli::UnlockArgs;
use crate::error::ExitError;
use crate::output::Outcome;
use crate::signals::{self, Cleanup};

/// Runs `release unlock`.
pub(crate) async fn run(ctx: &Context, args: UnlockArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let store = ctx.store(None).await;
    let key = layout.push_lock();
    let url = store.url(&key);
    let (held, etag) = match lock::current(&store, &layout).await? {
        None => {
            let doc = Unlocked::none(ctx.settings.dry_run);
            return Ok(Outcome::new(format!("no push lock at {url}"), &doc));
        }
        Some(Current::Damaged { why, .. }) if !args.force => {
            return Err(ExitError::Conflict(format!(
                "`{url}` is damaged ({why}): no push wrote it like this; \
                 `release unlock --force` removes it"
            ))
            .into());
        }
        Some(Current::Damaged { etag, .. }) => (None, etag),
        Some(Current::Held { info, .. }) if !info.is_expired() && !args.force => {
            return Err(ExitError::Conflict(format!(
                "the push lock is held by {} since {} ({}) and expires {}: it may still be \
                 running; use `release unlock --force` if you know it is not",
                info.holder, info.since, info.what, info.expires
            ))
            .into());
        }
        Some(Current::Held { info, etag }) => (Some(info), etag),
    };
    let whose = held.as_ref().map_or_else(
        || "the damaged push lock".to_owned(),
        |h| format!("the push lock held by {}", h.holder),
    );
    if ctx.settings.dry_run {
        let doc = Unlocked::found(true, false, held.as_ref());
        return Ok(Outcome::new(format!("dry run: would remove {whose}"), &doc));
    }
    signals::step(
        "removing the push lock",
        "the lock may or may not have been removed: `release unlock` again tells",
        Cleanup::None,
    );
    remove(&store, &key, &etag).await?;
    let since = held
        .as_ref()
        .map(|h| format!(" since {}", h.since))
        .unwrap_or_default();
    let doc = Unlocked::found(false, true, held.as_ref());
    Ok(Outcome::new(format!("removed {whose}{since}"), &doc))
}

/// `unlock`'s document (docs/output.md): the same keys in every case (before, `dry_run` and
/// `damaged` appeared only in some).
#[derive(Serialize)]
struct Unlocked<'a> {
    dry_run: bool,
    removed: bool,
    /// The lock removed (or that would be), `null` if none or damaged.
    lock: Option<&'a LockInfo>,
    /// The lock found could not be read.
    damaged: bool,
}

impl<'a> Unlocked<'a> {
    /// No lock was there.
    fn none(dry_run: bool) -> Self {
        Self {
            dry_run,
            removed: false,
            lock: None,
            damaged: false,
        }
    }

    /// A lock was there: `held` as read, `None` when damaged.
    fn found(dry_run: bool, removed: bool, held: Option<&'a LockInfo>) -> Self {
        Self {
            dry_run,
            removed,
            lock: held,
            damaged: held.is_none(),
        }
    }
}

/// Deletes the lock if it is still the one read (`etag`); one taken or renewed meanwhile is a
/// conflict (exit 3) and stays.
async fn remove(store: &Store, key: &str, etag: &str) -> Result<()> {
    match store.delete_if_match(key, etag).await {
        Ok(()) => Ok(()),
        Err(StoreError::PreconditionFailed { .. }) => Err(ExitError::Conflict(format!(
            "`{}` changed while it was being removed (a push took or renewed it): \
             nothing was removed; run `release unlock` again to see who holds it",
            store.url(key)
        ))
        .into()),
        Err(err) => Err(err.into()),
    }
}
