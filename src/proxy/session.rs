//! One client session: pick a backend (least connections), connect with a timeout and
//! retry on another backend if that fails (passive health), then forward both directions
//! until both finish, an error (reset) ends them, the idle timeout fires, or the grace
//! period after a shutdown signal runs out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
pub struct Context {
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
    ctx: Arc<Context>,
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
    // Debug: the close event (info) carries client, backend, bytes and duration.
    tracing::debug!(client = %peer, backend = %backend_addr, "session opened");
    ctx.stats.opened();

    let transfer = Transfer::new();
    let started = Instant::now();
    let how = tokio::select! {
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
    tracing::info!(
        client = %peer,
        backend = %backend_addr,
        reason = how.as_str(),
        bytes_to_backend = up,
        bytes_from_backend = down,
        duration_ms,
        "session closed"
    );
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
    ctx: &Context,
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
        let reason = match tokio::time::timeout(
            ctx.config.connect_timeout,
            TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, guard));
            }
            Ok(Err(error)) => format!("connect failed: {error}"),
            Err(_) => format!("connect timed out after {:?}", ctx.config.connect_timeout),
        };
        let id = guard.id();
        drop(guard);
        tried.push(id);
        tracing::warn!(client = %peer, backend = %addr, %reason, "backend connect failed, trying another");
        if let Some(transition) = ctx.pool.record_connect_failure(id) {
            log_transition(addr, transition, &reason);
        }
    }
    Err(if tried.is_empty() {
        Refusal::NoBackend
    } else {
        Refusal::ConnectFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_after_the_timeout_since_last_activity() {
        let transfer = Transfer::new();
        let start = Instant::now();
        idle(&transfer, Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
