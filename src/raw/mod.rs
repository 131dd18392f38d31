//! The raw-socket full-NAT balancer (pnet): round robin over healthy backends.
//!
//! Layout (pure parts first, I/O last):
//! - [`packet`]: checked IPv4/TCP views, rewrite with RFC 1624 checksum updates, drop reasons.
//! - [`segment`]: user-space segmentation of GRO/TSO super-packets to the egress MTU.
//! - [`table`]: the NAT table (O(1) both ways, per-backend port pools, timeouts, bound).
//! - [`nat`]: the core: one datagram in, a rewritten datagram or a counted drop out.
//! - [`limit`]: the token bucket bounding the resets the balancer generates itself.
//! - [`vnet`]: the `virtio_net_hdr` offload header of packet sockets (super-packets,
//!   partial checksums).
//! - [`hops`]: next hops learned from received frames, used once routing agrees.
//! - [`device`]: the device seam ([`device::Device`]), an in-memory device, the pump.
//! - [`afpacket`]: the packet-socket device (`--capture packet`, default): frames in,
//!   rewritten frames straight back out of a device (`--send direct`).
//! - [`routes`]: route lookups (rtnetlink) that confirm learned hops.
//! - [`sys`]: BPF filters, the raw-socket device (`--capture raw`) and the routed sender
//!   (recvmmsg/sendmmsg, SO_MARK).
//! - [`sender`]: the optional sender thread (`--send-thread`) for routed sends.
//! - [`firewall`]: the RST-drop rule and the mark exemption for forwarded RSTs.
//! - [`stats`]: the balancer's metrics on the shared stats endpoint.
//! - [`cli`]: arguments and their validation; [`run`] wires it all together.
//!
//! Offloads: no setting is required. With a veth's default offloads a sender's TSO hands
//! the balancer super-packets of up to 64 KB whose TCP checksum is only the pseudo-header
//! part (CHECKSUM_PARTIAL). The packet socket says so in its offload header ([`vnet`]):
//! sent directly, such a frame leaves whole with the same header, its partial checksum
//! moved to the new addresses, and the device (or the kernel's GSO) segments and sums it,
//! as for the kernel's own forwarding. On the routed path (`--send routed`, `--capture
//! raw`, a hop not yet known) the checksum is computed in full and datagrams longer than
//! `--mtu` are cut into MTU-sized segments in user space ([`segment`]). A final checksum
//! (offloads off) is always updated incrementally (RFC 1624).
//!
//! Direct sending: the next hop of an address is the interface and MAC its frames came
//! from ([`hops`]), used only once the kernel's route to the address goes out of the same
//! interface ([`routes`]), so a forged source address cannot redirect traffic; a
//! connection's first SYN and frames to unknown hops take the routed path, so the
//! kernel's ARP resolves backends not heard from yet. Frames sent directly skip the
//! kernel's IP output path and its netfilter hooks (only our own rewritten traffic: the
//! RST-drop rule still stops the kernel's RSTs).
//!
//! Firewall (in the balancer's namespace): the RST-drop rule must exist (or
//! `--install-rst-drop`); the balancer inserts `-m mark --mark 0x4c34 -j ACCEPT` before it
//! so the RSTs it forwards pass, and, with `--capture packet` (default), `raw`-table
//! PREROUTING drops for the listening port and the NAT range (local destinations only);
//! it removes what it added on exit.
//!
//! When no backend is usable (or the table is full, or the NAT ports are exhausted), a
//! client's SYN is answered with a RST+ACK from the listening address, as a closed port
//! would be, so `connect()` fails at once; the reset leaves through the marked socket and
//! so passes the RST-drop rule. Nothing else is answered (never a RST, a non-SYN or a
//! packet for another port), refusals are rate-limited ([`limit`]), and still nothing
//! spins: an idle or all-down balancer sleeps in `recvmmsg` between packets.

pub mod afpacket;
pub mod cli;
pub mod device;
pub mod firewall;
pub mod hops;
pub mod limit;
pub mod mmsg;
pub mod nat;
pub mod packet;
pub mod routes;
mod run;
pub mod segment;
pub mod sender;
pub mod stats;
pub mod sys;
pub mod table;
pub mod vnet;

pub use run::run;

/// `l4lb raw` arguments.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Backends (`--backend IP:PORT`, repeatable, round-robin order).
    #[command(flatten)]
    pub backends: crate::args::BackendArgs,
    /// Balancer options.
    #[command(flatten)]
    pub options: cli::RawOptions,
    /// Health-check flags (shared with the proxy).
    #[command(flatten)]
    pub health: crate::args::HealthArgs,
    /// Stats endpoint.
    #[command(flatten)]
    pub admin: crate::args::AdminArgs,
    /// Log format.
    #[command(flatten)]
    pub log: crate::args::LogArgs,
    /// Original positional form: `SOURCE_IP IP PORT IP PORT ...` (without SOURCE_IP when
    /// `--source-ip` is given).
    pub positional: Vec<String>,
}

pub mod fixture;

#[cfg(test)]
mod tests_packet;
#[cfg(test)]
mod tests_refuse;
#[cfg(test)]
mod tests_table;
