//! An in-memory [`Device`] for tests: datagrams pushed to its inbox are received, sent
//! ones collected, so the NAT core and the pump run without sockets or root.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;

use crate::raw::device::{Device, RecvBatch, MAX_DATAGRAM};
use crate::raw::wire::packet::ChecksumState;

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
    /// Frames the device claims to have lost before receiving them; the next
    /// [`Device::receive_drops`] reports them once.
    pub lost: u64,
    /// When set, [`Device::receive_drops`] fails with this errno.
    pub fail_drop_count: Option<i32>,
}

impl Device for MemDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut n = 0;
        while n < batch.wanted().len() {
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

    fn receive_drops(&mut self) -> io::Result<u64> {
        match self.fail_drop_count {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(std::mem::take(&mut self.lost)),
        }
    }
}

/// Runs `inputs` through one pump batch at `now` on a fresh in-memory device; returns
/// everything sent, with its destination.
pub fn pump_batch(
    nat: &mut crate::raw::nat::Nat,
    sel: &mut crate::raw::nat::FixedRoundRobin,
    inputs: Vec<Vec<u8>>,
    now: std::time::Duration,
) -> Vec<(Vec<u8>, Ipv4Addr)> {
    let mut dev = MemDevice::default();
    let n = inputs.len();
    dev.inbox.extend(inputs);
    let mut pump = crate::raw::device::pump::Pump::new(n.max(1), 1500);
    pump.once(&mut dev, nat, sel, now).expect("mem device");
    dev.sent
}
