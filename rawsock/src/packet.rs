//! `AF_PACKET` sockets with `PACKET_VNET_HDR`: every frame is received as, and must be
//! sent as, `[virtio_net_hdr][link header][payload]`, so a GRO/TSO super-packet of up to
//! 64 KB stays one frame and its offload state travels with it.
//!
//! [`PacketSocket`] pairs a receiving socket for IPv4 frames (kept to what its filter
//! passes) with a send-only one. Frames sent pass the device's qdisc and egress hooks
//! (no `PACKET_QDISC_BYPASS`), so a rate limit or a lossy link set on the device applies
//! to them; the kernel's IP output path (routing, netfilter, neighbours) is skipped.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use super::mmsg::{self, Wait};
use super::opt;
use super::ring::RxRing;

/// Receive buffer asked for, so bursts are not dropped by the kernel.
const RCVBUF: usize = 32 << 20;
/// How long a waiting receive sleeps at most, on the socket or on its ring.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Send buffer asked for.
const SNDBUF: usize = 8 << 20;

/// Where a frame goes: out of interface `ifindex` to link address `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDest {
    /// Interface index.
    pub ifindex: i32,
    /// Destination MAC address.
    pub mac: [u8; 6],
}

/// A receiving and a sending packet socket.
pub struct PacketSocket {
    rx: Socket,
    tx: Socket,
    /// The receive's headers, kept between receives.
    scratch: mmsg::RecvScratch<libc::sockaddr_ll>,
    /// The send's headers, addresses and frame list, kept between sends.
    sending: mmsg::SendScratch,
    send_names: Vec<libc::sockaddr_ll>,
    /// The receive ring, when mapped ([`PacketSocket::map_receive_ring`]).
    ring: Option<RxRing>,
    /// Frames the ring held but could not give whole, since the last
    /// [`PacketSocket::receive_drops`].
    ring_skipped: u64,
}

/// The Ethernet header's IPv4 type, in network order.
fn eth_p_ip_be() -> u16 {
    (libc::ETH_P_IP as u16).to_be()
}

impl PacketSocket {
    /// Opens both sockets (needs root or CAP_NET_RAW), marked with `mark`; the receiving
    /// one takes IPv4 frames that `filter` passes and waits at most 100 ms (`RECV_TIMEOUT`).
    pub fn open(mark: u32, filter: &[SockFilter]) -> io::Result<Self> {
        let rx = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(eth_p_ip_be()))),
        )?;
        opt::set_int_option(&rx, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        rx.attach_filter(filter)?;
        rx.set_mark(mark)?;
        opt::receive_buffer(&rx, RCVBUF)?;
        rx.set_read_timeout(Some(RECV_TIMEOUT))?;
        // Protocol 0: a send-only packet socket (it never receives).
        let tx = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        opt::set_int_option(&tx, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        tx.set_mark(mark)?;
        opt::send_buffer(&tx, SNDBUF)?;
        Ok(Self {
            rx,
            tx,
            scratch: mmsg::RecvScratch::default(),
            sending: mmsg::SendScratch::default(),
            send_names: Vec::new(),
            ring: None,
            ring_skipped: 0,
        })
    }

    /// Maps a receive ring of at least `slots` slots ([`RxRing`]): from then on
    /// [`PacketSocket::recv`] takes frames from it, and every frame carries its arrival
    /// time whether or not arrivals were stamped. Returns the ring's number of slots
    /// (at least `slots`); a second call keeps the first ring.
    pub fn map_receive_ring(&mut self, slots: usize) -> io::Result<usize> {
        if self.ring.is_none() {
            self.ring = Some(RxRing::map(&self.rx, slots)?);
        }
        Ok(self.ring.as_ref().map_or(0, RxRing::slots))
    }

    /// Turns on kernel arrival times for received frames (`SO_TIMESTAMPNS`), which
    /// [`PacketSocket::recv`] then reads into its `stamps`.
    pub fn stamp_arrivals(&self) -> io::Result<()> {
        opt::timestamp_ns(&self.rx)
    }

    /// Receives up to `bufs.len()` frames: each one's length into `lens`, the index of
    /// the interface it came in on into `ifindexes` and, when given, its kernel arrival
    /// time into `stamps` (see [`mmsg::RecvScratch::recv`]), waiting as `wait` says.
    /// Allocates nothing: the headers are kept from one receive to the next.
    pub fn recv(
        &mut self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        ifindexes: &mut [i32],
        stamps: Option<&mut [u64]>,
        wait: Wait,
    ) -> io::Result<usize> {
        if let Some(ring) = &mut self.ring {
            let taken = take_from_ring(ring, bufs, lens, ifindexes, stamps, wait)?;
            self.ring_skipped += taken.skipped;
            return Ok(taken.frames);
        }
        let fd = self.rx.as_raw_fd();
        let got = self.scratch.recv(fd, bufs, lens, stamps, wait)?;
        for (ifindex, name) in ifindexes.iter_mut().zip(self.scratch.names()).take(got) {
            *ifindex = name.sll_ifindex;
        }
        Ok(got)
    }

    /// Frames lost before [`PacketSocket::recv`] could return them, since the last call:
    /// those the kernel dropped because the receive buffer or ring was full
    /// (`PACKET_STATISTICS`), and those the ring held but could not give whole (a
    /// super-packet whose copy the full queue had no room for). One system call.
    pub fn receive_drops(&mut self) -> io::Result<u64> {
        let kernel = opt::packet_drops(&self.rx)?;
        Ok(kernel + std::mem::take(&mut self.ring_skipped))
    }

    /// Sends every frame (IPv4, headers included) to its link destination; returns the
    /// failures by index. A failure never stops the others. Allocates nothing but the
    /// list of failures (none when all went out).
    pub fn send(&mut self, frames: &[&[u8]], to: &[LinkDest]) -> Vec<(usize, io::Error)> {
        self.send_names.clear();
        self.send_names.extend(to.iter().map(|to| {
            let mut a: libc::sockaddr_ll = mmsg::zeroed();
            a.sll_family = libc::AF_PACKET as u16;
            a.sll_protocol = eth_p_ip_be();
            a.sll_ifindex = to.ifindex;
            a.sll_halen = 6;
            a.sll_addr[..6].copy_from_slice(&to.mac);
            a
        }));
        let fd = self.tx.as_raw_fd();
        self.sending.send(fd, frames, &mut self.send_names)
    }
}

/// What one [`take_from_ring`] got.
struct RingTake {
    /// Frames written into the buffers.
    frames: usize,
    /// Slots passed over: frames the ring could not give whole.
    skipped: u64,
}

/// [`PacketSocket::recv`] from a ring: up to `bufs.len()` frames, waiting up to the
/// socket's [`RECV_TIMEOUT`] for the first when `wait` says so. A frame the ring dropped is
/// skipped and counted.
fn take_from_ring(
    ring: &mut RxRing,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    ifindexes: &mut [i32],
    mut stamps: Option<&mut [u64]>,
    wait: Wait,
) -> io::Result<RingTake> {
    if wait == Wait::UpToTimeout && !ring.ready() {
        ring.wait(RECV_TIMEOUT.as_millis() as i32)?;
    }
    let n = bufs.len().min(lens.len()).min(ifindexes.len());
    let mut got = 0;
    let mut skipped = 0;
    while got < n {
        let Some(taken) = ring.take(&mut bufs[got])? else {
            break;
        };
        if taken.len == 0 {
            skipped += 1;
            continue;
        }
        lens[got] = taken.len;
        ifindexes[got] = taken.ifindex;
        if let Some(stamp) = stamps.as_deref_mut().and_then(|s| s.get_mut(got)) {
            *stamp = taken.stamp_ns;
        }
        got += 1;
    }
    Ok(RingTake {
        frames: got,
        skipped,
    })
}

/// `SOL_PACKET` option: do not deliver frames this host sends out of the interface.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// One packet socket bound to one interface: every frame that arrives on it (any
/// protocol: ARP as well as IP), with the offload header, and frames sent straight out of
/// it. Frames sent out of the interface are not read back. A user-space wire holds one
/// on each side.
pub struct PortSocket {
    socket: Socket,
    ifindex: i32,
}

impl PortSocket {
    /// Opens the socket on interface `ifname` (needs root or CAP_NET_RAW); reads wait at
    /// most `timeout`.
    pub fn open(ifname: &str, timeout: Duration) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|e| {
            io::Error::new(io::ErrorKind::NotFound, format!("interface {ifname}: {e}"))
        })? as i32;
        let all = (libc::ETH_P_ALL as u16).to_be();
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(all))),
        )?;
        opt::set_int_option(&socket, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        opt::set_int_option(&socket, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        opt::bind_packet(&socket, ifindex, all)?;
        opt::receive_buffer(&socket, RCVBUF)?;
        opt::send_buffer(&socket, SNDBUF)?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(Self { socket, ifindex })
    }

    /// The descriptor, to wait on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.socket.as_fd()
    }

    /// Receives up to `bufs.len()` frames without waiting longer than the socket's
    /// timeout; each one's length goes to `lens`.
    pub fn recv(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        mmsg::recv_many::<libc::sockaddr_ll>(
            self.socket.as_raw_fd(),
            bufs,
            lens,
            None,
            Wait::UpToTimeout,
        )
    }

    /// Sends every frame (offload header first) out of the interface; returns the
    /// failures by index.
    pub fn send(&self, frames: &[&[u8]]) -> Vec<(usize, io::Error)> {
        let mut name: libc::sockaddr_ll = mmsg::zeroed();
        name.sll_family = libc::AF_PACKET as u16;
        name.sll_ifindex = self.ifindex;
        let mut names = vec![name; frames.len()];
        mmsg::send_many(self.socket.as_raw_fd(), frames, &mut names)
    }
}
