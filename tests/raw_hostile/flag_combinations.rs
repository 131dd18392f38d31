//! Segments with invalid flag combinations open no NAT row.

use std::net::SocketAddrV4;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::Host;
use tokio::time::sleep;

use crate::support::spoof::{self, flags, Segment};
use crate::{metric_in, unused_source, Backend, Lab, LB_PORT, SNAPSHOT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_flag_combinations_open_no_row() {
    if !root_or_skip("invalid_flag_combinations_open_no_row") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
    let mut rng = fastrand::Rng::with_seed(3);
    let kinds = [
        ("SYN+FIN", flags::SYN | flags::FIN),
        ("SYN+RST", flags::SYN | flags::RST),
        ("no flags", 0),
        ("FIN without ACK", flags::FIN),
    ];
    let mut failures = Vec::new();
    sleep(SNAPSHOT).await;
    for (name, bits) in kinds {
        let before = lab.metrics();
        let segments: Vec<Segment> = (0..3)
            .map(|_| Segment::new(unused_source(&mut rng), lb, bits, rng.u32(..)))
            .collect();
        let sent = spoof::send(
            lab.topo.namespace(Host::Client(0)),
            segments,
            Duration::ZERO,
        )
        .await;
        assert_eq!(sent, 3, "{name}: the spoofer could not send");
        sleep(SNAPSHOT).await;
        let after = lab.metrics();
        let created = |t: &str| metric_in(t, "l4lb_raw_rows_created_total ");
        let forwarded = |t: &str| metric_in(t, "l4lb_raw_packets_total{direction=\"to_backend\"}");
        let rows = metric_in(&after, "l4lb_raw_rows ") - metric_in(&before, "l4lb_raw_rows ");
        let sessions = lab.all_nat_sessions().await;
        let opened = created(&after) - created(&before);
        let to_backend = forwarded(&after) - forwarded(&before);
        if opened != 0.0
            || rows != 0.0
            || to_backend != 0.0
            || sessions.iter().any(|v| !v.is_empty())
        {
            failures.push(format!(
                "{name} (3 sent): {opened} row(s) created, l4lb_raw_rows +{rows}, \
                 {to_backend} datagram(s) forwarded to a backend, server sessions {sessions:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid flag combinations to port {LB_PORT} reached the NAT table:\n  {}",
        failures.join("\n  ")
    );
    lab.stop().await;
}
