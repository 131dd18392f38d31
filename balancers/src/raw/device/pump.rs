//! The forwarding loop: receive a batch from a [`Device`], run every datagram through the
//! NAT core, send what it forwards (straight out of the device where it can, else
//! through the kernel's routed path, cut to the MTU), and count what the device side did.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::raw::device::{Device, Forward, RecvBatch};
use crate::raw::nat::{Nat, Outcome, Selector};
use crate::raw::stages::{realtime_ns, StageTimes};
use crate::raw::wire::gso;
use crate::raw::wire::packet::{self, ChecksumState, DropReason};

/// What the device side did with the datagrams the NAT forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PumpCounters {
    /// Frames sent straight to the device (`--send direct`), super-packets whole.
    pub sent_direct: u64,
    /// Datagrams sent through the kernel's routed path (segments of cut super-packets
    /// and the balancer's own resets included).
    pub sent_routed: u64,
    /// Datagrams dropped as [`DropReason::TooBig`]: longer than the MTU and not cut.
    pub too_big: u64,
    /// Datagrams dropped as [`DropReason::SendFailed`] (the sender thread's included).
    pub send_failed: u64,
    /// Frames lost as [`DropReason::ReceiveQueueFull`], as the device last told.
    pub receive_queue_full: u64,
}

impl PumpCounters {
    /// Drops counted here for `reason` (0 for the reasons only the NAT decides).
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::TooBig => self.too_big,
            DropReason::SendFailed => self.send_failed,
            DropReason::ReceiveQueueFull => self.receive_queue_full,
            _ => 0,
        }
    }
}

/// Bytes a batch should hold, about: a batch is copied in and then read back out, so
/// while it fits the CPU's cache the second pass is a cache hit. 256 KiB is 4 super-packets
/// of 64 KB, or a full batch of 1500-byte segments.
pub const BATCH_BYTES: usize = 256 << 10;

/// How many datagrams to ask for next, given that the largest of the last batch was
/// `largest` bytes: as many of that size as fit [`BATCH_BYTES`], from 1 to `max`. The
/// largest, not the average: a bulk flow's batch mixes super-packets with the other way's
/// small ACKs, and the super-packets are what must fit. An empty batch (0) asks for `max`.
pub fn next_batch(max: usize, largest: usize) -> usize {
    if largest == 0 {
        return max.max(1);
    }
    (BATCH_BYTES / largest).clamp(1, max.max(1))
}

/// Reusable state of the forwarding loop.
pub struct Pump {
    batch: RecvBatch,
    /// Egress MTU: larger datagrams (super-packets) sent through the kernel's path are
    /// cut into segments that fit.
    mtu: usize,
    counters: PumpCounters,
    /// Failed sends on this thread, for rate-limiting their log lines.
    send_errors_logged: u64,
    /// Whether the device failed to tell its receive drops (logged once).
    receive_drops_unknown: bool,
    /// Where each batch's time goes, when asked for (`--stage-times`).
    stages: Option<StageTimes>,
    /// The datagrams of a batch to forward, kept between batches.
    forwards: Vec<Forward>,
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
            counters: PumpCounters::default(),
            send_errors_logged: 0,
            receive_drops_unknown: false,
            stages: None,
            forwards: Vec::new(),
        }
    }

    /// Times every batch from now on, by stage ([`StageTimes`]).
    pub fn time_stages(&mut self) {
        self.stages = Some(StageTimes::new());
    }

    /// The stage times so far, when timed.
    pub fn stages(&self) -> Option<&StageTimes> {
        self.stages.as_ref()
    }

    /// The counters.
    pub fn counters(&self) -> &PumpCounters {
        &self.counters
    }

    /// Counts `n` sends that failed away from this loop (on a sender thread).
    pub fn count_send_failures(&mut self, n: u64) {
        self.counters.send_failed += n;
    }

    /// Asks the device how many frames it lost before they were received, and counts
    /// them (one system call on a packet socket: call it at publishing time, not per
    /// batch). A device that cannot answer is logged once and counted as losing none.
    pub fn count_receive_drops(&mut self, dev: &mut dyn Device) {
        match dev.receive_drops() {
            Ok(n) => self.counters.receive_queue_full += n,
            Err(error) if !self.receive_drops_unknown => {
                self.receive_drops_unknown = true;
                tracing::warn!(%error, "cannot read the capture's drop count; receive_queue_full stays 0");
            }
            Err(_) => {}
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
        let received = match self.stages.as_mut() {
            Some(stages) => {
                let at = realtime_ns();
                for &arrived in &self.batch.arrived[..n] {
                    stages.datagram(arrived, at);
                }
                Some(Instant::now())
            }
            None => None,
        };
        let largest = self.batch.lens[..n].iter().copied().max().unwrap_or(0);
        self.batch.want = next_batch(self.batch.bufs.len(), largest);
        // A list kept between batches (taken out while `self` is borrowed below).
        let mut forwards = std::mem::take(&mut self.forwards);
        forwards.clear();
        for i in 0..n {
            let (len, checksum) = (self.batch.lens[i], self.batch.checksums[i]);
            let buf = self.batch.datagram_mut(i, len);
            if let Outcome::Forward { dst, len } = nat.process(buf, now, sel, checksum) {
                forwards.push(Forward { index: i, len, dst });
            }
        }
        let rewritten = received.map(|_| Instant::now());
        let sent = dev.send_frames(&mut self.batch, &forwards);
        let direct = forwards.len() - sent.routed.len() - sent.failed.len();
        for err in sent.failed {
            self.count_failed_send(&err);
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
                    None => self.counters.too_big += 1,
                }
                continue;
            }
            if partial {
                packet::complete_tcp_checksum(buf);
            }
            routed.push((f.index, f.len, f.dst));
        }
        // The core's own datagrams go first: a RST freeing a backend's half-open
        // connection on a NAT port must arrive before the new SYN on that port (a first
        // SYN always takes this path).
        let generated = nat.take_pending();
        let head = self.batch.head;
        let mut packets: Vec<(&[u8], Ipv4Addr)> = generated
            .iter()
            .map(|(p, dst)| (p.as_slice(), *dst))
            .collect();
        packets.extend(
            routed
                .iter()
                .map(|&(i, len, dst)| (&self.batch.bufs[i][head..head + len], dst)),
        );
        packets.extend(extra.iter().map(|(p, dst)| (p.as_slice(), *dst)));
        let failed = dev.send(&packets);
        if let (Some(stages), Some(received), Some(rewritten)) =
            (self.stages.as_mut(), received, rewritten)
        {
            stages.batch(rewritten - received, rewritten.elapsed());
        }
        self.counters.sent_direct += direct as u64;
        self.counters.sent_routed += (packets.len() - failed.len()) as u64;
        for (_, err) in failed {
            self.count_failed_send(&err);
        }
        self.forwards = forwards;
        Ok(n)
    }

    /// Sends what the core generated outside a batch (the resets of rows
    /// [`Nat::expire`] evicted), so they do not wait for the next received datagram.
    pub fn send_pending(&mut self, dev: &mut dyn Device, nat: &mut Nat) {
        let generated = nat.take_pending();
        if generated.is_empty() {
            return;
        }
        let packets: Vec<(&[u8], Ipv4Addr)> = generated
            .iter()
            .map(|(p, dst)| (p.as_slice(), *dst))
            .collect();
        let failed = dev.send(&packets);
        self.counters.sent_routed += (packets.len() - failed.len()) as u64;
        for (_, err) in failed {
            self.count_failed_send(&err);
        }
    }

    fn count_failed_send(&mut self, err: &io::Error) {
        self.counters.send_failed += 1;
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
