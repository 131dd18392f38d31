//! Chat server and client, wire-compatible with the original C programs (see SEED.md).
//!
//! - [`wire`]: the pure parts (line framing `[nick] line\n`, the quit rule).
//! - [`server`]: `l4lb chat-server`, a broadcast hub with a bounded queue per client.
//! - [`client`]: `l4lb chat-client`, stdin lines out, socket bytes to stdout.

use std::process::ExitCode;

use clap::builder::TypedValueParser as _;

use crate::logging::LogFormat;

pub mod client;
pub mod server;
pub mod wire;

/// Default bound of each client's outgoing queue on the server, in chunks.
pub const DEFAULT_QUEUE_CHUNKS: usize = 1024;

/// `l4lb chat-server <port>`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// TCP port to listen on (all addresses); 0 picks a free port (logged on stderr).
    pub port: u16,
    /// Chunks that may wait for one client before it is dropped as too slow.
    #[arg(long, default_value_t = DEFAULT_QUEUE_CHUNKS, value_parser = clap::value_parser!(u64).range(1..=1_048_576).map(|n| n as usize))]
    pub queue_chunks: usize,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// `l4lb chat-client <host> <port> <nickname>`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Host name or address of the server (or of the balancer).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Nickname put in front of every line sent (not empty).
    pub nickname: String,
    /// Longest the connect to the server may take before the client gives up.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub connect_timeout: String,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Runs the chat server until SIGTERM/SIGINT.
pub fn run_server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    server::run(args)
}

/// Runs the chat client until `q`, end of input or the server closing.
pub fn run_client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    client::run(args)
}
