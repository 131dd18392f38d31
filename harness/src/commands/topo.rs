//! `l4lb topo`.

use std::process::ExitCode;

/// Arguments of `l4lb topo`.
#[derive(Debug, clap::Args)]
pub struct TopoArgs {}

/// Runs `l4lb topo`.
pub fn topo(_args: TopoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`l4lb topo` is not implemented yet")
}
