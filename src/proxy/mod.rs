//! The tokio proxy balancer: least connections, health checks, idle timeouts.

use std::process::ExitCode;

/// `l4lb proxy` arguments.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Original positional form: `IP PORT IP PORT ...`.
    pub positional: Vec<String>,
}

/// Runs the proxy balancer until SIGTERM/SIGINT.
pub fn run(_args: ProxyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("proxy is not implemented yet")
}
