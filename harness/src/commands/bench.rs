//! `l4lb bench`.

use std::process::ExitCode;

/// Arguments of `l4lb bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs `l4lb bench`.
pub fn bench(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`l4lb bench` is not implemented yet")
}
