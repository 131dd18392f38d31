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

use crate::raw::cli;
use crate::raw::device::Pump;
use crate::raw::firewall::{self, MARK};
use crate::raw::nat::{Nat, NatConfig, Selector};
use crate::raw::sys::RawDevice;
use crate::raw::RawArgs;

/// Round robin over the backends the health checker currently calls usable.
pub struct HealthySelector {
    backends: Vec<SocketAddrV4>,
    usable: Arc<Vec<AtomicBool>>,
    next: usize,
}

impl HealthySelector {
    /// Round robin over `backends`, skipping those whose flag in `usable` is false.
    pub fn new(backends: Vec<SocketAddrV4>, usable: Arc<Vec<AtomicBool>>) -> Self {
        Self {
            backends,
            usable,
            next: 0,
        }
    }
}

impl Selector for HealthySelector {
    fn pick(&mut self) -> Option<SocketAddrV4> {
        let n = self.backends.len();
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            if self.usable.get(i).is_some_and(|u| u.load(Ordering::Relaxed)) {
                return Some(self.backends[i]);
            }
        }
        None
    }
}

/// Runs the raw balancer until SIGTERM/SIGINT.
pub fn run(args: RawArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(crate::logging::LogFormat::Text);
    let ephemeral = cli::ephemeral_range().context("reading the kernel's ephemeral port range")?;
    let settings = cli::settings(&args.options, &args.backends, &args.positional, ephemeral)?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "l4lb raw needs root (a raw socket and iptables rules in its network namespace); \
             run it as root, e.g. `sudo l4lb raw ...`"
        );
    }
    let mut rules = firewall::prepare(settings.install_rst_drop)?;
    let mut dev = RawDevice::open(MARK, settings.port, &settings.table.nat_ports)
        .context("opening the raw TCP socket")?;

    let stop = Arc::new(AtomicBool::new(false));
    let usable: Arc<Vec<AtomicBool>> = Arc::new(
        settings
            .backends
            .iter()
            .map(|_| AtomicBool::new(true))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime for health checks and stats")?;
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

    tracing::info!(
        event = "started",
        source_ip = %settings.source_ip,
        port = settings.port,
        backends = ?settings.backends,
        nat_ports = ?settings.table.nat_ports,
        max_rows = settings.table.max_rows,
        rules = ?rules.describe(),
        "raw balancer running"
    );

    let mut nat = Nat::new(NatConfig {
        source_ip: settings.source_ip,
        listen_port: settings.port,
        table: settings.table.clone(),
    });
    let mut selector = HealthySelector::new(settings.backends.clone(), usable.clone());
    let mut pump = Pump::new(settings.batch, settings.mtu);
    let start = Instant::now();
    let mut next_expiry = Duration::from_secs(1);
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        if let Err(e) = pump.once(&mut dev, &mut nat, &mut selector, now) {
            result = Err(anyhow::Error::new(e).context("receiving from the raw socket"));
            break;
        }
        if now >= next_expiry {
            nat.expire(now);
            next_expiry = now + Duration::from_secs(1);
        }
    }
    let c = nat.counters();
    let drops: Vec<String> = crate::raw::packet::DropReason::ALL
        .iter()
        .filter(|r| c.drops_of(**r) > 0)
        .map(|r| format!("{}={}", r.name(), c.drops_of(*r)))
        .collect();
    tracing::info!(
        event = "stopped",
        rows = nat.table().len(),
        rows_created = c.rows_created,
        to_backend = c.to_backend,
        to_client = c.to_client,
        checksum_full = c.checksum_full,
        drops = %drops.join(","),
        "raw balancer stopping"
    );
    runtime.shutdown_timeout(Duration::from_millis(200));
    let cleanup = rules.remove();
    result?;
    cleanup?;
    Ok(ExitCode::SUCCESS)
}
