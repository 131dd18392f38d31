//! Builds IPv4/TCP datagrams with correct checksums, and a NAT core to run them through,
//! for tests and fuzzing.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::raw::nat::table::TableConfig;
use crate::raw::nat::{Nat, NatConfig};
use crate::raw::wire::packet;

/// A datagram to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// TCP flags.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// IP options (padded with zeros to a multiple of 4).
    pub ip_options: Vec<u8>,
    /// TCP options (padded with NOPs... zeros to a multiple of 4).
    pub tcp_options: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Spec {
    /// A segment from `src` to `dst` with `flags`, nothing else: sequence number 1000
    /// and, for a SYN-ACK, the acknowledgment of a SYN with that default (1001), as a
    /// backend answers; 0 otherwise.
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Self {
        use crate::raw::wire::packet::flags as f;
        let syn_ack = flags & (f::SYN | f::ACK) == f::SYN | f::ACK;
        Self {
            src,
            dst,
            flags,
            seq: 1000,
            ack: if syn_ack { 1001 } else { 0 },
            ip_options: Vec::new(),
            tcp_options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The datagram bytes, both checksums correct.
    pub fn build(&self) -> Vec<u8> {
        let mut ip_opts = self.ip_options.clone();
        while ip_opts.len() % 4 != 0 {
            ip_opts.push(0);
        }
        let mut tcp_opts = self.tcp_options.clone();
        while tcp_opts.len() % 4 != 0 {
            tcp_opts.push(0);
        }
        let ihl = 20 + ip_opts.len();
        let thl = 20 + tcp_opts.len();
        let total = ihl + thl + self.payload.len();
        let mut p = Vec::with_capacity(total);
        p.push(0x40 | (ihl / 4) as u8);
        p.push(0);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&0x1234u16.to_be_bytes());
        p.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
        p.push(64);
        p.push(6);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&self.src.ip().octets());
        p.extend_from_slice(&self.dst.ip().octets());
        p.extend_from_slice(&ip_opts);
        p.extend_from_slice(&self.src.port().to_be_bytes());
        p.extend_from_slice(&self.dst.port().to_be_bytes());
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ack.to_be_bytes());
        p.push(((thl / 4) as u8) << 4);
        p.push(self.flags);
        p.extend_from_slice(&65535u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&tcp_opts);
        p.extend_from_slice(&self.payload);
        if let Ok(seg) = packet::parse(&p) {
            packet::fill_checksums(&mut p, &seg);
        }
        p
    }
}

/// The balancer's address in [`test_nat`].
pub const LB: [u8; 4] = [10, 0, 0, 1];
/// The first NAT port [`test_nat`] hands out.
pub const NAT_PORT: u16 = 21_000;

/// The fixtures' client.
pub fn client() -> SocketAddrV4 {
    addr([10, 0, 0, 101], 40_001)
}

/// The balanced address of [`test_nat`].
pub fn vip() -> SocketAddrV4 {
    addr(LB, 20_000)
}

/// The fixtures' first backend.
pub fn backend() -> SocketAddrV4 {
    addr([10, 0, 0, 11], 7_000)
}

/// The balancer's side of the first NAT row, as the backend sees it.
pub fn nat_side() -> SocketAddrV4 {
    addr(LB, NAT_PORT)
}

/// Shorthand for a socket address.
pub fn addr(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

/// A NAT core listening on 10.0.0.1:20000, NAT ports 21000-21999, at most `max_rows` rows.
pub fn test_nat(max_rows: usize) -> Nat {
    Nat::new(NatConfig {
        source_ip: Ipv4Addr::new(10, 0, 0, 1),
        listen_port: 20_000,
        table: TableConfig {
            max_rows,
            half_open_timeout: Duration::from_secs(30),
            established_timeout: Duration::from_secs(300),
            fin_linger: Duration::from_secs(2),
            nat_ports: 21_000..=21_999,
        },
    })
}
