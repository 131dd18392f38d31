//! `l4lb proxy` end to end on loopback: the real binary in front of small echo backends
//! that greet with their name, so every check reads which backend answered from the
//! traffic itself. No root needed (127.0.0.x addresses).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// How a backend saw a connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Eof,
    Reset,
}

/// An echo server that first sends `name\n`, echoes everything, and on end of stream
/// sends `bye from name\n` and closes.
struct Backend {
    name: String,
    addr: SocketAddr,
    live: Arc<AtomicUsize>,
    endings: Arc<Mutex<Vec<Ending>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    async fn start(name: &str, ip: [u8; 4]) -> Self {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
        let mut b = Backend {
            name: name.into(),
            addr: listener.local_addr().unwrap(),
            live: Arc::default(),
            endings: Arc::default(),
            tasks: Arc::default(),
            acceptor: None,
        };
        b.serve(listener);
        b
    }

    fn serve(&mut self, listener: TcpListener) {
        let (name, live, endings, tasks) = (
            self.name.clone(),
            self.live.clone(),
            self.endings.clone(),
            self.tasks.clone(),
        );
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let (name, live, endings) = (name.clone(), live.clone(), endings.clone());
                live.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    let (ending, bytes) = echo(&mut s, &name).await;
                    // Health checks never send anything: only sessions with data count.
                    if bytes > 0 {
                        endings.lock().unwrap().push(ending);
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                });
                tasks.lock().unwrap().push(task);
            }
        }));
    }

    /// Like a killed process: the listener and every connection go away.
    async fn kill(&mut self) {
        self.acceptor.take().unwrap().abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(self.addr).await.is_ok() {
            assert!(Instant::now() < deadline, "{} still accepts", self.name);
            sleep(Duration::from_millis(10)).await;
        }
        self.live.store(0, Ordering::SeqCst);
    }

    async fn revive(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn endings(&self) -> Vec<Ending> {
        self.endings.lock().unwrap().clone()
    }
}

/// Serves one connection; returns how it ended and how many bytes the peer sent.
async fn echo(s: &mut TcpStream, name: &str) -> (Ending, usize) {
    let mut received = 0;
    if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
        return (Ending::Reset, received);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => {
                let _ = s.write_all(format!("bye from {name}\n").as_bytes()).await;
                let _ = s.shutdown().await;
                return (Ending::Eof, received);
            }
            Ok(n) => {
                received += n;
                if s.write_all(&buf[..n]).await.is_err() {
                    return (Ending::Reset, received);
                }
            }
            Err(_) => return (Ending::Reset, received),
        }
    }
}

/// The real `l4lb proxy` process, with its JSON log lines collected.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Proxy {
    fn start(backends: &[&Backend], extra: &[&str]) -> Self {
        Self::start_logging(backends, extra, "debug")
    }

    /// Like [`Proxy::start`], with `RUST_LOG` set to `level`.
    fn start_logging(backends: &[&Backend], extra: &[&str], level: &str) -> Self {
        Self::spawn(backends, extra, level, None)
    }

    /// Like [`Proxy::start`], under `ulimit -n nofile`.
    fn start_with_nofile(backends: &[&Backend], extra: &[&str], nofile: u32) -> Self {
        Self::spawn(backends, extra, "debug", Some(nofile))
    }

    fn spawn(backends: &[&Backend], extra: &[&str], level: &str, nofile: Option<u32>) -> Self {
        let mut args: Vec<String> = vec!["proxy".into(), "--listen".into(), "127.0.0.1:0".into()];
        for b in backends {
            args.push("--backend".into());
            args.push(b.addr.to_string());
        }
        args.extend(["--log-format", "json", "--admin", "127.0.0.1:0"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = match nofile {
            None => Command::new(env!("CARGO_BIN_EXE_l4lb")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_l4lb"));
                sh
            }
        };
        let mut child = command
            .args(&args)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("proxy: {line}");
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v.clone());
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let v = rx.recv_timeout(WAIT).expect("proxy did not start");
            let field = |k: &str| v[k].as_str().map(|s| s.parse::<SocketAddr>().unwrap());
            addr = addr.or(field("listen"));
            admin = admin.or(field("admin"));
        }
        Proxy {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            logs,
        }
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        let mut s = TcpStream::connect(self.admin).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text.lines()
            .filter(|l| l.starts_with("l4lb_"))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    async fn metric(&self, key: &str) -> f64 {
        *self
            .metrics()
            .await
            .get(key)
            .unwrap_or_else(|| panic!("no metric {key}"))
    }

    async fn wait_metric(&self, key: &str, want: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.metric(key).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} stayed {got}, wanted {want}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "proxy still running after {within:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|v| v["message"] == message)
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connected client and the backend that greeted it.
struct Client {
    stream: TcpStream,
    backend: String,
}

/// Reads up to and including the next newline (returned without it); `None` on end of
/// stream or error.
async fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match timeout(WAIT, s.read(&mut byte))
            .await
            .expect("no line in time")
        {
            Ok(0) | Err(_) => return None,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8(line).unwrap()),
            Ok(_) => line.push(byte[0]),
        }
    }
}

async fn join(proxy: &Proxy) -> Client {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let backend = read_line(&mut stream)
        .await
        .expect("no greeting: session refused");
    Client { stream, backend }
}

impl Client {
    async fn say(&mut self, text: &str) {
        self.stream
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_line(&mut self.stream).await.as_deref(), Some(text));
    }
}

async fn three_backends() -> (Backend, Backend, Backend) {
    (
        Backend::start("s1", [127, 0, 0, 11]).await,
        Backend::start("s2", [127, 0, 0, 12]).await,
        Backend::start("s3", [127, 0, 0, 13]).await,
    )
}

fn names(clients: &[Client]) -> Vec<&str> {
    clients.iter().map(|c| c.backend.as_str()).collect()
}

/// At the default level an ordinary close is not logged unless `--log-sessions` asks for
/// an access log; an idle-timeout close always is. One worker, so the lines come in the
/// order the sessions closed: the idle close, logged last, shows the earlier line is not
/// just late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_closes_are_logged_at_info_only_with_log_sessions() {
    let backend = Backend::start("s1", [127, 0, 0, 31]).await;
    for (flag, want) in [(None, 0), (Some("--log-sessions"), 1)] {
        let mut extra = vec!["--workers", "1", "--idle-timeout", "500ms"];
        extra.extend(flag);
        let proxy = Proxy::start_logging(&[&backend], &extra, "info");
        let mut done = join(&proxy).await;
        done.say("hello").await;
        drop(done);
        proxy
            .wait_metric("l4lb_proxy_sessions_closed_total{reason=\"done\"}", 1.0)
            .await;
        let _idle = join(&proxy).await;
        let deadline = Instant::now() + WAIT;
        while !proxy
            .logged("session closed")
            .iter()
            .any(|v| v["reason"] == "idle_timeout")
        {
            assert!(Instant::now() < deadline, "the idle close was not logged");
            sleep(Duration::from_millis(20)).await;
        }
        let done_lines = proxy
            .logged("session closed")
            .iter()
            .filter(|v| v["reason"] == "done")
            .count();
        assert_eq!(done_lines, want, "with {flag:?}");
    }
}

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
    assert_eq!(proxy.logged("session opened").len(), 7);
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
    let closed = proxy.logged("session closed");
    let v = closed
        .iter()
        .find(|v| v["reason"] == "idle_timeout")
        .expect("idle close logged");
    let ms = v["duration_ms"].as_u64().unwrap();
    assert!((600..1400).contains(&ms), "closed after {ms} ms");
    assert_eq!(v["backend"], s1.addr.to_string());
    assert_eq!(closed.len(), 1, "only the idle session closed");
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
    assert!(proxy
        .logged("session closed")
        .iter()
        .any(|v| v["reason"] == "shutdown"));
}

#[test]
fn bad_cli_input_gives_exit_code_2_and_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no backends"),
        (
            &["--backend", "10.0.0.2"],
            "invalid address \"10.0.0.2\" for --backend",
        ),
        (
            &["10.0.0.2", "80", "10.0.0.2", "80"],
            "duplicate backend 10.0.0.2:80",
        ),
        (
            &["--backend", "10.0.0.2:80", "--idle-timeout", "0s"],
            "--idle-timeout must be more than zero",
        ),
        (
            &["--backend", "10.0.0.2:80", "--health-interval", "400d"],
            "at most 1 day",
        ),
        (
            &["--backend", "10.0.0.2:80", "--connect-timeout", "fast"],
            "invalid duration \"fast\"",
        ),
        (
            &[
                "--backend",
                "10.0.0.2:80",
                "--health-timeout",
                "10s",
                "--health-interval",
                "1s",
            ],
            "--health-timeout 10s must be shorter than --health-interval 1s",
        ),
        (
            &["--backend", "10.0.0.2:80", "--fall", "0"],
            "--fall must be from 1",
        ),
        (
            &["--backend", "10.0.0.2:80", "--listen", "*:20000"],
            "--listen",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
            .arg("proxy")
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("l4lb: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
    // Values clap itself rejects exit 2 as well.
    let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .args([
            "proxy",
            "--backend",
            "10.0.0.2:80",
            "--max-sessions",
            "lots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
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
