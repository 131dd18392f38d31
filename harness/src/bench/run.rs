//! One bench run: build the topology, tune it, start the backends, measure every path in
//! interleaved rounds, tear everything down (also when interrupted or failing).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::cpu::Placement;
use super::launch::{ActivePath, Mode, PathEnv};
use super::load::{self, LoadOutcome, LoadSpec, Workload};
use super::paths::Tools;
use super::report::BenchReport;
use super::results::{PathResult, PathStatus};
use super::servers::Backends;
use super::{BenchConfig, WorkloadKind};
use crate::netns::Namespace;
use crate::topology::{Host, Layout, Offloads, Topology, TopologySpec};

/// Bound on operations (connections or requests) of one workload run.
pub const MAX_OPS: u64 = 5_000_000;
/// Ephemeral ports of the client namespace.
pub const CLIENT_PORTS: &str = "1024 65000";
/// Ephemeral ports of the balancer namespace (above the balancers' port 20000).
pub const LB_PORTS: &str = "21000 65000";
/// Number of servers.
pub const SERVERS: usize = 3;
/// How long a path's server sessions may take to close after its last workload, before
/// the path is stopped (they close in milliseconds through a working balancer).
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// Connections of the small-packets workload.
pub const PACKET_FLOWS: usize = 200;
/// 64-byte requests in flight per connection in the small-packets workload.
pub const PACKET_WINDOW: usize = 4;

/// The error a run returns when it was interrupted (after cleaning up).
#[derive(Debug, thiserror::Error)]
#[error("interrupted: everything the bench created was removed")]
pub struct Interrupted;

/// Runs the bench. The caller has pinned the calling thread to `placement.load` before
/// building the runtime (see `cpu::pin_current_thread`). Setting `stop` ends the run
/// early; it still tears everything down and then returns [`Interrupted`].
pub async fn run(
    config: &BenchConfig,
    placement: &Placement,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<BenchReport> {
    let started = Instant::now();
    let ticks_before = super::cpu::read_cpu_ticks();
    raise_fd_limit();
    let spec = TopologySpec {
        clients: 1,
        servers: SERVERS,
        layout: Layout::Routed,
        rst_drop: false,
        offloads: config.offloads,
        ..TopologySpec::default()
    };
    let topology = Topology::build(&spec)
        .await
        .context("building the bench topology")?;
    let work_dir = std::env::temp_dir().join(format!("{}bench", topology.prefix()));
    let outcome = measure(config, placement, &topology, &work_dir, stop.clone()).await;
    let mut cleanup_errors = Vec::new();
    if let Err(e) = topology.teardown().await {
        cleanup_errors.push(format!("topology teardown: {e:#}"));
    }
    if work_dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&work_dir) {
            cleanup_errors.push(format!("removing {}: {e}", work_dir.display()));
        }
    }
    let mut report = outcome?;
    if stop.load(Ordering::Relaxed) {
        return Err(Interrupted.into());
    }
    if !cleanup_errors.is_empty() {
        anyhow::bail!(
            "the bench ran, but cleaning up failed: {}",
            cleanup_errors.join("; ")
        );
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.steal = super::cpu::steal_percent(&ticks_before, &super::cpu::read_cpu_ticks());
    Ok(report)
}

/// Open-file limit the balancers inherit (HAProxy wants 2 × maxconn + a few; the peer
/// configurations stay well under 16,384).
pub const NOFILE: u64 = 65536;

/// Raises this process's open-file limit to [`NOFILE`] (children inherit it); keeps the
/// old limit when that is not allowed, and the balancer that needs more says so.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < NOFILE && setrlimit(Resource::RLIMIT_NOFILE, NOFILE, hard.max(NOFILE)).is_err() {
            // Without CAP_SYS_RESOURCE the hard limit is the ceiling.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Writes a sysctl in the namespace (per-netns values under /proc/sys/net).
fn sysctl(ns: &Namespace, key: &'static str, value: &'static str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    ns.run(move || std::fs::write(&path, value))?
        .with_context(|| format!("setting {key}={value} in {}", ns.name))
}

async fn measure(
    config: &BenchConfig,
    placement: &Placement,
    topology: &Topology,
    work_dir: &std::path::Path,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<BenchReport> {
    let client = topology.namespace(Host::Client(0)).clone();
    let lb = topology.namespace(Host::Lb).clone();
    for (ns, ports) in [(&client, CLIENT_PORTS), (&lb, LB_PORTS)] {
        sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
        sysctl(ns, "net.ipv4.ip_local_port_range", ports)?;
    }
    let servers: Vec<Ipv4Addr> = (0..SERVERS)
        .map(|i| topology.addr(Host::Server(i)))
        .collect();
    let tools = Tools::discover(&config.l4lb);
    let mut setup = vec![
        format!(
            "{} rounds, paths interleaved in this order each round: {}",
            config.rounds,
            config
                .paths
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "each workload runs {:?}: bulk upload over 1 and {} streams to one backend (server 1's \
             sink, which confirms the byte count); new connections/s (one 64-byte request, \
             128-byte response, the client closes) and requests/s on kept connections, {} \
             connections over 3 backends; latency on one kept connection; small packets: \
             {PACKET_FLOWS} kept connections with {PACKET_WINDOW} 64-byte requests in flight \
             each, every request its own write (TCP_NODELAY), counted as packets per second \
             at the client's interface (data and ACKs, both ways)",
            config.duration, config.streams, config.concurrency
        ),
        format!(
            "topology: routed, client — lb — 3 servers, one veth per link, {}, namespaces {}* \
             (removed at the end); load generator: ours (tokio, in the client namespace)",
            match config.offloads {
                Offloads::Default => "offloads at kernel defaults (GRO/GSO/TSO on)",
                Offloads::Off =>
                    "offloads off on every veth (GRO, GSO, TSO, checksums: \
                                  every segment on its own)",
            },
            topology.prefix()
        ),
        "CPU µs/conn and CPU µs/kept req: CPU time of the balancer process (all its threads, \
         /proc/PID/task/*/schedstat) over the workload, per completed request; with the \
         balancer pinned, this is its cost whatever core limits the rate"
            .to_string(),
        "every balancer runs with its own defaults: l4lb raw and l4lb proxy poll for 20 µs \
         after their last packet before they sleep (--busy-poll), HAProxy's busy-polling is \
         off (its default), nginx has no such setting"
            .to_string(),
        format!(
            "client and lb namespaces: net.ipv4.tcp_tw_reuse=1, ip_local_port_range {CLIENT_PORTS} \
             (client) / {LB_PORTS} (lb), for every path alike; when a path stops, the \
             TIME_WAIT sockets it left there are ended (ss -K), so no path inherits another's"
        ),
    ];
    if let Some(iptables) = &tools.iptables {
        // Load the nat table (and so conntrack) in lb once, for every path alike, so the
        // kernel NAT path does not make the paths after it pay for conntrack alone.
        let st = lb
            .command(iptables)
            .args(["-t", "nat", "-N", "L4LB-BENCH"])
            .status()
            .await;
        if st.is_ok_and(|s| s.success()) {
            setup.push("lb namespace: nat table (conntrack) loaded for every path alike".into());
        }
    }
    let lb_server_side = topology.lb_backend_addr();
    let env = PathEnv {
        client: client.clone(),
        lb,
        lb_addr: topology.addr(Host::Lb),
        lb_server_side,
        servers: servers.clone(),
        tools: tools.clone(),
        work_dir: work_dir.to_path_buf(),
        balancer_cpu: placement.balancer,
    };
    let server_ns: Vec<(Namespace, Ipv4Addr)> = (0..SERVERS)
        .map(|i| (topology.namespace(Host::Server(i)).clone(), servers[i]))
        .collect();
    let backends = Backends::start(&server_ns).context("starting the backends")?;

    let mut results: Vec<PathResult> = config
        .paths
        .iter()
        .map(|&k| match tools.check(k) {
            Ok(()) => PathResult::new(k, PathStatus::Measured),
            Err(why) => PathResult::new(k, PathStatus::NotInstalled(why)),
        })
        .collect();
    let phases = phases(config);
    let per_path: u64 = phases.iter().map(|(_, w)| w.len() as u64).sum();
    let runnable = results
        .iter()
        .filter(|r| r.status == PathStatus::Measured)
        .count() as u64;
    let bar = if config.progress {
        ProgressBar::new(runnable * per_path * config.rounds as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let spec = LoadSpec {
        duration: config.duration,
        grace: Duration::from_secs(5),
        max_ops: MAX_OPS,
        op_timeout: Duration::from_secs(2),
        servers: SERVERS,
    };
    'rounds: for round in 0..config.rounds {
        for result in results
            .iter_mut()
            .filter(|r| r.status == PathStatus::Measured)
        {
            for (mode, workloads) in &phases {
                if stop.load(Ordering::Relaxed) {
                    break 'rounds;
                }
                let kind = result.path;
                bar.set_message(format!(
                    "round {}/{} · {} · starting",
                    round + 1,
                    config.rounds,
                    kind.name()
                ));
                let mut active = match ActivePath::start(kind, *mode, &env).await {
                    Ok(a) => a,
                    Err(e) => {
                        result.problem(format!("round {}: start ({mode:?}): {e:#}", round + 1));
                        bar.inc(workloads.len() as u64);
                        continue;
                    }
                };
                for &w in workloads {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    bar.set_message(format!(
                        "round {}/{} · {} · {}",
                        round + 1,
                        config.rounds,
                        kind.name(),
                        workload_name(w)
                    ));
                    if let Err(e) = active.check_alive() {
                        result.errors += 1;
                        result.problem(format!("round {}: {e}", round + 1));
                        bar.inc(1);
                        continue;
                    }
                    let before = backends.errors();
                    let cpu_before = active.cpu_time();
                    let outcome = run_load(&client, active.target, w, spec, stop.clone()).await?;
                    result.add(w, &outcome, backends.errors() - before);
                    if let (Some(a), Some(b)) = (cpu_before, active.cpu_time()) {
                        result.add_cpu(w, &outcome, b.saturating_sub(a));
                    }
                    bar.inc(1);
                }
                // The last workload's sessions end through this path before it stops:
                // their closes, and any error in them, are this path's.
                let before = backends.errors();
                let open = backends.drained(DRAIN).await;
                let closing_errors = backends.errors() - before;
                if closing_errors > 0 || open > 0 {
                    result.server_errors += closing_errors;
                    result.problem(format!(
                        "round {}: after its workloads, {closing_errors} errors on the servers \
                         while its sessions closed, {open} still open after {DRAIN:?}",
                        round + 1
                    ));
                }
                if let Err(e) = active.check_alive() {
                    result.errors += 1;
                    result.problem(format!("round {}: {e}", round + 1));
                }
                if let Err(e) = active.stop(&env).await {
                    result.problem(format!("round {}: stop: {e:#}", round + 1));
                }
            }
        }
    }
    bar.finish_and_clear();
    backends.stop();
    for r in &mut results {
        if r.status == PathStatus::Measured && r.runs == 0 {
            let why = r
                .problems
                .first()
                .cloned()
                .unwrap_or_else(|| "never ran".into());
            r.status = PathStatus::Failed(why);
        }
    }
    Ok(BenchReport {
        setup,
        placement: placement.describe(),
        paths: results,
        elapsed_s: 0.0,
        steal: Vec::new(),
    })
}

/// The workloads of one round of one path, grouped by the backends they need; only those
/// in `config.workloads`, and no group left empty.
pub fn phases(config: &BenchConfig) -> Vec<(Mode, Vec<Workload>)> {
    let wanted = |kind: WorkloadKind, w: Workload| config.workloads.contains(&kind).then_some(w);
    let bulk: Vec<Workload> = [
        wanted(WorkloadKind::Bulk, Workload::Bulk { streams: 1 }),
        wanted(
            WorkloadKind::BulkStreams,
            Workload::Bulk {
                streams: config.streams,
            },
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let requests: Vec<Workload> = [
        wanted(
            WorkloadKind::Connect,
            Workload::Connect {
                concurrency: config.concurrency,
            },
        ),
        wanted(
            WorkloadKind::Keep,
            Workload::Keep {
                concurrency: config.concurrency,
            },
        ),
        wanted(WorkloadKind::Latency, Workload::Latency),
        wanted(
            WorkloadKind::Packets,
            Workload::Packets {
                flows: PACKET_FLOWS,
                window: PACKET_WINDOW,
            },
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    [(Mode::Bulk, bulk), (Mode::Requests, requests)]
        .into_iter()
        .filter(|(_, w)| !w.is_empty())
        .collect()
}

fn workload_name(w: Workload) -> String {
    match w {
        Workload::Bulk { streams } => format!("bulk ×{streams}"),
        Workload::Connect { .. } => "new conn/s".into(),
        Workload::Keep { .. } => "kept req/s".into(),
        Workload::Latency => "latency".into(),
        Workload::Packets { .. } => "small packets".into(),
    }
}

/// Runs one workload on a runtime built inside the client's namespace (its worker
/// threads inherit the namespace and the CPU pinning).
async fn run_load(
    client: &Namespace,
    target: SocketAddrV4,
    workload: Workload,
    spec: LoadSpec,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<LoadOutcome> {
    let ns = client.clone();
    let workers = if workload == Workload::Latency { 1 } else { 2 };
    let outcome = tokio::task::spawn_blocking(move || {
        ns.run(move || -> std::io::Result<LoadOutcome> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?;
            // The counters of this namespace: the thread's own view of /proc/net.
            let packets = || {
                std::fs::read_to_string("/proc/thread-self/net/dev")
                    .map(|t| load::interface_packets(&t))
            };
            let before = packets()?;
            let mut outcome = rt.block_on(load::run(target, workload, spec, stop));
            outcome.packets = packets()?.saturating_sub(before);
            Ok(outcome)
        })
    })
    .await
    .context("load generator thread")??
    .context("building the load generator's runtime")?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_runs_by_default_in_two_phases() {
        let config = BenchConfig::standard("l4lb".into());
        let phases = phases(&config);
        let counts: Vec<usize> = phases.iter().map(|(_, w)| w.len()).collect();
        assert_eq!(counts, [2, 4]);
    }

    #[test]
    fn a_selection_keeps_only_its_workloads_and_drops_empty_phases() {
        let mut config = BenchConfig::standard("l4lb".into());
        config.workloads = vec![WorkloadKind::Latency, WorkloadKind::Connect];
        let phases = phases(&config);
        assert_eq!(phases.len(), 1);
        assert_eq!(phases[0].0, Mode::Requests);
        assert_eq!(
            phases[0].1,
            [
                Workload::Connect {
                    concurrency: config.concurrency
                },
                Workload::Latency
            ],
            "in the fixed order, whatever the order asked"
        );
    }
}
