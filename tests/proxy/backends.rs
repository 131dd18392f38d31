//! Clients spread over the backends, a killed backend is avoided and revived, and with
//! none usable a client is refused cleanly.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::{join, names, three_backends, Backend, Proxy, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_clients_spread_two_two_two_and_a_freed_slot_is_refilled() {
    let (s1, s2, s3) = three_backends().await;
    let proxy = Proxy::start(&[&s1, &s2, &s3], &[]);
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = join(&proxy).await;
        c.say(&format!("[test{}] hello", i + 1)).await;
        clients.push(c);
    }
    assert_eq!(names(&clients), ["s1", "s2", "s3", "s1", "s2", "s3"]);
    assert_eq!((s1.live(), s2.live(), s3.live()), (2, 2, 2));

    // test5 (on s2) leaves: the next joiner takes its slot.
    drop(clients.remove(4));
    let key = format!("l4lb_backend_sessions_live{{backend=\"{}\"}}", s2.addr);
    proxy.wait_metric(&key, 1.0).await;
    let mut c = join(&proxy).await;
    c.say("[test7] hi").await;
    assert_eq!(c.backend, "s2");
    assert_eq!((s1.live(), s2.live(), s3.live()), (2, 2, 2));
    proxy.wait_logged("session opened", 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_is_avoided_at_once_and_skipped_then_revived() {
    let (s1, mut s2, s3) = three_backends().await;
    let (interval, check_timeout, fall) =
        (Duration::from_millis(200), Duration::from_millis(100), 2);
    let proxy = Proxy::start(
        &[&s1, &s2, &s3],
        &[
            "--health-interval",
            "200ms",
            "--health-timeout",
            "100ms",
            "--fall",
            "2",
            "--rise",
            "1",
        ],
    );
    let up = format!("l4lb_backend_up{{backend=\"{}\"}}", s2.addr);
    let failures = format!(
        "l4lb_backend_connect_failures_total{{backend=\"{}\"}}",
        s2.addr
    );
    let s2_state_up = format!("l4lb_backend_state{{backend=\"{}\",state=\"up\"}}", s2.addr);
    proxy.wait_metric(&s2_state_up, 1.0).await;
    let mut first = join(&proxy).await;
    assert_eq!(first.backend, "s1");

    // s2 is next in line; kill it and join at once: the proxy's connect fails and the
    // client is retried on another backend, before any health check notices.
    s2.kill().await;
    let killed_at = Instant::now();
    let mut c = join(&proxy).await;
    c.say("still served").await;
    assert_eq!(c.backend, "s3", "retried on the next backend");
    assert!(proxy.metric(&failures).await >= 1.0);

    // Within interval x fall + timeout (plus scheduling slack) s2 is down: new clients
    // are not even tried on it.
    proxy.wait_metric(&up, 0.0).await;
    let took = killed_at.elapsed();
    let bound = interval * fall + check_timeout + Duration::from_millis(400);
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    let tried_before = proxy.metric(&failures).await;
    let mut later = Vec::new();
    for _ in 0..4 {
        let mut c = join(&proxy).await;
        c.say("x").await;
        later.push(c);
    }
    assert!(
        names(&later).iter().all(|&n| n != "s2"),
        "{:?}",
        names(&later)
    );
    assert_eq!(
        proxy.metric(&failures).await,
        tried_before,
        "down backend was tried"
    );

    // Revived: within an interval it passes a check and, being emptiest, gets clients.
    s2.revive().await;
    proxy.wait_metric(&up, 1.0).await;
    let mut back = join(&proxy).await;
    back.say("welcome back").await;
    assert_eq!(back.backend, "s2");
    assert!(proxy
        .logged("backend health changed")
        .iter()
        .any(|v| v["backend"] == s2.addr.to_string() && v["to"] == "down"));
    first.say("first still fine").await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_backend_refuses_cleanly() {
    let mut s1 = Backend::start("s1", [127, 0, 0, 24]).await;
    let proxy = Proxy::start(
        &[&s1],
        &["--health-interval", "100ms", "--health-timeout", "50ms"],
    );
    s1.kill().await;
    for _ in 0..3 {
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        let mut rest = Vec::new();
        let n = timeout(WAIT, c.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }
    let m = proxy.metrics().await;
    let refused = m["l4lb_proxy_refused_total{reason=\"no_backend\"}"]
        + m["l4lb_proxy_refused_total{reason=\"connect_failed\"}"];
    assert_eq!(refused, 3.0);
    assert_eq!(m["l4lb_proxy_sessions_live"], 0.0);
}
