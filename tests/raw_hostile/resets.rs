//! Resets: a blind RST leaves a live session alone, an in-window one closes it for both
//! ends, and a segment of an unknown flow is answered with one.

use std::net::SocketAddrV4;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::Host;
use tokio::time::{sleep, Instant};

use crate::support::spoof::{self, flags, Segment};
use crate::{
    echoed, lines_of, talk_and_sniff, total_drops, Backend, Lab, CHAT_PORT, ECHO, NAT_HIGH,
    NAT_LOW, SNAPSHOT, WAIT,
};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_rst_does_not_kill_a_live_session() {
    if !root_or_skip("a_blind_rst_does_not_kill_a_live_session") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = lab.lb_ip();
    let mut rng = fastrand::Rng::with_seed(14);
    let mut failures = Vec::new();
    let cases = [
        "RST with the client's 4-tuple, sequence 2^31 away from the client's next",
        "RST with the client's 4-tuple and next sequence, wrong TCP checksum",
        "RST from the server's address to the session's NAT port, random sequence",
        "sweep of RSTs from the server's address over every NAT port, random sequences",
    ];
    for (k, case) in cases.iter().enumerate() {
        let mut session = lab.join(&format!("blind{k}")).await;
        let seen = talk_and_sniff(&lab, &mut session, "before").await;
        let next = seen.seq.wrapping_add(seen.payload_len as u32);
        let server_ns = lab.topo.namespace(Host::Server(session.server));
        let server = SocketAddrV4::new(lab.server_ip(session.server), CHAT_PORT);
        let drops_before = total_drops(&lab.drops());
        let (ns, segments) = match k {
            0 => {
                let mut seg =
                    Segment::new(seen.src, seen.dst, flags::RST, next.wrapping_add(1 << 31));
                seg.window = 0;
                (lab.topo.namespace(Host::Client(0)), vec![seg])
            }
            1 => {
                let mut seg = Segment::new(seen.src, seen.dst, flags::RST, next);
                seg.window = 0;
                seg.bad_checksum = true;
                (lab.topo.namespace(Host::Client(0)), vec![seg])
            }
            2 => {
                let nat = SocketAddrV4::new(lb, session.nat.port());
                (
                    server_ns,
                    vec![Segment::new(server, nat, flags::RST, rng.u32(..))],
                )
            }
            _ => (
                server_ns,
                (NAT_LOW..=NAT_HIGH)
                    .map(|p| {
                        Segment::new(server, SocketAddrV4::new(lb, p), flags::RST, rng.u32(..))
                    })
                    .collect(),
            ),
        };
        let count = segments.len();
        let sent = spoof::send(ns, segments, Duration::from_millis(500)).await;
        assert_eq!(sent, count, "{case}: the spoofer could not send everything");
        sleep(Duration::from_millis(300)).await;
        let alive = echoed(&mut session, "after", ECHO).await;
        sleep(SNAPSHOT).await;
        let drops_after = lab.drops();
        let counted = total_drops(&drops_after) - drops_before;
        let rows = lab.metric("l4lb_raw_rows ");
        if !alive {
            failures.push(format!(
                "{case} ({count} sent): the session died (no echo within {ECHO:?}); \
                 l4lb_raw_rows {rows}, drops {drops_after:?}"
            ));
        } else if counted < count as f64 {
            failures.push(format!(
                "{case} ({count} sent): session lives but only {counted} drop(s) counted; \
                 drops {drops_after:?}"
            ));
        }
        let _ = session.client.stop(Duration::from_secs(2)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} blind RST attacks were not survived and counted:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_window_rst_closes_the_session_for_both_ends() {
    if !root_or_skip("an_in_window_rst_closes_the_session_for_both_ends") {
        return;
    }
    let lab = Lab::start(1, Backend::ResetAfterOneLine, &[]).await;
    let mut session = lab.join("victim").await;
    assert!(
        echoed(&mut session, "hello", WAIT).await,
        "no echo from the resetting server: client {:#?} server {:#?}",
        lines_of(&session.client),
        lines_of(&lab.servers[0])
    );
    let status = session
        .client
        .wait_exit(Duration::from_secs(2))
        .await
        .expect("wait")
        .unwrap_or_else(|| {
            panic!(
                "the backend's in-window RST did not reach the client within 2s: client {:#?}",
                lines_of(&session.client)
            )
        });
    assert_eq!(status.code(), Some(1), "{:#?}", lines_of(&session.client));
    assert!(
        lines_of(&session.client)
            .iter()
            .any(|l| l.contains("Server disconnected")),
        "no disconnect line: {:#?}",
        lines_of(&session.client)
    );
    // The snapshot is published about once a second: wait for the free to show.
    let deadline = Instant::now() + WAIT;
    while lab.metric("l4lb_raw_rows_freed_total{reason=\"rst\"}") < 1.0
        || lab.metric("l4lb_raw_rows ") != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the reset session's row was not freed as an RST: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_an_unknown_flow_gets_a_reset() {
    if !root_or_skip("a_segment_of_an_unknown_flow_gets_a_reset") {
        return;
    }
    let mut lab = Lab::start(3, Backend::Chat, &[]).await;
    let mut session = lab.join("orphan").await;
    assert!(
        echoed(&mut session, "before restart", WAIT).await,
        "no echo: {:#?}",
        lines_of(&session.client)
    );
    lab.restart_lb().await;
    sleep(SNAPSHOT).await;
    assert_eq!(
        lab.metric("l4lb_raw_rows "),
        0.0,
        "a fresh balancer has rows"
    );
    let _ = session.client.send_line("after restart").await;
    let bound = Duration::from_secs(3);
    let exited = session.client.wait_exit(bound).await.expect("wait");
    sleep(SNAPSHOT).await;
    assert!(
        exited.is_some(),
        "a data segment of a flow the balancer has no row for got no RST: the client still \
         hangs {bound:?} later (output {:#?}); drops {:?}",
        lines_of(&session.client),
        lab.drops()
    );
    assert!(
        lines_of(&session.client)
            .iter()
            .any(|l| l.contains("Server disconnected")),
        "{:#?}",
        lines_of(&session.client)
    );
    lab.stop().await;
}
