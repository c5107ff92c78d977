//! `release unlock`: remove a stale (or, with `--force`, any) push lock, including a damaged
//! one. Only the version read is removed: a lock renewed or taken by a push meanwhile stays.

use anyhow::Result;
use serde_json::json;

use super::Context;
use crate::bucket::lock::{self, Current};
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
            return Ok(Outcome {
                text: format!("no push lock at {url}"),
                json: json!({"removed": false, "lock": null}),
            });
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
        return Ok(Outcome {
            text: format!("dry run: would remove {whose}"),
            json: json!({"dry_run": true, "removed": false, "lock": held, "damaged": held.is_none()}),
        });
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
    Ok(Outcome {
        text: format!("removed {whose}{since}"),
        json: json!({"removed": true, "lock": held, "damaged": held.is_none()}),
    })
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
