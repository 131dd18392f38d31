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

use super::{mmsg, opt};

/// Receive buffer asked for, so bursts are not dropped by the kernel.
const RCVBUF: usize = 32 << 20;
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
}

/// The Ethernet header's IPv4 type, in network order.
fn eth_p_ip_be() -> u16 {
    (libc::ETH_P_IP as u16).to_be()
}

impl PacketSocket {
    /// Opens both sockets (needs root or CAP_NET_RAW), marked with `mark`; the receiving
    /// one takes IPv4 frames that `filter` passes and waits at most 100 ms.
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
        rx.set_read_timeout(Some(Duration::from_millis(100)))?;
        // Protocol 0: a send-only packet socket (it never receives).
        let tx = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        opt::set_int_option(&tx, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        tx.set_mark(mark)?;
        opt::send_buffer(&tx, SNDBUF)?;
        Ok(Self { rx, tx })
    }

    /// Receives up to `bufs.len()` frames: each one's length into `lens` and the index
    /// of the interface it came in on into `ifindexes` (see [`mmsg::recv_many`]).
    pub fn recv(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        ifindexes: &mut [i32],
    ) -> io::Result<usize> {
        let mut names = vec![mmsg::zeroed::<libc::sockaddr_ll>(); bufs.len()];
        let got = mmsg::recv_many(self.rx.as_raw_fd(), bufs, lens, Some(&mut names))?;
        for (ifindex, name) in ifindexes.iter_mut().zip(&names).take(got) {
            *ifindex = name.sll_ifindex;
        }
        Ok(got)
    }

    /// Sends every frame (IPv4, headers included) to its link destination; returns the
    /// failures by index. A failure never stops the others.
    pub fn send(&self, frames: &[(&[u8], LinkDest)]) -> Vec<(usize, io::Error)> {
        let mut names: Vec<libc::sockaddr_ll> = frames
            .iter()
            .map(|(_, to)| {
                let mut a: libc::sockaddr_ll = mmsg::zeroed();
                a.sll_family = libc::AF_PACKET as u16;
                a.sll_protocol = eth_p_ip_be();
                a.sll_ifindex = to.ifindex;
                a.sll_halen = 6;
                a.sll_addr[..6].copy_from_slice(&to.mac);
                a
            })
            .collect();
        let bytes: Vec<&[u8]> = frames.iter().map(|(frame, _)| *frame).collect();
        mmsg::send_many(self.tx.as_raw_fd(), &bytes, &mut names)
    }
}
