//! A session evicted for idleness is told so, not left hanging.

use std::time::Duration;

use l4lb_harness::privilege::root_or_skip;
use tokio::time::{sleep, Instant};

use crate::{echoed, lines_of, Backend, Lab, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_evicted_session_is_told_not_left_hanging() {
    if !root_or_skip("an_idle_evicted_session_is_told_not_left_hanging") {
        return;
    }
    let lab = Lab::start(3, Backend::Chat, &["--idle-timeout", "2s"]).await;
    let mut session = lab.join("sleeper").await;
    assert!(
        echoed(&mut session, "awake", WAIT).await,
        "no echo: {:#?}",
        lines_of(&session.client)
    );
    // Silent past the idle timeout, until the row is gone.
    let deadline = Instant::now() + WAIT;
    sleep(Duration::from_secs(2)).await;
    while lab.metric("l4lb_raw_rows_freed_total{reason=\"idle_timeout\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the idle row was never evicted: {}",
            lab.metrics()
        );
        sleep(Duration::from_millis(200)).await;
    }
    let _ = session.client.send_line("still there?").await;
    let bound = Duration::from_secs(2);
    let told = session
        .client
        .wait_for_line(|l| l.contains("Server disconnected"), bound)
        .await
        .is_some();
    let mut server_gone = false;
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !lab
            .nat_sessions(session.server)
            .await
            .contains(&session.nat)
        {
            server_gone = true;
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        told && server_gone,
        "after idle eviction (--idle-timeout 2s) and a new line, within {bound:?}: \
         client told: {told} (output {:#?}); server s{} socket from {} gone: {server_gone}; \
         freed: {}",
        lines_of(&session.client),
        session.server + 1,
        session.nat,
        lab.metric("l4lb_raw_rows_freed_total{reason=\"idle_timeout\"}")
    );
    lab.stop().await;
}
