//! 100 MB each way arrives intact through every capture and send path, with offloads on
//! and off.

use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::topology::{Host, Offloads, Topology, TopologySpec};

use crate::{s, wait_for_lines, BIN, WAIT};
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
    if extra.contains(&"ring") {
        assert!(
            lb.transcript()
                .iter()
                .any(|l| l.text.contains("\"event\":\"receive_ring\"")),
            "--receive ring but no ring mapped: {:#?}",
            lb.transcript()
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_through_a_receive_ring_with_default_offloads() {
    if !root_or_skip("bulk_100mb_arrives_intact_through_a_receive_ring_with_default_offloads") {
        return;
    }
    // Super-packets are larger than a slot: they come through the socket's queue.
    bulk(
        Offloads::Default,
        "packet",
        &["--receive", "ring"],
        SendPath::Direct,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_100mb_arrives_intact_through_a_receive_ring_with_offloads_off() {
    if !root_or_skip("bulk_100mb_arrives_intact_through_a_receive_ring_with_offloads_off") {
        return;
    }
    bulk(
        Offloads::Off,
        "packet",
        &["--receive", "ring"],
        SendPath::Direct,
    )
    .await;
}
