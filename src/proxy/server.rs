//! The listener, the workers and their accept loops: session limit, refusal, graceful
//! shutdown.
//!
//! Threading: one single-threaded tokio runtime per worker thread (`--workers`, default
//! one per CPU), each accepting from its own handle (a dup) of one shared listening
//! socket and running the sessions it accepted to the end. No work stealing or
//! cross-thread wake-ups on the data path; an idle worker simply wins more accepts. The
//! main thread's runtime runs the signals, the health checker and the stats endpoint.
//! Shared state is the pool (a mutex held for a few comparisons) and atomic counters.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ProxyConfig;
use super::session::{self, Context};
use super::stats::{ProxyStats, Refusal};
use crate::admin::{self, MetricsSource};
use crate::health::HealthChecker;
use crate::pool::Pool;

/// Listen backlog (the kernel caps it at net.core.somaxconn).
pub const BACKLOG: i32 = 4096;

/// Binds the client listener: SO_REUSEADDR, TCP_NODELAY (inherited by accepted sockets),
/// a large backlog for connection-rate bursts. Non-blocking, ready for tokio.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create the listening socket")?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!("cannot listen on {addr}: is something else using it? choose another --listen")
    })?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Resolves on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Binds `config.listen` and serves until SIGTERM/SIGINT. Call on a tokio runtime; the
/// workers get runtimes of their own.
pub async fn serve_until_signal(config: ProxyConfig) -> anyhow::Result<()> {
    let stop = shutdown_signal()?;
    let listener = bind(config.listen)?;
    serve(listener, config, stop).await
}

/// Serves clients from `listener` until `stop` resolves, then stops accepting, lets
/// open sessions finish for up to `config.grace`, and closes the rest.
pub async fn serve(
    listener: std::net::TcpListener,
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
    let workers = config.workers;
    let ctx = Arc::new(Context {
        pool,
        config,
        stats: Arc::clone(&stats),
        force_close: CancellationToken::new(),
    });
    let shared = Arc::new(Shared {
        ctx: Arc::clone(&ctx),
        limit: Arc::new(Semaphore::new(ctx.config.max_sessions)),
        sessions: TaskTracker::new(),
        stop_accepting: CancellationToken::new(),
        exit: CancellationToken::new(),
    });
    let local = listener.local_addr()?;
    let (accepting_tx, mut accepting_rx) = tokio::sync::mpsc::channel::<()>(workers);
    let mut threads = Vec::new();
    for n in 0..workers {
        let handle = listener
            .try_clone()
            .context("cannot share the listening socket with a worker")?;
        let shared = Arc::clone(&shared);
        let done = accepting_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("l4lb-proxy-{n}"))
            .spawn(move || worker(handle, shared, done))
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }
    drop((listener, accepting_tx));
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

/// What the workers share.
struct Shared {
    ctx: Arc<Context>,
    limit: Arc<Semaphore>,
    sessions: TaskTracker,
    stop_accepting: CancellationToken,
    exit: CancellationToken,
}

/// One worker thread: its own runtime, accepting until told to stop, then running its
/// sessions until told to exit.
fn worker(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    accepting: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a worker's tokio runtime")?;
    runtime.block_on(async move {
        let listener =
            TcpListener::from_std(listener).context("cannot register the listener with tokio")?;
        accept_loop(&listener, &shared).await;
        drop(listener);
        drop(accepting); // tells the main thread this worker stopped accepting
        shared.exit.cancelled().await;
        Ok(())
    })
}

async fn accept_loop(listener: &TcpListener, shared: &Shared) {
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
