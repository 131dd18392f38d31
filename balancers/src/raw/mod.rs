//! The raw-socket full-NAT balancer: round robin over healthy backends, packets rewritten
//! in user space. The rooms follow a packet's way through it:
//!
//! - [`wire`]: wire formats as pure functions (IPv4/TCP views and rewrite, GSO cutting,
//!   the packet socket's offload header).
//! - [`nat`]: the NAT: one datagram in, a rewritten datagram or a counted drop out (the
//!   table, the core, the bucket bounding the resets it sends).
//! - [`device`]: where datagrams come from and go to (packet and raw sockets, next hops,
//!   the sender thread) and the forwarding loop between device and NAT.
//! - [`firewall`]: the RST-drop rule and the mark exemption for forwarded RSTs.
//! - [`stats`]: the balancer's metrics on the shared stats endpoint.
//! - [`stages`]: where a packet's time goes (`--stage-times`: queued, rewrite, send).
//! - [`cli`]: arguments, resolved into one [`cli::RawConfig`]; `run` wires it all together.
//!
//! Offloads: no setting is required. With a veth's default offloads a sender's TSO hands
//! the balancer super-packets of up to 64 KB whose TCP checksum is only the pseudo-header
//! part (CHECKSUM_PARTIAL). The packet socket says so in its offload header
//! ([`wire::vnet`]): sent directly, such a frame leaves whole with the same header, its
//! partial checksum moved to the new addresses, and the device (or the kernel's GSO)
//! segments and sums it, as for the kernel's own forwarding. On the routed path (`--send
//! routed`, `--capture raw`, a hop not yet known) the checksum is computed in full and
//! datagrams longer than `--mtu` are cut into MTU-sized segments in user space
//! ([`wire::gso`]). A final checksum (offloads off) is always updated incrementally
//! (RFC 1624).
//!
//! Direct sending: the next hop of an address is the interface and MAC its frames came
//! from ([`device::hops`]), used only once the kernel's route to the address goes out of
//! the same interface ([`device::routes`]), so a forged source address cannot redirect
//! traffic; a connection's first SYN and frames to unknown hops take the routed path, so
//! the kernel's ARP resolves backends not heard from yet. Frames sent directly skip the
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
//! so passes the RST-drop rule. A segment of a flow with no row gets the same closed-port
//! answer, and both ends of a row evicted for silence are reset (see [`nat`]); nothing
//! answers a RST, these resets are rate-limited ([`nat::reset_bucket`]), and nothing
//! spins: an idle or all-down balancer sleeps in `recvmmsg` between packets.
//!
//! Hostile traffic: resets are judged against per-direction sequence tracking, SYN, FIN
//! and RST segments must carry a valid checksum, invalid flag combinations are dropped,
//! and a SYN flood cannot hold a backend's NAT ports: a full pool gives its oldest
//! half-open row up, and under pressure half-open rows age out after a second
//! ([`nat::table`]).
#![deny(unsafe_code)]
// Until Cargo.toml declares the `fixture` feature (`[features] fixture = []`).

pub mod cli;
pub mod device;
pub mod firewall;
pub mod nat;
mod run;
pub mod stages;
pub mod stats;
pub mod wire;

/// Test builders, also for the fuzz target (feature `fixture`).
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

pub use cli::RawArgs;
pub use run::run;
