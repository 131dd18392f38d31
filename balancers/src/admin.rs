//! The optional stats endpoint: Prometheus text format over plain HTTP (`GET /metrics`).
//!
//! [`render`] writes the pool's per-backend state and counters plus whatever each
//! registered [`MetricsSource`] appends (the raw balancer adds its table size and drops by
//! reason; a closure `Fn(&mut MetricsWriter)` is a source). [`serve`] is a tiny HTTP/1.0
//! responder on tokio: one request per connection, bounded head size and read time.

use l4lb_contract::metrics;
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pool::{BackendStats, Health, Pool};

/// Kind of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Builds Prometheus text exposition format.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    out: String,
}

impl MetricsWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines. Call once per name,
    /// before its samples.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Writes one sample `name{labels} value`; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let val = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{val}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Extra metrics a balancer registers next to the pool's.
pub trait MetricsSource: Send + Sync + 'static {
    /// Appends families and samples (use names prefixed `l4lb_`).
    fn write_metrics(&self, out: &mut MetricsWriter);
}

impl<F: Fn(&mut MetricsWriter) + Send + Sync + 'static> MetricsSource for F {
    fn write_metrics(&self, out: &mut MetricsWriter) {
        self(out)
    }
}

/// A per-backend family: name, kind, help and how to read the value.
type CounterFamily = (
    &'static str,
    MetricKind,
    &'static str,
    fn(&BackendStats) -> u64,
);

/// The full exposition: pool metrics, then each source's.
pub fn render(pool: &Pool, sources: &[Arc<dyn MetricsSource>]) -> String {
    let mut w = MetricsWriter::new();
    let stats = pool.stats();
    let addrs: Vec<String> = stats.iter().map(|s| s.addr.to_string()).collect();

    w.family(
        metrics::BACKEND_UP,
        MetricKind::Gauge,
        "1 if the backend may take new sessions (up, suspect or unknown), 0 if down.",
    );
    for (s, addr) in stats.iter().zip(&addrs) {
        w.sample(
            metrics::BACKEND_UP,
            &[("backend", addr)],
            u8::from(s.health.is_usable()),
        );
    }
    w.family(
        metrics::BACKEND_STATE,
        MetricKind::Gauge,
        "Health state of the backend: 1 on the current state's line.",
    );
    for (s, addr) in stats.iter().zip(&addrs) {
        for state in [Health::Unknown, Health::Up, Health::Suspect, Health::Down] {
            let labels = [("backend", addr.as_str()), ("state", state.as_str())];
            w.sample(metrics::BACKEND_STATE, &labels, u8::from(s.health == state));
        }
    }
    let families: [CounterFamily; 7] = [
        (
            metrics::BACKEND_SESSIONS_LIVE,
            MetricKind::Gauge,
            "Sessions open on the backend now.",
            |s| s.live,
        ),
        (
            metrics::BACKEND_SESSIONS_TOTAL,
            MetricKind::Counter,
            "Sessions ever opened on the backend.",
            |s| s.total,
        ),
        (
            metrics::BACKEND_CHECK_FAILURES_TOTAL,
            MetricKind::Counter,
            "Active health checks that failed.",
            |s| s.check_failures,
        ),
        (
            metrics::BACKEND_CONNECT_FAILURES_TOTAL,
            MetricKind::Counter,
            "Connects to the backend that failed (passive health).",
            |s| s.connect_failures,
        ),
        (
            metrics::HEALTH_LOCAL_ERRORS_TOTAL,
            MetricKind::Counter,
            "Health checks that failed on this host (out of descriptors...); health unchanged.",
            |s| s.local_check_errors,
        ),
        (
            metrics::BACKEND_SENT_BYTES_TOTAL,
            MetricKind::Counter,
            "Bytes forwarded from clients to the backend.",
            |s| s.bytes_to_backend,
        ),
        (
            metrics::BACKEND_RECEIVED_BYTES_TOTAL,
            MetricKind::Counter,
            "Bytes forwarded from the backend to clients.",
            |s| s.bytes_from_backend,
        ),
    ];
    for (name, kind, help, value) in families {
        w.family(name, kind, help);
        for (s, addr) in stats.iter().zip(&addrs) {
            w.sample(name, &[("backend", addr)], value(s));
        }
    }
    for source in sources {
        source.write_metrics(&mut w);
    }
    w.finish()
}

/// Binds the stats endpoint's listener (say so clearly if the address is taken).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on --admin {addr}: pick a free port or drop --admin")
    })
}

/// Connections the stats endpoint serves at once; more are closed as soon as accepted,
/// so idle scrapers cannot take the descriptors sessions and health checks need (the
/// proxy's descriptor budget counts these).
pub const MAX_CONNECTIONS: usize = 16;

/// Serves `GET /metrics` forever (until the task is dropped or aborted), at most
/// [`MAX_CONNECTIONS`] connections at once.
pub async fn serve(listener: TcpListener, pool: Arc<Pool>, sources: Vec<Arc<dyn MetricsSource>>) {
    let sources: Arc<[Arc<dyn MetricsSource>]> = sources.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, limit = MAX_CONNECTIONS, "admin connection closed: too many open");
            drop(stream);
            continue;
        };
        let pool = Arc::clone(&pool);
        let sources = Arc::clone(&sources);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = respond(stream, &pool, &sources).await {
                tracing::debug!(%peer, %error, "admin request failed");
            }
        });
    }
}

const MAX_HEAD: usize = 8192;
const READ_TIME: Duration = Duration::from_secs(5);

async fn respond(
    mut stream: TcpStream,
    pool: &Pool,
    sources: &[Arc<dyn MetricsSource>],
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(READ_TIME, read).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "request head too slow")
    })??;
    let (status, content_type, body) = route(&head, || render(pool, sources));
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Status line, content type and body for a request head.
fn route(head: &[u8], metrics: impl FnOnce() -> String) -> (&'static str, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(),
        ),
        ("GET", _) => (
            "404 Not Found",
            TEXT,
            "not found: try GET /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "only GET /metrics is served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Backend, Thresholds};

    fn pool() -> Arc<Pool> {
        let backends = vec![
            Backend::new("127.0.0.1:8090".parse().unwrap()),
            Backend::new("127.0.0.1:8091".parse().unwrap()),
        ];
        Arc::new(Pool::new(backends, Thresholds::default()))
    }

    #[test]
    fn renders_backend_state_and_counters() {
        let p = pool();
        p.record_success(0);
        p.record_failure(1);
        let _g = p.least_connections(&[]).unwrap();
        p.add_bytes(0, 5, 7);
        let text = render(&p, &[]);
        for line in [
            "l4lb_backend_up{backend=\"127.0.0.1:8090\"} 1",
            "l4lb_backend_up{backend=\"127.0.0.1:8091\"} 0",
            "l4lb_backend_state{backend=\"127.0.0.1:8091\",state=\"down\"} 1",
            "l4lb_backend_state{backend=\"127.0.0.1:8091\",state=\"up\"} 0",
            "l4lb_backend_sessions_live{backend=\"127.0.0.1:8090\"} 1",
            "l4lb_backend_sessions_total{backend=\"127.0.0.1:8090\"} 1",
            "l4lb_backend_check_failures_total{backend=\"127.0.0.1:8091\"} 1",
            "l4lb_backend_sent_bytes_total{backend=\"127.0.0.1:8090\"} 5",
            "l4lb_backend_received_bytes_total{backend=\"127.0.0.1:8090\"} 7",
            "# TYPE l4lb_backend_sessions_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn sources_append_and_labels_are_escaped() {
        let source: Arc<dyn MetricsSource> = Arc::new(|w: &mut MetricsWriter| {
            w.family(
                "l4lb_raw_drops_total",
                MetricKind::Counter,
                "Dropped packets.",
            );
            w.sample("l4lb_raw_drops_total", &[("reason", "bad \"csum\"\\")], 3);
        });
        let text = render(&pool(), &[source]);
        assert!(
            text.contains("# TYPE l4lb_raw_drops_total counter\n"),
            "{text}"
        );
        assert!(
            text.ends_with("l4lb_raw_drops_total{reason=\"bad \\\"csum\\\"\\\\\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn routes() {
        let metrics = || "m".to_string();
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n", metrics).0, "200 OK");
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", metrics).2, "m");
        assert_eq!(route(b"GET / HTTP/1.0\r\n\r\n", metrics).0, "404 Not Found");
        assert_eq!(
            route(b"POST /metrics HTTP/1.0\r\n\r\n", metrics).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"", metrics).0, "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, pool(), Vec::new()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("l4lb_backend_up{backend=\"127.0.0.1:8091\"} 1"),
            "{reply}"
        );
        server.abort();
    }
}
