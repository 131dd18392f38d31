//! Runs one scenario against one balancer on a real topology and collects evidence.
//!
//! Order: build the topology; start the servers (waiting until each listens); start the
//! balancer (waiting until its stats show every backend up); start the observer; play
//! the timeline step by step; read the end state; stop everything; tear down; check
//! nothing is left. Any failure is recorded as evidence and the run goes on to teardown.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::evidence::*;
use super::observer::{Observer, POLL};
use super::{balancer, probe};
use crate::faults;
use crate::netns::Namespace;
use crate::process::{NsProcess, Signal};
use crate::scenario::{
    server_name, Action, BalancerKind, CommandTemplate, Condition, LinkHost, Scenario,
    ServerAction, Step,
};
use crate::topology::{Host, Layout, Topology, TopologySpec};

/// Longest a join may take before the client counts as unplaced.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest a server or the balancer may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `l4lb` binary (servers, clients and balancers are started from it).
    pub l4lb: PathBuf,
    /// Write a capture of the balancer's interfaces here.
    pub pcap: Option<PathBuf>,
}

type Shared<T> = Arc<Mutex<T>>;

struct Client {
    proc: Arc<tokio::sync::Mutex<NsProcess>>,
    last_activity: Shared<Duration>,
    chatter: Option<tokio::task::JoinHandle<()>>,
    quit: bool,
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
    capture: Option<NsProcess>,
    clients: BTreeMap<String, Client>,
    says: Shared<Vec<SayRecord>>,
    observer: Option<Observer>,
    drops: Vec<(LinkHost, f64)>,
    /// Hosts with a qdisc fault (rate limit, netem).
    shaped: Vec<LinkHost>,
}

fn host(h: LinkHost) -> Host {
    match h {
        LinkHost::Client(i) => Host::Client(i),
        LinkHost::Lb => Host::Lb,
        LinkHost::Server(i) => Host::Server(i),
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
    if scenario.uses_netem() && !faults::netem_supported() {
        ev.skipped = Some(
            "netem is unsupported on this kernel (no sch_netem module): a netem step cannot run here".into(),
        );
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
        capture: None,
        clients: BTreeMap::new(),
        says: Arc::new(Mutex::new(Vec::new())),
        observer: None,
        drops: Vec::new(),
        shaped: Vec::new(),
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
        self.ev.event(at, step.map(|s| s.line), text, mark);
    }

    fn describe_topology(&mut self) {
        let t = &self.scenario.topology;
        let lb = self.topo.addr(Host::Lb);
        let mut lines = vec![
            format!(
                "layout {:?}, subnet {}/24, MTU {}, offloads {:?}",
                t.layout,
                t.subnet,
                t.mtu.map_or("default".into(), |m| m.to_string()),
                t.offloads
            ),
            format!(
                "balancer `{}` on {lb}:{} (namespace lb){}",
                self.kind,
                self.scenario.health.port,
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
            lines.push(format!(
                "client host client{} at {}",
                i + 1,
                self.topo.addr(Host::Client(i))
            ));
        }
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
            Layout::Lan => lb,
            Layout::Routed => self.topo.lb_backend_addr(),
        };
        let args = balancer::args(self.kind, &self.scenario.health, lb, source, &self.backends);
        let mut p = NsProcess::spawn(&lb_ns, &self.opts.l4lb, &args).await?;
        let admin = SocketAddr::V4(balancer::ADMIN_ADDR);
        let backends = self.backends.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let b = backends.clone();
            let ready = lb_ns
                .run_async(move || {
                    probe::fetch_metrics(admin, Duration::from_millis(300))
                        .map(|t| {
                            let s = probe::parse_metrics(&t);
                            b.iter().all(|b| s.up.get(&b.to_string()) == Some(&true))
                        })
                        .map_err(|e| e.to_string())
                })
                .await?;
            if ready == Ok(true) {
                break;
            }
            if let Some(status) = p.try_exit_code() {
                anyhow::bail!("the balancer exited at start ({status}): {}", tail(&p));
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the balancer did not report every backend up within {START_TIMEOUT:?} ({}): {}",
                    match ready {
                        Ok(_) => "stats readable, not all up".to_string(),
                        Err(e) => format!("stats at {admin}: {e}"),
                    },
                    tail(&p)
                );
            }
            tokio::time::sleep(POLL * 2).await;
        }
        self.balancer = Some(p);
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
            admin,
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

    async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        if let Some(at) = step.at {
            let now = self.now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
        }
        match &step.action {
            Action::Join(names) => {
                for name in names {
                    self.join(step, name).await?;
                }
            }
            Action::Say { clients, text } => {
                for c in clients {
                    let client = self.clients.get(c).context("unknown client")?;
                    let proc = client.proc.clone();
                    let at = self.now();
                    proc.lock()
                        .await
                        .send_line(text)
                        .await
                        .with_context(|| format!("{c} cannot say a line"))?;
                    *lock(&client.last_activity) = at;
                    lock(&self.says).push(SayRecord {
                        client: c.clone(),
                        text: text.clone(),
                        at,
                    });
                    self.event(Some(step), format!("{c} says \"{text}\""), None);
                    // Give the server a moment so lines of different senders do not merge.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
            Action::Chat { client, every } => {
                let c = self.clients.get_mut(client).context("unknown client")?;
                let (proc, last, says, start, every, name) = (
                    c.proc.clone(),
                    c.last_activity.clone(),
                    self.says.clone(),
                    self.start,
                    *every,
                    client.clone(),
                );
                c.chatter = Some(tokio::spawn(async move {
                    let mut n = 0u32;
                    loop {
                        n += 1;
                        let text = format!("chatter {n}");
                        let at = start.elapsed();
                        if proc.lock().await.send_line(&text).await.is_err() {
                            return;
                        }
                        *lock(&last) = at;
                        lock(&says).push(SayRecord {
                            client: name.clone(),
                            text,
                            at,
                        });
                        tokio::time::sleep(every).await;
                    }
                }));
                self.event(
                    Some(step),
                    format!(
                        "{client} starts talking every {}",
                        humantime::format_duration(every)
                    ),
                    None,
                );
            }
            Action::Silent(client) => {
                if let Some(t) = self.clients.get_mut(client).and_then(|c| c.chatter.take()) {
                    t.abort();
                }
                self.event(Some(step), format!("{client} goes silent"), None);
            }
            Action::Quit(names) => {
                for name in names {
                    let c = self.clients.get_mut(name).context("unknown client")?;
                    if let Some(t) = c.chatter.take() {
                        t.abort();
                    }
                    c.quit = true;
                    let proc = c.proc.clone();
                    let mut p = proc.lock().await;
                    p.send_line("q")
                        .await
                        .with_context(|| format!("{name} cannot quit"))?;
                    let status = p.wait_exit(Duration::from_secs(2)).await?;
                    drop(p);
                    let text = match status {
                        Some(s) if s.success() => format!("{name} quits"),
                        Some(s) => format!("{name} quits ({s})"),
                        None => format!("{name} did not exit after `q`"),
                    };
                    self.event(Some(step), text, None);
                }
            }
            Action::Server { server, action } => self.server_action(step, *server, *action).await?,
            Action::Link { host: h, up } => {
                self.topo.set_link(host(*h), *up).await?;
                self.event(
                    Some(step),
                    format!("link of {h} {}", if *up { "up" } else { "down" }),
                    Some(Mark::Fault),
                );
            }
            Action::Drop { host: h, fraction } => {
                let ns = self.topo.namespace(host(*h)).clone();
                faults::drop_fraction(&ns, "eth0", *fraction).await?;
                self.drops.push((*h, *fraction));
                self.event(
                    Some(step),
                    format!("dropping {:.1}% of packets on {h}", fraction * 100.0),
                    Some(Mark::Fault),
                );
            }
            Action::Rate { host: h, rate } => {
                faults::rate_limit(self.topo.namespace(host(*h)), "eth0", kbit(rate)?).await?;
                self.shaped.push(*h);
                self.event(
                    Some(step),
                    format!("rate limit {rate} on {h}"),
                    Some(Mark::Fault),
                );
            }
            Action::Netem { host: h, args } => {
                let params: Vec<&str> = args.split_whitespace().collect();
                faults::netem(self.topo.namespace(host(*h)), "eth0", &params).await?;
                self.shaped.push(*h);
                self.event(
                    Some(step),
                    format!("netem {args} on {h}"),
                    Some(Mark::Fault),
                );
            }
            Action::ClearFaults(h) => {
                let ns = self.topo.namespace(host(*h)).clone();
                let mut keep = Vec::new();
                for (dh, f) in std::mem::take(&mut self.drops) {
                    if dh == *h {
                        faults::remove_drop_fraction(&ns, "eth0", f).await?;
                    } else {
                        keep.push((dh, f));
                    }
                }
                self.drops = keep;
                if self.shaped.contains(h) {
                    faults::clear_qdisc(&ns, "eth0").await?;
                    self.shaped.retain(|x| x != h);
                }
                self.event(
                    Some(step),
                    format!("faults on {h} cleared"),
                    Some(Mark::Fault),
                );
            }
            Action::Wait(d) => {
                tokio::time::sleep(*d).await;
                self.event(
                    Some(step),
                    format!("waited {}", humantime::format_duration(*d)),
                    None,
                );
            }
            Action::WaitUntil {
                condition,
                deadline,
            } => {
                let what = match condition {
                    Condition::ServerDown(s) => {
                        format!("the balancer reports {} down", server_name(*s))
                    }
                    Condition::ServerUp(s) => {
                        format!("the balancer reports {} up", server_name(*s))
                    }
                    Condition::Closed(c) => format!("{c}'s session is closed"),
                    Condition::Sessions(n) => format!("the balancer holds {n} session(s)"),
                };
                let end = Instant::now() + *deadline;
                loop {
                    if self.condition_holds(condition).await? {
                        self.event(Some(step), what.clone(), None);
                        break;
                    }
                    if Instant::now() > end {
                        self.event(
                            Some(step),
                            format!(
                                "NOT MET within {}: {what}",
                                humantime::format_duration(*deadline)
                            ),
                            None,
                        );
                        anyhow::bail!(
                            "{what}: not within {}",
                            humantime::format_duration(*deadline)
                        );
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }

    async fn condition_holds(&mut self, c: &Condition) -> anyhow::Result<bool> {
        let obs = self.observer()?;
        Ok(match c {
            Condition::ServerDown(s) => obs.lock().health[*s] == Some(false),
            Condition::ServerUp(s) => obs.lock().health[*s] == Some(true),
            Condition::Sessions(n) => {
                obs.lock().stats.as_ref().and_then(|s| s.sessions) == Some(*n)
            }
            Condition::Closed(name) => {
                let c = self.clients.get(name).context("unknown client")?;
                let mut p = c.proc.lock().await;
                closed(&mut p).await.is_some()
            }
        })
    }

    async fn server_action(
        &mut self,
        step: &Step,
        i: usize,
        action: ServerAction,
    ) -> anyhow::Result<()> {
        let name = server_name(i);
        match action {
            ServerAction::Restart => {
                if let Some(mut p) = self.servers[i].take() {
                    let _ = p.signal(Signal::Kill);
                    let _ = p.wait_exit(Duration::from_secs(2)).await;
                }
                self.start_server(i).await?;
                self.event(
                    Some(step),
                    format!("restart {name}"),
                    Some(Mark::Server(i, action)),
                );
            }
            _ => {
                let p = self.servers[i]
                    .as_mut()
                    .with_context(|| format!("{name} is not running"))?;
                let (signal, verb) = match action {
                    ServerAction::Kill => (Signal::Kill, "kill"),
                    ServerAction::Stop => (Signal::Stop, "stop"),
                    _ => (Signal::Cont, "cont"),
                };
                p.signal(signal)?;
                if action == ServerAction::Kill {
                    let _ = p.wait_exit(Duration::from_secs(2)).await;
                }
                self.event(
                    Some(step),
                    format!("{verb} {name}"),
                    Some(Mark::Server(i, action)),
                );
            }
        }
        Ok(())
    }

    async fn join(&mut self, step: &Step, name: &str) -> anyhow::Result<()> {
        let host_idx = self.clients.len() % self.scenario.topology.clients;
        let ns: Namespace = self.topo.namespace(Host::Client(host_idx)).clone();
        let vars = [
            ("l4lb", self.opts.l4lb.display().to_string()),
            ("host", self.topo.addr(Host::Lb).to_string()),
            ("port", self.scenario.health.port.to_string()),
            ("nick", name.to_string()),
        ];
        let template: &CommandTemplate = &self.scenario.programs.client;
        let (prog, args) = program(template.expand(&vars));
        let baseline = self.observer()?.baseline();
        let at = self.now();
        let mut p = NsProcess::spawn(&ns, &prog, &args).await?;
        let end = Instant::now() + super::live::JOIN_TIMEOUT;
        // A health check to a hung server stays established for the whole check timeout,
        // longer when the machine is busy: twice the timeout plus a margin.
        let persist = if self.drops.is_empty() && self.shaped.is_empty() {
            super::observer::PERSIST
        } else {
            super::observer::PERSIST_LOSSY
        }
        .max(self.scenario.health.timeout * 2 + Duration::from_millis(100));
        let mut connected = None;
        let outcome = loop {
            let found = self.observer()?.new_sockets(&baseline, persist);
            let lasting: Vec<_> = found.iter().filter(|n| n.persistent).collect();
            // One client makes one connection: decide only when one server alone has new
            // sockets (a young one elsewhere may be the client, the old one a slow check).
            // At the deadline, young sockets elsewhere did not last: they were checks.
            if lasting.len() == 1 && (found.len() == 1 || Instant::now() > end) {
                connected = Some(lasting[0].first);
                break JoinOutcome::Placed { server: lasting[0].server };
            }
            if lasting.len() > 1 && Instant::now() > end {
                let servers: Vec<String> = lasting.iter().map(|n| server_name(n.server)).collect();
                break JoinOutcome::Unplaced {
                    why: format!("ambiguous: new long-lived sockets on {} at once", servers.join(", ")),
                };
            }
            if let Some((_, how)) = closed(&mut p).await {
                break JoinOutcome::Refused { how };
            }
            if Instant::now() > end {
                break JoinOutcome::Unplaced {
                    why: format!(
                        "no new established socket on any server within {}",
                        humantime::format_duration(JOIN_TIMEOUT)
                    ),
                };
            }
            tokio::time::sleep(POLL).await;
        };
        // Placed: when the server's socket appeared; otherwise when the harness gave up.
        let settled =
            connected.map_or_else(|| self.now(), |t| t.saturating_duration_since(self.start));
        let text = match &outcome {
            JoinOutcome::Placed { server } => format!("{name} joins -> {}", server_name(*server)),
            JoinOutcome::Refused { how } => format!("{name} joins -> refused ({how})"),
            JoinOutcome::Unplaced { why } => format!("{name} joins -> not placed ({why})"),
        };
        self.event(Some(step), text, None);
        self.ev.joins.push(JoinRecord {
            client: name.to_string(),
            at,
            settled,
            outcome,
        });
        self.clients.insert(
            name.to_string(),
            Client {
                proc: Arc::new(tokio::sync::Mutex::new(p)),
                last_activity: Arc::new(Mutex::new(settled)),
                chatter: None,
                quit: false,
            },
        );
        Ok(())
    }

    /// A fresh reading of the balancer's stats (three tries, one second each).
    async fn fresh_stats(&self) -> anyhow::Result<String> {
        let lb = self.topo.namespace(Host::Lb).clone();
        let admin = SocketAddr::V4(balancer::ADMIN_ADDR);
        let mut last = String::new();
        for _ in 0..3 {
            match lb.run_async(move || probe::fetch_metrics(admin, Duration::from_secs(1))).await? {
                Ok(text) => return Ok(text),
                Err(e) => last = e.to_string(),
            }
        }
        anyhow::bail!("{last}")
    }

    /// Reads the end state while everything still runs.
    async fn finish(&mut self) {
        for c in self.clients.values_mut() {
            if let Some(t) = c.chatter.take() {
                t.abort();
            }
        }
        // A last fresh reading of the balancer's sessions.
        tokio::time::sleep(POLL * 3).await;
        match self.fresh_stats().await {
            Ok(text) => {
                self.ev.open_sessions_end = probe::parse_metrics(&text).sessions;
                self.ev.stats_end = Some(text);
            }
            Err(e) => self.ev.stats_end = Some(format!("# the stats could not be read: {e}\n")),
        }
        self.ev.balancer_alive_end = self
            .balancer
            .as_mut()
            .is_some_and(|b| b.try_exit_code().is_none());
        let start = self.start;
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
            let lines = p
                .transcript()
                .into_iter()
                .filter(|l| !l.stderr)
                .map(|l| (l.at.saturating_duration_since(start), l.text))
                .collect();
            self.ev.transcripts.insert(name.clone(), lines);
        }
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

/// When and how a client's session ended: its disconnect or error line, or its exit.
/// `how` is a fixed phrase (it goes into snapshots); the client's own words are not.
async fn closed(p: &mut NsProcess) -> Option<(Instant, String)> {
    let scan = |p: &NsProcess| {
        p.transcript().into_iter().find_map(|l| {
            let t = l.text.to_ascii_lowercase();
            if t.contains("connect() error") || t.contains("refused") {
                Some((l.at, "connection refused".to_string()))
            } else if t.contains("disconnected") {
                Some((l.at, "closed by the other side".to_string()))
            } else {
                None
            }
        })
    };
    if let Some(found) = scan(p) {
        return Some(found);
    }
    let status = p.try_exit_code()?;
    let exited = Instant::now();
    // It may have printed its reason just before exiting: read to the end first.
    p.wait_output_closed(Duration::from_millis(300)).await;
    scan(p).or(Some((exited, format!("exited ({status}) without saying why"))))
}

/// A tc rate ("512kbit", "10mbit", "1gbit") in kbit/s.
fn kbit(rate: &str) -> anyhow::Result<u32> {
    let digits: String = rate.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits
        .parse()
        .with_context(|| format!("`{rate}` is not a rate"))?;
    let k = match &rate[digits.len()..] {
        "kbit" => n,
        "mbit" => n * 1000,
        "gbit" => n * 1_000_000,
        "bit" => (n / 1000).max(1),
        other => anyhow::bail!("unknown rate unit `{other}` in `{rate}`"),
    };
    u32::try_from(k).with_context(|| format!("rate `{rate}` is too large"))
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
