//! `l4lb raw` end to end in network namespaces (root): the harness's home-LAN topology
//! (clients, lb, s1..s3 on one bridge), real `l4lb chat-server`/`chat-client` processes,
//! and ground truth from the servers' kernels (sock_diag), never only the balancer's log.

#[path = "../support/mod.rs"]
mod support;

mod balancing;
mod bulk;
mod firewall;
mod refusal;
mod stages;
mod usage;

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use l4lb_harness::process::NsProcess;
use l4lb_harness::sockets;
use l4lb_harness::topology::{Host, Offloads, Topology, TopologySpec};
use tokio::time::{sleep, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const CHAT_PORT: u16 = 7000;
const WAIT: Duration = Duration::from_secs(15);
/// Admin endpoint inside the lb namespace.
const ADMIN: &str = "127.0.0.1:9109";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_string()).collect()
}

struct Lab {
    topo: Topology,
    lb: NsProcess,
    servers: Vec<Option<NsProcess>>,
}

impl Lab {
    async fn start(clients: usize, offloads: Offloads, extra: &[&str]) -> Lab {
        let spec = TopologySpec {
            clients,
            servers: 3,
            offloads,
            ..TopologySpec::default()
        };
        let topo = Topology::build(&spec).await.expect("topology");
        let mut servers = Vec::new();
        for i in 0..3 {
            servers.push(Some(start_chat_server(&topo, i).await));
        }
        let args = support::raw_lab::raw_args(&topo, 3, CHAT_PORT, ADMIN, extra);
        let lb = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &args)
            .await
            .expect("start l4lb raw");
        lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
            .await
            .unwrap_or_else(|| panic!("l4lb raw did not start: {:#?}", lb.transcript()));
        Lab { topo, lb, servers }
    }

    fn lb_ip(&self) -> String {
        self.topo.addr(Host::Lb).to_string()
    }

    /// Sessions each server holds from the balancer's NAT ports (health checks come from
    /// the kernel's ephemeral ports, so they are not counted).
    async fn nat_sessions(&self) -> Vec<Vec<SocketAddrV4>> {
        let eph = ephemeral_low(&self.topo);
        let mut out = Vec::new();
        for i in 0..3 {
            let pairs = sockets::established(self.topo.namespace(Host::Server(i)), CHAT_PORT)
                .await
                .expect("sock_diag");
            out.push(
                pairs
                    .into_iter()
                    .map(|(_, remote)| remote)
                    .filter(|r| r.port() < eph)
                    .collect(),
            );
        }
        out
    }

    /// Connects a chat client and returns which server received it.
    async fn join(&self, client_host: usize, nick: &str) -> (NsProcess, usize) {
        let before = self.nat_sessions().await;
        let args = s(&["chat-client", &self.lb_ip(), "20000", nick]);
        let p = NsProcess::spawn(
            self.topo.namespace(Host::Client(client_host)),
            Path::new(BIN),
            &args,
        )
        .await
        .expect("start chat-client");
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.nat_sessions().await;
            let grew: Vec<usize> = (0..3).filter(|&i| now[i].len() > before[i].len()).collect();
            if grew.len() == 1 {
                return (p, grew[0]);
            }
            assert!(
                Instant::now() < deadline,
                "{nick} reached no server: {now:?}; client: {:#?}; lb: {:#?}",
                p.transcript(),
                self.lb.transcript()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Prometheus text from the balancer's stats endpoint (inside the lb namespace).
    fn metrics(&self) -> String {
        support::stats::fetch(self.topo.namespace(Host::Lb), ADMIN)
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        support::stats::sample(&self.metrics(), line_start)
    }

    async fn stop(mut self) {
        let status = self.lb.stop(Duration::from_secs(5)).await.expect("stop lb");
        let log = self.lb.transcript();
        assert!(status.success(), "l4lb raw exited with {status}: {log:#?}");
        assert!(
            log.iter().any(|l| l.text.contains("raw balancer stopping")),
            "no shutdown line: {log:#?}"
        );
        // It removed the mark exemption it added (the harness owns the RST-drop rule).
        let out = self
            .topo
            .namespace(Host::Lb)
            .command("iptables")
            .args(["-S", "OUTPUT"])
            .output()
            .await
            .expect("iptables");
        let rules = String::from_utf8_lossy(&out.stdout);
        assert!(!rules.contains("--mark"), "mark rule left behind: {rules}");
        for p in self.servers.iter_mut().flatten() {
            let _ = p.stop(Duration::from_secs(2)).await;
        }
        self.topo.teardown().await.expect("teardown");
    }
}

fn count_lines(p: &NsProcess, needle: &str) -> usize {
    p.transcript()
        .iter()
        .filter(|l| l.text.contains(needle))
        .count()
}

fn ephemeral_low(topo: &Topology) -> u16 {
    topo.namespace(Host::Lb)
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range"))
        .expect("enter lb")
        .expect("read range")
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .expect("range")
}

async fn start_chat_server(topo: &Topology, i: usize) -> NsProcess {
    let p = NsProcess::spawn(
        topo.namespace(Host::Server(i)),
        Path::new(BIN),
        &s(&["chat-server", &CHAT_PORT.to_string()]),
    )
    .await
    .expect("start chat-server");
    let ns = topo.namespace(Host::Server(i));
    let deadline = Instant::now() + WAIT;
    while !sockets::listening(ns)
        .await
        .expect("sock_diag")
        .iter()
        .any(|a| a.port() == CHAT_PORT)
    {
        assert!(Instant::now() < deadline, "chat-server {i} does not listen");
        sleep(Duration::from_millis(10)).await;
    }
    p
}

/// Waits until `p` has printed at least `count` lines containing `pattern`; panics with
/// `what` and the transcript after [`WAIT`].
async fn wait_for_lines(p: &NsProcess, pattern: &str, count: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    while count_lines(p, pattern) < count {
        assert!(Instant::now() < deadline, "{what}: {:#?}", p.transcript());
        sleep(Duration::from_millis(50)).await;
    }
}
