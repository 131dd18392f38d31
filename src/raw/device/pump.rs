//! The forwarding loop: receive a batch from a [`Device`], run every datagram through the
//! NAT core, send what it forwards (straight out of the device where it can, else
//! through the kernel's routed path, cut to the MTU), and count what the device side did.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::raw::device::{Device, Forward, RecvBatch};
use crate::raw::nat::{Nat, Selector, Verdict};
use crate::raw::wire::gso;
use crate::raw::wire::packet::{self, ChecksumState, DropReason};

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
                match gso::split(buf, self.mtu) {
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

#[cfg(test)]
mod tests;
