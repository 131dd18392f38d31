//! `l4lb cleanup`.

use std::process::ExitCode;

/// Arguments of `l4lb cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {}

/// Runs `l4lb cleanup`.
pub fn cleanup(_args: CleanupArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`l4lb cleanup` is not implemented yet")
}
