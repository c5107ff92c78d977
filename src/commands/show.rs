//! `release show`.

use anyhow::Result;

use super::Context;
use crate::cli::ShowArgs;
use crate::output::Outcome;

/// Runs `release show`.
pub async fn run(_ctx: &Context, _args: ShowArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release show` is not implemented yet"))
}
