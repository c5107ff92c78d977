//! `release key export`: the public half of a signing key, for hosts' trusted keys.

use anyhow::Result;
use serde_json::json;

use super::Context;
use crate::cli::KeyCommand;
use crate::output::Outcome;
use crate::signing::{self, SignWith};

/// Runs `release key …`.
pub(crate) async fn run(ctx: &Context, command: KeyCommand) -> Result<Outcome> {
    match command {
        KeyCommand::Export(args) => {
            let with: SignWith = args.key.parse()?;
            let text = signing::export(&with, async || ctx.aws_config().await).await?;
            Ok(Outcome {
                json: json!({"key": args.key, "public_key": text}),
                text: text.trim_end().to_owned(),
            })
        }
    }
}
