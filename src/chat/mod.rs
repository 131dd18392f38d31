//! Chat server and client, wire-compatible with the original C programs (see SEED.md).

use std::process::ExitCode;

/// `l4lb chat-server <port>`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// TCP port to listen on (all addresses).
    pub port: u16,
}

/// `l4lb chat-client <host> <port> <nickname>`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Host name or address of the server (or of the balancer).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Nickname put in front of every line sent.
    pub nickname: String,
}

/// Runs the chat server until SIGTERM/SIGINT.
pub fn run_server(_args: ServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("chat-server is not implemented yet")
}

/// Runs the chat client until `q`, end of input or the server closing.
pub fn run_client(_args: ClientArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("chat-client is not implemented yet")
}
