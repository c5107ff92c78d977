//! `release show`: one build's manifest, read from the least data that answers.

use anyhow::Result;
use serde_json::json;

use super::Context;
use crate::cli::ShowArgs;
use crate::output::Outcome;
use crate::resolve::{self, BuildRef};

/// Runs `release show`.
pub async fn run(ctx: &Context, args: ShowArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let reference: BuildRef = args.build.parse()?;
    let store = ctx.store(None).await;
    let build = resolve::resolve(&store, &layout, &reference).await?;
    let fields: serde_json::Map<String, serde_json::Value> = build
        .manifest
        .pairs()
        .into_iter()
        .map(|(key, value)| (key, serde_json::Value::String(value)))
        .collect();
    Ok(Outcome {
        text: build.manifest.to_text(),
        json: json!({
            "version": build.number,
            "origin": build.origin,
            "manifest": fields,
        }),
    })
}
