//! The listener, the workers and their accept loops: session limit, refusal, graceful
//! shutdown.
//!
//! Threading: one single-threaded tokio runtime per worker thread (`--workers`, default
//! one per two CPUs, see [`super::config::default_workers`]), each accepting from its own
//! SO_REUSEPORT listening socket and running the sessions it accepted to the end. No work
//! stealing, no cross-thread wake-ups on the data path, no two workers woken for one
//! connection. The main thread's runtime runs the signals, the health checker and the
//! stats endpoint.
//! Shared state is the pool (a mutex held for a few comparisons) and atomic counters.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ProxyConfig;
use super::session::{self, SessionEnv};
use super::stats::{ProxyStats, Refusal};
use crate::admin::{self, MetricsSource};
use crate::health::HealthChecker;
use crate::pool::Pool;

/// Listen backlog (the kernel caps it at net.core.somaxconn).
pub const BACKLOG: i32 = 4096;

/// Binds the client listeners, one per worker, all on one address with SO_REUSEPORT so
/// the kernel spreads new connections over them (no thundering herd between workers).
/// Each has SO_REUSEADDR, TCP_NODELAY (inherited by accepted sockets) and a large backlog.
///
/// SO_REUSEPORT alone would let a second balancer started on the same address silently
/// share it; a plain bind first makes that a clear error instead.
pub fn bind(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let taken =
        || format!("cannot listen on {addr}: is something else using it? choose another --listen");
    let probe = socket_for(addr)?;
    probe.bind(&addr.into()).with_context(taken)?;
    // With port 0 the probe picked the port; the workers' sockets take the same one.
    let addr = probe
        .local_addr()?
        .as_socket()
        .context("the listening socket has no IP address")?;
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = socket_for(addr)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into()).with_context(taken)?;
            socket.listen(BACKLOG)?;
            Ok(socket.into())
        })
        .collect()
}

fn socket_for(addr: SocketAddr) -> anyhow::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create the listening socket")?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Binds `config.listen` and serves until SIGTERM/SIGINT. Call on a tokio runtime; the
/// workers get runtimes of their own.
pub async fn serve_until_signal(config: ProxyConfig) -> anyhow::Result<()> {
    let signal = crate::shutdown::watch()?;
    let listeners = bind(config.listen, config.workers)?;
    let stop = async move {
        let signal = signal.await;
        tracing::info!(signal = signal.name(), "shutdown requested");
    };
    serve(listeners, config, stop).await
}

/// Serves clients from `listeners` (one worker each) until `stop` resolves, then stops accepting, lets
/// open sessions finish for up to `config.grace`, and closes the rest.
pub async fn serve(
    listeners: Vec<std::net::TcpListener>,
    config: ProxyConfig,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let pool = Arc::new(Pool::new(config.backends.clone(), config.thresholds));
    let checker = HealthChecker::spawn(Arc::clone(&pool), &config.check);
    let stats = Arc::new(ProxyStats::default());
    let admin_task = match config.admin {
        Some(addr) => {
            let admin_listener = admin::bind(addr).await?;
            let bound = admin_listener.local_addr()?;
            tracing::info!(admin = %bound, "stats endpoint at /metrics");
            let sources: Vec<Arc<dyn MetricsSource>> = vec![stats.clone()];
            Some(tokio::spawn(admin::serve(
                admin_listener,
                Arc::clone(&pool),
                sources,
            )))
        }
        None => None,
    };
    let grace = config.grace;
    let workers = listeners.len();
    let ctx = Arc::new(SessionEnv {
        pool,
        config,
        stats: Arc::clone(&stats),
        force_close: CancellationToken::new(),
    });
    let shared = Arc::new(WorkerControl {
        ctx: Arc::clone(&ctx),
        limit: Arc::new(Semaphore::new(ctx.config.max_sessions)),
        sessions: TaskTracker::new(),
        stop_accepting: CancellationToken::new(),
        exit: CancellationToken::new(),
    });
    let local = listeners
        .first()
        .context("no listening socket to serve")?
        .local_addr()?;
    let (accepting_tx, mut accepting_rx) = tokio::sync::mpsc::channel::<()>(workers);
    let mut threads = Vec::new();
    for (n, handle) in listeners.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let done = accepting_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("l4lb-proxy-{n}"))
            .spawn(move || worker(handle, shared, done))
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }
    drop(accepting_tx);
    let backends: Vec<String> = ctx
        .pool
        .backends()
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    tracing::info!(
        listen = %local,
        backends = %backends.join(","),
        workers,
        max_sessions = ctx.config.max_sessions,
        forward = ?ctx.config.forward,
        "proxy listening"
    );

    stop.await;
    shared.stop_accepting.cancel();
    // Each worker drops its listener handle and reports; then no session can be added.
    while accepting_rx.recv().await.is_some() {}
    let sessions = &shared.sessions;
    sessions.close();
    tracing::info!(
        live = sessions.len(),
        grace_ms = grace.as_millis() as u64,
        "no longer accepting; draining sessions"
    );
    if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
        tracing::warn!(
            live = sessions.len(),
            "grace period over; closing the remaining sessions"
        );
        ctx.force_close.cancel();
        sessions.wait().await;
    }
    shared.exit.cancel();
    for thread in threads {
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => return Err(error),
            _ => anyhow::bail!("a worker thread panicked"),
        }
    }
    checker.shutdown().await;
    if let Some(task) = admin_task {
        task.abort();
    }
    tracing::info!("proxy stopped");
    Ok(())
}

/// What every worker holds: the sessions' environment, the session limit, the tracker
/// of running sessions, and the two shutdown steps (stop accepting, then exit).
struct WorkerControl {
    ctx: Arc<SessionEnv>,
    limit: Arc<Semaphore>,
    sessions: TaskTracker,
    stop_accepting: CancellationToken,
    exit: CancellationToken,
}

/// One worker thread: its own runtime, accepting until told to stop, then running its
/// sessions until told to exit.
fn worker(
    listener: std::net::TcpListener,
    shared: Arc<WorkerControl>,
    accepting: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    // Session events are written in one go whenever the worker goes idle.
    crate::logging::batch_this_thread();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::logging::flush_batch)
        .build()
        .context("cannot start a worker's tokio runtime")?;
    let busy_poll = shared.ctx.config.busy_poll;
    runtime.block_on(async move {
        if !busy_poll.is_zero() {
            tokio::spawn(super::spin::poll_while_busy(busy_poll));
        }
        let listener =
            TcpListener::from_std(listener).context("cannot register the listener with tokio")?;
        accept_loop(&listener, &shared).await;
        drop(listener);
        drop(accepting); // tells the main thread this worker stopped accepting
        shared.exit.cancelled().await;
        Ok(())
    })
}

async fn accept_loop(listener: &TcpListener, shared: &WorkerControl) {
    let stats = &shared.ctx.stats;
    loop {
        tokio::select! {
            biased;
            () = shared.stop_accepting.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    stats.accepted();
                    match Arc::clone(&shared.limit).try_acquire_owned() {
                        Ok(permit) => {
                            let ctx = Arc::clone(&shared.ctx);
                            shared.sessions.spawn(session::run(ctx, client, peer, permit));
                        }
                        Err(_) => {
                            stats.refused(Refusal::MaxSessions);
                            tracing::debug!(client = %peer, reason = "max_sessions", "client refused");
                        }
                    }
                }
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        listener.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn a_taken_address_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(
            first[1].local_addr().unwrap(),
            addr,
            "workers share one port"
        );
        let err = bind(addr, 2).unwrap_err();
        assert!(
            format!("{err:#}").contains("choose another --listen"),
            "{err:#}"
        );
    }
}
