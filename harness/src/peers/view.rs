//! A balancer's view of backend health, read in its own form: our stats endpoint
//! (Prometheus text with our metric names), HAProxy's `show stat` on its stats socket,
//! a user's Prometheus endpoint with the metric names they give, or none at all (kernel
//! NAT, nginx, a program that tells nothing: the run then uses evidence alone).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::probe::{self, Stats};

/// Where and how a run reads the balancer's health view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthView {
    /// `l4lb raw|proxy --admin ADDR`: our Prometheus text.
    L4lb(SocketAddr),
    /// A Prometheus endpoint with the user's metric names.
    Prometheus {
        /// Endpoint address (inside the balancer's namespace).
        addr: SocketAddr,
        /// Path (`/metrics`).
        path: String,
        /// 1 for a backend in use, 0 for one taken out.
        up_metric: String,
        /// Label holding the backend's `ip:port`.
        backend_label: String,
        /// Live sessions per backend (summed), if any.
        sessions_metric: Option<String>,
    },
    /// HAProxy's stats socket (`show stat`, CSV); servers are named `s1`, `s2`, ...
    HaproxySocket(PathBuf),
    /// No view.
    None,
}

impl HealthView {
    /// Whether there is a view to read.
    pub fn exists(&self) -> bool {
        *self != HealthView::None
    }

    /// Where it is read, in words (for error messages and reports).
    pub fn describe(&self) -> String {
        match self {
            HealthView::L4lb(a) => format!("stats endpoint http://{a}/metrics"),
            HealthView::Prometheus { addr, path, .. } => format!("http://{addr}{path}"),
            HealthView::HaproxySocket(p) => format!("HAProxy stats socket {}", p.display()),
            HealthView::None => "no health view".into(),
        }
    }

    /// Reads the view once (blocking; TCP views from a thread inside the balancer's
    /// namespace): its text and what it says about `backends`.
    pub fn read(
        &self,
        backends: &[SocketAddrV4],
        timeout: Duration,
    ) -> std::io::Result<(String, Stats)> {
        match self {
            HealthView::L4lb(addr) => {
                let text = probe::fetch_metrics(*addr, timeout)?;
                let stats = probe::parse_metrics(&text);
                Ok((text, stats))
            }
            HealthView::Prometheus {
                addr,
                path,
                up_metric,
                backend_label,
                sessions_metric,
            } => {
                let text = http_get(*addr, path, timeout)?;
                let stats =
                    parse_prometheus(&text, up_metric, backend_label, sessions_metric.as_deref());
                Ok((text, stats))
            }
            HealthView::HaproxySocket(path) => {
                let text = haproxy_show_stat(path, timeout)?;
                Ok((text.clone(), parse_haproxy_stat(&text, backends)))
            }
            HealthView::None => Err(std::io::Error::other("this balancer has no health view")),
        }
    }
}

/// `GET path` over HTTP/1.0; the body of a 200 reply.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: l4lb\r\n\r\n").as_bytes())?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf)?;
    match buf.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!(
            "unexpected reply from http://{addr}{path}: {}",
            buf.lines().next().unwrap_or("(empty)")
        ))),
    }
}

/// `show stat` on HAProxy's stats socket.
fn haproxy_show_stat(path: &std::path::Path, timeout: Duration) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"show stat\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Parses HAProxy's `show stat` CSV: per server row `sN` of backend `b`, its `status`
/// (`UP` up; `DOWN` and `DOWN n/m` down; `UP n/m`, a server going down, neither yet),
/// `scur` (live sessions, summed) and `stot` (sessions ever opened). Backends are named
/// by the address the harness gave server `sN`.
pub fn parse_haproxy_stat(csv: &str, backends: &[SocketAddrV4]) -> Stats {
    let mut stats = Stats::default();
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return stats;
    };
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status), Some(scur), Some(stot)) = (
        col("pxname"),
        col("svname"),
        col("status"),
        col("scur"),
        col("stot"),
    ) else {
        return stats;
    };
    let mut live = 0u32;
    let mut any = false;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() <= px.max(sv).max(status).max(scur).max(stot) || f[px] != "b" {
            continue;
        }
        let Some(i) = f[sv]
            .strip_prefix('s')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=backends.len()).contains(n))
        else {
            continue;
        };
        let backend = backends[i - 1].to_string();
        let st = f[status];
        let up = if st.starts_with("DOWN") || st.starts_with("MAINT") {
            Some(false)
        } else if st == "UP" || st == "no check" {
            Some(true)
        } else {
            None
        };
        if let Some(up) = up {
            stats.up.insert(backend.clone(), up);
        }
        let cur: u32 = f[scur].parse().unwrap_or(0);
        live += cur;
        any = true;
        if let Ok(n) = f[stot].parse() {
            stats.opened_per_backend.insert(backend, n);
        }
    }
    stats.sessions = any.then_some(live);
    stats
}

/// Parses Prometheus text with the user's names: `up_metric{label="ip:port"} 1|0` and,
/// if given, `sessions_metric{...}` summed.
pub fn parse_prometheus(
    text: &str,
    up_metric: &str,
    backend_label: &str,
    sessions_metric: Option<&str>,
) -> Stats {
    let mut up = BTreeMap::new();
    let mut sessions: Option<f64> = None;
    for sample in probe::samples(text) {
        if sample.name == up_metric {
            if let Some(b) = sample.label(backend_label) {
                up.insert(b, sample.value > 0.5);
            }
        } else if Some(sample.name) == sessions_metric {
            *sessions.get_or_insert(0.0) += sample.value;
        }
    }
    Stats {
        up,
        sessions: sessions.map(|v| v.round() as u32),
        opened_per_backend: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> Vec<SocketAddrV4> {
        vec![
            "10.0.0.11:9000".parse().unwrap(),
            "10.0.0.12:9000".parse().unwrap(),
            "10.0.0.13:9000".parse().unwrap(),
        ]
    }

    #[test]
    fn haproxy_show_stat_gives_health_and_sessions() {
        // The first columns of HAProxy 2.6's `show stat`, status moved near for brevity;
        // the parser finds columns by the header's names.
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status\n\
                   f,FRONTEND,,,4,4,4000,9,OPEN\n\
                   b,s1,0,0,0,1,,3,DOWN\n\
                   b,s2,0,0,3,3,,4,UP\n\
                   b,s3,0,0,1,1,,2,UP 1/3\n\
                   b,BACKEND,0,0,4,4,400,9,UP\n";
        let s = parse_haproxy_stat(csv, &backends());
        assert_eq!(s.up.get("10.0.0.11:9000"), Some(&false));
        assert_eq!(s.up.get("10.0.0.12:9000"), Some(&true));
        // Going down (still serving): neither mark yet.
        assert_eq!(s.up.get("10.0.0.13:9000"), None);
        assert_eq!(s.sessions, Some(4));
        assert_eq!(s.opened_per_backend.get("10.0.0.12:9000"), Some(&4));
        let rising = "# pxname,svname,scur,stot,status\nb,s1,0,0,DOWN 1/2\n";
        assert_eq!(
            parse_haproxy_stat(rising, &backends())
                .up
                .get("10.0.0.11:9000"),
            Some(&false)
        );
        assert_eq!(parse_haproxy_stat("", &backends()), Stats::default());
    }

    #[test]
    fn prometheus_with_the_users_names() {
        let text = "# HELP my_up x\nmy_up{pool=\"a\",addr=\"10.0.0.11:9000\"} 1\n\
                    my_up{pool=\"a\",addr=\"10.0.0.12:9000\"} 0\nmy_live{addr=\"10.0.0.11:9000\"} 2\n\
                    my_live{addr=\"10.0.0.12:9000\"} 1\nother 5\n";
        let s = parse_prometheus(text, "my_up", "addr", Some("my_live"));
        assert_eq!(s.up.get("10.0.0.11:9000"), Some(&true));
        assert_eq!(s.up.get("10.0.0.12:9000"), Some(&false));
        assert_eq!(s.sessions, Some(3));
        assert_eq!(parse_prometheus(text, "my_up", "addr", None).sessions, None);
    }
}
