//! `l4lb chat-server <port>`: every chunk a client sends goes to every client, itself included.
//!
//! One task per client connection reads; one task per client writes from a bounded queue.
//! Broadcasting never waits: a client whose queue is full is dropped (logged), so a slow
//! or dead client cannot stall the others. Ids are assigned in accept order.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::ServerArgs;

/// Bytes read from a client socket at once (the original read 100; any size is wire-compatible).
const READ_CHUNK: usize = 4096;

/// One chunk as read from a client, shared by every queue it is put on.
pub type Chunk = Arc<[u8]>;

/// The outgoing side of one connected client, as the hub sees it.
#[derive(Debug)]
struct Member {
    queue: mpsc::Sender<Chunk>,
    /// Cancels the writer task when the client is dropped while its socket is blocked.
    writer: Option<AbortHandle>,
}

/// The set of connected clients and the broadcast rule. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Hub {
    members: Arc<Mutex<HashMap<u64, Member>>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Member>> {
        // A poisoned lock only means another task panicked mid-update; the map is still usable.
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a client with its outgoing queue; `writer` is aborted if the client is dropped.
    pub fn join(&self, id: u64, queue: mpsc::Sender<Chunk>, writer: Option<AbortHandle>) {
        self.lock().insert(id, Member { queue, writer });
    }

    /// Removes a client (idempotent).
    pub fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `chunk` for every client without waiting. Clients whose queue is full (or
    /// whose writer is gone) are removed, their writer aborted; their ids are returned.
    pub fn broadcast(&self, chunk: &Chunk) -> Vec<u64> {
        let mut members = self.lock();
        let mut dropped = Vec::new();
        for (id, member) in members.iter() {
            if member.queue.try_send(Arc::clone(chunk)).is_err() {
                dropped.push(*id);
            }
        }
        for id in &dropped {
            if let Some(member) = members.remove(id) {
                if let Some(writer) = member.writer {
                    writer.abort();
                }
            }
        }
        dropped
    }
}

/// Runs the server on a current-thread runtime until SIGTERM or SIGINT.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let stop = crate::shutdown::watch()?;
        let listener = bind(args.port)?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!("listening on {local}");
        tokio::select! {
            () = serve(listener, args.queue_chunks) => {}
            signal = stop => {
                tracing::info!("{} received, shutting down", signal.name());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Binds 0.0.0.0:`port` with SO_REUSEADDR, as the original did.
fn bind(port: u16) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let socket = tokio::net::TcpSocket::new_v4().context("cannot create a TCP socket")?;
    socket
        .set_reuseaddr(true)
        .context("cannot set SO_REUSEADDR")?;
    socket.bind(addr).with_context(|| {
        format!("cannot bind {addr}: is another server on this port? pick another port")
    })?;
    socket
        .listen(1024)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Accepts clients forever; each one gets its own reader and writer task.
async fn serve(listener: TcpListener, queue_chunks: usize) {
    let hub = Hub::default();
    let mut next_id: u64 = 1;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let id = next_id;
                next_id += 1;
                say(&format!("Connected client IP: {}", peer.ip()));
                tracing::debug!(client = id, %peer, "accepted");
                tokio::spawn(session(hub.clone(), id, stream, queue_chunks));
            }
            Err(error) => {
                // Out of descriptors or a connection reset before accept: keep serving.
                tracing::warn!("accept failed: {error}; retrying in 100 ms");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client: read chunks and broadcast them until EOF, error, or the hub drops it.
async fn session(hub: Hub, id: u64, stream: TcpStream, queue_chunks: usize) {
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut outgoing) = mpsc::channel::<Chunk>(queue_chunks);
    let mut write_task = tokio::spawn(async move {
        while let Some(chunk) = outgoing.recv().await {
            writer.write_all(&chunk).await?;
        }
        Ok::<(), std::io::Error>(())
    });
    hub.join(id, queue, Some(write_task.abort_handle()));
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    let chunk: Chunk = Arc::from(&buf[..n]);
                    for dropped in hub.broadcast(&chunk) {
                        tracing::warn!(
                            "client {dropped} dropped: outgoing queue full ({queue_chunks} chunks), it does not read fast enough"
                        );
                    }
                    // Let the writers run before reading more: on one thread, a fast sender
                    // could otherwise fill every queue within one scheduling budget.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::debug!(client = id, "read failed: {error}");
                    break;
                }
            },
            finished = &mut write_task => {
                if let Ok(Err(error)) = finished {
                    tracing::debug!(client = id, "write failed: {error}");
                }
                break;
            }
        }
    }
    hub.leave(id);
    write_task.abort();
    say(&format!("client {id} terminated"));
}

/// Writes one line to stdout and flushes it (a harness reads it through a pipe).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the server down.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: &[u8]) -> Chunk {
        Arc::from(bytes)
    }

    #[test]
    fn broadcast_reaches_every_member_including_sender() {
        let hub = Hub::default();
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        hub.join(1, a_tx, None);
        hub.join(2, b_tx, None);
        assert!(hub.broadcast(&chunk(b"[a] hi\n")).is_empty());
        assert_eq!(&*a_rx.try_recv().unwrap(), b"[a] hi\n");
        assert_eq!(&*b_rx.try_recv().unwrap(), b"[a] hi\n");
    }

    #[test]
    fn full_queue_drops_only_that_member() {
        let hub = Hub::default();
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        hub.join(1, slow_tx, None);
        hub.join(2, fast_tx, None);
        assert!(hub.broadcast(&chunk(b"one")).is_empty());
        assert_eq!(hub.broadcast(&chunk(b"two")), vec![1]);
        assert_eq!(hub.len(), 1);
        assert!(hub.broadcast(&chunk(b"three")).is_empty());
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| fast_rx.try_recv().ok())
            .map(|c| c.to_vec())
            .collect();
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn closed_queue_is_dropped_and_leave_is_idempotent() {
        let hub = Hub::default();
        let (tx, rx) = mpsc::channel(4);
        hub.join(7, tx, None);
        drop(rx);
        assert_eq!(hub.broadcast(&chunk(b"x")), vec![7]);
        hub.leave(7);
        hub.leave(7);
        assert!(hub.is_empty());
    }
}
