//! What the harness puts in the kernel's filters: the lb's RST-drop rule and injected
//! faults (drops, rate limits, netem).

use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use l4lb_harness::firewall;
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

use crate::topology_without_rst_drop;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_drop_rule_is_in_lb_and_nowhere_else() {
    if !root_or_skip("rst_drop_rule_is_in_lb_and_nowhere_else") {
        return;
    }
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    for ns in topo.namespaces() {
        let present = firewall::rst_drop_present(ns).await.unwrap();
        assert_eq!(present, ns == topo.namespace(Host::Lb), "{}", ns.name);
    }
    let without = Topology::build(&TopologySpec {
        rst_drop: false,
        ..TopologySpec::default()
    })
    .await
    .unwrap();
    assert!(!firewall::rst_drop_present(without.namespace(Host::Lb))
        .await
        .unwrap());
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_drop_rate_limit_and_netem_detection() {
    if !root_or_skip("faults_drop_rate_limit_and_netem_detection") {
        return;
    }
    use l4lb_harness::faults;
    let topo = topology_without_rst_drop().await;
    let s1 = topo.namespace(Host::Server(0)).clone();
    let client = topo.namespace(Host::Client(0)).clone();
    let target = SocketAddrV4::new(topo.addr(Host::Server(0)), 7500);
    let _listener = s1
        .run(|| TcpListener::bind("0.0.0.0:7500"))
        .unwrap()
        .unwrap();

    // Dropping everything on s1's link: a connect times out; removing it heals. The rules
    // live in lan's bridge (on the wire), none in s1 itself.
    let port = topo.plan().link(Host::Server(0)).unwrap().lan_if.clone();
    faults::drop_fraction(&topo, Host::Server(0), 1.0)
        .await
        .unwrap();
    let rules = firewall::iptables(topo.lan(), &["-S"]).await.unwrap();
    for direction in ["--physdev-in", "--physdev-out"] {
        assert!(
            rules.contains(&format!(
                "-A FORWARD -m physdev {direction} {port} -m statistic --mode random --probability 1"
            )),
            "{rules}"
        );
    }
    assert!(!firewall::iptables(&s1, &["-S"])
        .await
        .unwrap()
        .contains("statistic"));
    let c = client.clone();
    let err = c
        .run(move || TcpStream::connect_timeout(&target.into(), Duration::from_millis(300)))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // Loss is not a local send error: s1 can still send, the packet is lost afterwards.
    // (A DROP in s1's OUTPUT chain made this EPERM, and made Linux give up a half-open
    // TCP connection whose SYN-ACK retransmission failed to send.)
    let client_addr = SocketAddrV4::new(topo.addr(Host::Client(0)), 7501);
    let sent = s1
        .run(move || {
            let udp = std::net::UdpSocket::bind("0.0.0.0:0")?;
            udp.send_to(b"lost on the wire", client_addr)
        })
        .unwrap();
    assert_eq!(sent.expect("sending from s1 under loss must not fail"), 16);
    faults::remove_drop_fraction(&topo, Host::Server(0), 1.0)
        .await
        .unwrap();
    assert!(!firewall::iptables(topo.lan(), &["-S"])
        .await
        .unwrap()
        .contains("statistic"));
    client
        .run(move || TcpStream::connect_timeout(&target.into(), Duration::from_secs(2)))
        .unwrap()
        .expect("connect after the drop rule is gone");

    // A tbf rate limit shows up as s1's root qdisc and goes away again.
    faults::rate_limit(&s1, "eth0", 1000).await.unwrap();
    let qdisc = s1
        .std_command("tc")
        .args(["qdisc", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&qdisc.stdout).contains("tbf"));
    faults::clear_qdisc(&s1, "eth0").await.unwrap();
    let qdisc = s1
        .std_command("tc")
        .args(["qdisc", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&qdisc.stdout).contains("tbf"));

    // netem: either it works, or it says "unsupported" cleanly (this kernel: unsupported).
    let supported = faults::netem_supported();
    let result = faults::netem(&s1, "eth0", &["delay", "5ms"]).await;
    if supported {
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        assert_eq!(
            err.downcast_ref(),
            Some(&faults::FaultError::NetemUnsupported),
            "{err:#}"
        );
        assert!(err.to_string().contains("no netem qdisc"), "{err}");
    }
    eprintln!("netem supported on this kernel: {supported}");
}
