//! `l4lb check`.

use std::process::ExitCode;

/// Arguments of `l4lb check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

/// Runs `l4lb check`.
pub fn check(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`l4lb check` is not implemented yet")
}
