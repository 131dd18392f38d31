//! The `l4lb` subcommands that belong to the harness; one file a subcommand.

mod bench;
mod check;
mod cleanup;
mod run;
mod topo;

pub use bench::{bench, BenchArgs};
pub use check::{check, CheckArgs};
pub use cleanup::{cleanup, CleanupArgs};
pub use run::{run, RunArgs};
pub use topo::{topo, TopoArgs};
