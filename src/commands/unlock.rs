//! `release unlock`: remove a stale push lock.

use anyhow::Result;
use serde_json::json;

use super::Context;
use crate::cli::UnlockArgs;
use crate::error::Problem;
use crate::output::Outcome;
use crate::rollout::lock;
use crate::signals::{self, Cleanup};

/// Runs `release unlock`.
pub async fn run(ctx: &Context, args: UnlockArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let store = ctx.store(None).await;
    let key = layout.push_lock();
    let Some(held) = lock::read(&store, &layout).await? else {
        return Ok(Outcome {
            text: format!("no push lock at {}", store.url(&key)),
            json: json!({"removed": false, "lock": null}),
        });
    };
    if !held.is_expired() && !args.force {
        return Err(Problem::Conflict(format!(
            "the push lock is held by {} since {} ({}) and expires {}: it may still be running; \
             use `release unlock --force` if you know it is not",
            held.holder, held.since, held.what, held.expires
        ))
        .into());
    }
    if ctx.settings.dry_run {
        return Ok(Outcome {
            text: format!(
                "dry run: would remove the push lock held by {}",
                held.holder
            ),
            json: json!({"dry_run": true, "removed": false, "lock": held}),
        });
    }
    signals::step(
        "removing the push lock",
        "the lock may or may not have been removed: `release unlock` again tells",
        Cleanup::None,
    );
    store.delete(&key).await?;
    Ok(Outcome {
        text: format!(
            "removed the push lock held by {} since {}",
            held.holder, held.since
        ),
        json: json!({"removed": true, "lock": held}),
    })
}
