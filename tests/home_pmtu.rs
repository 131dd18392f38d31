//! Path-MTU discovery through both balancers behind a home router (root): a download
//! from a LAN server to a client on the internet crosses a 1492-byte PPPoE uplink, so
//! the server's full-size segments are too big for it. The router says so with an ICMP
//! "fragmentation needed" to the balancer; the proxy's kernel socket learns from it,
//! and `l4lb raw` must relay it to the server (under full NAT the server is the real
//! sender). With a PMTU black hole the download stalls, which an MSS clamp on the
//! router cures: both shown here, so the relay is what makes the first test pass.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::topology::home::{HomeSpec, Site};
use l4lb_harness::topology::{Host, Layout, Topology, TopologySpec};

#[path = "support/mod.rs"]
mod support;

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const BULK_PORT: u16 = 9000;
const ADMIN: &str = "127.0.0.1:9111";
/// Bytes each download carries: many full-size segments.
const BYTES: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Balancer {
    Raw,
    Proxy,
}

async fn home(black_hole: bool, clamp: bool) -> Topology {
    Topology::build(&TopologySpec {
        clients: 1,
        servers: 1,
        layout: Layout::Home,
        subnet: Ipv4Addr::new(192, 168, 1, 0),
        rst_drop: true,
        home: HomeSpec {
            sites: vec![Site::Outside],
            uplink_mtu: Some(1492),
            pmtu_black_hole: black_hole,
            clamp_mss: clamp,
            ..HomeSpec::default()
        },
        ..TopologySpec::default()
    })
    .await
    .expect("home topology")
}

/// A server in s1 that sends `BYTES` to every connection that first sends one byte
/// (health checks send nothing and get nothing).
async fn start_bulk_server(topo: &Topology) {
    topo.namespace(Host::Server(0))
        .run_async(|| {
            let listener = TcpListener::bind(("0.0.0.0", BULK_PORT)).expect("bind");
            // A thread started here stays in this namespace.
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    std::thread::spawn(move || serve(conn));
                }
            });
        })
        .await
        .expect("bulk server");
}

fn serve(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut first = [0u8; 1];
    if conn.read_exact(&mut first).is_ok() {
        let block = vec![0x5a_u8; 64 << 10];
        for _ in 0..BYTES / block.len() {
            if conn.write_all(&block).is_err() {
                return;
            }
        }
    }
}

async fn start_balancer(topo: &Topology, kind: Balancer) -> NsProcess {
    let backend = SocketAddrV4::new(topo.addr(Host::Server(0)), BULK_PORT).to_string();
    let lb = topo.addr(Host::Lb);
    let args: Vec<String> = match kind {
        Balancer::Raw => support::raw_lab::raw_args(topo, 1, BULK_PORT, ADMIN, &[]),
        Balancer::Proxy => [
            "proxy",
            "--listen",
            &format!("{lb}:20000"),
            "--backend",
            &backend,
            "--health-interval",
            "1s",
            "--health-timeout",
            "900ms",
            "--admin",
            ADMIN,
        ]
        .map(String::from)
        .to_vec(),
    };
    let p = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &args)
        .await
        .expect("start the balancer");
    let ready = match kind {
        Balancer::Raw => "raw balancer running",
        Balancer::Proxy => "proxy listening",
    };
    p.wait_for_line(|l| l.contains(ready), Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("{kind:?} did not start: {:#?}", p.transcript()));
    p
}

/// Downloads from the outside client through the port forward; the bytes received
/// before the end or `stall` without a byte.
async fn download(topo: &Topology, stall: Duration) -> usize {
    let entry = SocketAddrV4::new(topo.entry(0), 20000);
    topo.namespace(Host::Client(0))
        .run_async(move || {
            let mut c = TcpStream::connect_timeout(&entry.into(), Duration::from_secs(5))
                .expect("connect through the port forward");
            c.set_read_timeout(Some(stall)).expect("timeout");
            c.write_all(b"g").expect("ask");
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0;
            while got < BYTES {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        })
        .await
        .expect("client")
}

/// Waits until the balancer holds a healthy backend (its first check passed).
async fn until_healthy(topo: &Topology) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = support::stats::fetch(topo.namespace(Host::Lb), ADMIN);
        if text
            .lines()
            .any(|l| l.starts_with("l4lb_backend_up") && l.ends_with(" 1"))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no healthy backend:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_through_a_pppoe_uplink_completes_through_both_balancers() {
    if !root_or_skip("a_download_through_a_pppoe_uplink_completes_through_both_balancers") {
        return;
    }
    for kind in [Balancer::Raw, Balancer::Proxy] {
        let topo = home(false, false).await;
        start_bulk_server(&topo).await;
        let lb = start_balancer(&topo, kind).await;
        until_healthy(&topo).await;
        let got = download(&topo, Duration::from_secs(3)).await;
        assert_eq!(
            got,
            BYTES,
            "{kind:?}: the download stalled after {got} bytes (path-MTU discovery broken); \
             balancer: {:#?}",
            lb.transcript()
        );
        if kind == Balancer::Raw {
            // The stats are published a few times a second, not per packet.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            loop {
                let text = support::stats::fetch(topo.namespace(Host::Lb), ADMIN);
                let relayed = support::stats::sample(&text, "l4lb_raw_icmp_relayed_total");
                if relayed.is_some_and(|n| n >= 1.0) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "raw relayed no ICMP fragmentation-needed: {relayed:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        drop(lb);
        topo.teardown().await.expect("teardown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pmtu_black_hole_stalls_a_download_and_an_mss_clamp_cures_it() {
    if !root_or_skip("a_pmtu_black_hole_stalls_a_download_and_an_mss_clamp_cures_it") {
        return;
    }
    for kind in [Balancer::Raw, Balancer::Proxy] {
        for clamp in [false, true] {
            let topo = home(true, clamp).await;
            start_bulk_server(&topo).await;
            let lb = start_balancer(&topo, kind).await;
            until_healthy(&topo).await;
            let got = download(&topo, Duration::from_secs(2)).await;
            if clamp {
                assert_eq!(got, BYTES, "{kind:?} with an MSS clamp stalled at {got}");
            } else {
                assert!(
                    got < BYTES,
                    "{kind:?}: all {got} bytes arrived through a PMTU black hole, so the \
                     black hole is not built"
                );
            }
            drop(lb);
            topo.teardown().await.expect("teardown");
        }
    }
}
