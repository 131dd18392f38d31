//! The load generator: tokio tasks on a runtime built inside the client's namespace.
//!
//! Every workload is bounded in time ([`LoadSpec::duration`], plus [`LoadSpec::grace`]
//! for draining) and in count ([`LoadSpec::max_ops`]), and checks what it gets back:
//! the bulk sink's byte count against the bytes sent, every response's length and body.

use std::future::Future;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::proto;

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Workload {
    /// Bulk upload to the sink over `streams` parallel connections.
    Bulk {
        /// Parallel connections.
        streams: usize,
    },
    /// New connection per request: connect, one request, one response, client closes.
    Connect {
        /// Connections in flight at once.
        concurrency: usize,
    },
    /// Requests on kept connections.
    Keep {
        /// Kept connections.
        concurrency: usize,
    },
    /// One kept connection, one request at a time: latency.
    Latency,
    /// Small packets: `flows` kept connections, each with up to `window` 64-byte requests
    /// in flight, every request its own write (TCP_NODELAY), every response checked. Its
    /// figure is packets per second at the client's interface (see
    /// [`LoadOutcome::packets`]).
    Packets {
        /// Kept connections.
        flows: usize,
        /// Requests in flight per connection.
        window: usize,
    },
}

/// How long and how much.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Time during which new work starts.
    pub duration: Duration,
    /// Extra time allowed to finish (drain buffers, last responses) before work is cut.
    pub grace: Duration,
    /// Upper bound on operations (requests or connections) of the whole workload.
    pub max_ops: u64,
    /// Timeout of one connect and of one response.
    pub op_timeout: Duration,
    /// Number of servers behind the target (responses name one of them).
    pub servers: usize,
}

/// What one workload measured.
#[derive(Debug, Clone, Default)]
pub struct LoadOutcome {
    /// Wall time from the first connect to the last confirmation.
    pub elapsed: Duration,
    /// Bytes the client wrote (payload).
    pub bytes_sent: u64,
    /// Bytes the far end confirmed (sink count, or complete responses' requests).
    pub bytes_confirmed: u64,
    /// Bytes sent but never confirmed.
    pub lost_bytes: u64,
    /// Complete, well-formed responses.
    pub requests: u64,
    /// Connections established.
    pub connections: u64,
    /// Failed connects, resets, timeouts, short or malformed responses, wrong counts.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Responses per server index.
    pub per_server: Vec<u64>,
    /// Request latency in nanoseconds (latency workload only).
    pub latency_ns: Option<Histogram<u64>>,
    /// Packets the client's interfaces sent and received during the workload (data and
    /// ACKs alike; set by the caller, who can read the namespace's counters).
    pub packets: u64,
}

impl LoadOutcome {
    /// Throughput in Gbit/s of confirmed bytes.
    pub fn gbps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.bytes_confirmed as f64 * 8.0 / secs / 1e9
    }

    /// Thousands of packets per second (see [`LoadOutcome::packets`]).
    pub fn kpps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.packets as f64 / secs / 1e3
    }

    /// Complete requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.requests as f64 / secs
    }
}

/// Shared tallies of one workload's tasks.
#[derive(Debug)]
struct Tally {
    sent: AtomicU64,
    confirmed: AtomicU64,
    requests: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
    ops: AtomicU64,
    per_server: Vec<AtomicU64>,
    first_error: std::sync::Mutex<Option<String>>,
    last_done: std::sync::Mutex<Option<Instant>>,
    stop: AtomicBool,
}

impl Tally {
    fn new(servers: usize) -> Self {
        Tally {
            sent: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            per_server: (0..servers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            first_error: std::sync::Mutex::new(None),
            last_done: std::sync::Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    fn done_now(&self) {
        let now = Instant::now();
        let mut last = self.last_done.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| l < now) {
            *last = Some(now);
        }
    }

    /// Counts one complete response from `server` to a request of `bytes` bytes.
    fn answered(&self, bytes: usize, server: usize) {
        self.confirmed.fetch_add(bytes as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.per_server[server].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one operation from the count bound; false once it is used up.
    fn take_op(&self, max: u64) -> bool {
        self.ops.fetch_add(1, Ordering::Relaxed) < max
    }
}

/// Runs `workload` against `target` on the current tokio runtime.
/// `stop` cuts the workload short (Ctrl-C).
pub async fn run(
    target: SocketAddrV4,
    workload: Workload,
    spec: LoadSpec,
    stop: Arc<AtomicBool>,
) -> LoadOutcome {
    let tally = Arc::new(Tally::new(spec.servers));
    let start = Instant::now();
    let deadline = start + spec.duration;
    let hard_deadline = deadline + spec.grace;
    let mut tasks = JoinSet::new();
    let mut latency_task = None;
    match workload {
        Workload::Bulk { streams } => spawn_copies(&mut tasks, streams, || {
            bulk_stream(target, deadline, spec, tally.clone(), stop.clone())
        }),
        Workload::Connect { concurrency } => spawn_copies(&mut tasks, concurrency, || {
            connect_loop(target, deadline, spec, tally.clone(), stop.clone())
        }),
        Workload::Keep { concurrency } => spawn_copies(&mut tasks, concurrency, || {
            keep_loop(target, deadline, spec, tally.clone(), stop.clone(), None)
        }),
        Workload::Packets { flows, window } => spawn_copies(&mut tasks, flows, || {
            packets_flow(target, deadline, spec, tally.clone(), stop.clone(), window)
        }),
        Workload::Latency => {
            let hist = Arc::new(std::sync::Mutex::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            ));
            latency_task = Some(hist.clone());
            spawn_copies(&mut tasks, 1, || {
                let latency = Some(hist.clone());
                keep_loop(target, deadline, spec, tally.clone(), stop.clone(), latency)
            });
        }
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(hard_deadline.into(), all_done)
        .await
        .is_err()
    {
        tally.stop.store(true, Ordering::Relaxed);
        let cut = tasks.len() as u64;
        tasks.abort_all();
        tally.error(format!(
            "{cut} task(s) still running {:?} after the end: cut",
            spec.grace
        ));
        while tasks.join_next().await.is_some() {}
    }
    let end = tally
        .last_done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(Instant::now);
    let first_error = tally
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let latency_ns = latency_task.map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let sent = tally.sent.load(Ordering::Relaxed);
    let confirmed = tally.confirmed.load(Ordering::Relaxed);
    LoadOutcome {
        elapsed: end.saturating_duration_since(start),
        bytes_sent: sent,
        bytes_confirmed: confirmed,
        lost_bytes: sent.saturating_sub(confirmed),
        requests: tally.requests.load(Ordering::Relaxed),
        connections: tally.connections.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        first_error,
        per_server: tally
            .per_server
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect(),
        latency_ns,
        packets: 0,
    }
}

/// Spawns `copies` (at least one) of the task `task` makes.
fn spawn_copies<F>(tasks: &mut JoinSet<()>, copies: usize, task: impl Fn() -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    for _ in 0..copies.max(1) {
        tasks.spawn(task());
    }
}

async fn connect(target: SocketAddrV4, spec: LoadSpec, tally: &Tally) -> Option<TcpStream> {
    match tokio::time::timeout(spec.op_timeout, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            tally.connections.fetch_add(1, Ordering::Relaxed);
            Some(stream)
        }
        Ok(Err(e)) => {
            tally.error(format!("connect {target}: {e}"));
            None
        }
        Err(_) => {
            tally.error(format!(
                "connect {target}: timed out after {:?}",
                spec.op_timeout
            ));
            None
        }
    }
}

/// One bulk stream: write until the deadline, half-close, compare the sink's count.
async fn bulk_stream(
    target: SocketAddrV4,
    deadline: Instant,
    spec: LoadSpec,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    if !tally.take_op(spec.max_ops) {
        return;
    }
    let Some(mut stream) = connect(target, spec, &tally).await else {
        return;
    };
    let buf = vec![0x5au8; 128 * 1024];
    let mut sent: u64 = 0;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        match stream.write(&buf).await {
            Ok(n) => {
                sent += n as u64;
                tally.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tally.error(format!("bulk write: {e}"));
                return;
            }
        }
    }
    if let Err(e) = stream.shutdown().await {
        tally.error(format!("bulk half-close: {e}"));
        return;
    }
    let mut count = [0u8; 8];
    match stream.read_exact(&mut count).await {
        Ok(_) => {
            let count = u64::from_be_bytes(count);
            tally
                .confirmed
                .fetch_add(count.min(sent), Ordering::Relaxed);
            tally.done_now();
            if count != sent {
                tally.error(format!("bulk: sent {sent} bytes, the sink counted {count}"));
            }
        }
        Err(e) => tally.error(format!("bulk: no byte count from the sink: {e}")),
    }
}

/// One request and its response on `stream`; true when the response was complete and valid.
async fn exchange(stream: &mut TcpStream, spec: LoadSpec, tally: &Tally) -> bool {
    let req = proto::request();
    let mut resp = [0u8; proto::RESPONSE_LEN];
    let io = async {
        stream.write_all(&req).await?;
        tally.sent.fetch_add(req.len() as u64, Ordering::Relaxed);
        stream.read_exact(&mut resp).await?;
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(spec.op_timeout, io).await {
        Ok(Ok(())) => match proto::response_server(&resp, spec.servers) {
            Some(server) => {
                tally.answered(req.len(), server);
                tally.done_now();
                true
            }
            None => {
                tally.error("malformed response");
                false
            }
        },
        Ok(Err(e)) => {
            tally.error(format!("request: {e}"));
            false
        }
        Err(_) => {
            tally.error(format!("request: no response within {:?}", spec.op_timeout));
            false
        }
    }
}

/// New connection per request until the deadline.
async fn connect_loop(
    target: SocketAddrV4,
    deadline: Instant,
    spec: LoadSpec,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) && tally.take_op(spec.max_ops)
    {
        if let Some(mut stream) = connect(target, spec, &tally).await {
            exchange(&mut stream, spec, &tally).await;
        }
    }
}

/// Requests on one kept connection until the deadline (reconnects after an error).
async fn keep_loop(
    target: SocketAddrV4,
    deadline: Instant,
    spec: LoadSpec,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    latency: Option<Arc<std::sync::Mutex<Histogram<u64>>>>,
) {
    let mut stream = None;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) && tally.take_op(spec.max_ops)
    {
        if stream.is_none() {
            stream = connect(target, spec, &tally).await;
            if stream.is_none() {
                // Do not spin on a dead target.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let s = stream.as_mut().expect("connected above");
        let t0 = Instant::now();
        if exchange(s, spec, &tally).await {
            if let Some(h) = &latency {
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let _ = h
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(ns.max(1));
            }
        } else {
            stream = None;
        }
    }
}

/// One flow of the small-packets workload: `window` requests written one by one (one
/// segment each, TCP_NODELAY), then their `window` responses read and checked, until the
/// deadline. Every batch takes `window` operations from the count bound.
async fn packets_flow(
    target: SocketAddrV4,
    deadline: Instant,
    spec: LoadSpec,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    window: usize,
) {
    let window = window.max(1);
    let Some(mut stream) = connect(target, spec, &tally).await else {
        return;
    };
    let req = proto::request();
    let mut resp = [0u8; proto::RESPONSE_LEN];
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if (0..window).any(|_| !tally.take_op(spec.max_ops)) {
            return;
        }
        let batch = async {
            for _ in 0..window {
                stream.write_all(&req).await?;
                tally.sent.fetch_add(req.len() as u64, Ordering::Relaxed);
            }
            for _ in 0..window {
                stream.read_exact(&mut resp).await?;
                match proto::response_server(&resp, spec.servers) {
                    Some(server) => {
                        tally.answered(req.len(), server);
                    }
                    None => return Err(std::io::Error::other("malformed response")),
                }
            }
            tally.done_now();
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(spec.op_timeout, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return tally.error(format!("small packets: {e}")),
            Err(_) => {
                return tally.error(format!(
                    "small packets: no responses within {:?}",
                    spec.op_timeout
                ))
            }
        }
    }
}

/// Packets sent plus received by every interface but loopback, from a `/proc/net/dev`
/// text (the calling thread's namespace's, read as `/proc/thread-self/net/dev`).
pub fn interface_packets(net_dev: &str) -> u64 {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let c: Vec<u64> = counters
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
            Some(c.get(1).copied().unwrap_or(0) + c.get(9).copied().unwrap_or(0))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_packets_sum_both_directions_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000000    4000    0    0    0     0          0         0  3000000    2500    0    0    0     0       0          0
";
        assert_eq!(interface_packets(text), 6500);
        assert_eq!(interface_packets(""), 0);
    }
}
