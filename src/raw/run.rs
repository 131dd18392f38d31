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
use crate::raw::afpacket::{self, PacketDevice};
use crate::raw::cli;
use crate::raw::cli::SendPath;
use crate::raw::device::Device;
use crate::raw::device::Pump;
use crate::raw::firewall::{self, MARK};
use crate::raw::nat::{Nat, NatConfig, Selector};
use crate::raw::packet::DropReason;
use crate::raw::routes::RouteChecker;
use crate::raw::sender::ThreadedDevice;
use crate::raw::stats::{Published, Snapshot};
use crate::raw::sys::{Capture, RawDevice, RawSender};
use crate::raw::RawArgs;

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
    settings: &cli::Settings,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(Box<dyn Device>, usize, RawSender)> {
    let nat = &settings.table.nat_ports;
    match settings.capture {
        Capture::Raw => {
            let dev = RawDevice::open(MARK, settings.port, nat)
                .context("opening the raw socket (--capture raw)")?;
            let sender = dev.sender().context("cloning the sending socket")?;
            Ok((Box::new(dev), 0, sender))
        }
        Capture::Packet => {
            let direct = settings.send == SendPath::Direct;
            let mut dev = PacketDevice::open(MARK, settings.port, nat, direct, settings.mtu)
                .context("opening the packet sockets (--capture packet)")?;
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

/// Runs the raw balancer until SIGTERM/SIGINT.
pub fn run(args: RawArgs) -> anyhow::Result<ExitCode> {
    let (check, thresholds) = args.health.resolve()?;
    let admin = args.admin.resolve()?;
    let (source_ip, backend_words) = cli::split_source(args.options.source_ip, &args.positional)?;
    let backends = args.backends.resolve(backend_words)?;
    let addrs = cli::ipv4_backends(&backends)?;
    let ephemeral = cli::ephemeral_range().context("reading the kernel's ephemeral port range")?;
    let settings = cli::settings(&args.options, source_ip, addrs, ephemeral)?;
    args.log.init();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "l4lb raw needs root (a raw socket and iptables rules in its network namespace); \
             run it as root, e.g. `sudo l4lb raw ...`"
        );
    }
    let mut rules = firewall::prepare(settings.install_rst_drop, settings.port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime for health checks and stats")?;
    let (device, head, sender) = open_device(&settings, &runtime)?;
    if settings.capture == Capture::Packet {
        firewall::add_prerouting_drop(&mut rules, settings.port, &settings.table.nat_ports)?;
    }
    let mut dev = if settings.send_thread {
        Forwarder::Threaded(
            ThreadedDevice::new(device, sender).context("starting the sender thread")?,
        )
    } else {
        Forwarder::Single(device)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let pool = Arc::new(Pool::new(backends, thresholds));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_fut => {}
            }
            stop.store(true, Ordering::SeqCst);
        });
    }

    let published = Published::default();
    let checker = {
        let _guard = runtime.enter();
        HealthChecker::spawn(Arc::clone(&pool), &check)
    };
    if let Some(addr) = admin {
        let listener = runtime.block_on(crate::admin::bind(addr))?;
        let sources: Vec<Arc<dyn MetricsSource>> = vec![Arc::new(published.clone())];
        runtime.spawn(crate::admin::serve(listener, Arc::clone(&pool), sources));
    }
    tracing::info!(
        event = "started",
        source_ip = %settings.source_ip,
        port = settings.port,
        backends = ?settings.backends,
        nat_ports = ?settings.table.nat_ports,
        max_rows = settings.table.max_rows,
        capture = ?settings.capture,
        send_thread = settings.send_thread,
        send = ?settings.send,
        rules = ?rules.describe(),
        "raw balancer running"
    );

    let mut nat = Nat::new(NatConfig {
        source_ip: settings.source_ip,
        listen_port: settings.port,
        table: settings.table.clone(),
    });
    let mut selector = PoolSelector::new(Arc::clone(&pool), settings.backends.clone());
    let mut pump = Pump::with_head(settings.batch, settings.mtu, head);
    let start = Instant::now();
    let mut next_expiry = Duration::from_secs(1);
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
                nat.count_drops(DropReason::SendFailed, d.take_failed());
            }
            nat.expire(now);
            published.publish(Snapshot::of(&nat, &settings.backends));
            next_expiry = now + Duration::from_secs(1);
        }
    }
    if let Forwarder::Threaded(d) = &dev {
        nat.count_drops(DropReason::SendFailed, d.take_failed());
    }
    drop(dev);
    let snap = Snapshot::of(&nat, &settings.backends);
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
    runtime.block_on(checker.shutdown());
    runtime.shutdown_timeout(Duration::from_millis(200));
    let cleanup = rules.remove();
    result?;
    cleanup?;
    Ok(ExitCode::SUCCESS)
}
