//! `release key export`: the public half of a signing key, for hosts' trusted keys.

use anyhow::Result;
use serde::Serialize;

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
            let doc = Exported {
                key: &args.key,
                public_key: &text,
            };
            Ok(Outcome::new(text.trim_end().to_owned(), &doc))
        }
    }
}

/// `key export`'s document (docs/output.md).
#[derive(Serialize)]
struct Exported<'a> {
    /// The key as given (`key:PATH`, `kms:…`).
    key: &'a str,
    /// The public key, PEM.
    public_key: &'a str,
}
