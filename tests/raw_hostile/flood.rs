//! A real client still joins within a second during a SYN flood.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::NsProcess;
use l4lb_harness::topology::Host;
use tokio::time::{sleep, Instant};

use crate::support::spoof::{self, flags, Segment};
use crate::{echoed, lines_of, s, unused_source, Backend, Lab, Session, BIN, LB_PORT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_joins_within_a_second_during_a_syn_flood() {
    if !root_or_skip("a_real_client_joins_within_a_second_during_a_syn_flood") {
        return;
    }
    const FLOOD: usize = 100_000;
    const OVER: Duration = Duration::from_secs(8);
    let lab = Lab::start(3, Backend::Chat, &[]).await;
    let lb = SocketAddrV4::new(lab.lb_ip(), LB_PORT);
    let mut rng = fastrand::Rng::with_seed(4);
    let segments: Vec<Segment> = (0..FLOOD)
        .map(|_| Segment::new(unused_source(&mut rng), lb, flags::SYN, rng.u32(..)))
        .collect();
    let ns = lab.topo.namespace(Host::Client(0)).clone();
    let started = Instant::now();
    let flood = tokio::spawn(async move { spoof::send(&ns, segments, OVER).await });
    // A join every 0.5 s, during the flood and for 2 s after it.
    let mut tasks = Vec::new();
    let mut joins = 0;
    while started.elapsed() < OVER + Duration::from_secs(2) {
        let at = started.elapsed();
        let nick = format!("real{joins}");
        joins += 1;
        let ns = lab.topo.namespace(Host::Client(0)).clone();
        let lb_ip = lab.lb_ip().to_string();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let args = s(&["chat-client", &lb_ip, "20000", &nick]);
            let client = NsProcess::spawn(&ns, Path::new(BIN), &args)
                .await
                .expect("start chat-client");
            let mut session = Session {
                client,
                nick: nick.clone(),
                server: 0,
                nat: lb,
            };
            let left = Duration::from_secs(1).saturating_sub(t0.elapsed());
            let ok = echoed(&mut session, "hi", left).await;
            let _ = session.client.stop(Duration::from_secs(1)).await;
            let said: Vec<String> = lines_of(&session.client)
                .into_iter()
                .filter(|l| !l.contains("\"level\""))
                .collect();
            (!ok).then(|| {
                format!(
                    "{nick} started at +{:.1}s: no echo within 1s (client said {said:?})",
                    at.as_secs_f64()
                )
            })
        }));
        sleep(Duration::from_millis(500)).await;
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.expect("join task"));
    }
    let sent = flood.await.expect("flood task");
    let flood_took = started.elapsed();
    let drops = lab.drops();
    // Why rows went, for a failure's diagnosis (a real client's row evicted mid-handshake
    // looks like `unknown_client` drops and a reset client).
    let metrics = lab.metrics();
    let freed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("l4lb_raw_rows_freed_total{"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {joins} real clients could not join within 1s during/after a flood of {sent} \
         spoofed SYNs ({flood_took:.1?} incl. 2s after); drops {drops:?}; rows freed \
         {freed:?}:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    lab.stop().await;
}
