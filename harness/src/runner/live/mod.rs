//! Runs one scenario against one balancer on a real topology and collects evidence.
//! Set-up and teardown live here; `steps.rs` plays the timeline, `join.rs` places clients.
//!
//! Order: build the topology; start the servers (waiting until each listens); start the
//! balancer (waiting until its stats show every backend up); start the observer; play
//! the timeline step by step; read the end state; stop everything; tear down; check
//! nothing is left. Any failure is recorded as evidence and the run goes on to teardown.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

mod blind;
mod join;
mod party;
mod steps;

use join::closed;

use super::evidence::*;
use super::observer::{Observer, POLL};
use crate::peers::view::HealthView;
use crate::process::NsProcess;
use crate::scenario::{server_name, BalancerKind, LinkDirection, LinkHost, Scenario, Step};
use crate::topology::{Host, Layout, Topology, TopologySpec};

/// Longest a join may take before the client counts as unplaced.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(6);

/// Longest wait for a join while packets are dropped or shaped. A client's SYN leaves at
/// 0, 1, 3, 7, 15 and 31 s (Linux: 1 s initial RTO, doubled per retry, RFC 6298), and the
/// server's SYN-ACK on the same schedule. Placement is seen when the server's socket is
/// established, so through the raw balancer one try crosses a lossy lb link six times
/// (SYN, SYN-ACK and the last ACK, each in and out): at 5% loss about one try in four
/// fails. The deadline lets the sixth try (at 31 s) count, plus the persistence wait
/// ([`super::observer::PERSIST_LOSSY`]): about one join in 3,000 (0.265^6) comes out
/// unplaced; a deadline of five tries (16 s) would leave about one in 800.
pub const JOIN_TIMEOUT_FAULTY: Duration = Duration::from_secs(32);
/// Longest a server or the balancer may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `l4lb` binary (servers, clients and balancers are started from it).
    pub l4lb: PathBuf,
    /// Write a capture of the balancer's interfaces here.
    pub pcap: Option<PathBuf>,
    /// Seed of every random choice of the run's impaired links (loss, jitter, ...): the
    /// same seed gives the same pattern.
    pub seed: u64,
}

/// The seed a run uses unless told otherwise (`l4lb run --seed N`).
pub const DEFAULT_SEED: u64 = 1;

struct Client {
    proc: Arc<tokio::sync::Mutex<NsProcess>>,
    /// When the client last sent a line (at first, when it settled); its chatter task
    /// writes it too.
    last_activity: Arc<Mutex<Duration>>,
    chatter: Option<tokio::task::JoinHandle<()>>,
    /// Tells the chatter when `silent` stops it.
    chat_stop: Option<tokio::sync::watch::Sender<Option<Instant>>>,
    quit: bool,
    /// The client host it runs on (index).
    host: usize,
}

struct Run<'a> {
    scenario: &'a Scenario,
    kind: BalancerKind,
    opts: &'a RunOptions,
    topo: Topology,
    start: Instant,
    ev: Evidence,
    servers: Vec<Option<NsProcess>>,
    backends: Vec<SocketAddrV4>,
    balancer: Option<NsProcess>,
    /// Where the balancer's health view is read (none for kernel NAT and nginx).
    view: HealthView,
    /// The balancer's own directory (configuration, stats socket, logs).
    balancer_dir: PathBuf,
    capture: Option<NsProcess>,
    clients: BTreeMap<String, Client>,
    /// Every line the clients said; the chatter tasks write it too.
    says: Arc<Mutex<Vec<SayRecord>>>,
    observer: Option<Observer>,
    drops: Vec<(LinkHost, f64)>,
    /// Hosts with a qdisc fault (rate limit).
    shaped: Vec<LinkHost>,
    /// User-space wires on impaired links.
    wires: BTreeMap<LinkHost, crate::link::wire::Wire>,
    /// Seed of the wires.
    seed: u64,
    /// Faults with a `for` (and perhaps an `every`): when each ends or comes back.
    timers: Vec<FaultTimer>,
    /// For each join of the evidence, in order: the sockets on its server that may be
    /// the session's (server, remote end, first seen); the one that lasted longest is,
    /// and when it went away is when the session ended there.
    join_sockets: Vec<Vec<(usize, SocketAddrV4, Instant)>>,
    /// Output of the sessions a client ended to rejoin, oldest first.
    earlier: BTreeMap<String, Vec<crate::process::Line>>,
    /// Bulk transfers, written by their tasks.
    bulks: Arc<Mutex<Vec<BulkRecord>>>,
    /// The tasks sending them.
    bulk_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Client processes ended to rejoin (checked gone at teardown).
    ended_pids: Vec<u32>,
}

/// A fault that ends after its `for` and perhaps comes back every `every`.
struct FaultTimer {
    /// The step that put it in force (its action, `lasts` and `every`).
    step: Step,
    /// When it began this time (as scheduled), from the run's start.
    began: Duration,
    /// Its window in the evidence, while in force.
    window: Option<usize>,
    /// Ended, waiting for `every` to bring it back.
    cleared: bool,
}

impl FaultTimer {
    /// When it next ends or comes back.
    fn due(&self) -> Duration {
        if self.cleared {
            self.began + self.step.every.unwrap_or(Duration::MAX / 4)
        } else {
            self.began + self.step.lasts.unwrap_or(Duration::MAX / 4)
        }
    }
}

fn host(h: LinkHost) -> Host {
    match h {
        LinkHost::Client(i) => Host::Client(i),
        LinkHost::Lb => Host::Lb,
        LinkHost::Server(i) => Host::Server(i),
        LinkHost::Router => Host::Router,
        LinkHost::Wifi => Host::WifiAp,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Splits an expanded template into program and arguments.
fn program(argv: Vec<String>) -> (PathBuf, Vec<String>) {
    let mut it = argv.into_iter();
    let prog = it.next().unwrap_or_default();
    (PathBuf::from(prog), it.collect())
}

/// Runs `scenario` against `kind`; never panics on a failing network, it records it.
pub async fn run(scenario: &Scenario, kind: BalancerKind, opts: &RunOptions) -> Evidence {
    let start = Instant::now();
    let mut ev = Evidence::new(scenario, kind);
    ev.seed = opts.seed;
    if let Err(reason) = crate::peers::installed(kind) {
        ev.skipped = Some(reason);
        ev.duration = start.elapsed();
        return ev;
    }
    let spec = TopologySpec {
        clients: scenario.topology.clients,
        servers: scenario.topology.servers,
        layout: scenario.topology.layout,
        subnet: scenario.topology.subnet,
        mtu: scenario.topology.mtu,
        offloads: scenario.topology.offloads,
        rst_drop: kind == BalancerKind::Raw,
        home: scenario.topology.home.clone(),
    };
    let topo = match Topology::build(&spec).await {
        Ok(t) => t,
        Err(e) => {
            ev.step_failures
                .push(format!("the topology could not be built: {e:#}"));
            ev.duration = start.elapsed();
            return ev;
        }
    };
    let backends = (0..spec.servers)
        .map(|i| {
            SocketAddrV4::new(
                topo.addr(Host::Server(i)),
                scenario.topology.server_ports[i],
            )
        })
        .collect();
    let balancer_dir = std::env::temp_dir().join(format!("{}balancer", topo.prefix()));
    let mut run = Run {
        scenario,
        kind,
        opts,
        topo,
        start,
        ev,
        servers: (0..spec.servers).map(|_| None).collect(),
        backends,
        balancer: None,
        view: HealthView::None,
        balancer_dir,
        capture: None,
        clients: BTreeMap::new(),
        says: Arc::new(Mutex::new(Vec::new())),
        observer: None,
        drops: Vec::new(),
        shaped: Vec::new(),
        wires: BTreeMap::new(),
        seed: opts.seed,
        timers: Vec::new(),
        join_sockets: Vec::new(),
        earlier: BTreeMap::new(),
        bulks: Arc::new(Mutex::new(Vec::new())),
        bulk_tasks: Vec::new(),
        ended_pids: Vec::new(),
    };
    run.describe_topology();
    match run.set_up().await {
        Ok(()) => {
            for step in &scenario.steps {
                if let Err(e) = run.step(step).await {
                    run.ev
                        .step_failures
                        .push(format!("line {}: {e:#}", step.line));
                }
            }
            run.finish().await;
        }
        Err(e) => run.ev.step_failures.push(format!("set-up failed: {e:#}")),
    }
    run.tear_down().await
}

impl Run<'_> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn event(&mut self, step: Option<&Step>, text: impl Into<String>, mark: Option<Mark>) {
        let at = self.now();
        self.event_at(at, step, text, mark);
    }

    /// Opens a fault window on `host`'s link now (`what` in words).
    fn open_fault(
        &mut self,
        host: LinkHost,
        kind: FaultKind,
        direction: Option<LinkDirection>,
        what: String,
    ) {
        let from = self.now();
        self.ev.fault_windows.push(FaultWindow {
            host: host.to_string(),
            kind,
            direction,
            what,
            from,
            until: None,
        });
    }

    /// Closes every open fault window on `host`'s link that `ends` accepts.
    fn close_faults(&mut self, host: LinkHost, ends: impl Fn(&FaultWindow) -> bool) {
        let (name, now) = (host.to_string(), self.now());
        for w in &mut self.ev.fault_windows {
            if w.until.is_none() && w.host == name && ends(w) {
                w.until = Some(now);
            }
        }
    }

    /// Records an event at `at` (taken when the action happened, e.g. when a signal was
    /// sent, not after waiting for its effect).
    fn event_at(
        &mut self,
        at: Duration,
        step: Option<&Step>,
        text: impl Into<String>,
        mark: Option<Mark>,
    ) {
        self.ev.event(at, step.map(|s| s.line), text, mark);
    }

    fn describe_topology(&mut self) {
        let t = &self.scenario.topology;
        let lb = self.topo.addr(Host::Lb);
        let mut lines = vec![
            format!(
                "layout {}, subnet {}/24, MTU {}, offloads {}",
                t.layout,
                t.subnet,
                t.mtu.map_or("default".into(), |m| m.to_string()),
                t.offloads
            ),
            format!(
                "balancer `{}`{} on {lb}:{} (namespace lb), {}{}",
                self.kind,
                match (&self.scenario.own_balancer, self.kind) {
                    (Some(own), BalancerKind::Own) => format!(" ({})", own.name),
                    _ => String::new(),
                },
                self.scenario.health.port,
                self.ev.traits.algorithm,
                if self.kind == BalancerKind::Raw {
                    ", RST-drop rule installed"
                } else {
                    ""
                }
            ),
        ];
        for (i, b) in self.backends.iter().enumerate() {
            lines.push(format!("server {} at {b}", server_name(i)));
        }
        for i in 0..t.clients {
            let at = self.topo.addr(Host::Client(i));
            let entry = self.topo.entry(i);
            lines.push(if entry == lb {
                format!("client host client{} at {at}", i + 1)
            } else {
                format!("client host client{} at {at}, dials {entry}", i + 1)
            });
        }
        lines.extend(self.topo.diagram());
        lines.push(format!(
            "programs: server `{}`, client `{}`",
            self.scenario.programs.server.argv.join(" "),
            self.scenario.programs.client.argv.join(" ")
        ));
        self.ev.topology = lines;
    }

    async fn start_server(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.backends[i].port();
        let vars = [
            ("l4lb", self.opts.l4lb.display().to_string()),
            ("port", port.to_string()),
            ("addr", self.backends[i].ip().to_string()),
            ("server", server_name(i)),
        ];
        let (prog, args) = program(self.scenario.programs.server.expand(&vars));
        let ns = self.topo.namespace(Host::Server(i)).clone();
        let mut p = NsProcess::spawn(&ns, &prog, &args).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if crate::sockets::listening(&ns)
                .await?
                .iter()
                .any(|a| a.port() == port)
            {
                break;
            }
            if let Some(status) = p.try_exit_code() {
                anyhow::bail!(
                    "server {} exited at start ({status}): {}",
                    server_name(i),
                    tail(&p)
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "server {} does not listen on port {port} after {START_TIMEOUT:?}: {}",
                    server_name(i),
                    tail(&p)
                );
            }
            tokio::time::sleep(POLL).await;
        }
        self.servers[i] = Some(p);
        Ok(())
    }

    async fn set_up(&mut self) -> anyhow::Result<()> {
        for i in 0..self.servers.len() {
            self.start_server(i).await?;
        }
        let lb_ns = self.topo.namespace(Host::Lb).clone();
        if let Some(path) = &self.opts.pcap {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let args: Vec<String> = ["-i", "any", "-U", "-n", "-s", "256", "-w"]
                .iter()
                .map(|s| s.to_string())
                .chain([path.display().to_string(), "tcp and not port 9100".into()])
                .collect();
            let p = NsProcess::spawn(&lb_ns, std::path::Path::new("tcpdump"), &args).await?;
            if p.wait_for_line(|l| l.contains("listening on"), START_TIMEOUT)
                .await
                .is_none()
            {
                anyhow::bail!("tcpdump did not start in the lb namespace: {}", tail(&p));
            }
            self.capture = Some(p);
        }
        let lb = self.topo.addr(Host::Lb);
        let source = match self.scenario.topology.layout {
            Layout::Lan | Layout::Home => lb,
            Layout::Routed => self.topo.lb_backend_addr(),
        };
        let env = crate::peers::launch::LaunchEnv {
            scenario: self.scenario,
            kind: self.kind,
            l4lb: &self.opts.l4lb,
            lb: &lb_ns,
            lb_addr: lb,
            source,
            backends: &self.backends,
            dir: self.balancer_dir.clone(),
        };
        let started = crate::peers::launch::start(&env, START_TIMEOUT).await?;
        self.ev
            .topology
            .push(format!("started as: {}", started.how));
        self.view = started.view;
        self.balancer = started.process;
        let servers = (0..self.servers.len())
            .map(|i| {
                (
                    self.topo.namespace(Host::Server(i)).clone(),
                    self.backends[i].port(),
                )
            })
            .collect();
        self.observer = Some(Observer::start(
            self.start,
            servers,
            lb_ns,
            self.view.clone(),
            self.backends.clone(),
        ));
        self.event(
            None,
            format!("servers and the {} balancer are up", self.kind),
            None,
        );
        Ok(())
    }

    fn observer(&self) -> anyhow::Result<&Observer> {
        self.observer
            .as_ref()
            .context("the observer is not running")
    }

    /// A fresh reading of the balancer's health view (three tries, one second each).
    async fn fresh_stats(&self) -> anyhow::Result<(String, crate::runner::probe::Stats)> {
        let lb = self.topo.namespace(Host::Lb).clone();
        let mut last = String::new();
        for _ in 0..3 {
            let (view, backends) = (self.view.clone(), self.backends.clone());
            match lb
                .run_async(move || view.read(&backends, Duration::from_secs(1)))
                .await?
            {
                Ok(read) => return Ok(read),
                Err(e) => last = e.to_string(),
            }
        }
        anyhow::bail!("{last}")
    }

    /// Reads the end state while everything still runs.
    async fn finish(&mut self) {
        self.await_bulks().await;
        // Faults still in force end with the run.
        let end = self.now();
        for w in &mut self.ev.fault_windows {
            w.until.get_or_insert(end);
        }
        self.timers.clear();
        for c in self.clients.values_mut() {
            if let Some(t) = c.chatter.take() {
                t.abort();
            }
        }
        for t in self.bulk_tasks.drain(..) {
            t.abort();
        }
        // A last fresh reading of the balancer's sessions.
        tokio::time::sleep(POLL * 3).await;
        if let Some(reason) = self.ev.traits.no_health_view.clone() {
            // No view: the sessions are the clients' sockets the servers hold.
            self.ev.open_sessions_end = self
                .observer
                .as_ref()
                .map(|o| o.lock().conns.iter().map(|m| m.len() as u32).sum());
            self.ev.stats_end = Some(format!(
                "# no health view: {reason}; sessions counted from the servers' sockets\n"
            ));
        } else {
            match self.fresh_stats().await {
                Ok((text, stats)) => {
                    self.ev.open_sessions_end = stats.sessions;
                    self.ev.stats_end = Some(text);
                }
                Err(e) => self.ev.stats_end = Some(format!("# the stats could not be read: {e}\n")),
            }
        }
        self.ev.balancer_alive_end = match self.balancer.as_mut() {
            Some(b) => b.try_exit_code().is_none(),
            // Kernel NAT: rules, no process; alive while its namespace is.
            None => self.kind == BalancerKind::Nat,
        };
        if let Some(obs) = &self.observer {
            for (j, sockets) in self.ev.joins.iter_mut().zip(&self.join_sockets) {
                // Still open beats any close; otherwise the latest close.
                let ends: Vec<Option<Instant>> = sockets
                    .iter()
                    .map(|(server, addr, first)| obs.gone_at(*server, *addr, *first))
                    .collect();
                if !ends.is_empty() && ends.iter().all(Option::is_some) {
                    j.socket_closed = ends
                        .into_iter()
                        .flatten()
                        .max()
                        .map(|t| t.saturating_duration_since(self.start));
                }
            }
        }
        let start = self.start;
        let mut bulks = lock(&self.bulks).clone();
        let bulk_senders: Vec<String> = bulks.iter().map(|b| b.client.clone()).collect();
        for (name, c) in &self.clients {
            let mut p = c.proc.lock().await;
            if let Some((at, how)) = closed(&mut p).await {
                self.ev.closes.insert(
                    name.clone(),
                    CloseRecord {
                        at: at.saturating_duration_since(start),
                        last_activity: *lock(&c.last_activity),
                        by_quit: c.quit,
                        how,
                    },
                );
            }
            let lines = self
                .earlier
                .remove(name)
                .unwrap_or_default()
                .into_iter()
                .chain(p.transcript())
                .filter(|l| !l.stderr)
                .map(|l| (l.at.saturating_duration_since(start), l.text))
                .collect();
            let split = party::split_bulk(name, lines, &bulk_senders);
            if split.bulk_lines > 0 {
                self.ev
                    .bulk_lines_received
                    .insert(name.clone(), split.bulk_lines);
            }
            for b in bulks.iter_mut().filter(|b| &b.client == name) {
                b.echoed = split.own_seqs.iter().filter(|s| **s < b.lines).count() as u64;
                b.echo_done = split.own_last;
            }
            self.ev.transcripts.insert(name.clone(), split.chat);
        }
        self.ev.bulks = bulks;
        self.ev.says = lock(&self.says).clone();
        self.ev.says.sort_by_key(|s| s.at);
    }

    /// Stops every process, tears the topology down, and checks nothing is left.
    async fn tear_down(mut self) -> Evidence {
        let grace = Duration::from_millis(500);
        let mut pids = Vec::new();
        for (_, c) in std::mem::take(&mut self.clients) {
            let mut p = c.proc.lock().await;
            pids.push((format!("client {}", p.pid()), p.pid()));
            let _ = p.stop(grace).await;
        }
        for pid in std::mem::take(&mut self.ended_pids) {
            pids.push((format!("client {pid}, ended to rejoin"), pid));
        }
        if let Some(mut b) = self.balancer.take() {
            pids.push(("balancer".into(), b.pid()));
            if b.try_exit_code().is_none() {
                let _ = b.stop(Duration::from_secs(2)).await;
            }
        }
        for p in self.servers.iter_mut().filter_map(|s| s.take()) {
            let mut p = p;
            pids.push(("server".into(), p.pid()));
            let _ = p.stop(grace).await;
        }
        if let Some(mut c) = self.capture.take() {
            pids.push(("tcpdump".into(), c.pid()));
            let _ = c.stop(Duration::from_secs(2)).await;
        }
        if let Some(obs) = self.observer.take() {
            let seen = obs.stop().await;
            self.ev.health = seen.marks;
            self.ev.samples = seen.samples;
        }
        for m in self.ev.health.clone() {
            let text = format!(
                "balancer reports {} {}",
                server_name(m.server),
                if m.up { "up" } else { "down" }
            );
            let mark = if m.up {
                Mark::Up(m.server)
            } else {
                Mark::Down(m.server)
            };
            self.ev.events.push(Event {
                at: m.at,
                step_line: None,
                text,
                mark: Some(mark),
            });
        }
        for (name, c) in &self.ev.closes {
            if !c.by_quit {
                self.ev.events.push(Event {
                    at: c.at,
                    step_line: None,
                    text: format!("{name}'s session closed ({})", c.how),
                    mark: None,
                });
            }
        }
        self.ev.events.sort_by_key(|e| e.at);
        let prefix = self.topo.prefix().to_string();
        for (_, wire) in std::mem::take(&mut self.wires) {
            if let Err(e) = wire.stop() {
                self.ev
                    .cleanup
                    .errors
                    .push(format!("stopping a wire: {e:#}"));
            }
        }
        if self.balancer_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.balancer_dir) {
                self.ev
                    .cleanup
                    .errors
                    .push(format!("removing {}: {e}", self.balancer_dir.display()));
            }
        }
        if let Err(e) = self.topo.teardown().await {
            self.ev.cleanup.errors.push(format!("{e:#}"));
        }
        self.ev.cleanup.namespaces_left = crate::cleanup::list_namespaces()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        self.ev.cleanup.processes_left = pids
            .into_iter()
            .filter(|(_, pid)| crate::cleanup::pid_alive(*pid))
            .map(|(what, pid)| format!("{what} (pid {pid})"))
            .collect();
        self.ev.duration = self.start.elapsed();
        self.ev
    }
}

/// The last lines a process printed, for error messages.
fn tail(p: &NsProcess) -> String {
    let t = p.transcript();
    let lines: Vec<String> = t
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|l| l.text.clone())
        .collect();
    if lines.is_empty() {
        "(it printed nothing)".into()
    } else {
        lines.join(" / ")
    }
}
