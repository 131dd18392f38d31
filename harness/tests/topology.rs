//! Namespace topology under root: build, traffic, firewall, teardown, sweep, processes.
//! Every test builds its own topology (its own prefix), so they run in parallel.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use l4lb_harness::cleanup::{self, SweepScope};
use l4lb_harness::firewall;
use l4lb_harness::netns::Namespace;
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::{NsProcess, Signal};
use l4lb_harness::topology::{Host, Layout, Offloads, Topology, TopologySpec};

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
    let listener = server
        .run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
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

/// Also the one test on a current-thread runtime (the `#[tokio::test]` default).
#[tokio::test]
async fn teardown_leaves_no_namespace_of_its_prefix() {
    if !root_or_skip("teardown_leaves_no_namespace_of_its_prefix") {
        return;
    }
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let prefix = topo.prefix().to_string();
    assert_eq!(namespaces_with(&prefix).len(), 6);
    // A process left running inside a namespace is killed by teardown.
    let mut sleeper = topo
        .namespace(Host::Server(0))
        .command("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    topo.teardown().await.unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    let status = tokio::time::timeout(Duration::from_secs(2), sleeper.wait())
        .await
        .expect("sleeper was killed")
        .unwrap();
    assert!(!status.success());

    // Dropping works the same.
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let prefix = topo.prefix().to_string();
    drop(topo);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_still_leaves_nothing() {
    if !root_or_skip("a_panicking_test_still_leaves_nothing") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Handle::current();
    let crashed = std::thread::spawn(move || {
        runtime.block_on(async {
            let topo = Topology::build(&TopologySpec::default()).await.unwrap();
            tx.send(topo.prefix().to_string()).unwrap();
            panic!("deliberate failure inside a test");
        })
    })
    .join();
    assert!(crashed.is_err(), "the thread must have panicked");
    let prefix = rx.recv().unwrap();
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
async fn sweep_removes_dead_runs_but_not_live_ones() {
    if !root_or_skip("sweep_removes_dead_runs_but_not_live_ones") {
        return;
    }
    // A dead run: a child process creates a namespace with its own pid, leaves a
    // process running inside it, and exits.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ip netns add l4lb-$$-0-lb && \
             (ip netns exec l4lb-$$-0-lb sleep 30 >/dev/null 2>&1 &) && echo $$",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead_pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dead = format!("l4lb-{dead_pid}-0-lb");
    // Wait (bounded) until the sleeper has entered the namespace.
    for _ in 0..200 {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &dead])
            .output()
            .unwrap();
        if !pids.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !cleanup::pid_alive(dead_pid.parse().unwrap()),
        "{:?}",
        std::fs::read_to_string(format!("/proc/{dead_pid}/status"))
    );
    let live = Topology::build(&TopologySpec::default()).await.unwrap();
    let removed = cleanup::sweep(SweepScope::DeadRuns).unwrap();
    let entry = removed
        .iter()
        .find(|r| r.name == dead)
        .expect("dead run swept");
    assert_eq!(
        entry.killed.len(),
        1,
        "the sleeper inside was killed: {entry:?}"
    );
    assert!(!cleanup::pid_alive(entry.killed[0]));
    assert!(
        !removed.iter().any(|r| r.name.starts_with(live.prefix())),
        "{removed:?}"
    );
    assert!(namespaces_with(&dead).is_empty());
    assert_eq!(namespaces_with(live.prefix()).len(), 6);
}

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
async fn ns_process_transcript_stdin_and_signals() {
    if !root_or_skip("ns_process_transcript_stdin_and_signals") {
        return;
    }
    let topo = topology_without_rst_drop().await;
    let ns = topo.namespace(Host::Server(0));
    // The process runs inside the namespace: it sees s1's address.
    let script = "ip -4 -o addr show dev eth0; echo oops >&2; \
                  while read l; do echo \"got $l\"; done; echo bye";
    let mut p = NsProcess::spawn(ns, "sh".as_ref(), &["-c".into(), script.into()])
        .await
        .unwrap();
    let addr = format!("inet {}/24", topo.addr(Host::Server(0)));
    assert!(p
        .wait_for_line(|l| l.contains(&addr), Duration::from_secs(3))
        .await
        .is_some());
    let err = p
        .wait_for_line(|l| l == "oops", Duration::from_secs(3))
        .await
        .unwrap();
    assert!(err.stderr);
    p.send_line("one").await.unwrap();
    assert!(p
        .wait_for_line(|l| l == "got one", Duration::from_secs(3))
        .await
        .is_some());

    // STOP: input is not answered; CONT: it is.
    p.signal(Signal::Stop).unwrap();
    p.send_line("two").await.unwrap();
    assert!(p
        .wait_for_line(|l| l == "got two", Duration::from_millis(300))
        .await
        .is_none());
    p.signal(Signal::Cont).unwrap();
    assert!(p
        .wait_for_line(|l| l == "got two", Duration::from_secs(3))
        .await
        .is_some());

    // End of input ends the loop; exit status 0.
    p.close_stdin();
    assert!(p
        .wait_for_line(|l| l == "bye", Duration::from_secs(3))
        .await
        .is_some());
    let status = p.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert!(status.success());
    // Order within a stream is kept (stdout and stderr are separate pipes, so their
    // interleaving is up to the scheduler).
    let stream = |stderr: bool| -> Vec<String> {
        p.transcript()
            .iter()
            .filter(|l| l.stderr == stderr)
            .map(|l| l.text.clone())
            .collect()
    };
    assert_eq!(
        &stream(false)[1..],
        ["got one", "got two", "bye"].map(String::from).as_slice()
    );
    assert_eq!(stream(true), vec!["oops".to_string()]);
    assert!(p.transcript().windows(2).all(|w| w[0].at <= w[1].at));

    // TERM and KILL end a process with that signal.
    use std::os::unix::process::ExitStatusExt;
    let mut t = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    t.signal(Signal::Term).unwrap();
    let status = t.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let mut k = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    k.signal(Signal::Kill).unwrap();
    let status = k.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        k.signal(Signal::Term).is_err(),
        "signalling an exited process is an error"
    );

    // Output into a file: both streams appended in the order written, the transcript
    // left empty, the tail read back from the file.
    let file = std::env::temp_dir().join(format!("l4lb-output-test-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut f = NsProcess::spawn_with_output_file(
        ns,
        "sh".as_ref(),
        &["-c".into(), "echo one; echo two >&2; echo three".into()],
        &file,
    )
    .await
    .unwrap();
    let status = f.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert!(status.success());
    assert_eq!(f.output_tail(2), ["two", "three"]);
    assert_eq!(f.output_tail(10), ["one", "two", "three"]);
    assert!(f.transcript().is_empty());
    std::fs::remove_file(&file).unwrap();

    // stop(): TERM ignored -> KILL after the grace period.
    let mut stubborn = NsProcess::spawn(
        ns,
        "sh".as_ref(),
        &[
            "-c".into(),
            "trap '' TERM; echo ready; sleep 30 & wait".into(),
        ],
    )
    .await
    .unwrap();
    assert!(stubborn
        .wait_for_line(|l| l == "ready", Duration::from_secs(3))
        .await
        .is_some());
    let status = stubborn.stop(Duration::from_millis(200)).await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // Drop kills and reaps.
    let dropped = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    let pid = dropped.pid();
    drop(dropped);
    assert!(
        !cleanup::pid_alive(pid),
        "dropped process {pid} still alive"
    );
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
        assert!(err.to_string().contains("unsupported"));
    }
    eprintln!("netem supported on this kernel: {supported}");
}
