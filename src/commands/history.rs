//! `release history`.

use anyhow::Result;

use super::Context;
use crate::cli::ListArgs;
use crate::output::Outcome;

/// Runs `release history`.
pub async fn run(_ctx: &Context, _args: ListArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release history` is not implemented yet"))
}
