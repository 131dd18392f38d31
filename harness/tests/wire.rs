//! The user-space wire on a real link (root): a host's frames cross it with the delay,
//! loss and rate it is given, and the plain link is back once it is removed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use l4lb_harness::link::shaper::Way;
use l4lb_harness::link::spec::{parse_netem, Impairment};
use l4lb_harness::netns::Namespace;
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

const PORT: u16 = 7700;

/// An echo server in `ns` that serves connections until the test ends (bounded: 10,000).
fn echo_server(ns: &Namespace) {
    let netns = ns.handle().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netns.enter().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
        ready_tx.send(()).unwrap();
        for stream in listener.incoming().take(10_000).flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// Median time of `n` one-byte request/reply round trips from `client` to `addr`, each on
/// a connection of its own (connect included: two round trips).
fn median_exchange(client: &Namespace, addr: Ipv4Addr, n: usize) -> Duration {
    let to = SocketAddrV4::new(addr, PORT);
    let mut times: Vec<Duration> = client
        .run(move || {
            (0..n)
                .map(|_| {
                    let start = Instant::now();
                    let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))
                        .expect("connect through the wire");
                    s.set_nodelay(true).unwrap();
                    s.write_all(b"x").unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).unwrap();
                    start.elapsed()
                })
                .collect()
        })
        .unwrap();
    times.sort();
    times[n / 2]
}

/// Bytes per second of a `bytes` upload from `client` to `addr` (echoed back, both
/// directions loaded).
fn upload_rate(client: &Namespace, addr: Ipv4Addr, bytes: usize) -> f64 {
    let to = SocketAddrV4::new(addr, PORT);
    client
        .run(move || {
            let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut reader = s.try_clone().unwrap();
            let start = Instant::now();
            let drain = std::thread::spawn(move || {
                let mut got = 0;
                let mut buf = [0u8; 65536];
                while got < bytes {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            });
            let chunk = vec![7u8; 16384];
            let mut sent = 0;
            while sent < bytes {
                s.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            let got = drain.join().unwrap();
            assert!(got >= bytes, "echo returned {got} of {bytes} bytes");
            bytes as f64 / start.elapsed().as_secs_f64()
        })
        .unwrap()
}

/// One client, the lb with an echo server, one server; the client's namespace and the
/// lb's address.
async fn client_and_echoing_lb() -> (Topology, Namespace, Ipv4Addr) {
    let topo = Topology::build(&TopologySpec {
        clients: 1,
        servers: 1,
        rst_drop: false,
        ..TopologySpec::default()
    })
    .await
    .unwrap();
    echo_server(topo.namespace(Host::Lb));
    let client = topo.namespace(Host::Client(0)).clone();
    let lb = topo.addr(Host::Lb);
    (topo, client, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wire_delays_each_way_and_its_removal_restores_the_plain_link() {
    if !root_or_skip("a_wire_delays_each_way_and_its_removal_restores_the_plain_link") {
        return;
    }
    let (topo, client, lb) = client_and_echoing_lb().await;
    let plain = median_exchange(&client, lb, 20);
    assert!(plain < Duration::from_millis(5), "plain link: {plain:?}");

    // 15 ms up and 5 ms down: a connect plus one exchange is two round trips, 40 ms.
    let wire = topo
        .interpose_wire(
            Host::Client(0),
            parse_netem("delay 15ms").unwrap(),
            parse_netem("delay 5ms").unwrap(),
            1,
        )
        .await
        .unwrap();
    let delayed = median_exchange(&client, lb, 20);
    assert!(
        delayed >= Duration::from_millis(40) && delayed < Duration::from_millis(46),
        "two round trips of 20 ms: {delayed:?}"
    );
    let [up, down] = wire.counters();
    assert!(up.offered > 0 && down.offered > 0, "{up:?} {down:?}");

    // A change mid-run applies to later frames.
    wire.set(Way::Up, Impairment::default()).unwrap();
    wire.set(Way::Down, Impairment::default()).unwrap();
    let cleared = median_exchange(&client, lb, 20);
    assert!(
        cleared < Duration::from_millis(5),
        "cleared wire: {cleared:?}"
    );

    topo.remove_wire(Host::Client(0), wire).await.unwrap();
    let back = median_exchange(&client, lb, 20);
    assert!(
        back < Duration::from_millis(5),
        "plain link again: {back:?}"
    );
    topo.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_wire_paces_an_upload_and_total_loss_cuts_the_link() {
    if !root_or_skip("a_rate_limited_wire_paces_an_upload_and_total_loss_cuts_the_link") {
        return;
    }
    let (topo, client, lb) = client_and_echoing_lb().await;
    // 8 Mbit/s each way: 1 MB/s; an upload of 2 MB echoed back takes about 2 s.
    let wire = topo
        .interpose_wire(
            Host::Client(0),
            parse_netem("rate 8mbit limit 200").unwrap(),
            parse_netem("rate 8mbit limit 200").unwrap(),
            2,
        )
        .await
        .unwrap();
    let rate = upload_rate(&client, lb, 2_000_000);
    assert!(
        (800_000.0..1_050_000.0).contains(&rate),
        "8 Mbit/s is 1,000,000 B/s of frames, a little less of payload: {rate:.0} B/s"
    );
    wire.set(Way::Up, parse_netem("loss 100%").unwrap())
        .unwrap();
    let to = SocketAddrV4::new(lb, PORT);
    let cut = client
        .run(move || TcpStream::connect_timeout(&to.into(), Duration::from_millis(700)).is_err())
        .unwrap();
    assert!(cut, "every frame up is lost: no connection");
    topo.remove_wire(Host::Client(0), wire).await.unwrap();
    topo.teardown().await.unwrap();
}
