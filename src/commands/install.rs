//! `release install`.

use anyhow::Result;

use super::Context;
use crate::cli::InstallArgs;
use crate::output::Outcome;

/// Runs `release install`.
pub async fn run(_ctx: &Context, _args: InstallArgs) -> Result<Outcome> {
    Err(anyhow::anyhow!("`release install` is not implemented yet"))
}
