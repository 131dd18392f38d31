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
