//! How the programs end: quitting, a lost or refused server, signals, bad arguments and
//! an unanswered connect, each with its exit status and message.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{client, server, Proc, BIN};
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
