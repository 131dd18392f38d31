//! The device seam: the NAT core reads and writes whole IPv4 datagrams through
//! [`Device`], so it runs on the raw socket in production and on [`MemDevice`] in tests.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::raw::nat::{Nat, Selector, Verdict};
use crate::raw::packet::DropReason;
use crate::raw::segment;

/// Largest IPv4 datagram (a GRO/GSO super-packet can be this big).
pub const MAX_DATAGRAM: usize = 65_535;

/// Receive buffers for one batch.
pub struct RecvBatch {
    /// One buffer per datagram, each [`MAX_DATAGRAM`] bytes.
    pub bufs: Vec<Vec<u8>>,
    /// Length received into each buffer.
    pub lens: Vec<usize>,
}

impl RecvBatch {
    /// `n` buffers of [`MAX_DATAGRAM`] bytes.
    pub fn new(n: usize) -> Self {
        Self {
            bufs: (0..n.max(1)).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            lens: vec![0; n.max(1)],
        }
    }
}

/// A source and sink of whole IPv4 datagrams.
pub trait Device {
    /// Receives up to `batch.bufs.len()` datagrams, waiting at most a short while (the
    /// caller's housekeeping tick); returns how many (0 on timeout).
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize>;

    /// Sends every datagram to its destination; returns the failures by index. A failure
    /// never stops the others.
    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)>;
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
}

impl Device for MemDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut n = 0;
        while n < batch.bufs.len() {
            let Some(pkt) = self.inbox.pop_front() else {
                break;
            };
            let len = pkt.len().min(MAX_DATAGRAM);
            batch.bufs[n][..len].copy_from_slice(&pkt[..len]);
            batch.lens[n] = len;
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
    /// Egress MTU: larger datagrams (super-packets) are cut into segments that fit.
    mtu: usize,
    /// Segments cut from super-packets, waiting to be sent.
    extra: Vec<Vec<u8>>,
    send_errors_logged: u64,
}

impl Pump {
    /// A loop receiving `batch` datagrams at a time, sending at most `mtu` bytes each.
    pub fn new(batch: usize, mtu: usize) -> Self {
        Self {
            batch: RecvBatch::new(batch),
            mtu,
            extra: Vec::new(),
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
        let mut out: Vec<(usize, usize, Ipv4Addr)> = Vec::with_capacity(n);
        self.extra.clear();
        let mut extra_dst = Vec::new();
        for i in 0..n {
            let len = self.batch.lens[i];
            let buf = &mut self.batch.bufs[i][..len];
            if let Verdict::Forward { dst, len } = nat.process(buf, now, sel) {
                if len <= self.mtu {
                    out.push((i, len, dst));
                } else {
                    match segment::split(&buf[..len], self.mtu) {
                        Some(parts) => {
                            for p in parts {
                                self.extra.push(p);
                                extra_dst.push(dst);
                            }
                        }
                        None => nat.count_drop(DropReason::TooBig),
                    }
                }
            }
        }
        let generated = nat.take_pending();
        let mut packets: Vec<(&[u8], Ipv4Addr)> = out
            .iter()
            .map(|&(i, len, dst)| (&self.batch.bufs[i][..len], dst))
            .collect();
        packets.extend(self.extra.iter().map(|p| p.as_slice()).zip(extra_dst));
        packets.extend(generated.iter().map(|(p, dst)| (p.as_slice(), *dst)));
        let failed = dev.send(&packets);
        for (_, err) in failed {
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
        Ok(n)
    }
}
