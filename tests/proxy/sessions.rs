//! One session's life: idle timeout, half close and reset carried through, with both
//! forwarding modes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};

use l4lb_harness::bench::cpu::process_cpu_time;

use crate::{join, three_backends, Backend, Ending, Proxy, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed_and_a_chatty_one_is_not() {
    let (s1, s2, s3) = three_backends().await;
    let proxy = Proxy::start(&[&s1, &s2, &s3], &["--idle-timeout", "600ms"]);
    let mut idle = join(&proxy).await;
    let mut chatty = join(&proxy).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        chatty.say("still here").await;
        sleep(Duration::from_millis(100)).await;
    }
    // The idle client got end of stream (the proxy closed it) at about 600 ms.
    let mut rest = Vec::new();
    let n = timeout(
        Duration::from_millis(100),
        idle.stream.read_to_end(&mut rest),
    )
    .await
    .expect("idle session still open")
    .unwrap();
    assert_eq!(n, 0, "nothing but the close arrives");
    chatty.say("and still").await;
    let v = proxy
        .wait_log_entry("session closed", |v| v["reason"] == "idle_timeout")
        .await;
    let ms = v["duration_ms"].as_u64().unwrap();
    assert!((600..1400).contains(&ms), "closed after {ms} ms");
    assert_eq!(v["backend"], s1.addr.to_string());
    assert_eq!(
        proxy.logged("session closed").len(),
        1,
        "only the idle session closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_carries_the_last_bytes_both_ways_splice() {
    half_close_carries_the_last_bytes_both_ways("splice", [127, 0, 0, 21]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_carries_the_last_bytes_both_ways_copy() {
    half_close_carries_the_last_bytes_both_ways("copy", [127, 0, 0, 27]).await;
}

async fn half_close_carries_the_last_bytes_both_ways(forward: &str, ip: [u8; 4]) {
    let s1 = Backend::start("s1", ip).await;
    let proxy = Proxy::start(&[&s1], &["--forward", forward]);
    let mut c = join(&proxy).await;
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = c.stream.split();
    let send = async {
        wr.write_all(&payload).await.unwrap();
        wr.shutdown().await.unwrap(); // FIN from the client only
    };
    let mut got = Vec::new();
    let recv = rd.read_to_end(&mut got);
    let ((), n) = tokio::join!(send, recv);
    n.unwrap();
    // Everything echoed after our FIN, then the backend's last words, then its FIN.
    assert_eq!(got.len(), payload.len() + "bye from s1\n".len());
    assert_eq!(&got[..payload.len()], &payload[..]);
    assert_eq!(&got[payload.len()..], b"bye from s1\n");
    assert_eq!(s1.endings(), [Ending::Eof]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reset_tears_down_the_backend_side_splice() {
    client_reset_tears_down_the_backend_side("splice", [127, 0, 0, 22]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reset_tears_down_the_backend_side_copy() {
    client_reset_tears_down_the_backend_side("copy", [127, 0, 0, 28]).await;
}

async fn client_reset_tears_down_the_backend_side(forward: &str, ip: [u8; 4]) {
    let s1 = Backend::start("s1", ip).await;
    let proxy = Proxy::start(&[&s1], &["--forward", forward]);
    let mut c = join(&proxy).await;
    c.say("about to vanish").await;
    socket2::SockRef::from(&c.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c); // RST
    let deadline = Instant::now() + WAIT;
    while s1.endings().is_empty() {
        assert!(Instant::now() < deadline, "backend connection never ended");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s1.endings(), [Ending::Reset]);
    proxy
        .wait_metric("l4lb_proxy_sessions_closed_total{reason=\"error\"}", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_forwards_and_an_idle_proxy_still_sleeps() {
    let s1 = Backend::start("s1", [127, 0, 0, 28]).await;
    // The longest budget, so that polling left on would show.
    let proxy = Proxy::start(&[&s1], &["--busy-poll", "1ms"]);
    let mut c = join(&proxy).await;
    for i in 0..200 {
        c.say(&format!("line {i}")).await;
    }
    // A moment for the budget to run out, then a second of silence: a worker still
    // polling would spend most of it on the CPU.
    sleep(Duration::from_millis(100)).await;
    let before = process_cpu_time(proxy.child.id()).unwrap();
    sleep(Duration::from_secs(1)).await;
    let idle = process_cpu_time(proxy.child.id()).unwrap() - before;
    assert!(
        idle < Duration::from_millis(150),
        "the idle proxy used {idle:?} of CPU in 1 s"
    );
    c.say("after the silence").await;
}
