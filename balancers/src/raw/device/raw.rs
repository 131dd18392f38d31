//! The raw-socket [`Device`] of `--capture raw` (the original's way): a copy of every
//! segment for our ports, taken from a raw TCP socket while the kernel processes it too,
//! and sends on the same socket through the kernel's routed path.

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::raw::device::{poll, Device, RecvBatch};
use crate::raw::wire::packet::ChecksumState;
use l4lb_rawsock::bpf::port_filter;
use l4lb_rawsock::ip::{IpCapture, RawSender};

/// The raw-socket device.
pub struct RawDevice {
    socket: IpCapture,
    /// How long receiving polls before it sleeps (`--busy-poll`).
    busy_poll: Duration,
}

impl RawDevice {
    /// Opens the socket (needs root or CAP_NET_RAW), marked with `mark`, passing only TCP
    /// to `listen` or into `nat`; receiving polls for `busy_poll` before it sleeps.
    pub fn open(
        mark: u32,
        listen: u16,
        nat: &RangeInclusive<u16>,
        busy_poll: Duration,
    ) -> io::Result<Self> {
        let socket = IpCapture::open(mark, &port_filter(listen, nat, 0))?;
        Ok(Self { socket, busy_poll })
    }

    /// A second handle on the sending socket, for a sender thread.
    pub fn sender(&self) -> io::Result<RawSender> {
        self.socket.sender()
    }
}

impl Device for RawDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let socket = &self.socket;
        let want = batch.wanted().len();
        let got = poll::receive(self.busy_poll, |wait| {
            socket.recv(&mut batch.bufs[..want], &mut batch.lens[..want], wait)
        })?;
        batch.checksums[..got].fill(ChecksumState::Unknown);
        Ok(got)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        self.socket.send(packets)
    }

    fn receive_drops(&mut self) -> io::Result<u64> {
        self.socket.receive_drops()
    }
}
