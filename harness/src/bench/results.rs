//! What a bench run measured: samples per path and metric, errors, lost bytes.

use std::collections::BTreeMap;

use super::load::{LoadOutcome, Workload};
use super::paths::PathKind;
use super::stats::Summary;

/// One figure of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Bulk throughput, one stream (Gbit/s).
    Bulk1Gbps,
    /// Bulk throughput, parallel streams (Gbit/s).
    BulkNGbps,
    /// New connections per second (one request each).
    ConnPerSec,
    /// Requests per second on kept connections.
    KeepReqPerSec,
    /// Latency of one request, one kept connection: median (µs).
    LatP50Us,
    /// 99th percentile (µs).
    LatP99Us,
    /// 99.9th percentile (µs).
    LatP999Us,
    /// CPU time the balancer process spent per new connection (µs); user-space
    /// balancers only.
    CpuUsPerConn,
    /// CPU time the balancer process spent per request on kept connections (µs).
    CpuUsPerReq,
    /// Small packets per second, thousands: every packet the client's interface sent and
    /// received (data and ACKs) while many flows wrote 64-byte messages.
    SmallKpps,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 10] = [
        Metric::Bulk1Gbps,
        Metric::BulkNGbps,
        Metric::ConnPerSec,
        Metric::KeepReqPerSec,
        Metric::LatP50Us,
        Metric::LatP99Us,
        Metric::LatP999Us,
        Metric::CpuUsPerConn,
        Metric::CpuUsPerReq,
        Metric::SmallKpps,
    ];

    /// Column header.
    pub fn header(self) -> &'static str {
        match self {
            Metric::Bulk1Gbps => "bulk 1 stream Gbit/s",
            Metric::BulkNGbps => "bulk 8 streams Gbit/s",
            Metric::ConnPerSec => "new conn/s",
            Metric::KeepReqPerSec => "kept req/s",
            Metric::LatP50Us => "p50 µs",
            Metric::LatP99Us => "p99 µs",
            Metric::LatP999Us => "p99.9 µs",
            Metric::CpuUsPerConn => "CPU µs/conn",
            Metric::CpuUsPerReq => "CPU µs/kept req",
            Metric::SmallKpps => "small packets kpps",
        }
    }

    /// Key in the JSON output.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Bulk1Gbps => "bulk1_gbps",
            Metric::BulkNGbps => "bulk8_gbps",
            Metric::ConnPerSec => "conn_per_s",
            Metric::KeepReqPerSec => "keep_req_per_s",
            Metric::LatP50Us => "lat_p50_us",
            Metric::LatP99Us => "lat_p99_us",
            Metric::LatP999Us => "lat_p999_us",
            Metric::CpuUsPerConn => "cpu_us_per_conn",
            Metric::CpuUsPerReq => "cpu_us_per_kept_req",
            Metric::SmallKpps => "small_kpps",
        }
    }

    /// Larger is better (throughput, rates), or smaller (latency).
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Metric::LatP50Us
                | Metric::LatP99Us
                | Metric::LatP999Us
                | Metric::CpuUsPerConn
                | Metric::CpuUsPerReq
        )
    }

    /// Digits after the decimal point in tables.
    pub fn decimals(self) -> usize {
        match self {
            Metric::Bulk1Gbps | Metric::BulkNGbps => 2,
            Metric::CpuUsPerConn | Metric::CpuUsPerReq => 1,
            _ => 0,
        }
    }
}

/// The figures one workload outcome contributes.
pub fn figures(workload: Workload, outcome: &LoadOutcome) -> Vec<(Metric, f64)> {
    match workload {
        Workload::Bulk { streams: 1 } => vec![(Metric::Bulk1Gbps, outcome.gbps())],
        Workload::Bulk { .. } => vec![(Metric::BulkNGbps, outcome.gbps())],
        Workload::Connect { .. } => vec![(Metric::ConnPerSec, outcome.requests_per_sec())],
        Workload::Keep { .. } => vec![(Metric::KeepReqPerSec, outcome.requests_per_sec())],
        Workload::Packets { .. } => vec![(Metric::SmallKpps, outcome.kpps())],
        Workload::Latency => match &outcome.latency_ns {
            Some(h) if !h.is_empty() => vec![
                (Metric::LatP50Us, h.value_at_quantile(0.50) as f64 / 1e3),
                (Metric::LatP99Us, h.value_at_quantile(0.99) as f64 / 1e3),
                (Metric::LatP999Us, h.value_at_quantile(0.999) as f64 / 1e3),
            ],
            _ => Vec::new(),
        },
    }
}

/// The balancer's CPU cost per operation of one workload run: `cpu` is the CPU time its
/// process spent during the run. None for workloads without a per-operation cost (bulk,
/// latency) and for runs that completed nothing.
pub fn cpu_figure(
    workload: Workload,
    outcome: &LoadOutcome,
    cpu: std::time::Duration,
) -> Option<(Metric, f64)> {
    let metric = match workload {
        Workload::Connect { .. } => Metric::CpuUsPerConn,
        Workload::Keep { .. } => Metric::CpuUsPerReq,
        Workload::Bulk { .. } | Workload::Latency | Workload::Packets { .. } => return None,
    };
    (outcome.requests > 0).then(|| (metric, cpu.as_secs_f64() * 1e6 / outcome.requests as f64))
}

/// Whether a path ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum PathStatus {
    /// Measured (possibly with errors, see the counts).
    Measured,
    /// A tool it needs is missing.
    NotInstalled(String),
    /// It never carried traffic (every start failed).
    Failed(String),
}

/// Everything measured on one path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathResult {
    /// Which path.
    pub path: PathKind,
    /// Description.
    pub label: &'static str,
    /// Whether it ran.
    pub status: PathStatus,
    /// Samples (one per round) per metric.
    pub samples: BTreeMap<Metric, Vec<f64>>,
    /// Client-side errors over every workload and round.
    pub errors: u64,
    /// Bytes sent but never confirmed by the far end.
    pub lost_bytes: u64,
    /// Errors the backends saw while this path ran.
    pub server_errors: u64,
    /// Payload bytes confirmed.
    pub bytes_moved: u64,
    /// Complete responses.
    pub requests: u64,
    /// Connections established.
    pub connections: u64,
    /// New connections per server, from the new-connection workload alone: one request
    /// each, so each is one balancing decision (kept connections and the latency workload's
    /// single connection would weigh a few choices by how fast their server answered).
    pub per_server: Vec<u64>,
    /// The first few problems, for a person to read.
    pub problems: Vec<String>,
    /// Workload runs that were attempted.
    pub runs: u64,
}

impl PathResult {
    /// An empty result.
    pub fn new(path: PathKind, status: PathStatus) -> PathResult {
        PathResult {
            path,
            label: path.label(),
            status,
            samples: BTreeMap::new(),
            errors: 0,
            lost_bytes: 0,
            server_errors: 0,
            bytes_moved: 0,
            requests: 0,
            connections: 0,
            per_server: Vec::new(),
            problems: Vec::new(),
            runs: 0,
        }
    }

    /// Adds one workload's outcome.
    pub fn add(&mut self, workload: Workload, outcome: &LoadOutcome, server_errors: u64) {
        self.runs += 1;
        for (m, v) in figures(workload, outcome) {
            self.samples.entry(m).or_default().push(v);
        }
        self.errors += outcome.errors;
        self.lost_bytes += outcome.lost_bytes;
        self.server_errors += server_errors;
        self.bytes_moved += outcome.bytes_confirmed;
        self.requests += outcome.requests;
        self.connections += outcome.connections;
        if self.per_server.len() < outcome.per_server.len() {
            self.per_server.resize(outcome.per_server.len(), 0);
        }
        if matches!(workload, Workload::Connect { .. }) {
            for (t, n) in self.per_server.iter_mut().zip(&outcome.per_server) {
                *t += n;
            }
        }
        if let Some(e) = &outcome.first_error {
            self.problem(format!("{workload:?}: {e} ({} errors)", outcome.errors));
        }
        if server_errors > 0 {
            self.problem(format!(
                "{workload:?}: {server_errors} errors on the servers"
            ));
        }
    }

    /// Adds the balancer's CPU time over one workload run (see [`cpu_figure`]).
    pub fn add_cpu(&mut self, workload: Workload, outcome: &LoadOutcome, cpu: std::time::Duration) {
        if let Some((m, v)) = cpu_figure(workload, outcome, cpu) {
            self.samples.entry(m).or_default().push(v);
        }
    }

    /// Records a problem (the first 10 are kept).
    pub fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }

    /// Median and spread of one metric.
    pub fn summary(&self, m: Metric) -> Option<Summary> {
        self.samples.get(&m).and_then(|s| Summary::of(s))
    }

    /// Whether the path moved bytes without any error or loss.
    pub fn clean(&self) -> bool {
        self.status == PathStatus::Measured
            && self.bytes_moved > 0
            && self.errors == 0
            && self.lost_bytes == 0
            && self.server_errors == 0
    }
}
