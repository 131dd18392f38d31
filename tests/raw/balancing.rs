//! Clients spread round robin over the servers, and a killed server leaves the rotation
//! and comes back into it.

use std::time::Duration;

use l4lb_harness::bench::cpu::process_cpu_time;
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Offloads};
use tokio::time::{sleep, Instant};

use crate::{start_chat_server, Lab, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_clients_land_round_robin_share_chat_and_leave_an_empty_table() {
    if !root_or_skip("six_clients_land_round_robin_share_chat_and_leave_an_empty_table") {
        return;
    }
    let lab = Lab::start(1, Offloads::Default, &[]).await;
    let mut clients = Vec::new();
    let mut landed = Vec::new();
    for i in 1..=6 {
        let (p, server) = lab.join(0, &format!("test{i}")).await;
        landed.push(server + 1);
        clients.push(p);
    }
    assert_eq!(landed, vec![1, 2, 3, 1, 2, 3], "round robin in join order");

    // Clients of one server share chat; others do not see it.
    clients[0].send_line("hello from one").await.expect("send");
    for (i, c) in clients.iter().enumerate() {
        let seen = c
            .wait_for_line(
                |l| l.contains("[test1] hello from one"),
                if i == 0 || i == 3 {
                    WAIT
                } else {
                    Duration::from_millis(500)
                },
            )
            .await
            .is_some();
        assert_eq!(
            seen,
            i == 0 || i == 3,
            "test{} saw test1's line: {seen}",
            i + 1
        );
    }
    assert_eq!(lab.metric("l4lb_raw_rows "), Some(6.0));

    for c in &mut clients {
        c.send_line("q").await.expect("quit");
    }
    for c in &mut clients {
        let status = c
            .wait_exit(WAIT)
            .await
            .expect("wait")
            .expect("client exits");
        assert!(status.success(), "client exit {status}");
    }
    // Idle, the balancer sleeps: its busy polling (default 20 µs after each batch)
    // stops with the traffic. Spinning on would cost most of this second.
    sleep(Duration::from_millis(100)).await;
    let pid = lab.lb.pid();
    let before = process_cpu_time(pid).expect("lb CPU time");
    sleep(Duration::from_secs(1)).await;
    let idle = process_cpu_time(pid).expect("lb CPU time") - before;
    assert!(
        idle < Duration::from_millis(150),
        "the idle raw balancer used {idle:?} of CPU in 1 s"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        // Snapshots are published once a second.
        if lab.metric("l4lb_raw_rows ") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "table not empty: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lab.metric("l4lb_raw_rows_freed_total{reason=\"fin\"}"),
        Some(6.0),
        "{}",
        lab.metrics()
    );
    assert_eq!(
        lab.metric("l4lb_raw_drops_total{reason=\"send_failed\"}"),
        Some(0.0)
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_stops_receiving_clients_and_gets_them_again_after_it_returns() {
    if !root_or_skip("a_killed_server_stops_receiving_clients_and_gets_them_again") {
        return;
    }
    let mut lab = Lab::start(1, Offloads::Default, &[]).await;
    let s1 = lab.topo.addr(Host::Server(0)).to_string();
    let mut s1_proc = lab.servers[0].take().expect("s1");
    s1_proc.stop(Duration::from_secs(2)).await.expect("kill s1");
    lab.lb
        .wait_for_line(|l| l.contains(&s1) && l.contains("\"to\":\"down\""), WAIT)
        .await
        .unwrap_or_else(|| panic!("s1 never went down: {:#?}", lab.lb.transcript()));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (p, server) = lab.join(0, &format!("d{i}")).await;
        assert_ne!(server, 0, "client d{i} sent to the dead server");
        clients.push(p);
    }
    lab.servers[0] = Some(start_chat_server(&lab.topo, 0).await);
    // Only the down -> up transition counts: wait_for_line also sees s1's first
    // unknown -> up line from the start of the run.
    lab.lb
        .wait_for_line(
            |l| l.contains(&s1) && l.contains("\"from\":\"down\"") && l.contains("\"to\":\"up\""),
            WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("s1 never came back: {:#?}", lab.lb.transcript()));
    let mut got = Vec::new();
    for i in 0..3 {
        let (p, server) = lab.join(0, &format!("r{i}")).await;
        got.push(server);
        clients.push(p);
    }
    assert!(
        got.contains(&0),
        "s1 receives clients again: {got:?}; lb: {:#?}",
        lab.lb
            .transcript()
            .iter()
            .filter(|l| l.text.contains("health"))
            .collect::<Vec<_>>()
    );
    for c in &mut clients {
        let _ = c.stop(Duration::from_secs(2)).await;
    }
    lab.stop().await;
}
