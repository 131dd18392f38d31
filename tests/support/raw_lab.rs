//! The command line the raw-balancer namespace tests start `l4lb raw` with.

use l4lb_harness::topology::{Host, Topology};

/// `raw` with the tests' settings: JSON logs, checks every 1 s with a generous 900 ms
/// timeout (parallel bulk tests load the machine, and a slow check must not flap a
/// backend; a killed server is refused at once anyway), fall 2, rise 1, a 200 ms FIN
/// linger, stats on `admin`, every server of `topo` at `port`, then `extra`.
pub fn raw_args(
    topo: &Topology,
    servers: usize,
    port: u16,
    admin: &str,
    extra: &[&str],
) -> Vec<String> {
    let lb_ip = topo.addr(Host::Lb).to_string();
    let mut args: Vec<String> = [
        "raw",
        "--source-ip",
        &lb_ip,
        "--log-format",
        "json",
        "--health-interval",
        "1s",
        "--health-timeout",
        "900ms",
        "--fall",
        "2",
        "--rise",
        "1",
        "--fin-linger",
        "200ms",
        "--admin",
        admin,
    ]
    .map(String::from)
    .to_vec();
    for i in 0..servers {
        args.push("--backend".into());
        args.push(format!("{}:{port}", topo.addr(Host::Server(i))));
    }
    args.extend(extra.iter().map(|a| (*a).to_string()));
    args
}
