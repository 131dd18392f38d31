//! The contract between the balancers and the harness (`l4lb-contract`), proved from both
//! sides: the command lines the harness builds parse with the balancers' own CLI, and the
//! stats the balancers render read back as the harness expects. No root needed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use l4lb_balancers::admin::{self, MetricsSource, MetricsWriter};
use l4lb_balancers::pool::{Backend, Pool, Thresholds};
use l4lb_harness::runner::{balancer, probe};
use l4lb_harness::scenario::{BalancerKind, BalancerSettings};

/// The two balancer subcommands, as the binary defines them.
#[derive(Parser)]
enum Balancer {
    Raw(l4lb_balancers::raw::RawArgs),
    Proxy(l4lb_balancers::proxy::ProxyArgs),
}

fn settings() -> BalancerSettings {
    BalancerSettings {
        port: 20000,
        interval: Duration::from_millis(250),
        timeout: Duration::from_millis(120),
        rise: 2,
        fall: 4,
        idle_timeout: Duration::from_secs(7),
        connect_timeout: Some(Duration::from_millis(900)),
        health_send: Some("HEALTH CHECK".into()),
        health_expect: Some("HEALTH".into()),
    }
}

fn harness_args(kind: BalancerKind) -> Vec<String> {
    let lb = Ipv4Addr::new(10, 0, 0, 1);
    let backends = [
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 9000),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 12), 9000),
    ];
    let mut argv = vec!["l4lb".to_string()];
    argv.extend(balancer::args(kind, &settings(), lb, lb, &backends));
    argv
}

#[test]
fn the_proxy_reads_every_flag_the_harness_passes_with_its_value() {
    let Balancer::Proxy(args) = Balancer::try_parse_from(harness_args(BalancerKind::Proxy))
        .unwrap_or_else(|e| panic!("the proxy rejects the harness's command line: {e}"))
    else {
        panic!("parsed as another subcommand");
    };
    let config = args.resolve().expect("the harness's settings are valid");
    assert_eq!(config.listen.to_string(), "10.0.0.1:20000");
    assert_eq!(config.backends.len(), 2);
    assert_eq!(config.check.interval, Duration::from_millis(250));
    assert_eq!(config.check.timeout, Duration::from_millis(120));
    assert_eq!((config.thresholds.rise, config.thresholds.fall), (2, 4));
    assert_eq!(config.idle_timeout, Duration::from_secs(7));
    assert_eq!(config.connect_timeout, Duration::from_millis(900));
}

#[test]
fn the_raw_balancer_reads_every_flag_the_harness_passes_with_its_value() {
    let args = match Balancer::try_parse_from(harness_args(BalancerKind::Raw)) {
        Ok(Balancer::Raw(args)) => args,
        Ok(_) => panic!("parsed as another subcommand"),
        Err(e) => panic!("the raw balancer rejects the harness's command line: {e}"),
    };
    let config = args
        .resolve(&(32768..=60999))
        .expect("the harness's settings are valid");
    assert_eq!(config.source_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(config.port, 20000);
    assert_eq!(config.backend_addrs.len(), 2);
    assert_eq!(config.check.interval, Duration::from_millis(250));
    assert_eq!(config.check.timeout, Duration::from_millis(120));
    assert_eq!((config.thresholds.rise, config.thresholds.fall), (2, 4));
    assert_eq!(config.table.established_timeout, Duration::from_secs(7));
}

#[test]
fn the_harness_reads_health_and_placement_from_the_stats_the_balancers_write() {
    let a: SocketAddrV4 = "10.0.0.11:9000".parse().unwrap();
    let b: SocketAddrV4 = "10.0.0.12:9000".parse().unwrap();
    let pool = Arc::new(Pool::new(
        vec![Backend::new(a.into()), Backend::new(b.into())],
        Thresholds::default(),
    ));
    pool.record_success(0);
    for _ in 0..Thresholds::default().fall {
        pool.record_failure(1);
    }
    let _session = pool.least_connections(&[]).expect("a is up");

    // The proxy: sessions from the pool's gauges and totals.
    let proxy = probe::parse_metrics(&admin::render(&pool, &[]));
    assert_eq!(proxy.up.get("10.0.0.11:9000"), Some(&true), "{proxy:?}");
    assert_eq!(proxy.up.get("10.0.0.12:9000"), Some(&false), "{proxy:?}");
    assert_eq!(proxy.sessions, Some(1));
    assert_eq!(proxy.opened_per_backend.get("10.0.0.11:9000"), Some(&1));

    // The raw balancer: NAT rows take the place of sessions.
    let snapshot = l4lb_balancers::raw::stats::Snapshot {
        rows: 5,
        backend_rows: vec![(a, 5)],
        backend_rows_created: vec![(a, 9), (b, 0)],
        ..Default::default()
    };
    let source: Arc<dyn MetricsSource> = Arc::new(move |w: &mut MetricsWriter| snapshot.write(w));
    let raw = probe::parse_metrics(&admin::render(&pool, &[source]));
    assert_eq!(raw.sessions, Some(5), "{raw:?}");
    assert_eq!(raw.opened_per_backend.get("10.0.0.11:9000"), Some(&9));
    assert_eq!(raw.up.get("10.0.0.12:9000"), Some(&false));
}
