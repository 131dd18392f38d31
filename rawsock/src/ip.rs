//! Raw IPv4 sockets: [`IpCapture`] receives a copy of the TCP segments its filter
//! passes (and can send on the same socket); [`RawSender`] is send-only. Both send whole
//! datagrams (`IP_HDRINCL`) through the kernel's IP output path (routing, neighbour
//! resolution, the firewall's OUTPUT chain), marked with `SO_MARK`, batched with
//! `sendmmsg`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use super::{mmsg, opt};

/// Receive buffer asked for, so bursts are not dropped by the kernel.
const RCVBUF: usize = 32 << 20;
/// Send buffer asked for.
const SNDBUF: usize = 8 << 20;

/// A raw TCP socket that receives a copy of every segment `filter` passes.
pub struct IpCapture {
    socket: Socket,
    /// The socket's drop counter at the last [`IpCapture::receive_drops`] (it only grows,
    /// wrapping).
    drops_seen: u32,
}

impl IpCapture {
    /// Opens the socket (needs root or CAP_NET_RAW), marks it with `mark`, installs
    /// `filter` (whose IP header starts at byte 0). Receiving waits at most 100 ms.
    pub fn open(mark: u32, filter: &[SockFilter]) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
        socket.set_header_included_v4(true)?;
        socket.attach_filter(filter)?;
        socket.set_mark(mark)?;
        opt::receive_buffer(&socket, RCVBUF)?;
        opt::send_buffer(&socket, SNDBUF)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let drops_seen = opt::socket_drops(&socket)?;
        Ok(Self { socket, drops_seen })
    }

    /// Receives up to `bufs.len()` datagrams, their lengths into `lens`, waiting as
    /// `wait` says (see [`mmsg::recv_many`]).
    pub fn recv(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        wait: mmsg::Wait,
    ) -> io::Result<usize> {
        mmsg::recv_many::<libc::sockaddr_in>(self.socket.as_raw_fd(), bufs, lens, None, wait)
    }

    /// Datagrams the kernel dropped for this socket since the last call, because its
    /// receive buffer was full ([`opt::socket_drops`]: while it is full, every TCP
    /// segment the namespace receives counts, ours or not). One system call.
    pub fn receive_drops(&mut self) -> io::Result<u64> {
        let now = opt::socket_drops(&self.socket)?;
        let new = now.wrapping_sub(self.drops_seen);
        self.drops_seen = now;
        Ok(u64::from(new))
    }

    /// Sends every datagram; returns the failures by index.
    pub fn send(&self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        send_all(&self.socket, packets)
    }

    /// A second handle on the socket, send-only, for a sender thread.
    pub fn sender(&self) -> io::Result<RawSender> {
        Ok(RawSender {
            tx: self.socket.try_clone()?,
        })
    }
}

/// A send-only raw IPv4 socket.
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
        opt::send_buffer(&tx, SNDBUF)?;
        Ok(Self { tx })
    }

    /// A second handle on the same socket, for a sender thread.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            tx: self.tx.try_clone()?,
        })
    }

    /// Sends every datagram; returns the failures by index. A failure never stops the
    /// others.
    pub fn send(&self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        send_all(&self.tx, packets)
    }
}

/// `sendmmsg` of whole datagrams on a raw IPv4 socket; failures by index.
fn send_all(tx: &Socket, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
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
