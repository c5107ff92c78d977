//! `release promote`: make a build the stable one and tag its commit (the steps are in
//! `promotion`).

use anyhow::Result;

use super::Context;
use crate::bucket::resolve::{self, BuildRef};
use crate::cli::PromoteArgs;
use crate::config::promote::TagConfig;
use crate::output::Outcome;
use crate::promotion::{Promotion, read_stable, signed_if_required};

/// Runs `release promote`.
pub(crate) async fn run(ctx: &Context, args: PromoteArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let reference: BuildRef = args.build.parse()?;
    let allow_format_change = args.tag.allow_format_change;
    let trusted = crate::signing::configured(
        args.tag.trusted_keys.clone(),
        &ctx.settings.file.promote.trusted_keys,
    )?;
    let tagging = TagConfig::resolve(args.tag, &ctx.settings.file.promote, layout.artifact())?;
    let store = ctx.store(None).await;
    let stable = read_stable(ctx, &store, &layout).await?;
    let build = resolve::resolve(&store, &layout, &reference).await?;
    let build = signed_if_required(ctx, &store, &layout, build, &trusted).await?;
    let promotion = Promotion {
        ctx,
        store: &store,
        layout: &layout,
        tagging: &tagging,
        rollback: false,
        allow_format_change,
    };
    promotion.promote(build, stable).await
}
