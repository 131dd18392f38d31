//! The listener and accept loop: session limit, refusal, graceful shutdown.

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
/// a large backlog for connection-rate bursts.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create the listening socket")?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!("cannot listen on {addr}: is something else using it? choose another --listen")
    })?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into()).context("cannot register the listener with tokio")
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

/// Binds `config.listen` and serves until SIGTERM/SIGINT.
pub async fn serve_until_signal(config: ProxyConfig) -> anyhow::Result<()> {
    let stop = shutdown_signal()?;
    let listener = bind(config.listen)?;
    serve(listener, config, stop).await
}

/// Serves clients from `listener` until `stop` resolves, then stops accepting, lets
/// open sessions finish for up to `config.grace`, and closes the rest.
pub async fn serve(
    listener: TcpListener,
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
    let limit = Arc::new(Semaphore::new(config.max_sessions));
    let grace = config.grace;
    let ctx = Arc::new(Context {
        pool,
        config,
        stats: Arc::clone(&stats),
        force_close: CancellationToken::new(),
    });
    let sessions = TaskTracker::new();
    let backends: Vec<String> = ctx
        .pool
        .backends()
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    tracing::info!(
        listen = %listener.local_addr()?,
        backends = %backends.join(","),
        max_sessions = ctx.config.max_sessions,
        forward = ?ctx.config.forward,
        "proxy listening"
    );

    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    stats.accepted();
                    match Arc::clone(&limit).try_acquire_owned() {
                        Ok(permit) => {
                            sessions.spawn(session::run(Arc::clone(&ctx), client, peer, permit));
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

    drop(listener);
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
    checker.shutdown().await;
    if let Some(task) = admin_task {
        task.abort();
    }
    tracing::info!("proxy stopped");
    Ok(())
}
