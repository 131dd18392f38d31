//! `l4lb run`.

use std::process::ExitCode;

/// Arguments of `l4lb run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `l4lb run`.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`l4lb run` is not implemented yet")
}
