//! `release show`: one build's manifest, read from the least data that answers.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::bucket::resolve::{self, BuildRef};
use crate::cli::ShowArgs;
use crate::output::Outcome;

/// Runs `release show`.
pub(crate) async fn run(ctx: &Context, args: ShowArgs) -> Result<Outcome> {
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
    // Who signed, as the signature object says (checked by install and promote, not here).
    let signed_by = store
        .get(&layout.signature(build.number))
        .await?
        .map(|sig| crate::signing::named_signer(&sig.body).unwrap_or_else(|| "unreadable".into()));
    match &signed_by {
        Some(key) => ctx.printer.status(&format!(
            "build {} is signed by key {key} (not verified by show; install and promote with \
             trusted keys check it)",
            build.number
        )),
        None => ctx
            .printer
            .status(&format!("build {} is not signed", build.number)),
    }
    let doc = Show {
        version: build.number,
        origin: build.origin,
        manifest: fields,
        signed_by,
    };
    Ok(Outcome::new(build.manifest.to_text(), &doc))
}

/// `show`'s document (docs/output.md).
#[derive(Serialize)]
struct Show {
    version: u64,
    /// Where the manifest came from: `manifest` or `pointer`.
    origin: resolve::Origin,
    /// The manifest's keys and values, as strings.
    manifest: serde_json::Map<String, serde_json::Value>,
    /// The key id the signature object names, `null` when unsigned.
    signed_by: Option<String>,
}
