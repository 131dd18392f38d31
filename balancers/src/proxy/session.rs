//! One client session: pick a backend (least connections), connect with a timeout and
//! retry on another backend if that fails (passive health), then forward both directions
//! until both finish, an error (reset) ends them, the idle timeout fires, or the grace
//! period after a shutdown signal runs out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::ProxyConfig;
use super::forward::{self, Transfer};
use super::stats::{Close, ProxyStats, Refusal};
use crate::health::log_transition;
use crate::pool::{Pool, SessionGuard};

/// What every session shares.
#[derive(Debug)]
pub struct SessionEnv {
    /// Backends and their health.
    pub pool: Arc<Pool>,
    /// Validated settings.
    pub config: ProxyConfig,
    /// Proxy-wide counters.
    pub stats: Arc<ProxyStats>,
    /// Cancelled when the grace period after a shutdown signal is over.
    pub force_close: CancellationToken,
}

/// Serves one accepted client until its session ends. The permit holds its place
/// under `--max-sessions` until then.
pub async fn run(
    ctx: Arc<SessionEnv>,
    client: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit; // TCP_NODELAY is inherited from the listener
    let (backend, guard) = match connect_upstream(&ctx, peer).await {
        Ok(connected) => connected,
        Err(why) => {
            ctx.stats.refused(why);
            tracing::debug!(client = %peer, reason = why.as_str(), "client refused");
            return; // dropping the socket closes it (FIN)
        }
    };
    let backend_addr = guard.backend().addr;
    // Debug: the close event carries client, backend, bytes and duration (info for
    // unusual closes, and for all with --log-sessions).
    tracing::debug!(client = %peer, backend = %backend_addr, "session opened");
    ctx.stats.opened();

    let transfer = Transfer::new();
    let started = Instant::now();
    // Biased: polled in this order, no random pick per poll; forwarding is the common case.
    let how = tokio::select! {
        biased;
        result = forward::forward(&client, &backend, ctx.config.forward, &transfer) => match result {
            Ok(()) => Close::Done,
            Err(error) => {
                tracing::debug!(client = %peer, backend = %backend_addr, %error, "session error");
                // Pass a reset on: close both sockets abortively (RST), not with a FIN.
                for s in [&client, &backend] {
                    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
                }
                Close::Error
            }
        },
        () = idle(&transfer, ctx.config.idle_timeout) => Close::IdleTimeout,
        () = ctx.force_close.cancelled() => Close::Shutdown,
    };
    drop((client, backend));
    let (up, down) = (transfer.to_backend(), transfer.from_backend());
    ctx.pool.add_bytes(guard.id(), up, down);
    ctx.stats.closed(how);
    let duration_ms = started.elapsed().as_millis() as u64;
    macro_rules! session_closed {
        ($level:expr) => {
            tracing::event!(
                $level,
                client = %peer,
                backend = %backend_addr,
                reason = how.as_str(),
                bytes_to_backend = up,
                bytes_from_backend = down,
                duration_ms,
                "session closed"
            )
        };
    }
    if how != Close::Done || ctx.config.log_sessions {
        session_closed!(tracing::Level::INFO);
    } else {
        session_closed!(tracing::Level::DEBUG);
    }
}

/// Returns once no byte has moved for `timeout`.
async fn idle(transfer: &Transfer, timeout: Duration) {
    loop {
        let deadline = transfer.last_activity() + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Connects to the least loaded usable backend, trying others (each once, at most
/// `connect_attempts`) when a connect fails or times out; failures feed passive health.
async fn connect_upstream(
    ctx: &SessionEnv,
    peer: SocketAddr,
) -> Result<(TcpStream, SessionGuard), Refusal> {
    let mut tried = Vec::new();
    while tried.len() < ctx.config.connect_attempts {
        let Some(guard) = ctx.pool.least_connections(&tried) else {
            break;
        };
        if !tried.is_empty() {
            ctx.stats.connect_retry();
        }
        let addr = guard.backend().addr;
        let (reason, local) =
            match tokio::time::timeout(ctx.config.connect_timeout, connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, guard)),
                Ok(Err(error)) => (
                    format!("connect failed: {error}"),
                    crate::health::is_local_error(&error),
                ),
                Err(_) => (
                    format!("connect timed out after {:?}", ctx.config.connect_timeout),
                    false,
                ),
            };
        let id = guard.id();
        drop(guard);
        tried.push(id);
        tracing::warn!(client = %peer, backend = %addr, %reason, "backend connect failed, trying another");
        // Out of descriptors and the like is this host's failure, not the backend's.
        if !local {
            if let Some(transition) = ctx.pool.record_connect_failure(id) {
                log_transition(addr, transition, &reason);
            }
        }
    }
    Err(if tried.is_empty() {
        Refusal::NoBackend
    } else {
        Refusal::ConnectFailed
    })
}

/// Connects to `addr` with TCP_NODELAY already set. Tokio's own connect reads SO_ERROR
/// after every connect; here the readiness tells a failed connect (error or hang-up) from
/// one that worked, and SO_ERROR is read only for the reason of a failure: one system call
/// less per session.
async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream.take_error()?.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the connection was closed")
        }));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_sets_nodelay_and_reaches_the_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, stream.local_addr().unwrap());
        assert!(stream.nodelay().unwrap());
        drop(accepted);
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_says_refused() {
        // A port that was just free: nothing listens there now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = connect(addr).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_fires_after_the_timeout_since_last_activity() {
        let transfer = Transfer::new();
        let start = Instant::now();
        idle(&transfer, Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
