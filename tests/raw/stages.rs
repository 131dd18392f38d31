//! `--stage-times`: the balancer times each packet's stages (queued in the socket,
//! rewrite, send) and writes the histograms when it stops.

use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::Offloads;
use std::time::Duration;
use tokio::time::{sleep, Instant};

use crate::{Lab, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_times_cover_every_batch_and_every_frame_has_its_arrival_time() {
    if !root_or_skip("stage_times_cover_every_batch_and_every_frame_has_its_arrival_time") {
        return;
    }
    let file = std::env::temp_dir().join(format!("l4lb-stages-{}.json", std::process::id()));
    let path = file.display().to_string();
    let lab = Lab::start(1, Offloads::Default, &["--stage-times", &path]).await;
    let mut clients = Vec::new();
    for i in 1..=3 {
        clients.push(lab.join(0, &format!("stage{i}")).await.0);
    }
    for k in 0..20 {
        clients[0]
            .send_line(&format!("line {k}"))
            .await
            .expect("send");
    }
    clients[0]
        .wait_for_line(|l| l.contains("line 19"), WAIT)
        .await
        .expect("the last line came back");
    for c in &mut clients {
        c.send_line("q").await.expect("quit");
        c.wait_exit(WAIT)
            .await
            .expect("wait")
            .expect("client exits");
    }
    // Every close went through (rows freed) before the balancer stops and writes.
    let deadline = Instant::now() + WAIT;
    while lab.metric("l4lb_raw_rows ") != Some(0.0) {
        assert!(Instant::now() < deadline, "rows left: {}", lab.metrics());
        sleep(Duration::from_millis(200)).await;
    }
    lab.stop().await;

    let text = std::fs::read_to_string(&file).expect("the stage file was written at stop");
    std::fs::remove_file(&file).ok();
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let stage = |name: &str| {
        report["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["stage"] == name))
            .unwrap_or_else(|| panic!("no {name} stage: {report}"))
            .clone()
    };
    let (queued, rewrite, send) = (stage("queued"), stage("rewrite"), stage("send"));
    let count = |s: &serde_json::Value| s["count"].as_u64().unwrap_or(0);
    // Three handshakes and three closes cross it: at least 7 frames a client (SYN,
    // SYN-ACK, ACK, FIN, ACK, FIN, ACK), and the lines on top (coalesced into few).
    assert!(count(&queued) >= 21, "{report}");
    assert_eq!(
        report["unstamped"], 0,
        "every frame had an arrival time: {report}"
    );
    assert!(
        count(&rewrite) > 0 && count(&rewrite) == count(&send),
        "{report}"
    );
    assert!(
        count(&rewrite) <= count(&queued),
        "a batch holds at least one frame"
    );
    for s in [&queued, &rewrite, &send] {
        let (p50, max) = (s["p50_us"].as_f64().unwrap(), s["max_us"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= max, "{s}");
        // In a quiet lab a frame waits microseconds, not most of a second.
        assert!(p50 < 500_000.0, "{s}");
    }
}
