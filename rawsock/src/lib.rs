//! l4lb-rawsock: Linux socket plumbing for moving raw frames and datagrams, shared by the
//! raw balancer (`l4lb-balancers`) and the harness's user-space wire (`l4lb-harness`):
//! - [`packet`]: `AF_PACKET` sockets with the offload header, for the balancer (a filtered
//!   receiver and a sender) and for a wire (one socket bound to one interface).
//! - [`vnet`]: that offload header (`virtio_net_hdr`: super-packets, partial checksums).
//! - [`ip`]: raw IPv4 sockets (capture and the kernel's routed send path).
//! - [`bpf`]: classic BPF filters that keep only the frames a user wants.
//! - [`mmsg`]: batched `recvmmsg`/`sendmmsg`.
//! - [`ring`]: a `PACKET_RX_RING` receive ring (frames taken without a system call).
//! - [`opt`]: socket options socket2 lacks.
//!
//! It depends only on std, libc, socket2 and nix. All of its `unsafe` code lives in
//! [`mmsg`], [`opt`] and [`ring`], each block with its `SAFETY` comment; everything else is safe.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod bpf;
pub mod ip;
#[allow(unsafe_code)]
pub mod mmsg;
#[allow(unsafe_code)]
pub mod opt;
pub mod packet;
#[allow(unsafe_code)]
pub mod ring;
pub mod vnet;

use std::io;

/// This host's IPv4 addresses.
pub fn local_addresses() -> io::Result<Vec<[u8; 4]>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|a| a.address)
        .filter_map(|a| a.as_sockaddr_in().map(|s| s.ip().octets()))
        .collect())
}
