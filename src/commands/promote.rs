//! `release promote`.

use anyhow::Result;

use super::Context;
use crate::cli::PromoteArgs;
use crate::output::Outcome;

/// Runs `release promote`.
pub async fn run(_ctx: &Context, _args: PromoteArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release promote` is not implemented yet"))
}
