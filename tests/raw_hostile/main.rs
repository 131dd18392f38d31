//! `l4lb raw` under hostile or stale traffic (issue #14), in network namespaces (root).
//!
//! Spoofed segments come from `support::spoof` (raw `IP_HDRINCL` sockets opened inside a
//! test namespace). Every spoofed source is either a host of the topology speaking for
//! itself (a client's or a server's own address) or an address of the test subnet that
//! no host has (10.0.0.200-.250); every flood is bounded (at most 100,000 segments, at
//! most 10 s). Ground truth comes from the hosts' kernels (sock_diag) and the clients'
//! own output, next to the balancer's stats endpoint.

#[path = "../support/mod.rs"]
mod support;

mod eviction;
mod flag_combinations;
mod flood;
mod overflow;
mod resets;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use l4lb_harness::process::NsProcess;
use l4lb_harness::sockets;
use l4lb_harness::topology::{Host, Topology, TopologySpec};
use support::spoof;
use tokio::time::{sleep, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const CHAT_PORT: u16 = 7000;
const LB_PORT: u16 = 20000;
const WAIT: Duration = Duration::from_secs(15);
/// Admin endpoint inside the lb namespace.
const ADMIN: &str = "127.0.0.1:9109";
/// A small NAT port range (below the kernel's ephemeral ports, so health checks, which
/// use those, are told apart from sessions), small enough to sweep and to fill.
const NAT_LOW: u16 = 30000;
const NAT_HIGH: u16 = 30999;
/// The stats snapshot is published about once a second.
const SNAPSHOT: Duration = Duration::from_millis(1500);
/// How long a live session gets to echo a chat line.
const ECHO: Duration = Duration::from_secs(2);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_string()).collect()
}

fn nat_ports() -> String {
    format!("{NAT_LOW}-{NAT_HIGH}")
}

/// A spoofed source that no host of the default 10.0.0.0/24 topology has.
fn unused_source(rng: &mut fastrand::Rng) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 0, rng.u8(200..=250)),
        rng.u16(1024..=65535),
    )
}

/// Replies to one line per session, then resets it (SO_LINGER 0): a backend that really
/// sends an in-window RST. Health checks (from the kernel's ephemeral ports) are closed.
const PY_RESET_SERVER: &str = r#"
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); print("listening", flush=True)
while True:
    c, peer = s.accept()
    if peer[1] >= 32768:
        c.close(); continue
    line = c.recv(4096)
    c.sendall(line)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close(); print("reset", peer[1], flush=True)
"#;

/// What runs on each server host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Chat,
    ResetAfterOneLine,
}

struct Lab {
    topo: Topology,
    lb: NsProcess,
    lb_args: Vec<String>,
    servers: Vec<NsProcess>,
}

/// A chat client with a session through the balancer.
struct Session {
    client: NsProcess,
    nick: String,
    /// Index of the server that holds it.
    server: usize,
    /// The balancer's address and NAT port as the server sees them.
    nat: SocketAddrV4,
}

impl Lab {
    async fn start(servers: usize, backend: Backend, extra: &[&str]) -> Lab {
        let spec = TopologySpec {
            clients: 1,
            servers,
            ..TopologySpec::default()
        };
        let topo = Topology::build(&spec).await.expect("topology");
        let mut procs = Vec::new();
        for i in 0..servers {
            procs.push(start_server(&topo, i, backend).await);
        }
        let nat = nat_ports();
        let mut flags = vec!["--nat-ports", nat.as_str()];
        flags.extend_from_slice(extra);
        let args = support::raw_lab::raw_args(&topo, servers, CHAT_PORT, ADMIN, &flags);
        let lb = spawn_lb(&topo, &args).await;
        let lab = Lab {
            topo,
            lb,
            lb_args: args,
            servers: procs,
        };
        lab.wait_backends_up().await;
        lab
    }

    /// Waits until every backend has passed a health check (the first clients must not
    /// find the pool empty).
    async fn wait_backends_up(&self) {
        let n = self.servers.len();
        let deadline = Instant::now() + WAIT;
        while self
            .lb
            .transcript()
            .iter()
            .filter(|l| l.text.contains("\"to\":\"up\""))
            .count()
            < n
        {
            assert!(
                Instant::now() < deadline,
                "backends never came up: {:#?}",
                self.lb.transcript()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the balancer and starts it again with the same arguments: every row is
    /// forgotten while clients and servers keep their sockets.
    async fn restart_lb(&mut self) {
        let status = self.lb.stop(Duration::from_secs(5)).await.expect("stop lb");
        assert!(status.success(), "l4lb raw exited with {status}");
        self.lb = spawn_lb(&self.topo, &self.lb_args).await;
        self.wait_backends_up().await;
    }

    fn lb_ip(&self) -> Ipv4Addr {
        self.topo.addr(Host::Lb)
    }

    fn server_ip(&self, i: usize) -> Ipv4Addr {
        self.topo.addr(Host::Server(i))
    }

    /// Sessions server `i` holds from the balancer's NAT ports.
    async fn nat_sessions(&self, i: usize) -> Vec<SocketAddrV4> {
        sockets::established(self.topo.namespace(Host::Server(i)), CHAT_PORT)
            .await
            .expect("sock_diag")
            .into_iter()
            .map(|(_, remote)| remote)
            .filter(|r| (NAT_LOW..=NAT_HIGH).contains(&r.port()))
            .collect()
    }

    async fn all_nat_sessions(&self) -> Vec<Vec<SocketAddrV4>> {
        let mut out = Vec::new();
        for i in 0..self.servers.len() {
            out.push(self.nat_sessions(i).await);
        }
        out
    }

    fn spawn_client(&self, nick: &str) -> impl std::future::Future<Output = NsProcess> + '_ {
        let args = s(&["chat-client", &self.lb_ip().to_string(), "20000", nick]);
        async move {
            NsProcess::spawn(self.topo.namespace(Host::Client(0)), Path::new(BIN), &args)
                .await
                .expect("start chat-client")
        }
    }

    /// Connects a chat client; returns it with the server and NAT port it got.
    async fn join(&self, nick: &str) -> Session {
        let before = self.all_nat_sessions().await;
        let client = self.spawn_client(nick).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.all_nat_sessions().await;
            let new: Vec<(usize, SocketAddrV4)> = now
                .iter()
                .enumerate()
                .flat_map(|(i, v)| {
                    let old = &before[i];
                    v.iter()
                        .filter(move |a| !old.contains(a))
                        .map(move |a| (i, *a))
                })
                .collect();
            if let [(server, nat)] = new[..] {
                return Session {
                    client,
                    nick: nick.into(),
                    server,
                    nat,
                };
            }
            assert!(
                Instant::now() < deadline,
                "{nick} reached no server: {now:?}; client: {:#?}; lb: {:#?}",
                client.transcript(),
                self.lb.transcript()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn metrics(&self) -> String {
        support::stats::fetch(self.topo.namespace(Host::Lb), ADMIN)
    }

    /// The value of the sample whose line starts with `line_start` (0 when absent).
    fn metric(&self, line_start: &str) -> f64 {
        metric_in(&self.metrics(), line_start)
    }

    /// Every `l4lb_raw_drops_total{reason=...}` sample that is not zero.
    fn drops(&self) -> Vec<(String, f64)> {
        drops_in(&self.metrics())
    }

    async fn stop(mut self) {
        let status = self.lb.stop(Duration::from_secs(5)).await.expect("stop lb");
        assert!(
            status.success(),
            "l4lb raw exited with {status}: {:#?}",
            self.lb.transcript()
        );
        for p in &mut self.servers {
            let _ = p.stop(Duration::from_secs(2)).await;
        }
        self.topo.teardown().await.expect("teardown");
    }
}

/// The value of the sample whose line starts with `line_start` (0 when absent).
fn metric_in(text: &str, line_start: &str) -> f64 {
    support::stats::sample(text, line_start).unwrap_or(0.0)
}

fn drops_in(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("l4lb_raw_drops_total{reason=\""))
        .filter_map(|l| {
            let (reason, rest) = l.split_once('"')?;
            let n: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            (n > 0.0).then(|| (reason.to_string(), n))
        })
        .collect()
}

fn total_drops(d: &[(String, f64)]) -> f64 {
    d.iter().map(|(_, n)| n).sum()
}

async fn spawn_lb(topo: &Topology, args: &[String]) -> NsProcess {
    let lb = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), args)
        .await
        .expect("start l4lb raw");
    lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
        .await
        .unwrap_or_else(|| panic!("l4lb raw did not start: {:#?}", lb.transcript()));
    lb
}

async fn start_server(topo: &Topology, i: usize, backend: Backend) -> NsProcess {
    let ns = topo.namespace(Host::Server(i));
    let port = CHAT_PORT.to_string();
    let p = match backend {
        Backend::Chat => NsProcess::spawn(ns, Path::new(BIN), &s(&["chat-server", &port])).await,
        Backend::ResetAfterOneLine => {
            NsProcess::spawn(
                ns,
                Path::new("python3"),
                &s(&["-c", PY_RESET_SERVER, &port]),
            )
            .await
        }
    }
    .expect("start server");
    let deadline = Instant::now() + WAIT;
    while !sockets::listening(ns)
        .await
        .expect("sock_diag")
        .iter()
        .any(|a| a.port() == CHAT_PORT)
    {
        assert!(
            Instant::now() < deadline,
            "server {i} does not listen: {:#?}",
            p.transcript()
        );
        sleep(Duration::from_millis(10)).await;
    }
    p
}

fn lines_of(p: &NsProcess) -> Vec<String> {
    p.transcript().into_iter().map(|l| l.text).collect()
}

/// Sends `text` and waits up to `within` for the server's echo of it.
async fn echoed(session: &mut Session, text: &str, within: Duration) -> bool {
    if session.client.send_line(text).await.is_err() {
        return false;
    }
    let want = format!("[{}] {text}", session.nick);
    session
        .client
        .wait_for_line(|l| l.contains(&want), within)
        .await
        .is_some()
}

/// Sends `text` on `session` and captures its data segment in the client namespace:
/// the client's address and the next sequence number it will use.
async fn talk_and_sniff(lab: &Lab, session: &mut Session, text: &str) -> spoof::Seen {
    let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let ns = lab.topo.namespace(Host::Client(0)).clone();
    let sniffer = tokio::spawn(async move {
        spoof::sniff(&ns, WAIT, ready_tx, move |seen| {
            seen.dst == lb && seen.payload_len > 0
        })
        .await
    });
    ready_rx.await.expect("sniffer started");
    assert!(
        echoed(session, text, WAIT).await,
        "{}: no echo of {text:?} before any attack: {:#?}",
        session.nick,
        lines_of(&session.client)
    );
    sniffer
        .await
        .expect("sniffer task")
        .unwrap_or_else(|| panic!("{}: no data segment seen to {lb}", session.nick))
}
