//! `release rollback`.

use anyhow::Result;

use super::Context;
use crate::cli::TagArgs;
use crate::output::Outcome;

/// Runs `release rollback`.
pub async fn run(_ctx: &Context, _args: TagArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release rollback` is not implemented yet"))
}
