//! Configurations of the peers (pure): kernel NAT rules, HAProxy and nginx files, for
//! `l4lb bench` (throughput: no checks, default timeouts) and for scenarios (the
//! scenario's health checks, idle timeout and stats socket, [`PeerSettings`]).

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a scenario asks of a peer beyond where it listens and its backends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// Active health checks (None: none, as in `l4lb bench`).
    pub checks: Option<Checks>,
    /// Silence after which a session is closed (None: the peer's bench default).
    pub idle_timeout: Option<Duration>,
    /// Longest wait for a server to accept (None: the peer's bench default).
    pub connect_timeout: Option<Duration>,
    /// HAProxy: where its stats socket goes (None: no socket).
    pub stats_socket: Option<PathBuf>,
}

/// Health checks, as a scenario's `[balancer]` states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// Time between two checks of one server.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Passes in a row that bring a server back.
    pub rise: u32,
    /// Failures in a row that take it out.
    pub fall: u32,
    /// Bytes a check sends after connecting (None: a connect check).
    pub send: Option<String>,
    /// What the reply must contain.
    pub expect: Option<String>,
}

/// A duration as HAProxy and nginx read it: whole milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// HAProxy balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaproxyBalance {
    /// `balance roundrobin`.
    RoundRobin,
    /// `balance leastconn`.
    LeastConn,
}

/// iptables arguments (after `iptables`) that install kernel NAT in the balancer's
/// namespace: DNAT of `listen` round robin over `backends` with `-m statistic --mode nth`
/// (rule k of n matches every (n-k)th remaining new connection, the last matches the
/// rest), plus MASQUERADE of the balanced traffic towards each backend, so replies come
/// back through the balancer. Give each rule to `-A`; [`nat_delete`] removes them.
pub fn nat_rules(listen: SocketAddrV4, backends: &[SocketAddrV4]) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    let n = backends.len();
    for (k, b) in backends.iter().enumerate() {
        let mut r: Vec<String> = [
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-d",
            &listen.ip().to_string(),
            "--dport",
            &listen.port().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let left = n - k;
        if left > 1 {
            r.extend(
                [
                    "-m",
                    "statistic",
                    "--mode",
                    "nth",
                    "--every",
                    &left.to_string(),
                ]
                .map(String::from),
            );
            r.extend(["--packet", "0"].map(String::from));
        }
        r.extend(["-j", "DNAT", "--to-destination", &b.to_string()].map(String::from));
        rules.push(r);
    }
    for b in backends {
        rules.push(
            [
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-p",
                "tcp",
                "-d",
                &b.ip().to_string(),
                "--dport",
                &b.port().to_string(),
                "-j",
                "MASQUERADE",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    rules
}

/// The `-D` twins of [`nat_rules`], in reverse order.
pub fn nat_delete(rules: &[Vec<String>]) -> Vec<Vec<String>> {
    rules
        .iter()
        .rev()
        .map(|r| {
            r.iter()
                .map(|a| {
                    if a == "-A" {
                        "-D".to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        })
        .collect()
}

/// An HAProxy configuration for `l4lb bench`: `mode tcp`, one thread, `balance` over
/// `backends`, no checks, 30 s client/server timeouts.
pub fn haproxy(listen: SocketAddrV4, backends: &[SocketAddrV4], balance: HaproxyBalance) -> String {
    haproxy_with(listen, backends, balance, &PeerSettings::default())
}

/// An HAProxy configuration: `mode tcp`, one thread, `balance` over `backends`, and what
/// `settings` asks: `check inter/fall/rise` on every server with `timeout check` (and
/// `timeout connect` the check's timeout, since HAProxy bounds a check's connect by
/// min(timeout connect, inter)), `tcp-check send-binary`/`expect binary` for an
/// application check, `option redispatch` with `retries 3` (a client whose server
/// refuses is sent to another, the passive failover), `timeout client/server` the idle
/// timeout, and a stats socket for `show stat`.
pub fn haproxy_with(
    listen: SocketAddrV4,
    backends: &[SocketAddrV4],
    balance: HaproxyBalance,
    settings: &PeerSettings,
) -> String {
    let algo = match balance {
        HaproxyBalance::RoundRobin => "roundrobin",
        HaproxyBalance::LeastConn => "leastconn",
    };
    let idle = settings.idle_timeout.map_or("30s".into(), ms);
    let connect = settings
        .connect_timeout
        .or(settings.checks.as_ref().map(|c| c.timeout))
        .map_or("5s".into(), ms);
    let mut c = String::new();
    c.push_str("global\n  nbthread 1\n  maxconn 4000\n");
    if let Some(sock) = &settings.stats_socket {
        c.push_str(&format!(
            "  stats socket {} mode 600 level admin\n",
            sock.display()
        ));
    }
    c.push_str(&format!(
        "defaults\n  mode tcp\n  timeout connect {connect}\n  timeout client {idle}\n  timeout server {idle}\n"
    ));
    if let Some(ch) = &settings.checks {
        c.push_str(&format!(
            "  timeout check {}\n  option redispatch\n  retries 3\n",
            ms(ch.timeout)
        ));
    }
    c.push_str(&format!(
        "frontend f\n  bind {listen}\n  default_backend b\n"
    ));
    c.push_str(&format!("backend b\n  balance {algo}\n"));
    let mut server_opts = String::new();
    if let Some(ch) = &settings.checks {
        if let Some(send) = &ch.send {
            c.push_str("  option tcp-check\n  tcp-check connect\n");
            c.push_str(&format!("  tcp-check send-binary {}\n", hex(send)));
            if let Some(expect) = &ch.expect {
                c.push_str(&format!("  tcp-check expect binary {}\n", hex(expect)));
            }
        }
        server_opts = format!(
            " check inter {} fall {} rise {}",
            ms(ch.interval),
            ch.fall,
            ch.rise
        );
    }
    for (i, b) in backends.iter().enumerate() {
        c.push_str(&format!("  server s{} {b}{server_opts}\n", i + 1));
    }
    c
}

/// An nginx configuration for `l4lb bench`: round robin, no passive-check settings.
pub fn nginx(
    listen: SocketAddrV4,
    backends: &[SocketAddrV4],
    module: Option<&Path>,
    dir: &Path,
) -> String {
    nginx_with(
        listen,
        backends,
        module,
        dir,
        false,
        &PeerSettings::default(),
    )
}

/// An nginx configuration (half-close passed on, as the bulk sink needs): one process
/// (`master_process off`, so a kill leaves no orphan worker), `stream` proxy over
/// `backends`, `least_conn` when asked. `module` is the dynamic stream module to load
/// (None when nginx has it built in); `dir` holds pid and logs. Open-source nginx has
/// only passive checks: with `settings.checks`, each server gets `max_fails` = fall and
/// `fail_timeout` = interval x fall + timeout rounded up to seconds (that many failed client connections
/// within that time take it out for that time); the idle timeout is `proxy_timeout`.
pub fn nginx_with(
    listen: SocketAddrV4,
    backends: &[SocketAddrV4],
    module: Option<&Path>,
    dir: &Path,
    least_conn: bool,
    settings: &PeerSettings,
) -> String {
    let mut c = String::new();
    if let Some(m) = module {
        c.push_str(&format!("load_module {};\n", m.display()));
    }
    c.push_str("daemon off;\nmaster_process off;\nworker_processes 1;\n");
    c.push_str(&format!("pid {};\n", dir.join("nginx.pid").display()));
    c.push_str(&format!(
        "error_log {} warn;\n",
        dir.join("error.log").display()
    ));
    c.push_str("worker_rlimit_nofile 16384;\nevents { worker_connections 8000; }\n");
    c.push_str("stream {\n  upstream b {\n");
    if least_conn {
        c.push_str("    least_conn;\n");
    }
    let passive = settings.checks.as_ref().map_or(String::new(), |ch| {
        // nginx reads `fail_timeout` in whole seconds: rounded up, at least 1 s.
        let window = ch
            .interval
            .saturating_mul(ch.fall)
            .saturating_add(ch.timeout);
        let secs = window.as_millis().div_ceil(1000).max(1);
        format!(" max_fails={} fail_timeout={secs}s", ch.fall)
    });
    for b in backends {
        c.push_str(&format!("    server {b}{passive};\n"));
    }
    let mut extra = String::new();
    if let Some(t) = settings.idle_timeout {
        extra += &format!(" proxy_timeout {};", ms(t));
    }
    if let Some(t) = settings.connect_timeout {
        extra += &format!(" proxy_connect_timeout {};", ms(t));
    }
    c.push_str(&format!(
        "  }}\n  server {{ listen {listen} backlog=4096; proxy_half_close on;{extra} proxy_pass b; }}\n}}\n"
    ));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddrV4, Vec<SocketAddrV4>) {
        (
            "10.0.0.1:20000".parse().unwrap(),
            vec![
                "10.0.1.11:8080".parse().unwrap(),
                "10.0.1.12:8080".parse().unwrap(),
                "10.0.1.13:8080".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn nat_rules_round_robin_with_nth() {
        let (l, b) = addrs();
        let rules: Vec<String> = nat_rules(l, &b).iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            rules,
            [
                "-t nat -A PREROUTING -p tcp -d 10.0.0.1 --dport 20000 -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.0.1.11:8080",
                "-t nat -A PREROUTING -p tcp -d 10.0.0.1 --dport 20000 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.0.1.12:8080",
                "-t nat -A PREROUTING -p tcp -d 10.0.0.1 --dport 20000 -j DNAT --to-destination 10.0.1.13:8080",
                "-t nat -A POSTROUTING -p tcp -d 10.0.1.11 --dport 8080 -j MASQUERADE",
                "-t nat -A POSTROUTING -p tcp -d 10.0.1.12 --dport 8080 -j MASQUERADE",
                "-t nat -A POSTROUTING -p tcp -d 10.0.1.13 --dport 8080 -j MASQUERADE",
            ]
        );
    }

    #[test]
    fn nat_with_one_backend_has_no_statistic() {
        let (l, b) = addrs();
        let rules = nat_rules(l, &b[..1]);
        assert_eq!(rules.len(), 2);
        assert!(!rules[0].contains(&"statistic".to_string()));
    }

    #[test]
    fn nat_delete_mirrors_in_reverse() {
        let (l, b) = addrs();
        let rules = nat_rules(l, &b);
        let del = nat_delete(&rules);
        assert_eq!(del.len(), rules.len());
        assert_eq!(del[0][2], "-D");
        assert_eq!(del[0][3], "POSTROUTING");
        assert_eq!(del.last().unwrap()[..4], ["-t", "nat", "-D", "PREROUTING"]);
        assert!(del.iter().all(|r| !r.contains(&"-A".to_string())));
    }

    #[test]
    fn haproxy_config() {
        let (l, b) = addrs();
        let c = haproxy(l, &b, HaproxyBalance::LeastConn);
        insta::assert_snapshot!(c, @r"
        global
          nbthread 1
          maxconn 4000
        defaults
          mode tcp
          timeout connect 5s
          timeout client 30s
          timeout server 30s
        frontend f
          bind 10.0.0.1:20000
          default_backend b
        backend b
          balance leastconn
          server s1 10.0.1.11:8080
          server s2 10.0.1.12:8080
          server s3 10.0.1.13:8080
        ");
        assert!(haproxy(l, &b, HaproxyBalance::RoundRobin).contains("balance roundrobin\n"));
    }

    #[test]
    fn nginx_config() {
        let (l, b) = addrs();
        let c = nginx(
            l,
            &b[..1],
            Some(Path::new("/usr/lib/nginx/modules/ngx_stream_module.so")),
            Path::new("/tmp/x"),
        );
        insta::assert_snapshot!(c, @r"
        load_module /usr/lib/nginx/modules/ngx_stream_module.so;
        daemon off;
        master_process off;
        worker_processes 1;
        pid /tmp/x/nginx.pid;
        error_log /tmp/x/error.log warn;
        worker_rlimit_nofile 16384;
        events { worker_connections 8000; }
        stream {
          upstream b {
            server 10.0.1.11:8080;
          }
          server { listen 10.0.0.1:20000 backlog=4096; proxy_half_close on; proxy_pass b; }
        }
        ");
        assert!(!nginx(l, &b, None, Path::new("/d")).contains("load_module"));
    }

    fn scenario_settings() -> PeerSettings {
        PeerSettings {
            checks: Some(Checks {
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(100),
                rise: 1,
                fall: 3,
                send: None,
                expect: None,
            }),
            idle_timeout: Some(Duration::from_secs(2)),
            connect_timeout: None,
            stats_socket: Some(PathBuf::from("/run/x/haproxy.sock")),
        }
    }

    #[test]
    fn haproxy_gets_the_scenarios_checks_timeouts_and_socket() {
        let (l, b) = addrs();
        let c = haproxy_with(l, &b[..2], HaproxyBalance::RoundRobin, &scenario_settings());
        insta::assert_snapshot!(c, @r"
        global
          nbthread 1
          maxconn 4000
          stats socket /run/x/haproxy.sock mode 600 level admin
        defaults
          mode tcp
          timeout connect 100ms
          timeout client 2000ms
          timeout server 2000ms
          timeout check 100ms
          option redispatch
          retries 3
        frontend f
          bind 10.0.0.1:20000
          default_backend b
        backend b
          balance roundrobin
          server s1 10.0.1.11:8080 check inter 200ms fall 3 rise 1
          server s2 10.0.1.12:8080 check inter 200ms fall 3 rise 1
        ");
    }

    #[test]
    fn haproxy_application_checks_send_and_expect_bytes() {
        let (l, b) = addrs();
        let mut s = scenario_settings();
        if let Some(ch) = s.checks.as_mut() {
            ch.send = Some("ping\n".into());
            ch.expect = Some("pong".into());
        }
        s.connect_timeout = Some(Duration::from_secs(2));
        let c = haproxy_with(l, &b[..1], HaproxyBalance::LeastConn, &s);
        assert!(c.contains("timeout connect 2000ms\n"), "{c}");
        assert!(c.contains("balance leastconn\n  option tcp-check\n  tcp-check connect\n  tcp-check send-binary 70696e670a\n  tcp-check expect binary 706f6e67\n"), "{c}");
    }

    #[test]
    fn nginx_gets_passive_checks_idle_timeout_and_least_conn() {
        let (l, b) = addrs();
        let mut s = scenario_settings();
        s.connect_timeout = Some(Duration::from_secs(2));
        let c = nginx_with(l, &b[..2], None, Path::new("/d"), true, &s);
        assert!(c.contains("upstream b {\n    least_conn;\n    server 10.0.1.11:8080 max_fails=3 fail_timeout=1s;\n    server 10.0.1.12:8080 max_fails=3 fail_timeout=1s;\n  }"), "{c}");
        assert!(c.contains("proxy_half_close on; proxy_timeout 2000ms; proxy_connect_timeout 2000ms; proxy_pass b;"), "{c}");
        // The bench's configuration is the plain one.
        assert_eq!(
            nginx(l, &b, None, Path::new("/d")),
            nginx_with(
                l,
                &b,
                None,
                Path::new("/d"),
                false,
                &PeerSettings::default()
            )
        );
    }
}
