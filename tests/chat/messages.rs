//! Lines reach every client of their server and no other, with many clients and with
//! one that never reads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::{client, server, Proc, WAIT};
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
