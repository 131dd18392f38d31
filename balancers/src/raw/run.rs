//! `l4lb raw`: checks, firewall, socket, then the forwarding loop until SIGTERM/SIGINT.
//!
//! The loop runs on the calling thread (blocking `recvmmsg` with a 100 ms timeout, so an
//! idle balancer sleeps in the kernel); a small tokio runtime beside it runs the health
//! checker, the stats endpoint and the signal handler.

use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::admin::MetricsSource;
use crate::health::HealthChecker;
use crate::pool::Pool;
use crate::raw::cli::{self, Capture, RawArgs, Receive, SendPath};
use crate::raw::device::afpacket::{self, PacketDevice};
use crate::raw::device::pump::Pump;
use crate::raw::device::raw::RawDevice;
use crate::raw::device::routes::RouteChecker;
use crate::raw::device::sender::ThreadedDevice;
use crate::raw::device::Device;
use crate::raw::firewall::{self, MARK};
use crate::raw::nat::{Nat, NatConfig, Selector};
use crate::raw::stages::StageTimes;
use crate::raw::stats::{Published, Snapshot};
use crate::usage::UsageError;
use l4lb_rawsock::ip::RawSender;
use l4lb_rawsock::local_addresses;

/// How often the forwarding loop publishes its counters to the stats endpoint: often
/// enough that a new row shows there within a tenth of a second (a harness tells a
/// client's session from a health check by it), while a snapshot (a few counters per
/// backend) costs nothing next to a batch of packets. Expiry stays once a second.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Round robin over the pool's usable backends (the shared health state decides).
pub struct PoolSelector {
    pool: Arc<Pool>,
    addrs: Vec<SocketAddrV4>,
}

impl PoolSelector {
    /// `addrs[id]` is the address of the pool's backend `id`.
    pub fn new(pool: Arc<Pool>, addrs: Vec<SocketAddrV4>) -> Self {
        Self { pool, addrs }
    }
}

impl Selector for PoolSelector {
    fn pick(&mut self) -> Option<SocketAddrV4> {
        self.pool
            .next_round_robin()
            .and_then(|id| self.addrs.get(id).copied())
    }
}

/// The device the loop runs on.
enum Forwarder {
    /// Receive and send on this thread.
    Single(Box<dyn Device>),
    /// Routed sends on a sender thread.
    Threaded(ThreadedDevice<Box<dyn Device>>),
}

/// Opens the device for the capture and send settings; returns it, the bytes before the
/// datagram in its frames, and a second handle on its routed sender.
fn open_device(
    config: &cli::RawConfig,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(Box<dyn Device>, usize, RawSender)> {
    let nat = &config.table.nat_ports;
    match config.capture {
        Capture::Raw => {
            let dev = RawDevice::open(MARK, config.port, nat, config.busy_poll)
                .context("opening the raw socket (--capture raw)")?;
            let sender = dev.sender().context("cloning the sending socket")?;
            Ok((Box::new(dev), 0, sender))
        }
        Capture::Packet => {
            let direct = config.send == SendPath::Direct;
            let mut dev =
                PacketDevice::open(MARK, config.port, nat, direct, config.mtu, config.busy_poll)
                    .context("opening the packet sockets (--capture packet)")?;
            if config.receive == Receive::Ring {
                let slots = dev
                    .map_receive_ring()
                    .context("mapping the receive ring (PACKET_RX_RING, --receive ring)")?;
                tracing::info!(event = "receive_ring", slots, "receive ring mapped");
            }
            if config.stage_times.is_some() {
                dev.stamp_arrivals()
                    .context("asking for arrival times (SO_TIMESTAMPNS, --stage-times)")?;
            }
            if direct {
                let routes = RouteChecker::spawn(runtime.handle())
                    .context("opening a netlink socket for route lookups (--send direct)")?;
                dev.set_route_checker(routes);
            }
            let sender = dev.sender().context("cloning the sending socket")?;
            Ok((Box::new(dev), afpacket::HEAD, sender))
        }
    }
}

/// Writes the stage histograms to `--stage-times` and logs their medians; a failure to
/// write is logged, not fatal (the balancer is stopping anyway and its rules must go).
fn write_stage_times(path: &std::path::Path, file: std::fs::File, stages: &StageTimes) {
    let report = stages.report();
    for s in &report.stages {
        tracing::info!(
            event = "stage_times",
            stage = s.stage,
            per = s.per,
            count = s.count,
            p50_us = s.p50_us,
            p99_us = s.p99_us,
            "time spent in one stage"
        );
    }
    if let Err(e) = serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report) {
        tracing::warn!(path = %path.display(), error = %e, "could not write --stage-times");
    }
}

/// Checks that `source_ip` is an address of this host: backends answer it, and only
/// frames to this host's addresses are taken.
fn check_source_ip(source_ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
    let local = local_addresses().context("reading this host's addresses")?;
    if local.contains(&source_ip.octets()) {
        return Ok(());
    }
    let listed: Vec<String> = local
        .iter()
        .map(|a| std::net::Ipv4Addr::from(*a).to_string())
        .collect();
    Err(UsageError::new(format!(
        "--source-ip {source_ip} is not an address of this host (its IPv4 addresses: {}); \
         pass the address the backends reach this host at",
        listed.join(", ")
    ))
    .into())
}

/// Runs the raw balancer until SIGTERM/SIGINT.
pub fn run(args: RawArgs) -> anyhow::Result<ExitCode> {
    let ephemeral = cli::ephemeral_range().context("reading the kernel's ephemeral port range")?;
    let config = args.resolve(&ephemeral)?;
    check_source_ip(config.source_ip)?;
    args.log.init();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "l4lb raw needs root (a raw socket and iptables rules in its network namespace); \
             run it as root, e.g. `sudo l4lb raw ...`"
        );
    }
    // Created before anything is set up, so a path that cannot be written fails first.
    let stage_file = match &config.stage_times {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| {
                UsageError::new(format!(
                    "cannot write --stage-times {}: {e}; give a file in a directory that exists",
                    path.display()
                ))
            })?,
        )),
        None => None,
    };
    let mut rules = firewall::prepare(config.install_rst_drop, config.port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime for health checks and stats")?;
    let (device, head, sender) = open_device(&config, &runtime)?;
    if config.capture == Capture::Packet {
        firewall::add_prerouting_drop(&mut rules, config.port, &config.table.nat_ports)?;
    }
    let mut dev = if config.send_thread {
        Forwarder::Threaded(
            ThreadedDevice::new(device, sender).context("starting the sender thread")?,
        )
    } else {
        Forwarder::Single(device)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let pool = Arc::new(Pool::new(config.backends.clone(), config.thresholds));
    let signal = {
        let _guard = runtime.enter();
        crate::shutdown::watch()?
    };
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            signal.await;
            stop.store(true, Ordering::SeqCst);
        });
    }

    let published = Published::default();
    let checker = {
        let _guard = runtime.enter();
        HealthChecker::spawn(Arc::clone(&pool), &config.check)
    };
    if let Some(addr) = config.admin {
        let listener = runtime.block_on(crate::admin::bind(addr))?;
        let sources: Vec<Arc<dyn MetricsSource>> = vec![Arc::new(published.clone())];
        runtime.spawn(crate::admin::serve(listener, Arc::clone(&pool), sources));
    }
    tracing::info!(
        event = "started",
        source_ip = %config.source_ip,
        port = config.port,
        backends = ?config.backend_addrs,
        nat_ports = ?config.table.nat_ports,
        max_rows = config.table.max_rows,
        capture = ?config.capture,
        send_thread = config.send_thread,
        send = ?config.send,
        rules = ?rules.describe(),
        "raw balancer running"
    );

    let mut nat = Nat::new(NatConfig {
        source_ip: config.source_ip,
        listen_port: config.port,
        table: config.table.clone(),
    });
    let mut selector = PoolSelector::new(Arc::clone(&pool), config.backend_addrs.clone());
    let mut pump = Pump::with_head(config.batch, config.mtu, head);
    if stage_file.is_some() {
        pump.time_stages();
    }
    let start = Instant::now();
    let mut next_expiry = Duration::from_secs(1);
    let mut next_publish = PUBLISH_EVERY;
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        let once = match &mut dev {
            Forwarder::Single(d) => pump.once(d.as_mut(), &mut nat, &mut selector, now),
            Forwarder::Threaded(d) => pump.once(d, &mut nat, &mut selector, now),
        };
        if let Err(e) = once {
            result = Err(anyhow::Error::new(e).context("receiving from the raw socket"));
            break;
        }
        if now >= next_expiry {
            if let Forwarder::Threaded(d) = &dev {
                pump.count_send_failures(d.take_failed());
            }
            nat.expire(now);
            match &mut dev {
                Forwarder::Single(d) => pump.send_pending(d.as_mut(), &mut nat),
                Forwarder::Threaded(d) => pump.send_pending(d, &mut nat),
            }
            next_expiry = now + Duration::from_secs(1);
        }
        if now >= next_publish {
            match &mut dev {
                Forwarder::Single(d) => pump.count_receive_drops(d.as_mut()),
                Forwarder::Threaded(d) => pump.count_receive_drops(d),
            }
            published.publish(Snapshot::of(&nat, pump.counters(), &config.backend_addrs));
            next_publish = now + PUBLISH_EVERY;
        }
    }
    match &mut dev {
        Forwarder::Single(d) => pump.count_receive_drops(d.as_mut()),
        Forwarder::Threaded(d) => {
            pump.count_send_failures(d.take_failed());
            pump.count_receive_drops(d);
        }
    }
    drop(dev);
    let snap = Snapshot::of(&nat, pump.counters(), &config.backend_addrs);
    tracing::info!(
        event = "stopped",
        rows = snap.rows,
        rows_created = snap.rows_created,
        to_backend = snap.to_backend,
        to_client = snap.to_client,
        checksum_full = snap.checksum_full,
        sent_direct = snap.sent_direct,
        sent_routed = snap.sent_routed,
        refusals_sent = snap.refusals_sent,
        refusals_limited = snap.refusals_limited,
        drops = %snap.drops_line(),
        "raw balancer stopping"
    );
    if let (Some((path, file)), Some(stages)) = (stage_file, pump.stages()) {
        write_stage_times(path, file, stages);
    }
    runtime.block_on(checker.shutdown());
    runtime.shutdown_timeout(Duration::from_millis(200));
    let cleanup = rules.remove();
    result?;
    cleanup?;
    Ok(ExitCode::SUCCESS)
}
