//! Reading the ground truth: established TCP sockets of a namespace (the kernel's own
//! table, `/proc/thread-self/net/tcp`, read from a thread inside the namespace), and the
//! balancer's Prometheus stats (`GET /metrics` on its admin address).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

/// Remote ends of the ESTABLISHED sockets whose local port is `port`, from the text of
/// `/proc/net/tcp` (addresses in little-endian hex, state `01`).
pub fn parse_established(proc_net_tcp: &str, port: u16) -> Vec<SocketAddrV4> {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _slot = f.next()?;
            let local = parse_hex_addr(f.next()?)?;
            let remote = parse_hex_addr(f.next()?)?;
            let state = f.next()?;
            (state == "01" && local.port() == port).then_some(remote)
        })
        .collect()
}

fn parse_hex_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(ip)), port))
}

/// Established sockets on `port` in the calling thread's namespace.
pub fn established_here(port: u16) -> std::io::Result<Vec<SocketAddrV4>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
    Ok(parse_established(&text, port))
}

/// Whether something listens on `port` in the calling thread's namespace.
pub fn listening_here(port: u16) -> bool {
    std::fs::read_to_string("/proc/thread-self/net/tcp")
        .map(|text| {
            text.lines().skip(1).any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() > 3
                    && f[3] == "0A"
                    && parse_hex_addr(f[1]).is_some_and(|a| a.port() == port)
            })
        })
        .unwrap_or(false)
}

/// What the balancer's stats say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per backend address: usable (up) or not (down).
    pub up: BTreeMap<String, bool>,
    /// Sessions the balancer holds: raw NAT rows if reported, else the sum of live sessions.
    pub sessions: Option<u32>,
}

/// Parses the Prometheus text of `l4lb raw|proxy --admin`.
///
/// Up/down: `l4lb_backend_state{state="up"}` when present (a fully healthy backend),
/// otherwise `l4lb_backend_up`; down is `l4lb_backend_up == 0`. Sessions: a gauge whose
/// name mentions NAT rows (`l4lb_raw_*rows*`), else the sum of `l4lb_backend_sessions_live`.
pub fn parse_metrics(text: &str) -> Stats {
    let mut usable: BTreeMap<String, bool> = BTreeMap::new();
    let mut state_up: BTreeMap<String, bool> = BTreeMap::new();
    let mut rows: Option<f64> = None;
    let mut live: Option<f64> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let label = |key: &str| -> Option<String> {
            labels.split("\",").find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == key).then(|| v.trim_matches('"').to_string())
            })
        };
        match name {
            "l4lb_backend_up" => {
                if let Some(b) = label("backend") {
                    usable.insert(b, value > 0.5);
                }
            }
            "l4lb_backend_state" => {
                if let (Some(b), Some(state)) = (label("backend"), label("state")) {
                    if state == "up" {
                        state_up.insert(b, value > 0.5);
                    }
                }
            }
            "l4lb_backend_sessions_live" => *live.get_or_insert(0.0) += value,
            n if n.starts_with("l4lb_raw")
                && n.contains("rows")
                && !n.ends_with("_total")
                && !n.contains("max") =>
            {
                *rows.get_or_insert(0.0) += value;
            }
            _ => {}
        }
    }
    let up = usable
        .iter()
        .map(|(b, usable)| {
            let up = match state_up.get(b) {
                // Up only when fully up; down only when not usable (suspect keeps serving).
                Some(true) => true,
                Some(false) if *usable => return (b.clone(), None),
                _ => *usable,
            };
            (b.clone(), Some(up))
        })
        .filter_map(|(b, v)| v.map(|v| (b, v)))
        .collect();
    Stats {
        up,
        sessions: rows.or(live).map(|v| v.round() as u32),
    }
}

/// `GET /metrics` from `addr` (blocking; call from a thread inside the balancer's namespace).
pub fn fetch_metrics(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: l4lb\r\n\r\n")?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf)?;
    match buf.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!(
            "unexpected reply from the stats endpoint: {}",
            buf.lines().next().unwrap_or("(empty)")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0B00000A:2328 0100000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0B00000A:2328 0100000A:C351 06 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0B00000A:1F90 0100000A:C352 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn established_sockets_on_a_port_are_read_from_proc_net_tcp() {
        // 0x2328 = 9000; 0B00000A = 10.0.0.11 little-endian; C350 = 50000.
        assert_eq!(
            parse_established(PROC, 9000),
            vec!["10.0.0.1:50000".parse::<SocketAddrV4>().unwrap()]
        );
        assert_eq!(parse_established(PROC, 8080).len(), 1);
        assert!(parse_established(PROC, 1234).is_empty());
        assert!(parse_established("garbage\nnot a line", 9000).is_empty());
    }

    #[test]
    fn metrics_give_health_and_sessions() {
        let text = r#"# HELP l4lb_backend_up x
l4lb_backend_up{backend="10.0.0.11:9000"} 1
l4lb_backend_up{backend="10.0.0.12:9000"} 0
l4lb_backend_up{backend="10.0.0.13:9000"} 1
l4lb_backend_state{backend="10.0.0.11:9000",state="up"} 1
l4lb_backend_state{backend="10.0.0.12:9000",state="up"} 0
l4lb_backend_state{backend="10.0.0.13:9000",state="up"} 0
l4lb_backend_sessions_live{backend="10.0.0.11:9000"} 2
l4lb_backend_sessions_live{backend="10.0.0.13:9000"} 1
"#;
        let s = parse_metrics(text);
        assert_eq!(s.up.get("10.0.0.11:9000"), Some(&true));
        assert_eq!(s.up.get("10.0.0.12:9000"), Some(&false));
        // Suspect (usable, not fully up): neither mark.
        assert_eq!(s.up.get("10.0.0.13:9000"), None);
        assert_eq!(s.sessions, Some(3));
        let raw = format!("{text}l4lb_raw_nat_rows 5\n");
        assert_eq!(parse_metrics(&raw).sessions, Some(5));
        assert_eq!(parse_metrics("").sessions, None);
    }
}
