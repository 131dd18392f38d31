//! Parsing and validating the shared flags: good values become types, bad ones one
//! usage error each.

use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    backends: BackendArgs,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    admin: AdminArgs,
    positional: Vec<String>,
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("lb").chain(args.iter().copied())).unwrap()
}

fn backends(args: &[&str]) -> Result<Vec<Backend>, String> {
    let c = cli(args);
    c.backends.resolve(&c.positional).map_err(|e| e.to_string())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn flags_and_positional_forms_agree() {
    let flags = backends(&["--backend", "10.0.0.2:8090", "--backend", "10.0.0.3:8091"]).unwrap();
    let positional = backends(&["10.0.0.2", "8090", "10.0.0.3", "8091"]).unwrap();
    assert_eq!(flags, positional);
    assert_eq!(flags[1].addr, addr("10.0.0.3:8091"));
    assert_eq!(flags[0].weight, 1);
}

#[test]
fn weights_parse_and_are_bounded() {
    let b = backends(&["--backend", "10.0.0.2:80,weight=3"]).unwrap();
    assert_eq!(b[0].weight, 3);
    for bad in [
        "10.0.0.2:80,weight=0",
        "10.0.0.2:80,w=2",
        "10.0.0.2:80,weight=99999",
    ] {
        let e = backends(&["--backend", bad]).unwrap_err();
        assert!(e.contains("weight=N"), "{e}");
    }
}

#[test]
fn bad_backends_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no backends"),
        (&["--backend", "10.0.0.2"], "expected IP:PORT"),
        (&["--backend", "host:80"], "expected IP:PORT"),
        (&["--backend", "10.0.0.2:0"], "port 0"),
        (
            &["--backend", "10.0.0.2:80", "10.0.0.2", "80"],
            "duplicate backend 10.0.0.2:80",
        ),
        (&["10.0.0.2"], "IP PORT pairs"),
        (&["10.0.0.2", "http"], "invalid backend port"),
        (&["10.0.0.999", "80"], "invalid backend IP"),
    ];
    for (args, want) in cases {
        let e = backends(args).unwrap_err();
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

#[test]
fn health_defaults_are_the_originals() {
    let (config, thresholds) = cli(&[]).health.resolve().unwrap();
    assert_eq!(config, CheckConfig::default());
    assert_eq!(thresholds, Thresholds { rise: 1, fall: 3 });
}

#[test]
fn health_flags_parse() {
    let c = cli(&[
        "--health-interval",
        "2s",
        "--health-timeout",
        "1s",
        "--fall",
        "2",
        "--rise",
        "4",
        "--health-send",
        "PING\\r\\n",
        "--health-expect",
        "PONG",
    ]);
    let (config, thresholds) = c.health.resolve().unwrap();
    assert_eq!(config.interval, Duration::from_secs(2));
    assert_eq!(config.timeout, Duration::from_secs(1));
    assert_eq!(config.send.as_deref(), Some(&b"PING\r\n"[..]));
    assert_eq!(config.expect.as_deref(), Some(&b"PONG"[..]));
    assert_eq!(thresholds, Thresholds { rise: 4, fall: 2 });
}

#[test]
fn bad_health_flags_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--health-interval", "0s"], "more than zero"),
        (&["--health-interval", "2days"], "at most 1 day"),
        (
            &["--health-timeout", "soon"],
            "invalid duration \"soon\" for --health-timeout",
        ),
        (&["--health-timeout", "5"], "invalid duration"),
        (&["--fall", "0"], "--fall must be from 1"),
        (&["--rise", "0"], "--rise must be from 1"),
        (&["--health-send", ""], "must not be empty"),
        (
            &["--health-timeout", "10s", "--health-interval", "1s"],
            "--health-timeout 10s must be shorter than --health-interval 1s",
        ),
        (
            &["--health-timeout", "1s", "--health-interval", "1s"],
            "must be shorter than",
        ),
    ];
    for (args, want) in cases {
        let e = cli(args).health.resolve().unwrap_err().to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn durations() {
    assert_eq!(
        parse_duration("--x", "250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(
        parse_duration("--x", "1m").unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(parse_duration("--x", "24h").unwrap(), MAX_DURATION);
    assert!(parse_duration("--x", "25h").is_err());
}

#[test]
fn admin_and_log_format() {
    let c = cli(&["--admin", "127.0.0.1:9100", "--log-format", "json"]);
    assert_eq!(c.admin.resolve().unwrap(), Some(addr("127.0.0.1:9100")));
    assert_eq!(c.log.log_format, LogFormat::Json);
    assert_eq!(cli(&[]).admin.resolve().unwrap(), None);
    let e = cli(&["--admin", "localhost"]).admin.resolve().unwrap_err();
    assert!(e.to_string().contains("--admin"), "{e}");
    assert!(Cli::try_parse_from(["lb", "--log-format", "xml"]).is_err());
}

#[test]
fn unescape_payloads() {
    assert_eq!(unescape(r"a\nb\tc\\d\q"), b"a\nb\tc\\d\\q");
    assert_eq!(unescape("HEALTH CHECK"), b"HEALTH CHECK");
}

#[test]
fn busy_poll_takes_zero_to_a_millisecond_and_refuses_the_rest() {
    assert_eq!(parse_busy_poll("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_busy_poll("20us"), Ok(Duration::from_micros(20)));
    assert_eq!(parse_busy_poll(" 1ms "), Ok(MAX_BUSY_POLL));
    let too_long = parse_busy_poll("2ms").unwrap_err();
    assert!(too_long.contains("at most 1ms"), "{too_long}");
    for bad in ["fast", "", "-1us", "99999999999999999999999s"] {
        let err = parse_busy_poll(bad).unwrap_err();
        assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
    }
}
