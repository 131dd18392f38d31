//! What a built topology holds: namespaces, addresses, and two at once kept apart.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

use crate::{namespaces_with, tcp_round_trip};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_topology_has_the_right_namespaces_and_addresses() {
    if !root_or_skip("default_topology_has_the_right_namespaces_and_addresses") {
        return;
    }
    let spec = TopologySpec {
        subnet: Ipv4Addr::new(192, 168, 0, 0),
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.unwrap();
    let prefix = topo.prefix().to_string();
    assert!(prefix.starts_with(&format!("l4lb-{}-", std::process::id())));
    let mut expected: Vec<String> = ["client1", "lb", "s1", "s2", "s3", "lan"]
        .iter()
        .map(|r| format!("{prefix}{r}"))
        .collect();
    expected.sort();
    assert_eq!(namespaces_with(&prefix), expected);
    assert_eq!(topo.addr(Host::Lb), Ipv4Addr::new(192, 168, 0, 1));
    assert_eq!(topo.addr(Host::Server(2)), Ipv4Addr::new(192, 168, 0, 13));
    assert_eq!(topo.addr(Host::Client(0)), Ipv4Addr::new(192, 168, 0, 101));
    // The kernel agrees: `ip -n <ns> -4 -o addr show eth0` lists the planned address.
    for &host in topo.hosts() {
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &topo.namespace(host).name,
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("inet {}/24", topo.addr(host))),
            "{host}: {text}"
        );
        let lo = std::process::Command::new("ip")
            .args([
                "-n",
                &topo.namespace(host).name,
                "-o",
                "link",
                "show",
                "dev",
                "lo",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&lo.stdout).contains("UP"),
            "{host}: lo is down"
        );
    }
    topo.teardown().await.unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topologies_at_once_are_independent() {
    if !root_or_skip("two_topologies_at_once_are_independent") {
        return;
    }
    let spec = TopologySpec::default();
    let (a, b) = tokio::join!(Topology::build(&spec), Topology::build(&spec));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.prefix(), b.prefix());
    // Same addresses, different worlds: a listener in a's s1 is not reachable from b.
    assert_eq!(a.addr(Host::Server(0)), b.addr(Host::Server(0)));
    tcp_round_trip(
        a.namespace(Host::Client(0)),
        a.namespace(Host::Server(0)),
        a.addr(Host::Server(0)),
        7100,
    );
    let b_client = b.namespace(Host::Client(0)).clone();
    let target = SocketAddrV4::new(b.addr(Host::Server(0)), 7100);
    let _a_listener = a
        .namespace(Host::Server(0))
        .run(|| TcpListener::bind("0.0.0.0:7100"))
        .unwrap()
        .unwrap();
    let refused = b_client
        .run(move || TcpStream::connect_timeout(&target.into(), Duration::from_secs(2)))
        .unwrap();
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "b's s1 has no listener; reaching a's would be a leak"
    );
    tcp_round_trip(
        b.namespace(Host::Client(0)),
        b.namespace(Host::Server(0)),
        b.addr(Host::Server(0)),
        7100,
    );
    let (pa, pb) = (a.prefix().to_string(), b.prefix().to_string());
    drop(a);
    assert_eq!(namespaces_with(&pa), Vec::<String>::new());
    assert_eq!(
        namespaces_with(&pb).len(),
        6,
        "tearing a down must leave b alone"
    );
    tcp_round_trip(
        b.namespace(Host::Client(0)),
        b.namespace(Host::Server(1)),
        b.addr(Host::Server(1)),
        7101,
    );
}
