//! `l4lb bench`: both balancers against direct, kernel NAT, HAProxy and nginx, side by
//! side in one run, in a topology of its own.
//!
//! Layout:
//! - [`proto`]: the wire protocol of the backends (bulk sink, request/response).
//! - [`servers`]: the backends, served by tokio tasks on sockets made in server namespaces.
//! - [`load`]: the load generator (tokio, in the client's namespace), bounded in time and count.
//! - [`paths`]: the paths (direct, nat, haproxy-rr, haproxy-lc, nginx, raw, proxy), tools.
//! - [`configs`]: kernel NAT rules, HAProxy and nginx configurations (pure, shared with
//!   the scenarios' peers: [`crate::peers::config`]).
//! - [`launch`]: starting, probing and stopping one path in the balancer's namespace.
//! - [`cpu`]: CPU placement (balancer on one core, load and backends on the other).
//! - [`mod@run`]: the run itself: topology, tuning, interleaved rounds, teardown.
//! - [`goals`]: ours against the strongest peer of each kind, round by round (pure).
//! - [`stats`], [`results`], [`report`], [`svg`]: medians and spreads, samples, the
//!   Markdown/JSON report with ratios and goals, the bar chart.

pub use crate::peers::config as configs;
pub mod cpu;
pub mod goals;
pub mod launch;
pub mod load;
pub mod paths;
pub mod proto;
pub mod report;
pub mod results;
pub mod run;
pub mod servers;
pub mod stats;
pub mod svg;

use std::path::PathBuf;
use std::time::Duration;

pub use paths::PathKind;
pub use report::BenchReport;
pub use run::run;

/// What to measure, and how long.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Paths, in the order they run within a round.
    pub paths: Vec<PathKind>,
    /// Rounds (each path once per round, interleaved).
    pub rounds: usize,
    /// Length of each workload run.
    pub duration: Duration,
    /// Connections of the request workloads (new-connection and kept).
    pub concurrency: usize,
    /// Parallel streams of the multi-stream bulk workload.
    pub streams: usize,
    /// The `l4lb` binary (for `l4lb raw` and `l4lb proxy`).
    pub l4lb: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Workloads to run (all by default), in the fixed order of [`run::phases`].
    pub workloads: Vec<WorkloadKind>,
    /// Offloads of every veth of the bench topology (kernel defaults unless `--offloads off`).
    pub offloads: crate::topology::Offloads,
}

/// The workloads `--workloads` can pick, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Bulk upload over one stream.
    Bulk,
    /// Bulk upload over several streams at once.
    BulkStreams,
    /// A new connection per request (new connections/s).
    Connect,
    /// Requests on kept connections (requests/s).
    Keep,
    /// One kept connection, one request at a time (latency percentiles).
    Latency,
    /// Many kept connections writing 64-byte requests (packets per second).
    Packets,
}

impl WorkloadKind {
    /// Every workload, in the order a round runs them.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Bulk,
        WorkloadKind::BulkStreams,
        WorkloadKind::Connect,
        WorkloadKind::Keep,
        WorkloadKind::Latency,
        WorkloadKind::Packets,
    ];
}

impl BenchConfig {
    /// The default run: every path, 3 rounds of 2 s workloads (under 5 minutes).
    pub fn standard(l4lb: PathBuf) -> BenchConfig {
        BenchConfig {
            paths: PathKind::ALL.to_vec(),
            rounds: 3,
            duration: Duration::from_secs(2),
            concurrency: 50,
            streams: 8,
            l4lb,
            progress: true,
            workloads: WorkloadKind::ALL.to_vec(),
            offloads: crate::topology::Offloads::Default,
        }
    }

    /// `--quick`: 2 rounds of 0.4 s workloads (about 30 s).
    pub fn quick(l4lb: PathBuf) -> BenchConfig {
        BenchConfig {
            rounds: 2,
            duration: Duration::from_millis(400),
            ..BenchConfig::standard(l4lb)
        }
    }
}

/// Writes `bench.md`, `bench.json` and `bench.svg` into `dir`; returns their paths.
pub fn write_report(report: &BenchReport, dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("bench.md", report.markdown()),
        ("bench.json", serde_json::to_string_pretty(&report.json())?),
        ("bench.svg", svg::chart(report)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}
