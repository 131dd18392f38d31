//! Reading the balancer's Prometheus stats (`GET /metrics` on its admin address): the
//! health it gives each backend and the sessions it holds.

use l4lb_contract::metrics;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What the balancer's stats say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per backend address: usable (up) or not (down).
    pub up: BTreeMap<String, bool>,
    /// Sessions the balancer holds: raw NAT rows if reported, else the sum of live sessions.
    pub sessions: Option<u32>,
    /// Sessions ever opened per backend address, a counter that never goes down (raw:
    /// `l4lb_raw_backend_rows_created_total`; proxy: `l4lb_backend_sessions_total`). A live
    /// count would hide a new session when another one to the same backend ends meanwhile.
    pub opened_per_backend: BTreeMap<String, u32>,
}

/// One sample line of Prometheus text: metric name, the text between its braces, value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    labels: &'a str,
    /// The sample's value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, unquoted.
    pub fn label(&self, key: &str) -> Option<String> {
        self.labels.split("\",").find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == key).then(|| v.trim_matches('"').to_string())
        })
    }
}

/// The sample lines of Prometheus text, comments, blank and unparsable lines left out.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|line| {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.trim().parse::<f64>().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        Some(Sample {
            name,
            labels,
            value,
        })
    })
}

/// Parses the Prometheus text of `l4lb raw|proxy --admin`.
///
/// Up/down: `l4lb_backend_state{state="up"}` when present (a fully healthy backend),
/// otherwise `l4lb_backend_up`; down is `l4lb_backend_up == 0`. Sessions: a gauge whose
/// `l4lb_raw_rows` (NAT rows), else the sum of `l4lb_backend_sessions_live`.
pub fn parse_metrics(text: &str) -> Stats {
    let mut usable: BTreeMap<String, bool> = BTreeMap::new();
    let mut state_up: BTreeMap<String, bool> = BTreeMap::new();
    let mut rows: Option<f64> = None;
    let mut live: Option<f64> = None;
    let mut sessions_opened: BTreeMap<String, u32> = BTreeMap::new();
    let mut rows_opened: BTreeMap<String, u32> = BTreeMap::new();
    for sample in samples(text) {
        let (name, value, label) = (sample.name, sample.value, |key| sample.label(key));
        match name {
            metrics::BACKEND_UP => {
                if let Some(b) = label("backend") {
                    usable.insert(b, value > 0.5);
                }
            }
            metrics::BACKEND_STATE => {
                if let (Some(b), Some(state)) = (label("backend"), label("state")) {
                    if state == metrics::STATE_UP {
                        state_up.insert(b, value > 0.5);
                    }
                }
            }
            metrics::BACKEND_SESSIONS_LIVE => {
                *live.get_or_insert(0.0) += value;
            }
            metrics::BACKEND_SESSIONS_TOTAL => {
                if let Some(b) = label("backend") {
                    sessions_opened.insert(b, value.round() as u32);
                }
            }
            metrics::RAW_BACKEND_ROWS_CREATED_TOTAL => {
                if let Some(b) = label("backend") {
                    rows_opened.insert(b, value.round() as u32);
                }
            }
            metrics::RAW_ROWS => rows = Some(value),
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
        opened_per_backend: if rows_opened.is_empty() {
            sessions_opened
        } else {
            rows_opened
        },
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
l4lb_backend_sessions_total{backend="10.0.0.11:9000"} 7
l4lb_backend_sessions_total{backend="10.0.0.13:9000"} 1
"#;
        let s = parse_metrics(text);
        assert_eq!(s.up.get("10.0.0.11:9000"), Some(&true));
        assert_eq!(s.up.get("10.0.0.12:9000"), Some(&false));
        // Suspect (usable, not fully up): neither mark.
        assert_eq!(s.up.get("10.0.0.13:9000"), None);
        assert_eq!(s.sessions, Some(3));
        let raw = format!(
            "{text}l4lb_raw_rows 5\nl4lb_raw_backend_rows{{backend=\"10.0.0.11:9000\"}} 5\n\
             l4lb_raw_backend_rows_created_total{{backend=\"10.0.0.11:9000\"}} 9\n"
        );
        assert_eq!(parse_metrics(&raw).sessions, Some(5));
        // Opened per backend: monotonic totals, not live counts (proxy: sessions_total).
        assert_eq!(s.opened_per_backend.get("10.0.0.11:9000"), Some(&7));
        // raw: rows ever created, preferred over the pool's (unused) session totals.
        assert_eq!(
            parse_metrics(&raw).opened_per_backend.get("10.0.0.11:9000"),
            Some(&9)
        );
        assert_eq!(parse_metrics("").sessions, None);
    }
}
