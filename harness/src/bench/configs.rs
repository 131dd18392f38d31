//! Configurations of the peers (pure): kernel NAT rules, HAProxy and nginx files.

use std::net::SocketAddrV4;
use std::path::Path;

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

/// An HAProxy configuration: `mode tcp`, one thread, `balance` over `backends`.
pub fn haproxy(listen: SocketAddrV4, backends: &[SocketAddrV4], balance: HaproxyBalance) -> String {
    let algo = match balance {
        HaproxyBalance::RoundRobin => "roundrobin",
        HaproxyBalance::LeastConn => "leastconn",
    };
    let mut c = String::new();
    c.push_str("global\n  nbthread 1\n  maxconn 4000\n");
    c.push_str(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n",
    );
    c.push_str(&format!(
        "frontend f\n  bind {listen}\n  default_backend b\n"
    ));
    c.push_str(&format!("backend b\n  balance {algo}\n"));
    for (i, b) in backends.iter().enumerate() {
        c.push_str(&format!("  server s{} {b}\n", i + 1));
    }
    c
}

/// An nginx configuration (half-close passed on, as the bulk sink needs): one process (`master_process off`, so a kill leaves no
/// orphan worker), `stream` proxy round robin over `backends`. `module` is the dynamic
/// stream module to load (None when nginx has it built in); `dir` holds pid and logs.
pub fn nginx(
    listen: SocketAddrV4,
    backends: &[SocketAddrV4],
    module: Option<&Path>,
    dir: &Path,
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
    for b in backends {
        c.push_str(&format!("    server {b};\n"));
    }
    c.push_str(&format!(
        "  }}\n  server {{ listen {listen} backlog=4096; proxy_half_close on; proxy_pass b; }}\n}}\n"
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
}
