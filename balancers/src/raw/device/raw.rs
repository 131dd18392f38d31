//! The raw-socket [`Device`] of `--capture raw` (the original's way): a copy of every
//! segment for our ports, taken from a raw TCP socket while the kernel processes it too,
//! and sends on the same socket through the kernel's routed path.

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::raw::device::{Device, RecvBatch};
use crate::raw::wire::packet::ChecksumState;
use l4lb_rawsock::bpf::port_filter;
use l4lb_rawsock::ip::{IpCapture, RawSender};

/// The raw-socket device.
pub struct RawDevice {
    socket: IpCapture,
}

impl RawDevice {
    /// Opens the socket (needs root or CAP_NET_RAW), marked with `mark`, passing only TCP
    /// to `listen` or into `nat`.
    pub fn open(mark: u32, listen: u16, nat: &RangeInclusive<u16>) -> io::Result<Self> {
        let socket = IpCapture::open(mark, &port_filter(listen, nat, 0))?;
        Ok(Self { socket })
    }

    /// A second handle on the sending socket, for a sender thread.
    pub fn sender(&self) -> io::Result<RawSender> {
        self.socket.sender()
    }
}

impl Device for RawDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let got = self.socket.recv(&mut batch.bufs, &mut batch.lens)?;
        batch.checksums[..got].fill(ChecksumState::Unknown);
        Ok(got)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        self.socket.send(packets)
    }
}
