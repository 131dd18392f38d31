//! The raw-socket full-NAT balancer (pnet): round robin over healthy backends.
//!
//! Layout (pure parts first, I/O last):
//! - [`packet`]: checked IPv4/TCP views, rewrite with RFC 1624 checksum updates, drop reasons.
//! - [`segment`]: user-space segmentation of GRO/TSO super-packets to the egress MTU.
//! - [`table`]: the NAT table (O(1) both ways, per-backend port pools, timeouts, bound).
//! - [`nat`]: the core: one datagram in, a rewritten datagram or a counted drop out.
//! - [`device`]: the device seam ([`device::Device`]), an in-memory device, the pump.
//! - [`sys`]: the raw socket device (BPF filter, SO_MARK, recvmmsg/sendmmsg).
//! - [`firewall`]: the RST-drop rule and the mark exemption for forwarded RSTs.
//! - [`cli`]: arguments and their validation; [`run`] wires it all together.

pub mod cli;
pub mod device;
pub mod firewall;
pub mod nat;
pub mod packet;
mod run;
pub mod segment;
pub mod sys;
pub mod table;

use std::net::SocketAddrV4;
use std::process::ExitCode;

pub use run::run;

/// `l4lb raw` arguments.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Backend `IP:PORT` (repeatable, round-robin order).
    #[arg(long = "backend", value_name = "IP:PORT")]
    pub backends: Vec<SocketAddrV4>,
    /// Balancer options.
    #[command(flatten)]
    pub options: cli::RawOptions,
    /// Original positional form: `SOURCE_IP IP PORT IP PORT ...`.
    pub positional: Vec<String>,
}

/// Exit code of a clean shutdown.
pub const CLEAN_EXIT: ExitCode = ExitCode::SUCCESS;

pub mod fixture;

#[cfg(test)]
mod tests_packet;
#[cfg(test)]
mod tests_table;
