//! Chat end to end across namespaces (root): `l4lb chat-server` in `s1`, `l4lb
//! chat-client`s in `client1` and `client2`, talking through the `lan` bridge.

use std::net::Ipv4Addr;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::sockets;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const WAIT: Duration = Duration::from_secs(10);

fn lines(p: &NsProcess) -> String {
    p.transcript()
        .iter()
        .map(|l| format!("{}{}", if l.stderr { "err: " } else { "out: " }, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn expect(p: &NsProcess, what: &str, pred: impl Fn(&str) -> bool) {
    if p.wait_for_line(pred, WAIT).await.is_none() {
        panic!("never saw {what}; transcript:\n{}", lines(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_the_bridge() {
    if !root_or_skip("chat_across_the_bridge") {
        return;
    }
    let spec = TopologySpec {
        clients: 2,
        subnet: Ipv4Addr::new(192, 168, 0, 0),
        ..TopologySpec::default()
    };
    let topo = Topology::build(&spec).await.unwrap();
    let s1 = topo.namespace(Host::Server(0));
    let s1_addr = topo.addr(Host::Server(0)).to_string();
    let env = [("RUST_LOG", "info"), ("NO_COLOR", "1")];

    let mut server = NsProcess::spawn_env(
        s1,
        BIN.as_ref(),
        &["chat-server".into(), "7000".into()],
        &env,
    )
    .await
    .unwrap();
    expect(&server, "the server listening", |l| {
        l.contains("listening on")
    })
    .await;

    let client_args = |nick: &str| {
        vec![
            "chat-client".to_string(),
            s1_addr.clone(),
            "7000".into(),
            nick.into(),
        ]
    };
    let mut alice = NsProcess::spawn_env(
        topo.namespace(Host::Client(0)),
        BIN.as_ref(),
        &client_args("alice"),
        &env,
    )
    .await
    .unwrap();
    expect(&server, "alice connecting from client1's address", |l| {
        l == "Connected client IP: 192.168.0.101"
    })
    .await;
    let mut bob = NsProcess::spawn_env(
        topo.namespace(Host::Client(1)),
        BIN.as_ref(),
        &client_args("bob"),
        &env,
    )
    .await
    .unwrap();
    expect(&server, "bob connecting from client2's address", |l| {
        l == "Connected client IP: 192.168.0.102"
    })
    .await;

    // The kernel in s1 holds exactly these two connections.
    let held = sockets::established(s1, 7000).await.unwrap();
    let remotes: Vec<Ipv4Addr> = held.iter().map(|(_, r)| *r.ip()).collect();
    assert_eq!(
        remotes,
        vec![
            Ipv4Addr::new(192, 168, 0, 101),
            Ipv4Addr::new(192, 168, 0, 102)
        ]
    );

    // A line goes to every client, the sender included.
    alice.send_line("hello from client1").await.unwrap();
    expect(&alice, "alice's own echo", |l| {
        l == "[alice] hello from client1"
    })
    .await;
    expect(&bob, "alice's line at bob", |l| {
        l == "[alice] hello from client1"
    })
    .await;
    bob.send_line("hi alice").await.unwrap();
    expect(&alice, "bob's line at alice", |l| l == "[bob] hi alice").await;

    // `q` quits with 0.
    alice.send_line("q").await.unwrap();
    let status = alice
        .wait_exit(WAIT)
        .await
        .unwrap()
        .expect("alice exits after q");
    assert!(status.success(), "{status}: {}", lines(&alice));

    // The server going away: bob says so and exits non-zero.
    server.stop(Duration::from_secs(3)).await.unwrap();
    expect(&bob, "Server disconnected", |l| {
        l.starts_with("Server disconnected")
    })
    .await;
    let status = bob
        .wait_exit(WAIT)
        .await
        .unwrap()
        .expect("bob exits when the server is gone");
    assert!(!status.success());

    let prefix = topo.prefix().to_string();
    topo.teardown().await.unwrap();
    let left: Vec<String> = l4lb_harness::cleanup::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `l4lb topo up` prints its namespaces, and SIGINT or SIGTERM removes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topo_up_tears_down_on_sigint_and_sigterm() {
    if !root_or_skip("topo_up_tears_down_on_sigint_and_sigterm") {
        return;
    }
    let host = Topology::build(&TopologySpec::default()).await.unwrap();
    // Run it inside a namespace of our own, so nothing depends on the caller's network.
    let ns = host.namespace(Host::Client(0));
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let mut up = NsProcess::spawn(
            ns,
            BIN.as_ref(),
            &["topo".into(), "up".into(), "--servers".into(), "2".into()],
        )
        .await
        .unwrap();
        expect(&up, "the waiting line", |l| l.starts_with("waiting:")).await;
        let pid = up.pid();
        let prefix = format!("l4lb-{pid}-");
        let ours = || -> Vec<String> {
            l4lb_harness::cleanup::list_namespaces()
                .unwrap()
                .into_iter()
                .filter(|n| n.starts_with(&prefix))
                .collect()
        };
        assert_eq!(ours().len(), 5, "client1 lb s1 s2 lan: {:?}", ours());
        assert!(lines(&up).contains("ip netns exec"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        let status = up
            .wait_exit(WAIT)
            .await
            .unwrap()
            .expect("topo up exits on the signal");
        assert_eq!(status.code(), Some(0), "{signal}: {}", lines(&up));
        assert!(ours().is_empty(), "{signal} left {:?}", ours());
    }
}

/// `l4lb topo up --scenario FILE` builds the file's home (router, isp, carrier) and draws
/// it; a malformed file is refused with exit 2 before anything is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topo_up_builds_a_scenarios_home_and_draws_it() {
    if !root_or_skip("topo_up_builds_a_scenarios_home_and_draws_it") {
        return;
    }
    let host = Topology::build(&TopologySpec::default()).await.unwrap();
    let ns = host.namespace(Host::Client(0));
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/033-carrier-nat-mapping-expires.toml"
    );
    let mut up = NsProcess::spawn(
        ns,
        BIN.as_ref(),
        &["topo".into(), "up".into(), "--scenario".into(), file.into()],
    )
    .await
    .unwrap();
    expect(&up, "the waiting line", |l| l.starts_with("waiting:")).await;
    let pid = up.pid();
    let prefix = format!("l4lb-{pid}-");
    let ours = || -> Vec<String> {
        l4lb_harness::cleanup::list_namespaces()
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    };
    for role in ["router", "isp", "carrier", "crouter2", "lb", "s2"] {
        assert!(
            ours().iter().any(|n| n.ends_with(&format!("-{role}"))),
            "no {role}: {:?}",
            ours()
        );
    }
    let text = lines(&up);
    assert!(
        text.contains("carrier-grade NAT 198.51.100.2 (idle mappings expire after 3s)"),
        "{text}"
    );
    assert!(
        text.contains("reaches the balancer at 203.0.113.2:20000 through the router"),
        "{text}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    up.wait_exit(WAIT)
        .await
        .unwrap()
        .expect("topo up exits on SIGTERM");
    assert!(ours().is_empty(), "left {:?}", ours());

    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bad-scenarios/home-uplink-mtu-too-small.toml"
    );
    let mut refused = NsProcess::spawn(
        ns,
        BIN.as_ref(),
        &["topo".into(), "up".into(), "--scenario".into(), bad.into()],
    )
    .await
    .unwrap();
    let status = refused.wait_exit(WAIT).await.unwrap().expect("exits");
    assert_eq!(status.code(), Some(2), "{}", lines(&refused));
    assert!(
        lines(&refused).contains("uplink_mtu 500 is out of range"),
        "{}",
        lines(&refused)
    );
}
