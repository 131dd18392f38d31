//! The RST-drop rule the balancer installs and removes, and the rules a killed balancer
//! leaves behind.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

use crate::{s, start_chat_server, BIN, CHAT_PORT, WAIT};
/// One client, the lb and one server, without the RST-drop rule (the firewall tests check
/// what the balancer itself installs).
async fn one_server_without_rst_drop() -> Topology {
    let spec = TopologySpec {
        clients: 1,
        servers: 1,
        rst_drop: false,
        ..TopologySpec::default()
    };
    Topology::build(&spec).await.expect("topology")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_without_the_rst_drop_rule_and_installs_and_removes_it_when_asked() {
    if !root_or_skip("refuses_without_the_rst_drop_rule") {
        return;
    }
    let topo = one_server_without_rst_drop().await;
    let lb_ip = topo.addr(Host::Lb).to_string();
    let backend = format!("{}:{CHAT_PORT}", topo.addr(Host::Server(0)));
    let base = s(&["raw", "--source-ip", &lb_ip, "--backend", &backend]);
    let mut refused = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &base)
        .await
        .expect("spawn");
    let status = refused.wait_exit(WAIT).await.expect("wait").expect("exits");
    assert!(!status.success());
    let text: String = refused
        .transcript()
        .iter()
        .map(|l| l.text.clone() + "\n")
        .collect();
    assert!(
        text.contains("iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP"),
        "{text}"
    );
    let rules = |topo: &Topology| {
        let ns = topo.namespace(Host::Lb).clone();
        async move {
            let out = ns
                .command("iptables")
                .args(["-S", "OUTPUT"])
                .output()
                .await
                .expect("iptables");
            let raw = ns
                .command("iptables")
                .args(["-t", "raw", "-S", "PREROUTING"])
                .output()
                .await
                .expect("iptables");
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&raw.stdout)
        }
    };
    let mut args = base.clone();
    args.push("--install-rst-drop".into());
    let mut lb = NsProcess::spawn(topo.namespace(Host::Lb), Path::new(BIN), &args)
        .await
        .expect("spawn");
    lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
        .await
        .unwrap_or_else(|| panic!("did not start: {:#?}", lb.transcript()));
    let during = rules(&topo).await;
    // Each rule carries its owner's tag before the target.
    let tag = format!(
        "-m comment --comment \"l4lb raw pid={} port=20000\"",
        lb.pid()
    );
    for rule in ["--tcp-flags RST RST", "--mark 0x4c34", "--dport 20000"] {
        assert!(
            during.lines().any(|l| l.contains(rule) && l.contains(&tag)),
            "{rule} tagged {tag}: {during}"
        );
    }
    let status = lb.stop(Duration::from_secs(5)).await.expect("stop");
    assert!(status.success(), "{:#?}", lb.transcript());
    let after = rules(&topo).await;
    assert!(
        !after.contains("RST") && !after.contains("mark") && !after.contains("20000"),
        "left behind: {after}"
    );
    topo.teardown().await.expect("teardown");
}

/// The `-A` lines of `iptables-save` in `ns`, each prefixed with its table (the header,
/// counters and empty tables a run may create are left out).
async fn saved_rules(ns: &l4lb_harness::netns::Namespace) -> Vec<String> {
    let out = ns
        .command("iptables-save")
        .output()
        .await
        .expect("iptables-save");
    assert!(out.status.success(), "{out:?}");
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if line.starts_with("-A ") {
            rules.push(format!("{table} {line}"));
        }
    }
    rules
}

/// `kill -9` leaves the balancer's rules behind; the next start removes them before adding
/// its own (no second copy), its SIGTERM removes its own, and the namespace's rules are as
/// before: an `l4lb proxy` on the same address then gets its connections (a leftover
/// PREROUTING drop would eat their SYNs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_of_a_killed_balancer_are_removed_by_the_next_start() {
    if !root_or_skip("rules_of_a_killed_balancer_are_removed_by_the_next_start") {
        return;
    }
    let topo = one_server_without_rst_drop().await;
    let server = start_chat_server(&topo, 0).await;
    let lb_ns = topo.namespace(Host::Lb).clone();
    let lb_ip = topo.addr(Host::Lb).to_string();
    let backend = format!("{}:{CHAT_PORT}", topo.addr(Host::Server(0)));
    let args = s(&[
        "raw",
        "--source-ip",
        &lb_ip,
        "--backend",
        &backend,
        "--install-rst-drop",
    ]);
    let before = saved_rules(&lb_ns).await;
    let start = || async {
        let lb = NsProcess::spawn(&lb_ns, Path::new(BIN), &args)
            .await
            .expect("spawn");
        lb.wait_for_line(|l| l.contains("raw balancer running"), WAIT)
            .await
            .unwrap_or_else(|| panic!("did not start: {:#?}", lb.transcript()));
        lb
    };
    let mut first = start().await;
    let owned = saved_rules(&lb_ns).await;
    let tagged = |rules: &[String]| rules.iter().filter(|r| r.contains("l4lb raw pid=")).count();
    assert_eq!(tagged(&owned), 4, "{owned:#?}");
    first
        .signal(l4lb_harness::process::Signal::Kill)
        .expect("kill -9");
    first.wait_exit(WAIT).await.expect("wait").expect("exits");
    assert_eq!(
        tagged(&saved_rules(&lb_ns).await),
        4,
        "kill -9 runs no teardown"
    );
    let mut second = start().await;
    let during = saved_rules(&lb_ns).await;
    assert_eq!(tagged(&during), 4, "one copy of each rule: {during:#?}");
    let pid = second.pid();
    assert!(
        during
            .iter()
            .filter(|r| r.contains("l4lb raw pid="))
            .all(|r| r.contains(&format!("pid={pid} "))),
        "the dead balancer's rules are gone: {during:#?}"
    );
    let status = second.stop(Duration::from_secs(5)).await.expect("stop");
    assert!(status.success(), "{:#?}", second.transcript());
    assert_eq!(saved_rules(&lb_ns).await, before);

    let listen = format!("{lb_ip}:20000");
    let mut proxy = NsProcess::spawn(
        &lb_ns,
        Path::new(BIN),
        &s(&["proxy", "--listen", &listen, "--backend", &backend]),
    )
    .await
    .expect("spawn proxy");
    proxy
        .wait_for_line(|l| l.contains("proxy listening"), WAIT)
        .await
        .unwrap_or_else(|| panic!("proxy did not start: {:#?}", proxy.transcript()));
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let reply = topo
        .namespace(Host::Client(0))
        .run(move || -> std::io::Result<String> {
            let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            c.write_all(b"[t] hello\n")?;
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .expect("enter client");
    assert!(
        reply.as_ref().is_ok_and(|r| r.contains("hello")),
        "the proxy got no connection: {reply:?}"
    );
    let _ = proxy.stop(Duration::from_secs(5)).await;
    let mut server = server;
    let _ = server.stop(Duration::from_secs(2)).await;
    topo.teardown().await.expect("teardown");
}
