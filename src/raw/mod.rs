//! The raw-socket full-NAT balancer (pnet): round robin over healthy backends.

use std::process::ExitCode;

/// `l4lb raw` arguments.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Original positional form: `SOURCE_IP IP PORT IP PORT ...`.
    pub positional: Vec<String>,
}

/// Runs the raw balancer until SIGTERM/SIGINT.
pub fn run(_args: RawArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("raw is not implemented yet")
}
