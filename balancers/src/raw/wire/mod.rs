//! Wire formats, as pure functions over bytes: no sockets, no state.
//!
//! - [`packet`]: checked IPv4/TCP views, the NAT rewrite with RFC 1624 checksum updates,
//!   drop reasons, the resets the balancer builds.
//! - [`icmp`]: the ICMP "fragmentation needed" the balancer reads and relays (PMTU).
//! - [`gso`]: user-space segmentation of GRO/TSO super-packets to the egress MTU.
//! - [`vnet`]: the `virtio_net_hdr` offload header of packet sockets.

pub mod gso;
pub mod icmp;
pub mod packet;
pub use l4lb_rawsock::vnet;
