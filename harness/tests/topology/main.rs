//! Namespace topology under root: build, traffic, firewall, teardown, sweep, processes.
//! Every test builds its own topology (its own prefix), so they run in parallel.

mod filters;
mod processes;
mod shape;
mod sockets;
mod teardown;
mod traffic;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use l4lb_harness::cleanup;
use l4lb_harness::netns::Namespace;
use l4lb_harness::topology::{Topology, TopologySpec};

/// Namespaces under /run/netns starting with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    cleanup::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The default topology without the lb's RST-drop rule: for tests of plain traffic and
/// processes, where that rule plays no part.
async fn topology_without_rst_drop() -> Topology {
    Topology::build(&TopologySpec {
        rst_drop: false,
        ..TopologySpec::default()
    })
    .await
    .unwrap()
}

/// Listens on `port` inside `server`, connects from `client`, and checks one echo
/// round trip; returns the peer address the server saw.
fn tcp_round_trip(
    client: &Namespace,
    server: &Namespace,
    server_addr: Ipv4Addr,
    port: u16,
) -> SocketAddrV4 {
    // The last round trip's server socket on this port may still be closing (the kernel
    // refuses the bind then, SO_REUSEADDR or not): try again for a moment.
    let listener = server
        .run(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            loop {
                match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    other => return other,
                }
            }
        })
        .unwrap()
        .expect("bind inside the server namespace");
    let accept = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
        peer
    });
    let reply = client
        .run(move || -> std::io::Result<[u8; 5]> {
            let target = SocketAddrV4::new(server_addr, port).into();
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"hello")?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf)?;
            Ok(buf)
        })
        .unwrap()
        .expect("connect and echo through the bridge");
    assert_eq!(&reply, b"hello");
    match accept.join().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("unexpected peer {other}"),
    }
}
