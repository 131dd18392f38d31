//! Build and teardown of the default topology (client1, lb, s1-s3, lan): ours through
//! rtnetlink against the same topology built with `ip` commands, interleaved in one run.
//!
//! `cargo bench -p l4lb-harness --bench topology` (root). `BENCH_RUNS=N` sets the number
//! of runs (default 20, at least 10).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use l4lb_harness::firewall;
use l4lb_harness::topology::{plan, Host, Topology, TopologySpec};

/// Up and down durations of one run.
struct Sample {
    up: Duration,
    down: Duration,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn iptables_in(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, "iptables"];
    all.extend_from_slice(args);
    ip(&all);
}

/// The same topology with one `ip` command per step, as a shell script would do it.
fn ip_build_and_teardown(spec: &TopologySpec, n: u64) -> Sample {
    let plan = plan::Plan::new(spec).unwrap();
    // Our own prefix, so a crash leaves names `l4lb cleanup` recognises.
    let prefix = format!("l4lb-{}-ip{n}-", std::process::id());
    let ns = |h: Host| format!("{prefix}{}", plan::role(h));
    let lan = format!("{prefix}lan");
    let start = Instant::now();
    for &h in &plan.hosts {
        ip(&["netns", "add", &ns(h)]);
    }
    ip(&["netns", "add", &lan]);
    ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &lan, "link", "set", "br0", "up"]);
    ip(&["-n", &lan, "link", "set", "lo", "up"]);
    for l in &plan.links {
        let host = ns(l.host);
        ip(&[
            "-n", &lan, "link", "add", &l.lan_if, "type", "veth", "peer", "name", &l.host_if,
            "netns", &host,
        ]);
        ip(&["-n", &lan, "link", "set", &l.lan_if, "master", "br0", "up"]);
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            &format!("{}/24", l.addr),
            "dev",
            &l.host_if,
        ]);
        ip(&["-n", &host, "link", "set", &l.host_if, "up"]);
        ip(&["-n", &host, "link", "set", "lo", "up"]);
    }
    if spec.rst_drop {
        let args: Vec<&str> = ["-A", "OUTPUT"]
            .iter()
            .chain(firewall::RST_DROP_ARGS)
            .copied()
            .collect();
        iptables_in(&ns(Host::Lb), &args);
    }
    let up = start.elapsed();
    let start = Instant::now();
    for &h in &plan.hosts {
        ip(&["netns", "del", &ns(h)]);
    }
    ip(&["netns", "del", &lan]);
    Sample {
        up,
        down: start.elapsed(),
    }
}

async fn ours(spec: &TopologySpec) -> Sample {
    let start = Instant::now();
    let topo = Topology::build(spec).await.expect("build");
    let up = start.elapsed();
    let start = Instant::now();
    topo.teardown().await.expect("teardown");
    Sample {
        up,
        down: start.elapsed(),
    }
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, samples: &[Sample]) -> Duration {
    let up = stats(samples.iter().map(|s| s.up).collect());
    let down = stats(samples.iter().map(|s| s.down).collect());
    let total = stats(samples.iter().map(|s| s.up + s.down).collect());
    println!(
        "{name:<28} up {:7.2} ms (min {:6.2}, max {:6.2})   down {:6.2} ms (min {:6.2}, max {:6.2})   up+down {:7.2} ms",
        ms(up.median),
        ms(up.min),
        ms(up.max),
        ms(down.median),
        ms(down.min),
        ms(down.max),
        ms(total.median)
    );
    total.median
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the topology bench needs root (namespaces): run it with sudo -E");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain = TopologySpec {
        subnet: Ipv4Addr::new(10, 0, 0, 0),
        rst_drop: false,
        ..TopologySpec::default()
    };
    let with_rule = TopologySpec {
        rst_drop: true,
        ..plain.clone()
    };
    // Warm-up (page cache, first-time /run/netns set-up), not counted.
    rt.block_on(ours(&plain));
    ip_build_and_teardown(&plain, 0);

    let (mut o, mut i, mut orule, mut irule) = (vec![], vec![], vec![], vec![]);
    for n in 0..runs as u64 {
        o.push(rt.block_on(ours(&plain)));
        i.push(ip_build_and_teardown(&plain, 2 * n + 1));
        orule.push(rt.block_on(ours(&with_rule)));
        irule.push(ip_build_and_teardown(&with_rule, 2 * n + 2));
    }
    println!("default topology (client1, lb, s1-s3, lan), {runs} runs each, interleaved; median (min, max)");
    let a = report("l4lb (rtnetlink)", &o);
    let b = report("ip commands", &i);
    println!(
        "  ratio ip / l4lb (up+down): {:.1}x",
        b.as_secs_f64() / a.as_secs_f64()
    );
    let a = report("l4lb + RST-drop rule", &orule);
    let b = report("ip + iptables RST-drop", &irule);
    println!(
        "  ratio ip / l4lb (up+down): {:.1}x",
        b.as_secs_f64() / a.as_secs_f64()
    );
}
