//! Chat server and client on loopback, as real processes (`l4lb chat-server`, `l4lb chat-client`).
//!
//! Every wait is bounded: a line that does not come within its timeout fails the test with
//! what did come.

mod exits;
mod messages;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
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
