//! `release list`.

use anyhow::Result;

use super::Context;
use crate::cli::ListArgs;
use crate::output::Outcome;

/// Runs `release list`.
pub async fn run(_ctx: &Context, _args: ListArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release list` is not implemented yet"))
}
