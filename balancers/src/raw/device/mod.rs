//! The device side: where datagrams come from and go to, and the loop between.
//!
//! The NAT core reads and writes whole IPv4 datagrams through [`Device`], so it runs on
//! sockets in production and on an in-memory device in tests.
//!
//! - [`pump`]: the forwarding loop (receive a batch, NAT it, send it) and its counters.
//! - [`afpacket`]: the packet-socket device (`--capture packet`, default): frames in,
//!   rewritten frames straight back out of a device where the next hop is known.
//! - [`raw`]: the raw-socket device (`--capture raw`).
//! - [`poll`]: busy polling before sleeping (`--busy-poll`).
//! - [`sender`]: the optional sender thread (`--send-thread`) for routed sends.
//! - [`hops`]: next hops learned from received frames; [`routes`]: the route lookups
//!   that confirm them.
//!
//! The socket plumbing under the devices (packet and raw IP sockets, BPF,
//! `recvmmsg`/`sendmmsg`, socket options) is the `l4lb-rawsock` crate, which the harness's
//! user-space wire shares; all of the balancer's `unsafe` code lives there.

pub mod afpacket;
pub mod hops;
#[cfg(test)]
pub mod mem;
pub mod poll;
pub mod pump;
pub mod raw;
pub mod routes;
pub mod sender;

use std::io;
use std::net::Ipv4Addr;

use crate::raw::wire::packet::ChecksumState;

/// Largest IPv4 datagram (a GRO/GSO super-packet can be this big).
pub const MAX_DATAGRAM: usize = 65_535;

/// Receive buffers for one batch.
pub struct RecvBatch {
    /// One buffer per datagram, each `head` + [`MAX_DATAGRAM`] bytes.
    pub bufs: Vec<Vec<u8>>,
    /// Length of the IPv4 datagram received into each buffer (after `head`).
    pub lens: Vec<usize>,
    /// What the device knows of each datagram's TCP checksum.
    pub checksums: Vec<ChecksumState>,
    /// Bytes before the datagram in every buffer (a device's frame headers, kept so the
    /// frame can be sent back out whole), the same for the whole batch.
    pub head: usize,
    /// How many datagrams the next receive asks for (at most `bufs.len()`): the loop
    /// lowers it while super-packets arrive, so a batch stays small enough for the cache.
    pub want: usize,
    /// Kernel arrival time of each datagram (`CLOCK_REALTIME` ns), from a device that
    /// stamps arrivals (`--stage-times`); 0 otherwise.
    pub arrived: Vec<u64>,
}

impl RecvBatch {
    /// `n` buffers for datagrams with no bytes before them.
    pub fn new(n: usize) -> Self {
        Self::with_head(n, 0)
    }

    /// `n` buffers for datagrams after `head` bytes of frame headers.
    pub fn with_head(n: usize, head: usize) -> Self {
        let n = n.max(1);
        Self {
            bufs: (0..n).map(|_| vec![0u8; head + MAX_DATAGRAM]).collect(),
            lens: vec![0; n],
            checksums: vec![ChecksumState::Unknown; n],
            head,
            want: n,
            arrived: vec![0; n],
        }
    }

    /// The buffers the next receive fills: the first [`RecvBatch::want`] of them.
    pub fn wanted(&mut self) -> &mut [Vec<u8>] {
        let want = self.want.clamp(1, self.bufs.len());
        &mut self.bufs[..want]
    }

    /// The datagram received into buffer `i`, `len` bytes of it.
    pub fn datagram_mut(&mut self, i: usize, len: usize) -> &mut [u8] {
        let head = self.head;
        &mut self.bufs[i][head..head + len]
    }
}

/// A received datagram the core rewrote in place, to be sent to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Buffer index in the batch.
    pub index: usize,
    /// Datagram length.
    pub len: usize,
    /// Destination address.
    pub dst: Ipv4Addr,
}

/// What [`Device::send_frames`] did.
#[derive(Debug, Default)]
pub struct FramesSent {
    /// Indices into the forwards that the device did not send: the caller sends their
    /// datagrams through [`Device::send`] (the kernel's routed path).
    pub routed: Vec<usize>,
    /// Frames whose sending failed.
    pub failed: Vec<io::Error>,
}

/// A source and sink of whole IPv4 datagrams.
pub trait Device {
    /// Receives up to `batch.want` datagrams, waiting at most a short while (the
    /// caller's housekeeping tick); returns how many (0 on timeout).
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize>;

    /// Sends every datagram to its destination; returns the failures by index. A failure
    /// never stops the others.
    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)>;

    /// Sends received frames whose datagrams were rewritten in place, straight out of the
    /// batch and whole (super-packets included), where the device can; the rest are
    /// returned for [`Device::send`]. By default the device sends none itself.
    fn send_frames(&mut self, _batch: &mut RecvBatch, forwards: &[Forward]) -> FramesSent {
        FramesSent {
            routed: (0..forwards.len()).collect(),
            failed: Vec::new(),
        }
    }

    /// Frames lost before [`Device::recv`] could return them (a full receive buffer or
    /// ring), since the last call. By default the device cannot tell, and says 0.
    fn receive_drops(&mut self) -> io::Result<u64> {
        Ok(0)
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        (**self).recv(batch)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        (**self).send(packets)
    }

    fn send_frames(&mut self, batch: &mut RecvBatch, forwards: &[Forward]) -> FramesSent {
        (**self).send_frames(batch, forwards)
    }

    fn receive_drops(&mut self) -> io::Result<u64> {
        (**self).receive_drops()
    }
}
