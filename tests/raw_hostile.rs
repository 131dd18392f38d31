//! `l4lb raw` under hostile or stale traffic (issue #14), in network namespaces (root).
//!
//! Spoofed segments come from `support::spoof` (raw `IP_HDRINCL` sockets opened inside a
//! test namespace). Every spoofed source is either a host of the topology speaking for
//! itself (a client's or a server's own address) or an address of the test subnet that
//! no host has (10.0.0.200-.250); every flood is bounded (at most 100,000 segments, at
//! most 10 s). Ground truth comes from the hosts' kernels (sock_diag) and the clients'
//! own output, next to the balancer's stats endpoint.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::sockets;
use l4lb_harness::topology::{Host, Topology, TopologySpec};
use support::spoof::{self, flags, Segment};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_rst_does_not_kill_a_live_session() {
    if !root_or_skip("a_blind_rst_does_not_kill_a_live_session") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = lab.lb_ip();
    let mut rng = fastrand::Rng::with_seed(14);
    let mut failures = Vec::new();
    let cases = [
        "RST with the client's 4-tuple, sequence 2^31 away from the client's next",
        "RST with the client's 4-tuple and next sequence, wrong TCP checksum",
        "RST from the server's address to the session's NAT port, random sequence",
        "sweep of RSTs from the server's address over every NAT port, random sequences",
    ];
    for (k, case) in cases.iter().enumerate() {
        let mut session = lab.join(&format!("blind{k}")).await;
        let seen = talk_and_sniff(&lab, &mut session, "before").await;
        let next = seen.seq.wrapping_add(seen.payload_len as u32);
        let server_ns = lab.topo.namespace(Host::Server(session.server));
        let server = SocketAddrV4::new(lab.server_ip(session.server), CHAT_PORT);
        let drops_before = total_drops(&lab.drops());
        let (ns, segments) = match k {
            0 => {
                let mut seg =
                    Segment::new(seen.src, seen.dst, flags::RST, next.wrapping_add(1 << 31));
                seg.window = 0;
                (lab.topo.namespace(Host::Client(0)), vec![seg])
            }
            1 => {
                let mut seg = Segment::new(seen.src, seen.dst, flags::RST, next);
                seg.window = 0;
                seg.bad_checksum = true;
                (lab.topo.namespace(Host::Client(0)), vec![seg])
            }
            2 => {
                let nat = SocketAddrV4::new(lb, session.nat.port());
                (
                    server_ns,
                    vec![Segment::new(server, nat, flags::RST, rng.u32(..))],
                )
            }
            _ => (
                server_ns,
                (NAT_LOW..=NAT_HIGH)
                    .map(|p| {
                        Segment::new(server, SocketAddrV4::new(lb, p), flags::RST, rng.u32(..))
                    })
                    .collect(),
            ),
        };
        let count = segments.len();
        let sent = spoof::send(ns, segments, Duration::from_millis(500)).await;
        assert_eq!(sent, count, "{case}: the spoofer could not send everything");
        sleep(Duration::from_millis(300)).await;
        let alive = echoed(&mut session, "after", ECHO).await;
        sleep(SNAPSHOT).await;
        let drops_after = lab.drops();
        let counted = total_drops(&drops_after) - drops_before;
        let rows = lab.metric("l4lb_raw_rows ");
        if !alive {
            failures.push(format!(
                "{case} ({count} sent): the session died (no echo within {ECHO:?}); \
                 l4lb_raw_rows {rows}, drops {drops_after:?}"
            ));
        } else if counted < count as f64 {
            failures.push(format!(
                "{case} ({count} sent): session lives but only {counted} drop(s) counted; \
                 drops {drops_after:?}"
            ));
        }
        let _ = session.client.stop(Duration::from_secs(2)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} blind RST attacks were not survived and counted:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_window_rst_closes_the_session_for_both_ends() {
    if !root_or_skip("an_in_window_rst_closes_the_session_for_both_ends") {
        return;
    }
    let lab = Lab::start(1, Backend::ResetAfterOneLine, &[]).await;
    let mut session = lab.join("victim").await;
    assert!(
        echoed(&mut session, "hello", WAIT).await,
        "no echo from the resetting server: client {:#?} server {:#?}",
        lines_of(&session.client),
        lines_of(&lab.servers[0])
    );
    let status = session
        .client
        .wait_exit(Duration::from_secs(2))
        .await
        .expect("wait")
        .unwrap_or_else(|| {
            panic!(
                "the backend's in-window RST did not reach the client within 2s: client {:#?}",
                lines_of(&session.client)
            )
        });
    assert_eq!(status.code(), Some(1), "{:#?}", lines_of(&session.client));
    assert!(
        lines_of(&session.client)
            .iter()
            .any(|l| l.contains("Server disconnected")),
        "no disconnect line: {:#?}",
        lines_of(&session.client)
    );
    // The snapshot is published about once a second: wait for the free to show.
    let deadline = Instant::now() + WAIT;
    while lab.metric("l4lb_raw_rows_freed_total{reason=\"rst\"}") < 1.0
        || lab.metric("l4lb_raw_rows ") != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the reset session's row was not freed as an RST: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_flag_combinations_open_no_row() {
    if !root_or_skip("invalid_flag_combinations_open_no_row") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
    let mut rng = fastrand::Rng::with_seed(3);
    let kinds = [
        ("SYN+FIN", flags::SYN | flags::FIN),
        ("SYN+RST", flags::SYN | flags::RST),
        ("no flags", 0),
        ("FIN without ACK", flags::FIN),
    ];
    let mut failures = Vec::new();
    sleep(SNAPSHOT).await;
    for (name, bits) in kinds {
        let before = lab.metrics();
        let segments: Vec<Segment> = (0..3)
            .map(|_| Segment::new(unused_source(&mut rng), lb, bits, rng.u32(..)))
            .collect();
        let sent = spoof::send(
            lab.topo.namespace(Host::Client(0)),
            segments,
            Duration::ZERO,
        )
        .await;
        assert_eq!(sent, 3, "{name}: the spoofer could not send");
        sleep(SNAPSHOT).await;
        let after = lab.metrics();
        let created = |t: &str| metric_in(t, "l4lb_raw_rows_created_total ");
        let forwarded = |t: &str| metric_in(t, "l4lb_raw_packets_total{direction=\"to_backend\"}");
        let rows = metric_in(&after, "l4lb_raw_rows ") - metric_in(&before, "l4lb_raw_rows ");
        let sessions = lab.all_nat_sessions().await;
        let opened = created(&after) - created(&before);
        let to_backend = forwarded(&after) - forwarded(&before);
        if opened != 0.0
            || rows != 0.0
            || to_backend != 0.0
            || sessions.iter().any(|v| !v.is_empty())
        {
            failures.push(format!(
                "{name} (3 sent): {opened} row(s) created, l4lb_raw_rows +{rows}, \
                 {to_backend} datagram(s) forwarded to a backend, server sessions {sessions:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid flag combinations to port {LB_PORT} reached the NAT table:\n  {}",
        failures.join("\n  ")
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_joins_within_a_second_during_a_syn_flood() {
    if !root_or_skip("a_real_client_joins_within_a_second_during_a_syn_flood") {
        return;
    }
    const FLOOD: usize = 100_000;
    const OVER: Duration = Duration::from_secs(8);
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
    let mut rng = fastrand::Rng::with_seed(4);
    let segments: Vec<Segment> = (0..FLOOD)
        .map(|_| Segment::new(unused_source(&mut rng), lb, flags::SYN, rng.u32(..)))
        .collect();
    let ns = lab.topo.namespace(Host::Client(0)).clone();
    let started = Instant::now();
    let flood = tokio::spawn(async move { spoof::send(&ns, segments, OVER).await });
    // A join every 0.5 s, during the flood and for 2 s after it.
    let mut tasks = Vec::new();
    let mut joins = 0;
    while started.elapsed() < OVER + Duration::from_secs(2) {
        let at = started.elapsed();
        let nick = format!("real{joins}");
        joins += 1;
        let ns = lab.topo.namespace(Host::Client(0)).clone();
        let lb_ip = lab.lb_ip().to_string();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let args = s(&["chat-client", &lb_ip, "20000", &nick]);
            let client = NsProcess::spawn(&ns, Path::new(BIN), &args)
                .await
                .expect("start chat-client");
            let mut session = Session {
                client,
                nick: nick.clone(),
                server: 0,
                nat: lb,
            };
            let left = Duration::from_secs(1).saturating_sub(t0.elapsed());
            let ok = echoed(&mut session, "hi", left).await;
            let _ = session.client.stop(Duration::from_secs(1)).await;
            let said: Vec<String> = lines_of(&session.client)
                .into_iter()
                .filter(|l| !l.contains("\"level\""))
                .collect();
            (!ok).then(|| {
                format!(
                    "{nick} started at +{:.1}s: no echo within 1s (client said {said:?})",
                    at.as_secs_f64()
                )
            })
        }));
        sleep(Duration::from_millis(500)).await;
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.expect("join task"));
    }
    let sent = flood.await.expect("flood task");
    let flood_took = started.elapsed();
    let drops = lab.drops();
    assert!(
        failures.is_empty(),
        "{} of {joins} real clients could not join within 1s during/after a flood of {sent} \
         spoofed SYNs ({flood_took:.1?} incl. 2s after); drops {drops:?}:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_evicted_session_is_told_not_left_hanging() {
    if !root_or_skip("an_idle_evicted_session_is_told_not_left_hanging") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &["--idle-timeout", "2s"]).await;
    let mut session = lab.join("sleeper").await;
    assert!(
        echoed(&mut session, "awake", WAIT).await,
        "no echo: {:#?}",
        lines_of(&session.client)
    );
    // Silent past the idle timeout, until the row is gone.
    let deadline = Instant::now() + WAIT;
    sleep(Duration::from_secs(2)).await;
    while lab.metric("l4lb_raw_rows_freed_total{reason=\"idle_timeout\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the idle row was never evicted: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    let _ = session.client.send_line("still there?").await;
    let bound = Duration::from_secs(2);
    let told = session
        .client
        .wait_for_line(|l| l.contains("Server disconnected"), bound)
        .await
        .is_some();
    let mut server_gone = false;
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !lab
            .nat_sessions(session.server)
            .await
            .contains(&session.nat)
        {
            server_gone = true;
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        told && server_gone,
        "after idle eviction (--idle-timeout 2s) and a new line, within {bound:?}: \
         client told: {told} (output {:#?}); server s{} socket from {} gone: {server_gone}; \
         freed: {}",
        lines_of(&session.client),
        session.server + 1,
        session.nat,
        lab.metric("l4lb_raw_rows_freed_total{reason=\"idle_timeout\"}")
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_an_unknown_flow_gets_a_reset() {
    if !root_or_skip("a_segment_of_an_unknown_flow_gets_a_reset") {
        return;
    }
    let mut lab = Lab::start(3, Backend::Chat, &[]).await;
    let mut session = lab.join("orphan").await;
    assert!(
        echoed(&mut session, "before restart", WAIT).await,
        "no echo: {:#?}",
        lines_of(&session.client)
    );
    lab.restart_lb().await;
    sleep(SNAPSHOT).await;
    assert_eq!(
        lab.metric("l4lb_raw_rows "),
        0.0,
        "a fresh balancer has rows"
    );
    let _ = session.client.send_line("after restart").await;
    let bound = Duration::from_secs(3);
    let exited = session.client.wait_exit(bound).await.expect("wait");
    sleep(SNAPSHOT).await;
    assert!(
        exited.is_some(),
        "a data segment of a flow the balancer has no row for got no RST: the client still \
         hangs {bound:?} later (output {:#?}); drops {:?}",
        lines_of(&session.client),
        lab.drops()
    );
    assert!(
        lines_of(&session.client)
            .iter()
            .any(|l| l.contains("Server disconnected")),
        "{:#?}",
        lines_of(&session.client)
    );
    lab.stop().await;
}
