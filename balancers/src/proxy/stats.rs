//! Proxy-wide counters (the pool keeps the per-backend ones), exported on `--admin`.

use l4lb_contract::metrics;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::admin::{MetricKind, MetricsSource, MetricsWriter};

/// Why a client was accepted and closed at once, without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-sessions` sessions were open.
    MaxSessions,
    /// No backend was usable.
    NoBackend,
    /// Every backend tried failed to accept the upstream connection.
    ConnectFailed,
}

impl Refusal {
    const ALL: [Refusal; 3] = [
        Refusal::MaxSessions,
        Refusal::NoBackend,
        Refusal::ConnectFailed,
    ];

    /// Label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxSessions => "max_sessions",
            Refusal::NoBackend => "no_backend",
            Refusal::ConnectFailed => "connect_failed",
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Both sides finished (FIN both ways).
    Done,
    /// No byte either way for the idle timeout.
    IdleTimeout,
    /// A reset or another socket error on either side.
    Error,
    /// The grace period after SIGTERM/SIGINT ran out.
    Shutdown,
}

impl Close {
    const ALL: [Close; 4] = [
        Close::Done,
        Close::IdleTimeout,
        Close::Error,
        Close::Shutdown,
    ];

    /// Label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Close::Done => "done",
            Close::IdleTimeout => "idle_timeout",
            Close::Error => "error",
            Close::Shutdown => "shutdown",
        }
    }
}

/// Counters of the whole proxy, updated without locks.
#[derive(Debug, Default)]
pub struct ProxyStats {
    accepted: AtomicU64,
    live: AtomicU64,
    refused: [AtomicU64; 3],
    closed: [AtomicU64; 4],
    connect_retries: AtomicU64,
}

impl ProxyStats {
    /// Counts an accepted client connection.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused client.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client moved to another backend after a failed connect.
    pub fn connect_retry(&self) {
        self.connect_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session as open.
    pub fn opened(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session as closed.
    pub fn closed(&self, how: Close) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.closed[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refused clients so far, for one reason.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Sessions open now.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
}

impl MetricsSource for ProxyStats {
    fn write_metrics(&self, w: &mut MetricsWriter) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        w.family(
            metrics::PROXY_ACCEPTED_TOTAL,
            MetricKind::Counter,
            "Client connections accepted.",
        );
        w.sample(metrics::PROXY_ACCEPTED_TOTAL, &[], load(&self.accepted));
        w.family(
            metrics::PROXY_SESSIONS_LIVE,
            MetricKind::Gauge,
            "Sessions open now.",
        );
        w.sample(metrics::PROXY_SESSIONS_LIVE, &[], load(&self.live));
        w.family(
            metrics::PROXY_REFUSED_TOTAL,
            MetricKind::Counter,
            "Clients accepted and closed at once, by reason.",
        );
        for why in Refusal::ALL {
            let n = load(&self.refused[why as usize]);
            w.sample(metrics::PROXY_REFUSED_TOTAL, &[("reason", why.as_str())], n);
        }
        w.family(
            metrics::PROXY_SESSIONS_CLOSED_TOTAL,
            MetricKind::Counter,
            "Sessions ended, by how.",
        );
        for how in Close::ALL {
            let n = load(&self.closed[how as usize]);
            w.sample(
                metrics::PROXY_SESSIONS_CLOSED_TOTAL,
                &[("reason", how.as_str())],
                n,
            );
        }
        w.family(
            metrics::PROXY_CONNECT_RETRIES_TOTAL,
            MetricKind::Counter,
            "Clients retried on another backend after a failed connect.",
        );
        w.sample(
            metrics::PROXY_CONNECT_RETRIES_TOTAL,
            &[],
            load(&self.connect_retries),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_metrics() {
        let s = ProxyStats::default();
        s.accepted();
        s.refused(Refusal::MaxSessions);
        s.opened();
        s.opened();
        s.closed(Close::IdleTimeout);
        let mut w = MetricsWriter::new();
        s.write_metrics(&mut w);
        let text = w.finish();
        for line in [
            "l4lb_proxy_accepted_total 1",
            "l4lb_proxy_sessions_live 1",
            "l4lb_proxy_refused_total{reason=\"max_sessions\"} 1",
            "l4lb_proxy_refused_total{reason=\"no_backend\"} 0",
            "l4lb_proxy_sessions_closed_total{reason=\"idle_timeout\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(s.refused_count(Refusal::MaxSessions), 1);
    }
}
