//! The socket [`Device`]: receive on an `AF_PACKET` socket (default) or a raw TCP socket,
//! send whole IP datagrams on a raw socket (`IP_HDRINCL`), with a classic BPF filter so
//! only our ports reach user space, `SO_MARK` so the firewall can tell our own packets
//! (forwarded RSTs included) from the kernel's, and `recvmmsg`/`sendmmsg` batching.
//!
//! [`Capture::Packet`] takes segments at the device, before the IP stack: together with
//! the `raw`-table PREROUTING drop that [`crate::raw::firewall`] installs, the kernel
//! never processes them (no socket lookup, no RST to build and drop), which is most of
//! the per-packet cost of [`Capture::Raw`], the original's way (a copy of every segment
//! the kernel also handles). The only `unsafe` of the balancer lives here.

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::raw::device::{Device, RecvBatch};
use crate::raw::mmsg;
use crate::raw::packet::ChecksumState;

/// Receive buffer asked for (SO_RCVBUFFORCE), so bursts are not dropped by the kernel.
const RCVBUF: usize = 32 << 20;
/// Send buffer asked for.
const SNDBUF: usize = 8 << 20;

/// The classic BPF program: accept a TCP segment whose destination port is `listen` or in
/// `nat`; everything else stays in the kernel. The IP header starts at byte `base` (0 on
/// raw IPv4 sockets, 14 after an Ethernet header).
pub fn port_filter(listen: u16, nat: &RangeInclusive<u16>, base: u32) -> Vec<SockFilter> {
    const LDX_B_MSH: u16 = 0xb1; // X = 4 * (pkt[k] & 0x0f): the IP header length
    const LD_H_IND: u16 = 0x48; // A = u16 at X + k
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JGT_K: u16 = 0x25;
    const RET_K: u16 = 0x06;
    vec![
        SockFilter::new(LDX_B_MSH, 0, 0, base),
        SockFilter::new(LD_H_IND, 0, 0, base + 2),
        SockFilter::new(JEQ_K, 2, 0, u32::from(listen)),
        SockFilter::new(JGE_K, 0, 2, u32::from(*nat.start())),
        SockFilter::new(JGT_K, 1, 0, u32::from(*nat.end())),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// The AF_PACKET (`SOCK_RAW`) filter: incoming to this host (PACKET_HOST), on an Ethernet
/// or loopback device (a 14-byte link header), TCP, then [`port_filter`].
pub fn frame_filter(listen: u16, nat: &RangeInclusive<u16>) -> Vec<SockFilter> {
    const LD_W_ABS: u16 = 0x20;
    const LD_B_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const SKF_AD_OFF: u32 = 0xffff_f000;
    const SKF_AD_PKTTYPE: u32 = SKF_AD_OFF + 4;
    const SKF_AD_HATYPE: u32 = SKF_AD_OFF + 28;
    const ETH_HLEN: u32 = 14;
    let ports = port_filter(listen, nat, ETH_HLEN);
    // `to_drop(k)`: the jump from instruction k of the prefix to "drop", the last
    // instruction of `ports`.
    let prefix_len = 7u8;
    let to_drop = |k: u8| prefix_len - k - 1 + ports.len() as u8 - 1;
    let mut prog = vec![
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        SockFilter::new(JEQ_K, 0, to_drop(1), 0), // PACKET_HOST
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_HATYPE),
        SockFilter::new(JEQ_K, 1, 0, u32::from(libc::ARPHRD_ETHER)),
        SockFilter::new(JEQ_K, 0, to_drop(4), u32::from(libc::ARPHRD_LOOPBACK)),
        SockFilter::new(LD_B_ABS, 0, 0, ETH_HLEN + 9),
        SockFilter::new(JEQ_K, 0, to_drop(6), 6), // TCP
    ];
    debug_assert_eq!(prog.len(), usize::from(prefix_len));
    prog.extend(ports);
    prog
}

/// Where segments are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Capture {
    /// An AF_PACKET socket, with the kernel's own processing of our ports cut off in
    /// PREROUTING (fast).
    Packet,
    /// A raw TCP socket: a copy of what the kernel also processes (the original's way).
    Raw,
}

/// The raw-socket device of [`Capture::Raw`]: receives a copy of every segment for our
/// ports on a raw TCP socket and sends on the same socket. ([`Capture::Packet`] is
/// [`crate::raw::afpacket::PacketDevice`].)
pub struct RawDevice {
    socket: Socket,
}

impl RawDevice {
    /// Opens the socket (needs root or CAP_NET_RAW), marks it, installs the filter.
    pub fn open(mark: u32, listen: u16, nat: &RangeInclusive<u16>) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
        socket.set_header_included_v4(true)?;
        socket.attach_filter(&port_filter(listen, nat, 0))?;
        socket.set_mark(mark)?;
        force_buffer(&socket, libc::SO_RCVBUFFORCE, RCVBUF)
            .or_else(|_| socket.set_recv_buffer_size(RCVBUF))?;
        force_buffer(&socket, libc::SO_SNDBUFFORCE, SNDBUF)
            .or_else(|_| socket.set_send_buffer_size(SNDBUF))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Self { socket })
    }

    /// A second handle on the sending socket, for a sender thread.
    pub fn sender(&self) -> io::Result<RawSender> {
        Ok(RawSender {
            tx: self.socket.try_clone()?,
        })
    }
}

/// The sending half of a device: whole IPv4 datagrams (`IP_HDRINCL`) through the kernel's
/// IP output path (routing, neighbour resolution, the firewall's OUTPUT chain), with
/// `sendmmsg`.
pub struct RawSender {
    tx: Socket,
}

impl RawSender {
    /// An `IPPROTO_RAW` socket (send-only, header included; it never receives a copy),
    /// marked with `mark`.
    pub fn open(mark: u32) -> io::Result<Self> {
        let tx = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        tx.set_mark(mark)?;
        force_buffer(&tx, libc::SO_SNDBUFFORCE, SNDBUF)
            .or_else(|_| tx.set_send_buffer_size(SNDBUF))?;
        Ok(Self { tx })
    }

    /// A second handle on the same socket, for a sender thread.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            tx: self.tx.try_clone()?,
        })
    }

    /// Sends every datagram; returns the failures by index (see [`Device::send`]).
    pub fn send(&self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        send_all(&self.tx, packets)
    }
}

/// This host's IPv4 addresses.
pub(crate) fn local_addresses() -> io::Result<Vec<[u8; 4]>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|a| a.address)
        .filter_map(|a| a.as_sockaddr_in().map(|s| s.ip().octets()))
        .collect())
}

/// Sets a buffer size beyond the sysctl limit (root), e.g. `SO_RCVBUFFORCE`.
pub(crate) fn force_buffer(socket: &Socket, option: libc::c_int, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, option, value)
}

/// Sets an integer socket option that socket2 has no method for.
pub(crate) fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its exact size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Device for RawDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let got = mmsg::recv_many::<libc::sockaddr_in>(
            self.socket.as_raw_fd(),
            &mut batch.bufs,
            &mut batch.lens,
            None,
        )?;
        batch.checksums[..got].fill(ChecksumState::Unknown);
        Ok(got)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        send_all(&self.socket, packets)
    }
}

/// `sendmmsg` of whole datagrams on a raw IPv4 socket; failures by index.
pub(crate) fn send_all(tx: &Socket, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
    let mut names: Vec<libc::sockaddr_in> = packets
        .iter()
        .map(|(_, dst)| {
            let mut a: libc::sockaddr_in = mmsg::zeroed();
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
            a
        })
        .collect();
    let datagrams: Vec<&[u8]> = packets.iter().map(|(bytes, _)| *bytes).collect();
    mmsg::send_many(tx.as_raw_fd(), &datagrams, &mut names)
}
