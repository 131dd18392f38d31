//! SIGTERM drains, SIGINT closes what is left after the grace period.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

use crate::{join, read_line, Backend, Proxy, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_drains() {
    let s1 = Backend::start("s1", [127, 0, 0, 25]).await;
    let mut proxy = Proxy::start(&[&s1], &["--grace", "5s"]);
    let mut c = join(&proxy).await;
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    // New clients are refused by the kernel once the listener is gone...
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(proxy.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        sleep(Duration::from_millis(10)).await;
    }
    // ...while the open session goes on until its client leaves.
    c.say("draining").await;
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "exited before the session ended"
    );
    c.stream.shutdown().await.unwrap();
    assert_eq!(
        read_line(&mut c.stream).await.as_deref(),
        Some("bye from s1")
    );
    let status = proxy.wait_exit(Duration::from_secs(3)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_sessions_left_after_the_grace_period() {
    let s1 = Backend::start("s1", [127, 0, 0, 26]).await;
    let mut proxy = Proxy::start(&[&s1], &["--grace", "300ms"]);
    let mut c = join(&proxy).await;
    let start = Instant::now();
    proxy.signal(nix::sys::signal::Signal::SIGINT);
    let mut rest = Vec::new();
    timeout(WAIT, c.stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "closed before the grace ended"
    );
    let status = proxy.wait_exit(Duration::from_secs(3)).await;
    assert!(status.success(), "{status}");
    proxy
        .wait_log_entry("session closed", |v| v["reason"] == "shutdown")
        .await;
}
