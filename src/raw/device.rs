//! The device seam: the NAT core reads and writes whole IPv4 datagrams through
//! [`Device`], so it runs on the raw socket in production and on [`MemDevice`] in tests.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::raw::nat::{Nat, Selector, Verdict};
use crate::raw::packet::{self, ChecksumState, DropReason};
use crate::raw::segment;

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
        }
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
    /// Receives up to `batch.bufs.len()` datagrams, waiting at most a short while (the
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
}

/// An in-memory device: datagrams pushed to `inbox` are received, sent ones collected.
#[derive(Debug, Default)]
pub struct MemDevice {
    /// Datagrams waiting to be received.
    pub inbox: VecDeque<Vec<u8>>,
    /// Datagrams sent, with their destination.
    pub sent: Vec<(Vec<u8>, Ipv4Addr)>,
    /// When set, every send fails with this errno (e.g. EPERM).
    pub fail_sends: Option<i32>,
    /// What the device claims to know of every received datagram's checksum.
    pub checksum: ChecksumState,
}

impl Device for MemDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut n = 0;
        while n < batch.bufs.len() {
            let Some(pkt) = self.inbox.pop_front() else {
                break;
            };
            let len = pkt.len().min(MAX_DATAGRAM);
            batch.datagram_mut(n, len).copy_from_slice(&pkt[..len]);
            batch.lens[n] = len;
            batch.checksums[n] = self.checksum;
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        for (i, (bytes, dst)) in packets.iter().enumerate() {
            match self.fail_sends {
                Some(errno) => failed.push((i, io::Error::from_raw_os_error(errno))),
                None => self.sent.push((bytes.to_vec(), *dst)),
            }
        }
        failed
    }
}

/// Reusable state of the forwarding loop.
pub struct Pump {
    batch: RecvBatch,
    /// Egress MTU: larger datagrams (super-packets) sent through the kernel's path are
    /// cut into segments that fit.
    mtu: usize,
    send_errors_logged: u64,
}

impl Pump {
    /// A loop receiving `batch` datagrams at a time, sending at most `mtu` bytes each
    /// through the kernel's path.
    pub fn new(batch: usize, mtu: usize) -> Self {
        Self::with_head(batch, mtu, 0)
    }

    /// [`Pump::new`] for a device whose frames carry `head` bytes before the datagram.
    pub fn with_head(batch: usize, mtu: usize, head: usize) -> Self {
        Self {
            batch: RecvBatch::with_head(batch, head),
            mtu,
            send_errors_logged: 0,
        }
    }

    /// Receives one batch, processes it and sends what is forwarded; returns how many
    /// datagrams were received.
    pub fn once(
        &mut self,
        dev: &mut dyn Device,
        nat: &mut Nat,
        sel: &mut dyn Selector,
        now: Duration,
    ) -> io::Result<usize> {
        let n = dev.recv(&mut self.batch)?;
        if n == 0 {
            return Ok(0);
        }
        let mut forwards: Vec<Forward> = Vec::with_capacity(n);
        for i in 0..n {
            let (len, checksum) = (self.batch.lens[i], self.batch.checksums[i]);
            let buf = self.batch.datagram_mut(i, len);
            if let Verdict::Forward { dst, len } = nat.process_with(buf, now, sel, checksum) {
                forwards.push(Forward { index: i, len, dst });
            }
        }
        let sent = dev.send_frames(&mut self.batch, &forwards);
        let direct = forwards.len() - sent.routed.len() - sent.failed.len();
        for err in sent.failed {
            self.count_failed_send(nat, &err);
        }
        // The rest goes through the kernel: checksums complete, at most `mtu` bytes each.
        let mut routed: Vec<(usize, usize, Ipv4Addr)> = Vec::with_capacity(sent.routed.len());
        let mut extra: Vec<(Vec<u8>, Ipv4Addr)> = Vec::new();
        for f in sent.routed.iter().filter_map(|&k| forwards.get(k)) {
            let partial = self.batch.checksums[f.index] == ChecksumState::Partial;
            let buf = self.batch.datagram_mut(f.index, f.len);
            if f.len > self.mtu {
                match segment::split(buf, self.mtu) {
                    Some(parts) => extra.extend(parts.into_iter().map(|p| (p, f.dst))),
                    None => nat.count_drop(DropReason::TooBig),
                }
                continue;
            }
            if partial {
                packet::complete_tcp_checksum(buf);
            }
            routed.push((f.index, f.len, f.dst));
        }
        let generated = nat.take_pending();
        let head = self.batch.head;
        let mut packets: Vec<(&[u8], Ipv4Addr)> = routed
            .iter()
            .map(|&(i, len, dst)| (&self.batch.bufs[i][head..head + len], dst))
            .collect();
        packets.extend(extra.iter().map(|(p, dst)| (p.as_slice(), *dst)));
        packets.extend(generated.iter().map(|(p, dst)| (p.as_slice(), *dst)));
        let failed = dev.send(&packets);
        nat.count_sent(direct as u64, (packets.len() - failed.len()) as u64);
        for (_, err) in failed {
            self.count_failed_send(nat, &err);
        }
        Ok(n)
    }

    fn count_failed_send(&mut self, nat: &mut Nat, err: &io::Error) {
        nat.count_drop(DropReason::SendFailed);
        // Log the first few and then every 1000th, so a storm cannot flood the log.
        self.send_errors_logged += 1;
        if self.send_errors_logged <= 10 || self.send_errors_logged % 1000 == 0 {
            tracing::warn!(
                event = "send_failed",
                error = %err,
                total = self.send_errors_logged,
                "sending a rewritten packet failed; dropped and counted"
            );
        }
    }
}
