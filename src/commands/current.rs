//! `release current`.

use anyhow::Result;

use super::Context;
use crate::cli::CurrentArgs;
use crate::output::Outcome;

/// Runs `release current`.
pub async fn run(_ctx: &Context, _args: CurrentArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release current` is not implemented yet"))
}
