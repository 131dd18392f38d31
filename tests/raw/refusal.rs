//! With every backend down a new client is refused at once, not left hanging.

use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::topology::{Host, Offloads};
use tokio::time::{sleep, Instant};

use crate::{s, wait_for_lines, Lab, BIN, WAIT};
/// Every backend down: a new client is refused at once (the balancer answers its SYN
/// with a RST+ACK, as a closed port would), never left hanging, and the refusal is
/// counted on the stats endpoint next to the `no_backend` drop. Both capture modes: with
/// `raw` the kernel also sees the SYN and its own RST is dropped by the RST-drop rule, so
/// the refusal the client gets is the balancer's (marked, it passes the rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_a_new_client_is_refused_at_once() {
    if !root_or_skip("with_every_backend_down_a_new_client_is_refused_at_once") {
        return;
    }
    refused_at_once(&["--capture", "packet"]).await;
    refused_at_once(&["--capture", "raw", "--send-thread"]).await;
}

async fn refused_at_once(extra: &[&str]) {
    let mut lab = Lab::start(1, Offloads::Default, extra).await;
    for i in 0..3 {
        let mut p = lab.servers[i].take().expect("server");
        p.stop(Duration::from_secs(2)).await.expect("kill server");
    }
    wait_for_lines(&lab.lb, "\"to\":\"down\"", 3, "not every backend went down").await;
    let started = Instant::now();
    let mut client = NsProcess::spawn(
        lab.topo.namespace(Host::Client(0)),
        Path::new(BIN),
        &s(&["chat-client", &lab.lb_ip(), "20000", "nobody"]),
    )
    .await
    .expect("start chat-client");
    // A hang would last until the client's own SYN retries give up (over a minute).
    let status = client
        .wait_exit(Duration::from_secs(3))
        .await
        .expect("wait")
        .unwrap_or_else(|| panic!("{extra:?}: the client hung: {:#?}", client.transcript()));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "{:#?}", client.transcript());
    assert!(
        client
            .transcript()
            .iter()
            .any(|l| l.text.contains("connect() error")),
        "{:#?}",
        client.transcript()
    );
    // The snapshot is published about once a second.
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = lab.metric("l4lb_raw_refusals_total{outcome=\"sent\"}");
        let dropped = lab.metric("l4lb_raw_drops_total{reason=\"no_backend\"}");
        if sent.is_some_and(|n| n >= 1.0) && dropped.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{extra:?}: refusal not counted: sent {sent:?}, no_backend {dropped:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    println!("{extra:?}: refused in {took:?}");
    lab.stop().await;
}
