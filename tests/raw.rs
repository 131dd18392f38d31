//! `l4lb raw` end to end in network namespaces (root): the harness's home-LAN topology
//! (clients, lb, s1..s3 on one bridge), real `l4lb chat-server`/`chat-client` processes,
//! and ground truth from the servers' kernels (sock_diag), never only the balancer's log.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_clients_land_round_robin_share_chat_and_leave_an_empty_table() {
    if !root_or_skip("six_clients_land_round_robin_share_chat_and_leave_an_empty_table") {
        return;
    }
    let lab = Lab::start(1, Offloads::Default, &[]).await;
    let mut clients = Vec::new();
    let mut landed = Vec::new();
    for i in 1..=6 {
        let (p, server) = lab.join(0, &format!("test{i}")).await;
        landed.push(server + 1);
        clients.push(p);
    }
    assert_eq!(landed, vec![1, 2, 3, 1, 2, 3], "round robin in join order");

    // Clients of one server share chat; others do not see it.
    clients[0].send_line("hello from one").await.expect("send");
    for (i, c) in clients.iter().enumerate() {
        let seen = c
            .wait_for_line(
                |l| l.contains("[test1] hello from one"),
                if i == 0 || i == 3 {
                    WAIT
                } else {
                    Duration::from_millis(500)
                },
            )
            .await
            .is_some();
        assert_eq!(
            seen,
            i == 0 || i == 3,
            "test{} saw test1's line: {seen}",
            i + 1
        );
    }
    assert_eq!(lab.metric("l4lb_raw_rows "), Some(6.0));

    for c in &mut clients {
        c.send_line("q").await.expect("quit");
    }
    for c in &mut clients {
        let status = c
            .wait_exit(WAIT)
            .await
            .expect("wait")
            .expect("client exits");
        assert!(status.success(), "client exit {status}");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        // Snapshots are published once a second.
        if lab.metric("l4lb_raw_rows ") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "table not empty: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lab.metric("l4lb_raw_rows_freed_total{reason=\"fin\"}"),
        Some(6.0),
        "{}",
        lab.metrics()
    );
    assert_eq!(
        lab.metric("l4lb_raw_drops_total{reason=\"send_failed\"}"),
        Some(0.0)
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_stops_receiving_clients_and_gets_them_again_after_it_returns() {
    if !root_or_skip("a_killed_server_stops_receiving_clients_and_gets_them_again") {
        return;
    }
    let mut lab = Lab::start(1, Offloads::Default, &[]).await;
    let s1 = lab.topo.addr(Host::Server(0)).to_string();
    let mut s1_proc = lab.servers[0].take().expect("s1");
    s1_proc.stop(Duration::from_secs(2)).await.expect("kill s1");
    lab.lb
        .wait_for_line(|l| l.contains(&s1) && l.contains("\"to\":\"down\""), WAIT)
        .await
        .unwrap_or_else(|| panic!("s1 never went down: {:#?}", lab.lb.transcript()));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (p, server) = lab.join(0, &format!("d{i}")).await;
        assert_ne!(server, 0, "client d{i} sent to the dead server");
        clients.push(p);
    }
    lab.servers[0] = Some(start_chat_server(&lab.topo, 0).await);
    // Only the down -> up transition counts: wait_for_line also sees s1's first
    // unknown -> up line from the start of the run.
    lab.lb
        .wait_for_line(
            |l| l.contains(&s1) && l.contains("\"from\":\"down\"") && l.contains("\"to\":\"up\""),
            WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("s1 never came back: {:#?}", lab.lb.transcript()));
    let mut got = Vec::new();
    for i in 0..3 {
        let (p, server) = lab.join(0, &format!("r{i}")).await;
        got.push(server);
        clients.push(p);
    }
    assert!(
        got.contains(&0),
        "s1 receives clients again: {got:?}; lb: {:#?}",
        lab.lb
            .transcript()
            .iter()
            .filter(|l| l.text.contains("health"))
            .collect::<Vec<_>>()
    );
    for c in &mut clients {
        let _ = c.stop(Duration::from_secs(2)).await;
    }
    lab.stop().await;
}

/// Every backend down: a new client is refused at once (the balancer answers its SYN
/// with a RST+ACK, as a closed port would), never left hanging, and the refusal is
/// counted on the stats endpoint next to the `no_backend` drop. Both capture modes: with
/// `raw` the kernel also sees the SYN and its own RST is dropped by the RST-drop rule, so
/// the refusal the client gets is the balancer's (marked, it passes the rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_a_new_client_is_refused_at_once() {
    if !root_or_skip("with_every_backend_down_a_new_client_is_refused_at_once") {
        return;
    }
    refused_at_once(&["--capture", "packet"]).await;
    refused_at_once(&["--capture", "raw", "--send-thread"]).await;
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

async fn refused_at_once(extra: &[&str]) {
    let mut lab = Lab::start(1, Offloads::Default, extra).await;
    for i in 0..3 {
        let mut p = lab.servers[i].take().expect("server");
        p.stop(Duration::from_secs(2)).await.expect("kill server");
    }
    wait_for_lines(&lab.lb, "\"to\":\"down\"", 3, "not every backend went down").await;
    let started = Instant::now();
    let mut client = NsProcess::spawn(
        lab.topo.namespace(Host::Client(0)),
        Path::new(BIN),
        &s(&["chat-client", &lab.lb_ip(), "20000", "nobody"]),
    )
    .await
    .expect("start chat-client");
    // A hang would last until the client's own SYN retries give up (over a minute).
    let status = client
        .wait_exit(Duration::from_secs(3))
        .await
        .expect("wait")
        .unwrap_or_else(|| panic!("{extra:?}: the client hung: {:#?}", client.transcript()));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "{:#?}", client.transcript());
    assert!(
        client
            .transcript()
            .iter()
            .any(|l| l.text.contains("connect() error")),
        "{:#?}",
        client.transcript()
    );
    // The snapshot is published about once a second.
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = lab.metric("l4lb_raw_refusals_total{outcome=\"sent\"}");
        let dropped = lab.metric("l4lb_raw_drops_total{reason=\"no_backend\"}");
        if sent.is_some_and(|n| n >= 1.0) && dropped.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{extra:?}: refusal not counted: sent {sent:?}, no_backend {dropped:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    println!("{extra:?}: refused in {took:?}");
    lab.stop().await;
}

/// A sink/source in Python on the server: `recv` hashes everything it reads and prints
/// the SHA-256; `send N` writes N deterministic bytes and prints their hash.
const PY_SERVER: &str = r#"
import hashlib, socket, sys
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(1); print("listening", flush=True)
while True:
    c, peer = s.accept()
    if peer[1] < 32768: break  # health checks come from the kernel's ephemeral ports
    c.close()
h = hashlib.sha256(); n = 0
if mode == "recv":
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
else:
    total = int(sys.argv[3]); block = bytes(range(256)) * 4096; i = 0
    while n < total:
        b = block[: min(len(block), total - n)]
        b = bytes([i % 251]) + b[1:]; i += 1
        c.sendall(b); h.update(b); n += len(b)
    c.shutdown(socket.SHUT_WR)
    while c.recv(1 << 16): pass
print(n, h.hexdigest(), flush=True)
"#;

const PY_CLIENT: &str = r#"
import hashlib, socket, sys
mode, host, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = socket.create_connection((host, port)); h = hashlib.sha256(); n = 0
if mode == "send":
    block = bytes(range(256)) * 4096; i = 0
    while n < total:
        b = block[: min(len(block), total - n)]
        b = bytes([i % 251]) + b[1:]; i += 1
        c.sendall(b); h.update(b); n += len(b)
    c.shutdown(socket.SHUT_WR)
    while c.recv(1 << 16): pass
else:
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"#;

/// Which path a bulk run's frames must mostly take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPath {
    /// `--send direct`: frames straight to the device.
    Direct,
    /// The kernel's routed path.
    Routed,
}

/// A numeric field of a JSON log line.
fn json_field(line: &str, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    v.get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| v.get(name))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no numeric `{name}` in {line}"))
}

async fn bulk(offloads: Offloads, capture: &str, extra: &[&str], path: SendPath) {
    const TOTAL: usize = 100 * 1024 * 1024;
    const PORT: u16 = 9000;
    let spec = TopologySpec {
        clients: 1,
        servers: 1,
        offloads,
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.expect("topology");
    let lb_ip = topo.addr(Host::Lb).to_string();
    let backend = format!("{}:{PORT}", topo.addr(Host::Server(0)));
    let mut lb = NsProcess::spawn(
        topo.namespace(Host::Lb),
        Path::new(BIN),
        &s(&[
            "raw",
            "--log-format",
            "json",
            "--source-ip",
            &lb_ip,
            "--backend",
            &backend,
            "--health-interval",
            "1s",
            "--health-timeout",
            "900ms",
            "--max-rows",
            "64",
            "--capture",
            capture,
        ])
        .into_iter()
        .chain(s(extra))
        .collect::<Vec<_>>(),
    )
    .await
    .expect("start lb");
    lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
        .await
        .unwrap_or_else(|| panic!("lb did not start: {:#?}", lb.transcript()));
    let mut health_lines = 0;
    for (server_mode, client_mode) in [("recv", "send"), ("send", "recv")] {
        // Nothing listens yet: wait until the checker has the backend down, so that the
        // next "up" is this server's.
        wait_for_lines(
            &lb,
            "\"to\":\"down\"",
            health_lines + 1,
            "backend never went down",
        )
        .await;
        let mut server = NsProcess::spawn(
            topo.namespace(Host::Server(0)),
            Path::new("python3"),
            &s(&[
                "-c",
                PY_SERVER,
                server_mode,
                &PORT.to_string(),
                &TOTAL.to_string(),
            ]),
        )
        .await
        .expect("python server");
        server
            .wait_for_line(|l| l == "listening", WAIT)
            .await
            .expect("server listens");
        // The backend was down while nothing listened: wait until a check sees it up.
        health_lines += 1;
        wait_for_lines(&lb, "\"to\":\"up\"", health_lines, "backend never came up").await;
        let mut client = NsProcess::spawn(
            topo.namespace(Host::Client(0)),
            Path::new("python3"),
            &s(&[
                "-c",
                PY_CLIENT,
                client_mode,
                &lb_ip,
                "20000",
                &TOTAL.to_string(),
            ]),
        )
        .await
        .expect("python client");
        let long = Duration::from_secs(120);
        let c = client.wait_exit(long).await.expect("wait");
        let sv = server.wait_exit(long).await.expect("wait");
        let (Some(c), Some(sv)) = (c, sv) else {
            panic!(
                "{client_mode} did not finish: client {:#?} server {:#?} lb {:#?}",
                client.transcript(),
                server.transcript(),
                lb.transcript()
            );
        };
        assert!(
            c.success() && sv.success(),
            "{:#?} {:#?}",
            client.transcript(),
            server.transcript()
        );
        let last = |p: &NsProcess| {
            p.transcript()
                .iter()
                .rev()
                .find(|l| !l.stderr)
                .map(|l| l.text.clone())
                .unwrap_or_default()
        };
        let (cl, sl) = (last(&client), last(&server));
        assert!(cl.starts_with(&format!("{TOTAL} ")), "client: {cl}");
        assert_eq!(cl, sl, "{client_mode} through the balancer ({offloads:?})");
    }
    let status = lb.stop(Duration::from_secs(5)).await.expect("stop");
    assert!(status.success(), "{:#?}", lb.transcript());
    let stop_line = lb
        .transcript()
        .into_iter()
        .find(|l| l.text.contains("raw balancer stopping"))
        .expect("stop line");
    assert!(
        !stop_line.text.contains("send_failed") && !stop_line.text.contains("too_big"),
        "{}",
        stop_line.text
    );
    let direct = json_field(&stop_line.text, "sent_direct");
    let routed = json_field(&stop_line.text, "sent_routed");
    match path {
        // Only each connection's first SYN (and a few frames before a hop is confirmed)
        // may go routed.
        SendPath::Direct => assert!(
            direct > 10 * routed.max(1),
            "direct {direct} routed {routed}: {}",
            stop_line.text
        ),
        SendPath::Routed => assert!(
            direct == 0 && routed > 1000,
            "direct {direct} routed {routed}: {}",
            stop_line.text
        ),
    }
    topo.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_with_default_offloads() {
    if !root_or_skip("bulk_100mb_arrives_intact_with_default_offloads") {
        return;
    }
    bulk(Offloads::Default, "packet", &[], SendPath::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_through_the_routed_path_with_default_offloads() {
    if !root_or_skip("bulk_100mb_arrives_intact_through_the_routed_path_with_default_offloads") {
        return;
    }
    bulk(
        Offloads::Default,
        "packet",
        &["--send", "routed"],
        SendPath::Routed,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_through_the_raw_socket_capture_and_a_sender_thread() {
    if !root_or_skip("bulk_100mb_arrives_intact_through_the_raw_socket_capture_and_a_sender_thread")
    {
        return;
    }
    bulk(
        Offloads::Default,
        "raw",
        &["--send-thread"],
        SendPath::Routed,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_with_offloads_off() {
    if !root_or_skip("bulk_100mb_arrives_intact_with_offloads_off") {
        return;
    }
    bulk(
        Offloads::Off,
        "packet",
        &["--send-thread"],
        SendPath::Direct,
    )
    .await;
}

#[test]
fn usage_errors_are_clear_and_exit_2() {
    let backend = ["--source-ip", "10.0.0.1", "--backend", "10.0.0.11:80"];
    for (args, says) in [
        (&["10.0.0.1", "10.0.0.11"][..], "IP PORT"),
        (&["--backend", "10.0.0.11:80"][..], "--source-ip"),
        (
            &[&backend[..], &["--capture", "raw", "--send", "direct"]].concat()[..],
            "--send direct needs --capture packet",
        ),
        // The shared health check resolve refuses a timeout not below the interval.
        (
            &[
                &backend[..],
                &["--health-timeout", "2s", "--health-interval", "2s"],
            ]
            .concat()[..],
            "must be shorter than --health-interval",
        ),
    ] {
        let err = usage_error(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Runs `l4lb raw ARGS` expecting a usage error; returns its one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .arg("raw")
        .args(args)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line: {err}"
    );
    err
}

#[test]
fn port_zero_and_a_batch_out_of_range_are_usage_errors() {
    let base = ["--source-ip", "127.0.0.1", "--backend", "127.0.0.1:7000"];
    let err = usage_error(&[&base[..], &["--port", "0"]].concat());
    assert!(err.contains("--port must be from 1 to 65535"), "{err}");
    for batch in ["0", "100000000"] {
        let err = usage_error(&[&base[..], &["--batch", batch]].concat());
        assert!(err.contains("--batch must be from 1 to 1024"), "{err}");
    }
}

#[test]
fn a_source_ip_that_is_not_this_hosts_is_a_usage_error() {
    // 192.0.2.0/24 is TEST-NET-1: documentation only, never a host's address.
    let err = usage_error(&["--source-ip", "192.0.2.77", "--backend", "127.0.0.1:7000"]);
    assert!(
        err.contains("--source-ip 192.0.2.77 is not an address of this host"),
        "{err}"
    );
}

/// One client, the lb and one server, without the RST-drop rule (the firewall tests check
/// what the balancer itself installs).
async fn one_server_without_rst_drop() -> Topology {
    let spec = TopologySpec {
        clients: 1,
        servers: 1,
        rst_drop: false,
        ..TopologySpec::default()
    };
    Topology::build(&spec).await.expect("topology")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_without_the_rst_drop_rule_and_installs_and_removes_it_when_asked() {
    if !root_or_skip("refuses_without_the_rst_drop_rule") {
        return;
    }
    let topo = one_server_without_rst_drop().await;
    let lb_ip = topo.addr(Host::Lb).to_string();
    let backend = format!("{}:{CHAT_PORT}", topo.addr(Host::Server(0)));
    let base = s(&["raw", "--source-ip", &lb_ip, "--backend", &backend]);
    let mut refused = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &base)
        .await
        .expect("spawn");
    let status = refused.wait_exit(WAIT).await.expect("wait").expect("exits");
    assert!(!status.success());
    let text: String = refused
        .transcript()
        .iter()
        .map(|l| l.text.clone() + "\n")
        .collect();
    assert!(
        text.contains("iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP"),
        "{text}"
    );
    let rules = |topo: &Topology| {
        let ns = topo.namespace(Host::Lb).clone();
        async move {
            let out = ns
                .command("iptables")
                .args(["-S", "OUTPUT"])
                .output()
                .await
                .expect("iptables");
            let raw = ns
                .command("iptables")
                .args(["-t", "raw", "-S", "PREROUTING"])
                .output()
                .await
                .expect("iptables");
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&raw.stdout)
        }
    };
    let mut args = base.clone();
    args.push("--install-rst-drop".into());
    let mut lb = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &args)
        .await
        .expect("spawn");
    lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
        .await
        .unwrap_or_else(|| panic!("did not start: {:#?}", lb.transcript()));
    let during = rules(&topo).await;
    // Each rule carries its owner's tag before the target.
    let tag = format!(
        "-m comment --comment \"l4lb raw pid={} port=20000\"",
        lb.pid()
    );
    for rule in ["--tcp-flags RST RST", "--mark 0x4c34", "--dport 20000"] {
        assert!(
            during.lines().any(|l| l.contains(rule) && l.contains(&tag)),
            "{rule} tagged {tag}: {during}"
        );
    }
    let status = lb.stop(Duration::from_secs(5)).await.expect("stop");
    assert!(status.success(), "{:#?}", lb.transcript());
    let after = rules(&topo).await;
    assert!(
        !after.contains("RST") && !after.contains("mark") && !after.contains("20000"),
        "left behind: {after}"
    );
    topo.teardown().await.expect("teardown");
}

/// The `-A` lines of `iptables-save` in `ns`, each prefixed with its table (the header,
/// counters and empty tables a run may create are left out).
async fn saved_rules(ns: &l4lb_harness::netns::Namespace) -> Vec<String> {
    let out = ns
        .command("iptables-save")
        .output()
        .await
        .expect("iptables-save");
    assert!(out.status.success(), "{out:?}");
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if line.starts_with("-A ") {
            rules.push(format!("{table} {line}"));
        }
    }
    rules
}

/// `kill -9` leaves the balancer's rules behind; the next start removes them before adding
/// its own (no second copy), its SIGTERM removes its own, and the namespace's rules are as
/// before: an `l4lb proxy` on the same address then gets its connections (a leftover
/// PREROUTING drop would eat their SYNs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_of_a_killed_balancer_are_removed_by_the_next_start() {
    if !root_or_skip("rules_of_a_killed_balancer_are_removed_by_the_next_start") {
        return;
    }
    let topo = one_server_without_rst_drop().await;
    let server = start_chat_server(&topo, 0).await;
    let lb_ns = topo.namespace(Host::Lb).clone();
    let lb_ip = topo.addr(Host::Lb).to_string();
    let backend = format!("{}:{CHAT_PORT}", topo.addr(Host::Server(0)));
    let args = s(&[
        "raw",
        "--source-ip",
        &lb_ip,
        "--backend",
        &backend,
        "--install-rst-drop",
    ]);
    let before = saved_rules(&lb_ns).await;
    let start = || async {
        let lb = NsProcess::spawn(&lb_ns, Path::new(BIN), &args)
            .await
            .expect("spawn");
        lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
            .await
            .unwrap_or_else(|| panic!("did not start: {:#?}", lb.transcript()));
        lb
    };
    let mut first = start().await;
    let owned = saved_rules(&lb_ns).await;
    let tagged = |rules: &[String]| rules.iter().filter(|r| r.contains("l4lb raw pid=")).count();
    assert_eq!(tagged(&owned), 4, "{owned:#?}");
    first
        .signal(l4lb_harness::process::Signal::Kill)
        .expect("kill -9");
    first.wait_exit(WAIT).await.expect("wait").expect("exits");
    assert_eq!(
        tagged(&saved_rules(&lb_ns).await),
        4,
        "kill -9 runs no teardown"
    );
    let mut second = start().await;
    let during = saved_rules(&lb_ns).await;
    assert_eq!(tagged(&during), 4, "one copy of each rule: {during:#?}");
    let pid = second.pid();
    assert!(
        during
            .iter()
            .filter(|r| r.contains("l4lb raw pid="))
            .all(|r| r.contains(&format!("pid={pid} "))),
        "the dead balancer's rules are gone: {during:#?}"
    );
    let status = second.stop(Duration::from_secs(5)).await.expect("stop");
    assert!(status.success(), "{:#?}", second.transcript());
    assert_eq!(saved_rules(&lb_ns).await, before);

    let listen = format!("{lb_ip}:20000");
    let mut proxy = NsProcess::spawn(
        &lb_ns,
        Path::new(BIN),
        &s(&["proxy", "--listen", &listen, "--backend", &backend]),
    )
    .await
    .expect("spawn proxy");
    proxy
        .wait_for_line(|l| l.contains("proxy listening"), WAIT)
        .await
        .unwrap_or_else(|| panic!("proxy did not start: {:#?}", proxy.transcript()));
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let reply = topo
        .namespace(Host::Client(0))
        .run(move || -> std::io::Result<String> {
            let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            c.write_all(b"[t] hello\n")?;
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .expect("enter client");
    assert!(
        reply.as_ref().is_ok_and(|r| r.contains("hello")),
        "the proxy got no connection: {reply:?}"
    );
    let _ = proxy.stop(Duration::from_secs(5)).await;
    let mut server = server;
    let _ = server.stop(Duration::from_secs(2)).await;
    topo.teardown().await.expect("teardown");
}
