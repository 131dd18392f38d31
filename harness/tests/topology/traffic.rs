//! Traffic through the bridge and the routed layout, and a link cut and restored.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::home::{HomeSpec, Site};
use l4lb_harness::topology::{Host, Layout, Offloads, Topology, TopologySpec};

use crate::tcp_round_trip;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_works_from_client_to_every_server_through_the_bridge() {
    if !root_or_skip("tcp_works_from_client_to_every_server_through_the_bridge") {
        return;
    }
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    for i in 0..3 {
        let peer = tcp_round_trip(
            topo.namespace(Host::Client(0)),
            topo.namespace(Host::Server(i)),
            topo.addr(Host::Server(i)),
            7000 + i as u16,
        );
        assert_eq!(*peer.ip(), topo.addr(Host::Client(0)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_forwards_frames_without_netfilter_hooks() {
    if !root_or_skip("the_switch_forwards_frames_without_netfilter_hooks") {
        return;
    }
    let switch = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    assert!(
        std::path::Path::new(switch).exists(),
        "{switch} is missing: br_netfilter is not loaded (modprobe br_netfilter; the loss \
         scenarios need it too)"
    );
    let host_before = std::fs::read_to_string(switch).unwrap();
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let read = |path: &'static str| {
        topo.lan()
            .run(move || std::fs::read_to_string(path))
            .unwrap()
            .unwrap()
    };
    assert_eq!(read(switch).trim(), "0", "bridged frames skip iptables");
    assert_eq!(
        read("/proc/sys/net/bridge/bridge-nf-call-arptables").trim(),
        "0"
    );
    // The host's own setting is left alone.
    assert_eq!(std::fs::read_to_string(switch).unwrap(), host_before);
    topo.teardown().await.unwrap();
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_layout_forwards_through_lb() {
    if !root_or_skip("routed_layout_forwards_through_lb") {
        return;
    }
    let spec = TopologySpec {
        clients: 2,
        servers: 2,
        layout: Layout::Routed,
        subnet: Ipv4Addr::new(10, 7, 0, 0),
        mtu: Some(1400),
        offloads: Offloads::Off,
        rst_drop: false,
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.unwrap();
    assert_eq!(topo.addr(Host::Server(1)), Ipv4Addr::new(10, 7, 1, 12));
    assert_eq!(topo.lb_backend_addr(), Ipv4Addr::new(10, 7, 1, 1));
    let peer = tcp_round_trip(
        topo.namespace(Host::Client(1)),
        topo.namespace(Host::Server(1)),
        topo.addr(Host::Server(1)),
        7200,
    );
    assert_eq!(
        *peer.ip(),
        Ipv4Addr::new(10, 7, 0, 102),
        "routed, not NATed"
    );
    let link = std::process::Command::new("ip")
        .args([
            "-n",
            &topo.namespace(Host::Server(0)).name,
            "-o",
            "link",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("mtu 1400"));
    let features = topo
        .namespace(Host::Lb)
        .std_command("ethtool")
        .args(["-k", "eth1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&features.stdout);
    assert!(text.contains("generic-receive-offload: off"), "{text}");
    assert!(text.contains("tcp-segmentation-offload: off"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_link_cuts_and_restores_traffic() {
    if !root_or_skip("set_link_cuts_and_restores_traffic") {
        return;
    }
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    topo.set_link(Host::Server(0), false).await.unwrap();
    let target = SocketAddrV4::new(topo.addr(Host::Server(0)), 7300);
    let err = topo
        .namespace(Host::Client(0))
        .run(move || TcpStream::connect_timeout(&target.into(), Duration::from_millis(300)))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    topo.set_link(Host::Server(0), true).await.unwrap();
    tcp_round_trip(
        topo.namespace(Host::Client(0)),
        topo.namespace(Host::Server(0)),
        topo.addr(Host::Server(0)),
        7300,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_router_forwards_its_port_masquerades_and_keeps_its_route_after_a_flap() {
    if !root_or_skip("a_home_router_forwards_its_port_masquerades_and_keeps_its_route_after_a_flap")
    {
        return;
    }
    let spec = TopologySpec {
        clients: 2,
        servers: 1,
        layout: Layout::Home,
        subnet: Ipv4Addr::new(192, 168, 1, 0),
        rst_drop: false,
        home: HomeSpec {
            sites: vec![Site::Outside, Site::Carrier],
            forward: Some(20000),
            ..HomeSpec::default()
        },
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.unwrap();
    let public = Ipv4Addr::new(203, 0, 113, 2);
    assert_eq!(topo.entry(0), public);
    // Through the port forward the lb sees the outside client's own address (DNAT only).
    let peer = tcp_round_trip(
        topo.namespace(Host::Client(0)),
        topo.namespace(Host::Lb),
        public,
        20000,
    );
    assert_eq!(*peer.ip(), Ipv4Addr::new(198, 51, 100, 101));
    // From behind the carrier it sees the carrier's public address (masqueraded).
    let peer = tcp_round_trip(
        topo.namespace(Host::Client(1)),
        topo.namespace(Host::Lb),
        public,
        20000,
    );
    assert_eq!(*peer.ip(), Ipv4Addr::new(198, 51, 100, 2));
    // A flap of the uplink drops the router's default route; the harness puts it back.
    topo.set_link(Host::Router, false).await.unwrap();
    topo.set_link(Host::Router, true).await.unwrap();
    let peer = tcp_round_trip(
        topo.namespace(Host::Client(0)),
        topo.namespace(Host::Lb),
        public,
        20000,
    );
    assert_eq!(*peer.ip(), Ipv4Addr::new(198, 51, 100, 101));
    topo.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wifi_access_point_is_one_cable_that_link_steps_can_cut() {
    if !root_or_skip("the_wifi_access_point_is_one_cable_that_link_steps_can_cut") {
        return;
    }
    let spec = TopologySpec {
        clients: 1,
        servers: 2,
        layout: Layout::Home,
        subnet: Ipv4Addr::new(192, 168, 1, 0),
        rst_drop: false,
        home: HomeSpec {
            sites: vec![Site::Inside],
            wifi: vec![Host::Server(1)],
            ..HomeSpec::default()
        },
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.unwrap();
    let (client, wired, wifi) = (Host::Client(0), Host::Server(0), Host::Server(1));
    tcp_round_trip(
        topo.namespace(client),
        topo.namespace(wifi),
        topo.addr(wifi),
        7301,
    );
    // A listener behind the access point, so a refused connect cannot pass for a cut.
    let _listener = topo
        .namespace(wifi)
        .run(|| std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 7302)))
        .unwrap()
        .expect("bind on the Wi-Fi host");
    topo.set_link(Host::WifiAp, false).await.unwrap();
    let cut = topo
        .namespace(client)
        .run(move || {
            let to = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 12), 7302);
            TcpStream::connect_timeout(&to.into(), Duration::from_millis(300))
        })
        .unwrap();
    assert!(
        cut.is_err(),
        "the Wi-Fi host is still reachable with its access point down"
    );
    // The wired server is not behind the access point.
    tcp_round_trip(
        topo.namespace(client),
        topo.namespace(wired),
        topo.addr(wired),
        7303,
    );
    topo.set_link(Host::WifiAp, true).await.unwrap();
    tcp_round_trip(
        topo.namespace(client),
        topo.namespace(wifi),
        topo.addr(wifi),
        7304,
    );
    topo.teardown().await.unwrap();
}
