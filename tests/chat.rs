//! Chat server and client on loopback, as real processes (`l4lb chat-server`, `l4lb chat-client`).
//!
//! Every wait is bounded: a line that does not come within its timeout fails the test with
//! what did come.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const WAIT: Duration = Duration::from_secs(10);

/// A running `l4lb` process: stdin kept open, stdout and stderr read line by line.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every line read so far (for diagnostics and "never saw" checks).
    seen_out: Vec<String>,
    seen_err: Vec<String>,
    /// Lines read while waiting for another one, not yet claimed by an `expect_*`.
    pending_out: VecDeque<String>,
    pending_err: VecDeque<String>,
}

fn pump(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn l4lb");
        let stdout = pump(child.stdout.take().unwrap());
        let stderr = pump(child.stderr.take().unwrap());
        Proc {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
            pending_out: VecDeque::new(),
            pending_err: VecDeque::new(),
        }
    }

    /// Waits for a stdout line containing `needle`; returns it.
    fn expect_out(&mut self, needle: &str) -> String {
        match wait_line(
            &self.stdout,
            &mut self.pending_out,
            &mut self.seen_out,
            needle,
            WAIT,
        ) {
            Some(line) => line,
            None => {
                let err = self.drain_err();
                panic!(
                    "no stdout line with {needle:?}; stdout so far: {:?}, stderr: {err:?}",
                    self.seen_out
                )
            }
        }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn expect_err(&mut self, needle: &str) -> String {
        wait_line(
            &self.stderr,
            &mut self.pending_err,
            &mut self.seen_err,
            needle,
            WAIT,
        )
        .unwrap_or_else(|| {
            panic!(
                "no stderr line with {needle:?}; stderr so far: {:?}",
                self.seen_err
            )
        })
    }

    /// True if a stdout line containing `needle` shows up within `within`.
    fn sees_out(&mut self, needle: &str, within: Duration) -> bool {
        wait_line(
            &self.stdout,
            &mut self.pending_out,
            &mut self.seen_out,
            needle,
            within,
        )
        .is_some()
    }

    fn drain_err(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen_err.push(line);
        }
        self.seen_err.clone()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {WAIT:?}; stdout: {:?}",
                self.seen_out
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_line(
    rx: &Receiver<String>,
    pending: &mut VecDeque<String>,
    seen: &mut Vec<String>,
    needle: &str,
    within: Duration,
) -> Option<String> {
    if let Some(at) = pending.iter().position(|l| l.contains(needle)) {
        return pending.remove(at);
    }
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
                pending.push_back(line);
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// A chat server on an ephemeral port, and that port.
fn server(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["chat-server", "0"];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn(&args);
    let line = server.expect_err("listening on ");
    let after = line.split("listening on ").nth(1).unwrap();
    let addr = after.split_whitespace().next().unwrap();
    let port: String = addr
        .rsplit(':')
        .next()
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (
        server,
        port.parse()
            .unwrap_or_else(|_| panic!("no port in {line:?}")),
    )
}

/// A chat client that has connected (the server logged its accept).
fn client(server: &mut Proc, host: &str, port: u16, nick: &str) -> Proc {
    let client = Proc::spawn(&["chat-client", host, &port.to_string(), nick]);
    server.expect_out("Connected client IP: 127.0.0.1");
    client
}

#[test]
fn client_sees_its_own_line_echoed() {
    let (mut srv, port) = server(&[]);
    let mut alice = client(&mut srv, "127.0.0.1", port, "alice");
    alice.send("hello there");
    assert_eq!(alice.expect_out("hello there"), "[alice] hello there");
}

#[test]
fn hostname_localhost_is_resolved() {
    let (mut srv, port) = server(&[]);
    let mut bob = client(&mut srv, "localhost", port, "bob");
    bob.send("via name");
    assert_eq!(bob.expect_out("via name"), "[bob] via name");
}

#[test]
fn three_clients_see_each_others_lines() {
    let (mut srv, port) = server(&[]);
    let nicks = ["a1", "b2", "c3"];
    let mut clients: Vec<Proc> = nicks
        .iter()
        .map(|n| client(&mut srv, "127.0.0.1", port, n))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!("line from {}", nicks[i]));
    }
    for c in clients.iter_mut() {
        for nick in nicks {
            assert_eq!(
                c.expect_out(&format!("line from {nick}")),
                format!("[{nick}] line from {nick}")
            );
        }
    }
}

#[test]
fn two_servers_are_isolated() {
    let (mut srv_a, port_a) = server(&[]);
    let (mut srv_b, port_b) = server(&[]);
    let mut on_a = client(&mut srv_a, "127.0.0.1", port_a, "ann");
    let mut on_b = client(&mut srv_b, "127.0.0.1", port_b, "ben");
    on_b.send("only for B");
    on_b.expect_out("only for B");
    on_a.send("only for A");
    on_a.expect_out("only for A");
    // A's client got its own line after B's was already delivered on B: it must not see B's.
    assert!(
        !on_a.seen_out.iter().any(|l| l.contains("only for B")),
        "A saw B: {:?}",
        on_a.seen_out
    );
    assert!(
        !on_b.sees_out("only for A", Duration::from_millis(300)),
        "B saw A: {:?}",
        on_b.seen_out
    );
}

#[test]
fn q_quits_with_zero_and_server_logs_termination() {
    let (mut srv, port) = server(&[]);
    let mut c = client(&mut srv, "127.0.0.1", port, "quitter");
    c.send("q");
    assert_eq!(c.wait_exit().code(), Some(0));
    srv.expect_out("client 1 terminated");
}

#[test]
fn end_of_stdin_quits_like_q() {
    let (mut srv, port) = server(&[]);
    let mut c = client(&mut srv, "127.0.0.1", port, "eof");
    c.close_stdin();
    assert_eq!(c.wait_exit().code(), Some(0));
    srv.expect_out("client 1 terminated");
}

#[test]
fn killed_server_makes_client_say_disconnected_and_fail() {
    let (mut srv, port) = server(&[]);
    let mut c = client(&mut srv, "127.0.0.1", port, "left");
    c.send("before");
    c.expect_out("[left] before");
    srv.signal("KILL");
    c.expect_out("Server disconnected");
    let status = c.wait_exit();
    assert!(
        !status.success(),
        "client exited {status:?} after the server died"
    );
}

#[test]
fn server_exits_zero_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let (mut srv, port) = server(&[]);
        let _c = client(&mut srv, "127.0.0.1", port, "x");
        srv.signal(signal);
        assert_eq!(srv.wait_exit().code(), Some(0), "after SIG{signal}");
    }
}

#[test]
fn refused_connect_says_connect_error_and_exits_one() {
    // Bind then close a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Proc::spawn(&["chat-client", "127.0.0.1", &port.to_string(), "nobody"]);
    c.expect_err("connect() error");
    assert_eq!(c.wait_exit().code(), Some(1));
}

#[test]
fn bad_arguments_exit_two_with_a_message() {
    for args in [
        &["chat-client", "127.0.0.1", "notaport", "nick"][..],
        &["chat-client", "127.0.0.1", "4000"][..],
        &["chat-server", "70000"][..],
        &["chat-server"][..],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
}

#[test]
fn twenty_simultaneous_clients_are_all_served() {
    const N: usize = 20;
    let (mut srv, port) = server(&[]);
    let barrier = Arc::new(Barrier::new(N));
    let port_s = port.to_string();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let port_s = port_s.clone();
            thread::spawn(move || {
                barrier.wait();
                Proc::spawn(&["chat-client", "127.0.0.1", &port_s, &format!("c{i}")])
            })
        })
        .collect();
    let mut clients: Vec<Proc> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for _ in 0..N {
        srv.expect_out("Connected client IP");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!("hi from c{i}"));
    }
    for c in clients.iter_mut() {
        for i in 0..N {
            c.expect_out(&format!("[c{i}] hi from c{i}"));
        }
    }
}

/// Reads a stream until EOF, counting bytes, and reports when `marker` has gone by.
fn drainer(mut stream: TcpStream, marker: &'static [u8]) -> (Arc<AtomicU64>, Receiver<()>) {
    let count = Arc::new(AtomicU64::new(0));
    let (found_tx, found_rx) = channel();
    let counter = Arc::clone(&count);
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut tail: Vec<u8> = Vec::new();
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
            tail.extend_from_slice(&buf[..n]);
            // The flood is all `x`: only look for the marker when a `[` went by.
            if buf[..n].contains(&marker[0]) && tail.windows(marker.len()).any(|w| w == marker) {
                let _ = found_tx.send(());
                tail.clear();
            }
            let keep = tail.len().min(marker.len());
            tail.drain(..tail.len() - keep);
        }
    });
    (count, found_rx)
}

#[test]
fn a_client_that_never_reads_is_dropped_and_others_keep_chatting() {
    let started = Instant::now();
    let (mut srv, port) = server(&["--queue-chunks", "16"]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    // The slow one (client 1): tiny receive buffer, never reads.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&addr.into()).unwrap();
    srv.expect_out("Connected client IP");

    // A flooder (client 2) and a watcher (client 3), both reading everything they get.
    let flooder = TcpStream::connect(addr).unwrap();
    srv.expect_out("Connected client IP");
    let watcher = TcpStream::connect(addr).unwrap();
    srv.expect_out("Connected client IP");
    const MARKER: &[u8] = b"[alice] still here\n";
    let (flooder_got, _) = drainer(flooder.try_clone().unwrap(), MARKER);
    let (watcher_got, watcher_saw_marker) = drainer(watcher.try_clone().unwrap(), MARKER);

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let mut writer = flooder.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let line = format!("{}\n", "x".repeat(1023));
            let mut sent = 0u64;
            // Paced (at most 64 KiB a millisecond) so that readers that do read keep up, and
            // bounded (64 MiB): far above the slow client's kernel buffers plus 16 chunks.
            while !stop.load(Ordering::Relaxed) && sent < 64 << 20 {
                for _ in 0..64 {
                    if writer.write_all(line.as_bytes()).is_err() {
                        return sent;
                    }
                    sent += line.len() as u64;
                }
                thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    srv.expect_err("client 1 dropped: outgoing queue full");
    stop.store(true, Ordering::Relaxed);
    srv.expect_out("client 1 terminated");
    let sent = flood.join().unwrap();
    eprintln!("flooded {sent} bytes before the slow client was dropped");
    let watcher_at_drop = watcher_got.load(Ordering::Relaxed);
    assert!(sent > 0 && flooder_got.load(Ordering::Relaxed) > 0);

    // The others are still served: a newcomer's line reaches it and the watcher, which
    // was connected all along and kept receiving after the drop.
    let mut alice = client(&mut srv, "127.0.0.1", port, "alice");
    alice.send("still here");
    alice.expect_out("[alice] still here");
    watcher_saw_marker
        .recv_timeout(WAIT)
        .expect("the watcher never got alice's line");
    assert!(watcher_got.load(Ordering::Relaxed) > watcher_at_drop);
    let drops: Vec<String> = srv
        .drain_err()
        .into_iter()
        .filter(|l| l.contains("dropped"))
        .collect();
    assert_eq!(
        drops.len(),
        1,
        "only the slow client may be dropped: {drops:?}"
    );

    // The server closed the slow client's connection: reading it ends (EOF or reset).
    let mut slow_stream: TcpStream = slow.into();
    slow_stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let end = loop {
        match slow_stream.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(error) => break Err(error),
        }
    };
    assert!(
        !matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "the slow client's connection is still open: {end:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn empty_nickname_exits_two_with_one_clear_line() {
    for nick in ["", "  "] {
        let out = Command::new(BIN)
            .args(["chat-client", "127.0.0.1", "4000", nick])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{nick:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{nick:?}: {stderr}");
        assert!(
            stderr.starts_with("l4lb: ") && stderr.contains("nickname must not be empty"),
            "{nick:?}: {stderr}"
        );
    }
}

/// Runs `ip args...` and panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the named namespace when dropped (also when the test panics).
struct TempNs(String);

impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A connect that is never answered (the SYN crosses a veth pair to an end that has no
/// address and forwards nothing) ends after `--connect-timeout` with the original's
/// `connect() error` and exit 1.
#[test]
fn unanswered_connect_times_out_with_connect_error_and_exits_one() {
    if !l4lb_harness::privilege::root_or_skip("unanswered_connect_times_out") {
        return;
    }
    let ns = format!("l4lb-{}-90-chatnoanswer", std::process::id());
    ip(&["netns", "add", &ns]);
    let _guard = TempNs(ns.clone());
    let inside = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &ns, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    };
    inside(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    inside(&["addr", "add", "10.99.0.1/24", "dev", "d0"]);
    inside(&["link", "set", "d0", "up"]);
    inside(&["link", "set", "d1", "up"]);
    // A fixed neighbour: no ARP failure, the SYN is just never answered.
    inside(&[
        "neigh",
        "add",
        "10.99.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "d0",
    ]);
    let started = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            BIN,
            "chat-client",
            "10.99.0.2",
            "7000",
        ])
        .args(["nobody", "--connect-timeout", "1s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("connect() error") && l.ends_with("timed out after 1s")),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
