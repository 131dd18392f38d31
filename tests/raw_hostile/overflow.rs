//! Frames the kernel drops because the balancer's capture queue is full are counted:
//! while `l4lb raw` is stopped (SIGSTOP), a burst of segments overflows its receive
//! buffer or ring (packet socket, its ring, or `--capture raw`), and after it resumes
//! every segment of the burst is in its drop counters, the kernel's losses as
//! `receive_queue_full`.

use std::net::SocketAddrV4;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::Signal;
use l4lb_harness::topology::Host;
use tokio::time::sleep;

use crate::support::spoof::{self, flags, Segment};
use crate::{total_drops, unused_source, Backend, Lab, LB_PORT, SNAPSHOT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_balancer_counts_what_its_full_receive_queue_lost() {
    if !root_or_skip("a_stopped_balancer_counts_what_its_full_receive_queue_lost") {
        return;
    }
    // The sockets' 32 MB buffers hold tens of thousands of small frames, the ring 4096.
    // A raw IP socket's kernel tally counts, while the buffer is full, every TCP segment
    // the namespace receives, before its filter says whether it is ours (a health
    // check's reply, say), so with `--capture raw` a few more than the burst may count.
    for (capture, extra, burst, others) in [
        ("socket", &[][..], spoof::MAX_PACKETS, 0),
        ("ring", &["--receive", "ring"][..], 20_000, 0),
        ("raw", &["--capture", "raw"][..], spoof::MAX_PACKETS, 100),
    ] {
        let lab = Lab::start(1, Backend::Chat, extra).await;
        let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
        let mut rng = fastrand::Rng::with_seed(9);
        // Bare ACKs of no flow: each one read is an `unknown_client` drop.
        let segments: Vec<Segment> = (0..burst)
            .map(|_| Segment::new(unused_source(&mut rng), lb, flags::ACK, rng.u32(..)))
            .collect();
        sleep(SNAPSHOT).await;
        let before = lab.drops();
        lab.lb.signal(Signal::Stop).expect("stop the balancer");
        let sent = spoof::send(
            lab.topo.namespace(Host::Client(0)),
            segments,
            Duration::ZERO,
        )
        .await;
        lab.lb.signal(Signal::Cont).expect("resume the balancer");
        sleep(SNAPSHOT).await;
        let after = lab.drops();
        let of = |d: &[(String, f64)], reason: &str| {
            d.iter().find(|(r, _)| r == reason).map_or(0.0, |(_, n)| *n)
        };
        let lost = of(&after, "receive_queue_full") - of(&before, "receive_queue_full");
        let counted = total_drops(&after) - total_drops(&before);
        assert!(
            lost > 0.0,
            "{capture}: {sent} segments sent to a stopped balancer, but no frame was counted \
             as receive_queue_full (drops before {before:?}, after {after:?})"
        );
        let sent = sent as f64;
        assert!(
            (sent..=sent + f64::from(others)).contains(&counted),
            "{capture}: of {sent} segments sent to a stopped balancer, {counted} were \
             counted as dropped (expected {sent} to {}), {lost} of them \
             receive_queue_full (drops before {before:?}, after {after:?})",
            sent + f64::from(others)
        );
        lab.stop().await;
    }
}
