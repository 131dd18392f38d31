//! The backends of the bench: a bulk sink and a request/response server on every server
//! host (see [`super::proto`]).
//!
//! The listening sockets are created on a thread inside each server's namespace (a socket
//! stays in the namespace it was created in), then served by tasks of the caller's tokio
//! runtime. Dropping [`Backends`] stops every task and closes every socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::proto;
use crate::netns::Namespace;

/// Counters the backends keep (ground truth on the server side).
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Malformed requests, I/O errors and short reads.
    pub errors: AtomicU64,
    /// Sessions open now (accepted and not yet ended).
    pub open: AtomicU64,
}

/// Running backends; dropping this stops them.
#[derive(Debug)]
pub struct Backends {
    tasks: JoinSet<()>,
    /// Counters shared by every backend.
    pub counters: Arc<ServerCounters>,
}

/// Opens a listener on `addr` (backlog 4096, SO_REUSEADDR) in the calling thread's namespace.
fn listen(addr: SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(addr).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

impl Backends {
    /// Starts a sink and a request/response server on each `(namespace, address)`; server
    /// `i` answers with index `i`. Must be called from within a tokio runtime.
    pub fn start(servers: &[(Namespace, Ipv4Addr)]) -> anyhow::Result<Backends> {
        let mut listeners = Vec::new();
        for (ns, ip) in servers {
            let ip = *ip;
            let pair = ns
                .run(move || -> std::io::Result<_> {
                    Ok((
                        listen(SocketAddrV4::new(ip, proto::SINK_PORT))?,
                        listen(SocketAddrV4::new(ip, proto::RR_PORT))?,
                    ))
                })?
                .with_context(|| format!("listening on {ip} in namespace {}", ns.name))?;
            listeners.push(pair);
        }
        Backends::serve(listeners)
    }

    /// Serves `(sink, request/response)` listener pairs; pair `i` answers with index `i`.
    /// Must be called from within a tokio runtime.
    pub fn serve(
        listeners: Vec<(std::net::TcpListener, std::net::TcpListener)>,
    ) -> anyhow::Result<Backends> {
        let counters = Arc::new(ServerCounters::default());
        let mut tasks = JoinSet::new();
        for (index, (sink, rr)) in listeners.into_iter().enumerate() {
            let index = u8::try_from(index).context("at most 255 servers")?;
            sink.set_nonblocking(true)?;
            rr.set_nonblocking(true)?;
            let sink = TcpListener::from_std(sink)?;
            let rr = TcpListener::from_std(rr)?;
            tasks.spawn(accept_loop(sink, counters.clone(), sink_session));
            tasks.spawn(accept_loop(rr, counters.clone(), move |s, c| {
                rr_session(s, index, c)
            }));
        }
        Ok(Backends { tasks, counters })
    }

    /// Server-side errors so far.
    pub fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Sessions open on the servers now.
    pub fn open_sessions(&self) -> u64 {
        self.counters.open.load(Ordering::Relaxed)
    }

    /// Waits until every server session has ended, for at most `within`; returns how
    /// many are still open then. Run after a workload and before its path stops, so the
    /// closes (and any error in them) happen while that path still carries them and
    /// count against it, not against the path measured next.
    pub async fn drained(&self, within: std::time::Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let open = self.open_sessions();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops every backend task.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, counters: Arc<ServerCounters>, session: F)
where
    F: Fn(TcpStream, Arc<ServerCounters>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    // Sessions live in this JoinSet, so aborting the accept loop ends them too.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    counters.open.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let fut = session(stream, counters.clone());
                    let counters = counters.clone();
                    sessions.spawn(async move {
                        if fut.await.is_err() {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        counters.open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // EMFILE and friends: count, back off a little, keep serving.
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// Reads to EOF, then answers the byte count (8 bytes, big endian).
async fn sink_session(mut stream: TcpStream, _c: Arc<ServerCounters>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(&total.to_be_bytes()).await?;
    stream.shutdown().await
}

/// Answers every request with a response naming this server, until EOF.
async fn rr_session(
    mut stream: TcpStream,
    index: u8,
    _c: Arc<ServerCounters>,
) -> std::io::Result<()> {
    let response = proto::response(index);
    let mut req = [0u8; proto::REQUEST_LEN];
    loop {
        // A clean EOF between requests ends the session; inside one it is an error.
        let mut got = 0;
        while got < req.len() {
            let n = stream.read(&mut req[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(())
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            got += n;
        }
        if !proto::is_request(&req) {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        stream.write_all(&response).await?;
    }
}

#[cfg(test)]
mod tests {
    //! The load generator against the backends on the host's loopback (no namespace).
    use super::*;
    use crate::bench::load::{self, LoadSpec, Workload};
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn loopback() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    fn spec(servers: usize) -> LoadSpec {
        LoadSpec {
            duration: Duration::from_millis(200),
            grace: Duration::from_secs(5),
            max_ops: 1_000_000,
            op_timeout: Duration::from_secs(2),
            servers,
        }
    }

    fn addr(l: &std::net::TcpListener) -> SocketAddrV4 {
        match l.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drained_waits_for_open_sessions_and_says_how_many_are_left() {
        let (sink, rr) = (loopback(), loopback());
        let rr_addr = addr(&rr);
        let backends = Backends::serve(vec![(sink, rr)]).unwrap();
        assert_eq!(backends.drained(Duration::from_millis(10)).await, 0);
        let client = tokio::net::TcpStream::connect(rr_addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while backends.open_sessions() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A session its client keeps open is still open when the wait runs out.
        assert_eq!(backends.drained(Duration::from_millis(50)).await, 1);
        // Once the client closes, the wait sees it end.
        drop(client);
        assert_eq!(backends.drained(Duration::from_secs(5)).await, 0);
        assert_eq!(backends.errors(), 0, "a clean close is no error");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_workload_moves_bytes_without_loss() {
        let (sink, rr) = (loopback(), loopback());
        let (sink_addr, rr_addr) = (addr(&sink), addr(&rr));
        let backends = Backends::serve(vec![(sink, rr)]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        for (target, w) in [
            (sink_addr, Workload::Bulk { streams: 1 }),
            (sink_addr, Workload::Bulk { streams: 4 }),
            (rr_addr, Workload::Connect { concurrency: 4 }),
            (rr_addr, Workload::Keep { concurrency: 4 }),
            (rr_addr, Workload::Latency),
            (
                rr_addr,
                Workload::Packets {
                    flows: 8,
                    window: 4,
                },
            ),
        ] {
            let o = load::run(target, w, spec(1), stop.clone()).await;
            assert_eq!(
                (o.errors, o.lost_bytes),
                (0, 0),
                "{w:?}: {:?}",
                o.first_error
            );
            assert!(
                o.bytes_confirmed > 0 && o.bytes_confirmed == o.bytes_sent,
                "{w:?}: {o:?}"
            );
            if !matches!(w, Workload::Bulk { .. }) {
                assert!(
                    o.requests > 0 && o.per_server == [o.requests],
                    "{w:?}: {o:?}"
                );
            }
            if w == Workload::Latency {
                let h = o.latency_ns.as_ref().unwrap();
                assert_eq!(h.len(), o.requests);
            }
            if let Workload::Packets { window, .. } = w {
                assert_eq!(o.requests % window as u64, 0, "whole batches: {o:?}");
            }
        }
        assert_eq!(backends.errors(), 0);
        backends.stop();
    }

    #[tokio::test]
    async fn a_dead_target_counts_errors() {
        let gone = addr(&loopback()); // bound, then dropped: nothing listens there
        let stop = Arc::new(AtomicBool::new(false));
        let o = load::run(
            gone,
            Workload::Connect { concurrency: 2 },
            spec(1),
            stop.clone(),
        )
        .await;
        assert!(o.errors > 0 && o.requests == 0, "{o:?}");
        assert!(o.first_error.unwrap().contains("connect"));
    }

    #[tokio::test]
    async fn a_short_response_is_an_error_not_a_request() {
        // A server that answers half a response and closes.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = match l.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut req = [0u8; proto::REQUEST_LEN];
                if s.read_exact(&mut req).await.is_ok() {
                    let _ = s.write_all(&proto::response(0)[..10]).await;
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let o = load::run(target, Workload::Connect { concurrency: 1 }, spec(1), stop).await;
        assert_eq!(o.requests, 0);
        assert!(o.errors > 0 && o.lost_bytes > 0, "{o:?}");
    }

    #[tokio::test]
    async fn a_sink_that_undercounts_means_lost_bytes() {
        // A sink that reports one byte fewer than it got.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = match l.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            let n = buf.len() as u64 - 1;
            s.write_all(&n.to_be_bytes()).await.unwrap();
        });
        let stop = Arc::new(AtomicBool::new(false));
        let o = load::run(target, Workload::Bulk { streams: 1 }, spec(1), stop).await;
        assert_eq!((o.errors, o.lost_bytes), (1, 1), "{o:?}");
    }
}
