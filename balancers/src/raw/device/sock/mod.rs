//! Linux socket plumbing for moving raw frames and datagrams: packet sockets
//! ([`packet`]), raw IPv4 sockets ([`ip`]), classic BPF filters ([`bpf`]), batched
//! `recvmmsg`/`sendmmsg` ([`mmsg`]) and socket options socket2 lacks ([`opt`]).
//!
//! This module depends on nothing else in the crate (only std, libc, socket2 and nix), so
//! other users of raw frames, such as a user-space wire in the harness, can reuse it as it
//! is. All of the raw balancer's `unsafe` code lives in [`mmsg`] and [`opt`], each block
//! with its `SAFETY` comment; everything else here is safe.

pub mod bpf;
pub mod ip;
#[allow(unsafe_code)]
pub mod mmsg;
#[allow(unsafe_code)]
pub mod opt;
pub mod packet;

use std::io;

/// This host's IPv4 addresses.
pub fn local_addresses() -> io::Result<Vec<[u8; 4]>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|a| a.address)
        .filter_map(|a| a.as_sockaddr_in().map(|s| s.ip().octets()))
        .collect())
}
