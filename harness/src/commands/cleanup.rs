//! `l4lb cleanup [--all]`: remove what crashed runs left behind.
//!
//! Without `--all`, only `l4lb-<pid>-*` namespaces whose pid is gone are removed, so it
//! is safe while other runs are live. With `--all`, every `l4lb-` namespace goes.

use std::process::ExitCode;

use crate::cleanup::{sweep, SweepScope};

/// Arguments of `l4lb cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Also remove namespaces of runs that are still alive.
    #[arg(long)]
    all: bool,
}

/// Runs `l4lb cleanup`.
pub fn cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    let scope = if args.all {
        SweepScope::All
    } else {
        SweepScope::DeadRuns
    };
    let removed = sweep(scope)?;
    if removed.is_empty() {
        println!("nothing to clean up");
    }
    for r in removed {
        if r.killed.is_empty() {
            println!("removed {}", r.name);
        } else {
            let pids: Vec<String> = r.killed.iter().map(u32::to_string).collect();
            println!("removed {} (killed pids {})", r.name, pids.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
