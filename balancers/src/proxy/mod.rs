//! The tokio proxy balancer: least connections, health checks, idle timeouts.
//!
//! Every client connection gets its own upstream connection, to the usable backend with
//! the fewest live sessions (weighted; ties round robin, see [`crate::pool::select`]).
//!
//! - [`config`]: `l4lb proxy` arguments and their validation.
//! - [`server`]: listener, per-CPU workers, accept loop, session limit, graceful shutdown.
//! - [`session`]: one client: connect (timeout, retry elsewhere), forward, idle timeout.
//! - [`forward`]: two half-duplex copies (splice(2) through a pipe, or a buffer).
//! - [`spin`]: busy polling after a worker's last bytes (`--busy-poll`).
//! - [`descriptors`]: the descriptor budget `--max-sessions` needs.
//! - [`stats`]: proxy-wide counters, exported on the stats endpoint.

pub mod config;
pub mod descriptors;
pub mod forward;
pub mod server;
pub mod session;
pub mod spin;
mod splice;
pub mod stats;

use std::process::ExitCode;

pub use config::{ProxyArgs, ProxyConfig};

/// Runs the proxy balancer until SIGTERM/SIGINT (then drains up to `--grace`).
pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.resolve()?;
    args.log.init();
    let given = args.max_sessions.is_some();
    config.max_sessions =
        descriptors::ensure_descriptors(config.max_sessions, given, config.forward);
    // The main runtime runs signals, health checks and the stats endpoint; sessions run
    // on the workers' own runtimes (see `server`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(server::serve_until_signal(config))?;
    Ok(ExitCode::SUCCESS)
}
