//! `l4lb proxy` end to end on loopback: the real binary in front of small echo backends
//! that greet with their name, so every check reads which backend answered from the
//! traffic itself. No root needed (127.0.0.x addresses).

mod backends;
mod limits;
mod logging;
mod sessions;
mod shutdown;
mod usage;
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

    /// Waits until `message` has been logged `n` times (the log is read from the
    /// proxy's output by another thread, so a line can trail what the client saw).
    async fn wait_logged(&self, message: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.logged(message).len();
            if got == n {
                return;
            }
            assert!(
                got < n && Instant::now() < deadline,
                "{message:?} logged {got} times, wanted {n}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a `message` line that `pred` accepts and returns it.
    async fn wait_log_entry(
        &self,
        message: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.logged(message).into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} line as wanted in {:#?}",
                self.logged(message)
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
