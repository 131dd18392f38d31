//! `l4lb bench`: both balancers against direct, kernel NAT, HAProxy and nginx.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::bench::{self, cpu, paths, BenchConfig};

/// Arguments of `l4lb bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// About 30 seconds: 2 rounds of 0.4 s workloads (default: 3 rounds of 2 s, under 5 min).
    #[arg(long)]
    pub quick: bool,
    /// Paths to measure, comma separated: direct,nat,haproxy-rr,haproxy-lc,nginx,raw,proxy.
    #[arg(long, value_name = "LIST")]
    pub paths: Option<String>,
    /// Rounds (each path once per round, interleaved).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Length of each workload run, e.g. 2s or 500ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Connections of the request workloads.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Where bench.md, bench.json and bench.svg go.
    #[arg(long, default_value = "target/l4lb-bench")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// The l4lb binary whose `raw` and `proxy` are measured (default: this one).
    #[arg(long, value_name = "PATH")]
    pub l4lb: Option<PathBuf>,
    /// Workloads to run, comma separated (default: all). Unselected columns show `–`.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_enum)]
    pub workloads: Vec<bench::WorkloadKind>,
    /// Do not pin the balancer and the load to separate cores (let the scheduler place them).
    #[arg(long)]
    pub no_pin: bool,
    /// Offloads of every veth: `default` (GRO/GSO/TSO on, super-packets) or `off` (every
    /// segment crosses each hop on its own, as on a link without offloads).
    #[arg(long, value_enum, default_value_t = super::topo::OffloadsArg::Default)]
    pub offloads: super::topo::OffloadsArg,
}

/// An error with the exit code of the signal that caused it (0: no signal).
#[derive(Debug, thiserror::Error)]
#[error("{1:#}")]
struct Exit(i32, anyhow::Error);

fn usage(msg: String) -> anyhow::Error {
    anyhow::anyhow!("{msg} (see `l4lb bench --help`)")
}

/// Runs `l4lb bench`: exit 0 when every path of ours moved bytes without error or loss.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let exe = match &args.l4lb {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the l4lb binary")?,
    };
    let mut config = if args.quick {
        BenchConfig::quick(exe)
    } else {
        BenchConfig::standard(exe)
    };
    if let Some(list) = &args.paths {
        config.paths = paths::parse_paths(list).map_err(usage)?;
    }
    if let Some(r) = args.rounds {
        if r == 0 {
            return Err(usage("--rounds must be at least 1".into()));
        }
        config.rounds = r;
    }
    if let Some(d) = args.duration {
        if d < Duration::from_millis(50) || d > Duration::from_secs(60) {
            return Err(usage("--duration must be between 50ms and 60s".into()));
        }
        config.duration = d;
    }
    if let Some(c) = args.concurrency {
        if c == 0 || c > 10_000 {
            return Err(usage("--concurrency must be between 1 and 10000".into()));
        }
        config.concurrency = c;
    }
    if !args.workloads.is_empty() {
        config.workloads = args.workloads.clone();
    }
    config.progress = !args.no_progress;
    config.offloads = args.offloads.into();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("`l4lb bench` needs root (network namespaces, iptables): run it with sudo");
    }

    // Pin before the runtime exists, so every thread it starts inherits the load core.
    let placement = if args.no_pin {
        cpu::Placement::plan(&[])
    } else {
        cpu::Placement::plan(&cpu::allowed_cpus())
    };
    if let Some(load) = placement.load {
        cpu::pin_current_thread(load).context("pinning the load generator")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    let result = runtime.block_on(async {
        let first = crate::cleanup::shutdown_signal()?;
        let run = bench::run(&config, &placement, stop.clone());
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r.map_err(|e| (e, 0)),
            code = first => {
                eprintln!("l4lb bench: interrupted, cleaning up (again to abandon the clean-up)");
                stop.store(true, Ordering::Relaxed);
                let second = crate::cleanup::shutdown_signal()?;
                tokio::select! {
                    r = &mut run => r.map_err(|e| (e, code)),
                    _ = second => Err((anyhow::anyhow!(
                        "interrupted twice: `l4lb cleanup` removes anything left"
                    ), code)),
                }
            }
        }
        .map_err(|(e, code)| anyhow::Error::from(Exit(code, e)))
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => match e.downcast::<Exit>() {
            Ok(Exit(code, e)) if code != 0 => {
                eprintln!("l4lb: {e:#}");
                return Ok(ExitCode::from(code as u8));
            }
            Ok(Exit(_, e)) => return Err(e),
            Err(e) => return Err(e),
        },
    };
    let files = bench::write_report(&report, &args.out)?;
    println!("{}", report.markdown());
    for f in files {
        println!("wrote {}", f.display());
    }
    let dirty: Vec<_> = report
        .paths
        .iter()
        .filter(|p| p.path.is_ours() && !p.clean())
        .map(|p| p.path.name())
        .collect();
    if dirty.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "l4lb bench: {} had errors, lost bytes or did not run",
            dirty.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
