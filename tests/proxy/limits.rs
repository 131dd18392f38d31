//! The session limit and the descriptor budget it is derived from.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

use crate::{join, Backend, Proxy, WAIT};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limit_refuses_the_extra_client_cleanly() {
    let s1 = Backend::start("s1", [127, 0, 0, 23]).await;
    let proxy = Proxy::start(&[&s1], &["--max-sessions", "2"]);
    let mut a = join(&proxy).await;
    let _b = join(&proxy).await;
    let mut extra = TcpStream::connect(proxy.addr).await.unwrap();
    let mut rest = Vec::new();
    let n = timeout(WAIT, extra.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "refused: closed without a greeting");
    // A health check is a short extra connection to the backend: wait for it to go, so
    // only a lasting third session (the extra client's) fails this.
    let deadline = Instant::now() + WAIT;
    while s1.live() != 2 {
        assert!(
            Instant::now() < deadline,
            "backend live: {} (want 2)",
            s1.live()
        );
        sleep(Duration::from_millis(10)).await;
    }
    proxy
        .wait_metric("l4lb_proxy_refused_total{reason=\"max_sessions\"}", 1.0)
        .await;
    a.say("unaffected").await;
    drop(a);
    proxy.wait_metric("l4lb_proxy_sessions_live", 1.0).await;
    join(&proxy).await.say("a free place again").await;
}
/// The proxy's first lines when started under `ulimit -n 200` with `extra` flags, up to
/// and including "proxy listening".
fn first_lines_under_a_descriptor_limit_of_200(extra: &[&str]) -> String {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_l4lb"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("proxy listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn the_default_session_limit_fits_the_descriptors_and_a_given_one_is_kept() {
    // 200 descriptors, 64 kept back, 2 a session: 68 sessions.
    let default = first_lines_under_a_descriptor_limit_of_200(&[]);
    assert!(default.contains("max_sessions=68"), "{default}");
    assert!(!default.contains("WARN"), "{default}");
    let given = first_lines_under_a_descriptor_limit_of_200(&["--max-sessions", "100"]);
    assert!(
        given.contains("WARN") && given.contains("lower --max-sessions to 68"),
        "{given}"
    );
    assert!(given.contains("max_sessions=100"), "{given}");
}

/// Out of descriptors is the proxy's own trouble, not its backends': under `ulimit -n 200`
/// (68 sessions), with 150 idle connections to the stats endpoint and more clients than
/// sessions, no backend is ever marked down, and a new client is served or refused as
/// max_sessions, never as no_backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_descriptor_table_never_marks_backends_down() {
    let s1 = Backend::start("s1", [127, 0, 0, 61]).await;
    let s2 = Backend::start("s2", [127, 0, 0, 62]).await;
    let s3 = Backend::start("s3", [127, 0, 0, 63]).await;
    let proxy = Proxy::start_with_nofile(
        &[&s1, &s2, &s3],
        &["--health-interval", "100ms", "--health-timeout", "50ms"],
        200,
    );
    let mut idle_admin = Vec::new();
    for _ in 0..150 {
        if let Ok(c) = TcpStream::connect(proxy.admin).await {
            idle_admin.push(c);
        }
    }
    let mut clients = Vec::new();
    for _ in 0..90 {
        if let Ok(c) = TcpStream::connect(proxy.addr).await {
            clients.push(c);
        }
    }
    // Fifteen health intervals with the table full.
    sleep(Duration::from_millis(1500)).await;
    let mut extra = TcpStream::connect(proxy.addr).await.unwrap();
    let greeting = timeout(WAIT, read_line_or_end(&mut extra)).await.unwrap();
    drop(idle_admin);
    let down: Vec<_> = proxy
        .logged("backend health changed")
        .into_iter()
        .filter(|v| v["to"] == "down" || v["to"] == "suspect")
        .collect();
    assert!(down.is_empty(), "backends marked down: {down:#?}");
    // The endpoint's slots free once the idle connections are gone.
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let m = proxy.metrics().await;
        if !m.is_empty() {
            break m;
        }
        assert!(Instant::now() < deadline, "stats endpoint never answered");
        sleep(Duration::from_millis(50)).await;
    };
    for b in [&s1, &s2, &s3] {
        let key = format!("l4lb_backend_up{{backend=\"{}\"}}", b.addr);
        assert_eq!(metrics.get(&key), Some(&1.0), "{key}: {metrics:#?}");
    }
    let refused = |reason: &str| {
        metrics
            .get(&format!("l4lb_proxy_refused_total{{reason=\"{reason}\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(refused("no_backend"), 0.0, "{metrics:#?}");
    match greeting {
        Some(name) => assert!(name.starts_with('s'), "{name}"),
        None => assert!(refused("max_sessions") >= 1.0, "{metrics:#?}"),
    }
    drop(clients);
}

/// Like [`read_line`], but `None` on end of stream without waiting for more.
async fn read_line_or_end(s: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
        }
    }
}
