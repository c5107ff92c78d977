//! `release rollback`: promote the build that was stable before the current one.
//!
//! The history in the bucket says which builds were stable; the target is the build that was
//! stable before the current one became stable, whatever its number (after promote 1, 2, 1 it
//! is 2). A rollback's record is marked as one, so a second rollback goes one further back
//! instead of undoing the first (see `history::previous_stable`).

use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::bucket::history::{self, Previous};
use crate::bucket::resolve::{self, BuildRef};
use crate::cli::TagArgs;
use crate::config::promote::TagConfig;
use crate::error::ExitError;
use crate::output::Outcome;
use crate::promotion::{self, Promotion};

/// Runs `release rollback`.
pub(crate) async fn run(ctx: &Context, args: TagArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let allow_format_change = args.allow_format_change;
    let trusted = crate::signing::configured(
        args.trusted_keys.clone(),
        &ctx.settings.file.promote.trusted_keys,
    )?;
    let tagging = TagConfig::resolve(args, &ctx.settings.file.promote, layout.artifact())?;
    let store = Arc::new(ctx.store(None).await);
    let pointer = store.url(&layout.latest_stable());
    let stable = promotion::read_stable(ctx, &store, &layout).await?;
    let Some(current) = stable.as_ref().and_then(|s| s.version) else {
        return Err(ExitError::Usage(format!(
            "`{pointer}` names no build, so there is nothing to roll back from: run `release \
             promote N` with the build to make stable (`release list` shows them)"
        ))
        .into());
    };
    let target = match history::previous_stable(&store, &layout, current).await? {
        Previous::Build(number) => number,
        Previous::NoHistory => {
            return Err(ExitError::Usage(format!(
                "no promotion history in `{}` (builds promoted by the old jobs leave none), so \
                 the build before {current} is unknown: run `release promote N` with the build \
                 to roll back to (`release list` shows them); nothing was changed",
                store.url(&layout.history_prefix())
            ))
            .into());
        }
        Previous::NoneBefore => {
            return Err(ExitError::Usage(format!(
                "the promotion history names no build that was stable before {current}: run \
                 `release promote N` with the build to roll back to (`release list` shows \
                 them); nothing was changed"
            ))
            .into());
        }
    };
    ctx.printer.status(&format!(
        "rolling back {} from {current} to {target}, the build stable before it",
        layout.artifact()
    ));
    let build = resolve::resolve(&store, &layout, &BuildRef::Number(target)).await?;
    let build = promotion::signed_if_required(ctx, &store, &layout, build, &trusted).await?;
    let promotion = Promotion {
        ctx,
        store: &store,
        layout: &layout,
        tagging: &tagging,
        rollback: true,
        allow_format_change,
    };
    promotion.promote(build, stable).await
}
