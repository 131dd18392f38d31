//! An optional sender thread (`--send-thread`): the forwarding loop hands each batch of
//! datagrams for the kernel's routed path to a second thread that calls `sendmmsg`
//! (frames the device sends directly stay on the loop's thread).
//!
//! On a veth, sending runs the receiving host's network stack (softirq) inside the
//! sending system call, a large part of the forwarding thread's time in bulk transfers;
//! a second thread lets that overlap with receiving.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::raw::device::{Device, Forward, FramesSent, RecvBatch};
use l4lb_rawsock::ip::RawSender;

/// Batches in flight between the threads (back-pressure beyond that).
const DEPTH: usize = 64;

/// Rewritten datagrams of one batch, copied into one buffer.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    items: Vec<(usize, usize, Ipv4Addr)>,
}

/// A device that receives through `inner` and sends on a sender thread.
pub struct ThreadedDevice<D: Device> {
    inner: D,
    to_sender: Option<SyncSender<Batch>>,
    spare: Receiver<Batch>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl<D: Device> ThreadedDevice<D> {
    /// Starts the sender thread on `sender`.
    pub fn new(inner: D, sender: RawSender) -> io::Result<Self> {
        let (to_sender, batches) = sync_channel::<Batch>(DEPTH);
        let (give_back, spare) = sync_channel::<Batch>(DEPTH);
        let failed = Arc::new(AtomicU64::new(0));
        let failed_in_thread = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("l4lb-raw-send".into())
            .spawn(move || {
                let mut logged = 0u64;
                for mut batch in batches {
                    let packets: Vec<(&[u8], Ipv4Addr)> = batch
                        .items
                        .iter()
                        .map(|&(at, len, dst)| (&batch.data[at..at + len], dst))
                        .collect();
                    let errors = sender.send(&packets);
                    drop(packets);
                    for (_, err) in &errors {
                        logged += 1;
                        if logged <= 10 || logged % 1000 == 0 {
                            tracing::warn!(
                                event = "send_failed",
                                error = %err,
                                total = logged,
                                "sending a rewritten packet failed; dropped and counted"
                            );
                        }
                    }
                    failed_in_thread.fetch_add(errors.len() as u64, Ordering::Relaxed);
                    batch.data.clear();
                    batch.items.clear();
                    let _ = give_back.try_send(batch);
                }
            })?;
        Ok(Self {
            inner,
            to_sender: Some(to_sender),
            spare,
            failed,
            thread: Some(thread),
        })
    }

    /// Failed sends since the last call.
    pub fn take_failed(&self) -> u64 {
        self.failed.swap(0, Ordering::Relaxed)
    }
}

impl<D: Device> Device for ThreadedDevice<D> {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.inner.recv(batch)
    }

    fn send_frames(&mut self, batch: &mut RecvBatch, forwards: &[Forward]) -> FramesSent {
        self.inner.send_frames(batch, forwards)
    }

    fn receive_drops(&mut self) -> io::Result<u64> {
        self.inner.receive_drops()
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        let mut batch = self.spare.try_recv().unwrap_or_default();
        for (bytes, dst) in packets {
            batch.items.push((batch.data.len(), bytes.len(), *dst));
            batch.data.extend_from_slice(bytes);
        }
        match &self.to_sender {
            Some(tx) if tx.send(batch).is_ok() => Vec::new(),
            _ => (0..packets.len())
                .map(|i| (i, io::Error::other("the sender thread has stopped")))
                .collect(),
        }
    }
}

impl<D: Device> Drop for ThreadedDevice<D> {
    fn drop(&mut self) {
        self.to_sender = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
