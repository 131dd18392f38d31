//! Socket evidence from inside a namespace: sock_diag and clearing TIME_WAIT sockets.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

use crate::topology_without_rst_drop;
/// The bench ends the TIME_WAIT sockets a path left: made here by closing the connecting
/// side first, on the namespace's loopback, then counted by `ss` before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_wait_sockets_are_cleared() {
    if !root_or_skip("time_wait_sockets_are_cleared") {
        return;
    }
    let topo = topology_without_rst_drop().await;
    let ns = topo.namespace(Host::Client(0));
    ns.run(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            drop(client); // FIN first: this side ends in TIME_WAIT
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut &accepted, &mut rest).unwrap();
        }
    })
    .unwrap();
    let count = || async {
        ns.run_tool("ss", &["-H", "-t", "state", "time-wait"], "iproute2")
            .await
            .unwrap()
            .lines()
            .count()
    };
    // The accepted sockets close as `accepted` drops; give their FINs a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while count().await < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no TIME_WAIT sockets made"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    l4lb_harness::bench::launch::clear_time_wait(ns)
        .await
        .unwrap();
    assert_eq!(count().await, 0);
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sock_diag_sees_established_and_listening_sockets() {
    if !root_or_skip("sock_diag_sees_established_and_listening_sockets") {
        return;
    }
    use l4lb_harness::sockets;
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let s1 = topo.namespace(Host::Server(0)).clone();
    assert!(sockets::established(&s1, 7400).await.unwrap().is_empty());
    let listener = s1
        .run(|| TcpListener::bind("0.0.0.0:7400"))
        .unwrap()
        .unwrap();
    assert_eq!(
        sockets::listening(&s1).await.unwrap(),
        vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7400)]
    );
    let target = SocketAddrV4::new(topo.addr(Host::Server(0)), 7400);
    let clients = topo
        .namespace(Host::Client(0))
        .run(move || {
            (0..2)
                .map(|_| {
                    TcpStream::connect_timeout(&target.into(), Duration::from_secs(3)).unwrap()
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    let accepted: Vec<_> = (0..2).map(|_| listener.accept().unwrap()).collect();
    let seen = sockets::established(&s1, 7400).await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for ((local, remote), c) in seen.iter().zip({
        let mut v: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        v.sort();
        v
    }) {
        assert_eq!(*local, target);
        assert_eq!(std::net::SocketAddr::V4(*remote), c);
    }
    // Nothing of s1's shows up in s2 or in the client's listening set.
    assert!(sockets::established(topo.namespace(Host::Server(1)), 7400)
        .await
        .unwrap()
        .is_empty());
    drop(accepted);
    drop(clients);
}
